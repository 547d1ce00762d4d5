//! [`ReplicaRouter`]: one tower `Service` over a primary pool and a replica pool.

mod builder;
mod future;
mod shed;
mod stats;

pub use builder::{ReplicaRouterBuilder, DEFAULT_WINDOW};
pub use future::ResponseFuture;
pub(crate) use future::WriteMark;
pub use stats::RouterStats;

use super::position::SessionPositions;
use super::session::Sessions;
use super::{Access, Classify, SqlClassifier};
use crate::background::{DriverStatus, StartOnRuntime};
use crate::balance::{Balance, ResponseFuture as CallFuture};
use crate::error::{BoxError, Error};
use crate::health::{Classify as FailureClassify, ErrorsFail};
use crate::policy::{HashKey, Pick, Policy};
use crate::replay::Replay;
use future::ReadRetry;
use stats::Counters;
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::{Identity, Layer};
use tower_service::Service;

/// Sends writes to the primary pool and reads to the replica pool, falling back to the primary
/// when no replica is fit, and keeping a session's reads on the primary for a while after it
/// writes (read-your-own-writes).
///
/// Both pools are [`Balance`]s, each with its own policy and health (outlier detection,
/// active checks, [`Balance::exclude`] for a lag monitor): the router adds no second
/// balancer. Like them it is `Clone + Send + Sync`, always ready, and fails fast.
///
/// - **Classification.** [`Classify`] decides; by default [`SqlClassifier`] on the request's
///   text (`Req: AsRef<str>`), [`HttpMethods`](crate::replica::HttpMethods) for HTTP. Anything not
///   surely a read is a write.
/// - **Writes** go to the primary pool, balanced over its healthy members when there are
///   several (multi-primary: the router resolves no conflicts between them). With none in
///   rotation a write fails at once with [`Error::NoPrimary`]; it is never sent to a replica
///   and never retried by the router.
/// - **Reads** go to a replica in rotation; with none (all down, ejected, excluded) they go to
///   the primary, counted in [`RouterStats::fallback_reads`] and logged at `debug`. A read
///   that fails on a replica is sent once more, to the primary (a read is safe to resend;
///   requests are copied through [`Replay`], and one that cannot be copied is not resent).
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
pub struct ReplicaRouter<
    K,
    S,
    PP,
    RP,
    Cl = SqlClassifier,
    X = WholeRouter,
    L = Identity,
    C = ErrorsFail,
> where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    primary: Balance<K, S, PP, L, C>,
    replicas: Balance<K, S, RP, L, C>,
    shared: Arc<Shared<Cl, X>>,
}

/// What the router's clones share.
struct Shared<Cl, X> {
    classify: Cl,
    session: X,
    /// Sessions and their read-your-own-writes state.
    pub(crate) sessions: Sessions,
    /// The cap on the primary's share of reads, if any.
    read_cap: Option<shed::PrimaryReadCap>,
    counters: Counters,
    /// The monitors' states, and their start when built outside a runtime.
    lag_monitor: DriverStatus,
    role_monitor: DriverStatus,
    /// Wakes the role monitor for a round now.
    reprobe_roles: Option<Arc<tokio::sync::Notify>>,
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

impl<K, S, PP, RP, Cl, X, L, C> ReplicaRouter<K, S, PP, RP, Cl, X, L, C>
where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    /// The primary pool: for its snapshot, or to change its members.
    pub fn primary(&self) -> &Balance<K, S, PP, L, C> {
        &self.primary
    }

    /// The replica pool: for its snapshot, to change its members, or to
    /// [`exclude`](Balance::exclude) a lagging replica.
    pub fn replicas(&self) -> &Balance<K, S, RP, L, C> {
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

    /// What wakes the role monitor, for the sqlx front to hand to a write.
    #[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))]
    pub(crate) fn role_waker(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.shared.reprobe_roles.clone()
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
            lag_monitor: self.shared.lag_monitor.get(),
            role_monitor: self.shared.role_monitor.get(),
        }
    }
}

