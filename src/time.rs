//! Time arithmetic on user settings that cannot panic.
//!
//! Every `Duration` a user gives may be `Duration::MAX`; adding it to an `Instant`, or
//! scaling it, must saturate instead of panicking inside a background task (where a panic
//! would silently stop health checking for the life of the balancer).

use std::time::Duration;
use tokio::time::Instant;

/// About thirty years, as tokio's own far-future deadline: "never", for any process that
/// will ever run.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + after`, or thirty years from now if that overflows or is later.
pub(crate) fn deadline(now: Instant, after: Duration) -> Instant {
    now.checked_add(after.min(FAR_FUTURE)).unwrap_or(now)
}

/// `d × factor` (a finite, non-negative factor), saturating at `Duration::MAX`; NaN, negative
/// and infinite factors give zero or `MAX` as their sign says.
pub(crate) fn scaled(d: Duration, factor: f64) -> Duration {
    if factor.is_nan() || factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_and_scaling_saturate() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(deadline(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(scaled(Duration::MAX, 1.1), Duration::MAX);
        assert_eq!(scaled(Duration::MAX, f64::INFINITY), Duration::MAX);
        assert_eq!(scaled(Duration::from_secs(10), 0.5), Duration::from_secs(5));
        assert_eq!(scaled(Duration::from_secs(10), f64::NAN), Duration::ZERO);
        assert_eq!(scaled(Duration::from_secs(10), -1.0), Duration::ZERO);
    }
}
