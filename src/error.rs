//! The errors a balancer reports itself.
//!
//! Endpoint errors are never wrapped in [`Error`]: a [`Balance`](crate::Balance) returns them
//! boxed as [`BoxError`], unchanged, so callers can `downcast_ref` to the endpoint's own type.

/// A type-erased error, as tower's own middleware returns them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error raised by the balancer itself (as opposed to one returned by an endpoint).
///
/// A call returns it boxed as a [`BoxError`]; recover it with `downcast_ref::<Error>()`:
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::RoundRobin, Balance, BoxError, Error};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let endpoint = service_fn(|req: u32| async move { Ok::<_, BoxError>(req) });
/// let lb = Balance::builder(RoundRobin::new())
///     .endpoint("a", endpoint)
///     .build()
///     .unwrap();
/// lb.remove(&"a").unwrap();
///
/// let err = lb.oneshot(1).await.unwrap_err();
/// assert!(matches!(err.downcast_ref::<Error>(), Some(Error::NoEndpoints)));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pool has no endpoint to send the request to. The call fails at once rather than wait.
    #[error("no endpoints in the pool")]
    NoEndpoints,

    /// Every endpoint in the pool is out of rotation (ejected or on probation) and panic mode
    /// is off ([`Builder::panic_threshold`](crate::Builder::panic_threshold) 0). The call fails
    /// at once.
    #[error("all {endpoints} endpoints are unhealthy")]
    AllUnhealthy {
        /// How many endpoints the pool has.
        endpoints: usize,
    },

    /// An endpoint weight outside `1..=MAX_WEIGHT` was given at build or insert time.
    #[error("weight {weight} for endpoint {key} is out of range 1..={max}")]
    InvalidWeight {
        /// The endpoint's key, formatted with `Debug`.
        key: String,
        /// The rejected weight.
        weight: u32,
        /// The largest weight accepted ([`MAX_WEIGHT`](crate::MAX_WEIGHT)).
        max: u32,
    },

    /// A base URL that is not an absolute `http` or `https` URL with a host (and no query or
    /// fragment) was given at build or insert time.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A membership operation named a key that is not in the pool.
    #[error("unknown endpoint {key}")]
    UnknownEndpoint {
        /// The endpoint's key, formatted with `Debug`.
        key: String,
    },

    /// The call took longer than the balancer's per-call timeout
    /// ([`Builder::timeout`](crate::Builder::timeout)) and was dropped. It counts as a failure
    /// of the endpoint. Behind a [`RetryLayer`](crate::retry::RetryLayer) the timeout is per
    /// attempt.
    #[error("the call timed out after {after:?}")]
    Timeout {
        /// The timeout that elapsed.
        after: std::time::Duration,
    },

    /// A write reached a [`ReplicaRouter`](crate::replica::ReplicaRouter) whose primary pool
    /// has no endpoint in rotation (`reason` is the primary balancer's own error). The call
    /// fails at once; writes never go to a replica.
    #[error("no primary to write to: {reason}")]
    NoPrimary {
        /// Why the primary pool could not take it.
        reason: Box<Error>,
    },

    /// A read found no replica in rotation, and the primary already serves the share of reads
    /// it is capped at ([`ReplicaRouterBuilder::max_primary_read_share`](crate::replica::ReplicaRouterBuilder::max_primary_read_share)).
    /// The call fails at once rather than load the primary further.
    #[error("no replica in rotation, and the primary already serves {percent} % of reads")]
    PrimaryReadShare {
        /// The cap, in percent of reads.
        percent: u32,
    },

    /// A read found no replica in rotation (`reason` is the replica balancer's own error),
    /// and the router sends reads to replicas only
    /// ([`Reads::ReplicasOnly`](crate::replica::Reads::ReplicasOnly), libpq's
    /// `target_session_attrs=standby`). The call fails at once; it is not sent to the primary.
    #[error("no replica to read from: {reason}")]
    NoReplica {
        /// Why the replica pool could not take it.
        reason: Box<Error>,
    },

    /// The nodes a statement was routed to left rotation (found dead by a monitor or by
    /// health) while it waited for a connection to them, `times` times in a row; it was never
    /// sent. One such node is routed around at once (a write to another primary, a read to
    /// the primary, or the typed error of the pool that has none left); this is what is left
    /// when node after node goes.
    #[error(
        "the nodes the statement was routed to left rotation {times} times before it was sent"
    )]
    NodesLeftRotation {
        /// How many nodes left while the statement waited.
        times: usize,
    },

    /// [`ReplicaRouter::ready`](crate::replica::ReplicaRouter::ready) waited `waited` and the
    /// router's monitors had not all answered their first round.
    #[error("the replica monitors had not finished their first round after {waited:?}")]
    MonitorsNotReady {
        /// How long it waited.
        waited: std::time::Duration,
    },

    /// None of a [`PgHosts`](crate::replica::PgHosts) router's `nodes` hosts answered its
    /// first role probe within `waited` (all down, unreachable, or refusing the credentials).
    #[error("none of the {nodes} hosts answered a role probe within {waited:?}")]
    Unreachable {
        /// How many hosts there are.
        nodes: usize,
        /// How long their first probes were given.
        waited: std::time::Duration,
    },

    /// The policy returned no endpoint (or one out of range) from a non-empty pool.
    #[error("the balancing policy picked no endpoint among {eligible}")]
    NoPick {
        /// How many endpoints the policy was offered.
        eligible: usize,
    },
}

impl Error {
    pub(crate) fn unknown_endpoint(key: &impl std::fmt::Debug) -> Self {
        Error::UnknownEndpoint {
            key: format!("{key:?}"),
        }
    }
}
