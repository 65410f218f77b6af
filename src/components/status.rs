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

/// ": concurrency" after a queued run's badge when a concurrency limit holds it back;
/// the limit itself in the tooltip.
#[component]
pub fn HeldBack(why: Option<String>) -> impl IntoView {
    why.map(|why| {
        view! {
            <span class="held-back" data-held-back="concurrency" title=format!("waiting for room: {why}")>
                ": concurrency"
            </span>
        }
    })
}
