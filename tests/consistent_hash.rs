//! Consistent hashing: stability, minimal remapping, spread, bounded loads, real HTTP.

#[path = "../examples/support/backend.rs"]
mod backend;

use futures::FutureExt;
use std::convert::Infallible;
use std::future::{ready, Ready};
use tower::{service_fn, Service, ServiceExt};
use tower_lb::policy::{ConsistentHash, Maglev, Pick};
use tower_lb::sticky::{key_fn, KeyFn};
use tower_lb::Balance;

type ByKey = ConsistentHash<KeyFn<fn(&u64) -> Option<u64>>>;

/// An endpoint that answers with its own name.
#[derive(Clone)]
struct Answer(String);

impl Service<u64> for Answer {
    type Response = String;
    type Error = Infallible;
    type Future = Ready<Result<String, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u64) -> Self::Future {
        ready(Ok(self.0.clone()))
    }
}

fn named(name: String) -> Answer {
    Answer(name)
}

fn by_key() -> ByKey {
    ConsistentHash::new(key_fn((|k: &u64| Some(*k)) as fn(&u64) -> Option<u64>))
}

fn ring<I: IntoIterator<Item = usize>>(endpoints: I) -> Balance<String, Answer, ByKey> {
    pool(by_key(), endpoints)
}

/// A balancer over endpoints `e{i}` that answer with their names.
fn pool<P, I>(policy: P, endpoints: I) -> Balance<String, Answer, P>
where
    P: Pick<u64>,
    I: IntoIterator<Item = usize>,
{
    Balance::builder(policy)
        .endpoints(
            endpoints
                .into_iter()
                .map(|i| (format!("e{i}"), named(format!("e{i}")))),
        )
        .build()
        .unwrap()
}

/// Where each of `keys` goes.
fn map<P: Pick<u64>>(lb: &Balance<String, Answer, P>, keys: u64) -> Vec<String> {
    let mut handle = lb.clone();
    (0..keys)
        .map(|k| {
            let call = handle.ready().now_or_never().unwrap().unwrap().call(k);
            call.now_or_never().unwrap().unwrap()
        })
        .collect()
}

const KEYS: u64 = 100_000;

#[test]
fn every_client_and_every_rebuild_agree() {
    let a = ring(0..16);
    let b = ring((0..16).rev()); // built independently, endpoints in another order
    let mapping = map(&a, KEYS);
    assert_eq!(mapping, map(&b, KEYS));

    // A rebuild that ends with the same endpoints maps every key the same way.
    a.insert("extra".into(), named("extra".into()));
    a.remove(&"extra".into()).unwrap();
    assert_eq!(mapping, map(&a, KEYS));
}

#[test]
fn removing_one_endpoint_moves_only_its_keys_and_adding_it_back_restores_them() {
    for n in [8, 64, 512] {
        let lb = ring(0..n);
        let before = map(&lb, KEYS);
        lb.remove(&"e5".into()).unwrap();
        let after = map(&lb, KEYS);

        let mut moved = 0;
        for (old, new) in before.iter().zip(&after) {
            if old == "e5" {
                assert_ne!(new, "e5");
                moved += 1;
            } else {
                assert_eq!(old, new, "a key of another endpoint moved");
            }
        }
        let fraction = moved as f64 / KEYS as f64;
        let expected = 1.0 / n as f64;
        println!(
            "N = {n}: removing one endpoint moved {:.3} % of keys; 1/N = {:.3} %",
            fraction * 100.0,
            expected * 100.0
        );
        // The removed endpoint's share of the ring is within ±30 % of 1/N (the spread test).
        assert!(
            (0.7 * expected..=1.3 * expected).contains(&fraction),
            "moved {fraction}"
        );

        lb.insert("e5".into(), named("e5".into()));
        assert_eq!(
            before,
            map(&lb, KEYS),
            "adding it back restores the old mapping"
        );
    }
}

#[test]
fn raising_a_weight_moves_keys_only_to_that_endpoint() {
    let lb = ring(0..8);
    let before = map(&lb, KEYS);
    lb.insert_weighted("e2".into(), named("e2".into()), 2)
        .unwrap();
    let after = map(&lb, KEYS);
    for (old, new) in before.iter().zip(&after) {
        assert!(old == new || new == "e2", "a key moved from {old} to {new}");
    }
    let share = |m: &[String]| m.iter().filter(|e| *e == "e2").count() as f64 / KEYS as f64;
    assert!(share(&after) > 1.6 * share(&before));
}

