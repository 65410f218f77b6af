//! The sign-up page.
use leptos::prelude::*;

use crate::api::auth::SignUp;
use crate::components::form_error::{action_error, FormError};

/// Creates an account; on success the new user is signed in and sent home.
#[component]
pub fn SignUpPage() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    view! {
        <section class="card auth-card">
            <h1>"Nodebase 회원가입"</h1>
            <ActionForm action=action>
                <label>
                    "Email"
                    <input type="text" inputmode="email" name="email" autocomplete="email" required />
                </label>
                <label>
                    "Password (at least 8 characters)"
                    <input type="password" name="password" autocomplete="new-password" required />
                </label>
                <FormError error=action_error(action) />
                <button type="submit" class="primary" disabled=move || action.pending().get()>
                    "Sign up"
                </button>
            </ActionForm>
            <p class="muted">"Have an account? " <a href="/signin">"Sign in"</a></p>
        </section>
    }
}
