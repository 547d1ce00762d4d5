//! Discovery that carries weight, zone and draining (`Discovered`), from a scripted registry
//! stream: weights followed, an update that keeps the endpoint's history, a zone move that
//! reroutes, draining that takes no new picks, and bad changes skipped without ending the
//! stream.

use futures::channel::mpsc;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use tower::discover::Change;
use tower::{service_fn, Service, ServiceExt};
use tower_lb::policy::P2c;
use tower_lb::{Balance, Discovered, Locality};

/// An endpoint that answers with its own key.
fn echo(
    key: &'static str,
) -> impl Service<(), Response = &'static str, Error = Infallible, Future = impl Send>
       + Clone
       + Send
       + Sync {
    service_fn(move |()| futures::future::ready(Ok::<_, Infallible>(key)))
}

type Registry<S> = mpsc::UnboundedSender<Result<Change<&'static str, Discovered<S>>, Infallible>>;

fn send<S>(registry: &Registry<S>, key: &'static str, discovered: Discovered<S>) {
    registry
        .unbounded_send(Ok(Change::Insert(key, discovered)))
        .unwrap();
}

/// Shares of `n` calls, one at a time.
async fn shares<B>(lb: &B, n: usize) -> HashMap<&'static str, f64>
where
    B: Service<(), Response = &'static str> + Clone,
    B::Error: std::fmt::Debug,
{
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts
            .entry(lb.clone().oneshot(()).await.unwrap())
            .or_insert(0) += 1;
    }
    (counts.into_iter())
        .map(|(key, count)| (key, f64::from(count) / n as f64))
        .collect()
}

/// Polls `done` until it holds (bounded: a second).
async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition not reached within a second");
}

#[tokio::test]
async fn weights_from_discovery_are_followed_and_an_update_keeps_history() {
    let (registry, changes) = mpsc::unbounded();
    send(&registry, "a", Discovered::new(echo("a")).weight(3));
    send(&registry, "b", Discovered::new(echo("b")));
    let lb = Balance::builder(P2c::new().with_rng(11))
        .discover_with_metadata(changes)
        .build()
        .unwrap();
    let shares_3_1 = shares(&lb, 60_000).await;
    assert!((shares_3_1["a"] - 0.75).abs() <= 0.01, "{shares_3_1:?}");

    // A weight-only update: b keeps its counters (its picks go on from where they were).
    let picks_before = lb.snapshot()[1].picks;
    send(&registry, "b", Discovered::update().weight(3));
    wait_until(|| lb.snapshot()[1].weight == 3).await;
    let b = &lb.snapshot()[1];
    assert_eq!((b.key, b.picks), ("b", picks_before), "the same endpoint");
    let shares_1_1 = shares(&lb, 60_000).await;
    assert!((shares_1_1["b"] - 0.5).abs() <= 0.01, "{shares_1_1:?}");
    assert!(lb.snapshot()[1].picks > picks_before + 25_000);

    // A new service under the same key is a new endpoint: its counters start afresh.
    send(&registry, "b", Discovered::new(echo("b")).weight(1));
    wait_until(|| lb.snapshot()[1].picks == 0).await;
}

#[tokio::test]
async fn a_zone_move_reroutes_and_draining_takes_no_new_picks() {
    let (registry, changes) = mpsc::unbounded();
    send(&registry, "x", Discovered::new(echo("x")).zone("local"));
    send(&registry, "y", Discovered::new(echo("y")).zone("remote"));
    let lb = Balance::builder(P2c::new())
        .locality(Locality::new(["local", "remote"]), |_: &&str| "unlisted")
        .discover_with_metadata(changes)
        .build()
        .unwrap();
    assert_eq!(shares(&lb, 1000).await, HashMap::from([("x", 1.0)]));

    // x moves to the remote zone: the local zone is empty, the remote one takes everything.
    send(&registry, "x", Discovered::update().zone("remote"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let moved = shares(&lb, 2000).await;
    assert!((moved["x"] - 0.5).abs() < 0.1, "{moved:?}");

    // y drains: no new picks, and the application's readmit does not end it.
    send(&registry, "y", Discovered::update().draining(true));
    wait_until(|| !lb.snapshot()[1].exclusions.is_empty()).await;
    lb.readmit(&"y").unwrap();
    assert_eq!(shares(&lb, 1000).await, HashMap::from([("x", 1.0)]));
    send(&registry, "y", Discovered::update().draining(false));
    wait_until(|| lb.snapshot()[1].exclusions.is_empty()).await;
    assert!(shares(&lb, 1000).await["y"] > 0.3);
}

#[tokio::test]
async fn a_bad_change_is_skipped_and_the_stream_goes_on() {
    let (registry, changes) = mpsc::unbounded();
    send(&registry, "a", Discovered::new(echo("a")));
    let lb = Balance::builder(P2c::new())
        .discover_with_metadata(changes)
        .build()
        .unwrap();
    send(&registry, "zero", Discovered::new(echo("zero")).weight(0));
    send(&registry, "ghost", Discovered::update().weight(2));
    send(&registry, "a", Discovered::update().weight(u32::MAX));
    send(&registry, "c", Discovered::new(echo("c")).weight(2));
    wait_until(|| lb.snapshot().len() == 2).await;
    let members: Vec<_> = lb.snapshot().iter().map(|e| (e.key, e.weight)).collect();
    assert_eq!(members, [("a", 1), ("c", 2)]);
}
