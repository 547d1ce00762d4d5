//! Round robin.

use super::{Candidates, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::rng::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
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
pub struct Cursor {
    position: AtomicU64,
    len: u64,
    /// `2^128 / len`, rounded up: turns `position % len` into three multiplications (Lemire's
    /// fastmod), as a 64-bit division would cost as much as the rest of the pick.
    inverse: u128,
}

impl Cursor {
    /// A cursor over `len` (non-zero) positions, starting at `start`.
    pub(crate) fn new(len: usize, start: usize) -> Self {
        let len = len.max(1) as u64;
        Cursor {
            position: AtomicU64::new(start as u64),
            len,
            inverse: (u128::MAX / u128::from(len)).wrapping_add(1),
        }
    }

    /// The next position, in `0..len`.
    #[inline]
    pub(crate) fn next(&self) -> usize {
        let position = self.position.fetch_add(1, Ordering::Relaxed);
        fastmod(position, self.inverse, self.len) as usize
    }
}

/// `a % d` given `inverse = 2^128 / d` rounded up (Lemire, Kaser & Kurz, "Faster remainder by
/// direct computation", 2019).
#[inline]
fn fastmod(a: u64, inverse: u128, d: u64) -> u64 {
    let low = inverse.wrapping_mul(u128::from(a));
    let bottom = ((low & u128::from(u64::MAX)) * u128::from(d)) >> 64;
    let top = (low >> 64) * u128::from(d);
    ((bottom + top) >> 64) as u64
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
        Cursor::new(endpoints.len(), self.rng.below(endpoints.len().max(1)))
    }
}

impl<Req> Pick<Req> for RoundRobin {
    fn pick(&self, _: &Req, cursor: &Cursor, _: &Candidates<'_>) -> Option<usize> {
        Some(cursor.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{count_picks, endpoints};

    #[test]
    #[inline]
    fn fastmod_is_the_remainder() {
        for d in [1u64, 2, 3, 7, 10, 4096, 1 << 33, u64::MAX] {
            let inverse = (u128::MAX / u128::from(d)).wrapping_add(1);
            for a in [0u64, 1, 2, 9, 4095, 4097, 1 << 40, u64::MAX - 1, u64::MAX] {
                assert_eq!(fastmod(a, inverse, d), a % d, "{a} % {d}");
            }
        }
    }

    #[test]
    fn every_endpoint_gets_the_same_share() {
        let eps = endpoints(&[1, 5, 1, 1, 1, 1, 1]);
        let counts = count_picks(&RoundRobin::new().with_rng(3), &eps, 7 * 100);
        assert_eq!(counts, vec![100; 7]);
    }
}
