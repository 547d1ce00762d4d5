//! Round robin.

use super::{Candidates, Pick, Policy};
use crate::{rng::Rng, EndpointStats};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Sends each request to the next endpoint in turn, ignoring weights and load.
///
/// Each snapshot starts its cursor at a random endpoint, so many clients that start together
/// do not all hit the first endpoint first. Use [`WeightedRoundRobin`](super::WeightedRoundRobin)
/// when endpoints differ in capacity.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::RoundRobin, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let lb = Balance::builder(RoundRobin::new())
///     .endpoints(["a", "b"].map(|name| (name, service_fn(move |()| async move { Ok::<_, BoxError>(name) }))))
///     .build()?;
/// let first = lb.clone().oneshot(()).await?;
/// let second = lb.clone().oneshot(()).await?;
/// assert_ne!(first, second);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RoundRobin {
    rng: Rng,
}

/// The shared position of a [`RoundRobin`] or [`WeightedRoundRobin`](super::WeightedRoundRobin)
/// snapshot. Every pick on every thread increments it, so it gets cache lines of its own.
#[derive(Debug)]
#[repr(align(128))]
pub struct Cursor(AtomicUsize);

impl Cursor {
    pub(crate) fn starting_at(start: usize) -> Self {
        Cursor(AtomicUsize::new(start))
    }

    /// The next position, modulo `len`.
    pub(crate) fn next(&self, len: usize) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % len
    }
}

impl RoundRobin {
    /// Round robin with a random start per snapshot.
    pub fn new() -> Self {
        RoundRobin { rng: Rng::Thread }
    }

    /// Draws each snapshot's start from a seeded generator instead, for reproducible tests.
    pub fn with_rng(self, seed: u64) -> Self {
        RoundRobin {
            rng: Rng::seeded(seed),
        }
    }
}

impl Default for RoundRobin {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy for RoundRobin {
    type Table = Cursor;

    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> Cursor {
        Cursor::starting_at(self.rng.below(endpoints.len().max(1)))
    }
}

impl<Req> Pick<Req> for RoundRobin {
    fn pick(&self, _: &Req, cursor: &Cursor, candidates: &Candidates<'_>) -> Option<usize> {
        Some(cursor.next(candidates.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{count_picks, endpoints};

    #[test]
    fn every_endpoint_gets_the_same_share() {
        let eps = endpoints(&[1, 5, 1, 1, 1, 1, 1]);
        let counts = count_picks(&RoundRobin::new().with_rng(3), &eps, 7 * 100);
        assert_eq!(counts, vec![100; 7]);
    }
}
