//! The pool: who the endpoints are, which of them are eligible, and the snapshot every pick
//! reads.
//!
//! One small interface below the balancer that everything which changes membership or
//! eligibility talks to: the balancer's own `insert` and `remove`, discovery, health, and
//! any monitor that holds endpoints out (replica lag). Drivers hold a `Weak` handle to a
//! [`Pool`], never to the balancer; they decide *when* something changes, the pool decides
//! *what* that means for the snapshot.
//!
//! - The member list lives under one lock, touched only by changes (never by picks).
//! - Every batch of changes publishes one new immutable [`Snapshot`] through `arc-swap` and
//!   bumps a generation counter, so a handle can tell with one atomic load whether the
//!   snapshot it cached is still current.
//! - Eligibility changes in one place ([`Members::set_state`], [`Members::exclude`]); the
//!   panic threshold and slow-start ramps are part of how the pool computes the eligible set
//!   and its weights.

mod discovered;
mod exclusion;
mod locality;
mod members;
mod slow_start;
mod snapshot;
mod state;

pub use discovered::Discovered;
pub use exclusion::{Excluder, Exclusions};
pub(crate) use locality::Zoning;
pub use locality::{Locality, DEFAULT_OVERPROVISIONING};
pub(crate) use members::{check_weight, Members};
pub use slow_start::SlowStart;
pub(crate) use snapshot::Snapshot;
pub use state::{EndpointSnapshot, EndpointState};

use crate::endpoint::EndpointStats;
use crate::error::Error;
use crate::locks::lock;
use crate::policy::Policy;
use arc_swap::ArcSwap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tower::discover::Change;

/// The members of one balancer and the snapshot published from them.
///
/// `R` is the record the drivers keep beside each member (health's counters and timers).
pub(crate) struct Pool<K, S, P: Policy, R> {
    /// Builds each snapshot's table; the request path picks with it.
    policy: P,
    /// Below this share of healthy members, every member is eligible.
    panic_threshold: f64,
    members: Mutex<Members<K, S, R>>,
    current: ArcSwap<Snapshot<K, S, P::Table>>,
    /// Bumped after every publish of `current`.
    generation: AtomicU64,
    /// Wakes whoever waits for an endpoint to leave rotation, at every publish.
    published: tokio::sync::Notify,
}

impl<K, S, P, R> Pool<K, S, P, R>
where
    K: Clone + Debug,
    S: Clone,
    P: Policy,
{
    pub(crate) fn new(policy: P, panic_threshold: f64, mut members: Members<K, S, R>) -> Self {
        let current = ArcSwap::from_pointee(members.snapshot(&policy, panic_threshold));
        Pool {
            policy,
            panic_threshold,
            members: Mutex::new(members),
            current,
            generation: AtomicU64::new(0),
            published: tokio::sync::Notify::new(),
        }
    }

    /// Applies a batch of changes and publishes one new snapshot for all of them.
    pub(crate) fn change<T>(
        &self,
        apply: impl FnOnce(&mut Members<K, S, R>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut members = self.lock();
        let outcome = apply(&mut members)?;
        self.publish(&mut members);
        Ok(outcome)
    }

    /// Applies a batch that may leave the pool as it was; publishes only if it did not.
    pub(crate) fn update(&self, apply: impl FnOnce(&mut Members<K, S, R>) -> bool) {
        let mut members = self.lock();
        if apply(&mut members) {
            self.publish(&mut members);
        }
    }

    fn publish(&self, members: &mut Members<K, S, R>) {
        let snapshot = members.snapshot(&self.policy, self.panic_threshold);
        self.current.store(Arc::new(snapshot));
        // After the store, with Release: a handle that sees the new generation also sees the
        // new snapshot.
        self.generation.fetch_add(1, Ordering::Release);
        self.published.notify_waiters();
    }

    /// Resolves once the published snapshot no longer offers `endpoint` to any pick (as
    /// eligible, on probation, or in a reserve zone a retry may spill to): excluded, out of
    /// rotation for its health, or removed. For a caller that waits on the endpoint
    /// outside a call (for a connection from a database pool) and must stop waiting when
    /// the endpoint is known dead.
    #[cfg_attr(
        not(any(
            feature = "sqlx-postgres",
            feature = "sqlx-0_8",
            feature = "sqlx-mysql"
        )),
        allow(dead_code)
    )]
    pub(crate) async fn out_of_rotation(&self, endpoint: &Arc<EndpointStats>) {
        loop {
            // Created before the check: a publish between the check and the await still wakes it.
            let published = self.published.notified();
            let snapshot = self.current.load();
            if !snapshot.stats.iter().any(|e| Arc::ptr_eq(e, endpoint)) {
                return;
            }
            drop(snapshot);
            published.await;
        }
    }
}

