//! A server with `NODEBASE_METRICS_ADDR` set and nobody scraping it must not keep every
//! histogram sample it records: the recorder holds samples until they are drained into
//! the buckets, so the server drains them on a timer, not only at a scrape. One test: the
//! recorder is process-wide.
#![cfg(feature = "ssr")]

use std::time::Duration;

use nodebase::engine::metrics::STEP_DURATION;

/// This process's resident memory, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_samples_are_drained_with_nobody_scraping() {
    const EVERY: Duration = Duration::from_millis(20);
    let _handle = nodebase::metrics::install_with_upkeep(EVERY).unwrap();
    let step = metrics::histogram!(STEP_DURATION, "function" => "f", "kind" => "run");

    // 8,000,000 samples held undrained take about 66 MB (8 bytes each, in blocks of 64).
    // Recorded in 80 rounds with an upkeep period between rounds, at most a few rounds'
    // worth (100,000 samples each, under 1 MB) are held at once.
    let before = resident();
    for _ in 0..80 {
        for i in 0..100_000 {
            step.record(f64::from(i % 1000) / 1000.0);
        }
        tokio::time::sleep(EVERY * 2).await;
    }
    let grew = resident().saturating_sub(before);
    assert!(
        grew < 24 * 1024 * 1024,
        "resident memory grew by {} MB while recording 8,000,000 samples",
        grew / (1024 * 1024)
    );
}
