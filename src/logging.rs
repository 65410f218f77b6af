//! The process's log output, on standard output: text for people (the default), or one
//! JSON object per line with `NODEBASE_LOG_FORMAT=json`, for log collectors. Each line
//! carries the spans it was written in: a request's (`http.route`, …), a run's (`function`,
//! `run_id`, `claim`) and a step's (`step`, `kind`, `attempt`), so a step's logs can be
//! found by its run.
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The format `NODEBASE_LOG_FORMAT` names: `text` (or unset) or `json`.
    pub fn from_env() -> Result<Self, String> {
        Self::parse(std::env::var("NODEBASE_LOG_FORMAT").ok().as_deref())
    }

    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!(
                "NODEBASE_LOG_FORMAT must be \"text\" or \"json\", not {other:?}"
            )),
        }
    }
}

/// A layer writing log lines in `format` to `writer`.
pub fn layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    }
}

/// Installs the process's logger: `RUST_LOG` filters (else `default_filter`), lines go to
/// standard output in `format`, and spans to `traces` when it is given (`crate::traces`).
pub fn init(
    format: LogFormat,
    default_filter: &str,
    traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::registry()
        .with(filter)
        .with(layer(format, std::io::stdout))
        .with(traces.map(crate::traces::layer))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_text_unless_json_is_asked_for_and_anything_else_is_refused() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some(" json ")), Ok(LogFormat::Json));
        let refused = LogFormat::parse(Some("xml")).unwrap_err();
        assert!(refused.contains("\"text\" or \"json\""), "{refused}");
    }
}
