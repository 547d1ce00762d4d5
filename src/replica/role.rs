//! Primary failover: a background monitor finds which node is the primary and keeps each pool
//! to the nodes of its role, so writes follow a promoted replica.

use super::lag::BoxFuture;
use super::nodes::Nodes;
use super::probing::{probe_rounds, Rounds};
use crate::background::DriverStatus;
use crate::error::BoxError;
use crate::pool::Excluder;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What a node is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes writes.
    Primary,
    /// Read-only, replaying the primary's changes.
    Replica,
}

/// Finds a node's role (PostgreSQL: [`PgRoleProbe`](super::PgRoleProbe), feature
/// `sqlx-postgres`). Any `Fn(&K) -> impl Future<Output = Result<Role, E>>` is a probe too.
pub trait RoleProbe<K>: Send + Sync + 'static {
    /// The role of `node`, or why it could not be found (then the role is unknown).
    fn role(&self, node: &K) -> BoxFuture<Result<Role, BoxError>>;
}

impl<K, F, Fut, E> RoleProbe<K> for F
where
    F: Fn(&K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Role, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn role(&self, node: &K) -> BoxFuture<Result<Role, BoxError>> {
        let probe = self(node);
        Box::pin(async move { probe.await.map_err(Into::into) })
    }
}

/// Settings of the role monitor ([`ReplicaRouterBuilder::role_monitor`](super::ReplicaRouterBuilder::role_monitor)).
///
/// Put every node in both pools. Every `interval` (default 1 s, at least 50 ms) each node's
/// role is probed, with the interval as timeout, and each pool is kept to the nodes of its
/// role through [`exclude`](crate::Balance::exclude):
/// - the primary pool holds out every node that is not the primary: a replica ("not the
///   primary") and a node whose role is unknown ("role unknown": a dead primary, so that
///   writes fail fast with [`Error::NoPrimary`](crate::Error::NoPrimary) instead of waiting on
///   it);
/// - the replica pool holds out the primary ("is the primary"): a promoted replica leaves the
///   read set.
///
/// So when a replica is promoted, writes follow it at the next probe. Until its first probe
/// answers, a node that is in both pools is held out of the primary pool; a node only in the
/// primary pool is trusted to be the primary. The crate never promotes anything itself: it
/// detects and follows, and each change is a `warn` event an operator's tool can act on.
///
/// ```
/// use std::time::Duration;
/// use tower_lb::replica::{Role, RoleMonitor};
///
/// let monitor = RoleMonitor::new(|node: &&str| {
///     let role = if *node == "db-1" { Role::Primary } else { Role::Replica };
///     async move { Ok::<_, std::io::Error>(role) }
/// })
/// .every(Duration::from_millis(500));
/// # let _ = monitor;
/// ```
pub struct RoleMonitor<K> {
    probe: Box<dyn RoleProbe<K>>,
    interval: Duration,
    /// Wakes the monitor before its next tick ([`ReplicaRouter::reprobe_roles`](super::ReplicaRouter::reprobe_roles)).
    early: Arc<Notify>,
    rounds: Rounds,
}

/// The reasons the monitor gives for its exclusions.
pub(crate) const NOT_PRIMARY: &str = "not the primary";
pub(crate) const ROLE_UNKNOWN: &str = "role unknown";
pub(crate) const IS_PRIMARY: &str = "is the primary";

impl<K> RoleMonitor<K> {
    /// Probes each node with `probe`.
    pub fn new(probe: impl RoleProbe<K>) -> Self {
        RoleMonitor {
            probe: Box::new(probe),
            interval: Duration::from_secs(1),
            early: Arc::new(Notify::new()),
            rounds: Rounds::new(0),
        }
    }

