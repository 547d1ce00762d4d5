//! [`ReplicaRouter`]: one tower `Service` over a primary pool and a replica pool.

use super::lag::LagMonitor;
use super::position::SessionPositions;
use super::role::{self, RoleMonitor};
use super::session::{ReadYourWrites, SessionWindows, Sessions};
use super::{Access, Classify, SqlClassifier};
use crate::background::{DriverState, DriverStatus, StartFn, StartOnRuntime};
use crate::balance::{Balance, ResponseFuture as CallFuture};
use crate::error::{BoxError, Error};
use crate::health::{Classify as FailureClassify, ErrorsFail};
use crate::policy::{HashKey, Pick, Policy};
use crate::replay::Replay;
use pin_project_lite::pin_project;
use std::fmt::{self, Debug};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
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
///   text (`Req: AsRef<str>`), [`HttpMethods`](super::HttpMethods) for HTTP. Anything not
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
    counters: Counters,
    /// The monitors' states, and their start when built outside a runtime.
    lag_monitor: DriverStatus,
    role_monitor: DriverStatus,
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

/// What a [`ReplicaRouter`] did, since it was built ([`ReplicaRouter::stats`]).
///
/// ```
/// use tower::service_fn;
/// use tower_lb::{policy::P2c, replica::ReplicaRouter, Balance, DriverState};
///
/// let node = || service_fn(|sql: String| async move { Ok::<_, std::io::Error>(sql) });
/// let primary = Balance::builder(P2c::new()).endpoint("p", node()).build()?;
/// let replicas = Balance::builder(P2c::new()).endpoint("r", node()).build()?;
/// let stats = ReplicaRouter::builder(primary, replicas).build().stats();
/// assert_eq!((stats.fallback_reads, stats.lag_monitor), (0, DriverState::NotNeeded));
/// # Ok::<(), tower_lb::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterStats {
    /// Writes sent to the primary pool.
    pub writes: u64,
    /// Writes refused because the primary pool had no endpoint in rotation.
    pub writes_without_primary: u64,
    /// Reads sent to a replica.
    pub replica_reads: u64,
    /// Reads kept on the primary by read-your-own-writes.
    pub pinned_reads: u64,
    /// Reads sent to the primary because no replica was in rotation.
    pub fallback_reads: u64,
    /// Reads that failed on a replica and were sent again, to the primary.
    pub retried_reads: u64,
    /// Position mode: reads sent to the primary because no replica had replayed the session's
    /// last write yet.
    pub reads_behind: u64,
    /// The replica lag monitor: `NotNeeded` without one, `Running`, or `Crashed` (logged).
    pub lag_monitor: DriverState,
    /// The role monitor, likewise.
    pub role_monitor: DriverState,
}

#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    writes_without_primary: AtomicU64,
    replica_reads: AtomicU64,
    pinned_reads: AtomicU64,
    fallback_reads: AtomicU64,
    retried_reads: AtomicU64,
    reads_behind: AtomicU64,
}

/// Builds a [`ReplicaRouter`] ([`ReplicaRouter::builder`]).
pub struct ReplicaRouterBuilder<K, S, PP, RP, Cl, X, L, C>
where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    primary: Balance<K, S, PP, L, C>,
    replicas: Balance<K, S, RP, L, C>,
    classify: Cl,
    session: X,
    consistency: Consistency,
    lag_monitor: Option<LagMonitor<K>>,
    role_monitor: Option<RoleMonitor<K>>,
}

/// How sessions read their own writes.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))]
enum Consistency {
    Window(Duration),
    Position(Duration),
}

/// The default read-your-own-writes window (Rails' `delay` of its database selector).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);

impl<K, S, PP, RP, L, C> ReplicaRouter<K, S, PP, RP, SqlClassifier, WholeRouter, L, C>
where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    /// Starts a router over a pool of primaries (usually one) and a pool of replicas.
    pub fn builder(
        primary: Balance<K, S, PP, L, C>,
        replicas: Balance<K, S, RP, L, C>,
    ) -> ReplicaRouterBuilder<K, S, PP, RP, SqlClassifier, WholeRouter, L, C> {
        ReplicaRouterBuilder {
            primary,
            replicas,
            classify: SqlClassifier::new(),
            session: WholeRouter,
            consistency: Consistency::Window(DEFAULT_WINDOW),
            lag_monitor: None,
            role_monitor: None,
        }
    }
}

