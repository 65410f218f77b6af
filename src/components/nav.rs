//! The bar at the top of every signed-in page.
use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::auth::SignOut;

/// Links between the signed-in pages, and the logout button.
#[component]
pub fn Nav() -> impl IntoView {
    let sign_out = ServerAction::<SignOut>::new();
    view! {
        <nav class="nav">
            <a class="brand" href="/">"Nodebase"</a>
            <div class="nav-links">
                <A href="/" exact=true>"Workflows"</A>
                <A href="/runs">"Runs"</A>
                <A href="/events">"Events"</A>
                <A href="/functions">"Functions"</A>
            </div>
            <ActionForm action=sign_out>
                <button type="submit" class="secondary">"로그아웃"</button>
            </ActionForm>
        </nav>
    }
}
