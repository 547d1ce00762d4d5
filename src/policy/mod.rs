//! Balancing policies: how one endpoint is chosen among the eligible ones.
//!
//! Every policy runs on the same mechanism. When membership changes, the balancer builds a new
//! immutable snapshot of the eligible endpoints and asks the policy for a [`Policy::Table`]
//! precomputed from it (a weighted schedule, an alias table, a hash ring). A pick then reads
//! that snapshot without locks and looks at the endpoints' live, atomic [`EndpointStats`].
//! A new policy is therefore one small type: a table builder and a pick function.
//!
//! | policy | cost per pick | honours weights |
//! |---|---|---|
//! | [`RoundRobin`] | O(1), one atomic increment | no |
//! | [`WeightedRoundRobin`] | O(1), one atomic increment | yes, exactly per cycle |
//! | [`Random`] | O(1), alias method | yes |
//! | [`LeastPending`] | O(1) if a weighted draw is idle, else an O(n) scan | yes (in-flight per unit of weight) |
//! | [`P2c`] | O(1), two candidates | yes (cost per unit of weight) |
//! | [`ConsistentHash`] | O(1), one table read | yes (virtual nodes per unit of weight) |
//! | [`Maglev`] | O(1), one table read | yes (table entries per unit of weight) |
//!
//! [`Either`] holds one of two policies chosen at run time (from configuration).

mod either;
mod hash;
mod key;
mod least_pending;
mod p2c;
mod random;
mod round_robin;
mod weighted;

pub use either::Either;
pub use hash::{
    ConsistentHash, Maglev, MaglevTable, Ring, DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_VNODES,
    MAX_MAGLEV_TABLE_SIZE, MAX_RING_SIZE,
};
pub use key::HashKey;
pub use least_pending::LeastPending;
pub use p2c::P2c;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use weighted::WeightedRoundRobin;

use crate::endpoint::{Accounting, EndpointStats};
use crate::load::PeakEwma;
use std::cell::Cell;
use std::sync::Arc;
use tokio::time::Instant;

/// The part of a policy that does not depend on the request: what it precomputes per snapshot.
///
/// ```
/// use std::sync::Arc;
/// use tower_lb::{policy::{Policy, WeightedRoundRobin}, EndpointStats};
///
/// let endpoints = [2, 1].map(|w| Arc::new(EndpointStats::new(w)));
/// let schedule = WeightedRoundRobin::new().table(&endpoints);
/// # let _ = schedule;
/// ```
pub trait Policy: Send + Sync + 'static {
    /// Whatever the policy precomputes from a snapshot's eligible endpoints; rebuilt only when
    /// membership, weights or health change, never per request.
    type Table: Send + Sync + 'static;

    /// Builds the table for a new snapshot. `endpoints` is never empty.
    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> Self::Table;

    /// `Some` when the policy needs each call's latency measured, and how to record it.
    fn latency(&self) -> Option<PeakEwma> {
        None
    }

    /// Whether the policy needs the pool's total of calls in flight
    /// ([`Candidates::total_in_flight`]). Counting it costs every call one more atomic on a
    /// shared cache line, so only policies that need it say so.
    fn counts_total_in_flight(&self) -> bool {
        false
    }
}

/// Picks an endpoint for one request.
///
/// Generic over the request so a policy may look at it (a sticky key, read vs write); the
/// built-in load-based policies implement it for every request type.
///
/// ```
/// use std::sync::Arc;
/// use tower_lb::{policy::{Candidates, P2c, Pick, Policy}, EndpointStats};
///
/// let endpoints = [1, 1].map(|w| Arc::new(EndpointStats::new(w)));
/// let p2c = P2c::new().with_rng(7);
/// let table = p2c.table(&endpoints);
/// let picked = p2c.pick(&"request", &table, &Candidates::new(&endpoints));
/// assert!(matches!(picked, Some(0 | 1)));
/// ```
pub trait Pick<Req>: Policy {
    /// Returns the index of the chosen endpoint in `candidates` (never empty), or `None` to
    /// refuse the request, which then fails with [`Error::NoPick`](crate::Error::NoPick).
    fn pick(&self, req: &Req, table: &Self::Table, candidates: &Candidates<'_>) -> Option<usize>;
}

/// The eligible endpoints of one snapshot, as a policy sees them during one pick.
///
/// Also carries the pick's clock: [`Candidates::now`] reads the time at most once per pick, and
/// the balancer reuses that reading as the call's start time, so a latency-aware pick costs one
/// clock read, and the completion one more.
#[derive(Debug)]
pub struct Candidates<'a> {
    endpoints: &'a [Arc<EndpointStats>],
    now: Cell<Option<Instant>>,
    /// `now` in nanoseconds after an endpoint epoch, for the last epoch asked about: all the
    /// endpoints of one balancer share an epoch, so a pick converts the time only once.
    now_ns: Cell<Option<(*const Accounting, u64)>>,
}

