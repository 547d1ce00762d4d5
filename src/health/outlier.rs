//! Passive health: outlier detection settings.

use std::time::Duration;

/// Passive outlier detection: ejects an endpoint whose calls keep failing, without any
/// traffic of its own (Envoy's and gRPC's defaults).
///
/// - `consecutive_failures` (5) failed calls in a row eject the endpoint;
/// - for `base_ejection` (30 s) × the number of times it has been ejected, capped at
///   `max_ejection` (300 s), plus up to `jitter` (10 %) of that at random, so that many
///   clients do not retry an endpoint in lockstep;
/// - the ejection count falls by one per `base_ejection` the endpoint then stays healthy;
/// - at most `max_ejected_percent` (10 %) of the endpoints are ejected at once, but one may
///   always be;
/// - when an ejection ends the endpoint is on probation: exactly one request goes to it, and
///   its outcome decides (success: healthy; failure: ejected again, for longer).
///
/// Optionally, every `interval` (10 s), two statistical detectors look at the calls each
/// endpoint completed in that interval (Envoy's):
/// - [`failure_percentage`](Outlier::failure_percentage): eject endpoints whose failure
///   share reached a threshold;
/// - [`success_rate`](Outlier::success_rate): eject endpoints whose success rate is more than
///   a factor of standard deviations below the pool's mean.
///
/// Both need enough calls (`request_volume`) on enough endpoints (`minimum_hosts`) to judge.
///
/// What counts as a failure is the balancer's [`Classify`](super::Classify).
///
/// ```
/// use std::time::Duration;
/// use tower_lb::health::Outlier;
///
/// let strict = Outlier::consecutive_failures(3)
///     .base_ejection(Duration::from_secs(10))
///     .max_ejected_percent(50);
/// # let _ = strict;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Outlier {
    pub(crate) consecutive_failures: u32,
    pub(crate) base_ejection: Duration,
    pub(crate) max_ejection: Duration,
    pub(crate) max_ejected_percent: u32,
    pub(crate) jitter: f64,
    pub(crate) interval: Duration,
    pub(crate) failure_percentage: Option<FailurePercentage>,
    pub(crate) success_rate: Option<SuccessRate>,
}

/// Failure-percentage ejection: see [`Outlier::failure_percentage`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailurePercentage {
    pub(crate) threshold: f64,
    pub(crate) minimum_hosts: usize,
    pub(crate) request_volume: u64,
}

/// Success-rate ejection: see [`Outlier::success_rate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuccessRate {
    pub(crate) stdev_factor: f64,
    pub(crate) minimum_hosts: usize,
    pub(crate) request_volume: u64,
}

impl FailurePercentage {
    /// Judges only endpoints with at least `calls` completed calls in the interval (default
    /// 50), and only when at least `hosts` endpoints have that many (default 5).
    pub fn minimum(mut self, hosts: usize, calls: u64) -> Self {
        (self.minimum_hosts, self.request_volume) = (hosts.max(1), calls.max(1));
        self
    }
}

impl SuccessRate {
    /// Judges only endpoints with at least `calls` completed calls in the interval (default
    /// 100), and only when at least `hosts` endpoints have that many (default 5).
    pub fn minimum(mut self, hosts: usize, calls: u64) -> Self {
        (self.minimum_hosts, self.request_volume) = (hosts.max(2), calls.max(1));
        self
    }
}

impl Default for Outlier {
    /// Five consecutive failures, 30 s base, 300 s cap, 10 % jitter, 10 % of endpoints.
    fn default() -> Self {
        Outlier::consecutive_failures(5)
    }
}

impl Outlier {
    /// Ejects after `n` consecutive failures (at least 1), with the other defaults.
    pub fn consecutive_failures(n: u32) -> Self {
        Outlier {
            consecutive_failures: n.max(1),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 10,
            jitter: 0.1,
            interval: Duration::from_secs(10),
            failure_percentage: None,
            success_rate: None,
        }
    }

