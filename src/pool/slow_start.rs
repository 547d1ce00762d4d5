//! Slow start: a newly added or newly healthy endpoint's weight ramps up over a window.

use super::members::{Member, Members};
use crate::endpoint::SLOW_START_SCALE;
use std::fmt::Debug;
use std::time::Duration;
use tokio::time::Instant;

/// Slow start (off by default): an endpoint added at runtime, or back in rotation after an
/// ejection or failing checks, starts at 10 % of its weight and ramps linearly to 100 % over
/// `window`, so a cold cache or a JIT warming up is not hit with its full share at once.
///
/// Honoured by every policy that weighs endpoints (weighted round robin, random, least
/// pending, P2C, bounded-load hashing); consistent hashing still places the endpoint by its
/// configured weight, so slow start never moves sticky keys. Endpoints given to the builder
/// start at full weight: they all start together.
///
/// ```
/// use std::time::Duration;
/// use tower::service_fn;
/// use tower_lb::{health::SlowStart, policy::P2c, Balance};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let echo = || service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
/// let lb = Balance::builder(P2c::new())
///     .slow_start(SlowStart::over(Duration::from_secs(30)))
///     .endpoint("a", echo())
///     .build()?;
/// lb.insert("b", echo()); // starts at 10 % of its weight, full after 30 s
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    pub(crate) window: Duration,
}

impl SlowStart {
    /// Ramps from 10 % to 100 % over `window` (at least one millisecond).
    pub fn over(window: Duration) -> Self {
        SlowStart {
            window: window.max(Duration::from_millis(1)),
        }
    }

    /// The effective weight `elapsed` into the ramp of an endpoint of weight `configured`.
    pub(crate) fn weight(&self, configured: u32, elapsed: Duration) -> u32 {
        let progress = (elapsed.as_secs_f64() / self.window.as_secs_f64()).min(1.0);
        let fraction = 0.1 + 0.9 * progress;
        ((configured * SLOW_START_SCALE) as f64 * fraction).ceil() as u32
    }

    /// How often a ramp is updated: twenty steps per window.
    pub(crate) fn step(&self) -> Duration {
        (self.window / 20).max(Duration::from_millis(1))
    }
}

impl<K, S, R> Member<K, S, R> {
    /// A new configured weight (discovery's), and the effective weight that goes with it:
    /// the same point of a ramp under way, else full.
    pub(super) fn reweigh(&mut self, weight: u32, slow: Option<&SlowStart>, now: Instant) {
        self.weight = weight;
        self.stats().set_weight(weight);
        let effective = match (slow, self.ramp_from) {
            (Some(slow), Some(from)) => slow.weight(weight, now.saturating_duration_since(from)),
            (Some(slow), None) => slow.weight(weight, slow.window),
            (None, _) => weight,
        };
        self.stats().set_effective_weight(effective);
    }

    /// Sets the effective weight for slow start: ramping from 10 % if `ramp`, else full.
    pub(super) fn start_ramp(&mut self, slow: &SlowStart, ramp: bool, now: Instant) {
        let elapsed = if ramp { Duration::ZERO } else { slow.window };
        self.stats()
            .set_effective_weight(slow.weight(self.weight(), elapsed));
        self.ramp_from = ramp.then_some(now);
    }
}

impl<K: Debug, S, R> Members<K, S, R> {
    /// Moves slow-start ramps on. Returns whether any effective weight changed.
    pub(crate) fn ramp(&mut self, now: Instant) -> bool {
        let Some(slow) = self.slow_start else {
            return false;
        };
        let mut changed = false;
        for member in self.active_mut() {
            let Some(from) = member.ramp_from else {
                continue;
            };
            let elapsed = now.saturating_duration_since(from);
            let weight = slow.weight(member.weight(), elapsed);
            if weight != member.stats().effective_weight() {
                member.stats().set_effective_weight(weight);
                changed = true;
            }
            if elapsed >= slow.window {
                member.ramp_from = None;
                tracing::debug!(endpoint = ?member.key(), "slow start over");
            }
        }
        changed
    }

    /// When a ramp next needs a step, if any endpoint is ramping.
    pub(crate) fn next_ramp_step(&self, now: Instant) -> Option<Instant> {
        let slow = self.slow_start?;
        self.active()
            .iter()
            .any(|m| m.ramp_from.is_some())
            .then(|| crate::time::deadline(now, slow.step()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_linearly_from_ten_percent() {
        let slow = SlowStart::over(Duration::from_secs(10));
        assert_eq!(slow.weight(1, Duration::ZERO), 1);
        assert_eq!(slow.weight(1, Duration::from_secs(5)), 6); // 0.1 + 0.45 = 55 % of 10
        assert_eq!(slow.weight(3, Duration::from_secs(10)), 30);
        assert_eq!(slow.weight(3, Duration::from_secs(60)), 30);
    }
}