impl<'a> Candidates<'a> {
    /// The candidates for one pick.
    #[inline]
    pub fn new(endpoints: &'a [Arc<EndpointStats>]) -> Self {
        Candidates {
            endpoints,
            now: Cell::new(None),
            now_ns: Cell::new(None),
        }
    }

    /// How many endpoints there are to choose from.
    #[inline]
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there is none (a balancer never asks a policy to pick from an empty set).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The stats of the endpoint at `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`, like slice indexing.
    #[inline]
    pub fn get(&self, index: usize) -> &'a EndpointStats {
        &self.endpoints[index]
    }

    /// All candidates in snapshot order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a EndpointStats> + 'a {
        self.endpoints.iter().map(|e| &**e)
    }

    /// The time of this pick, read from the clock on first use only.
    #[inline]
    pub fn now(&self) -> Instant {
        match self.now.get() {
            Some(now) => now,
            None => {
                let now = Instant::now();
                self.now.set(Some(now));
                now
            }
        }
    }
}

impl Candidates<'_> {
    /// Calls in flight over the whole pool, when the policy asked for it with
    /// [`Policy::counts_total_in_flight`] (`None` otherwise).
    #[inline]
    pub fn total_in_flight(&self) -> Option<u64> {
        self.endpoints.first()?.total_in_flight()
    }

    /// The time of this pick in `endpoint`'s timestamps (see [`Candidates::now`]).
    #[inline]
    pub(crate) fn now_ns(&self, endpoint: &EndpointStats) -> u64 {
        match self.now_ns.get() {
            Some((origin, ns)) if origin == endpoint.accounting_id() => ns,
            _ => {
                let ns = endpoint.now_ns(|| self.now());
                self.now_ns.set(Some((endpoint.accounting_id(), ns)));
                ns
            }
        }
    }
}

/// The load every load-aware policy compares: calls in flight per unit of weight.
///
/// No `+ 1` for the call about to be sent: with it, `1/w` makes the heavier of two idle
/// endpoints always the cheaper, so a weighted pool with one call at a time sent everything
/// to its heaviest endpoint. Without it, equally loaded endpoints (idle ones included) tie,
/// and the policies break ties in proportion to weight; under load the endpoint with fewer
/// calls per unit of weight still wins.
///
/// Kept as a fraction and compared by cross-multiplication: integer multiplications are
/// much cheaper on the pick path than floating-point divisions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    calls: u64,
    weight: u64,
}

impl Pending {
    #[inline]
    pub(crate) fn of(endpoint: &EndpointStats) -> Self {
        Pending {
            calls: endpoint.in_flight() as u64,
            weight: u64::from(endpoint.effective_weight()),
        }
    }

    /// Whether the endpoint has no call in flight, the least load there is.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        self.calls == 0
    }

    /// The endpoint's weight, for weighted tie-breaking.
    #[inline]
    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// Compares `self.calls / self.weight` with `other.calls / other.weight`.
    #[inline]
    pub(crate) fn cmp_load(&self, other: &Pending) -> std::cmp::Ordering {
        (u128::from(self.calls) * u128::from(other.weight))
            .cmp(&(u128::from(other.calls) * u128::from(self.weight)))
    }

    /// Compares peak-EWMA costs `rtt × (1 + calls × unit / weight)`: Finagle's
    /// `rtt × (pending + 1)` with the pending calls counted per unit of weight. `unit` is the
    /// weight one call is measured against (the pool's smallest), so that with equal weights
    /// this is exactly Finagle's cost, and with unequal ones idle endpoints of equal latency
    /// tie.
    #[inline]
    pub(crate) fn cmp_scaled(
        &self,
        rtt: f64,
        other: &Pending,
        other_rtt: f64,
        unit: u64,
    ) -> std::cmp::Ordering {
        let load = |p: &Pending| (p.calls.saturating_mul(unit) as f64) + p.weight as f64;
        let mine = rtt * load(self) * other.weight as f64;
        let theirs = other_rtt * load(other) * self.weight as f64;
        mine.total_cmp(&theirs)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The first `n` picks, in order, from one table.
    pub(crate) fn picks<P: Pick<()>>(
        policy: &P,
        endpoints: &[Arc<EndpointStats>],
        n: usize,
    ) -> Vec<usize> {
        let table = policy.table(endpoints);
        (0..n)
            .map(|_| {
                policy
                    .pick(&(), &table, &Candidates::new(endpoints))
                    .expect("a pick")
            })
            .collect()
    }

    /// Picks `n` times and counts the picks per endpoint.
    pub(crate) fn count_picks<P: Pick<()>>(
        policy: &P,
        endpoints: &[Arc<EndpointStats>],
        n: usize,
    ) -> Vec<u64> {
        let mut counts = vec![0u64; endpoints.len()];
        for i in picks(policy, endpoints, n) {
            counts[i] += 1;
        }
        counts
    }

    /// A `u64` request is its own hash key (the policy layer's tests do not reach up to
    /// `sticky`'s extractors).
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct ItsOwnKey;

    impl HashKey<u64> for ItsOwnKey {
        type Key<'a> = u64;

        fn key(&self, request: &u64) -> Option<u64> {
            Some(*request)
        }
    }

    /// A request without a key.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct NoKey;

    impl HashKey<()> for NoKey {
        type Key<'a> = u64;

        fn key(&self, _: &()) -> Option<u64> {
            None
        }
    }

    pub(crate) fn endpoints(weights: &[u32]) -> Vec<Arc<EndpointStats>> {
        weights
            .iter()
            .map(|&w| Arc::new(EndpointStats::new(w)))
            .collect()
    }
}

