//! Locality: zones (data centers, availability zones) in priority order, and the share of
//! traffic each takes from its health.

use std::fmt;
use std::sync::Arc;

/// Envoy's default overprovisioning factor: a zone keeps all its traffic while at least
/// 1 / 1.4 ≈ 71.4 % of its endpoints are healthy.
pub const DEFAULT_OVERPROVISIONING: f64 = 1.4;

/// Zones in priority order, the local one first, and how traffic spreads over them by health
/// ([`Builder::locality`](crate::Builder::locality)).
///
/// This is Envoy's priority-level rule. A zone's health is
/// `min(1, overprovisioning × healthy / in rotation)`, counting neither excluded endpoints
/// nor draining ones. Then the zones take traffic in priority order:
/// - the local zone takes `min(1, health₀)`;
/// - the next zone takes `min(what is left, health₁)`, and so on;
/// - endpoints in zones not listed form one last zone;
/// - when the healths add up to less than 1, each zone takes `healthᵢ / Σ health`;
/// - when every zone's health is 0, the first zone with endpoints takes everything.
///
/// So with the default factor 1.4, the local zone keeps all traffic while at least 71.4 % of
/// its endpoints are healthy. Below that it spills the rest to the next zones (at 50 %
/// healthy it keeps 70 %), and when it is down they take over in priority order.
///
/// Within a zone the balancer's policy picks, over that zone's eligible endpoints, so
/// locality works with every policy and with health. The panic threshold applies per zone:
/// a zone with too few healthy endpoints balances its share over all of them. With a sticky
/// policy, a key keeps its endpoint within a zone; while a zone spills, a request's zone is
/// drawn at random.
///
/// ```
/// use tower_lb::Locality;
///
/// let zones = Locality::new(["eu-west-1a", "eu-west-1b"]);
/// // The local zone at 50 % healthy keeps 70 %; the other takes the rest.
/// let shares = zones.shares(&[0.5, 1.0, 0.0]);
/// assert!((shares[0] - 0.7).abs() < 1e-9 && (shares[1] - 0.3).abs() < 1e-9);
/// ```
#[derive(Clone, PartialEq)]
pub struct Locality {
    zones: Vec<Arc<str>>,
    overprovisioning: f64,
}

impl Locality {
    /// Zones in priority order: the local zone first, then where to spill and fail over.
    pub fn new<I, Z>(zones: I) -> Self
    where
        I: IntoIterator<Item = Z>,
        Z: AsRef<str>,
    {
        Locality {
            zones: zones
                .into_iter()
                .map(|zone| Arc::from(zone.as_ref()))
                .collect(),
            overprovisioning: DEFAULT_OVERPROVISIONING,
        }
    }

    /// How far a zone's healthy share is stretched before it spills (default 1.4). Values
    /// below 1 (and NaN) mean 1: a zone spills as soon as any endpoint is unhealthy.
    ///
    /// ```
    /// use tower_lb::Locality;
    ///
    /// let strict = Locality::new(["a", "b"]).overprovisioning(1.0);
    /// assert!((strict.shares(&[0.9, 1.0, 0.0])[1] - 0.1).abs() < 1e-9);
    /// ```
    pub fn overprovisioning(mut self, factor: f64) -> Self {
        self.overprovisioning = if factor >= 1.0 { factor } else { 1.0 };
        self
    }

    /// The zones, in priority order.
    pub fn zones(&self) -> &[Arc<str>] {
        &self.zones
    }

    /// The priority of `zone`: its position in the list, or one past the end if not listed.
    pub(crate) fn priority(&self, zone: &str) -> usize {
        self.zones
            .iter()
            .position(|listed| &**listed == zone)
            .unwrap_or(self.zones.len())
    }

    /// The share of traffic each zone takes, given each zone's healthy fraction (one entry
    /// per listed zone, then one for endpoints in unlisted zones). The shares add up to 1,
    /// or are all 0 when every health is 0.
    ///
    /// ```
    /// use tower_lb::Locality;
    ///
    /// let zones = Locality::new(["local", "remote"]);
    /// assert_eq!(zones.shares(&[1.0, 1.0, 0.0]), [1.0, 0.0, 0.0]);
    /// assert_eq!(zones.shares(&[0.0, 1.0, 0.0]), [0.0, 1.0, 0.0]);
    /// // 71 % healthy: 99.4 % stays local.
    /// assert!((zones.shares(&[0.71, 1.0, 0.0])[0] - 0.994).abs() < 1e-9);
    /// ```
    pub fn shares(&self, healthy: &[f64]) -> Vec<f64> {
        let health: Vec<f64> = healthy
            .iter()
            .map(|h| (h.clamp(0.0, 1.0) * self.overprovisioning).min(1.0))
            .collect();
        let total: f64 = health.iter().sum();
        if total < 1.0 {
            return health
                .iter()
                .map(|h| if total > 0.0 { h / total } else { 0.0 })
                .collect();
        }
        let mut left = 1.0f64;
        health
            .iter()
            .map(|h| {
                let share = h.min(left);
                left -= share;
                share
            })
            .collect()
    }
}

impl fmt::Debug for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locality")
            .field("zones", &self.zones)
            .field("overprovisioning", &self.overprovisioning)
            .finish()
    }
}

/// A pool's locality and how it finds each endpoint's zone.
pub(crate) struct Zoning<K> {
    pub(crate) locality: Locality,
    /// An endpoint's zone priority, from its key.
    pub(crate) priority_of: Box<dyn Fn(&K) -> usize + Send + Sync>,
}

impl<K> Zoning<K> {
    pub(crate) fn new<Z: AsRef<str>>(
        locality: Locality,
        zone_of: impl Fn(&K) -> Z + Send + Sync + 'static,
    ) -> Self {
        let zones = locality.clone();
        Zoning {
            locality,
            priority_of: Box::new(move |key| zones.priority(zone_of(key).as_ref())),
        }
    }

    /// The priority of a zone by name (one past the listed zones if not listed).
    pub(crate) fn priority(&self, zone: &str) -> usize {
        self.locality.priority(zone)
    }

    /// How many zones there are, counting the one of unlisted zones.
    pub(crate) fn count(&self) -> usize {
        self.locality.zones.len() + 1
    }
}