    /// How often each node is probed (clamped to at least 50 ms).
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(50));
        self
    }

    /// How many rounds the monitor has finished, for [`ReplicaRouter::ready`](super::ReplicaRouter::ready).
    pub(crate) fn rounds(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// What wakes the monitor for a round before its next tick.
    pub(crate) fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.early)
    }

    /// The monitor's task: ends when either pool's last handle is dropped.
    pub(crate) fn drive<P, R>(
        self,
        primary: P::Weak,
        replicas: R::Weak,
        status: &DriverStatus,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        P: Nodes<Key = K>,
        R: Nodes<Key = K>,
        K: Clone + fmt::Debug + Eq + std::hash::Hash + Send + Sync + 'static,
    {
        status.supervise("replica role monitor", async move {
            let nodes = || {
                let mut nodes: Vec<K> = P::upgrade(&primary)?
                    .nodes()
                    .into_iter()
                    .map(|e| e.key)
                    .collect();
                for endpoint in R::upgrade(&replicas)?.nodes() {
                    if !nodes.contains(&endpoint.key) {
                        nodes.push(endpoint.key);
                    }
                }
                Some(nodes)
            };
            let probe = |node: &K| self.probe.role(node);
            let apply = |node: &K, role| {
                follow(&P::upgrade(&primary)?, &R::upgrade(&replicas)?, node, &role);
                Some(())
            };
            probe_rounds(
                self.interval,
                &self.early,
                nodes,
                probe,
                apply,
                &self.rounds,
            )
            .await;
        })
    }
}

/// Excludes from the primary pool every node in both pools, until its first probe answers.
pub(crate) fn hold_ambiguous_nodes<P: Nodes, R: Nodes<Key = P::Key>>(primary: &P, replicas: &R) {
    let readers: Vec<P::Key> = replicas.nodes().into_iter().map(|e| e.key).collect();
    for endpoint in primary.nodes() {
        if readers.contains(&endpoint.key) {
            let _ = primary.exclude_as(Excluder::RoleMonitor, &endpoint.key, Some(ROLE_UNKNOWN));
        }
    }
}

/// What the role monitor's own exclusions of a node should be, in the primary pool and in
/// the replica pool, given its probed role. An unknown role holds the node out of writes
/// only if it was in them (a dead primary: writes fail fast) and changes nothing else.
fn verdicts(
    role: &Result<Role, BoxError>,
    as_writer: Option<&'static str>,
    as_reader: Option<&'static str>,
) -> (Option<&'static str>, Option<&'static str>) {
    match role {
        Ok(Role::Primary) => (None, Some(IS_PRIMARY)),
        Ok(Role::Replica) => (Some(NOT_PRIMARY), None),
        Err(_) => (as_writer.or(Some(ROLE_UNKNOWN)), as_reader),
    }
}

/// Brings both pools in line with `node`'s role, through the role monitor's own exclusion
/// slot only: the application's exclusions and the lag monitor's stay as they are.
fn follow<P: Nodes, R: Nodes<Key = P::Key>>(
    primary: &P,
    replicas: &R,
    node: &P::Key,
    role: &Result<Role, BoxError>,
) {
    // The role monitor's current exclusion of the node in a pool; `None`: not in that pool.
    let ours = |pool: Vec<crate::EndpointSnapshot<P::Key>>| {
        pool.into_iter()
            .find(|e| e.key == *node)
            .map(|e| e.exclusions.by(Excluder::RoleMonitor))
    };
    let (as_writer, as_reader) = (ours(primary.nodes()), ours(replicas.nodes()));
    let (writer, reader) = verdicts(role, as_writer.flatten(), as_reader.flatten());
    if let Some(was) = as_writer.filter(|was| *was != writer) {
        match (writer, role) {
            (None, _) => tracing::warn!(?node, "node is the primary: writes go to it"),
            (Some(_), Err(error)) => {
                tracing::warn!(?node, %error, "primary's role unknown: writes fail fast")
            }
            (Some(_), Ok(_)) if was.is_none() => {
                tracing::warn!(?node, "node is a replica: no writes to it")
            }
            (Some(_), Ok(_)) => {}
        }
        let _ = primary.exclude_as(Excluder::RoleMonitor, node, writer);
    }
    if let Some(was) = as_reader.filter(|was| *was != reader) {
        match reader {
            Some(_) => tracing::warn!(?node, "node is the primary: out of the read set"),
            None if was == Some(IS_PRIMARY) => {
                tracing::warn!(?node, "node is a replica again: back in the read set")
            }
            None => {}
        }
        let _ = replicas.exclude_as(Excluder::RoleMonitor, node, reader);
    }
}

impl<K> fmt::Debug for RoleMonitor<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleMonitor")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}
