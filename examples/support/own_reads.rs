//! What the own-reads examples share: the modes they compare, and how they report.
#![allow(dead_code)] // each includer uses a different part

use std::time::Duration;

/// How a router keeps a session's reads consistent with its writes.
#[derive(Clone, Copy)]
pub enum Mode {
    Window,
    Position { wait: Duration },
}

/// The modes compared, with their names in the table.
pub const MODES: [(&str, Mode); 5] = [
    ("window, 2 s (Rails)", Mode::Window),
    (
        "position, no wait",
        Mode::Position {
            wait: Duration::ZERO,
        },
    ),
    (
        "position, wait ≤ 2 ms",
        Mode::Position {
            wait: Duration::from_millis(2),
        },
    ),
    (
        "position, wait ≤ 5 ms",
        Mode::Position {
            wait: Duration::from_millis(5),
        },
    ),
    (
        "position, wait ≤ 20 ms",
        Mode::Position {
            wait: Duration::from_millis(20),
        },
    ),
];

/// p50 and p99.
pub fn percentiles(latencies: &mut [Duration]) -> (Duration, Duration) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

pub fn micros(duration: Duration) -> String {
    format!("{} µs", duration.as_micros())
}

/// The table's head, and its reference row: a plain replica read under the same load.
pub fn print_head(writers: usize, trials: i32, load: &str, plain: (Duration, Duration)) {
    println!("{writers} writers busy on the primary ({load}); {trials} write-then-read trials per mode\n");
    println!("| read-your-own-writes | own-reads on the replica | stale | read p50 | read p99 | p99 over a plain replica read |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| (plain replica read, for reference) | | | {} | {} | |",
        micros(plain.0),
        micros(plain.1)
    );
}

/// One mode's row.
pub fn print_row(
    name: &str,
    on_replica: u64,
    trials: i32,
    stale: usize,
    latencies: &mut [Duration],
    plain_p99: Duration,
) {
    let (p50, p99) = percentiles(latencies);
    println!(
        "| {name} | {:.1} % | {stale} | {} | {} | {} |",
        100.0 * on_replica as f64 / f64::from(trials),
        micros(p50),
        micros(p99),
        micros(p99.saturating_sub(plain_p99)),
    );
}