/// Weights honoured at every load, for every weighted policy: the oracles in the policies'
/// docs.
#[cfg(test)]
mod weighted_shares {
    use super::testing::{count_picks, endpoints};
    use super::*;

    /// Every weighted policy, seeded.
    fn each_policy(mut check: impl FnMut(&str, &dyn Fn(&[Arc<EndpointStats>], usize) -> Vec<u64>)) {
        check("least pending", &|e, n| {
            count_picks(&LeastPending::new().with_rng(1), e, n)
        });
        check("p2c pending", &|e, n| {
            count_picks(&P2c::new().with_rng(2), e, n)
        });
        check("p2c peak-ewma", &|e, n| {
            count_picks(&P2c::peak_ewma().with_rng(3), e, n)
        });
        check("random", &|e, n| {
            count_picks(&Random::new().with_rng(4), e, n)
        });
        check("weighted round robin", &|e, n| {
            count_picks(&WeightedRoundRobin::new().with_rng(5), e, n)
        });
    }

    fn shares(counts: &[u64]) -> Vec<f64> {
        let total: u64 = counts.iter().sum();
        counts.iter().map(|&c| c as f64 / total as f64).collect()
    }

    #[test]
    fn idle_endpoints_get_their_weight_share() {
        for weights in [&[2, 1][..], &[3, 2, 1], &[1, 1, 4, 2]] {
            let total: u32 = weights.iter().sum();
            each_policy(|name, picks| {
                let got = shares(&picks(&endpoints(weights), 60_000));
                for (share, &w) in got.iter().zip(weights) {
                    let want = f64::from(w) / f64::from(total);
                    assert!(
                        (share - want).abs() <= 0.01,
                        "{name}, weights {weights:?}: shares {got:?}"
                    );
                }
            });
        }
    }

    #[test]
    fn under_load_the_less_loaded_per_unit_of_weight_is_preferred() {
        // Weights 2:1; the heavy one holds 4 calls (2 per unit), the light one 1 (1 per unit).
        let loaded = || {
            let e = endpoints(&[2, 1]);
            e[0].hold_in_flight(4);
            e[1].hold_in_flight(1);
            e
        };
        let light = |counts: Vec<u64>| shares(&counts)[1];
        assert_eq!(
            light(count_picks(
                &LeastPending::new().with_rng(1),
                &loaded(),
                10_000
            )),
            1.0
        );
        // P2C: the two draws differ 4/9 of the time and the light one then wins; a draw of the
        // heavy one twice (4/9) sends the call there anyway: 5/9 in all.
        for p2c in [P2c::new().with_rng(2), P2c::peak_ewma().with_rng(3)] {
            let got = light(count_picks(&p2c, &loaded(), 60_000));
            assert!((got - 5.0 / 9.0).abs() <= 0.01, "{p2c:?}: {got}");
        }
    }

    #[test]
    fn equal_weights_keep_the_unweighted_rule() {
        // Equal weights: distinct candidates, and the one with fewer calls always wins.
        let e = endpoints(&[3, 3]);
        e[0].hold_in_flight(1);
        let counts = count_picks(&P2c::new().with_rng(9), &e, 1000);
        assert_eq!(counts, [0, 1000]);
    }
}