impl<K, S, PP, RP, Cl, X, L, C> ReplicaRouterBuilder<K, S, PP, RP, Cl, X, L, C>
where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    /// How requests are classified (default [`SqlClassifier`] on `Req: AsRef<str>`).
    pub fn classify<Cl2>(self, classify: Cl2) -> ReplicaRouterBuilder<K, S, PP, RP, Cl2, X, L, C> {
        ReplicaRouterBuilder {
            primary: self.primary,
            replicas: self.replicas,
            classify,
            session: self.session,
            consistency: self.consistency,
            lag_monitor: self.lag_monitor,
            role_monitor: self.role_monitor,
        }
    }

    /// The session a request belongs to, for read-your-own-writes: any
    /// [`sticky`](crate::sticky) key extractor (a header, a cookie, a user id through
    /// [`key_fn`](crate::sticky::key_fn)). A request without a key belongs to no session: it
    /// is never pinned and its writes pin nobody.
    pub fn session<X2>(self, session: X2) -> ReplicaRouterBuilder<K, S, PP, RP, Cl, X2, L, C> {
        ReplicaRouterBuilder {
            primary: self.primary,
            replicas: self.replicas,
            classify: self.classify,
            session,
            consistency: self.consistency,
            lag_monitor: self.lag_monitor,
            role_monitor: self.role_monitor,
        }
    }

    /// How long after a session's write its reads stay on the primary (default 2 s).
    /// `Duration::ZERO` turns read-your-own-writes off; `Duration::MAX` pins for good.
    pub fn read_your_writes(mut self, window: Duration) -> Self {
        self.consistency = Consistency::Window(window);
        self
    }

    #[cfg(feature = "sqlx-postgres")]
    /// Read-your-own-writes by position instead of by window (the sqlx front,
    /// [`PgRouter`](super::PgRouter), feature `sqlx-postgres`): after a session's write
    /// commits, the router captures the primary's WAL position, and the session's reads go to
    /// a replica only once that replica has replayed it (checked per read, one round trip to
    /// the replica), otherwise to the primary. A session's position holds for `cap` (30 s,
    /// [`DEFAULT_POSITION_CAP`](super::DEFAULT_POSITION_CAP)); the tower front, which cannot
    /// check a replica's position, keeps such reads on the primary.
    pub fn read_your_writes_by_position(mut self, cap: Duration) -> Self {
        self.consistency = Consistency::Position(cap);
        self
    }

    /// Measures every replica in the background and holds those too far behind out of reads
    /// (see [`LagMonitor`]); reads they would have taken go to other replicas, or fall back to
    /// the primary. Started on the tokio runtime (at the first call if built outside one); it
    /// ends with the replica pool's last handle.
    pub fn lag_monitor(mut self, monitor: LagMonitor<K>) -> Self {
        self.lag_monitor = Some(monitor);
        self
    }

    /// Finds the primary in the background and keeps each pool to the nodes of its role, so
    /// that writes follow a promoted replica and fail fast while there is no primary (see
    /// [`RoleMonitor`]; put every node in both pools). Started like the lag monitor.
    pub fn role_monitor(mut self, monitor: RoleMonitor<K>) -> Self {
        self.role_monitor = Some(monitor);
        self
    }

    /// The router.
    pub fn build(self) -> ReplicaRouter<K, S, PP, RP, Cl, X, L, C>
    where
        K: Clone + Debug + Eq + Hash + Send + Sync + 'static,
        S: Send + 'static,
        L: Send + Sync + 'static,
        L::Service: Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        let mode = match self.consistency {
            Consistency::Window(window) if window.is_zero() => None,
            Consistency::Window(window) => {
                Some(ReadYourWrites::Window(SessionWindows::new(window)))
            }
            Consistency::Position(cap) => {
                Some(ReadYourWrites::Position(SessionPositions::new(cap)))
            }
        };
        let mut spawns: Vec<StartFn> = Vec::new();
        let lag_monitor = match self.lag_monitor {
            None => DriverStatus::new(DriverState::NotNeeded),
            Some(monitor) => {
                let status = DriverStatus::new(DriverState::WaitingForRuntime);
                let (replicas, running) = (self.replicas.downgrade(), status.clone());
                spawns.push(Box::new(move |runtime| {
                    runtime.spawn(monitor.drive(replicas, &running));
                }));
                status
            }
        };
        let role_monitor = match self.role_monitor {
            None => DriverStatus::new(DriverState::NotNeeded),
            Some(monitor) => {
                role::hold_ambiguous_nodes(&self.primary, &self.replicas);
                let status = DriverStatus::new(DriverState::WaitingForRuntime);
                let (primary, replicas) = (self.primary.downgrade(), self.replicas.downgrade());
                let running = status.clone();
                spawns.push(Box::new(move |runtime| {
                    runtime.spawn(monitor.drive(primary, replicas, &running));
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
                counters: Counters::default(),
                lag_monitor,
                role_monitor,
                start_monitors,
            }),
        }
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
                return ResponseFuture {
                    call: self.write(req),
                    write,
                    retry: None,
                };
            }
            // The tower front cannot ask a replica how far it has replayed: the primary.
            Destination::PinnedRead | Destination::ReadAt(_) => self.read_on_primary(req),
            Destination::Read => {
                let copy = req.replay();
                match self.replicas.try_call(req) {
                    Ok(call) => {
                        self.counted_replica_read();
                        // A read that fails on a replica is sent once more, to the primary.
                        let retry = copy.map(|copy| ReadRetry {
                            primary: self.primary.clone(),
                            shared: Arc::clone(&self.shared),
                            request: copy,
                        });
                        return ResponseFuture {
                            call,
                            write: None,
                            retry,
                        };
                    }
                    Err((reason, req)) => {
                        self.counted_fallback(&reason);
                        self.read_on_primary(req)
                    }
                }
            }
        };
        ResponseFuture {
            call,
            write: None,
            retry: None,
        }
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
    pub(crate) fn counted_read_behind(&self) {
        self.shared.counters.reads_behind.fetch_add(1, Relaxed);
        tracing::debug!("no replica has replayed the session's write: read on the primary");
    }

    pub(crate) fn counted_fallback(&self, reason: &Error) {
        self.shared.counters.fallback_reads.fetch_add(1, Relaxed);
        tracing::debug!(%reason, "no replica in rotation: read falls back to the primary");
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

/// Pins the writing session when the write completes or is dropped (a dropped write may have
/// committed).
pub(crate) struct WriteMark<Cl, X> {
    shared: Arc<Shared<Cl, X>>,
    slot: usize,
}

impl<Cl, X> WriteMark<Cl, X> {
    /// In position mode: the table to record the write's position in, and the session's slot.
    #[cfg_attr(not(feature = "sqlx-postgres"), allow(dead_code))]
    pub(crate) fn positions(&self) -> Option<(&SessionPositions, usize)> {
        Some((self.shared.sessions.positions()?, self.slot))
    }
}

impl<Cl, X> Drop for WriteMark<Cl, X> {
    fn drop(&mut self) {
        if let Some(windows) = self.shared.sessions.windows() {
            windows.wrote(self.slot);
        }
    }
}

/// A copy of a read sent to a replica, to send to the primary if the replica fails it.
struct ReadRetry<K, S, PP, L, C, Cl, X, Req>
where
    PP: Policy,
    L: Layer<S>,
{
    primary: Balance<K, S, PP, L, C>,
    shared: Arc<Shared<Cl, X>>,
    request: Req,
}

pin_project! {
    /// The response future of a [`ReplicaRouter`] call: the chosen pool's call; for a write,
    /// the mark that starts its session's read-your-own-writes window; for a read on a
    /// replica, a copy to send to the primary if the replica fails it.
    pub struct ResponseFuture<K, S, PP, L, C, Cl, X, Req>
    where
        PP: Policy,
        L: Layer<S>,
        L::Service: Service<Req>,
    {
        #[pin]
        call: CallFuture<L::Service, Req, C>,
        write: Option<WriteMark<Cl, X>>,
        retry: Option<ReadRetry<K, S, PP, L, C, Cl, X, Req>>,
    }
}

impl<K, S, PP, L, C, Cl, X, Req> Future for ResponseFuture<K, S, PP, L, C, Cl, X, Req>
where
    K: Debug,
    PP: Pick<Req>,
    L: Layer<S>,
    L::Service: Service<Req> + Clone,
    <L::Service as Service<Req>>::Error: Into<BoxError>,
    C: FailureClassify<<L::Service as Service<Req>>::Response, <L::Service as Service<Req>>::Error>,
{
    type Output = Result<<L::Service as Service<Req>>::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let result = ready!(this.call.as_mut().poll(cx));
            if let (Err(reason), Some(retry)) = (&result, this.retry.take()) {
                let ReadRetry {
                    mut primary,
                    shared,
                    request,
                } = retry;
                shared.counters.retried_reads.fetch_add(1, Relaxed);
                tracing::debug!(%reason, "read failed on a replica: retried on the primary");
                if let Ok(call) = primary.try_call(request) {
                    this.call.set(call);
                    continue;
                }
            }
            // The write is over: start its window now rather than when the future is dropped.
            drop(this.write.take());
            return Poll::Ready(result);
        }
    }
}

impl<K, S, PP, L, C, Cl, X, Req> Debug for ResponseFuture<K, S, PP, L, C, Cl, X, Req>
where
    PP: Policy,
    L: Layer<S>,
    L::Service: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("replica::ResponseFuture")
            .field("write", &self.write.is_some())
            .field("may_retry", &self.retry.is_some())
            .finish_non_exhaustive()
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

impl<K, S, PP, RP, Cl, X, L, C> Debug for ReplicaRouterBuilder<K, S, PP, RP, Cl, X, L, C>
where
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaRouterBuilder")
            .field("consistency", &self.consistency)
            .finish_non_exhaustive()
    }
}
