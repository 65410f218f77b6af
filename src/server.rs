//! Start-up wiring: settings, database, migrations, routes, serving.
use std::sync::Arc;

use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use migration::{Migrator, MigratorTrait};

use crate::app::{shell, App};
use crate::auth::{guard_pages, same_site_only, security_headers};
use crate::config::Config;
use crate::engine::{Engine, EngineConfig};
use crate::state::AppState;
use tower_http::set_header::SetResponseHeaderLayer;

/// Any start-up failure, with what was being attempted.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// The axum router: pages, server functions, static files, all behind the page guard
/// and the cross-site guard, every response with the security headers.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let mut router = Router::new()
        .route(crate::live::PATH, axum::routing::get(crate::live::stream))
        .leptos_routes(&state, routes, move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard_pages,
        ))
        .layer(axum::middleware::from_fn(same_site_only));
    for (name, value) in security_headers() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    router.with_state(state)
}

/// What a process does; many processes can share one PostgreSQL database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Serve pages and run background workers (the default).
    All,
    /// Serve pages only; runs are executed by worker processes.
    Web,
    /// Run background workers only.
    Worker,
}

/// Runs the process in `role` until Ctrl-C or SIGTERM, then stops gracefully: open
/// streams end, in-flight runs finish or are handed back.
pub async fn serve(role: Role) -> Result<(), StartError> {
    let config = Config::from_env()?;
    let db = crate::db::connect(&config.database_url)
        .await
        .map_err(|e| format!("cannot open {}: {e}", config.database_url))?;
    Migrator::up(&db, None)
        .await
        .map_err(|e| format!("migrations failed: {e}"))?;

    let engine = build_engine(&db, &config)?;
    let metrics = match config.metrics_addr {
        Some(addr) => {
            let handle = crate::metrics::install()?;
            let routes = crate::metrics::router(handle, engine.clone(), db.clone());
            tokio::spawn(async move {
                if let Err(err) = crate::metrics::serve(addr, routes).await {
                    tracing::error!(error = %err, "metrics are not served");
                }
            });
            true
        }
        None => false,
    };
    if role == Role::Worker {
        let workers = engine.start();
        tracing::info!(
            worker = engine.worker_id(),
            "running background workers only"
        );
        shutdown_signal().await;
        workers.shutdown().await;
        return Ok(());
    }
    let (workers, notifications) = match role {
        Role::Web => (None, Some(engine.listen())),
        _ => (Some(engine.start()), None),
    };

    let mut leptos_options = get_configuration(None)?.leptos_options;
    if leptos_options.output_name.is_empty() {
        // Built without cargo-leptos (plain `cargo build`): the bundle's name is ours.
        leptos_options.output_name = "nodebase".into();
    }
    let addr = leptos_options.site_addr;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let state = AppState {
        leptos_options,
        db,
        limits: crate::limits::Limits::new(config.limits),
        config: Arc::new(config),
        engine,
        stopping,
    };
    tokio::spawn(tidy_up(state.clone()));

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("listening on http://{addr}");
    let mut app = router(state).layer(axum::middleware::from_fn(crate::traces::trace_http));
    if metrics {
        app = app.layer(axum::middleware::from_fn(crate::metrics::track_http));
    }
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await?;
    if let Some(workers) = workers {
        workers.shutdown().await;
    }
    if let Some(notifications) = notifications {
        notifications.stop().await;
    }
    Ok(())
}

/// The engine with the app's functions, configured from `config`.
pub fn build_engine(
    db: &sea_orm::DatabaseConnection,
    config: &Config,
) -> Result<Engine, StartError> {
    let mut builder = Engine::builder(db.clone())
        .config(EngineConfig {
            workers: config.workers,
            retention: config.retention,
            ..EngineConfig::default()
        })
        .state(db.clone());
    for function in crate::functions::all() {
        builder = builder.function(function);
    }
    Ok(builder.build()?)
}

/// Now and then, until the server stops: deletes expired sessions and full attempt
/// budgets, and forgets the action counts of quiet users.
async fn tidy_up(state: AppState) {
    let mut stopping = state.stopping.clone();
    loop {
        match crate::auth::purge_expired_sessions(&state.db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "purged expired sessions"),
            Err(err) => tracing::warn!(error = %err, "purging expired sessions failed"),
        }
        if let Err(err) = crate::auth::purge_refilled_budgets(&state.db, crate::db::now_ms()).await
        {
            tracing::warn!(error = %err, "purging attempt budgets failed");
        }
        state.limits.forget_quiet_users();
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
