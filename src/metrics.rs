//! The Prometheus endpoint and the web server's own metrics. When
//! `NODEBASE_METRICS_ADDR` is set the server installs a Prometheus recorder for the
//! `metrics` facade (the engine's metrics are named in `engine::metrics`) and serves
//! `GET /metrics` on that address only — never on the public port.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseConnection;

use crate::engine::{metrics as engine_metrics, Engine};

pub const HTTP_REQUESTS: &str = "nodebase_http_requests_total";
pub const HTTP_SECONDS: &str = "nodebase_http_request_seconds";
pub const SSE_CLIENTS: &str = "nodebase_sse_clients";
pub const DB_POOL_IN_USE: &str = "nodebase_db_pool_in_use";
pub const DB_POOL_IDLE: &str = "nodebase_db_pool_idle";

/// Histogram buckets, in seconds: 1 ms to 1 min.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Histogram buckets for batch sizes.
const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How often the recorder's held histogram samples are drained into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder; its handle renders the scrape page.
/// Call it inside the Tokio runtime: a task drains held samples every [`UPKEEP`].
pub fn install() -> Result<PrometheusHandle, String> {
    install_with_upkeep(UPKEEP)
}

/// [`install`], draining held samples every `every`.
pub fn install_with_upkeep(every: Duration) -> Result<PrometheusHandle, String> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), SIZES))
        .map_err(|e| e.to_string())?;
    let handle = builder.install_recorder().map_err(|e| e.to_string())?;
    // Without this, a histogram holds every sample until somebody scrapes.
    let drain = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(every);
        loop {
            every.tick().await;
            drain.run_upkeep();
        }
    });
    engine_metrics::enable();
    Ok(handle)
}

/// What the metrics listener needs.
#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    engine: Engine,
    db: DatabaseConnection,
}

/// The metrics listener's routes: `GET /metrics` only.
pub fn router(handle: PrometheusHandle, engine: Engine, db: DatabaseConnection) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(Scrape { handle, engine, db })
}

/// Serves [`router`] on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, router: Router) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
    tracing::info!("metrics on http://{addr}/metrics");
    axum::serve(listener, router)
        .await
        .map_err(|e| format!("the metrics listener failed: {e}"))
}

/// Reads what is cheaper to read at a scrape than to keep up to date — the queue by
/// function (one grouped query on the due-run index) and the database pool — then
/// renders every metric.
async fn scrape(State(scrape): State<Scrape>) -> Response {
    match scrape.engine.queue().await {
        Ok(queue) => {
            let now = scrape.engine.now_ms();
            for function in scrape.engine.functions() {
                let id = function.id().to_string();
                let (depth, oldest) = queue
                    .iter()
                    .find(|(f, ..)| *f == id)
                    .map(|(_, n, due)| (*n as f64, (now - due).max(0) as f64 / 1000.0))
                    .unwrap_or((0.0, 0.0));
                gauge!(engine_metrics::QUEUE_DEPTH, "function" => id.clone()).set(depth);
                gauge!(engine_metrics::OLDEST_DUE_AGE, "function" => id).set(oldest);
            }
        }
        Err(err) => tracing::warn!(error = %err, "could not read the queue for metrics"),
    }
    let (in_use, idle) = pool(&scrape.db);
    gauge!(DB_POOL_IN_USE).set(in_use as f64);
    gauge!(DB_POOL_IDLE).set(idle as f64);
    scrape.handle.run_upkeep();
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        scrape.handle.render(),
    )
        .into_response()
}

/// Connections of the database pool in use and idle.
fn pool(db: &DatabaseConnection) -> (u32, u32) {
    let (size, idle) = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle() as u32)
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle() as u32)
        }
    };
    (size.saturating_sub(idle), idle)
}

/// Counts each request by route template (never the raw path), method and status, and
/// times it.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = route_of(&request);
    let method = request.method().as_str().to_string();
    let began = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    histogram!(HTTP_SECONDS, "route" => route.clone()).record(began.elapsed().as_secs_f64());
    counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
    response
}

/// The route template `request` matched (never its raw path), or `other`.
pub fn route_of(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string())
}

/// One open live stream, counted while it lives.
pub struct SseClient(());

impl SseClient {
    pub fn open() -> Self {
        gauge!(SSE_CLIENTS).increment(1.0);
        SseClient(())
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        gauge!(SSE_CLIENTS).decrement(1.0);
    }
}
