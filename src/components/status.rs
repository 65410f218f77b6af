//! How run and step states look: a coloured badge with an icon.
use leptos::prelude::*;

use crate::api::runs::HeldBackView;
use crate::components::time::format_time;
use crate::domain::{RunStatus, StepStatus};

/// A state as a badge shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Badge {
    /// The state's name (also its CSS class, `status-<name>`).
    pub name: &'static str,
    pub icon: &'static str,
}

impl From<RunStatus> for Badge {
    fn from(status: RunStatus) -> Self {
        let icon = match status {
            RunStatus::Queued => "…",
            RunStatus::Running => "▶",
            RunStatus::Sleeping => "☾",
            RunStatus::Completed => "✓",
            RunStatus::Failed => "✕",
            RunStatus::Cancelled => "⊘",
        };
        Badge {
            name: status.as_str(),
            icon,
        }
    }
}

impl From<StepStatus> for Badge {
    fn from(status: StepStatus) -> Self {
        let icon = match status {
            StepStatus::Sleeping => "☾",
            StepStatus::Waiting => "◌",
            StepStatus::Retrying => "↻",
            StepStatus::Completed => "✓",
            StepStatus::Failed => "✕",
        };
        Badge {
            name: status.as_str(),
            icon,
        }
    }
}

/// A badge such as "✓ completed".
#[component]
pub fn StatusBadge(#[prop(into)] status: Badge) -> impl IntoView {
    view! {
        <span class=format!("status status-{}", status.name) data-status=status.name>
            <span aria-hidden="true">{status.icon}</span>
            " "
            {status.name}
        </span>
    }
}

/// After a queued run's badge, what holds it back — ": concurrency", ": throttled",
/// ": debounced" or ": waiting for batch" — with the reason in full in the tooltip.
#[component]
pub fn HeldBack(why: Option<HeldBackView>) -> impl IntoView {
    why.map(|why| {
        let word = match why.by.as_str() {
            "debounce" => "debounced",
            "throttle" => "throttled",
            "batch" => "waiting for batch",
            _ => "concurrency",
        };
        view! {
            <span class="held-back" data-held-back=why.by.clone() title=held_back_reason(&why)>
                {format!(": {word}")}
            </span>
        }
    })
}

/// What a held-back run waits for, as a phrase: "a concurrency slot (1 at once per
/// event.user_id)".
pub fn held_back_reason(why: &HeldBackView) -> String {
    let detail = &why.detail;
    match why.by.as_str() {
        "debounce" => format!("the burst of events to go quiet (debounce: {detail})"),
        "batch" => match why.until {
            Some(until) => format!(
                "more events for its batch ({detail}): starts when full, or at {}",
                format_time(until)
            ),
            None => format!("more events for its batch ({detail})"),
        },
        "throttle" => match why.until {
            Some(until) => format!("its throttle ({detail}): not before {}", format_time(until)),
            None => format!("its throttle ({detail})"),
        },
        _ => format!("a concurrency slot ({detail})"),
    }
}
