//! Charts drawn as SVG, with their axes and units: counts per minute (the runs page),
//! and a function's runs by outcome and its latencies (the functions page).
use leptos::prelude::*;

use crate::api::functions::SpanView;

/// The sparkline's plot frame inside its view box: left, top, right, bottom.
const PLOT: (f64, f64, f64, f64) = (40.0, 8.0, 356.0, 60.0);

/// `counts[i]` runs in minute `i` of the window, oldest first, the last minute being
/// the current one; `label` says what is counted ("runs sent").
#[component]
pub fn Sparkline(counts: Vec<u32>, label: &'static str) -> impl IntoView {
    let minutes = counts.len().max(1);
    let total: u32 = counts.iter().sum();
    let now = counts.last().copied().unwrap_or(0);
    let top = axis_top(counts.iter().copied().max().unwrap_or(0));
    let (left, upper, right, bottom) = PLOT;
    let step = (right - left) / minutes as f64;
    let bars = counts
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .map(|(i, &count)| {
            let height = (bottom - upper) * f64::from(count) / f64::from(top);
            view! {
                <rect
                    class="bar"
                    data-minute=i
                    data-count=count
                    x=format!("{:.1}", left + step * i as f64 + 0.5)
                    y=format!("{:.1}", bottom - height)
                    width=format!("{:.1}", (step - 1.0).max(1.0))
                    height=format!("{height:.1}")
                />
            }
        })
        .collect_view();
    let ago = format!("−{minutes} min");
    let aria = format!("{label} per minute over the last {minutes} minutes: {total} in all, {now} in the current minute");
    view! {
        <figure class="sparkline" data-total=total data-now=now>
            <svg viewBox="0 0 360 78" role="img" aria-label=aria>
                <line class="axis" x1=left y1=upper x2=left y2=bottom />
                <line class="axis" x1=left y1=bottom x2=right y2=bottom />
                <text class="tick" x=left - 4.0 y=upper + 4.0 text-anchor="end">{format!("{top}/min")}</text>
                <text class="tick" x=left - 4.0 y=bottom text-anchor="end">"0"</text>
                <text class="tick" x=left y=bottom + 14.0 text-anchor="start">{ago}</text>
                <text class="tick" x=right y=bottom + 14.0 text-anchor="end">"now"</text>
                {bars}
            </svg>
            <figcaption>
                {format!("{label} per minute, last {} min: ", minutes)}
                <b class="sparkline-total">{total}</b>
                {format!(" in all, {now} this minute")}
            </figcaption>
        </figure>
    }
}

/// The value at the top of the axis: the largest count rounded up to 1, 2 or 5 times a
/// power of ten, at least 1.
fn axis_top(max: u32) -> u32 {
    let mut unit = 1u32;
    loop {
        for step in [1, 2, 5] {
            let top = unit.saturating_mul(step);
            if top >= max || top == u32::MAX {
                return top;
            }
        }
        unit = unit.saturating_mul(10);
    }
}

/// The plot's frame of the larger charts: left, top, right, bottom.
const FRAME: (f64, f64, f64, f64) = (48.0, 8.0, 352.0, 72.0);

/// A length of time on an axis: `30 min`, `90 min`, `2 h`, `24 h`.
fn minutes(m: i64) -> String {
    if m >= 120 && m % 60 == 0 {
        format!("{} h", m / 60)
    } else {
        format!("{m} min")
    }
}

/// What one span of `m` minutes is called in a caption: `5 min`, `hour`.
fn span_name(m: i64) -> String {
    if m == 60 {
        "hour".to_string()
    } else {
        minutes(m)
    }
}

/// The x axis of a chart of `spans` spans of `span_minutes`, ending now.
fn time_axis(spans: usize, span_minutes: i64) -> impl IntoView {
    let (left, _, right, bottom) = FRAME;
    let whole = spans as i64 * span_minutes;
    view! {
        <line class="axis" x1=left y1=bottom x2=right y2=bottom />
        <text class="tick" x=left y=bottom + 14.0 text-anchor="start">{format!("−{}", minutes(whole))}</text>
        <text class="tick" x=(left + right) / 2.0 y=bottom + 14.0 text-anchor="middle">{format!("−{}", minutes(whole / 2))}</text>
        <text class="tick" x=right y=bottom + 14.0 text-anchor="end">"now"</text>
    }
}

/// The y axis, from 0 to the value `top` names.
fn value_axis(top: String) -> impl IntoView {
    let (left, upper, _, bottom) = FRAME;
    view! {
        <line class="axis" x1=left y1=upper x2=left y2=bottom />
        <text class="tick" x=left - 4.0 y=upper + 4.0 text-anchor="end">{top}</text>
        <text class="tick" x=left - 4.0 y=bottom text-anchor="end">"0"</text>
    }
}

