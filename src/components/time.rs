//! Times and durations, formatted the same on the server and in the browser (UTC), so
//! that hydration sees identical text.

/// `2026-11-25 20:07:16` (UTC) for Unix milliseconds.
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `850 ms`, `3.02 s`, `2 min 5 s`, `1 h 4 min`.
pub fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.2} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(850), "850 ms");
        assert_eq!(format_duration(3_020), "3.02 s");
        assert_eq!(format_duration(125_000), "2 min 5 s");
        assert_eq!(format_duration(3_840_000), "1 h 4 min");
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
    }
}