    /// No passive outlier detection.
    pub fn disabled() -> Self {
        Outlier {
            consecutive_failures: 0,
            ..Outlier::default()
        }
    }

    /// The first ejection's length; later ones are multiples of it (default 30 s).
    pub fn base_ejection(mut self, base: Duration) -> Self {
        self.base_ejection = base;
        self
    }

    /// The longest ejection (default 300 s).
    pub fn max_ejection(mut self, max: Duration) -> Self {
        self.max_ejection = max;
        self
    }

    /// The largest share of endpoints ejected at once, in percent (default 10, at most 100).
    /// One endpoint may always be ejected.
    pub fn max_ejected_percent(mut self, percent: u32) -> Self {
        self.max_ejected_percent = percent.min(100);
        self
    }

    /// The most random time added to an ejection, as a fraction of it (default 0.1).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = super::unit_fraction(fraction);
        self
    }

    /// How often the statistical detectors look at the last interval's calls (default 10 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Also ejects endpoints whose calls in the last interval failed `percent` % of the time or
    /// more (Envoy's failure-percentage detection; 85 is its usual threshold). Adjust the
    /// minimums with [`FailurePercentage::minimum`] through [`Outlier::failure_percentage_with`].
    pub fn failure_percentage(self, percent: u32) -> Self {
        self.failure_percentage_with(FailurePercentage {
            threshold: f64::from(percent.min(100)) / 100.0,
            minimum_hosts: 5,
            request_volume: 50,
        })
    }

    /// Failure-percentage detection with explicit minimums.
    pub fn failure_percentage_with(mut self, detector: FailurePercentage) -> Self {
        self.failure_percentage = Some(detector);
        self
    }

    /// Also ejects endpoints whose success rate in the last interval is below the pool's mean
    /// by more than `stdev_factor` standard deviations (Envoy's success-rate detection; 1.9 is
    /// its default).
    pub fn success_rate(self, stdev_factor: f64) -> Self {
        self.success_rate_with(SuccessRate {
            stdev_factor: if stdev_factor.is_finite() {
                stdev_factor.max(0.0)
            } else {
                1.9
            },
            minimum_hosts: 5,
            request_volume: 100,
        })
    }

    /// Success-rate detection with explicit minimums.
    pub fn success_rate_with(mut self, detector: SuccessRate) -> Self {
        self.success_rate = Some(detector);
        self
    }

    /// Whether any passive detection is on.
    pub(crate) fn enabled(&self) -> bool {
        self.consecutive_failures > 0
            || self.failure_percentage.is_some()
            || self.success_rate.is_some()
    }

    pub(crate) fn sweeps(&self) -> bool {
        self.failure_percentage.is_some() || self.success_rate.is_some()
    }

    /// How long the `ejections`-th ejection lasts, before jitter.
    pub(crate) fn ejection_time(&self, ejections: u32) -> Duration {
        self.base_ejection
            .saturating_mul(ejections.max(1))
            .min(self.max_ejection)
    }

    /// How many of `total` endpoints may be ejected at once.
    pub(crate) fn max_ejected(&self, total: usize) -> usize {
        (total * self.max_ejected_percent as usize / 100).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_and_is_capped() {
        let outlier = Outlier::default();
        assert_eq!(outlier.ejection_time(1), Duration::from_secs(30));
        assert_eq!(outlier.ejection_time(3), Duration::from_secs(90));
        assert_eq!(outlier.ejection_time(10), Duration::from_secs(300));
        assert_eq!(outlier.ejection_time(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn at_most_ten_percent_but_always_one() {
        let outlier = Outlier::default();
        assert_eq!(outlier.max_ejected(5), 1);
        assert_eq!(outlier.max_ejected(10), 1);
        assert_eq!(outlier.max_ejected(30), 3);
        assert_eq!(
            Outlier::default().max_ejected_percent(500).max_ejected(4),
            4
        );
    }
}
