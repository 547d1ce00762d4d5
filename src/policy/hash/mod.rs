//! Consistent hashing: sticky sessions that survive membership changes.

mod maglev;
mod placement;

pub use maglev::{Maglev, MaglevTable, DEFAULT_MAGLEV_TABLE_SIZE, MAX_MAGLEV_TABLE_SIZE};

use super::{Candidates, HashKey, P2c, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::load::PeakEwma;
use crate::locks::lock;
use hashring::DefaultHashBuilder;
use placement::{fine, Lookup, Placements};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Sends every request with the same key to the same endpoint, on a consistent-hash ring built
/// with the [`hashring`] crate; requests without a key go to a fallback policy (P2C by default).
///
/// Each endpoint is placed on the ring as `vnodes × weight` virtual nodes (160 per unit of
/// weight by default), at positions that depend only on the endpoint's key. A request's key is
/// hashed onto the ring and goes to the first virtual node clockwise. Every process that builds
/// a ring from the same endpoints agrees on every key (the hash is SipHash with fixed keys).
///
/// # What moves when the pool changes
///
/// - **Insert** an endpoint: only keys that now land on one of its virtual nodes move, all of
///   them to it; about `1/N` of all keys. No key moves between two other endpoints.
/// - **Remove** an endpoint (or, once health checks exist, eject it or let it drain): only its
///   own keys move, each to the next distinct endpoint clockwise. Adding it back restores the
///   old mapping exactly.
/// - **Change a weight**: virtual nodes are added to or taken from that endpoint only, so only
///   keys between its changed nodes and their predecessors move.
/// - **Bounded loads** ([`ConsistentHash::bounded_load`]): a key may also move, temporarily,
///   while its endpoint is over capacity; it goes back as soon as the endpoint has room.
///
/// Positions on the ring are compared at a resolution of two million steps, each owned by
/// the first virtual node at or after its start. Below 2^18 virtual nodes a pick finds its
/// step's owner in the node list (a radix index, then a few nodes); from there on it reads a
/// flat table of every step's owner (two bytes each, 3.8 MiB): O(1), one table read, at any
/// pool size. At 4 096 endpoints of weights 1–4 the largest share per unit of weight is 1.28×
/// the mean (1.22–1.32× over other sets of endpoint names; more virtual nodes narrow it
/// slowly, 1.20–1.31× at 256).
///
/// The ring is kept between snapshots and changed in place: a membership or health change
/// moves only the virtual nodes of the endpoints that joined or left (an ejected endpoint
/// leaves the ring until it returns) and rewrites only the steps they owned, then copies
/// the table for the new snapshot.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::ConsistentHash, sticky::Header, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let backend = |name: &'static str| service_fn(move |_: http::Request<()>| async move {
///     Ok::<_, std::io::Error>(name)
/// });
/// let lb = Balance::builder(ConsistentHash::new(Header::new("x-user")))
///     .endpoints(["a", "b", "c"].map(|name| (name, backend(name))))
///     .build()?;
///
/// let request = || http::Request::builder().header("x-user", "alice").body(()).unwrap();
/// let first = lb.clone().oneshot(request()).await?;
/// for _ in 0..10 {
///     assert_eq!(lb.clone().oneshot(request()).await?, first); // alice sticks
/// }
/// # Ok(()) }
/// ```
pub struct ConsistentHash<E, F = P2c> {
    extractor: E,
    fallback: F,
    vnodes: u32,
    load_factor: Option<f64>,
    /// The rings kept between table builds; picks never touch this lock (builds run under
    /// the balancer's membership lock).
    placements: Arc<Mutex<Placements>>,
}

impl<E: Clone, F: Clone> Clone for ConsistentHash<E, F> {
    /// A clone starts with rings of its own: a second balancer built from it does not share
    /// (and contend for) the first one's.
    fn clone(&self) -> Self {
        ConsistentHash {
            extractor: self.extractor.clone(),
            fallback: self.fallback.clone(),
            vnodes: self.vnodes,
            load_factor: self.load_factor,
            placements: Arc::default(),
        }
    }
}

impl<E: fmt::Debug, F: fmt::Debug> fmt::Debug for ConsistentHash<E, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsistentHash")
            .field("extractor", &self.extractor)
            .field("fallback", &self.fallback)
            .field("vnodes", &self.vnodes)
            .field("load_factor", &self.load_factor)
            .finish_non_exhaustive()
    }
}

