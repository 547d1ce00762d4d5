//! Memory stays flat under churn: a million requests through the balancer with outlier
//! detection, active checks and retries, while endpoints fail and recover again and again
//! (ejections, probation, checks failing and rising). Live heap bytes are counted with a
//! global allocator wrapper; after warm-up they must not grow with requests or ejections.

#[path = "support/switch.rs"]
mod switch;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;
use switch::Switch;
use tower::{ServiceBuilder, ServiceExt};
use tower_lb::health::{check_fn, ActiveChecks, Outlier};
use tower_lb::policy::P2c;
use tower_lb::retry::{RetryErrors, RetryLayer, RetryPolicy};
use tower_lb::Balance;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ENDPOINTS: usize = 5;
const CHURN_EVERY: u64 = 5_000;

#[test]
fn live_memory_is_flat_from_100k_to_1m_requests_with_churn() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let switches: Vec<Switch> = (0..ENDPOINTS).map(|_| Switch::default()).collect();
        let checked = switches.clone();
        let lb = Balance::builder(P2c::peak_ewma())
            .endpoints(switches.iter().enumerate().map(|(i, s)| (i, s.service())))
            .outlier(
                Outlier::consecutive_failures(3)
                    .base_ejection(Duration::from_millis(50))
                    .max_ejected_percent(40),
            )
            .health_check(
                ActiveChecks::new(check_fn(move |&i: &usize| {
                    let failing = checked[i].failing.load(Ordering::Relaxed);
                    async move {
                        match failing {
                            true => Err(std::io::Error::other("down")),
                            false => Ok(()),
                        }
                    }
                }))
                .every(Duration::from_millis(20)),
            )
            .build()
            .unwrap();
        let policy = RetryPolicy::new(3)
            .retry_if(RetryErrors)
            .backoff(Duration::from_millis(1), Duration::from_millis(2));
        let client = ServiceBuilder::new()
            .layer(RetryLayer::new(policy))
            .service(lb.clone());

        let mut live_at = Vec::new();
        for request in 1..=1_000_000u64 {
            if request % CHURN_EVERY == 0 {
                // Two endpoints fail for a while, then recover: ejections, checks, probation.
                let round = (request / CHURN_EVERY) as usize;
                for (i, switch) in switches.iter().enumerate() {
                    let failing = i == round % ENDPOINTS || i == (round + 2) % ENDPOINTS;
                    switch.failing.store(failing, Ordering::Relaxed);
                }
            }
            let _ = client.clone().oneshot(()).await;
            if request % 100 == 0 {
                tokio::time::advance(Duration::from_millis(1)).await;
            }
            if request % 100_000 == 0 {
                live_at.push((request, LIVE.load(Ordering::Relaxed)));
            }
        }
        let ejections: u64 = lb.snapshot().iter().map(|e| e.ejections).sum();
        let (at_100k, at_1m) = (live_at[0].1, live_at[live_at.len() - 1].1);
        println!(
            "live heap bytes {live_at:?}; {ejections} ejections; growth from 100k to 1M: {} bytes",
            at_1m - at_100k
        );
        assert!(
            ejections > 100,
            "the endpoints churned: {ejections} ejections"
        );
        assert!(
            at_1m - at_100k <= 1 << 20,
            "live heap grew by {} bytes from 100k to 1M requests",
            at_1m - at_100k
        );
    });
}
