//! Maglev hashing: a lookup table with even shares at any pool size, for large pools.

use super::placement::Owners;
use crate::endpoint::EndpointStats;
use crate::load::PeakEwma;
use crate::policy::{Candidates, HashKey, P2c, Pick, Policy};
use hashring::DefaultHashBuilder;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Sends every request with the same key to the same endpoint through a Maglev lookup table
/// (Eisenbud et al., *Maglev: A Fast and Reliable Software Network Load Balancer*, NSDI
/// 2016), as Envoy's `MAGLEV` policy does; requests without a key go to a fallback policy
/// (P2C by default).
///
/// Each endpoint fills the table's entries in an order of its own (a permutation drawn from
/// its key), taking turns in proportion to its weight until the table is full. A pick hashes
/// the key to one entry: O(1), one read of a table that stays small (65 537 entries by
/// default, 128 KiB), so picks stay as fast at thousands of endpoints as at two.
///
/// # Maglev or [`ConsistentHash`](super::ConsistentHash)?
///
/// | | [`ConsistentHash`](super::ConsistentHash) (ring) | `Maglev` |
/// |---|---|---|
/// | shares (N = 4 096, weights 1–4) | up to 1.28 × the weight's share (1.22–1.32 × over other endpoint names: virtual nodes fall at random) | within an entry of it: at most 1.09 × |
/// | one of N endpoints leaves | only its keys move | its keys and some others: 1.2 % of all keys at N = 512, 0.27 % at N = 4 096 (4–8 × its share) |
/// | pick at N = 4 096 | one read of a 3.8 MiB table | one read of a 128 KiB table: about 0.6–0.7 × the ring's time |
/// | a membership or health change | moves only the changed endpoint's virtual nodes | rebuilds the table: about 2 ms at N = 4 096 |
/// | bounded loads | yes | no |
///
/// Use the ring where every key that stays should stay put (caches that are expensive to
/// warm); use Maglev where an even spread over a large pool matters more than a few extra
/// keys moving on each change (connection affinity, sharded work queues). Both agree across
/// processes that see the same endpoints.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::Maglev, sticky::Header, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let backend = |name: &'static str| service_fn(move |_: http::Request<()>| async move {
///     Ok::<_, std::io::Error>(name)
/// });
/// let lb = Balance::builder(Maglev::new(Header::new("x-user")))
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
pub struct Maglev<E, F = P2c> {
    extractor: E,
    fallback: F,
    table_size: u64,
}

/// The default number of entries in a [`Maglev`] table, as in Envoy: a prime, so that every
/// endpoint's permutation visits every entry.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65_537;

/// The largest [`Maglev`] table (a prime near 2^24; 64 MiB past 65 536 endpoints).
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 16_777_213;

impl<E> Maglev<E> {
    /// Hashes the key `extractor` takes from each request; requests without one go to P2C.
    pub fn new(extractor: E) -> Self {
        Maglev {
            extractor,
            fallback: P2c::new(),
            table_size: DEFAULT_MAGLEV_TABLE_SIZE,
        }
    }
}

impl<E, F> Maglev<E, F> {
    /// Uses a table of at least `entries` entries: the smallest prime that is at least
    /// `entries` (and at most [`MAX_MAGLEV_TABLE_SIZE`]). An endpoint's share is off by at most
    /// one entry, so keep the table at least 100 times the number of endpoints for shares
    /// within 1 %. A larger table costs memory and build time in proportion (524 288 entries
    /// at N = 4 096: 24 ms per change) and does not reduce the keys that move on a change
    /// (measured: 0.263 % against 0.268 %). A pool with more endpoints than entries gets a
    /// table with one entry per endpoint, rounded up to a prime.
    ///
    /// ```
    /// use tower_lb::{policy::Maglev, sticky::Header};
    ///
    /// let policy = Maglev::new(Header::new("x-user")).table_size(400_000);
    /// # let _ = policy;
    /// ```
    pub fn table_size(mut self, entries: u64) -> Self {
        self.table_size = entries.clamp(2, MAX_MAGLEV_TABLE_SIZE);
        self
    }

    /// Sends requests that have no key to `fallback` instead of P2C.
    pub fn fallback<F2>(self, fallback: F2) -> Maglev<E, F2> {
        Maglev {
            extractor: self.extractor,
            fallback,
            table_size: self.table_size,
        }
    }
}

/// A snapshot's Maglev table: each entry's endpoint, by index among the snapshot's
/// candidates, and the fallback policy's table.
///
/// ```
/// use std::sync::Arc;
/// use tower_lb::{policy::{Maglev, Policy}, sticky::Header, EndpointStats};
///
/// let endpoints = [1, 3].map(|w| Arc::new(EndpointStats::new(w)));
/// let table = Maglev::new(Header::new("x-user")).table(&endpoints);
/// let entries = table.entries_per_endpoint();
/// assert_eq!(entries.iter().sum::<u64>(), table.len() as u64);
/// assert!(entries[1] > 2 * entries[0]); // three times the weight, about three times the keys
/// assert_eq!(table.memory(), 2 * table.len()); // two bytes an entry
/// ```
pub struct MaglevTable<T> {
    owners: Owners,
    size: u64,
    fallback: T,
}

