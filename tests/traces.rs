//! Traces from the real server binary, exported over OTLP/HTTP to a stand-in collector
//! in this test: the request that creates a workflow continues the caller's trace (its
//! `traceparent` header), each invocation of the run it starts is a child of that
//! request, and the run's step attempt is a child of its invocation. On PostgreSQL the
//! request is served by a web process and the run executed by a worker process: the
//! trace goes from one to the other through the database.
#![cfg(feature = "ssr")]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const PORT: u16 = 3972;
/// The caller's span, as an upstream service would send it.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

type Spans = Arc<Mutex<Vec<Span>>>;

/// Receives `POST /v1/traces` as an OTLP collector does and keeps the spans.
async fn collector() -> (String, Spans) {
    let spans = Spans::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(|State(spans): State<Spans>, body: Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut kept = spans.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        kept.extend(scope.spans);
                    }
                }
                ([(CONTENT_TYPE, "application/x-protobuf")], Vec::<u8>::new())
            }),
        )
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), spans)
}

fn start(args: &[&str], url: &str, collector: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nodebase"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{PORT}"))
        .env("LEPTOS_OUTPUT_NAME", "nodebase")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
        // Export every 100 ms rather than every 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .spawn()
        .expect("start nodebase")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Waits (checking every 50 ms, up to 30 s) until `ready` gives something.
async fn until<T, F, Fut>(what: &str, mut ready: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(found) = ready().await {
            return found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the processes when the test ends, however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_and_its_step_are_traced_as_children_of_the_request_that_sent_its_event() {
    let t = common::test_db().await;
    let (endpoint, spans) = collector().await;
    let _processes = if t.url.starts_with("postgres") {
        let worker = start(&["worker"], &t.url, &endpoint);
        Processes(vec![
            worker,
            start(&["serve", "--role", "web"], &t.url, &endpoint),
        ])
    } else {
        Processes(vec![start(&[], &t.url, &endpoint)])
    };
    let base = format!("http://127.0.0.1:{PORT}");
    let http = reqwest::Client::new();
    until("the server", || async {
        let up = http.get(format!("{base}/signin")).send().await;
        up.is_ok_and(|r| r.status().is_success()).then_some(())
    })
    .await;

    let form = "application/x-www-form-urlencoded";
    let signed_up = http
        .post(format!("{base}/api/sign_up"))
        .header(CONTENT_TYPE, form)
        .body("email=traced%40example.com&password=correct+horse+battery")
        .send()
        .await
        .unwrap();
    let status = signed_up.status();
    let headers = signed_up.headers().clone();
    assert!(
        status.is_success(),
        "{status}: {:?}",
        signed_up.text().await
    );
    let cookie = headers
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let created = http
        .post(format!("{base}/api/create_workflow"))
        .header(CONTENT_TYPE, form)
        .header("cookie", &cookie)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");

    // The run sleeps three times for a second, then creates the workflow in a step: wait
    // for that step's span and the invocation it ran in.
    let (step, spans) = until("the run's step span and its invocation", || async {
        let spans = spans.lock().unwrap().clone();
        let step = spans.iter().find(|s| {
            s.name == "step" && attribute(s, "step").as_deref() == Some("create-workflow")
        })?;
        spans
            .iter()
            .any(|s| s.span_id == step.parent_span_id)
            .then(|| (step.clone(), spans.clone()))
    })
    .await;
    let request = spans
        .iter()
        .find(|s| s.name.starts_with("POST ") && s.name.contains("create_workflow"))
        .unwrap_or_else(|| panic!("no request span in {spans:#?}"));
    assert_eq!(hex(&request.trace_id), CALLER_TRACE, "the caller's trace");
    assert_eq!(
        hex(&request.parent_span_id),
        CALLER_SPAN,
        "the caller's span"
    );
    assert_eq!(
        attribute(request, "http.response.status_code").as_deref(),
        Some("200")
    );

    // (The app's cron function may have run too, in traces of its own.)
    let runs: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "run" && attribute(s, "function").as_deref() == Some("hello-world"))
        .collect();
    assert!(!runs.is_empty(), "no run span in {spans:#?}");
    let run_id = attribute(runs[0], "run_id").expect("the run's id");
    for run in &runs {
        assert_eq!(attribute(run, "run_id").as_ref(), Some(&run_id), "one run");
        assert_eq!(run.trace_id, request.trace_id, "in the caller's trace");
        assert_eq!(
            run.parent_span_id, request.span_id,
            "each invocation is a child of the request"
        );
    }
    let claims: Vec<String> = runs.iter().filter_map(|r| attribute(r, "claim")).collect();
    assert!(claims.contains(&"1".to_string()), "{claims:?}");

    assert_eq!(step.trace_id, request.trace_id);
    let invocation = runs
        .iter()
        .find(|r| r.span_id == step.parent_span_id)
        .expect("the step's parent is one of the run's invocations");
    assert!(invocation.start_time_unix_nano <= step.start_time_unix_nano);
    assert!(step.end_time_unix_nano <= invocation.end_time_unix_nano);
    assert_eq!(attribute(&step, "kind").as_deref(), Some("run"));
    assert_eq!(attribute(&step, "attempt").as_deref(), Some("1"));
}
