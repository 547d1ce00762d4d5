//! Consistent hashing: sticky sessions that survive membership changes.

use super::{Candidates, HashKey, P2c, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::load::PeakEwma;
use hashring::{DefaultHashBuilder, HashRing};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

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
/// The ring is rebuilt only when the pool changes, never per request. A pick hashes the key
/// once and binary-searches the ring: O(log(N × vnodes)).
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
#[derive(Debug, Clone)]
pub struct ConsistentHash<E, F = P2c> {
    extractor: E,
    fallback: F,
    vnodes: u32,
    load_factor: Option<f64>,
}

/// The default number of virtual nodes per unit of weight.
pub const DEFAULT_VNODES: u32 = 160;

/// The most virtual nodes one ring holds (2^22, 64 MiB of lookup slots): past it, every
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

/// A snapshot's ring for [`ConsistentHash`], and its fallback policy's table.
///
/// The ring's order comes from `hashring` (its hash, its sort); lookups then use a flat copy of
/// it with a radix index in front, because a binary search over hundreds of thousands of
/// virtual nodes misses the cache at nearly every step. A lookup reads one index entry and,
/// on average, about one slot: a few cache lines whatever the ring's size.
#[derive(Debug)]
pub struct Ring<T> {
    /// Virtual nodes in ring order.
    slots: Box<[Slot]>,
    /// `index[b]` is the first slot whose position's top `bits` bits are `>= b`;
    /// `index[2^bits] == slots.len()`.
    index: Box<[u32]>,
    bits: u32,
    total_weight: u64,
    fallback: T,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    position: u64,
    /// The endpoint owning this virtual node: its index among the candidates.
    owner: u32,
}

/// One virtual node. Its place on the ring is the hash of `(endpoint, replica)` only.
#[derive(Debug, Clone, Copy)]
struct VirtualNode {
    endpoint: u64,
    replica: u32,
    owner: u32,
}

impl Hash for VirtualNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.endpoint, self.replica).hash(state);
    }
}

impl<T> Ring<T> {
    /// `nodes` must come in a canonical order (by endpoint key hash, then replica), so that two
    /// nodes at the same position (a 64-bit hash collision) are ordered alike by every client,
    /// whatever order its endpoints joined in.
    fn build(nodes: Vec<VirtualNode>, total_weight: u64, fallback: T) -> Self {
        let mut ring = HashRing::new();
        ring.batch_add(nodes);
        let slots: Box<[Slot]> = ring
            .into_iter()
            .map(|node| Slot {
                position: DefaultHashBuilder.hash_one(node),
                owner: node.owner,
            })
            .collect();
        // One to two slots per index entry, at most 2^20 entries (4 MiB).
        let bits = (slots.len().max(2) as u64).ilog2().clamp(1, 20);
        let buckets = 1usize << bits;
        let mut index = Vec::with_capacity(buckets + 1);
        let mut slot = 0;
        for bucket in 0..buckets as u64 {
            while slot < slots.len() && slots[slot].position >> (64 - bits) < bucket {
                slot += 1;
            }
            index.push(slot as u32);
        }
        index.push(slots.len() as u32);
        Ring {
            slots,
            index: index.into_boxed_slice(),
            bits,
            total_weight,
            fallback,
        }
    }

    /// The first slot at or clockwise after `position`, as `HashRing::get` finds it.
    fn slot_at(&self, position: u64) -> usize {
        let bucket = (position >> (64 - self.bits)) as usize;
        let (start, end) = (self.index[bucket] as usize, self.index[bucket + 1] as usize);
        let within = self.slots[start..end]
            .iter()
            .position(|slot| slot.position >= position)
            .map_or(end, |offset| start + offset);
        if within == self.slots.len() {
            0 // past the last node: wrap around to the first
        } else {
            within
        }
    }

    /// Bytes the ring's lookup tables take.
    pub fn memory(&self) -> usize {
        std::mem::size_of_val(&*self.slots) + std::mem::size_of_val(&*self.index)
    }

    /// How many virtual nodes the ring holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the ring has no virtual node (never, for a non-empty pool).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
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
        let mut canonical: Vec<(usize, &Arc<EndpointStats>)> =
            endpoints.iter().enumerate().collect();
        canonical.sort_unstable_by_key(|(_, endpoint)| endpoint.key_hash());
        let replicas = ring_budget(self.vnodes, endpoints);
        let nodes = canonical
            .into_iter()
            .flat_map(|(owner, endpoint)| {
                (0..replicas(endpoint.weight())).map(move |replica| VirtualNode {
                    endpoint: endpoint.key_hash(),
                    replica,
                    owner: owner as u32,
                })
            })
            .collect();
        let total_weight = endpoints
            .iter()
            .map(|e| u64::from(e.effective_weight()))
            .sum();
        Ring::build(nodes, total_weight, self.fallback.table(endpoints))
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
        let start = table.slot_at(DefaultHashBuilder.hash_one(&key));
        let owner = table.slots[start].owner as usize;
        let (Some(factor), Some(total)) = (self.load_factor, candidates.total_in_flight()) else {
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
        let slots = table.slots.len();
        let mut last = usize::MAX;
        for step in 0..slots {
            let index = table.slots[(start + step) % slots].owner as usize;
            if index != last && has_room(index) {
                return Some(index);
            }
            last = index;
        }
        Some(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sticky::key_fn;

    fn members(n: usize) -> Vec<Arc<EndpointStats>> {
        (0..n)
            .map(|i| {
                let key_hash = DefaultHashBuilder.hash_one(format!("backend-{i}"));
                Arc::new(EndpointStats::member(1, key_hash, None))
            })
            .collect()
    }

    /// Each endpoint's exact share of the ring: the arcs ending at its virtual nodes.
    fn ring_shares(endpoints: &[Arc<EndpointStats>], vnodes: u32) -> Vec<f64> {
        let mut points: Vec<(u64, usize)> = endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, e)| {
                (0..vnodes).map(move |replica| {
                    let node = VirtualNode {
                        endpoint: e.key_hash(),
                        replica,
                        owner: 0,
                    };
                    (DefaultHashBuilder.hash_one(node), i)
                })
            })
            .collect();
        points.sort();
        let mut shares = vec![0f64; endpoints.len()];
        let mut previous = points.last().expect("a point").0;
        for &(position, owner) in &points {
            shares[owner] += position.wrapping_sub(previous) as f64 / 2f64.powi(64);
            previous = position;
        }
        shares
    }

