//! How run and step states look: a coloured badge with an icon.
use leptos::prelude::*;

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

/// After a queued run's badge, what holds it back — ": concurrency" or ": debounced" —
/// with the limit or the debounce in the tooltip.
#[component]
pub fn HeldBack(why: Option<(String, String)>) -> impl IntoView {
    why.map(|(by, detail)| {
        let (word, title) = match by.as_str() {
            "debounce" => (
                "debounced",
                format!("starts once no new event has come for {detail}"),
            ),
            _ => ("concurrency", format!("waiting for room: {detail}")),
        };
        view! {
            <span class="held-back" data-held-back=by title=title>
                {format!(": {word}")}
            </span>
        }
    })
}
