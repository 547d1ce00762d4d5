//! [`HttpCheck`]: an active health check that GETs a path.

use super::{ActiveChecks, BoxFuture, HealthCheck};
use crate::BoxError;
use std::fmt::Display;
use std::time::Duration;

/// GETs `{key}{path}` and expects a 2xx answer: for endpoints keyed by their base URL
/// (`http://127.0.0.1:8081`). Needs the `reqwest` feature.
///
/// ```
/// use std::time::Duration;
/// use tower_lb::health::{ActiveChecks, HttpCheck};
///
/// let checks: ActiveChecks<String> = HttpCheck::get("/healthz").every(Duration::from_secs(2));
/// # let _ = checks;
/// ```
#[derive(Debug, Clone)]
pub struct HttpCheck {
    client: reqwest::Client,
    path: String,
}

impl HttpCheck {
    /// Checks `path` with a new `reqwest::Client`.
    pub fn get(path: impl Into<String>) -> Self {
        HttpCheck::with_client(reqwest::Client::new(), path)
    }

    /// Checks `path` with `client` (its timeouts, TLS settings and connection pool).
    pub fn with_client(client: reqwest::Client, path: impl Into<String>) -> Self {
        HttpCheck {
            client,
            path: path.into(),
        }
    }

    /// This check every `interval`, with the other [`ActiveChecks`] defaults.
    pub fn every<K: Display + 'static>(self, interval: Duration) -> ActiveChecks<K> {
        ActiveChecks::new(self).every(interval)
    }
}

impl<K: Display> HealthCheck<K> for HttpCheck {
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
