//! Power of two choices.

use super::random::{below_u32, AliasTable};
use super::{Candidates, Pending, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::load::PeakEwma;
use crate::rng::Rng;
use std::sync::Arc;

/// Power of two random choices: draws two distinct endpoints at random and sends the request to
/// the cheaper one (Mitzenmacher). Nearly as good as a full least-loaded scan, at O(1) per pick.
///
/// The cost is either
/// - calls in flight ([`P2c::new`]), like tower's `PendingRequests`, or
/// - peak-EWMA latency × (in flight + 1) ([`P2c::peak_ewma`]), like Finagle's and linkerd's
///   balancers: slow endpoints lose traffic as soon as they slow down. Timing every call
///   costs two clock reads, most of such a pick; [`LatencyClock::Tsc`](crate::load::LatencyClock)
///   makes them cheaper where tests need no paused time.
///
/// # Weights
///
/// With equal weights the two candidates are distinct and uniform, and the lower cost wins
/// (a tie goes to the first draw), exactly as in tower's P2C. With unequal weights:
///
/// - the two candidates are drawn independently (with replacement) in proportion to their
///   effective weights, from an alias table built per snapshot;
/// - the loads compared are calls in flight per unit of weight, `c / w`, or for peak-EWMA
///   `rtt × (1 + c × u / w)` with `u` the smallest weight in the pool (Finagle's
///   `rtt × (c + 1)` when the weights are equal);
/// - the lower cost wins, and a tie goes to the first draw.
///
/// Why: when the costs tie (every endpoint idle, equal latency), the first draw decides, and
/// it was drawn in proportion to weight, so the shares are exactly the weights; an earlier
/// rule, `(c + 1) / w`, made the heavier of two idle endpoints always the cheaper and sent it
/// every call of a client making one call at a time. Under load the endpoint with fewer
/// calls per unit of weight wins whenever the two draws differ. The oracle in the tests:
/// weights 2:1 over sequential calls give 2/3 and 1/3 for both costs; with the heavier
/// endpoint busier per unit of weight, the lighter wins every mixed draw (5/9 of picks).
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::P2c, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let lb = Balance::builder(P2c::peak_ewma())
///     .endpoints([1, 2, 3].map(|i| (i, service_fn(move |()| async move { Ok::<_, BoxError>(i) }))))
///     .build()?;
/// lb.oneshot(()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct P2c {
    rng: Rng,
    ewma: Option<PeakEwma>,
}

impl P2c {
    /// P2C on calls in flight.
    pub fn new() -> Self {
        P2c {
            rng: Rng::Thread,
            ewma: None,
        }
    }

    /// P2C on peak-EWMA latency with the default settings (decay 10 s, default RTT 30 ms,
    /// failure penalty 1 s).
    pub fn peak_ewma() -> Self {
        Self::peak_ewma_with(PeakEwma::default())
    }

    /// P2C on peak-EWMA latency with the given settings.
    pub fn peak_ewma_with(ewma: PeakEwma) -> Self {
        P2c {
            rng: Rng::Thread,
            ewma: Some(ewma),
        }
    }

    /// Draws candidates from a seeded generator, for reproducible tests.
    pub fn with_rng(self, seed: u64) -> Self {
        P2c {
            rng: Rng::seeded(seed),
            ..self
        }
    }

    /// Whether `b` is strictly cheaper than `a`.
    #[inline]
    fn prefers_second(
        &self,
        a: &EndpointStats,
        b: &EndpointStats,
        unit: u64,
        candidates: &Candidates<'_>,
    ) -> bool {
        let load_a = Pending::of(a);
        match &self.ewma {
            // Nothing is below an idle endpoint's load: `b`'s counters, a cache line that
            // other threads write, need not be read.
            None if load_a.is_idle() => false,
            None => Pending::of(b).cmp_load(&load_a).is_lt(),
            Some(ewma) => {
                let load_b = Pending::of(b);
                let rtt_a = a.decayed_rtt_ns(candidates.now_ns(a), ewma);
                let rtt_b = b.decayed_rtt_ns(candidates.now_ns(b), ewma);
                // Within the resolution the latencies are noise: load per weight decides.
                if (rtt_a - rtt_b).abs() < ewma.resolution_ns {
                    return load_b.cmp_load(&load_a).is_lt();
                }
                load_b.cmp_scaled(rtt_b, &load_a, rtt_a, unit).is_lt()
            }
        }
    }
}

