//! Least pending requests (least connections).

use super::random::AliasTable;
use super::{Candidates, Pending, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::rng::Rng;
use std::cmp::Ordering;
use std::sync::Arc;

/// Sends each request to the endpoint with the fewest calls in flight per unit of weight,
/// breaking ties at random in proportion to weight.
///
/// The rule: the load of an endpoint of effective weight `w` with `c` calls in flight is
/// `c / w`; the least loaded wins; among equally loaded endpoints, each wins with probability
/// `w / (sum of their weights)`. So with one call at a time (every endpoint idle, every load
/// 0) the shares are exactly the weights, and under load the endpoint with fewer calls per
/// unit of weight is preferred. The oracle in the tests: weights 2:1 give 2/3 and 1/3 over
/// sequential calls, and an endpoint holding more calls per unit of weight gets none.
///
/// A pick first draws one endpoint in proportion to weight; if it has no call in flight it
/// wins at once. That shortcut keeps the rule exact: nothing is less loaded than an idle
/// endpoint, and an idle endpoint `e` of weight `w` is then picked with probability
/// `w / W` (drawn) plus `(W − W₀) / W × w / W₀` (a busy one drawn, then the scan's weighted
/// tie-break), where `W₀` is the idle endpoints' weight: exactly `w / W₀`. Otherwise it
/// scans every eligible endpoint, so a pick costs O(n) when all are busy (and one read when
/// most are idle, as under light load); with many busy endpoints prefer
/// [`P2c`](super::P2c), which gets most of the benefit from two random candidates.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::LeastPending, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let lb = Balance::builder(LeastPending::new())
///     .endpoints([1, 2].map(|i| (i, service_fn(move |()| async move { Ok::<_, BoxError>(i) }))))
///     .build()?;
/// lb.oneshot(()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeastPending {
    rng: Rng,
}

impl LeastPending {
    /// Least pending, ties broken by the per-thread generator.
    pub fn new() -> Self {
        LeastPending { rng: Rng::Thread }
    }

    /// Breaks ties with a seeded generator, for reproducible tests.
    pub fn with_rng(self, seed: u64) -> Self {
        LeastPending {
            rng: Rng::seeded(seed),
        }
    }
}

impl Default for LeastPending {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy for LeastPending {
    /// The weighted draw that tries an endpoint before the scan.
    type Table = AliasTable;

    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> AliasTable {
        AliasTable::of(endpoints)
    }
}

impl<Req> Pick<Req> for LeastPending {
    fn pick(&self, _: &Req, table: &AliasTable, candidates: &Candidates<'_>) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        // Under contention every endpoint's counters are a cache line other threads write:
        // one read instead of n when the drawn endpoint is idle.
        let drawn = table.draw(self.rng.u64(), candidates.len());
        if Pending::of(candidates.get(drawn)).is_idle() {
            return Some(drawn);
        }
        let mut endpoints = candidates.iter().enumerate();
        let (mut best, first) = endpoints.next()?;
        let mut best_load = Pending::of(first);
        let mut tied_weight = best_load.weight();
        for (i, endpoint) in endpoints {
            let load = Pending::of(endpoint);
            match load.cmp_load(&best_load) {
                Ordering::Less => (best, best_load, tied_weight) = (i, load, load.weight()),
                Ordering::Greater => {}
                Ordering::Equal => {
                    // Weighted reservoir sampling: a tie of weight w replaces the choice with
                    // probability w / (weight of the ties so far), so each tied endpoint ends
                    // up chosen in proportion to its weight, with no second pass.
                    tied_weight += load.weight();
                    if (self.rng.below(tied_weight as usize) as u64) < load.weight() {
                        best = i;
                    }
                }
            }
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{count_picks, endpoints};
    use crate::stats::chi_squared_p_value;

    #[test]
    fn picks_the_least_loaded() {
        let eps = endpoints(&[1, 1, 1, 2]);
        eps[0].hold_in_flight(3);
        eps[1].hold_in_flight(1);
        eps[2].hold_in_flight(2);
        eps[3].hold_in_flight(4); // (4 + 1) / 2 = 2.5 per unit of weight, more than (1 + 1) / 1
        assert_eq!(
            count_picks(&LeastPending::new(), &eps, 100),
            vec![0, 100, 0, 0]
        );
    }

    #[test]
    fn idle_endpoints_share_by_weight_while_another_is_busy() {
        // Weights 3, 1, 4 with the third busy: the idle two split 3 : 1, whether the draw
        // lands on one of them (the shortcut) or on the busy one (the scan's tie-break).
        let eps = endpoints(&[3, 1, 4]);
        eps[2].hold_in_flight(1);
        let counts = count_picks(&LeastPending::new().with_rng(11), &eps, 8000);
        assert_eq!(counts[2], 0, "{counts:?}");
        let p = chi_squared_p_value(&counts[..2], &[3.0, 1.0]);
        assert!(p > 1e-6, "p = {p}, counts {counts:?}");
    }

    #[test]
    fn ties_are_uniform() {
        let eps = endpoints(&[1, 1, 1, 1]);
        eps[1].hold_in_flight(9);
        let counts = count_picks(&LeastPending::new().with_rng(5), &eps, 3000);
        assert_eq!(counts[1], 0);
        let tied = [counts[0], counts[2], counts[3]];
        let p = chi_squared_p_value(&tied, &[1.0; 3]);
        assert!(p > 1e-6, "p = {p}, counts {counts:?}");
    }
}
