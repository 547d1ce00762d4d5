//! An optional cap on the share of reads the primary serves, so that losing the replicas does
//! not move their whole read load onto the primary.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::time::Instant;

/// Below this many reads in the window, fallback reads are always admitted: a share of a few
/// reads says nothing.
const MIN_READS: u64 = 20;

/// Reads and primary reads over the current and the previous second, lock-free. Racy at a
/// second's turn by a few counts, which a cap on a share can afford.
pub(super) struct PrimaryReadCap {
    share: f64,
    epoch: Instant,
    seconds: [AtomicU64; 2],
    reads: [AtomicU64; 2],
    primary_reads: [AtomicU64; 2],
}

impl PrimaryReadCap {
    /// A cap of `share` (clamped to 0–1) of the reads.
    pub(super) fn new(share: f64) -> Self {
        PrimaryReadCap {
            share: if share.is_nan() {
                1.0
            } else {
                share.clamp(0.0, 1.0)
            },
            epoch: Instant::now(),
            seconds: Default::default(),
            reads: Default::default(),
            primary_reads: Default::default(),
        }
    }

    /// The cap, in percent, for the error that reports it.
    pub(super) fn percent(&self) -> u32 {
        (self.share * 100.0).round() as u32
    }

    /// Counts a read, served by the primary or not.
    pub(super) fn count(&self, on_primary: bool) {
        let bucket = self.bucket();
        self.reads[bucket].fetch_add(1, Relaxed);
        if on_primary {
            self.primary_reads[bucket].fetch_add(1, Relaxed);
        }
    }

    /// Whether one more read may fall back to the primary.
    pub(super) fn admits_fallback(&self) -> bool {
        let now = self.second();
        let (mut reads, mut primary) = (1, 1); // the read asking
        for bucket in 0..2 {
            if now.saturating_sub(self.seconds[bucket].load(Relaxed)) <= 1 {
                reads += self.reads[bucket].load(Relaxed);
                primary += self.primary_reads[bucket].load(Relaxed);
            }
        }
        reads < MIN_READS || primary as f64 <= self.share * reads as f64
    }

    /// This second's bucket, emptied first if it last held an older second.
    fn bucket(&self) -> usize {
        let now = self.second();
        let bucket = (now % 2) as usize;
        let held = self.seconds[bucket].load(Relaxed);
        if held != now
            && self.seconds[bucket]
                .compare_exchange(held, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.reads[bucket].store(0, Relaxed);
            self.primary_reads[bucket].store(0, Relaxed);
        }
        bucket
    }

    fn second(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_secs()
            + 1
    }
}