/// The default number of virtual nodes per unit of weight.
pub const DEFAULT_VNODES: u32 = 160;

/// The most virtual nodes one ring holds (2^22; the ring, kept off the request path, then
/// takes about 100 MiB): past it, every
/// endpoint's virtual nodes are scaled down in proportion (at least one each), so that no
/// setting of [`ConsistentHash::vnodes`] and no pool size can exhaust memory. Envoy bounds its
/// rings the same way (`maximum_ring_size`).
pub const MAX_RING_SIZE: u64 = 1 << 22;

/// How many virtual nodes an endpoint of a given weight gets: `vnodes × weight`, scaled down
/// in proportion when the whole ring would exceed [`MAX_RING_SIZE`].
fn ring_budget(vnodes: u32, endpoints: &[Arc<EndpointStats>]) -> impl Fn(u32) -> u32 + Copy {
    let wanted: u64 = endpoints
        .iter()
        .map(|e| u64::from(vnodes) * u64::from(e.weight()))
        .sum();
    move |weight: u32| {
        let mine = u64::from(vnodes) * u64::from(weight);
        let scaled = if wanted <= MAX_RING_SIZE {
            mine
        } else {
            (u128::from(mine) * u128::from(MAX_RING_SIZE) / u128::from(wanted)) as u64
        };
        scaled.clamp(1, u64::from(u32::MAX)) as u32
    }
}

/// A snapshot's lookup structure for [`ConsistentHash`], and its fallback policy's table.
///
/// It names each key's owner by a slot that is stable across snapshots; `candidates` maps
/// slots to this snapshot's endpoints.
pub struct Ring<T> {
    lookup: Lookup,
    /// Slot → index among this snapshot's candidates ([`FREE_SLOT`] for a slot no endpoint
    /// holds).
    candidates: Box<[u32]>,
    nodes: usize,
    total_weight: u64,
    fallback: T,
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("virtual_nodes", &self.nodes)
            .field("flat", &matches!(self.lookup, Lookup::Flat(_)))
            .field("endpoints", &self.candidates.len())
            .finish_non_exhaustive()
    }
}

/// One virtual node. Its place on the ring is the hash of `(endpoint, replica)` only.
#[derive(Debug, Clone, Copy)]
struct VirtualNode {
    endpoint: u64,
    replica: u32,
}

impl Hash for VirtualNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.endpoint, self.replica).hash(state);
    }
}

impl<T> Ring<T> {
    /// The candidate at `place` (see [`Lookup::locate`]).
    #[inline]
    fn candidate(&self, place: usize) -> u32 {
        self.candidates[self.lookup.slot(place) as usize]
    }

    /// Bytes the lookup structure takes, with the slot map.
    pub fn memory(&self) -> usize {
        self.lookup.bytes() + std::mem::size_of_val(&*self.candidates)
    }

    /// How many virtual nodes the ring holds.
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// Whether the ring has no virtual node (never, for a non-empty pool).
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }
}

impl<E> ConsistentHash<E> {
    /// Hashes the key `extractor` takes from each request; requests without one go to P2C.
    pub fn new(extractor: E) -> Self {
        ConsistentHash {
            extractor,
            fallback: P2c::new(),
            vnodes: DEFAULT_VNODES,
            load_factor: None,
            placements: Arc::default(),
        }
    }
}

impl<E, F> ConsistentHash<E, F> {
    /// Places each endpoint as `vnodes × weight` virtual nodes (default 160; at least 1).
    /// More virtual nodes spread keys more evenly and cost memory and rebuild time. Any value
    /// is accepted: the ring never holds more than [`MAX_RING_SIZE`] virtual nodes.
    pub fn vnodes(mut self, vnodes: u32) -> Self {
        self.vnodes = vnodes.max(1);
        self
    }

