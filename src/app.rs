//! The HTML shell, the root component and the router.
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use crate::components::toast::{provide_toaster, Toasts};
use crate::pages::events::EventsPage;
use crate::pages::functions::FunctionsPage;
use crate::pages::home::HomePage;
use crate::pages::not_found::NotFound;
use crate::pages::run::RunPage;
use crate::pages::runs::RunsPage;
use crate::pages::sign_in::SignInPage;
use crate::pages::sign_up::SignUpPage;

/// The document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::auth::set_page_policy();
    view! {
        <!DOCTYPE html>
        <html lang="ko">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The app: toasts, and one route per page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_toaster();

    // Effects run only in the browser: this marks the moment the page became interactive.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/nodebase.css" />
        <Title text="Nodebase" />
        <Router>
            <main class="page">
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=HomePage />
                    <Route path=path!("/signin") view=SignInPage />
                    <Route path=path!("/signup") view=SignUpPage />
                    <Route path=path!("/runs") view=RunsPage />
                    <Route path=path!("/runs/:id") view=RunPage />
                    <Route path=path!("/events") view=EventsPage />
                    <Route path=path!("/functions") view=FunctionsPage />
                </Routes>
            </main>
        </Router>
        <Toasts />
    }
}
