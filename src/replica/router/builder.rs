//! Building a [`ReplicaRouter`]: pools, classifier, sessions, consistency mode, monitors.

use super::shed::PrimaryReadCap;
use super::stats::Counters;
use super::{ReplicaRouter, Shared, WholeRouter};
use crate::background::{DriverState, DriverStatus, StartFn, StartOnRuntime};
use crate::replica::lag::LagMonitor;
use crate::replica::nodes::Nodes;
use crate::replica::position::SessionPositions;
use crate::replica::role::{self, RoleMonitor};
use crate::replica::session::{ReadYourWrites, SessionWindows, Sessions};
use crate::replica::SqlClassifier;
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`ReplicaRouter`] ([`ReplicaRouter::builder`]).
pub struct ReplicaRouterBuilder<P: Nodes, R, Cl, X> {
    primary: P,
    replicas: R,
    classify: Cl,
    session: X,
    pub(in crate::replica) settings: Settings<P::Key>,
}

/// What a builder holds besides its pools, classifier and session: carried over whole when
/// `classify` or `session` change the builder's type.
pub(in crate::replica) struct Settings<K> {
    consistency: Consistency,
    replay_wait: Duration,
    lag_monitor: Option<LagMonitor<K>>,
    role_monitor: Option<RoleMonitor<K>>,
    max_primary_read_share: Option<f64>,
    reads: Reads,
    /// Set by the MySQL front's `causal_reads` (Galera): a session's pinned reads first wait
    /// on their node for the cluster's writes.
    pub(in crate::replica) causal_reads: bool,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::telemetry::Metrics>,
}

/// Where a router sends reads ([`ReplicaRouterBuilder::reads`]): libpq's
/// `target_session_attrs`, for a router that keeps both the primary and the replicas.
///
/// Writes go to the primary whatever this says.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::P2c, replica::{HttpMethods, Reads, ReplicaRouter}, Balance, BoxError, Error};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let node = |role: &'static str| service_fn(move |_: http::Request<()>| async move { Ok::<_, BoxError>(role) });
/// let primary = Balance::builder(P2c::new()).endpoint("p", node("primary")).build()?;
/// let replicas = Balance::builder(P2c::new()).endpoint("r", node("replica")).build()?;
/// let db = ReplicaRouter::builder(primary, replicas)
///     .classify(HttpMethods)
///     .reads(Reads::ReplicasOnly)
///     .build();
/// assert_eq!(db.clone().oneshot(http::Request::new(())).await?, "replica");
///
/// db.replicas().exclude(&"r", "maintenance")?;
/// let error = db.clone().oneshot(http::Request::new(())).await.unwrap_err();
/// assert!(matches!(error.downcast_ref(), Some(Error::NoReplica { .. })));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reads {
    /// To a replica in rotation; to the primary when none is, or when a replica fails a
    /// read (the default; libpq's `prefer-standby`).
    #[default]
    PreferReplicas,
    /// To replicas only (libpq's `standby`): a read with no replica in rotation fails at
    /// once with [`Error::NoReplica`](crate::Error::NoReplica), and a read a replica fails
    /// is not sent to the primary. A session's own reads after its write still go to the
    /// primary when no replica has it (read-your-own-writes; turn it off with
    /// [`read_your_writes`](ReplicaRouterBuilder::read_your_writes)`(Duration::ZERO)` to keep
    /// every read off the primary).
    ReplicasOnly,
    /// To the primary (libpq's `primary`): every statement runs there, and the replicas are
    /// kept only as candidates a role monitor may find promoted.
    Primary,
}

/// How sessions read their own writes.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(any(
        feature = "sqlx-postgres",
        feature = "sqlx-0_8",
        feature = "sqlx-mysql"
    )),
    allow(dead_code)
)]
enum Consistency {
    Window(Duration),
    Position(Duration),
}

/// The default read-your-own-writes window (Rails' `delay` of its database selector).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);

impl<P, R> ReplicaRouter<P, R>
where
    P: Nodes,
    R: Nodes<Key = P::Key, Service = P::Service, Classify = P::Classify>,
{
    /// Starts a router over a pool of primaries (usually one) and a pool of replicas.
    pub fn builder(
        primary: P,
        replicas: R,
    ) -> ReplicaRouterBuilder<P, R, SqlClassifier, WholeRouter> {
        ReplicaRouterBuilder {
            primary,
            replicas,
            classify: SqlClassifier::new(),
            session: WholeRouter,
            settings: Settings {
                consistency: Consistency::Window(DEFAULT_WINDOW),
                replay_wait: Duration::ZERO,
                lag_monitor: None,
                role_monitor: None,
                max_primary_read_share: None,
                reads: Reads::PreferReplicas,
                causal_reads: false,
                #[cfg(feature = "metrics")]
                metrics: None,
            },
        }
    }
}

