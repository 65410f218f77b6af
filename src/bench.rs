//! `nodebase bench`: measures the engine on a fresh database and prints its figures.
//!
//! (a) throughput of N runs of a one-step function, (b) of N runs of a three-step
//! function, (b') of N runs of a one-step function limited to one run at a time per key,
//! over 1,000 keys, (c) `wait_for_event`: W runs parked on waits, then W matching events sent
//! in batches of 100 — events matched per second and send→resume latency, (d) latency
//! from `send` to the first step's start at low load, and from `send` to the end of a
//! three-step run, and the process's peak resident memory. The events of (a) and (b) are
//! recorded first and the workers started after, so the figures measure draining a
//! backlog. For (a) and (b) it
//! also prints what a run cost the database, from counters: the statements this process
//! sent through its main pool (SeaORM's metric callback; the engine's lease pool — claims,
//! heartbeats, notices — is not counted) and, on PostgreSQL, the transactions the server
//! committed (`pg_stat_database`), enqueue included.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, TransactionTrait,
};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::engine::entities::{run, wait};
use crate::engine::{
    Engine, EngineConfig, Function, NewEvent, RunStatus, RunUpdate, Throttle, WaitFor,
};
use crate::server::StartError;

/// What to measure, from the command line.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Runs per throughput measurement.
    #[arg(long, default_value_t = 20_000)]
    pub runs: usize,
    /// Runs executing at once: as many as the peers' settings keep fetched (pg-boss: 10
    /// workers taking 100 jobs each). With 256 the drain waited on round trips, not on
    /// the CPU (see the README's benchmark section).
    #[arg(long, default_value_t = 1_024)]
    pub workers: usize,
    /// Most runs claimed, or writes committed, per transaction.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Runs parked on a wait, and matching events sent, in the wait phase.
    #[arg(long, default_value_t = 5_000)]
    pub waits: usize,
    /// Samples for the send→start latency.
    #[arg(long, default_value_t = 500)]
    pub latency_samples: usize,
    /// Database to use; default: a new SQLite file in a temporary directory. It should
    /// be empty: the figures assume no other runs.
    #[arg(long)]
    pub database: Option<String>,
    /// Processes executing runs in the throughput measurements (this one and N-1
    /// `nodebase bench-worker` children); the latency is measured with this one only.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Record metrics (the Prometheus recorder the server installs with
    /// `NODEBASE_METRICS_ADDR`), to measure what they cost: each throughput phase runs
    /// four times, recording off, on, on, off, and prints the difference.
    #[arg(long)]
    pub metrics: bool,
    /// Measure only these parts (repeatable): one-step, three-step, keyed, throttled,
    /// ingest, waits, latency. Default: all of them.
    #[arg(long, value_name = "PART")]
    pub only: Vec<String>,
}

impl BenchArgs {
    fn measures(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// Settings of a `bench-worker` child process.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchWorkerArgs {
    #[arg(long)]
    pub database: String,
    #[arg(long, default_value_t = 256)]
    pub workers: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

/// The child process of `bench --processes N`: runs the bench functions until killed.
pub async fn worker(args: BenchWorkerArgs) -> Result<(), StartError> {
    let db = crate::db::connect(&args.database).await?;
    let engine = bench_engine(&db, args.workers, args.batch, None, None)?;
    let _workers = engine.start();
    std::future::pending::<()>().await;
    Ok(())
}

fn bench_engine(
    db: &DatabaseConnection,
    workers: usize,
    batch: usize,
    started: Option<mpsc::UnboundedSender<(String, Instant)>>,
    resumed: Option<mpsc::UnboundedSender<(u64, Instant)>>,
) -> Result<Engine, StartError> {
    Ok(Engine::builder(db.clone())
        .function(steps_function("bench-one-step", "bench/one", 1, None))
        .function(steps_function("bench-three-steps", "bench/three", 3, None))
        .function(steps_function("bench-latency", "bench/latency", 1, started))
        .function(
            steps_function("bench-keyed", "bench/keyed", 1, None)
                .concurrency_key(1, format!("int(event.data.i) % {KEYS}")),
        )
        .function(
            // Never binding here (20 runs per key at 20,000 runs): it prices the count
            // of each key's starts that every first claim makes.
            steps_function("bench-throttled", "bench/throttled", 1, None).throttle(
                Throttle::new(100, Duration::from_secs(1))
                    .key(format!("int(event.data.i) % {KEYS}")),
            ),
        )
        .function(waiting_function(resumed))
        .config(EngineConfig {
            workers,
            batch,
            ..EngineConfig::default()
        })
        .build()?)
}

/// The keys of the keyed phase: its runs' `data.i` modulo this.
const KEYS: usize = 1_000;

/// Runs the benchmark and prints one figure per line.
pub async fn run(args: BenchArgs) -> Result<(), StartError> {
    let dir = std::env::temp_dir().join(format!("nodebase-bench-{}", std::process::id()));
    let url = match &args.database {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&dir)?;
            format!("sqlite://{}/bench.db", dir.display())
        }
    };
    let mut db = crate::db::connect(&url).await?;
    let statements = Arc::new(AtomicU64::new(0));
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    Migrator::up(&db, None).await?;
    if args.metrics {
        crate::metrics::install()?;
    }
    println!("database: {}", describe(&db, &url).await?);
    println!("metrics: {}", if args.metrics { "recorded" } else { "off" });
    println!(
        "processes: {}  workers per process: {}  batch: {}",
        args.processes, args.workers, args.batch
    );

