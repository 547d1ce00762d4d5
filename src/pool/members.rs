//! The authoritative member list, changed only under the pool's lock.
//!
//! An endpoint's eligibility is its [`EndpointState`] plus an optional exclusion, and both
//! change only here, through [`Members::set_state`], [`Members::exclude`] and
//! [`Members::readmit`]: whatever decides (outlier detection, active checks, a replica-lag
//! monitor), the bookkeeping that must go with a change (the endpoint's health word, a
//! slow-start ramp, one log line with the reason) is done the same way.

use super::discovered::Discovered;
use super::exclusion::{Excluder, Exclusions};
use super::locality::Zoning;
use super::slow_start::SlowStart;
use super::state::{Ejections, EndpointState};
use crate::endpoint::{Accounting, EndpointStats, MAX_WEIGHT};
use crate::error::Error;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use tokio::time::Instant;
use tower::discover::Change;

/// One endpoint of the pool.
///
/// `R` is what the drivers keep about the member (health's counters and timers): the pool
/// stores it beside the member, creates it with `Default` when the member joins, and never
/// reads it.
pub(crate) struct Member<K, S, R> {
    key: K,
    /// The configured weight.
    pub(super) weight: u32,
    pub(super) service: S,
    stats: Arc<EndpointStats>,
    /// Private: changed only by [`Members::set_state`].
    state: EndpointState,
    /// Private: changed only by [`Members::exclude`], one owner's slot at a time.
    exclusions: Exclusions,
    /// How often health has taken it out of rotation, and why the last time.
    ejections: Ejections,
    /// When the slow-start ramp began, while ramping.
    pub(super) ramp_from: Option<Instant>,
    /// The zone's priority ([`Zoning`]), 0 without locality.
    pub(super) zone: usize,
    /// The drivers' record of this member.
    pub(crate) record: R,
}

impl<K, S, R> Member<K, S, R> {
    pub(crate) fn key(&self) -> &K {
        &self.key
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight
    }

    pub(crate) fn stats(&self) -> &Arc<EndpointStats> {
        &self.stats
    }

    pub(crate) fn state(&self) -> EndpointState {
        self.state
    }

    pub(crate) fn exclusions(&self) -> Exclusions {
        self.exclusions
    }

    pub(crate) fn ejections(&self) -> Ejections {
        self.ejections
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.state == EndpointState::Healthy
    }
}

/// Active endpoints in insertion order, plus removed ones that still have calls in flight.
pub(crate) struct Members<K, S, R> {
    active: Vec<Member<K, S, R>>,
    /// A removed endpoint's service is gone from here (its in-flight calls own their clones);
    /// its counters stay visible in [`Balance::snapshot`](crate::Balance::snapshot) until the
    /// last call ends, so draining is observable rather than silent.
    pub(super) draining: Vec<(K, Arc<EndpointStats>, Ejections)>,
    /// The accounting the policy asked for, shared by all endpoints.
    accounting: Option<Arc<Accounting>>,
    /// Whether the last snapshot was built in panic mode, and how often it has entered it.
    pub(super) panicking: bool,
    pub(super) panics: u64,
    /// Slow start, when on; and whether endpoints that join now ramp (not those the balancer
    /// is built with).
    pub(super) slow_start: Option<SlowStart>,
    pub(super) ramp_new: bool,
    /// Zones, when the pool prefers some.
    pub(super) zoning: Option<Zoning<K>>,
    /// Where ejections and returns are counted, when published.
    #[cfg(feature = "metrics")]
    metrics: Option<crate::telemetry::Metrics>,
}