impl<T> MaglevTable<T> {
    /// How many entries the table has (a prime).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_lb::{policy::{Maglev, Policy}, sticky::Header, EndpointStats};
    ///
    /// let endpoints = [1, 1].map(|w| Arc::new(EndpointStats::new(w)));
    /// let table = Maglev::new(Header::new("x-user")).table_size(1000).table(&endpoints);
    /// assert_eq!(table.len(), 1009);
    /// ```
    pub fn len(&self) -> usize {
        self.size as usize
    }

    /// Whether the table has no entry (never: it has at least two).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Bytes the table takes.
    pub fn memory(&self) -> usize {
        self.owners.bytes()
    }

    /// How many entries each candidate owns, in candidate order: its share of the keys is
    /// its count over [`len`](Self::len).
    pub fn entries_per_endpoint(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for entry in 0..self.len() {
            let owner = self.owners.get(entry) as usize;
            if owner >= counts.len() {
                counts.resize(owner + 1, 0);
            }
            counts[owner] += 1;
        }
        counts
    }

    /// The entry a key's hash falls on: the hash scaled to the table (Lemire's
    /// multiply-shift, which needs no division).
    #[inline]
    fn entry(&self, hash: u64) -> usize {
        ((u128::from(hash) * u128::from(self.size)) >> 64) as usize
    }
}

impl<T> fmt::Debug for MaglevTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevTable")
            .field("entries", &self.size)
            .finish_non_exhaustive()
    }
}

/// One endpoint's walk through the table while it is filled.
struct Walk {
    /// The endpoint's index among the snapshot's candidates.
    index: u32,
    key: u64,
    /// The next entry of its permutation.
    at: u64,
    skip: u64,
    weight: u64,
    /// Its turns come when `round × weight` reaches this (Envoy's weighted Maglev).
    next_turn: u64,
}

impl<E, F> Policy for Maglev<E, F>
where
    E: Send + Sync + 'static,
    F: Policy,
{
    type Table = MaglevTable<F::Table>;

    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> Self::Table {
        let size = smallest_prime_from(self.table_size.max(endpoints.len() as u64));
        // Turns go in the order of the endpoints' keys, not of the snapshot, so that every
        // process that sees the same endpoints builds the same table.
        let mut walks: Vec<Walk> = endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| {
                // Two hashes of the endpoint's key: where its permutation starts and its
                // stride. A prime size makes every stride visit every entry.
                let key = endpoint.key_hash();
                Walk {
                    index: index as u32,
                    key,
                    at: DefaultHashBuilder.hash_one((key, 0u8)) % size,
                    skip: DefaultHashBuilder.hash_one((key, 1u8)) % (size - 1) + 1,
                    weight: u64::from(endpoint.weight()),
                    next_turn: 0,
                }
            })
            .collect();
        walks.sort_unstable_by_key(|walk| (walk.key, walk.index));
        let heaviest = walks.iter().map(|walk| walk.weight).max().unwrap_or(1);
        const EMPTY: u32 = u32::MAX;
        let mut owners = vec![EMPTY; size as usize];
        let mut filled = 0;
        let mut round = 1u64;
        'fill: loop {
            for walk in &mut walks {
                // An endpoint of the heaviest weight takes a turn every round; one of a third
                // of it, every third round.
                if round * walk.weight < walk.next_turn {
                    continue;
                }
                walk.next_turn += heaviest;
                loop {
                    let entry = walk.at as usize;
                    walk.at += walk.skip;
                    if walk.at >= size {
                        walk.at -= size;
                    }
                    if owners[entry] == EMPTY {
                        owners[entry] = walk.index;
                        break;
                    }
                }
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
            round += 1;
        }
        MaglevTable {
            owners: Owners::of(endpoints.len(), owners.into_iter()),
            size,
            fallback: self.fallback.table(endpoints),
        }
    }

    fn latency(&self) -> Option<PeakEwma> {
        self.fallback.latency()
    }

    fn counts_total_in_flight(&self) -> bool {
        self.fallback.counts_total_in_flight()
    }
}

impl<Req, E, F> Pick<Req> for Maglev<E, F>
where
    E: HashKey<Req>,
    F: Pick<Req>,
{
    #[inline]
    fn pick(
        &self,
        req: &Req,
        table: &MaglevTable<F::Table>,
        candidates: &Candidates<'_>,
    ) -> Option<usize> {
        let Some(key) = self.extractor.key(req) else {
            return self.fallback.pick(req, &table.fallback, candidates);
        };
        let entry = table.entry(DefaultHashBuilder.hash_one(&key));
        Some(table.owners.get(entry) as usize)
    }
}

