//! Nodebase: the background-jobs core of a workflow-automation app.
//!
//! One crate, two builds: `ssr` (the axum server, the database and the durable engine)
//! and `hydrate` (the WASM that makes the server-rendered pages interactive).
pub mod api;
pub mod app;
pub mod components;
pub mod domain;
#[cfg(feature = "ssr")]
pub mod engine;
pub mod error;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod workflows;

#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod bench;
#[cfg(feature = "ssr")]
pub mod config;
#[cfg(feature = "ssr")]
pub mod db;
#[cfg(feature = "ssr")]
pub mod entities;
#[cfg(feature = "ssr")]
pub mod functions;
#[cfg(feature = "ssr")]
pub mod limits;
#[cfg(feature = "ssr")]
pub mod live;
#[cfg(feature = "ssr")]
pub mod logging;
#[cfg(feature = "ssr")]
pub mod metrics;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod state;
#[cfg(feature = "ssr")]
pub mod traces;

/// The browser's entry point: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