impl<K, S, R> Members<K, S, R> {
    pub(crate) fn new(accounting: Option<Arc<Accounting>>, slow_start: Option<SlowStart>) -> Self {
        Members {
            active: Vec::new(),
            draining: Vec::new(),
            accounting,
            panicking: false,
            panics: 0,
            slow_start,
            ramp_new: false,
            zoning: None,
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// Counts ejections and returns in `metrics`.
    #[cfg(feature = "metrics")]
    pub(crate) fn set_metrics(&mut self, metrics: Option<crate::telemetry::Metrics>) {
        self.metrics = metrics;
    }

    /// Spreads traffic over zones by health, each endpoint's zone found from its key. Set
    /// before the first insert.
    pub(crate) fn set_zoning(&mut self, zoning: Zoning<K>) {
        debug_assert!(self.active.is_empty());
        self.zoning = Some(zoning);
    }

    /// From now on, endpoints that join ramp up (slow start); the initial ones do not, as
    /// they all start together.
    pub(crate) fn ramp_joiners(&mut self) {
        self.ramp_new = true;
    }

    /// The active members, in pool order.
    pub(crate) fn active(&self) -> &[Member<K, S, R>] {
        &self.active
    }

    /// The active members, for the drivers to update their records.
    pub(crate) fn active_mut(&mut self) -> &mut [Member<K, S, R>] {
        &mut self.active
    }

    /// The position of the member whose counters are `stats`, if it is still a member.
    pub(crate) fn index_of(&self, stats: &Arc<EndpointStats>) -> Option<usize> {
        self.active
            .iter()
            .position(|m| Arc::ptr_eq(&m.stats, stats))
    }

    /// Drops draining entries whose last call has ended.
    pub(crate) fn forget_drained(&mut self) {
        self.draining.retain(|(_, stats, _)| stats.in_flight() > 0);
    }

    fn drain(&mut self, old: Member<K, S, R>) {
        self.forget_drained();
        if old.stats.in_flight() > 0 {
            self.draining.push((old.key, old.stats, old.ejections));
        }
    }
}

impl<K: Eq + Hash + Debug, S, R: Default> Members<K, S, R> {
    /// Adds an endpoint, or replaces the one with the same key (which then drains); its
    /// position. The weight has been checked with [`check_weight`].
    pub(crate) fn insert(&mut self, key: K, service: S, weight: u32) -> usize {
        let key_hash = hashring::DefaultHashBuilder.hash_one(&key);
        let mut member = Member {
            stats: Arc::new(EndpointStats::member(
                weight,
                key_hash,
                self.accounting.clone(),
            )),
            key,
            weight,
            service,
            state: EndpointState::Healthy,
            exclusions: Exclusions::default(),
            ejections: Ejections::default(),
            ramp_from: None,
            zone: 0,
            record: R::default(),
        };
        if let Some(zoning) = &self.zoning {
            member.zone = (zoning.priority_of)(&member.key);
        }
        if let Some(slow) = self.slow_start {
            member.start_ramp(&slow, self.ramp_new, Instant::now());
        }
        match self.active.iter().position(|m| m.key == member.key) {
            Some(i) => {
                let old = std::mem::replace(&mut self.active[i], member);
                tracing::debug!(endpoint = ?old.key, weight, "endpoint replaced");
                self.drain(old);
                i
            }
            None => {
                tracing::debug!(endpoint = ?member.key, weight, "endpoint inserted");
                self.active.push(member);
                self.active.len() - 1
            }
        }
    }

    /// Removes an endpoint; it drains.
    pub(crate) fn remove(&mut self, key: &K) -> Result<(), Error> {
        let i = self.find(key)?;
        // `remove`, not `swap_remove`: order-dependent policies (round robin) keep their order.
        let old = self.active.remove(i);
        tracing::debug!(endpoint = ?old.key, in_flight = old.stats.in_flight(), "endpoint removed");
        self.drain(old);
        Ok(())
    }

    /// Applies discovered changes in order. A removal of an unknown key is logged, not an
    /// error: discovery streams may repeat themselves. A change the pool refuses (an invalid
    /// weight, an update of an unknown key) is skipped and logged: the stream goes on.
    pub(crate) fn apply(&mut self, changes: Vec<Change<K, Discovered<S>>>) {
        for change in changes {
            let applied = match change {
                Change::Insert(key, discovered) => self.discovered(key, discovered),
                Change::Remove(key) => match self.remove(&key) {
                    Err(error) => {
                        tracing::debug!(%error, "discovery removed an endpoint not in the pool");
                        Ok(())
                    }
                    Ok(()) => Ok(()),
                },
            };
            if let Err(error) = applied {
                tracing::warn!(%error, "discovery change skipped");
            }
        }
    }

    /// Adds, replaces or updates the endpoint `key` as discovery describes it.
    fn discovered(&mut self, key: K, discovered: Discovered<S>) -> Result<(), Error> {
        if let Some(weight) = discovered.weight {
            check_weight(&key, weight)?;
        }
        let i = match discovered.service {
            Some(service) => self.insert(key, service, discovered.weight.unwrap_or(1)),
            None => {
                let i = self.find(&key)?;
                if let Some(weight) = discovered.weight {
                    let (slow_start, member) = (self.slow_start, &mut self.active[i]);
                    member.reweigh(weight, slow_start.as_ref(), Instant::now());
                    tracing::debug!(endpoint = ?member.key, weight, "endpoint reweighed");
                }
                i
            }
        };
        match (&discovered.zone, &self.zoning) {
            (Some(zone), Some(zoning)) => self.active[i].zone = zoning.priority(zone),
            (Some(zone), None) => {
                tracing::debug!(%zone, "discovered zone ignored: the balancer has no locality")
            }
            (None, _) => {}
        }
        if let Some(draining) = discovered.draining {
            self.exclude_at(i, Excluder::Discovery, draining.then_some("draining"));
        }
        Ok(())
    }
}

impl<K: Eq + Debug, S, R> Members<K, S, R> {
    fn find(&self, key: &K) -> Result<usize, Error> {
        self.active
            .iter()
            .position(|m| m.key == *key)
            .ok_or_else(|| Error::unknown_endpoint(key))
    }

    /// Moves member `i` to `state`, for `reason`. The one way an endpoint's health state
    /// changes. Keeps the endpoint's health word in step (probation arms the one probe; every
    /// other state starts the failure count afresh) and, with slow start, ramps an endpoint
    /// back up when it returns to rotation. Returns whether the state changed.
    pub(crate) fn set_state(
        &mut self,
        i: usize,
        state: EndpointState,
        reason: &'static str,
        now: Instant,
    ) -> bool {
        let slow_start = self.slow_start;
        let member = &mut self.active[i];
        let from = member.state;
        if from == state {
            return false;
        }
        member.state = state;
        if matches!(
            state,
            EndpointState::Ejected { .. } | EndpointState::Failing
        ) {
            member.ejections.count += 1;
            member.ejections.last_reason = Some(reason);
        }
        match state {
            EndpointState::Probation => member.stats.enter_probation(),
            _ => member.stats.clear_health(),
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            match state {
                EndpointState::Healthy => metrics.returned(&member.key),
                EndpointState::Ejected { .. } | EndpointState::Failing => {
                    metrics.ejected(&member.key, reason)
                }
                _ => {}
            }
        }
        if state == EndpointState::Healthy {
            tracing::info!(endpoint = ?member.key, ?from, reason, "endpoint back in rotation");
            if let Some(slow) = slow_start {
                member.start_ramp(&slow, true, now);
            }
        } else if from == EndpointState::Healthy {
            let ejections = member.ejections.count;
            tracing::warn!(endpoint = ?member.key, to = ?state, reason, ejections, "endpoint out of rotation");
        } else {
            tracing::info!(endpoint = ?member.key, ?from, to = ?state, reason, "endpoint state changed");
        }
        true
    }

    /// Sets `owner`'s exclusion of an endpoint: `Some(reason)` holds it out of rotation,
    /// whatever its health, until the same owner lifts it with `None`; other owners'
    /// exclusions are untouched. For the application and the monitors outside health
    /// (replica lag and role). Returns whether anything changed.
    pub(crate) fn exclude(
        &mut self,
        owner: Excluder,
        key: &K,
        reason: Option<&'static str>,
    ) -> Result<bool, Error> {
        let i = self.find(key)?;
        Ok(self.exclude_at(i, owner, reason))
    }

    /// [`exclude`](Self::exclude) of member `i`.
    fn exclude_at(&mut self, i: usize, owner: Excluder, reason: Option<&'static str>) -> bool {
        let member = &mut self.active[i];
        let was = member.exclusions.by(owner);
        if !member.exclusions.set(owner, reason) {
            return false;
        }
        match (reason, was) {
            (Some(reason), _) => {
                tracing::info!(endpoint = ?member.key, ?owner, reason, "endpoint excluded")
            }
            (None, Some(reason)) => {
                tracing::info!(endpoint = ?member.key, ?owner, reason, "exclusion lifted")
            }
            (None, None) => {}
        }
        true
    }
}

/// Refuses a weight outside `1..=MAX_WEIGHT`.
pub(crate) fn check_weight<K: Debug>(key: &K, weight: u32) -> Result<(), Error> {
    if (1..=MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(Error::InvalidWeight {
            key: format!("{key:?}"),
            weight,
            max: MAX_WEIGHT,
        })
    }
}