#[tokio::test]
async fn bounded_loads_cap_every_endpoint_under_a_hot_key() {
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    // Calls park until released, so in-flight counts build up as in a real hot spot.
    let gate = Arc::new(Semaphore::new(0));
    let endpoint = |i: usize| {
        let gate = Arc::clone(&gate);
        service_fn(move |_key: u64| {
            let gate = Arc::clone(&gate);
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(i)
            }
        })
    };
    let factor = 1.25;
    let run = |bounded: bool| {
        let policy = if bounded {
            by_key().bounded_load(factor)
        } else {
            by_key()
        };
        let lb = Balance::builder(policy)
            .endpoints((0..8).map(|i| (format!("e{i}"), endpoint(i))))
            .build()
            .unwrap();
        // Skewed keys: half of all requests carry the same hot key.
        let mut calls = Vec::new();
        let mut worst_excess = i64::MIN;
        for k in 0..400u64 {
            let key = if k % 2 == 0 { 42 } else { k };
            // Pick now (the balancer is always ready), not when the spawned task first runs.
            let mut handle = lb.clone();
            let call = handle.ready().now_or_never().unwrap().unwrap().call(key);
            calls.push(tokio::spawn(call));
            let snapshot = lb.snapshot();
            let total: usize = snapshot.iter().map(|e| e.in_flight).sum();
            let cap = (factor * total as f64 / snapshot.len() as f64).ceil() as i64;
            let max = snapshot.iter().map(|e| e.in_flight as i64).max().unwrap();
            worst_excess = worst_excess.max(max - cap);
        }
        (calls, worst_excess)
    };
    let (bounded_calls, bounded_excess) = run(true);
    let (free_calls, free_excess) = run(false);
    println!("worst excess over ceil(c × mean): bounded {bounded_excess}, unbounded {free_excess}");
    assert!(
        bounded_excess <= 1,
        "bounded: an endpoint exceeded ceil(c × mean) by {bounded_excess}"
    );
    assert!(
        free_excess > 1,
        "unbounded: the hot key's endpoint should exceed the cap (excess {free_excess})"
    );

    gate.add_permits(800);
    for call in bounded_calls.into_iter().chain(free_calls) {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_session_sticks_to_one_loopback_backend() {
    use backend::Backend;
    use tower_lb::sticky::Cookie;

    let mut backends = Vec::new();
    for i in 0..4 {
        backends.push(Backend::start(format!("b{i}")).await.unwrap());
    }
    let client = reqwest::Client::new();
    let endpoint = |url: String| {
        let client = client.clone();
        service_fn(move |req: http::Request<()>| {
            let mut request = client.get(format!("{url}{}", req.uri().path()));
            if let Some(cookie) = req.headers().get(http::header::COOKIE) {
                request = request.header(http::header::COOKIE, cookie);
            }
            async move { request.send().await?.error_for_status()?.text().await }
        })
    };
    let lb = Balance::builder(ConsistentHash::new(Cookie::new("session")))
        .endpoints(backends.iter().map(|b| (b.name.clone(), endpoint(b.url()))))
        .build()
        .unwrap();

    for session in ["alice", "bob", "carol"] {
        let mut served_by = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let request = http::Request::builder()
                .uri("/cart")
                .header("cookie", format!("theme=dark; session={session}"))
                .body(())
                .unwrap();
            served_by.insert(lb.clone().oneshot(request).await.unwrap());
        }
        assert_eq!(served_by.len(), 1, "{session} was served by {served_by:?}");
    }
    // Requests without the cookie still spread (P2C fallback).
    let total_before: u64 = backends.iter().map(|b| b.hits()).sum();
    for _ in 0..200 {
        lb.clone().oneshot(http::Request::new(())).await.unwrap();
    }
    let total_after: u64 = backends.iter().map(|b| b.hits()).sum();
    assert_eq!(total_after - total_before, 200);
}