impl Default for P2c {
    fn default() -> Self {
        Self::new()
    }
}

/// A snapshot's precomputed [`P2c`] table: how candidates are drawn, and the weight one call
/// is counted against.
#[derive(Debug)]
pub struct P2cTable {
    /// Uniform when every weight is equal.
    draws: AliasTable,
    /// The smallest effective weight in the snapshot.
    unit: u64,
}

impl Policy for P2c {
    type Table = P2cTable;

    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> P2cTable {
        P2cTable {
            draws: AliasTable::of(endpoints),
            unit: endpoints
                .iter()
                .map(|e| u64::from(e.effective_weight()))
                .min()
                .unwrap_or(1),
        }
    }

    fn latency(&self) -> Option<PeakEwma> {
        self.ewma
    }
}

impl<Req> Pick<Req> for P2c {
    // Inlined into the balancer's pick: as a call it costs a fifth of the pick again
    // (saving and restoring registers around two random draws and two loads).
    #[inline]
    fn pick(&self, _: &Req, table: &P2cTable, candidates: &Candidates<'_>) -> Option<usize> {
        let n = candidates.len();
        if n < 2 {
            return Some(0);
        }
        let (first, second) = if table.draws.is_uniform() {
            let random = self.rng.u64();
            // One 64-bit draw: the high half picks the first candidate, the low half the
            // second among the other n - 1, so the two are always distinct.
            let first = below_u32((random >> 32) as u32, n);
            let mut second = below_u32(random as u32, n - 1);
            if second >= first {
                second += 1;
            }
            (first, second)
        } else {
            let (random, again) = self.rng.two_u64();
            let first = table.draws.draw(random, n);
            let second = table.draws.draw(again, n);
            if first == second {
                return Some(first);
            }
            (first, second)
        };
        let (a, b) = (candidates.get(first), candidates.get(second));
        Some(if self.prefers_second(a, b, table.unit, candidates) {
            second
        } else {
            first
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{count_picks, endpoints};
    use crate::stats::chi_squared_p_value;

    #[test]
    fn oracle_shares_for_held_loads() {
        let eps = endpoints(&[1, 1, 1]);
        for (i, e) in eps.iter().enumerate() {
            e.hold_in_flight(i);
        }
        let n = 100_000;
        let counts = count_picks(&P2c::new().with_rng(9), &eps, n);
        let share = |i: usize| counts[i] as f64 / n as f64;
        assert!((share(0) - 2.0 / 3.0).abs() <= 0.01, "{counts:?}");
        assert!((share(1) - 1.0 / 3.0).abs() <= 0.01, "{counts:?}");
        assert_eq!(counts[2], 0, "the most loaded endpoint never wins a pair");
    }

    #[test]
    fn one_endpoint_is_always_picked() {
        let eps = endpoints(&[1]);
        eps[0].hold_in_flight(50);
        assert_eq!(count_picks(&P2c::new(), &eps, 1000), vec![1000]);
        assert_eq!(count_picks(&P2c::peak_ewma(), &eps, 1000), vec![1000]);
    }

    #[test]
    fn equal_loads_are_uniform() {
        let eps = endpoints(&[1; 8]);
        let counts = count_picks(&P2c::new().with_rng(4), &eps, 8 * 1000);
        let p = chi_squared_p_value(&counts, &[1.0; 8]);
        assert!(p > 1e-6, "p = {p}, counts {counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_prefers_the_faster_endpoint() {
        let ewma = PeakEwma::default();
        let pool = crate::endpoint::Accounting::new(Some(ewma), false, None);
        let eps: Vec<_> = (0..2)
            .map(|_| Arc::new(EndpointStats::member(1, 0, pool.clone())))
            .collect();
        let now = tokio::time::Instant::now();
        eps[0].record_rtt(eps[0].now_ns(|| now), 10e6, &ewma);
        eps[1].record_rtt(eps[1].now_ns(|| now), 50e6, &ewma);
        assert_eq!(count_picks(&P2c::peak_ewma(), &eps, 100), vec![100, 0]);
        // Five calls in flight on the fast one cost 10 ms × 6 > 50 ms × 1.
        eps[0].hold_in_flight(5);
        assert_eq!(count_picks(&P2c::peak_ewma(), &eps, 100), vec![0, 100]);
    }
}