    let (started_tx, started_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let (resumed_tx, resumed_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let engine = bench_engine(
        &db,
        args.workers,
        args.batch,
        Some(started_tx),
        Some(resumed_tx),
    )?;

    let phases = [
        ("one-step", "bench/one", "one-step"),
        ("three-step", "bench/three", "three-step"),
        (
            "keyed",
            "bench/keyed",
            "keyed one-step (1,000 keys, 1 at once per key)",
        ),
        (
            "throttled",
            "bench/throttled",
            "throttled one-step (1,000 keys, 100 starts per 1s per key)",
        ),
    ];
    for part in &args.only {
        let known = ["ingest", "waits", "latency"].contains(&part.as_str())
            || phases.iter().any(|(name, _, _)| name == part);
        if !known {
            return Err(format!("--only {part}: no such part of the benchmark").into());
        }
    }
    if args.metrics {
        // A process's first phase is its slowest (connections, caches): not counted.
        crate::engine::metrics::set_enabled(false);
        throughput(
            &engine,
            &db,
            &args,
            &url,
            "bench/one",
            "warm-up (not counted)",
        )
        .await?;
        clear(&db).await?;
    }
    for (_, event, label) in phases
        .into_iter()
        .filter(|(part, _, _)| args.measures(part))
    {
        if args.metrics {
            metrics_paired(&engine, &db, &args, &url, event, label).await?;
            continue;
        }
        let before = Cost::read(&db, &statements).await?;
        throughput(&engine, &db, &args, &url, event, label).await?;
        let after = Cost::read(&db, &statements).await?;
        println!("  {}", after.since(&before, args.runs));
        clear(&db).await?;
    }
    // The rest with metrics as asked.
    crate::engine::metrics::set_enabled(args.metrics);
    if args.measures("ingest") {
        ingest(&engine, &db, &args).await?;
        clear(&db).await?;
    }
    if args.measures("waits") {
        waits(&engine, &db, &args, resumed_rx).await?;
        clear(&db).await?;
    }
    if args.measures("latency") {
        latency(&engine, &args, started_rx).await?;
        end_to_end(&engine, &args).await?;
    }
    println!("peak RSS: {:.1} MB", peak_rss_kb()? as f64 / 1024.0);

    drop(db);
    if args.database.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The database, and for PostgreSQL whether the connection is encrypted: TLS costs the
/// engine about a third of its throughput here, so figures are comparable only with the
/// same answer.
async fn describe(db: &DatabaseConnection, url: &str) -> Result<String, StartError> {
    if url.starts_with("sqlite:") {
        return Ok(format!("{url} (SQLite, WAL, synchronous=NORMAL)"));
    }
    let host = url.rsplit('@').next().unwrap_or(url);
    let tls = crate::db::encrypted(db).await?;
    Ok(format!(
        "PostgreSQL at {host} ({})",
        if tls { "over TLS" } else { "in the clear" }
    ))
}

/// A function of `steps` consecutive `step.run`s; the first tells `started` when it begins.
fn steps_function(
    id: &str,
    event: &str,
    steps: usize,
    started: Option<mpsc::UnboundedSender<(String, Instant)>>,
) -> Function {
    Function::new(id.to_string(), move |ctx| {
        let started = started.clone();
        async move {
            let mut sum = 0u64;
            for i in 0..steps {
                let started = started.clone();
                let key = ctx.event.id.clone();
                sum += ctx
                    .step
                    .run("step", || async move {
                        if let (0, Some(tx)) = (i, started) {
                            let _ = tx.send((key, Instant::now()));
                        }
                        Ok(i as u64)
                    })
                    .await?;
            }
            Ok(json!(sum))
        }
    })
    .trigger(event)
}

/// Waits for `bench/wait.match` with the same `data.k`, then tells `resumed` in a step.
fn waiting_function(resumed: Option<mpsc::UnboundedSender<(u64, Instant)>>) -> Function {
    Function::new("bench-wait", move |ctx| {
        let resumed = resumed.clone();
        async move {
            let k = ctx.event.data["k"].as_u64().unwrap_or_default();
            let wait =
                WaitFor::event("bench/wait.match", Duration::from_secs(3600)).matching("data.k");
            let matched = ctx.step.wait_for_event("match", wait).await?;
            ctx.step
                .run("resumed", || async move {
                    if let Some(tx) = resumed {
                        let _ = tx.send((k, Instant::now()));
                    }
                    Ok(())
                })
                .await?;
            Ok(json!(matched.is_some()))
        }
    })
    .trigger("bench/wait.start")
    .waits_for("bench/wait.match")
}

/// W runs wait; then W matching events go out in batches of 100, one after another.
async fn waits(
    engine: &Engine,
    db: &DatabaseConnection,
    args: &BenchArgs,
    mut resumed: mpsc::UnboundedReceiver<(u64, Instant)>,
) -> Result<(), StartError> {
    let n = args.waits;
    let workers = engine.start();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let events = chunk
            .iter()
            .map(|k| NewEvent::new("bench/wait.start", json!({ "k": k })))
            .collect();
        engine.send_many(db, events).await?;
    }
    // Every run has parked on its wait.
    let parked = Instant::now();
    while (wait::Entity::find()
        .filter(wait::Column::Status.eq("open"))
        .count(db)
        .await? as usize)
        < n
    {
        if parked.elapsed() > Duration::from_secs(300) {
            return Err("the waiting runs did not all park within 5 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let parked = parked.elapsed();

    let updates = engine.subscribe();
    let start = Instant::now();
    let mut sent_at = vec![start; n];
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let now = Instant::now();
        let events = chunk
            .iter()
            .map(|&k| {
                sent_at[k] = now;
                NewEvent::new("bench/wait.match", json!({ "k": k }))
            })
            .collect();
        engine.send_many(db, events).await?;
    }
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        let (k, at) = tokio::time::timeout(Duration::from_secs(60), resumed.recv())
            .await?
            .ok_or("the waiting function stopped")?;
        latencies.push(at.duration_since(sent_at[k as usize]));
    }
    let matched = start.elapsed();
    wait_completed(db, updates, n).await?;
    let (p50, p99, _) = percentiles(&mut latencies);
    println!(
        "wait_for_event: {n} runs parked in {:.2} s; {n} matching events resumed them in {:.2} s = {:.0} events matched/s; send→resume p50 {p50:.2} ms, p99 {p99:.2} ms",
        parked.as_secs_f64(),
        matched.as_secs_f64(),
        n as f64 / matched.as_secs_f64(),
    );

    // Low load: one waiting run at a time, and its event once it has parked.
    let mut updates = engine.subscribe();
    let mut quiet = Vec::with_capacity(args.latency_samples);
    for i in 0..args.latency_samples + 20 {
        let k = n + i;
        let receipt = engine
            .send(db, NewEvent::new("bench/wait.start", json!({ "k": k })))
            .await?;
        let run_id = receipt.run_ids.first().ok_or("the event started no run")?;
        until(&mut updates, run_id, |s| s == RunStatus::Sleeping).await?;
        let sent = Instant::now();
        engine
            .send(db, NewEvent::new("bench/wait.match", json!({ "k": k })))
            .await?;
        let (resumed_k, at) = tokio::time::timeout(Duration::from_secs(10), resumed.recv())
            .await?
            .ok_or("the waiting function stopped")?;
        if resumed_k != k as u64 {
            return Err("wait samples out of order".into());
        }
        if i >= 20 {
            quiet.push(at.duration_since(sent));
        }
    }
    workers.shutdown().await;
    let (p50, p99, max) = percentiles(&mut quiet);
    println!(
        "  one at a time: send→resume p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({} samples)",
        quiet.len()
    );
    Ok(())
}

/// Waits (at most 10 s) until the engine announces that `run_id` is in a state `wanted`.
async fn until(
    updates: &mut broadcast::Receiver<RunUpdate>,
    run_id: &str,
    wanted: impl Fn(RunStatus) -> bool,
) -> Result<(), StartError> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match updates.recv().await {
                Ok(u) if u.run_id == run_id && wanted(u.status) => return Ok(()),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err("engine stopped"),
            }
        }
    })
    .await??;
    Ok(())
}

