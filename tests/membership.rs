//! Membership: runtime insert/remove, discovery, draining, and the typed errors around them.

use futures::{channel::mpsc, StreamExt, TryFutureExt};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;
use tower::discover::Change;
use tower::{service_fn, Service, ServiceExt};
use tower_lb::policy::{LeastPending, P2c, Pick, Random, RoundRobin, WeightedRoundRobin};
use tower_lb::{Balance, BalanceLayer, DriverState, EndpointState, Error, MAX_WEIGHT};

type Echo = tower::util::ServiceFn<fn(()) -> futures::future::Ready<Result<u8, Infallible>>>;

/// An endpoint that answers with its own key.
fn echo(
    key: u8,
) -> impl Service<(), Response = u8, Error = Infallible, Future = impl Send> + Clone + Send + Sync {
    service_fn(move |()| futures::future::ready(Ok::<_, Infallible>(key)))
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u32),
    Remove(u8),
    Pick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8, 1u32..=4).prop_map(|(k, w)| Op::Insert(k, w)),
        (0u8..8).prop_map(Op::Remove),
        Just(Op::Pick),
        Just(Op::Pick),
    ]
}

/// Replays `ops` against a balancer and a model of its membership: a pick must land on a
/// member, an empty pool must fail with `NoEndpoints`, and nothing may panic.
fn check_ops<P: Pick<()> + Clone>(policy: P, ops: &[Op]) -> Result<(), TestCaseError> {
    let lb = Balance::builder(policy)
        .build()
        .expect("an empty pool builds");
    // Picks go through a fresh clone each time and through one long-lived handle, which
    // caches its snapshot between calls and must notice every change.
    let mut handle = lb.clone();
    let mut model = BTreeMap::new();
    for op in ops {
        match *op {
            Op::Insert(k, w) => {
                lb.insert_weighted(k, echo(k), w).expect("valid weight");
                model.insert(k, w);
            }
            Op::Remove(k) => {
                let removed = lb.remove(&k);
                prop_assert_eq!(removed.is_ok(), model.remove(&k).is_some());
            }
            Op::Pick => {
                for answer in [
                    futures::executor::block_on(lb.clone().oneshot(())),
                    futures::executor::block_on(handle.ready().and_then(|h| h.call(()))),
                    futures::executor::block_on(handle.ready().and_then(|h| h.call(()))),
                ] {
                    match answer {
                        Ok(k) => {
                            prop_assert!(model.contains_key(&k), "picked removed endpoint {}", k)
                        }
                        Err(e) => {
                            prop_assert!(model.is_empty(), "error with members: {}", e);
                            prop_assert_eq!(e.downcast_ref::<Error>(), Some(&Error::NoEndpoints));
                        }
                    }
                }
            }
        }
        let listed: Vec<(u8, u32)> = lb.snapshot().iter().map(|e| (e.key, e.weight)).collect();
        let mut expected: Vec<(u8, u32)> = model.iter().map(|(&k, &w)| (k, w)).collect();
        let mut sorted = listed.clone();
        sorted.sort();
        expected.sort();
        prop_assert_eq!(sorted, expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn membership_sequences_never_pick_a_removed_endpoint(ops in prop::collection::vec(op(), 1..60), seed: u64) {
        check_ops(RoundRobin::new().with_rng(seed), &ops)?;
        check_ops(WeightedRoundRobin::new().with_rng(seed), &ops)?;
        check_ops(Random::new().with_rng(seed), &ops)?;
        check_ops(LeastPending::new().with_rng(seed), &ops)?;
        check_ops(P2c::new().with_rng(seed), &ops)?;
        check_ops(P2c::peak_ewma().with_rng(seed), &ops)?;
    }
}

#[tokio::test]
async fn empty_pool_fails_at_once() {
    let lb: Balance<u8, Echo, _> = Balance::builder(P2c::new()).build().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(1), lb.oneshot(()))
        .await
        .expect("fails at once, never pends")
        .unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::NoEndpoints));
}

#[test]
fn invalid_weights_are_typed_errors() {
    for weight in [0, MAX_WEIGHT + 1] {
        let built =
            Balance::builder(WeightedRoundRobin::new()).weighted_endpoint(1u8, echo(1), weight);
        assert_eq!(
            built.err(),
            Some(Error::InvalidWeight {
                key: "1".into(),
                weight,
                max: MAX_WEIGHT
            })
        );
    }
    let lb = Balance::builder(WeightedRoundRobin::new())
        .endpoint(1u8, echo(1))
        .build()
        .unwrap();
    assert!(matches!(
        lb.insert_weighted(2, echo(2), 0),
        Err(Error::InvalidWeight { .. })
    ));
    assert_eq!(
        lb.snapshot().len(),
        1,
        "a rejected insert leaves the pool unchanged"
    );
}

