//! Traces over OTLP: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the process's spans (each
//! request's, each run invocation's and each step attempt's) are exported over OTLP/HTTP
//! (protobuf) by the OpenTelemetry SDK, which also reads the other standard `OTEL_*`
//! variables (headers, timeout, batch delay, sampler). A request span continues the trace
//! of an incoming `traceparent` header; a run's spans continue the trace of the request
//! (or step) that created the run — see `engine::trace`.
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::engine::trace::context_of;

/// The variables that turn the export on, either one.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// The exporter the environment asks for, if any: `None` unless an OTLP endpoint is set.
pub fn from_env() -> Result<Option<SdkTracerProvider>, String> {
    let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
    if !ENDPOINT_VARS.iter().any(|var| set(var)) {
        return Ok(None);
    }
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| format!("the OTLP trace exporter cannot be built: {e}"))?;
    let mut resource = Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("nodebase");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// A `tracing` layer sending spans to `provider`.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("nodebase"))
}

/// Sends what spans are still held, then stops the exporter.
pub async fn flush(provider: SdkTracerProvider) {
    // The SDK's export runs on threads of its own and blocks while it finishes.
    let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(err)) = done {
        eprintln!("nodebase: traces not all sent: {err}");
    }
}

/// Runs each request in a `request` span named by its method and route template (never
/// the raw path), the child of the caller's span when a `traceparent` header names one.
pub async fn trace_http(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let route = crate::metrics::route_of(&request);
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(parent) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        let _ = span.set_parent(context_of(parent));
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}