    /// Bounded loads (Mirrokni, Thorup and Zadimoghaddam, 2018): an endpoint whose calls in
    /// flight would exceed `ceil(factor × mean)` (the mean over the pool, weighted, counting
    /// this call) is skipped for the next one clockwise. A `factor` such as 1.25 keeps hot keys
    /// from overloading one endpoint at the cost of moving some of their requests; values
    /// below 1 are raised to 1. Off by default. Enabling it makes every call update one
    /// pool-wide counter.
    pub fn bounded_load(mut self, factor: f64) -> Self {
        self.load_factor = Some(if factor.is_nan() {
            1.0
        } else {
            factor.max(1.0)
        });
        self
    }

    /// Sends requests that have no key to `fallback` instead of P2C.
    pub fn fallback<F2>(self, fallback: F2) -> ConsistentHash<E, F2> {
        ConsistentHash {
            extractor: self.extractor,
            fallback,
            vnodes: self.vnodes,
            load_factor: self.load_factor,
            placements: self.placements,
        }
    }
}

impl<E, F> Policy for ConsistentHash<E, F>
where
    E: Send + Sync + 'static,
    F: Policy,
{
    type Table = Ring<F::Table>;

    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> Self::Table {
        let replicas = ring_budget(self.vnodes, endpoints);
        let wanted: Vec<(u64, u32)> = endpoints
            .iter()
            .map(|e| (e.key_hash(), replicas(e.weight())))
            .collect();
        let mut placements = lock(&self.placements);
        let placement = placements.for_endpoints(&wanted);
        let slots = placement.update(&wanted);
        // Every slot on the ring is one of `slots` (the placement holds exactly `wanted`);
        // the others are free and never read.
        let mut candidates = vec![FREE_SLOT; placement.slots()].into_boxed_slice();
        for (index, slot) in slots.into_iter().enumerate().rev() {
            // Two endpoints with one key hash share a slot; the first in order owns it.
            candidates[slot as usize] = index as u32;
        }
        let lookup = placement.lookup();
        let total_weight = endpoints
            .iter()
            .map(|e| u64::from(e.effective_weight()))
            .sum();
        Ring {
            lookup,
            candidates,
            nodes: placement.nodes(),
            total_weight,
            fallback: self.fallback.table(endpoints),
        }
    }

    fn latency(&self) -> Option<PeakEwma> {
        self.fallback.latency()
    }

    fn counts_total_in_flight(&self) -> bool {
        self.load_factor.is_some() || self.fallback.counts_total_in_flight()
    }
}

impl<Req, E, F> Pick<Req> for ConsistentHash<E, F>
where
    E: HashKey<Req>,
    F: Pick<Req>,
{
    fn pick(
        &self,
        req: &Req,
        table: &Ring<F::Table>,
        candidates: &Candidates<'_>,
    ) -> Option<usize> {
        let Some(key) = self.extractor.key(req) else {
            return self.fallback.pick(req, &table.fallback, candidates);
        };
        let start = table.lookup.locate(fine(DefaultHashBuilder.hash_one(&key)));
        let owner = table.candidate(start) as usize;
        // The load factor first: the pool's count sits on an endpoint's line, which the calls
        // in flight keep writing, so reading it costs a cache miss that a plain ring skips.
        let Some(factor) = self.load_factor else {
            return Some(owner);
        };
        let Some(total) = candidates.total_in_flight() else {
            return Some(owner);
        };
        // Walk clockwise to the first endpoint with room. Capacities add up to more than the
        // calls in flight, so one always has room and the walk ends within one turn.
        let calls = (total + 1) as f64;
        let has_room = |index: usize| {
            let endpoint = candidates.get(index);
            let share = f64::from(endpoint.effective_weight()) / table.total_weight as f64;
            (endpoint.in_flight() as f64) < (factor * calls * share).ceil()
        };
        let places = table.lookup.places();
        let mut last = usize::MAX;
        for step in 0..places {
            let place = start + step;
            let index = table.candidate(if place < places {
                place
            } else {
                place - places
            });
            let index = index as usize;
            if index != last && has_room(index) {
                return Some(index);
            }
            last = index;
        }
        Some(owner)
    }
}

/// A slot that no endpoint of the snapshot holds.
const FREE_SLOT: u32 = u32::MAX;

#[cfg(test)]
mod tests;
