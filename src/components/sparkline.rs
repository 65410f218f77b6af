//! A small bar chart of counts per minute, drawn as SVG with its axes and units.
use leptos::prelude::*;

/// The plot's frame inside the SVG's view box: left, top, right, bottom.
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