/// An endpoint that answers with its name, or fails while `down`.
#[derive(Clone)]
struct Flaky {
    name: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Service<u64> for Flaky {
    type Response = String;
    type Error = std::io::Error;
    type Future = Ready<Result<String, std::io::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u64) -> Self::Future {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            ready(Err(std::io::Error::other("down")))
        } else {
            ready(Ok(self.name.clone()))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn keys_of_an_ejected_endpoint_go_to_their_successors_and_come_back() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tower_lb::health::Outlier;
    use tower_lb::EndpointState;

    let down = std::sync::Arc::new(AtomicBool::new(false));
    let lb = Balance::builder(by_key())
        .outlier(
            Outlier::consecutive_failures(3)
                .jitter(0.0)
                .max_ejected_percent(20),
        )
        .endpoints((0..8).map(|i| {
            let flaky = Flaky {
                name: format!("e{i}"),
                down: if i == 3 {
                    down.clone()
                } else {
                    Default::default()
                },
            };
            (format!("e{i}"), flaky)
        }))
        .build()
        .unwrap();
    let keys = 20_000u64;
    let mapping = |lb: &Balance<String, Flaky, ByKey>| {
        let mut handle = lb.clone();
        (0..keys)
            .map(|k| {
                let call = handle.ready().now_or_never().unwrap().unwrap().call(k);
                call.now_or_never()
                    .unwrap()
                    .unwrap_or_else(|_| "failed".into())
            })
            .collect::<Vec<String>>()
    };
    let before = mapping(&lb);

    // e3 fails; three failures in a row eject it.
    down.store(true, Ordering::Relaxed);
    let e3_key = (0..keys).find(|&k| before[k as usize] == "e3").unwrap();
    for _ in 0..3 {
        let _ = lb.clone().oneshot(e3_key).await;
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        lb.snapshot()[3].state,
        EndpointState::Ejected { .. }
    ));

    // Its keys moved to the next endpoints clockwise; no other key moved.
    let ejected = mapping(&lb);
    let without_e3 = ring((0..8).filter(|&i| i != 3));
    assert_eq!(
        ejected,
        map(&without_e3, keys),
        "e3's keys go where the ring without e3 sends them"
    );
    for (old, new) in before.iter().zip(&ejected) {
        assert!(old == new || old == "e3", "a key of {old} moved to {new}");
    }

    // e3 recovers: after its ejection, the probation request succeeds and every key returns.
    down.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(31)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let _ = lb.clone().oneshot(e3_key).await; // the probe: any request may take it
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(lb.snapshot()[3].state, EndpointState::Healthy);
    assert_eq!(mapping(&lb), before);
}

type MaglevByKey = Maglev<KeyFn<fn(&u64) -> Option<u64>>>;

fn maglev<I: IntoIterator<Item = usize>>(endpoints: I) -> Balance<String, Answer, MaglevByKey> {
    let policy = Maglev::new(key_fn((|k: &u64| Some(*k)) as fn(&u64) -> Option<u64>));
    pool(policy, endpoints)
}

#[test]
fn maglev_agrees_everywhere_moves_few_keys_and_restores_them() {
    let n = 64;
    let a = maglev(0..n);
    let b = maglev((0..n).rev());
    let before = map(&a, KEYS);
    let differ = |x: &[String], y: &[String]| x.iter().zip(y).filter(|(a, b)| a != b).count();
    assert_eq!(differ(&before, &map(&b, KEYS)), 0, "two clients agree");

    // Excluding one endpoint (as an ejection does) moves all of its keys, and a few others.
    a.exclude(&"e5".to_string(), "test").unwrap();
    let during = map(&a, KEYS);
    let own = before.iter().filter(|e| *e == "e5").count();
    let moved_others = before
        .iter()
        .zip(&during)
        .filter(|(old, new)| *old != "e5" && old != new)
        .count();
    assert!(during.iter().all(|e| e != "e5"));
    let share = own as f64 / KEYS as f64 * n as f64;
    let others = moved_others as f64 / KEYS as f64;
    println!(
        "e5's share × N = {share:.3}; other keys moved: {:.2} %",
        others * 100.0
    );
    assert!((0.8..1.2).contains(&share), "{share}");
    assert!(others < 0.03, "{others}");

    // Readmitting it restores every key: the table depends only on the endpoints.
    a.readmit(&"e5".to_string()).unwrap();
    assert_eq!(differ(&before, &map(&a, KEYS)), 0, "every key restored");
}