impl<K, S, PP, RP, Cl, X, L, C, Req> Service<Req> for ReplicaRouter<K, S, PP, RP, Cl, X, L, C>
where
    K: Debug,
    PP: Pick<Req>,
    RP: Pick<Req>,
    Cl: Classify<Req>,
    X: HashKey<Req>,
    L: Layer<S>,
    L::Service: Service<Req> + Clone,
    <L::Service as Service<Req>>::Error: Into<BoxError>,
    C: FailureClassify<<L::Service as Service<Req>>::Response, <L::Service as Service<Req>>::Error>,
    Req: Replay,
{
    type Response = <L::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<K, S, PP, L, C, Cl, X, Req>;

    /// Always ready, like the pools.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let access = self.shared.classify.classify(&req);
        let shared = &*self.shared;
        let session = match shared.sessions.mode {
            Some(_) => shared
                .session
                .key(&req)
                .and_then(|key| self.session_slot(key)),
            None => None,
        };
        let call = match self.destination(access, session) {
            Destination::Write(write) => {
                return ResponseFuture::new(self.write(req), write);
            }
            // The tower front cannot ask a replica how far it has replayed: the primary.
            Destination::PinnedRead | Destination::ReadAt(_) => self.read_on_primary(req),
            Destination::Read => {
                let copy = req.replay();
                match self.replicas.try_call(req) {
                    Ok(call) => {
                        self.counted_replica_read();
                        // A read that fails on a replica is sent once more, to the primary.
                        let future = ResponseFuture::new(call, None);
                        return match copy {
                            Some(request) => future.or_retry(ReadRetry {
                                primary: self.primary.clone(),
                                shared: Arc::clone(&self.shared),
                                request,
                            }),
                            None => future,
                        };
                    }
                    Err((reason, req)) => match self.fall_back(&reason) {
                        Ok(()) => self.read_on_primary(req),
                        Err(shed) => self.primary.fail_fast(shed),
                    },
                }
            }
        };
        ResponseFuture::new(call, None)
    }
}

/// Where a classified request goes, before a pool picks an endpoint.
pub(crate) enum Destination<Cl, X> {
    /// The primary pool; for a session, the mark that pins it once the write is over.
    Write(Option<WriteMark<Cl, X>>),
    /// The primary pool: the session wrote within the read-your-own-writes window.
    PinnedRead,
    /// The replica pool, or the primary pool when no replica is in rotation.
    Read,
    /// A replica that has replayed this position (position mode), or the primary pool.
    ReadAt(#[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))] u64),
}

impl<K, S, PP, RP, Cl, X, L, C> ReplicaRouter<K, S, PP, RP, Cl, X, L, C>
where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    /// The read-your-own-writes slot of a session, when read-your-own-writes is on.
    pub(crate) fn session_slot(&self, session: impl Hash) -> Option<usize> {
        self.shared.sessions.slot(session)
    }

    /// Where a request with `access` from the session in `slot` goes; counts writes and
    /// pinned reads. The one place both front ends (tower, sqlx) decide it.
    pub(crate) fn destination(&self, access: Access, slot: Option<usize>) -> Destination<Cl, X> {
        let shared = &*self.shared;
        shared.start_monitors.start_if_waiting();
        match access {
            Access::Write => Destination::Write(self.start_write(slot)),
            Access::Read => {
                let Some(slot) = slot else {
                    return Destination::Read;
                };
                let sessions = &shared.sessions;
                if sessions
                    .windows()
                    .is_some_and(|windows| windows.pinned(slot))
                {
                    shared.counters.pinned_reads.fetch_add(1, Relaxed);
                    self.count_read(true);
                    return Destination::PinnedRead;
                }
                match sessions
                    .positions()
                    .and_then(|positions| positions.required(slot))
                {
                    Some(position) => Destination::ReadAt(position),
                    None => Destination::Read,
                }
            }
        }
    }