#[test]
fn removing_an_unknown_key_is_a_typed_error() {
    let lb = Balance::builder(RoundRobin::new())
        .endpoint(1u8, echo(1))
        .build()
        .unwrap();
    assert_eq!(
        lb.remove(&9),
        Err(Error::UnknownEndpoint { key: "9".into() })
    );
}

#[tokio::test]
async fn endpoint_errors_pass_through_and_downcast() {
    let failing = service_fn(|()| async { Err::<u8, _>(std::io::Error::other("backend down")) });
    let lb = Balance::builder(RoundRobin::new())
        .endpoint("a", failing)
        .build()
        .unwrap();
    let err = lb.clone().oneshot(()).await.unwrap_err();
    let io = err
        .downcast_ref::<std::io::Error>()
        .expect("the endpoint's own error");
    assert_eq!(io.to_string(), "backend down");
    assert_eq!(lb.snapshot()[0].failures, 1);
}

#[tokio::test]
async fn discovery_applies_changes_without_traffic_and_stops_with_the_balancer() {
    let (tx, rx) = mpsc::unbounded::<Change<u8, _>>();
    tx.unbounded_send(Change::Insert(1, echo(1))).unwrap();
    let lb = Balance::builder(RoundRobin::new())
        .discover(rx.map(Ok::<_, Infallible>))
        .build()
        .unwrap();
    assert_eq!(lb.snapshot().len(), 1, "ready changes are applied by build");

    tx.unbounded_send(Change::Insert(2, echo(2))).unwrap();
    tx.unbounded_send(Change::Remove(1)).unwrap();
    wait_until(|| lb.snapshot().iter().map(|e| e.key).collect::<Vec<_>>() == [2]).await;
    assert_eq!(lb.clone().oneshot(()).await.unwrap(), 2);

    drop(lb);
    wait_until(|| tx.is_closed()).await;
}

#[test]
fn discovery_built_outside_a_runtime_starts_on_the_first_call_inside_one() {
    let (tx, rx) = mpsc::unbounded::<Change<u8, _>>();
    tx.unbounded_send(Change::Insert(1, echo(1))).unwrap();
    // Built outside any runtime, as in a `OnceLock` or before `main` starts one.
    let lb = Balance::builder(RoundRobin::new())
        .discover(rx.map(Ok::<_, Infallible>))
        .build()
        .expect("builds anywhere");
    assert_eq!(lb.snapshot().len(), 1, "ready changes are applied at build");
    assert_eq!(lb.stats().discovery_driver, DriverState::WaitingForRuntime);
    // The same through a layer.
    let (_tx2, rx2) = mpsc::unbounded::<Change<u8, Echo>>();
    let layered = tower::Layer::layer(
        &BalanceLayer::new(RoundRobin::new()),
        rx2.map(Ok::<_, Infallible>),
    );
    assert_eq!(
        layered.stats().discovery_driver,
        DriverState::WaitingForRuntime
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(lb.clone().oneshot(()).await.unwrap(), 1);
        assert_eq!(lb.stats().discovery_driver, DriverState::Running);
        tx.unbounded_send(Change::Insert(2, echo(2))).unwrap();
        tx.unbounded_send(Change::Remove(1)).unwrap();
        wait_until(|| lb.snapshot().iter().map(|e| e.key).collect::<Vec<_>>() == [2]).await;
        drop(tx);
        wait_until(|| lb.stats().discovery_driver == DriverState::Finished).await;
    });
}

#[tokio::test]
async fn a_finished_discovery_stream_needs_no_runtime_task() {
    let list = tower::discover::ServiceList::new([echo(7), echo(8)]);
    let lb = Balance::builder(P2c::new()).discover(list).build().unwrap();
    assert_eq!(lb.snapshot().len(), 2);
}

#[tokio::test]
async fn removed_endpoint_drains_then_disappears() {
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let gate = futures::future::FutureExt::shared(gate);
    let slow = service_fn(move |()| {
        let gate = gate.clone();
        async move {
            let _ = gate.await;
            Ok::<_, Infallible>(1u8)
        }
    });
    let lb = Balance::builder(RoundRobin::new())
        .endpoint(1u8, slow)
        .build()
        .unwrap();
    let call = tokio::spawn(lb.clone().oneshot(()));
    wait_until(|| lb.snapshot()[0].in_flight == 1).await;

    lb.remove(&1).unwrap();
    let snapshot = lb.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].state, EndpointState::Draining);
    let err = lb.clone().oneshot(()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>(),
        Some(&Error::NoEndpoints),
        "no new picks"
    );

    release.send(()).unwrap();
    assert_eq!(
        call.await.unwrap().unwrap(),
        1,
        "the call in flight completes"
    );
    assert!(lb.snapshot().is_empty());
}

/// Waits (at most 5 s, in 5 ms steps) for `condition`.
async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 5 s");
}