impl<K, S, P, R> Pool<K, S, P, R>
where
    K: Clone + Eq + Hash + Debug,
    S: Clone,
    P: Policy,
    R: Default,
{
    /// Adds or replaces an endpoint (the weight checked by [`check_weight`]).
    pub(crate) fn insert(&self, key: K, service: S, weight: u32) {
        let _ = self.change(|members| {
            members.insert(key, service, weight);
            Ok(())
        });
    }

    /// Removes an endpoint; it drains.
    pub(crate) fn remove(&self, key: &K) -> Result<(), Error> {
        self.change(|members| members.remove(key))
    }

    /// Applies discovered changes as one batch.
    pub(crate) fn apply(&self, changes: Vec<Change<K, Discovered<S>>>) {
        let _ = self.change(|members| {
            members.apply(changes);
            Ok(())
        });
    }

    /// Sets or lifts `owner`'s exclusion of an endpoint (see [`Members::exclude`]).
    pub(crate) fn exclude(
        &self,
        owner: Excluder,
        key: &K,
        reason: Option<&'static str>,
    ) -> Result<(), Error> {
        let mut members = self.lock();
        if members.exclude(owner, key, reason)? {
            self.publish(&mut members);
        }
        Ok(())
    }
}

impl<K, S, P: Policy, R> Pool<K, S, P, R> {
    fn lock(&self) -> MutexGuard<'_, Members<K, S, R>> {
        // Every change is one Vec operation or one field write (see `locks`).
        lock(&self.members)
    }

    /// The policy snapshots are built for.
    #[inline]
    pub(crate) fn policy(&self) -> &P {
        &self.policy
    }

    /// The published snapshot.
    #[inline]
    pub(crate) fn current(&self) -> &ArcSwap<Snapshot<K, S, P::Table>> {
        &self.current
    }

    /// How many snapshots have been published after the first.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Changes the drivers' records without publishing: for bookkeeping no pick depends on.
    pub(crate) fn with_members<T>(&self, change: impl FnOnce(&mut Members<K, S, R>) -> T) -> T {
        change(&mut self.lock())
    }

    /// Reads the member list.
    pub(crate) fn inspect<T>(&self, read: impl FnOnce(&Members<K, S, R>) -> T) -> T {
        read(&self.lock())
    }

    /// A copy of every endpoint's state and counters: active ones in pool order, then
    /// draining ones.
    pub(crate) fn endpoints(&self) -> Vec<EndpointSnapshot<K>>
    where
        K: Clone,
    {
        let mut members = self.lock();
        members.forget_drained();
        let active = members.active().iter().map(|m| {
            EndpointSnapshot::new(m.key(), m.state(), m.exclusions(), m.ejections(), m.stats())
        });
        let draining = members.draining.iter().map(|(key, stats, ejections)| {
            EndpointSnapshot::new(
                key,
                EndpointState::Draining,
                Exclusions::default(),
                *ejections,
                stats,
            )
        });
        active.chain(draining).collect()
    }

    /// Calls in flight over every member, draining ones included; whether the pool is in
    /// panic mode; and how often it has entered it. One lock, no copies.
    pub(crate) fn totals(&self) -> (usize, bool, u64) {
        let members = self.lock();
        let in_flight = members
            .active()
            .iter()
            .map(|m| m.stats().in_flight())
            .chain(
                members
                    .draining
                    .iter()
                    .map(|(_, stats, _)| stats.in_flight()),
            )
            .sum();
        (in_flight, members.panicking, members.panics)
    }

    /// Whether the last snapshot was built in panic mode.
    pub(crate) fn panicking(&self) -> bool {
        self.lock().panicking
    }

    /// How many times the pool has entered panic mode.
    pub(crate) fn panic_entries(&self) -> u64 {
        self.lock().panics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RoundRobin;
    use tokio::time::Instant;

    fn pool(n: usize) -> Pool<usize, (), RoundRobin, ()> {
        let mut members = Members::new(None, None);
        for i in 0..n {
            members.insert(i, (), 1);
        }
        Pool::new(RoundRobin::new(), 0.5, members)
    }

    fn eligible(pool: &Pool<usize, (), RoundRobin, ()>) -> Vec<usize> {
        let snapshot = pool.current().load();
        snapshot.keys[..snapshot.eligible].to_vec()
    }

    #[test]
    fn one_publish_per_batch() {
        let pool = pool(3);
        assert_eq!(pool.generation(), 0);
        pool.apply(vec![
            Change::Insert(3, Discovered::new(())),
            Change::Remove(0),
            Change::Insert(4, Discovered::new(())),
        ]);
        assert_eq!(pool.generation(), 1, "three changes, one snapshot");
        assert_eq!(eligible(&pool), [1, 2, 3, 4]);
        pool.update(|_| false);
        assert_eq!(pool.generation(), 1, "no change, no publish");
        assert!(pool.remove(&0).is_err());
        assert_eq!(pool.generation(), 1, "a refused change publishes nothing");
    }

    #[test]
    fn set_state_keeps_the_health_word_in_step() {
        let pool = pool(4);
        let now = Instant::now();
        let probe = pool.inspect(|m| Arc::clone(m.active()[1].stats()));
        pool.update(|m| m.set_state(1, EndpointState::Probation, "test", now));
        assert_eq!(eligible(&pool), [0, 2, 3]);
        assert!(probe.try_claim_probe(), "probation arms the one probe");
        pool.update(|m| m.set_state(1, EndpointState::Failing, "test", now));
        assert!(!probe.try_claim_probe(), "any other state disarms it");
        assert!(
            !pool.with_members(|m| m.set_state(1, EndpointState::Failing, "again", now)),
            "setting the same state is no change"
        );
        pool.update(|m| m.set_state(1, EndpointState::Healthy, "test", now));
        assert_eq!(eligible(&pool), [0, 1, 2, 3]);
    }

    #[test]
    fn excluded_endpoints_are_out_even_in_panic_mode() {
        let pool = pool(4);
        pool.exclude(Excluder::Application, &2, Some("replica lag"))
            .unwrap();
        assert_eq!(eligible(&pool), [0, 1, 3]);
        assert_eq!(pool.endpoints()[2].excluded, Some("replica lag"));
        // Two of the three in play fail: panic mode balances over the three, not over 2.
        let now = Instant::now();
        pool.update(|m| {
            m.set_state(0, EndpointState::Failing, "test", now)
                | m.set_state(1, EndpointState::Failing, "test", now)
        });
        assert!(pool.panicking());
        assert_eq!(eligible(&pool), [0, 1, 3]);
        pool.exclude(Excluder::Application, &2, None).unwrap();
        assert_eq!(pool.endpoints()[2].excluded, None);
        assert!(!pool.panicking(), "two of four healthy is not below half");
        assert_eq!(eligible(&pool), [2, 3]);
        assert!(matches!(
            pool.exclude(Excluder::Application, &9, Some("x")),
            Err(Error::UnknownEndpoint { .. })
        ));
        let generation = pool.generation();
        pool.exclude(Excluder::Application, &2, None).unwrap();
        assert_eq!(
            pool.generation(),
            generation,
            "readmitting twice is no change"
        );
    }
}
