//! Primary failover: a background monitor finds which node is the primary and keeps each pool
//! to the nodes of its role, so writes follow a promoted replica.

use super::lag::BoxFuture;
use super::probing::probe_rounds;
use crate::background::DriverStatus;
use crate::balance::{Balance, WeakBalance};
use crate::error::BoxError;
use crate::policy::Policy;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tower_layer::Layer;

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
}

/// The exclusion reasons the monitor sets (and the only ones it lifts).
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
        }
    }

    /// How often each node is probed (clamped to at least 50 ms).
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(50));
        self
    }

    /// What wakes the monitor for a round before its next tick.
    pub(crate) fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.early)
    }

    /// The monitor's task: ends when either pool's last handle is dropped.
    pub(crate) fn drive<S, PP, RP, L, C>(
        self,
        primary: WeakBalance<K, S, PP, L, C>,
        replicas: WeakBalance<K, S, RP, L, C>,
        status: &DriverStatus,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        K: Clone + fmt::Debug + Eq + Hash + Send + Sync + 'static,
        S: Send + 'static,
        PP: Policy,
        RP: Policy,
        L: Layer<S> + Send + Sync + 'static,
        L::Service: Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        status.supervise("replica role monitor", async move {
            let nodes = || {
                let mut nodes: Vec<K> = primary
                    .upgrade()?
                    .snapshot()
                    .into_iter()
                    .map(|e| e.key)
                    .collect();
                for endpoint in replicas.upgrade()?.snapshot() {
                    if !nodes.contains(&endpoint.key) {
                        nodes.push(endpoint.key);
                    }
                }
                Some(nodes)
            };
            let probe = |node: &K| self.probe.role(node);
            let apply = |node: &K, role| {
                follow(&primary.upgrade()?, &replicas.upgrade()?, node, &role);
                Some(())
            };
            probe_rounds(self.interval, &self.early, nodes, probe, apply).await;
        })
    }
}

/// Excludes from the primary pool every node in both pools, until its first probe answers.
pub(crate) fn hold_ambiguous_nodes<K, S, PP, RP, L, C>(
    primary: &Balance<K, S, PP, L, C>,
    replicas: &Balance<K, S, RP, L, C>,
) where
    K: Clone + fmt::Debug + Eq + Hash + Send + Sync + 'static,
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
    L::Service: Clone,
{
    let readers: Vec<K> = replicas.snapshot().into_iter().map(|e| e.key).collect();
    for endpoint in primary.snapshot() {
        if readers.contains(&endpoint.key) {
            let _ = primary.exclude(&endpoint.key, ROLE_UNKNOWN);
        }
    }
}

/// Brings both pools in line with `node`'s role.
fn follow<K, S, PP, RP, L, C>(
    primary: &Balance<K, S, PP, L, C>,
    replicas: &Balance<K, S, RP, L, C>,
    node: &K,
    role: &Result<Role, BoxError>,
) where
    K: Clone + fmt::Debug + Eq + Hash + Send + Sync + 'static,
    PP: Policy,
    RP: Policy,
    L: Layer<S>,
    L::Service: Clone,
{
    let excluded = |pool: Vec<crate::EndpointSnapshot<K>>| {
        pool.into_iter()
            .find(|e| e.key == *node)
            .map(|e| e.excluded)
    };
    // `None`: not in that pool.
    let as_writer = excluded(primary.snapshot());
    let as_reader = excluded(replicas.snapshot());
    match role {
        Ok(Role::Primary) => {
            if let Some(Some(NOT_PRIMARY | ROLE_UNKNOWN)) = as_writer {
                tracing::warn!(?node, "node is the primary: writes go to it");
                let _ = primary.readmit(node);
            }
            if matches!(as_reader, Some(reason) if reason != Some(IS_PRIMARY)) {
                tracing::warn!(?node, "node is the primary: out of the read set");
                let _ = replicas.exclude(node, IS_PRIMARY);
            }
        }
        Ok(Role::Replica) => {
            if matches!(as_writer, Some(None | Some(ROLE_UNKNOWN))) {
                tracing::warn!(?node, "node is a replica: no writes to it");
                let _ = primary.exclude(node, NOT_PRIMARY);
            }
            if let Some(Some(IS_PRIMARY)) = as_reader {
                tracing::warn!(?node, "node is a replica again: back in the read set");
                let _ = replicas.readmit(node);
            }
        }
        Err(error) => {
            if matches!(as_writer, Some(None)) {
                tracing::warn!(?node, %error, "primary's role unknown: writes fail fast");
                let _ = primary.exclude(node, ROLE_UNKNOWN);
            }
        }
    }
}

impl<K> fmt::Debug for RoleMonitor<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleMonitor")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}
