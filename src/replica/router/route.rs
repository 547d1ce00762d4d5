//! The router's one routing decision ([`Route`]) and the one way a front carries it out
//! ([`Shared::take`]), with the one read fallback and the one resend to the primary.
//!
//! A front (tower's `Service`, sqlx's `Executor`) classifies a request, asks
//! [`Shared::decide`] where it goes, and hands [`Shared::take`] a closure that takes a node
//! from a pool its own way (calls it with the request, or leases its connection pool). If
//! the node then fails a read, [`Shared::resend`] says whether and where to send it again.
//! The counters, the events and the primary's read cap live here, not in the fronts.

use super::{Reads, Shared, WriteMark};
use crate::balance::Lease;
use crate::endpoint::EndpointStats;
use crate::error::Error;
use crate::policy::Pick;
use crate::replica::position::UNREAD_POSITION;
use crate::replica::{Access, Nodes, Role};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Why a request goes where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// A write (or anything not surely a read): the primary.
    Write,
    /// A read: a replica in rotation.
    Read,
    /// A read by a session that wrote within the read-your-own-writes window: the primary.
    Pinned,
    /// Position mode: a read that only a replica that replayed the session's last write may
    /// serve; else the primary.
    ReadAt(u64),
    /// A read with no replica in rotation: the primary.
    Fallback,
    /// Position mode: no replica had replayed the session's write: the primary.
    Behind,
    /// A read a replica failed, sent once more: the primary.
    Resent,
    /// A read by a router that sends every read to the primary ([`Reads::Primary`]).
    OnPrimary,
}

/// Where one request goes, why, and what its end must do: the router's decision, carried
/// out by a front through [`Shared::take`].
pub(crate) struct Route<Cl, X> {
    /// The pool to take a node from.
    pub(crate) to: Role,
    pub(crate) why: Why,
    /// A write's mark: pins its session once the write is over (or dropped).
    pub(crate) mark: Option<WriteMark<Cl, X>>,
}

impl<Cl, X> Route<Cl, X> {
    /// The route of a plain read sent to a replica.
    pub(crate) fn read_on_replica() -> Self {
        Route {
            to: Role::Replica,
            why: Why::Read,
            mark: None,
        }
    }

    /// Whether a failure may send the request again, to the primary: a read on a replica.
    pub(crate) fn may_resend(&self) -> bool {
        self.to == Role::Replica
    }

    /// The request was never handed to a node (it failed before that): a write's mark is
    /// dropped without pinning its session.
    pub(crate) fn never_sent(&mut self) {
        if let Some(mark) = self.mark.take() {
            mark.never_sent();
        }
    }

    /// Position mode: the position a replica must have replayed to serve this read.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) fn position(&self) -> Option<u64> {
        match self.why {
            Why::ReadAt(position) => Some(position),
            _ => None,
        }
    }
}

impl<Cl, X> Shared<Cl, X> {
    /// Where a request with `access` from the session in `slot` goes: the one place every
    /// front decides it. `checks_positions`: whether the front can ask a replica how far it
    /// has replayed (the sqlx front can; the tower front cannot, so position-mode reads by a
    /// session that wrote go to the primary there).
    pub(crate) fn decide(
        self: &Arc<Self>,
        access: Access,
        slot: Option<usize>,
        checks_positions: bool,
    ) -> Route<Cl, X> {
        self.start_monitors.start_if_waiting();
        let route = |to, why| Route {
            to,
            why,
            mark: None,
        };
        if access == Access::Write {
            self.counters.writes.fetch_add(1, Relaxed);
            return Route {
                mark: slot.map(|slot| WriteMark {
                    shared: Arc::clone(self),
                    slot,
                    never_sent: false,
                }),
                ..route(Role::Primary, Why::Write)
            };
        }
        if self.reads == Reads::Primary {
            self.counters.primary_reads.fetch_add(1, Relaxed);
            return route(Role::Primary, Why::OnPrimary);
        }
        let Some(slot) = slot else {
            return route(Role::Replica, Why::Read);
        };
        if self.sessions.windows().is_some_and(|w| w.pinned(slot)) {
            self.counters.pinned_reads.fetch_add(1, Relaxed);
            self.count_read(true);
            return route(Role::Primary, Why::Pinned);
        }
        match self.sessions.positions().and_then(|p| p.required(slot)) {
            None => route(Role::Replica, Why::Read),
            // No replica is asked for a position no replica can have.
            Some(position) if checks_positions && position != UNREAD_POSITION => {
                route(Role::Replica, Why::ReadAt(position))
            }
            Some(_) => {
                self.count_behind();
                route(Role::Primary, Why::Behind)
            }
        }
    }

    /// Carries out `route`: `take` takes a node from the pool it is given (calls it, or
    /// leases it). A read with no replica to take falls back to the primary: a plain read
    /// unless the primary serves its capped share already or reads go to replicas only
    /// ([`Error::NoReplica`]), a position-mode read always (it is an own-read). A write or
    /// read the primary cannot take fails with [`Error::NoPrimary`].
    pub(crate) fn take<T>(
        &self,
        route: &mut Route<Cl, X>,
        mut take: impl FnMut(Role) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if route.to == Role::Replica {
            match take(Role::Replica) {
                Ok(taken) => {
                    self.counters.replica_reads.fetch_add(1, Relaxed);
                    self.count_read(false);
                    return Ok(taken);
                }
                Err(reason) => {
                    route.why = match route.why {
                        Why::ReadAt(_) => {
                            self.count_behind();
                            Why::Behind
                        }
                        _ if self.reads == Reads::ReplicasOnly => {
                            self.counters.reads_without_replica.fetch_add(1, Relaxed);
                            tracing::debug!(%reason, "no replica in rotation: read refused (replicas only)");
                            return Err(Error::NoReplica {
                                reason: Box::new(reason),
                            });
                        }
                        _ => {
                            self.fall_back(&reason)?;
                            Why::Fallback
                        }
                    };
                    route.to = Role::Primary;
                }
            }
        }
        take(Role::Primary).map_err(|reason| {
            // Nothing was sent: a write that had no primary leaves its session unpinned.
            route.never_sent();
            if route.why == Why::Write {
                self.counters.writes_without_primary.fetch_add(1, Relaxed);
                tracing::warn!(%reason, "write refused: no primary in rotation");
            }
            Error::NoPrimary {
                reason: Box::new(reason),
            }
        })
    }

