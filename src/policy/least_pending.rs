//! Least pending requests (least connections).

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
/// This scans every eligible endpoint, so a pick costs O(n); with many endpoints prefer
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
    type Table = ();

    fn table(&self, _: &[Arc<EndpointStats>]) {}
}

impl<Req> Pick<Req> for LeastPending {
    fn pick(&self, _: &Req, _: &(), candidates: &Candidates<'_>) -> Option<usize> {
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
