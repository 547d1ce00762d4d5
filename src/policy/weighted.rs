//! Smooth weighted round robin.

use super::{round_robin::Cursor, Candidates, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::rng::Rng;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Weighted round robin with a smooth, precomputed schedule.
///
/// Over every cycle of `sum(weights)` picks (after dividing the weights by their greatest common
/// divisor) each endpoint is picked exactly its weight times, and its picks are spread through
/// the cycle rather than bunched: weights 5:1:1 give `a a a b c a a`, not `a a a a a b c`.
///
/// The schedule is built when the snapshot is, earliest-deadline-first: endpoint `i`'s `k`-th
/// slot is due at `(k + ½) / wᵢ` of the cycle (Envoy's EDF scheduler, centred). It interleaves as
/// smoothly as nginx's smooth WRR but builds in O(W log n) instead of O(W · n). A pick is then
/// one atomic increment and one array read, whatever the number of endpoints.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::WeightedRoundRobin, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let echo = |name: &'static str| service_fn(move |()| async move { Ok::<_, BoxError>(name) });
/// let lb = Balance::builder(WeightedRoundRobin::new())
///     .weighted_endpoint("big", echo("big"), 3)?
///     .weighted_endpoint("small", echo("small"), 1)?
///     .build()?;
/// let mut big = 0;
/// for _ in 0..8 {
///     if lb.clone().oneshot(()).await? == "big" { big += 1 }
/// }
/// assert_eq!(big, 6);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WeightedRoundRobin {
    rng: Rng,
}

/// A snapshot's precomputed [`WeightedRoundRobin`] cycle and its cursor.
#[derive(Debug)]
pub struct Schedule {
    slots: Box<[u32]>,
    cursor: Cursor,
}

impl WeightedRoundRobin {
    /// Weighted round robin starting each new schedule at a random slot.
    pub fn new() -> Self {
        WeightedRoundRobin { rng: Rng::Thread }
    }

    /// Draws each schedule's starting slot from a seeded generator, for reproducible tests.
    pub fn with_rng(self, seed: u64) -> Self {
        WeightedRoundRobin {
            rng: Rng::seeded(seed),
        }
    }
}

impl Default for WeightedRoundRobin {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy for WeightedRoundRobin {
    type Table = Schedule;

    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> Schedule {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.effective_weight()).collect();
        let slots = smooth_schedule(&weights);
        let start = self.rng.below(slots.len().max(1));
        Schedule {
            cursor: Cursor::new(slots.len(), start),
            slots,
        }
    }
}

impl<Req> Pick<Req> for WeightedRoundRobin {
    fn pick(&self, _: &Req, schedule: &Schedule, _: &Candidates<'_>) -> Option<usize> {
        Some(schedule.slots[schedule.cursor.next()] as usize)
    }
}

/// One endpoint's next slot in the EDF heap: due at `(2·given + 1) / (2·weight)`.
#[derive(Debug, PartialEq, Eq)]
struct Due {
    given: u64,
    weight: u64,
    index: u32,
}

impl Ord for Due {
    /// Reversed, so `BinaryHeap` (a max-heap) yields the earliest deadline; ties go to the lower
    /// index, which makes the schedule a pure function of the weights.
    fn cmp(&self, other: &Self) -> Ordering {
        let mine = (2 * self.given + 1) * other.weight;
        let theirs = (2 * other.given + 1) * self.weight;
        theirs.cmp(&mine).then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One cycle of the smooth schedule: `sum(weights) / gcd` slots holding endpoint indices.
/// Weights are at least 1 (validated when endpoints join).
fn smooth_schedule(weights: &[u32]) -> Box<[u32]> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut heap: BinaryHeap<Due> = weights
        .iter()
        .enumerate()
        .map(|(index, &w)| Due {
            given: 0,
            weight: u64::from(w.max(1) / divisor),
            index: index as u32,
        })
        .collect();
    let cycle: u64 = heap.iter().map(|d| d.weight).sum();
    let mut slots = Vec::with_capacity(cycle as usize);
    for _ in 0..cycle {
        let mut due = heap.peek_mut().expect("a non-empty pool");
        slots.push(due.index);
        due.given += 1;
    }
    slots.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{count_picks, endpoints};

    #[test]
    fn schedule_is_smooth_and_exact() {
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), &[0, 0, 0, 1, 2, 0, 0]);
        assert_eq!(&*smooth_schedule(&[2, 4, 6]), &[2, 1, 0, 2, 1, 2]);
        assert_eq!(&*smooth_schedule(&[1]), &[0]);
    }

    #[test]
    fn weights_5_3_1_1_are_exact_over_ten_cycles() {
        let eps = endpoints(&[5, 3, 1, 1]);
        let policy = WeightedRoundRobin::new().with_rng(11);
        assert_eq!(count_picks(&policy, &eps, 100), vec![50, 30, 10, 10]);

        // Exact over *every* window of one cycle, wherever it starts.
        let table = policy.table(&eps);
        let picks: Vec<usize> = (0..100)
            .map(|_| policy.pick(&(), &table, &Candidates::new(&eps)).unwrap())
            .collect();
        for window in picks.windows(10) {
            let mut counts = [0; 4];
            window.iter().for_each(|&i| counts[i] += 1);
            assert_eq!(counts, [5, 3, 1, 1], "{window:?}");
        }
    }
}
