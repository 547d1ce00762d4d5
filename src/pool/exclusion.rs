//! Exclusions with owners: who holds an endpoint out of rotation, and why.
//!
//! An endpoint carries one exclusion slot per owner (the application, each monitor), like
//! pingora's `{healthy, enabled}` flags that each have one writer. It is in rotation only
//! while every slot is empty, and an owner sets and lifts only its own slot: a role monitor
//! that finds a node primary again cannot end the application's maintenance window, and the
//! application's `readmit` cannot bring back a replica the lag monitor holds out.

/// Who holds an endpoint out of rotation ([`EndpointSnapshot::exclusions`](crate::EndpointSnapshot::exclusions)).
///
/// ```
/// use tower::service_fn;
/// use tower_lb::{policy::RoundRobin, Balance, BoxError, Excluder};
///
/// let lb = Balance::builder(RoundRobin::new())
///     .endpoint("a", service_fn(|x: u8| async move { Ok::<_, BoxError>(x) }))
///     .build()?;
/// lb.exclude(&"a", "maintenance")?;
/// let exclusions = lb.snapshot()[0].exclusions;
/// assert_eq!(exclusions.by(Excluder::Application), Some("maintenance"));
/// assert_eq!(exclusions.by(Excluder::LagMonitor), None);
/// # Ok::<(), tower_lb::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Excluder {
    /// The application, through [`Balance::exclude`](crate::Balance::exclude) and
    /// [`readmit`](crate::Balance::readmit).
    Application,
    /// The replica lag monitor ([`LagMonitor`](crate::replica::LagMonitor)).
    LagMonitor,
    /// The replica role monitor ([`RoleMonitor`](crate::replica::RoleMonitor)).
    RoleMonitor,
    /// Discovery: a registry that drains the endpoint
    /// ([`Discovered::draining`](crate::Discovered::draining)).
    Discovery,
}

const OWNERS: [Excluder; 4] = [
    Excluder::Application,
    Excluder::LagMonitor,
    Excluder::RoleMonitor,
    Excluder::Discovery,
];

/// An endpoint's exclusions, one reason (or none) per [`Excluder`].
///
/// ```
/// use tower_lb::Exclusions;
///
/// let none = Exclusions::default();
/// assert!(none.is_empty());
/// assert_eq!(none.iter().count(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exclusions([Option<&'static str>; OWNERS.len()]);

impl Exclusions {
    /// Why `owner` holds the endpoint out, if it does.
    pub fn by(&self, owner: Excluder) -> Option<&'static str> {
        self.0[owner as usize]
    }

    /// Whether no owner holds the endpoint out.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// Each owner that holds the endpoint out, with its reason, the application first.
    pub fn iter(&self) -> impl Iterator<Item = (Excluder, &'static str)> + '_ {
        OWNERS
            .iter()
            .zip(&self.0)
            .filter_map(|(owner, reason)| Some((*owner, (*reason)?)))
    }

    /// The first reason, the application's before any monitor's.
    pub(crate) fn first(&self) -> Option<&'static str> {
        self.iter().next().map(|(_, reason)| reason)
    }

    /// Sets (or, with `None`, lifts) `owner`'s exclusion; returns whether it changed.
    pub(crate) fn set(&mut self, owner: Excluder, reason: Option<&'static str>) -> bool {
        let slot = &mut self.0[owner as usize];
        let changed = *slot != reason;
        *slot = reason;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_owner_has_its_own_slot() {
        let mut exclusions = Exclusions::default();
        assert!(exclusions.set(Excluder::RoleMonitor, Some("is the primary")));
        assert!(exclusions.set(Excluder::Application, Some("maintenance")));
        assert!(!exclusions.set(Excluder::Application, Some("maintenance")));
        assert_eq!(exclusions.first(), Some("maintenance"));
        assert!(exclusions.set(Excluder::RoleMonitor, None));
        assert_eq!(exclusions.by(Excluder::Application), Some("maintenance"));
        assert!(!exclusions.is_empty());
        assert!(exclusions.set(Excluder::Application, None));
        assert!(exclusions.is_empty());
    }
}
