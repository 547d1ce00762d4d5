//! The request path allocates nothing: no boxed response future, no per-request bookkeeping.
//! Counted with a global allocator wrapper, over many requests, for every policy; only the
//! measuring thread's allocations count, so the test harness's own threads cannot disturb it.

use futures::FutureExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::util::ServiceFn;
use tower::{service_fn, Service, ServiceExt};
use tower_lb::policy::{LeastPending, P2c, Pick, Random, RoundRobin, WeightedRoundRobin};
use tower_lb::Balance;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING
            .try_with(|counting| counting.get())
            .unwrap_or(false)
        {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

type Trivial = ServiceFn<fn(()) -> Ready<Result<u32, Infallible>>>;

fn allocations_per_1000_requests<P: Pick<()>>(policy: P) -> usize {
    let mut lb: Balance<u32, Trivial, P> = Balance::builder(policy)
        .endpoints((0..16).map(|i| (i, service_fn((|()| ready(Ok(7))) as fn(()) -> _))))
        .build()
        .expect("builds");
    let mut request = || {
        lb.ready().now_or_never().unwrap().unwrap();
        lb.call(()).now_or_never().unwrap().unwrap()
    };
    request(); // the first calls may set up thread-locals (the RNG, arc-swap's debt list)
    request();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|counting| counting.set(true));
    for _ in 0..1000 {
        assert_eq!(request(), 7);
    }
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

// One test, so no other test's allocations run concurrently with the count.
#[test]
fn no_policy_allocates_per_request() {
    assert_eq!(
        allocations_per_1000_requests(RoundRobin::new()),
        0,
        "round robin"
    );
    assert_eq!(
        allocations_per_1000_requests(WeightedRoundRobin::new()),
        0,
        "weighted"
    );
    assert_eq!(allocations_per_1000_requests(Random::new()), 0, "random");
    assert_eq!(
        allocations_per_1000_requests(LeastPending::new()),
        0,
        "least pending"
    );
    assert_eq!(allocations_per_1000_requests(P2c::new()), 0, "p2c");
    assert_eq!(
        allocations_per_1000_requests(P2c::peak_ewma()),
        0,
        "p2c peak-ewma"
    );
}
