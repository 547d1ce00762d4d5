//! The authoritative member list, changed only under the balancer's membership lock.

use crate::endpoint::{Pool, MAX_WEIGHT};
use crate::health::{EndpointState, MemberHealth, SlowStart};
use crate::policy::Policy;
use crate::snapshot::Snapshot;
use crate::{EndpointStats, Error};
use std::fmt::Debug;
use std::hash::BuildHasher;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) struct Member<K, S> {
    pub(crate) key: K,
    /// The configured weight.
    pub(crate) weight: u32,
    pub(crate) service: S,
    pub(crate) stats: Arc<EndpointStats>,
    pub(crate) health: MemberHealth,
}

impl<K, S> Member<K, S> {
    fn entry(&self) -> (&K, &S, &Arc<EndpointStats>) {
        (&self.key, &self.service, &self.stats)
    }

    /// Sets the effective weight for slow start: ramping from 10 % if `ramp`, else full.
    pub(crate) fn start_ramp(&mut self, slow: &SlowStart, ramp: bool, now: Instant) {
        let elapsed = if ramp { Duration::ZERO } else { slow.window };
        self.stats
            .set_effective_weight(slow.weight(self.weight, elapsed));
        self.health.ramp_from = ramp.then_some(now);
    }
}

/// Active endpoints in insertion order, plus removed ones that still have calls in flight.
pub(crate) struct Members<K, S> {
    pub(crate) active: Vec<Member<K, S>>,
    /// A removed endpoint's service is gone from here (its in-flight calls own their clones);
    /// its counters stay visible in [`Balance::snapshot`](crate::Balance::snapshot) until the
    /// last call ends, so draining is observable rather than silent.
    pub(crate) draining: Vec<(K, Arc<EndpointStats>)>,
    /// The accounting the policy asked for, shared by all endpoints.
    pool: Option<Arc<Pool>>,
    /// Whether the last snapshot was built in panic mode, and how often it has entered it.
    pub(crate) panicking: bool,
    pub(crate) panics: u64,
    /// Slow start, when on; and whether endpoints that join now ramp (not those the balancer
    /// is built with).
    pub(crate) slow_start: Option<SlowStart>,
    pub(crate) ramp_new: bool,
}

impl<K: Eq + Hash + Debug, S> Members<K, S> {
    pub(crate) fn new(pool: Option<Arc<Pool>>) -> Self {
        Members {
            active: Vec::new(),
            draining: Vec::new(),
            pool,
            panicking: false,
            panics: 0,
            slow_start: None,
            ramp_new: false,
        }
    }

    /// Adds an endpoint, or replaces the one with the same key (which then drains). The weight
    /// has been checked with [`check_weight`].
    pub(crate) fn insert(&mut self, key: K, service: S, weight: u32) {
        let key_hash = hashring::DefaultHashBuilder.hash_one(&key);
        let mut member = Member {
            stats: Arc::new(EndpointStats::member(weight, key_hash, self.pool.clone())),
            key,
            weight,
            service,
            health: MemberHealth::new(),
        };
        if let Some(slow) = self.slow_start {
            let ramp = self.ramp_new;
            member.start_ramp(&slow, ramp, Instant::now());
        }
        match self.active.iter().position(|m| m.key == member.key) {
            Some(i) => {
                let old = std::mem::replace(&mut self.active[i], member);
                tracing::debug!(endpoint = ?old.key, weight, "endpoint replaced");
                self.drain(old);
            }
            None => {
                tracing::debug!(endpoint = ?member.key, weight, "endpoint inserted");
                self.active.push(member);
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> Result<(), Error> {
        let i = self
            .active
            .iter()
            .position(|m| m.key == *key)
            .ok_or_else(|| Error::unknown_endpoint(key))?;
        // `remove`, not `swap_remove`: order-dependent policies (round robin) keep their order.
        let old = self.active.remove(i);
        tracing::debug!(endpoint = ?old.key, in_flight = old.stats.in_flight(), "endpoint removed");
        self.drain(old);
        Ok(())
    }

    fn drain(&mut self, old: Member<K, S>) {
        self.forget_drained();
        if old.stats.in_flight() > 0 {
            self.draining.push((old.key, old.stats));
        }
    }

    /// Drops draining entries whose last call has ended.
    pub(crate) fn forget_drained(&mut self) {
        self.draining.retain(|(_, stats)| stats.in_flight() > 0);
    }
}

impl<K: Clone + Debug, S: Clone> Members<K, S> {
    /// The snapshot of the current members: healthy ones are eligible, ejected ones are not,
    /// ones on probation are offered for their one probe. When fewer than `panic_threshold` of
    /// the members are healthy, all of them are eligible (panic mode).
    pub(crate) fn snapshot<P: Policy>(
        &mut self,
        policy: &P,
        panic_threshold: f64,
    ) -> Snapshot<K, S, P::Table> {
        let total = self.active.len();
        let healthy = self.active.iter().filter(|m| m.health.is_healthy()).count();
        let panicking = total > 0 && (healthy as f64) < panic_threshold * total as f64;
        if panicking != self.panicking {
            self.panicking = panicking;
            if panicking {
                self.panics += 1;
                tracing::warn!(
                    healthy,
                    total,
                    panic_threshold,
                    "panic mode: too few healthy endpoints, balancing over all of them"
                );
            } else {
                tracing::info!(healthy, total, "panic mode over");
            }
        }
        if panicking {
            return Snapshot::build(
                policy,
                self.active.iter().map(Member::entry).collect(),
                Vec::new(),
                total,
            );
        }
        let (eligible, probation) = (
            self.active
                .iter()
                .filter(|m| m.health.is_healthy())
                .map(Member::entry)
                .collect(),
            self.active
                .iter()
                .filter(|m| m.health.state == EndpointState::Probation)
                .map(Member::entry)
                .collect(),
        );
        Snapshot::build(policy, eligible, probation, total)
    }
}

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