impl<P, R, Cl, X> ReplicaRouterBuilder<P, R, Cl, X>
where
    P: Nodes,
    R: Nodes<Key = P::Key, Service = P::Service, Classify = P::Classify>,
{
    /// How requests are classified (default [`SqlClassifier`] on `Req: AsRef<str>`).
    pub fn classify<Cl2>(self, classify: Cl2) -> ReplicaRouterBuilder<P, R, Cl2, X> {
        ReplicaRouterBuilder {
            primary: self.primary,
            replicas: self.replicas,
            classify,
            session: self.session,
            settings: self.settings,
        }
    }

    /// The session a request belongs to, for read-your-own-writes: any
    /// [`sticky`](crate::sticky) key extractor (a header, a cookie, a user id through
    /// [`key_fn`](crate::sticky::key_fn)). A request without a key belongs to no session: it
    /// is never pinned and its writes pin nobody.
    pub fn session<X2>(self, session: X2) -> ReplicaRouterBuilder<P, R, Cl, X2> {
        ReplicaRouterBuilder {
            primary: self.primary,
            replicas: self.replicas,
            classify: self.classify,
            session,
            settings: self.settings,
        }
    }

    /// How long after a session's write its reads stay on the primary (default 2 s).
    /// `Duration::ZERO` turns read-your-own-writes off; `Duration::MAX` pins for good.
    pub fn read_your_writes(mut self, window: Duration) -> Self {
        self.settings.consistency = Consistency::Window(window);
        self
    }

    #[cfg(any(
        feature = "sqlx-postgres",
        feature = "sqlx-0_8",
        feature = "sqlx-mysql"
    ))]
    /// Read-your-own-writes by position instead of by window (the sqlx front: `PgRouter`,
    /// features `sqlx-postgres` and `sqlx-0_8`, or `MySqlRouter`, feature `sqlx-mysql`): after
    /// a session's write commits, the router captures the primary's position (PostgreSQL's
    /// WAL position, MariaDB's GTID), and the session's reads go to
    /// a replica only once that replica has replayed it (checked per read, one round trip to
    /// the replica), otherwise to the primary. A session's position holds for `cap` (30 s,
    /// [`DEFAULT_POSITION_CAP`](crate::replica::DEFAULT_POSITION_CAP)); the tower front, which cannot
    /// check a replica's position, keeps such reads on the primary.
    pub fn read_your_writes_by_position(mut self, cap: Duration) -> Self {
        self.settings.consistency = Consistency::Position(cap);
        self
    }

    #[cfg(any(
        feature = "sqlx-postgres",
        feature = "sqlx-0_8",
        feature = "sqlx-mysql"
    ))]
    /// Position mode: how long a read may wait for a replica to replay the session's write
    /// before it goes to the primary (default zero: each replica is asked once, at once).
    ///
    /// Under write load a replica is typically a few hundred microseconds behind a write
    /// when the session's next read arrives, so without a wait only about half of those
    /// own-reads reach a replica; with a few milliseconds nearly all do. While it waits, the
    /// read asks the replicas in turn how far they have replayed, one round trip each
    /// (`pg_last_wal_replay_lsn()`, about 60 µs on loopback), until one has the position or
    /// the budget is spent; a replica that fails to answer is not asked again. The wait adds
    /// at most the budget (plus one round trip) to a read, and only to a read that follows
    /// its session's write.
    /// Measured with `cargo run --example own_reads --features sqlx-postgres`.
    pub fn replay_wait(mut self, budget: Duration) -> Self {
        self.settings.replay_wait = budget;
        self
    }

    /// Measures every replica in the background and holds those too far behind out of reads
    /// (see [`LagMonitor`]); reads they would have taken go to other replicas, or fall back to
    /// the primary. Started on the tokio runtime (at the first call if built outside one); it
    /// ends with the replica pool's last handle.
    pub fn lag_monitor(mut self, monitor: LagMonitor<P::Key>) -> Self {
        self.settings.lag_monitor = Some(monitor);
        self
    }

    /// Finds the primary in the background and keeps each pool to the nodes of its role, so
    /// that writes follow a promoted replica and fail fast while there is no primary (see
    /// [`RoleMonitor`]; put every node in both pools). Started like the lag monitor.
    pub fn role_monitor(mut self, monitor: RoleMonitor<P::Key>) -> Self {
        self.settings.role_monitor = Some(monitor);
        self
    }

    /// Caps the share of reads the primary serves (0–1; off by default). When no replica is
    /// in rotation, reads fall back to the primary only while it serves less than `share` of
    /// the reads of the last one to two seconds; beyond that they fail at once with
    /// [`Error::PrimaryReadShare`](crate::Error::PrimaryReadShare), so that losing the replicas
    /// does not move their whole load onto the primary. Reads the primary must serve for
    /// read-your-own-writes are never refused, and under 20 reads a window nothing is.
    ///
    /// ```
    /// use tower::{service_fn, ServiceExt};
    /// use tower_lb::{policy::P2c, replica::{HttpMethods, ReplicaRouter}, Balance, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let node = || service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(()) });
    /// let primary = Balance::builder(P2c::new()).endpoint("p", node()).build().unwrap();
    /// let replicas = Balance::builder(P2c::new()).endpoint("r", node()).build().unwrap();
    /// let db = ReplicaRouter::builder(primary, replicas)
    ///     .classify(HttpMethods)
    ///     .max_primary_read_share(0.5)
    ///     .build();
    /// db.replicas().exclude(&"r", "maintenance").unwrap(); // no replica in rotation
    /// let mut refused = 0;
    /// for _ in 0..1000 {
    ///     if let Err(error) = db.clone().oneshot(http::Request::new(())).await {
    ///         let capped = matches!(error.downcast_ref(), Some(Error::PrimaryReadShare { percent: 50 }));
    ///         refused += usize::from(capped);
    ///     }
    /// }
    /// assert!((400..=600).contains(&refused), "about half refused: {refused}");
    /// # }
    /// ```
    pub fn max_primary_read_share(mut self, share: f64) -> Self {
        self.settings.max_primary_read_share = Some(share);
        self
    }

    /// Where reads go (default [`Reads::PreferReplicas`]: replicas, the primary when none is
    /// fit).
    pub fn reads(mut self, reads: Reads) -> Self {
        self.settings.reads = reads;
        self
    }

    #[cfg(feature = "metrics")]
    /// Publishes the router's counts (writes, reads by route, reads shed), its lag monitor's
    /// replica lag and its position waits through the `metrics` facade (feature `metrics`;
    /// the names are in [`telemetry`](crate::telemetry)). Name the primary and replica pools'
    /// own metrics on their builders.
    pub fn metrics(mut self, metrics: crate::telemetry::Metrics) -> Self {
        self.settings.metrics = Some(metrics);
        self
    }

    /// The router.
    pub fn build(self) -> ReplicaRouter<P, R, Cl, X> {
        let settings = self.settings;
        let mode = match settings.consistency {
            Consistency::Window(window) if window.is_zero() => None,
            Consistency::Window(window) => {
                Some(ReadYourWrites::Window(SessionWindows::new(window)))
            }
            Consistency::Position(cap) => Some(ReadYourWrites::Position(
                SessionPositions::new(cap).waiting(settings.replay_wait),
            )),
        };
        let mut spawns: Vec<StartFn> = Vec::new();
        let counters = Arc::new(Counters::default());
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &settings.metrics {
            let (counters, metrics) = (Arc::downgrade(&counters), metrics.clone());
            spawns.push(Box::new(move |runtime| {
                runtime.spawn(super::publish::publish(counters, metrics));
            }));
        }
        let first_rounds: Vec<_> = (settings.lag_monitor.iter().map(LagMonitor::rounds))
            .chain(settings.role_monitor.iter().map(RoleMonitor::rounds))
            .collect();
        let lag_monitor = match settings.lag_monitor {
            None => DriverStatus::new(DriverState::NotNeeded),
            Some(monitor) => {
                #[cfg(feature = "metrics")]
                let monitor = monitor.published(settings.metrics.clone());
                let status = DriverStatus::new(DriverState::WaitingForRuntime);
                let (replicas, running) = (self.replicas.downgrade(), status.clone());
                spawns.push(Box::new(move |runtime| {
                    runtime.spawn(monitor.drive::<R>(replicas, &running));
                }));
                status
            }
        };
        let reprobe_roles = settings.role_monitor.as_ref().map(RoleMonitor::waker);
        let role_monitor = match settings.role_monitor {
            None => DriverStatus::new(DriverState::NotNeeded),
            Some(monitor) => {
                role::hold_ambiguous_nodes(&self.primary, &self.replicas);
                let status = DriverStatus::new(DriverState::WaitingForRuntime);
                let (primary, replicas) = (self.primary.downgrade(), self.replicas.downgrade());
                let running = status.clone();
                spawns.push(Box::new(move |runtime| {
                    runtime.spawn(monitor.drive::<P, R>(primary, replicas, &running));
                }));
                status
            }
        };
        let start_monitors = match spawns.is_empty() {
            true => StartOnRuntime::new(None),
            false => StartOnRuntime::now_or_later(Box::new(move |runtime| {
                spawns.into_iter().for_each(|spawn| spawn(runtime));
            })),
        };
        ReplicaRouter {
            primary: self.primary,
            replicas: self.replicas,
            shared: Arc::new(Shared {
                classify: self.classify,
                session: self.session,
                sessions: Sessions::new(mode),
                read_cap: settings.max_primary_read_share.map(PrimaryReadCap::new),
                reads: settings.reads,
                causal_reads: settings.causal_reads,
                counters,
                #[cfg(feature = "metrics")]
                position_waits: (settings.metrics.as_ref())
                    .map(|m| m.router_histogram(crate::telemetry::POSITION_WAIT)),
                lag_monitor,
                role_monitor,
                reprobe_roles,
                first_rounds,
                start_monitors,
            }),
        }
    }
}

impl<P: Nodes, R, Cl, X> Debug for ReplicaRouterBuilder<P, R, Cl, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaRouterBuilder")
            .field("consistency", &self.settings.consistency)
            .field("reads", &self.settings.reads)
            .field("causal_reads", &self.settings.causal_reads)
            .finish_non_exhaustive()
    }
}