/// p50, p99 and the maximum of `samples`, in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    (pick(0.50), pick(0.99), pick(1.0))
}

/// Sends one three-step run at a time and times it from the send to its end.
async fn end_to_end(engine: &Engine, args: &BenchArgs) -> Result<(), StartError> {
    let workers = engine.start();
    let db = engine.db().clone();
    let mut updates = engine.subscribe();
    let mut samples = Vec::with_capacity(args.latency_samples);
    for i in 0..args.latency_samples + 20 {
        let sent = Instant::now();
        let receipt = engine
            .send(&db, NewEvent::new("bench/three", json!({})))
            .await?;
        let run_id = receipt.run_ids.first().ok_or("the event started no run")?;
        until(&mut updates, run_id, RunStatus::is_final).await?;
        if i >= 20 {
            samples.push(sent.elapsed());
        }
    }
    workers.shutdown().await;
    let (p50, p99, max) = percentiles(&mut samples);
    println!(
        "send→three-step run completed: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({} samples)",
        samples.len()
    );
    Ok(())
}

async fn throughput(
    engine: &Engine,
    db: &DatabaseConnection,
    args: &BenchArgs,
    url: &str,
    event: &str,
    label: &str,
) -> Result<f64, StartError> {
    let enqueue = Instant::now();
    for chunk_start in (0..args.runs).step_by(1_000) {
        let n = 1_000.min(args.runs - chunk_start);
        let events = (0..n)
            .map(|i| NewEvent::new(event, json!({ "i": chunk_start + i })))
            .collect();
        let txn = db.begin().await?;
        engine.send_many(&txn, events).await?;
        txn.commit().await?;
    }
    let enqueue = enqueue.elapsed();
    if db.get_database_backend() == DbBackend::Postgres {
        // Statistics of the queue as it stands, as a long-lived table's would be, rather
        // than of the empty table `clear` left — or of whatever moment autoanalyze caught.
        db.execute_unprepared("ANALYZE run, event").await?;
    }

    let updates = engine.subscribe();
    let start = Instant::now();
    let mut children = Vec::new();
    for _ in 1..args.processes {
        children.push(
            tokio::process::Command::new(std::env::current_exe()?)
                .args(["bench-worker", "--database", url])
                .args(["--workers", &args.workers.to_string()])
                .args(["--batch", &args.batch.to_string()])
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    let workers = engine.start();
    wait_completed(db, updates, args.runs).await?;
    let elapsed = start.elapsed();
    for mut child in children {
        let _ = child.kill().await;
    }
    workers.shutdown().await;

    let rate = args.runs as f64 / elapsed.as_secs_f64();
    println!(
        "{label} runs: {} in {:.2} s = {rate:.0} runs/s   (enqueue: {:.0} events/s)",
        args.runs,
        elapsed.as_secs_f64(),
        args.runs as f64 / enqueue.as_secs_f64(),
    );
    Ok(rate)
}

/// A throughput phase four times in this process, metrics off, on, on, off (a drift
/// between the runs falls on both sides alike), and what recording cost it.
async fn metrics_paired(
    engine: &Engine,
    db: &DatabaseConnection,
    args: &BenchArgs,
    url: &str,
    event: &str,
    label: &str,
) -> Result<(), StartError> {
    let (mut off, mut on) = (0.0, 0.0);
    for record in [false, true, true, false] {
        crate::engine::metrics::set_enabled(record);
        let shown = format!("{label} [metrics {}]", if record { "on" } else { "off" });
        let rate = throughput(engine, db, args, url, event, &shown).await?;
        clear(db).await?;
        *(if record { &mut on } else { &mut off }) += rate / 2.0;
    }
    println!(
        "{label}: {on:.0} runs/s with metrics, {off:.0} without = {:+.1}%",
        (on / off - 1.0) * 100.0
    );
    Ok(())
}

/// The counters behind "what a run cost".
struct Cost {
    statements: u64,
    /// Committed and rolled-back transactions of the database (PostgreSQL only).
    transactions: Option<i64>,
}

impl Cost {
    async fn read(db: &DatabaseConnection, statements: &AtomicU64) -> Result<Cost, StartError> {
        let transactions = if db.get_database_backend() == DbBackend::Postgres {
            // The server publishes its backends' counts at most once a second.
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT (xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database \
                     WHERE datname = current_database()",
                ))
                .await?
                .ok_or("pg_stat_database has no row for this database")?;
            Some(row.try_get::<i64>("", "n")?)
        } else {
            None
        };
        Ok(Cost {
            statements: statements.load(Ordering::Relaxed),
            transactions,
        })
    }

    fn since(&self, before: &Cost, runs: usize) -> String {
        let per_run = |n: f64| n / runs as f64;
        // The statement that read the counters is not the runs' doing.
        let statements = self.statements.saturating_sub(before.statements + 1);
        let mut line = format!(
            "cost per run: {:.2} statements (main pool; claims and notices not counted)",
            per_run(statements as f64)
        );
        if let (Some(now), Some(then)) = (self.transactions, before.transactions) {
            line += &format!(", {:.2} transactions", per_run((now - then - 1) as f64));
        }
        line
    }
}

/// N events of the one-step function (and their N runs) recorded by one `send_many` in
/// one transaction, as a queue's bulk insert records its jobs; no worker runs.
async fn ingest(
    engine: &Engine,
    db: &DatabaseConnection,
    args: &BenchArgs,
) -> Result<(), StartError> {
    let events = (0..args.runs)
        .map(|i| NewEvent::new("bench/one", json!({ "i": i })))
        .collect();
    let start = Instant::now();
    let txn = db.begin().await?;
    engine.send_many(&txn, events).await?;
    txn.commit().await?;
    let elapsed = start.elapsed();
    println!(
        "ingest: {} events and their runs in one send: {:.2} s = {:.0} events/s",
        args.runs,
        elapsed.as_secs_f64(),
        args.runs as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Deletes the runs, steps and events of a measurement, so that the next starts from an
/// empty queue.
async fn clear(db: &DatabaseConnection) -> Result<(), StartError> {
    // Steps first: on PostgreSQL no foreign key cascades from a run to its steps.
    crate::engine::entities::step::Entity::delete_many()
        .exec(db)
        .await?;
    run::Entity::delete_many().exec(db).await?;
    crate::engine::entities::awaited_event::Entity::delete_many()
        .exec(db)
        .await?;
    crate::engine::entities::event::Entity::delete_many()
        .exec(db)
        .await?;
    if db.get_database_backend() == DbBackend::Postgres {
        // What autovacuum would do in a while: clear the dead rows out of the indexes.
        db.execute_unprepared("VACUUM ANALYZE run, step, event, wait, awaited_event")
            .await?;
    }
    Ok(())
}

/// Counts completions as the engine announces them; if the announcements outrun us,
/// counts in the database instead.
async fn wait_completed(
    db: &DatabaseConnection,
    mut updates: broadcast::Receiver<RunUpdate>,
    expected: usize,
) -> Result<(), StartError> {
    let mut completed = 0usize;
    while completed < expected {
        match updates.recv().await {
            Ok(update) if update.status == RunStatus::Completed => completed += 1,
            Ok(update) if update.status == RunStatus::Failed => {
                return Err(format!("run {} failed", update.run_id).into())
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                completed = run::Entity::find()
                    .filter(run::Column::Status.eq(RunStatus::Completed))
                    .count(db)
                    .await? as usize;
            }
            Err(broadcast::error::RecvError::Closed) => return Err("engine stopped".into()),
        }
    }
    Ok(())
}

async fn latency(
    engine: &Engine,
    args: &BenchArgs,
    mut started: mpsc::UnboundedReceiver<(String, Instant)>,
) -> Result<(), StartError> {
    let workers = engine.start();
    let db = Arc::new(engine.db().clone());
    let mut updates = engine.subscribe();
    let mut samples = Vec::with_capacity(args.latency_samples);
    let mut recorded = Vec::with_capacity(args.latency_samples);
    // A few unmeasured runs first, so connections and caches are warm.
    for i in 0..args.latency_samples + 20 {
        let sent = Instant::now();
        let receipt = engine
            .send(&*db, NewEvent::new("bench/latency", json!({})))
            .await?;
        let returned = sent.elapsed();
        let (event_id, at) = tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await?
            .ok_or("the latency function stopped")?;
        if event_id != receipt.event_id {
            return Err("latency samples out of order".into());
        }
        if i >= 20 {
            samples.push(at.duration_since(sent));
            recorded.push(returned);
        }
        // Low load: one run at a time; the next is sent once this one has finished.
        let run_id = receipt
            .run_ids
            .first()
            .ok_or("the latency event started no run")?;
        until(&mut updates, run_id, RunStatus::is_final).await?;
    }
    workers.shutdown().await;
    let (p50, p99, max) = percentiles(&mut samples);
    let (send_p50, ..) = percentiles(&mut recorded);
    println!(
        "send→first-step latency: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({} samples; \
         the send itself returned after {send_p50:.2} ms, median)",
        samples.len()
    );
    Ok(())
}

/// The process's peak resident set size (VmHWM), in KiB.
fn peak_rss_kb() -> Result<u64, StartError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status".into())
}
