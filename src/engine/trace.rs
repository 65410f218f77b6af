//! Trace context carried through the database: a run remembers the span that created it
//! (a request that sent its event, a step that invoked it) as a W3C `traceparent`, and
//! whichever process runs it makes the run's span a child of that one. Without a trace
//! exporter installed there is no such span and nothing is stored.
use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The current span as a `traceparent`, if it is part of an exported trace.
pub(crate) fn current_parent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The remote span a `traceparent` names (an empty context if it names none).
pub fn context_of(traceparent: &str) -> Context {
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span`, not yet entered, a child of the span `traceparent` names.
pub(crate) fn adopt(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        // Fails only for a span no exporter records: nothing to link then.
        let _ = span.set_parent(context_of(traceparent));
    }
}
