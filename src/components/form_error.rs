//! Errors on the page: the line under a form, and a page whose data did not load.
use leptos::prelude::*;
use leptos_router::components::Redirect;

use crate::error::AppError;

/// Shows `error` when there is one.
#[component]
pub fn FormError(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error.get().map(|err| {
            view! {
                <p class="form-error" role="alert">
                    {err.to_string()}
                </p>
            }
        })
    }
}

/// The error of a server action's last result, for [`FormError`].
pub fn action_error<I, O>(action: ServerAction<I>) -> Signal<Option<AppError>>
where
    I: leptos::server_fn::ServerFn<Output = O, Error = AppError> + Clone + Send + Sync + 'static,
    O: Clone + Send + Sync + 'static,
{
    Signal::derive(move || action.value().get().and_then(Result::err))
}

/// What a page shows when its data did not load: the sign-in page for a lapsed
/// session, the error otherwise.
#[component]
pub fn LoadError(error: AppError) -> impl IntoView {
    match error {
        AppError::Unauthorized => view! { <Redirect path="/signin" /> }.into_any(),
        err => view! { <p class="form-error">{err.to_string()}</p> }.into_any(),
    }
}
