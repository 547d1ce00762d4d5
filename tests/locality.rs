//! Locality: the share of traffic per zone follows the documented formula (Envoy's priority
//! levels with overprovisioning 1.4) as the local zone's health drops, on a paused clock with
//! health set by hand (outlier ejection of chosen endpoints); the panic threshold applies per
//! zone.

#[path = "support/switch.rs"]
mod switch;

use std::sync::atomic::Ordering;
use switch::Switch;
use tower::util::BoxCloneSyncService;
use tower::Service;
use tower_lb::health::Outlier;
use tower_lb::policy::Pick;
use tower_lb::policy::{P2c, RoundRobin};
use tower_lb::{Balance, Locality};

const LOCAL: usize = 100;
const REMOTE: usize = 10;
const PICKS: usize = 100_000;

type Key = (&'static str, usize);
type Svc = BoxCloneSyncService<(), (), std::io::Error>;

struct Zones {
    local: Vec<Switch>,
    remote: Vec<Switch>,
}

impl Zones {
    fn new() -> Self {
        Zones {
            local: (0..LOCAL).map(|_| Switch::default()).collect(),
            remote: (0..REMOTE).map(|_| Switch::default()).collect(),
        }
    }

    fn balance<P: Pick<()>>(&self, policy: P, panic_threshold: f64) -> Balance<Key, Svc, P> {
        let zone = |zone: &'static str, nodes: &[Switch]| {
            (nodes.iter().enumerate())
                .map(|(i, n)| ((zone, i), Svc::new(n.service())))
                .collect::<Vec<_>>()
        };
        let endpoints = zone("a", &self.local)
            .into_iter()
            .chain(zone("b", &self.remote));
        Balance::builder(policy)
            .endpoints(endpoints)
            .outlier(Outlier::consecutive_failures(1).max_ejected_percent(100))
            .panic_threshold(panic_threshold)
            .locality(Locality::new(["a", "b"]), |&(zone, _): &Key| zone)
            .build()
            .unwrap()
    }

    fn calls(nodes: &[Switch]) -> usize {
        nodes.iter().map(|n| n.calls.load(Ordering::Relaxed)).sum()
    }

    fn reset(&self) {
        for node in self.local.iter().chain(&self.remote) {
            node.calls.store(0, Ordering::Relaxed);
        }
    }
}

/// Ejects the first `n` local endpoints: they fail until each has been ejected once, then
/// answer again (and stay ejected: the clock is paused).
async fn eject_local<P: Pick<()>>(zones: &Zones, lb: &Balance<Key, Svc, P>, n: usize) {
    for node in &zones.local[..n] {
        node.failing.store(true, Ordering::Relaxed);
    }
    let ejected = |lb: &Balance<Key, Svc, P>| {
        lb.snapshot()
            .iter()
            .filter(|e| e.key.0 == "a" && e.state != tower_lb::EndpointState::Healthy)
            .count()
    };
    let mut lb_handle = lb.clone();
    for _ in 0..200_000 {
        if ejected(lb) == n {
            break;
        }
        let _ = lb_handle.call(()).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(ejected(lb), n, "the chosen endpoints are ejected");
    for node in &zones.local[..n] {
        node.failing.store(false, Ordering::Relaxed);
    }
}

/// Sends `PICKS` requests: the local zone's share, and how many failed.
async fn local_share<P: Pick<()>>(zones: &Zones, lb: &Balance<Key, Svc, P>) -> (f64, usize) {
    zones.reset();
    let mut handle = lb.clone();
    let mut failed = 0;
    for _ in 0..PICKS {
        failed += usize::from(handle.call(()).await.is_err());
    }
    let local = Zones::calls(&zones.local) as f64;
    let total = local + Zones::calls(&zones.remote) as f64;
    (local / total, failed)
}

#[tokio::test(start_paused = true)]
async fn the_local_zone_keeps_its_share_by_health_and_spills_the_rest() {
    let locality = Locality::new(["a", "b"]);
    let mut report = Vec::new();
    // Envoy's rule with overprovisioning 1.4: min(1, 1.4 × healthy fraction) stays local.
    for (healthy, expected) in [(100usize, 1.0), (71, 0.994), (50, 0.70), (0, 0.0)] {
        let formula = locality.shares(&[healthy as f64 / LOCAL as f64, 1.0, 0.0])[0];
        assert!(
            (formula - expected).abs() < 1e-9,
            "Locality::shares: {formula}"
        );
        let zones = Zones::new();
        // Per-zone panic mode off: the shares are the formula's alone.
        let lb = zones.balance(P2c::new(), 0.0);
        eject_local(&zones, &lb, LOCAL - healthy).await;
        let (measured, failed) = local_share(&zones, &lb).await;
        report.push(format!(
            "local {healthy} % healthy: {:.2} % local (formula {:.2} %)",
            measured * 100.0,
            expected * 100.0
        ));
        assert_eq!(failed, 0, "no request fails");
        assert!(
            (measured - expected).abs() <= 0.01,
            "local {healthy} %: measured {measured:.4}, formula {expected:.4}"
        );
    }
    println!("{}", report.join("\n"));
}

#[tokio::test(start_paused = true)]
async fn the_panic_threshold_applies_per_zone() {
    let zones = Zones::new();
    let lb = zones.balance(RoundRobin::new(), 0.5);
    // 40 % of the local zone healthy: below its panic threshold, so its share (56 %) goes
    // over all of its endpoints, ejected ones included; the remote zone is not in panic.
    eject_local(&zones, &lb, 60).await;
    assert!(lb.in_panic_mode());
    let (measured, failed) = local_share(&zones, &lb).await;
    assert_eq!(failed, 0);
    assert!((measured - 0.56).abs() <= 0.01, "local share {measured:.4}");
    let ejected_calls = Zones::calls(&zones.local[..60]);
    let local_calls = Zones::calls(&zones.local);
    assert!(
        (ejected_calls as f64 / local_calls as f64 - 0.6).abs() <= 0.01,
        "in panic mode the zone's share spreads over all its endpoints: {ejected_calls} of \
         {local_calls}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_zone_that_is_down_fails_over_in_priority_order() {
    // Three zones; the local one down, traffic goes to the second, not the third.
    let node = Switch::default();
    let lb = Balance::builder(RoundRobin::new())
        .endpoints([("a", 0), ("b", 0), ("c", 0)].map(|key| (key, node.service())))
        .locality(Locality::new(["a", "b", "c"]), |&(zone, _): &Key| zone)
        .build()
        .unwrap();
    lb.exclude(&("a", 0), "maintenance").unwrap();
    let mut handle = lb.clone();
    for _ in 0..100 {
        handle.call(()).await.unwrap();
    }
    let picks: Vec<(Key, u64)> = lb.snapshot().iter().map(|e| (e.key, e.picks)).collect();
    assert_eq!(picks, [(("a", 0), 0), (("b", 0), 100), (("c", 0), 0)]);
}
