//! Shown for any address that is not a page.
use leptos::prelude::*;

/// The 404 page.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="card">
            <h1>"Not found"</h1>
            <p>
                <a href="/">"Back home"</a>
            </p>
        </section>
    }
}
