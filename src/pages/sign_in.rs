//! The sign-in page.
use leptos::prelude::*;

use crate::api::auth::SignIn;
use crate::components::form_error::{action_error, FormError};

/// Email and password; on success the server sends the browser home.
#[component]
pub fn SignInPage() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    view! {
        <section class="card auth-card">
            <h1>"Nodebase 로그인"</h1>
            <ActionForm action=action>
                <label>
                    "Email"
                    <input type="text" inputmode="email" name="email" autocomplete="email" required />
                </label>
                <label>
                    "Password"
                    <input type="password" name="password" autocomplete="current-password" required />
                </label>
                <FormError error=action_error(action) />
                <button type="submit" class="primary" disabled=move || action.pending().get()>
                    "Sign in"
                </button>
            </ActionForm>
            <p class="muted">"No account yet? " <a href="/signup">"Sign up"</a></p>
        </section>
    }
}
