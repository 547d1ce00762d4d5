//! Round robin.

use super::{Candidates, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::rng::Rng;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Sends each request to the next endpoint in turn, ignoring weights and load.
///
/// Each snapshot starts its cursor at a random endpoint, so many clients that start together
/// do not all hit the first endpoint first. Threads advance separate cursors (16 stripes,
/// spread over the cycle), so many threads picking at once do not queue on one cache line;
/// each cursor walks every endpoint in turn, so shares are exact over whole cycles. Use [`WeightedRoundRobin`](super::WeightedRoundRobin)
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
/// snapshot, striped: each thread advances one of [`STRIPES`] counters, each on cache lines
/// of its own, so that threads picking at once do not all write one contended line.
///
/// Every stripe walks the whole cycle in order, starting at its own offset, so shares stay
/// exact over whole cycles of each stripe, and a client on one thread sees strict rotation.
#[derive(Debug)]
pub struct Cursor {
    stripes: [Stripe; STRIPES],
    len: u64,
    /// `2^128 / len`, rounded up: turns `position % len` into three multiplications (Lemire's
    /// fastmod), as a 64-bit division would cost as much as the rest of the pick.
    inverse: u128,
}

/// How many counters a [`Cursor`] spreads its threads over.
pub(crate) const STRIPES: usize = 16;

/// One counter, alone on its cache lines (two: adjacent-line prefetch pairs them).
#[derive(Debug)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl Cursor {
    /// A cursor over `len` (non-zero) positions, its stripes starting at `start` and spread
    /// evenly from there.
    pub(crate) fn new(len: usize, start: usize) -> Self {
        let len = len.max(1) as u64;
        let stripe_start = |i: usize| (start as u64 + i as u64 * len / STRIPES as u64) % len;
        Cursor {
            stripes: std::array::from_fn(|i| Stripe(AtomicU64::new(stripe_start(i)))),
            len,
            inverse: (u128::MAX / u128::from(len)).wrapping_add(1),
        }
    }

    /// The next position for this thread, in `0..len`.
    #[inline]
    pub(crate) fn next(&self) -> usize {
        self.next_on(this_threads_stripe())
    }

    #[inline]
    fn next_on(&self, stripe: usize) -> usize {
        let position = self.stripes[stripe].0.fetch_add(1, Ordering::Relaxed);
        fastmod(position, self.inverse, self.len) as usize
    }
}

/// The stripe of the calling thread: threads take stripes in turn as they first pick.
#[inline]
fn this_threads_stripe() -> usize {
    thread_local! {
        // Const-initialised, with "none yet" as a value: a lazily initialised thread-local is
        // read through an out-of-line accessor, a call on every pick.
        static STRIPE: Cell<usize> = const { Cell::new(NO_STRIPE) };
    }
    STRIPE.with(|stripe| match stripe.get() {
        NO_STRIPE => {
            let taken = take_stripe();
            stripe.set(taken);
            taken
        }
        taken => taken,
    })
}

/// A thread that has not picked yet.
const NO_STRIPE: usize = usize::MAX;

#[cold]
fn take_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
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
    fn every_stripe_walks_the_whole_cycle_from_its_own_start() {
        let cursor = Cursor::new(5, 3);
        for stripe in 0..STRIPES {
            let walk: Vec<usize> = (0..5).map(|_| cursor.next_on(stripe)).collect();
            let mut sorted = walk.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, 4], "stripe {stripe}: {walk:?}");
            assert!(walk.windows(2).all(|w| w[1] == (w[0] + 1) % 5), "{walk:?}");
        }
        assert_eq!(
            Cursor::new(64, 0).next_on(1),
            4,
            "stripes spread over the cycle"
        );
    }

    #[test]
    fn shares_are_exact_over_whole_cycles_when_threads_pick_at_once() {
        // 24 threads, more than there are stripes, so some share one: whatever the mapping,
        // each stripe makes whole cycles, and every endpoint gets the same count.
        let eps = endpoints(&[1, 1, 1, 1, 1, 1, 1]);
        let policy = RoundRobin::new().with_rng(5);
        let cursor = policy.table(&eps);
        let counts: Vec<std::sync::atomic::AtomicU64> =
            (0..7).map(|_| Default::default()).collect();
        std::thread::scope(|scope| {
            for _ in 0..24 {
                scope.spawn(|| {
                    for _ in 0..7 * 300 {
                        let i = policy.pick(&(), &cursor, &Candidates::new(&eps)).unwrap();
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let counts: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, vec![24 * 300; 7]);
    }

    #[test]
    fn every_endpoint_gets_the_same_share() {
        let eps = endpoints(&[1, 5, 1, 1, 1, 1, 1]);
        let counts = count_picks(&RoundRobin::new().with_rng(3), &eps, 7 * 100);
        assert_eq!(counts, vec![100; 7]);
    }
}
