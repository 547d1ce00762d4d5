//! DNS discovery: a pool that follows the addresses a name resolves to.
//!
//! [`DnsDiscover`] is a `tower::discover::Discover` stream: give it to
//! [`Builder::discover`](crate::Builder::discover) and the balancer's discovery driver applies
//! its changes, with or without traffic. Every interval it resolves the name again and emits
//! an insert for each new address and a removal (the endpoint drains) for each one gone.
//!
//! The resolver is the application's code (or the system's, which can block for many
//! seconds): each resolution runs within [`RESOLVE_TIMEOUT`], and one that panics or takes
//! longer counts as a failed resolution, like an error answer. Membership then stays as it
//! was, and the name is resolved again at the next interval.

use crate::background::{answer_within, Answer, NoAnswer};
use crate::error::BoxError;
use futures_core::Stream;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tower::discover::Change;

pub use crate::background::BoxFuture;

/// How long one resolution may take before it counts as failed: longer than the system
/// resolver's default of two tries of five seconds each takes to give up on one server.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a resolution gave no addresses: what [`DnsDiscover::new`] returns, and what its stream
/// yields (boxed) while it keeps the last good addresses.
///
/// ```
/// use std::time::Duration;
/// use tower::service_fn;
/// use tower_lb::dns::{DnsDiscover, DnsError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let make = |_addr| service_fn(|()| async { Ok::<_, std::io::Error>(()) });
/// // No port: the resolver refuses it without a lookup.
/// let error = DnsDiscover::new("localhost", make, Duration::from_secs(5))
///     .await
///     .unwrap_err();
/// assert!(matches!(error, DnsError::Resolve { .. }), "{error}");
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The resolver answered with an error.
    #[error("resolving {host} failed: {source}")]
    Resolve {
        /// The `host:port` resolved.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The resolver answered with no address. Treated as a failure, not as "remove every
    /// endpoint": an empty answer is far more often a resolver's fault than a real one.
    #[error("{host} resolved to no address")]
    NoAddress {
        /// The `host:port` resolved.
        host: String,
    },
    /// The resolver did not answer within [`RESOLVE_TIMEOUT`].
    #[error("resolving {host} took longer than {after:?}")]
    TimedOut {
        /// The `host:port` resolved.
        host: String,
        /// The time limit it exceeded.
        after: Duration,
    },
    /// The resolver panicked, making its future or polling it.
    #[error("the resolver panicked resolving {host}: {message}")]
    Panicked {
        /// The `host:port` resolved.
        host: String,
        /// The panic's message.
        message: String,
    },
}

/// Resolves a `host:port` to socket addresses. The default is tokio's resolver
/// ([`TokioResolver`]); a fake one makes tests deterministic.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses `host:port` resolves to now.
    fn resolve(&self, host_port: &str) -> BoxFuture<std::io::Result<Vec<SocketAddr>>>;
}

/// Resolves with `tokio::net::lookup_host` (the system resolver, on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioResolver;

impl Resolve for TokioResolver {
    fn resolve(&self, host_port: &str) -> BoxFuture<std::io::Result<Vec<SocketAddr>>> {
        let host_port = host_port.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host(host_port).await?.collect()) })
    }
}

/// Follows the addresses a `host:port` resolves to (see the [module](self)).
///
/// - A resolution that fails keeps the last good set, and is logged (the stream yields the
///   [`DnsError`], which the balancer's discovery driver logs and skips).
/// - An empty answer is treated like a failure, not as "remove everything"; so are a
///   resolver that panics and one that takes longer than [`RESOLVE_TIMEOUT`].
/// - Every address becomes an endpoint keyed by its `SocketAddr`, made by `make`.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{dns::DnsDiscover, policy::P2c, Balance};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_lb::BoxError> {
/// let make = |addr: std::net::SocketAddr| service_fn(move |()| async move {
///     Ok::<_, std::io::Error>(addr) // a real endpoint would connect to `addr`
/// });
/// let dns = DnsDiscover::new("localhost:8080", make, Duration::from_secs(5)).await?;
/// let lb = Balance::builder(P2c::new()).discover(dns).build()?;
/// assert!(lb.oneshot(()).await?.ip().is_loopback());
/// # Ok(()) }
/// ```
pub struct DnsDiscover<F, S> {
    host_port: String,
    make: F,
    resolver: Arc<dyn Resolve>,
    every: tokio::time::Interval,
    known: BTreeSet<SocketAddr>,
    pending: VecDeque<Change<SocketAddr, S>>,
    resolving: Option<Pin<Box<Resolution>>>,
}

