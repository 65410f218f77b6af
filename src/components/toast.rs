//! Toasts: short notices that appear, stack, and fade away by themselves.
use std::time::Duration;

use leptos::prelude::*;

/// How long a toast stays up; the CSS fade-out ends at the same moment.
const TOAST_LIFETIME: Duration = Duration::from_millis(3_200);

/// What kind of news a toast brings, which sets its colour and icon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToastKind {
    Success,
    Error,
}

/// One notice on screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toast {
    id: u64,
    kind: ToastKind,
    message: String,
}

/// The handle pages use to raise toasts; provided once by the app shell.
#[derive(Clone, Copy)]
pub struct Toaster {
    toasts: RwSignal<Vec<Toast>>,
    next_id: StoredValue<u64>,
}

impl Toaster {
    /// Shows a success toast.
    pub fn success(&self, message: impl Into<String>) {
        self.push(ToastKind::Success, message.into());
    }

    /// Shows an error toast.
    pub fn error(&self, message: impl Into<String>) {
        self.push(ToastKind::Error, message.into());
    }

    fn push(&self, kind: ToastKind, message: String) {
        let id = self.next_id.get_value();
        self.next_id.set_value(id + 1);
        self.toasts.update(|t| t.push(Toast { id, kind, message }));
        let toasts = self.toasts;
        set_timeout(
            move || toasts.update(|t| t.retain(|toast| toast.id != id)),
            TOAST_LIFETIME,
        );
    }
}

/// Makes a `Toaster` available to every component below.
pub fn provide_toaster() {
    provide_context(Toaster {
        toasts: RwSignal::new(Vec::new()),
        next_id: StoredValue::new(0),
    });
}

/// The app's `Toaster`.
pub fn use_toaster() -> Toaster {
    expect_context::<Toaster>()
}

/// Where toasts are drawn: a stack in the corner of the screen.
#[component]
pub fn Toasts() -> impl IntoView {
    let toaster = use_toaster();
    view! {
        <ol class="toaster" aria-live="polite">
            <For each=move || toaster.toasts.get() key=|toast| toast.id let:toast>
                <li
                    class="toast"
                    class:toast-success=toast.kind == ToastKind::Success
                    class:toast-error=toast.kind == ToastKind::Error
                    role="status"
                    style:animation-duration=format!("{}ms", TOAST_LIFETIME.as_millis())
                >
                    <span class="toast-icon" aria-hidden="true">
                        {match toast.kind {
                            ToastKind::Success => "✓",
                            ToastKind::Error => "!",
                        }}
                    </span>
                    <span class="toast-message">{toast.message}</span>
                </li>
            </For>
        </ol>
    }
}