    pub(crate) fn counted_replica_read(&self) {
        self.shared.counters.replica_reads.fetch_add(1, Relaxed);
        self.count_read(false);
    }

    /// Counts a read against the primary's share, when that is capped.
    fn count_read(&self, on_primary: bool) {
        if let Some(cap) = &self.shared.read_cap {
            cap.count(on_primary);
        }
    }

    /// Counts a write, and for a session, returns the mark that pins it once the write is over.
    pub(crate) fn start_write(&self, slot: Option<usize>) -> Option<WriteMark<Cl, X>> {
        self.shared.counters.writes.fetch_add(1, Relaxed);
        slot.map(|slot| WriteMark {
            shared: Arc::clone(&self.shared),
            slot,
        })
    }

    /// The position table, in position mode.
    #[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))]
    pub(crate) fn shared_positions(&self) -> Option<&SessionPositions> {
        self.shared.sessions.positions()
    }

    #[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))]
    pub(crate) fn counted_retried_read(&self) {
        self.shared.counters.retried_reads.fetch_add(1, Relaxed);
    }

    #[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))]
    pub(crate) fn counted_read_behind(&self) {
        self.shared.counters.reads_behind.fetch_add(1, Relaxed);
        self.count_read(true);
        tracing::debug!("no replica has replayed the session's write: read on the primary");
    }

    /// A read with no replica in rotation (`reason`) may fall back to the primary, unless the
    /// primary already serves its capped share of reads.
    pub(crate) fn fall_back(&self, reason: &Error) -> Result<(), Error> {
        let counters = &self.shared.counters;
        if let Some(cap) = &self.shared.read_cap {
            if !cap.admits_fallback() {
                // A refused read is still a read: the primary's share is of all of them.
                cap.count(false);
                counters.shed_reads.fetch_add(1, Relaxed);
                tracing::debug!(%reason, "no replica in rotation, primary at its read share: read refused");
                return Err(Error::PrimaryReadShare {
                    percent: cap.percent(),
                });
            }
        }
        counters.fallback_reads.fetch_add(1, Relaxed);
        self.count_read(true);
        tracing::debug!(%reason, "no replica in rotation: read falls back to the primary");
        Ok(())
    }

    pub(crate) fn counted_write_without_primary(&self, reason: &Error) {
        self.shared
            .counters
            .writes_without_primary
            .fetch_add(1, Relaxed);
        tracing::warn!(%reason, "write refused: no primary in rotation");
    }

    #[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))]
    pub(crate) fn classifier(&self) -> &Cl {
        &self.shared.classify
    }
}

impl<K, S, PP, RP, Cl, X, L, C> ReplicaRouter<K, S, PP, RP, Cl, X, L, C>
where
    K: Debug,
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
    L::Service: Clone,
    C: Clone,
{
    fn write<Req>(&mut self, req: Req) -> CallFuture<L::Service, Req, C>
    where
        PP: Pick<Req>,
        L::Service: Service<Req>,
    {
        self.primary.try_call(req).unwrap_or_else(|(reason, _)| {
            self.counted_write_without_primary(&reason);
            self.primary.fail_fast(Error::NoPrimary {
                reason: Box::new(reason),
            })
        })
    }

    fn read_on_primary<Req>(&mut self, req: Req) -> CallFuture<L::Service, Req, C>
    where
        PP: Pick<Req>,
        L::Service: Service<Req>,
    {
        self.primary.try_call(req).unwrap_or_else(|(reason, _)| {
            self.primary.fail_fast(Error::NoPrimary {
                reason: Box::new(reason),
            })
        })
    }
}

impl<K, S, PP, RP, Cl: Clone, X, L, C> Clone for ReplicaRouter<K, S, PP, RP, Cl, X, L, C>
where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    fn clone(&self) -> Self {
        ReplicaRouter {
            primary: self.primary.clone(),
            replicas: self.replicas.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, S, PP, RP, Cl, X, L, C> Debug for ReplicaRouter<K, S, PP, RP, Cl, X, L, C>
where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaRouter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
