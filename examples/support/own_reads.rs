//! What the own-reads examples share: the modes they compare, and how they report.
#![allow(dead_code)] // each includer uses a different part

use std::time::Duration;

/// One mode's router and what its trials saw.
pub struct Run<R> {
    pub name: &'static str,
    pub db: R,
    pub stale: usize,
    pub latencies: Vec<Duration>,
}

/// How a router keeps a session's reads consistent with its writes.
#[derive(Clone, Copy)]
pub enum Mode {
    Window,
    Position { wait: Duration },
}

/// Write-then-read trials per mode.
pub const TRIALS: i32 = 2000;
/// Writers keeping the primary busy: `WRITERS` from the environment (0 for an idle primary),
/// 4 by default.
pub fn writers() -> usize {
    std::env::var("WRITERS")
        .ok()
        .and_then(|writers| writers.parse().ok())
        .unwrap_or(4)
}

/// What replication does during the run, from `REPLICATION`: it runs (`live`, the default),
/// its apply is stopped (`paused`: nothing the trials write reaches the replica), or it
/// applies each transaction a second late (`delayed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    Live,
    Paused,
    Delayed,
}

impl Replication {
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("REPLICATION").as_deref() {
            Err(_) | Ok("live") => Ok(Replication::Live),
            Ok("paused") => Ok(Replication::Paused),
            Ok("delayed") => Ok(Replication::Delayed),
            Ok(other) => Err(format!(
                "REPLICATION={other}: expected live, paused or delayed"
            )),
        }
    }
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
pub fn print_head(
    writers: usize,
    replication: Replication,
    trials: i32,
    load: &str,
    plain: (Duration, Duration),
) {
    let replication = match replication {
        Replication::Live => "replication live",
        Replication::Paused => "replication paused",
        Replication::Delayed => "replication delayed by 1 s",
    };
    match writers {
        0 => println!("idle primary, {replication}; {trials} write-then-read trials per mode\n"),
        _ => println!("{writers} writers busy on the primary ({load}), {replication}; {trials} write-then-read trials per mode\n"),
    }
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

/// The measurement itself, written once for both databases (a macro, so that each example
/// runs it on its own concrete pool and router types): [`writers`] busy on `$primary`, then
/// the [`MODES`] in turn, trial by trial, each trial a session's `$write` and its `$read` of
/// it, and the table. `$load(rows)` is the writers' statement; `$replication` says what the
/// caller made replication do.
macro_rules! measure {
    (
        primary: $primary:expr,
        replica: $replica:expr,
        replication: $replication:expr,
        router: $router:ty,
        load: $load:expr,
        write: $write:expr,
        read: $read:expr $(,)?
    ) => {{
        let (primary, replica) = ($primary, $replica);
        let rows: u32 = std::env::var("ROWS")
            .ok()
            .and_then(|rows| rows.parse().ok())
            .unwrap_or(4);
        // Writes per second per writer; unset, as fast as the primary takes them.
        let pace: Option<u32> = std::env::var("PACE")
            .ok()
            .and_then(|pace| pace.parse().ok());
        let insert = $load(rows);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..own_reads::writers())
            .map(|_| {
                let (primary, stop, insert) = (primary.clone(), Arc::clone(&stop), insert.clone());
                tokio::spawn(async move {
                    let mut writes = 0_u64;
                    let mut ticks = pace.map(|pace| {
                        let mut ticks = tokio::time::interval(Duration::from_secs(1) / pace.max(1));
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ticks
                    });
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(ticks) = &mut ticks {
                            ticks.tick().await;
                        }
                        if sqlx::raw_sql(sqlx::AssertSqlSafe(insert.as_str()))
                            .execute(&primary)
                            .await
                            .is_ok()
                        {
                            writes += 1;
                        }
                    }
                    writes
                })
            })
            .collect();

        // The same read sent straight to the replica, under the same load.
        let mut plain = Vec::with_capacity(TRIALS as usize);
        for user in 0..TRIALS {
            let reading = Instant::now();
            let _: i64 = sqlx::query_scalar($read)
                .bind(-user)
                .fetch_one(&replica)
                .await?;
            plain.push(reading.elapsed());
        }
        let plain = percentiles(&mut plain);
        let load = match pace {
            Some(pace) => format!("{rows} rows per insert, {pace} inserts/s each"),
            None => format!("{rows} rows per insert, as fast as the primary takes them"),
        };
        print_head(own_reads::writers(), $replication, TRIALS, &load, plain);
        let mut runs = Vec::new();
        for (name, mode) in MODES {
            let builder = ReplicaRouter::builder(
                Balance::builder(P2c::new())
                    .endpoint("primary", primary.clone())
                    .build()?,
                Balance::builder(P2c::new())
                    .endpoint("replica", replica.clone())
                    .build()?,
            );
            let db: $router = match mode {
                Mode::Window => builder.read_your_writes(Duration::from_secs(2)).build(),
                Mode::Position { wait } => builder
                    .read_your_writes_by_position(DEFAULT_POSITION_CAP)
                    .replay_wait(wait)
                    .build(),
            };
            runs.push(Run {
                name,
                db,
                stale: 0,
                latencies: Vec::with_capacity(TRIALS as usize),
            });
        }
        // The modes take turns, trial by trial: the replica's lag drifts over a run, and each
        // mode must see the same drift.
        let mut user = 0;
        for trial in 0..TRIALS {
            for turn in 0..runs.len() {
                let run = &mut runs[(trial as usize + turn) % 5];
                user += 1;
                let session = run.db.session(user);
                sqlx::query($write).bind(user).execute(&session).await?;
                let reading = Instant::now();
                let mine: i64 = sqlx::query_scalar($read)
                    .bind(user)
                    .fetch_one(&session)
                    .await?;
                run.latencies.push(reading.elapsed());
                run.stale += usize::from(mine != 1);
            }
        }
        for run in &mut runs {
            let on_replica = run.db.stats().replica_reads;
            print_row(
                run.name,
                on_replica,
                TRIALS,
                run.stale,
                &mut run.latencies,
                plain.1,
            );
        }
        stop.store(true, Ordering::Relaxed);
        let mut writes = 0;
        for writer in writers {
            writes += writer.await?;
        }
        println!("\n({writes} writes by the writers meanwhile)");
        Ok::<(), BoxError>(())
    }};
}