/// The smallest prime that is at least `n` (trial division: at most a few thousand steps for
/// the sizes allowed, once per table build).
fn smallest_prime_from(n: u64) -> u64 {
    let is_prime = |n: u64| {
        n >= 2
            && (2..)
                .take_while(|divisor| divisor * divisor <= n)
                .all(|divisor| n % divisor != 0)
    };
    (n.max(2)..)
        .find(|&candidate| is_prime(candidate))
        .expect("primes are unbounded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{ItsOwnKey, NoKey};

    fn members(weights: impl IntoIterator<Item = u32>) -> Vec<Arc<EndpointStats>> {
        weights
            .into_iter()
            .enumerate()
            .map(|(i, weight)| {
                let key_hash = DefaultHashBuilder.hash_one(format!("backend-{i}"));
                Arc::new(EndpointStats::member(weight, key_hash, None))
            })
            .collect()
    }

    type ByKey = Maglev<ItsOwnKey>;

    fn by_key() -> ByKey {
        Maglev::new(ItsOwnKey)
    }

    #[test]
    fn table_sizes_are_primes() {
        assert_eq!(smallest_prime_from(0), 2);
        assert_eq!(smallest_prime_from(65_537), 65_537);
        assert_eq!(smallest_prime_from(65_538), 65_539);
        assert_eq!(
            smallest_prime_from(MAX_MAGLEV_TABLE_SIZE),
            MAX_MAGLEV_TABLE_SIZE
        );
        // More endpoints than entries: one entry each at least.
        let table = by_key().table_size(3).table(&members([1; 10]));
        assert_eq!(table.len(), 11);
        assert!(table.entries_per_endpoint().iter().all(|&count| count >= 1));
    }

    #[test]
    fn shares_follow_weights_within_an_entry_or_two() {
        // Weights 1..=4 as in the benches; at N = 4096 a unit of weight has 6.4 entries.
        for n in [8usize, 512, 4096] {
            let endpoints = members((0..n).map(|i| (i % 4 + 1) as u32));
            let table = by_key().table(&endpoints);
            let total_weight: u64 = endpoints.iter().map(|e| u64::from(e.weight())).sum();
            let counts = table.entries_per_endpoint();
            assert_eq!(counts.len(), n);
            let mut worst = 0f64;
            for (endpoint, &count) in endpoints.iter().zip(&counts) {
                let fair = table.len() as f64 * f64::from(endpoint.weight()) / total_weight as f64;
                worst = worst.max(count as f64 / fair);
                assert!(
                    (count as f64 - fair).abs() <= 2.0,
                    "N = {n}: {count} for {fair:.1}"
                );
            }
            println!("N = {n}: max / fair share = {worst:.3}");
            assert!(worst <= 1.3, "N = {n}: max/fair {worst}");
        }
    }

    #[test]
    fn removing_an_endpoint_moves_its_keys_and_few_others() {
        for n in [512usize, 4096] {
            let endpoints = members((0..n).map(|i| (i % 4 + 1) as u32));
            let policy = by_key();
            let before = policy.table(&endpoints);
            let removed = 7;
            let mut rest = endpoints.clone();
            rest.remove(removed);
            let after = policy.table(&rest);
            let (mut own, mut others_moved) = (0u64, 0u64);
            let keys = 400_000u64;
            for key in 0..keys {
                let old = policy
                    .pick(&key, &before, &Candidates::new(&endpoints))
                    .unwrap();
                let new = policy.pick(&key, &after, &Candidates::new(&rest)).unwrap();
                // Indexes past the removed one shift down by one.
                let new_in_old = if new >= removed { new + 1 } else { new };
                if old == removed {
                    own += 1;
                } else if new_in_old != old {
                    others_moved += 1;
                }
            }
            let own = own as f64 / keys as f64;
            let others = others_moved as f64 / keys as f64;
            println!(
                "N = {n}: the removed endpoint's keys {:.3} %, other keys moved {:.3} % ({:.1} × its share)",
                own * 100.0,
                others * 100.0,
                others / own
            );
            // Its own keys all move; Maglev moves some others too (the paper: a few percent
            // of the table at N = 1000, M = 65 537), never a large part.
            assert!(others < 0.02, "N = {n}: {others}");
        }
    }

    #[test]
    fn picks_are_the_same_in_every_process() {
        // Two tables built independently, from the same endpoints in another order, agree.
        let policy = by_key();
        let a = members([1, 2, 3, 4]);
        let b: Vec<_> = a.iter().rev().cloned().collect();
        let (ta, tb) = (policy.table(&a), policy.table(&b));
        for key in 0..10_000u64 {
            let in_a = policy.pick(&key, &ta, &Candidates::new(&a)).unwrap();
            let in_b = policy.pick(&key, &tb, &Candidates::new(&b)).unwrap();
            assert_eq!(a[in_a].key_hash(), b[in_b].key_hash(), "key {key}");
        }
        assert_eq!(ta.memory(), 65_537 * 2);
    }

    #[test]
    fn requests_without_a_key_use_the_fallback() {
        let endpoints = members([1; 4]);
        let policy = Maglev::new(NoKey).fallback(crate::policy::RoundRobin::new().with_rng(0));
        assert_eq!(
            crate::policy::testing::picks(&policy, &endpoints, 4),
            [0, 1, 2, 3]
        );
    }
}
