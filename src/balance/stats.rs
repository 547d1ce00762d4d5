//! [`BalanceStats`]: what a balancer as a whole is doing.

use crate::background::DriverState;

/// Pool-wide figures of a [`Balance`](crate::Balance), from
/// [`Balance::stats`](crate::Balance::stats). Per-endpoint figures are in
/// [`Balance::snapshot`](crate::Balance::snapshot).
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::RoundRobin, Balance, DriverState};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let lb = Balance::builder(RoundRobin::new())
///     .endpoint("a", service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }))
///     .build()?;
/// lb.clone().oneshot(1).await?;
/// let stats = lb.stats();
/// assert_eq!((stats.endpoints, stats.eligible, stats.in_flight), (1, 1, 0));
/// assert_eq!(stats.health_driver, DriverState::Running); // outlier detection is on by default
/// assert_eq!(stats.discovery_driver, DriverState::NotNeeded);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BalanceStats {
    /// Endpoints in the pool (draining ones aside).
    pub endpoints: usize,
    /// Endpoints a call may be sent to now.
    pub eligible: usize,
    /// Calls in flight over the whole pool, draining endpoints included.
    pub in_flight: usize,
    /// Whether the balancer is in panic mode.
    pub panic_mode: bool,
    /// How many times it has entered panic mode.
    pub panic_mode_entries: u64,
    /// The health driver (outlier detection, active checks, slow start).
    pub health_driver: DriverState,
    /// The discovery driver, for a `Discover` stream that had not ended at build time.
    pub discovery_driver: DriverState,
}
