//! Health-aware pools: endpoints that fail are taken out of rotation and brought back.
//!
//! - **Passive** ([`Outlier`]): calls that fail in a row eject their endpoint for a while;
//!   when the ejection ends, one probation request decides whether it comes back.
//! - **Active** ([`ActiveChecks`]): a check per endpoint on a timer, with rise and fall
//!   counts; a hung check fails at its timeout.
//! - **Slow start** ([`SlowStart`]): endpoints that join or come back ramp up their weight.
//! - **Panic threshold**: when fewer than a share of the endpoints (50 % by default) are
//!   healthy, the balancer spreads load over all of them rather than crush the few left; a
//!   broken health signal must not take the whole service down.
//!
//! Health is a driver over the balancer's pool of members: it keeps its own counters beside each
//! member and changes an endpoint's state only through the pool, with a reason.
//!
//! Every endpoint's state is visible in [`Balance::snapshot`](crate::Balance::snapshot) as an
//! [`EndpointState`]; every change of state is a `tracing` event with the endpoint's key and
//! the reason. Health is driven by a task on the tokio runtime; nothing waits on traffic.

mod active;
mod checking;
mod classify;
pub(crate) mod driver;
mod ejection;
#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
mod http;
mod outlier;
mod record;

pub use crate::pool::{EndpointState, SlowStart};
pub use active::{
    check_fn, check_service, ActiveChecks, BoxFuture, CheckFn, CheckService, HealthCheck,
};
pub use classify::{classify_fn, Classify, ClassifyFn, ErrorsFail, GrpcStatus, ServerErrors};
#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
pub use http::HttpCheck;
pub use outlier::{FailurePercentage, Outlier, SuccessRate};
pub(crate) use record::MemberHealth;

/// `x` as a fraction in `0.0..=1.0`; NaN and infinities count as 0.
pub(crate) fn unit_fraction(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}
