//! [`HttpCheck`]: an active health check that GETs a path.

use super::{ActiveChecks, BoxFuture, HealthCheck};
use crate::BoxError;
use std::fmt::Display;
use std::time::Duration;

/// GETs `{key}{path}` and expects a 2xx answer: for endpoints keyed by their base URL
/// (`http://127.0.0.1:8081`).
///
/// `C` is the `reqwest::Client` it sends with: reqwest 0.13's (feature `reqwest`, what
/// [`HttpCheck::get`] makes) or 0.12's (feature `reqwest-0_12`, through
/// [`HttpCheck::with_client`]).
///
/// ```
/// use std::time::Duration;
/// use tower_lb::health::{ActiveChecks, HttpCheck};
///
/// let checks: ActiveChecks<String> = HttpCheck::get("/healthz").every(Duration::from_secs(2));
/// # let _ = checks;
/// ```
#[derive(Debug, Clone)]
pub struct HttpCheck<C> {
    client: C,
    path: String,
}

#[cfg(feature = "reqwest")]
impl HttpCheck<reqwest::Client> {
    /// Checks `path` with a new `reqwest::Client` (reqwest 0.13).
    pub fn get(path: impl Into<String>) -> Self {
        HttpCheck::with_client(reqwest::Client::new(), path)
    }
}

impl<C> HttpCheck<C> {
    /// Checks `path` with `client` (its timeouts, TLS settings and connection pool).
    ///
    /// ```
    /// use tower_lb::health::HttpCheck;
    ///
    /// let client = reqwest::Client::builder().build()?;
    /// let check = HttpCheck::with_client(client, "/healthz");
    /// # let _ = check; Ok::<(), reqwest::Error>(())
    /// ```
    pub fn with_client(client: C, path: impl Into<String>) -> Self {
        HttpCheck {
            client,
            path: path.into(),
        }
    }

    /// This check every `interval`, with the other [`ActiveChecks`] defaults.
    pub fn every<K: Display + 'static>(self, interval: Duration) -> ActiveChecks<K>
    where
        Self: HealthCheck<K>,
    {
        ActiveChecks::new(self).every(interval)
    }
}

/// The check through one reqwest major (`$reqwest`: the dependency's name).
macro_rules! http_check {
    ($reqwest:ident) => {
        impl<K: Display> HealthCheck<K> for HttpCheck<$reqwest::Client> {
            fn check(&self, key: &K) -> BoxFuture<Result<(), BoxError>> {
                let request = self.client.get(format!("{key}{}", self.path));
                Box::pin(async move {
                    let status = request.send().await?.status();
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("health check answered {status}").into())
                    }
                })
            }
        }
    };
}

#[cfg(feature = "reqwest")]
http_check!(reqwest);
#[cfg(feature = "reqwest-0_12")]
http_check!(reqwest_0_12);