    #[test]
    fn the_ring_spreads_keys_within_30_percent_of_the_mean() {
        for n in [8, 64, 512] {
            let shares = ring_shares(&members(n), DEFAULT_VNODES);
            let mean = 1.0 / n as f64;
            let max = shares.iter().cloned().fold(0.0, f64::max);
            println!("N = {n}: max / mean share of the ring = {:.3}", max / mean);
            assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(max / mean <= 1.3, "N = {n}: max/mean {}", max / mean);
        }
    }

    #[test]
    fn picks_follow_the_arcs() {
        // The policy's picks over many keys match the exact arc shares (χ², α = 1e-6).
        let endpoints = members(8);
        let policy = ConsistentHash::new(key_fn(|k: &u64| Some(*k)));
        let table = policy.table(&endpoints);
        let mut counts = vec![0u64; 8];
        for key in 0..200_000u64 {
            let i = policy
                .pick(&key, &table, &Candidates::new(&endpoints))
                .expect("a pick");
            counts[i] += 1;
        }
        let shares = ring_shares(&endpoints, DEFAULT_VNODES);
        let p = crate::stats::chi_squared_p_value(&counts, &shares);
        assert!(p > 1e-6, "p = {p}, counts {counts:?}, shares {shares:?}");
    }

    #[test]
    fn requests_without_a_key_use_the_fallback() {
        let endpoints = members(4);
        let policy = ConsistentHash::new(key_fn(|_: &()| None::<u64>))
            .fallback(crate::policy::RoundRobin::new().with_rng(0));
        let table = policy.table(&endpoints);
        let picks: Vec<usize> = (0..8)
            .map(|_| {
                policy
                    .pick(&(), &table, &Candidates::new(&endpoints))
                    .unwrap()
            })
            .collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn lookups_agree_with_hashring() {
        // The radix-indexed copy finds exactly the node `HashRing::get` finds.
        for n in [1, 3, 64] {
            let endpoints = members(n);
            let policy = ConsistentHash::new(key_fn(|k: &u64| Some(*k))).vnodes(40);
            let table = policy.table(&endpoints);
            let mut ring = HashRing::new();
            ring.batch_add(
                endpoints
                    .iter()
                    .enumerate()
                    .flat_map(|(owner, e)| {
                        (0..40).map(move |replica| VirtualNode {
                            endpoint: e.key_hash(),
                            replica,
                            owner: owner as u32,
                        })
                    })
                    .collect(),
            );
            for key in (0..20_000u64).chain([u64::MAX, 0]) {
                let expected = ring.get(&key).expect("a node").owner as usize;
                let picked = policy.pick(&key, &table, &Candidates::new(&endpoints));
                assert_eq!(picked, Some(expected), "key {key}, N = {n}");
            }
            // Positions past the last node wrap around to the first.
            assert_eq!(table.slot_at(u64::MAX), 0);
            assert_eq!(table.len(), n * 40);
        }
    }

    #[test]
    fn bad_load_factors_are_clamped() {
        let policy = ConsistentHash::new(key_fn(|k: &u64| Some(*k)));
        assert_eq!(policy.clone().bounded_load(0.5).load_factor, Some(1.0));
        assert_eq!(policy.clone().bounded_load(f64::NAN).load_factor, Some(1.0));
        assert_eq!(policy.vnodes(0).vnodes, 1);
    }

    #[test]
    fn no_vnodes_setting_wraps_or_outgrows_the_ring_budget() {
        let weights = |ws: &[u32]| -> Vec<Arc<EndpointStats>> {
            ws.iter()
                .map(|&w| Arc::new(EndpointStats::new(w)))
                .collect()
        };
        let within = ring_budget(DEFAULT_VNODES, &weights(&[1000, 1]));
        assert_eq!(
            (within(1000), within(1)),
            (160_000, 160),
            "under budget: exact"
        );
        for vnodes in [1, DEFAULT_VNODES, 1 << 20, u32::MAX] {
            let pool = weights(&[crate::MAX_WEIGHT, 1, 7]);
            let replicas = ring_budget(vnodes, &pool);
            let total: u64 = pool.iter().map(|e| u64::from(replicas(e.weight()))).sum();
            assert!(total <= MAX_RING_SIZE + 3, "{vnodes}: {total}");
            assert!(replicas(1) >= 1, "every endpoint keeps a place on the ring");
            assert!(replicas(crate::MAX_WEIGHT) >= replicas(7) && replicas(7) >= replicas(1));
        }
    }
}
