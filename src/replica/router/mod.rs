//! [`ReplicaRouter`]: one tower `Service` over a primary pool and a replica pool.
//!
//! The router decides once ([`route`]: which pool, why, what to do if the node fails the
//! request) and each front carries the decision out: the tower front ([`service`]) by
//! calling a pool with the request, the sqlx front by leasing a connection pool from it.

mod builder;
mod future;
#[cfg(feature = "metrics")]
mod publish;
pub(crate) mod route;
mod service;
mod shed;
mod stats;

pub use builder::{Reads, ReplicaRouterBuilder, DEFAULT_WINDOW};
pub use future::ResponseFuture;
pub(crate) use future::WriteMark;
pub use stats::RouterStats;

use super::session::Sessions;
use super::SqlClassifier;
use crate::background::{DriverStatus, StartOnRuntime};
use crate::policy::HashKey;
use stats::Counters;
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Sends writes to the primary pool and reads to the replica pool, falling back to the primary
/// when no replica is fit, and keeping a session's reads on the primary for a while after it
/// writes (read-your-own-writes).
///
/// Both pools are [`Balance`](crate::Balance)s, each with its own policy and health (outlier detection,
/// active checks, [`Balance::exclude`](crate::Balance::exclude) for a lag monitor): the router adds no second
/// balancer. Like them it is `Clone + Send + Sync`, always ready, and fails fast.
///
/// - **Classification.** [`Classify`](super::Classify) decides; by default [`SqlClassifier`] on the request's
///   text (`Req: AsRef<str>`), [`HttpMethods`](crate::replica::HttpMethods) for HTTP. Anything not
///   surely a read is a write.
/// - **Writes** go to the primary pool, balanced over its healthy members when there are
///   several (multi-primary: the router resolves no conflicts between them). With none in
///   rotation a write fails at once with [`Error::NoPrimary`](crate::Error::NoPrimary); it is never sent to a replica
///   and never retried by the router.
/// - **Reads** go to a replica in rotation; with none (all down, ejected, excluded) they go to
///   the primary, counted in [`RouterStats::fallback_reads`] and logged at `debug`. A read
///   that fails on a replica is sent once more, to the primary (a read is safe to resend;
///   requests are copied through [`Replay`](crate::retry::Replay), and one that cannot be copied is not resent).
/// - **Read-your-own-writes**, on by default: after a session's write completes (or is
///   dropped: it may have committed), the session's reads go to the primary for a window
///   (2 s by default, Rails' choice), on the monotonic clock. A session is what the
///   [`session`](ReplicaRouterBuilder::session) key says; without one, the whole router is one
///   session, so any write keeps every read on the primary for the window: safe, and the
///   reason to give a session key.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::replica::{ReplicaRouter, SqlClassifier};
/// use tower_lb::{policy::P2c, sticky::key_fn, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// // Stand-ins for database connections: each answers with its role.
/// let node = |role: &'static str| service_fn(move |(_user, _sql): (u32, &'static str)| async move {
///     Ok::<_, std::io::Error>(role)
/// });
/// let primary = Balance::builder(P2c::new()).endpoint("primary", node("primary")).build()?;
/// let replicas = Balance::builder(P2c::new())
///     .endpoints([("replica-a", node("replica")), ("replica-b", node("replica"))])
///     .build()?;
/// // Requests are (user id, SQL): the SQL decides read or write, the user is the session.
/// let sql = SqlClassifier::new();
/// let db = ReplicaRouter::builder(primary, replicas)
///     .classify(move |(_, text): &(u32, &'static str)| sql.classify(text))
///     .session(key_fn(|(user, _): &(u32, &'static str)| Some(*user)))
///     .build();
///
/// assert_eq!(db.clone().oneshot((1, "SELECT * FROM posts")).await?, "replica");
/// assert_eq!(db.clone().oneshot((1, "INSERT INTO posts VALUES (1)")).await?, "primary");
/// // User 1 reads their own write from the primary; user 2 still reads from a replica.
/// assert_eq!(db.clone().oneshot((1, "SELECT * FROM posts")).await?, "primary");
/// assert_eq!(db.clone().oneshot((2, "SELECT * FROM posts")).await?, "replica");
/// # Ok(()) }
/// ```
///
/// `P` and `R` are the two pools, [`Balance`](crate::Balance)s of the same endpoint service
/// ([`Nodes`](super::Nodes)); `Cl` the [`Classify`](super::Classify), `X` the session key.
pub struct ReplicaRouter<P, R = P, Cl = SqlClassifier, X = WholeRouter> {
    primary: P,
    replicas: R,
    shared: Arc<Shared<Cl, X>>,
}

/// What the router's clones share.
pub(crate) struct Shared<Cl, X> {
    pub(crate) classify: Cl,
    pub(crate) session: X,
    /// Sessions and their read-your-own-writes state.
    pub(crate) sessions: Sessions,
    /// The cap on the primary's share of reads, if any.
    read_cap: Option<shed::PrimaryReadCap>,
    /// Where reads go.
    reads: Reads,
    /// Whether a session's pinned reads first wait on their node until it has applied the
    /// cluster's writes (Galera's causal reads: "the primary" is any of several nodes).
    #[cfg_attr(not(feature = "sqlx-mysql"), allow(dead_code))]
    pub(crate) causal_reads: bool,
    counters: Arc<Counters>,
    /// How long own-reads waited for a replica's replay, when published.
    #[cfg(feature = "metrics")]
    pub(crate) position_waits: Option<::metrics::Histogram>,
    /// The monitors' states, and their start when built outside a runtime.
    lag_monitor: DriverStatus,
    role_monitor: DriverStatus,
    /// Wakes the role monitor for a round now.
    pub(crate) reprobe_roles: Option<Arc<tokio::sync::Notify>>,
    /// How many rounds each monitor has finished.
    first_rounds: Vec<tokio::sync::watch::Receiver<u64>>,
    start_monitors: StartOnRuntime,
}

