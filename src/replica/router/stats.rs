//! What a [`ReplicaRouter`](super::ReplicaRouter) did.

use crate::background::DriverState;
use std::sync::atomic::AtomicU64;

/// What a [`ReplicaRouter`](crate::replica::ReplicaRouter) did, since it was built
/// ([`ReplicaRouter::stats`](crate::replica::ReplicaRouter::stats)).
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
    /// Reads refused because no replica was in rotation and the primary already served its
    /// capped share of reads.
    pub shed_reads: u64,
    /// Reads sent to the primary because the router sends every read there
    /// ([`Reads::Primary`](crate::replica::Reads::Primary)).
    pub primary_reads: u64,
    /// Reads refused because no replica was in rotation and reads go to replicas only
    /// ([`Reads::ReplicasOnly`](crate::replica::Reads::ReplicasOnly)).
    pub reads_without_replica: u64,
    /// The replica lag monitor: `NotNeeded` without one, `Running`, or `Crashed` (logged).
    pub lag_monitor: DriverState,
    /// The role monitor, likewise.
    pub role_monitor: DriverState,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) writes: AtomicU64,
    pub(super) writes_without_primary: AtomicU64,
    pub(super) replica_reads: AtomicU64,
    pub(super) pinned_reads: AtomicU64,
    pub(super) fallback_reads: AtomicU64,
    pub(super) retried_reads: AtomicU64,
    pub(super) reads_behind: AtomicU64,
    pub(super) shed_reads: AtomicU64,
    pub(super) primary_reads: AtomicU64,
    pub(super) reads_without_replica: AtomicU64,
}
