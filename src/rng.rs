//! The random source behind every random policy.
//!
//! Production picks use a per-thread generator (wyrand, seeded once per thread from
//! `fastrand`), so clones of one balancer on many threads never contend on a shared RNG
//! state. Tests want reproducible picks instead, so every
//! random policy can be given a seed; seeded picks share one atomic state (deterministic for a
//! single-threaded test, still correct, if slower, under concurrency).

use std::sync::atomic::{AtomicU64, Ordering};

/// wyrand's increment: an odd constant, so the sequence has full period.
const WY_INCREMENT: u64 = 0xa076_1d64_78bd_642f;
const WY_MIX: u64 = 0xe703_7ed1_a0b4_28db;

#[derive(Debug)]
pub(crate) enum Rng {
    Thread,
    Seeded(AtomicU64),
}

impl Rng {
    pub(crate) fn seeded(seed: u64) -> Self {
        Rng::Seeded(AtomicU64::new(seed))
    }

    #[inline]
    pub(crate) fn u64(&self) -> u64 {
        wymix(self.advance(1))
    }

    /// Two numbers, as two calls of [`u64`](Self::u64) would give them, for one access to the
    /// state: a weighted two-choice pick draws twice on every request.
    #[inline]
    pub(crate) fn two_u64(&self) -> (u64, u64) {
        let last = self.advance(2);
        (wymix(last.wrapping_sub(WY_INCREMENT)), wymix(last))
    }

    /// Advances the state by `steps` numbers and returns the state of the last.
    #[inline]
    fn advance(&self, steps: u64) -> u64 {
        match self {
            Rng::Thread => thread_advance(steps),
            Rng::Seeded(state) => {
                let by = steps.wrapping_mul(WY_INCREMENT);
                state.fetch_add(by, Ordering::Relaxed).wrapping_add(by)
            }
        }
    }

    /// A uniform index below `n` (which must be non-zero).
    #[inline]
    pub(crate) fn below(&self, n: usize) -> usize {
        below(self.u64(), n)
    }
}

impl Clone for Rng {
    /// A clone of a seeded source starts from the same state: two policies built from one
    /// seeded policy pick alike.
    fn clone(&self) -> Self {
        match self {
            Rng::Thread => Rng::Thread,
            Rng::Seeded(state) => Rng::Seeded(AtomicU64::new(state.load(Ordering::Relaxed))),
        }
    }
}

/// wyrand's output for state `s`.
#[inline]
fn wymix(s: u64) -> u64 {
    let t = u128::from(s) * u128::from(s ^ WY_MIX);
    ((t >> 64) as u64) ^ (t as u64)
}

/// Advances this thread's generator by `steps` numbers and returns the state of the last.
/// Its state is a `const`-initialised thread-local with no destructor, so reading it is one
/// TLS access with no lazy-init check (`fastrand`'s own generator has one, on every pick);
/// 0 means not seeded yet.
#[inline]
fn thread_advance(steps: u64) -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    STATE.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = fastrand::u64(..) | 1;
        }
        s = s.wrapping_add(steps.wrapping_mul(WY_INCREMENT));
        state.set(s);
        s
    })
}

/// Maps 64 random bits onto `0..n` by multiply-shift (Lemire): no division, bias below 2^-32
/// for any pool size a balancer sees.
#[inline]
pub(crate) fn below(random: u64, n: usize) -> usize {
    ((u128::from(random) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sources_repeat_and_stay_in_range() {
        let a = Rng::seeded(7);
        let b = Rng::seeded(7);
        for n in [1usize, 2, 3, 10, 4096] {
            for _ in 0..1000 {
                let (x, y) = (a.below(n), b.below(n));
                assert_eq!(x, y);
                assert!(x < n);
            }
        }
    }

    #[test]
    fn two_numbers_at_once_are_the_next_two() {
        let (one, other) = (Rng::seeded(7), Rng::seeded(7));
        for _ in 0..3 {
            assert_eq!(one.two_u64(), (other.u64(), other.u64()));
        }
        let (a, b) = Rng::Thread.two_u64();
        assert_ne!(a, b);
    }

    #[test]
    fn below_covers_the_whole_range() {
        assert_eq!(below(0, 10), 0);
        assert_eq!(below(u64::MAX, 10), 9);
    }
}