/// The default session: the whole router is one session.
///
/// ```
/// use tower_lb::{replica::WholeRouter, sticky::HashKey};
///
/// assert_eq!(WholeRouter.key(&"any request"), Some(()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WholeRouter;

impl<Req> HashKey<Req> for WholeRouter {
    type Key<'a>
        = ()
    where
        Req: 'a;

    fn key(&self, _: &Req) -> Option<()> {
        Some(())
    }
}

impl<P, R, Cl, X> ReplicaRouter<P, R, Cl, X> {
    /// The primary pool: for its snapshot, or to change its members.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The replica pool: for its snapshot, to change its members, or to
    /// [`exclude`](crate::Balance::exclude) a replica.
    pub fn replicas(&self) -> &R {
        &self.replicas
    }

    /// Asks the role monitor (if any) to probe every node now rather than at its next tick:
    /// for when a write fails in a way that says the node believed primary is not (for
    /// PostgreSQL, SQLSTATE 25006 "read-only transaction", which the sqlx front reports
    /// itself).
    pub fn reprobe_roles(&self) {
        if let Some(early) = &self.shared.reprobe_roles {
            tracing::info!("re-probing the nodes' roles now");
            early.notify_one();
        }
    }

    /// Waits until every monitor ([`lag_monitor`](ReplicaRouterBuilder::lag_monitor),
    /// [`role_monitor`](ReplicaRouterBuilder::role_monitor)) has probed every node once, at
    /// most `within`: right after [`build`](ReplicaRouterBuilder::build) the role monitor has
    /// not found the primary yet, and until it has, writes fail with
    /// [`Error::NoPrimary`](crate::Error::NoPrimary). Ready at once without monitors.
    /// Starts the monitors if they were waiting for a runtime.
    ///
    /// # Errors
    /// [`Error::MonitorsNotReady`](crate::Error::MonitorsNotReady) if a monitor has not
    /// finished its first round within `within` (a probe that hangs takes one interval to
    /// count as failed, so allow a few intervals). A monitor that crashed is not waited for.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::{service_fn, ServiceExt};
    /// use tower_lb::{policy::P2c, replica::{HttpMethods, ReplicaRouter, Role, RoleMonitor}, Balance};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
    /// let node = || service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>("done") });
    /// let nodes = [("db-1", node()), ("db-2", node())];
    /// let primary = Balance::builder(P2c::new()).endpoints(nodes.clone()).build()?;
    /// let replicas = Balance::builder(P2c::new()).endpoints(nodes).build()?;
    /// let roles = RoleMonitor::new(|node: &&str| {
    ///     let role = if *node == "db-1" { Role::Primary } else { Role::Replica };
    ///     async move { Ok::<_, std::io::Error>(role) }
    /// });
    /// let db = ReplicaRouter::builder(primary, replicas).classify(HttpMethods).role_monitor(roles).build();
    ///
    /// db.ready(Duration::from_secs(5)).await?; // the primary is known: writes can go
    /// let write = http::Request::post("/orders").body(()).unwrap();
    /// assert_eq!(db.clone().oneshot(write).await?, "done");
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self, within: std::time::Duration) -> Result<(), crate::Error> {
        self.shared.start_monitors.start_if_waiting();
        let first_rounds = self.shared.first_rounds.iter().map(|rounds| {
            let mut rounds = rounds.clone();
            // An error: the monitor is gone (crashed), so there is nothing to wait for.
            async move { rounds.wait_for(|finished| *finished > 0).await.map(drop) }
        });
        let all = async {
            for first_round in first_rounds {
                let _ = first_round.await;
            }
        };
        tokio::time::timeout(within, all)
            .await
            .map_err(|_| crate::Error::MonitorsNotReady { waited: within })
    }

    /// What the router did so far.
    pub fn stats(&self) -> RouterStats {
        let c = &self.shared.counters;
        RouterStats {
            writes: c.writes.load(Relaxed),
            writes_without_primary: c.writes_without_primary.load(Relaxed),
            replica_reads: c.replica_reads.load(Relaxed),
            pinned_reads: c.pinned_reads.load(Relaxed),
            fallback_reads: c.fallback_reads.load(Relaxed),
            retried_reads: c.retried_reads.load(Relaxed),
            reads_behind: c.reads_behind.load(Relaxed),
            shed_reads: c.shed_reads.load(Relaxed),
            primary_reads: c.primary_reads.load(Relaxed),
            reads_without_replica: c.reads_without_replica.load(Relaxed),
            lag_monitor: self.shared.lag_monitor.get(),
            role_monitor: self.shared.role_monitor.get(),
        }
    }

    /// What the clones share: the decision's state and counters.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) fn shared(&self) -> &Arc<Shared<Cl, X>> {
        &self.shared
    }

    /// The read-your-own-writes slot of a session, when read-your-own-writes is on.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) fn session_slot(&self, session: impl Hash) -> Option<usize> {
        self.shared.sessions.slot(session)
    }
}

impl<P: Clone, R: Clone, Cl, X> Clone for ReplicaRouter<P, R, Cl, X> {
    fn clone(&self) -> Self {
        ReplicaRouter {
            primary: self.primary.clone(),
            replicas: self.replicas.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P, R, Cl, X> Debug for ReplicaRouter<P, R, Cl, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaRouter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