    /// After the node failed the request with `reason`: whether to send it once more, and
    /// if so `route` now leads to the primary. Only a read on a replica is resent (a write
    /// may have committed), and only once; with reads on replicas only, only an own-read.
    pub(crate) fn resend(&self, route: &mut Route<Cl, X>, reason: &dyn std::fmt::Display) -> bool {
        let replicas_only = self.reads == Reads::ReplicasOnly && route.why == Why::Read;
        if !route.may_resend() || replicas_only {
            return false;
        }
        self.counters.retried_reads.fetch_add(1, Relaxed);
        tracing::debug!(%reason, "read failed on a replica: sent again to the primary");
        route.to = Role::Primary;
        route.why = Why::Resent;
        true
    }

    /// Position mode: `wait` (the search for a replica that replayed the session's write),
    /// timed into the router's position-wait histogram when it publishes metrics.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) async fn position_wait<T>(&self, wait: impl Future<Output = T>) -> T {
        #[cfg(feature = "metrics")]
        if let Some(histogram) = &self.position_waits {
            let started = Instant::now();
            let found = wait.await;
            histogram.record(started.elapsed().as_secs_f64());
            return found;
        }
        wait.await
    }

    fn count_behind(&self) {
        self.counters.reads_behind.fetch_add(1, Relaxed);
        self.count_read(true);
        tracing::debug!("no replica has replayed the session's write: read on the primary");
    }

    /// Counts a read against the primary's share, when that is capped.
    fn count_read(&self, on_primary: bool) {
        if let Some(cap) = &self.read_cap {
            cap.count(on_primary);
        }
    }

    /// A read with no replica in rotation (`reason`) may fall back to the primary, unless the
    /// primary already serves its capped share of reads.
    fn fall_back(&self, reason: &Error) -> Result<(), Error> {
        if let Some(cap) = &self.read_cap {
            if !cap.admits_fallback() {
                // A refused read is still a read: the primary's share is of all of them.
                cap.count(false);
                self.counters.shed_reads.fetch_add(1, Relaxed);
                tracing::debug!(%reason, "no replica in rotation, primary at its read share: read refused");
                return Err(Error::PrimaryReadShare {
                    percent: cap.percent(),
                });
            }
        }
        self.counters.fallback_reads.fetch_add(1, Relaxed);
        self.count_read(true);
        tracing::debug!(%reason, "no replica in rotation: read falls back to the primary");
        Ok(())
    }
}

/// Position mode: a replica that has replayed the session's position. `reached(replica,
/// budget)` asks one (one round trip; `None` if it could not tell), waiting on the server up
/// to `budget` where the database can wait there for a position (MariaDB's
/// `MASTER_GTID_WAIT`) and answering at once where it cannot (PostgreSQL).
///
/// The first round asks every eligible replica with no budget: one that has replayed already
/// is found at once, whichever it is. Later rounds, while `wait` lasts, hand the rest of it
/// to the replica the policy picks: a database that waits on the server then answers the
/// moment that replica applies the write, without the router polling (polling costs the
/// replica CPU that applying the write needs); one that cannot is asked again until `wait` is
/// spent. A replica that cannot tell is not asked again. `None` when none has, or none is in
/// rotation. The lease counts as the read's call on that replica.
#[cfg_attr(
    not(any(
        feature = "sqlx-postgres",
        feature = "sqlx-0_8",
        feature = "sqlx-mysql"
    )),
    allow(dead_code)
)]
pub(crate) async fn caught_up<N, F, Fut>(
    replicas: &N,
    wait: Duration,
    reached: F,
) -> Option<Lease<N::Service>>
where
    N: Nodes,
    N::Policy: Pick<()>,
    F: Fn(&N::Service, Duration) -> Fut,
    Fut: Future<Output = Option<bool>>,
{
    let deadline = Instant::now() + wait;
    // Asked this round (behind), and never to be asked again (could not tell).
    let (mut asked, mut failed): (Vec<Arc<EndpointStats>>, Vec<Arc<EndpointStats>>) =
        (vec![], vec![]);
    let mut first_round = true;
    for _ in 0..MAX_REPLAY_CHECKS {
        let avoid = [asked.as_slice(), failed.as_slice()].concat();
        let lease = replicas.lease(&(), &avoid).ok()?;
        if avoid.iter().any(|a| Arc::ptr_eq(a, lease.endpoint())) {
            // Every eligible replica was asked this round.
            if asked.is_empty() || Instant::now() >= deadline {
                return None;
            }
            asked.clear();
            first_round = false;
            continue;
        }
        let budget = if first_round {
            Duration::ZERO
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match reached(&lease.service, budget).await {
            Some(true) => return Some(lease),
            Some(false) => asked.push(Arc::clone(lease.endpoint())),
            None => failed.push(Arc::clone(lease.endpoint())),
        }
    }
    None
}

/// A bound on the replay checks of one read, whatever its wait: at a round trip each,
/// seconds of checking.
const MAX_REPLAY_CHECKS: usize = 10_000;