/// One resolution in progress, bounded in time, with a panic caught.
type Resolution = Answer<BoxFuture<std::io::Result<Vec<SocketAddr>>>>;

/// Starts resolving `host_port` with `resolver`.
fn resolve(resolver: &dyn Resolve, host_port: &str) -> Resolution {
    answer_within(RESOLVE_TIMEOUT, || resolver.resolve(host_port))
}

impl<F, S> DnsDiscover<F, S>
where
    F: Fn(SocketAddr) -> S,
{
    /// Resolves `host_port` now with tokio's resolver, then again every `interval` (at least
    /// 100 ms). The first answer's endpoints are in the pool as soon as the balancer is built.
    ///
    /// # Errors
    /// The first resolution's [`DnsError`].
    pub async fn new(
        host_port: impl Into<String>,
        make: F,
        interval: Duration,
    ) -> Result<Self, DnsError> {
        DnsDiscover::with_resolver(host_port, make, interval, TokioResolver).await
    }

    /// As [`new`](Self::new), resolving with `resolver`.
    ///
    /// # Errors
    /// The first resolution's [`DnsError`].
    pub async fn with_resolver(
        host_port: impl Into<String>,
        make: F,
        interval: Duration,
        resolver: impl Resolve,
    ) -> Result<Self, DnsError> {
        let host_port = host_port.into();
        let resolver: Arc<dyn Resolve> = Arc::new(resolver);
        let first = resolve(&*resolver, &host_port).await;
        let interval = interval.max(Duration::from_millis(100));
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dns = DnsDiscover {
            host_port,
            make,
            resolver,
            every,
            known: BTreeSet::new(),
            pending: VecDeque::new(),
            resolving: None,
        };
        dns.apply(first)?;
        Ok(dns)
    }

    /// Queues the changes from the known set to `answer`; a failed resolution or an empty
    /// answer changes nothing.
    fn apply(
        &mut self,
        answer: Result<std::io::Result<Vec<SocketAddr>>, NoAnswer>,
    ) -> Result<(), DnsError> {
        let host = self.host_port.clone();
        let addresses: BTreeSet<SocketAddr> = match answer {
            Ok(Ok(addresses)) => addresses.into_iter().collect(),
            Ok(Err(source)) => return Err(DnsError::Resolve { host, source }),
            Err(NoAnswer::Panicked(message)) => return Err(DnsError::Panicked { host, message }),
            Err(NoAnswer::TimedOut) => {
                let after = RESOLVE_TIMEOUT;
                return Err(DnsError::TimedOut { host, after });
            }
        };
        if addresses.is_empty() {
            return Err(DnsError::NoAddress { host });
        }
        for gone in self.known.difference(&addresses) {
            tracing::info!(address = %gone, host = %self.host_port, "address gone from DNS");
            self.pending.push_back(Change::Remove(*gone));
        }
        for new in addresses.difference(&self.known) {
            tracing::info!(address = %new, host = %self.host_port, "address new in DNS");
            self.pending
                .push_back(Change::Insert(*new, (self.make)(*new)));
        }
        self.known = addresses;
        Ok(())
    }
}

impl<F, S> Stream for DnsDiscover<F, S>
where
    F: Fn(SocketAddr) -> S + Unpin,
    S: Unpin,
{
    type Item = Result<Change<SocketAddr, S>, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if let Some(resolving) = &mut this.resolving {
                let answer = ready!(resolving.as_mut().poll(cx));
                this.resolving = None;
                if let Err(error) = this.apply(answer) {
                    tracing::warn!(host = %this.host_port, %error, "DNS resolution failed: keeping the last addresses");
                    return Poll::Ready(Some(Err(error.into())));
                }
                continue;
            }
            ready!(this.every.poll_tick(cx));
            this.resolving = Some(Box::pin(resolve(&*this.resolver, &this.host_port)));
        }
    }
}

impl<F, S> fmt::Debug for DnsDiscover<F, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscover")
            .field("host_port", &self.host_port)
            .field("known", &self.known)
            .finish_non_exhaustive()
    }
}
