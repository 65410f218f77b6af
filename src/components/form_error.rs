//! The error line under a form, filled from a server action's last result.
use leptos::prelude::*;

use crate::error::AppError;

/// Shows the error of the last submission, if it failed.
#[component]
pub fn FormError(
    /// The last result of the form's server action.
    #[prop(into)]
    result: Signal<Option<Result<(), AppError>>>,
) -> impl IntoView {
    move || {
        result.get().and_then(Result::err).map(|err| {
            view! {
                <p class="form-error" role="alert">
                    {err.to_string()}
                </p>
            }
        })
    }
}
