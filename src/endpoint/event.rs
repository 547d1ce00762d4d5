//! What the response path reports to the health driver.

use super::EndpointStats;
use std::sync::Arc;

/// A report from the response path. Sent only at thresholds (not per call), so the channel
/// carries a handful of messages per ejection, not the traffic.
#[derive(Debug)]
pub(crate) enum HealthEvent {
    /// The endpoint reached the consecutive-failure threshold.
    Outlier(Arc<EndpointStats>),
    /// The endpoint's probation request completed.
    ProbeDone {
        endpoint: Arc<EndpointStats>,
        succeeded: bool,
    },
    /// The endpoint asked not to be sent calls for `span` (`Retry-After`).
    HoldOff {
        endpoint: Arc<EndpointStats>,
        span: std::time::Duration,
    },
}