/// Stacked bars of the runs sent in each span: completed, failed, and the rest.
#[component]
pub fn OutcomeBars(spans: Vec<SpanView>, span_minutes: i64) -> impl IntoView {
    let count = spans.len().max(1);
    let sum = |f: fn(&SpanView) -> u32| spans.iter().map(f).sum::<u32>();
    let (completed, failed, other) = (sum(|s| s.completed), sum(|s| s.failed), sum(|s| s.other));
    let top = axis_top(
        spans
            .iter()
            .map(|s| s.completed + s.failed + s.other)
            .max()
            .unwrap_or(0),
    );
    let (left, upper, right, bottom) = FRAME;
    let step = (right - left) / count as f64;
    let scale = (bottom - upper) / f64::from(top);
    let bars = spans
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let x = left + step * i as f64 + 1.0;
            let width = (step - 2.0).max(1.0);
            let mut base = bottom;
            [
                ("completed", s.completed),
                ("failed", s.failed),
                ("other", s.other),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(move |(class, n)| {
                let height = f64::from(n) * scale;
                base -= height;
                view! {
                    <rect class=format!("bar {class}") data-span=i data-count=n
                        x=format!("{x:.1}") y=format!("{base:.1}")
                        width=format!("{width:.1}") height=format!("{height:.1}") />
                }
            })
            .collect::<Vec<_>>()
        })
        .collect_view();
    let whole = count as i64 * span_minutes;
    let aria = format!("runs sent per {span_minutes} minutes over the last {whole} minutes: {completed} completed, {failed} failed, {other} other");
    view! {
        <figure class="chart outcomes" data-completed=completed data-failed=failed data-other=other>
            <svg viewBox="0 0 360 92" role="img" aria-label=aria>
                {value_axis(if top == 1 { "1 run".to_string() } else { format!("{top} runs") })}
                {time_axis(count, span_minutes)}
                {bars}
            </svg>
            <figcaption>
                {format!("Runs sent per {}, by outcome: ", span_name(span_minutes))}
                <span class="key completed"></span>{format!("{completed} completed ")}
                <span class="key failed"></span>{format!("{failed} failed ")}
                <span class="key other"></span>{format!("{other} queued, running or cancelled")}
            </figcaption>
        </figure>
    }
}

/// p50 and p95 of a duration per span, as two lines (`kind` names it: `duration`,
/// `delay`).
#[component]
pub fn LatencyLines(
    spans: Vec<Option<(i64, i64)>>,
    span_minutes: i64,
    kind: &'static str,
    title: &'static str,
) -> impl IntoView {
    let count = spans.len().max(1);
    let highest = spans
        .iter()
        .flatten()
        .map(|(_, p95)| *p95)
        .max()
        .unwrap_or(0);
    let top = i64::from(axis_top(u32::try_from(highest.max(0)).unwrap_or(u32::MAX)));
    let (left, upper, right, bottom) = FRAME;
    let step = (right - left) / count as f64;
    let point = |i: usize, v: i64| {
        (
            left + step * (i as f64 + 0.5),
            bottom - (bottom - upper) * v as f64 / top.max(1) as f64,
        )
    };
    let line = |pick: fn(&(i64, i64)) -> i64| {
        let mut path = String::new();
        let mut pen_down = false;
        for (i, s) in spans.iter().enumerate() {
            match s {
                Some(s) => {
                    let (x, y) = point(i, pick(s));
                    path.push_str(&format!(
                        "{}{x:.1} {y:.1} ",
                        if pen_down { "L" } else { "M" }
                    ));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        path
    };
    let dots = |class: &'static str, pick: fn(&(i64, i64)) -> i64| {
        spans
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, pick(s))))
            .map(|(i, v)| {
                let (x, y) = point(i, v);
                view! { <circle class=format!("dot {class}") data-span=i data-ms=v cx=format!("{x:.1}") cy=format!("{y:.1}") r="2.5" /> }
            })
            .collect_view()
    };
    let points = spans.iter().flatten().count();
    let latest = spans.iter().rev().flatten().next().copied();
    let aria = format!("{title}, p50 and p95 per {span_minutes} minutes");
    view! {
        <figure class="chart latency" data-kind=kind data-points=points>
            <svg viewBox="0 0 360 92" role="img" aria-label=aria>
                {value_axis(super::time::format_duration(top))}
                {time_axis(count, span_minutes)}
                <path class="line p95" d=line(|s| s.1) />
                <path class="line p50" d=line(|s| s.0) />
                {dots("p95", |s| s.1)}
                {dots("p50", |s| s.0)}
            </svg>
            <figcaption>
                {format!("{title}: ")}
                <span class="key p50"></span>"p50 "
                <span class="key p95"></span>"p95"
                {latest.map(|(p50, p95)| format!(" · latest {} / {}", super::time::format_duration(p50), super::time::format_duration(p95)))}
            </figcaption>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::axis_top;

    #[test]
    fn the_axis_tops_at_a_round_number_over_the_largest_count() {
        assert_eq!(axis_top(0), 1);
        assert_eq!(axis_top(1), 1);
        assert_eq!(axis_top(3), 5);
        assert_eq!(axis_top(7), 10);
        assert_eq!(axis_top(11), 20);
        assert_eq!(axis_top(450), 500);
        assert_eq!(axis_top(u32::MAX), u32::MAX);
    }
}
