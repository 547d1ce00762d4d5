//! Consistent hashing's tests: spread, fallback, agreement with the hashring crate,
//! tables changed step by step, large pools, bad settings.

use super::*;
use crate::policy::testing::{ItsOwnKey, NoKey};
use hashring::HashRing;

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
    let policy = ConsistentHash::new(ItsOwnKey);
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
    let policy = ConsistentHash::new(NoKey).fallback(crate::policy::RoundRobin::new().with_rng(0));
    assert_eq!(
        crate::policy::testing::picks(&policy, &endpoints, 8),
        [0, 1, 2, 3, 0, 1, 2, 3]
    );
}

/// A virtual node with its endpoint's index, placed by the node's hash alone.
#[derive(Debug, Clone, Copy)]
struct Owned {
    node: VirtualNode,
    owner: usize,
}

impl Hash for Owned {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.node.hash(state);
    }
}

/// The endpoint (key hash) owning each of the ring's steps.
fn owners_by_key<T>(table: &Ring<T>, endpoints: &[Arc<EndpointStats>]) -> Vec<u64> {
    (0..placement::STEPS)
        .map(|step| endpoints[table.candidate(table.lookup.locate(step)) as usize].key_hash())
        .collect()
}

type ByKey = ConsistentHash<ItsOwnKey>;

/// A policy whose lookups are flat tables from `flat_from` virtual nodes on.
fn flat_from(flat_from: usize) -> ByKey {
    let mut policy = ConsistentHash::new(ItsOwnKey);
    policy.placements = Arc::new(Mutex::new(Placements::flat_from(flat_from)));
    policy
}

#[test]
fn every_key_goes_to_the_first_hashring_node_at_or_after_its_step() {
    for (n, flat) in [(1, 0), (3, usize::MAX), (64, usize::MAX), (64, 0)] {
        let endpoints = members(n);
        let table = flat_from(flat).vnodes(40).table(&endpoints);
        assert_eq!(matches!(table.lookup, Lookup::Flat(_)), flat == 0);
        let mut ring = HashRing::new();
        ring.batch_add(
            endpoints
                .iter()
                .enumerate()
                .flat_map(|(owner, e)| {
                    (0..40).map(move |replica| Owned {
                        node: VirtualNode {
                            endpoint: e.key_hash(),
                            replica,
                        },
                        owner,
                    })
                })
                .collect(),
        );
        // hashring's ring order, with each node's position.
        let nodes: Vec<(u64, usize)> = ring
            .into_iter()
            .map(|owned| (DefaultHashBuilder.hash_one(owned), owned.owner))
            .collect();
        assert!(nodes.windows(2).all(|w| w[0].0 <= w[1].0));
        let steps = (0..placement::STEPS).step_by(97);
        for step in steps.chain([0, placement::STEPS - 1]) {
            let expected = nodes
                .iter()
                .find(|(position, _)| fine(*position) >= step)
                .unwrap_or(&nodes[0])
                .1;
            let picked = table.candidate(table.lookup.locate(step)) as usize;
            assert_eq!(picked, expected, "step {step}, N = {n}, flat from {flat}");
        }
        assert_eq!(table.len(), n * 40);
    }
}

#[test]
fn a_table_changed_step_by_step_equals_one_built_whole() {
    // Joins, leaves and weight changes, small and large, patched in place, give exactly
    // the table a fresh ring gives for the same endpoints.
    let mut rng = fastrand::Rng::with_seed(11);
    let pool: Vec<Arc<EndpointStats>> = (0..300)
        .map(|i| {
            let key_hash = DefaultHashBuilder.hash_one(format!("backend-{i}"));
            Arc::new(EndpointStats::member(1 + i % 4, key_hash, None))
        })
        .collect();
    let reweighted: Vec<Arc<EndpointStats>> = pool
        .iter()
        .map(|e| Arc::new(EndpointStats::member(5 - e.weight(), e.key_hash(), None)))
        .collect();
    // Flat tables patched in place, checked against node lists built whole.
    let kept = flat_from(0).vnodes(20);
    let kept_listed = flat_from(usize::MAX).vnodes(20);
    let mut current: Vec<Arc<EndpointStats>> = pool[..40].to_vec();
    for round in 0..60 {
        match rng.usize(0..6) {
            0 if current.len() > 1 => {
                current.remove(rng.usize(..current.len()));
            }
            1 => current.push(Arc::clone(&pool[rng.usize(..pool.len())])),
            2 => {
                let i = rng.usize(..current.len());
                let same = reweighted
                    .iter()
                    .find(|e| e.key_hash() == current[i].key_hash());
                current[i] = Arc::clone(same.expect("a reweighted twin"));
            }
            3 => current.extend(pool[..rng.usize(1..300)].iter().cloned()),
            4 if current.len() > 10 => current.truncate(current.len() / 3),
            _ => current.reverse(),
        }
        current.dedup_by_key(|e| e.key_hash());
        let mut seen = std::collections::HashSet::new();
        current.retain(|e| seen.insert(e.key_hash()));
        let patched = kept.table(&current);
        let whole = kept.clone().table(&current);
        assert!(matches!(patched.lookup, Lookup::Flat(_)));
        assert!(matches!(whole.lookup, Lookup::Nodes { .. }));
        assert_eq!(patched.len(), whole.len(), "round {round}");
        // Node lists kept between rounds: reused while the ring is unchanged, rebuilt
        // after a change.
        let listed = kept_listed.table(&current);
        let again = kept_listed.table(&current);
        let (Lookup::Nodes { nodes: a, .. }, Lookup::Nodes { nodes: b, .. }) =
            (&listed.lookup, &again.lookup)
        else {
            panic!("node lists below the flat threshold");
        };
        assert!(Arc::ptr_eq(a, b), "an unchanged ring shares its node list");
        assert!(owners_by_key(&listed, &current) == owners_by_key(&whole, &current));
        let (patched, whole) = (
            owners_by_key(&patched, &current),
            owners_by_key(&whole, &current),
        );
        let differ = (0..whole.len()).filter(|&b| patched[b] != whole[b]).count();
        assert_eq!(
            differ,
            0,
            "round {round}, {} endpoints: buckets differ",
            current.len()
        );
    }
}

/// 4 096 endpoints of weights 1–4, as in the benches.
fn large_pool() -> Vec<Arc<EndpointStats>> {
    (0..4096)
        .map(|i| {
            let key_hash = DefaultHashBuilder.hash_one(format!("backend-{i}"));
            Arc::new(EndpointStats::member(1 + i % 4, key_hash, None))
        })
        .collect()
}

/// The largest share of the ring's steps per unit of weight, over the mean.
fn max_over_mean<T>(table: &Ring<T>, endpoints: &[Arc<EndpointStats>]) -> f64 {
    let steps = placement::STEPS;
    let mut owned = vec![0u64; endpoints.len()];
    (0..steps).for_each(|step| owned[table.candidate(table.lookup.locate(step)) as usize] += 1);
    let total_weight: u32 = endpoints.iter().map(|e| e.weight()).sum();
    owned
        .iter()
        .zip(endpoints)
        .map(|(&n, e)| {
            n as f64 / (f64::from(steps) * f64::from(e.weight()) / f64::from(total_weight))
        })
        .fold(0.0, f64::max)
}

#[test]
fn at_4096_endpoints_the_table_fits_in_4_mib_and_spreads_within_30_percent() {
    let endpoints = large_pool();
    let table = ConsistentHash::new(ItsOwnKey).table(&endpoints);
    assert!(
        table.memory() <= 4 * 1024 * 1024,
        "{} bytes",
        table.memory()
    );
    let spread = max_over_mean(&table, &endpoints);
    println!(
        "N = 4096, weights 1-4, {} vnodes: {} nodes, {} KiB, max/mean {spread:.3}",
        DEFAULT_VNODES,
        table.len(),
        table.memory() / 1024,
    );
    assert!(spread <= 1.3, "max/mean {spread}");
}

#[test]
fn at_4096_endpoints_removing_one_moves_only_its_own_buckets() {
    let mut endpoints = large_pool();
    let policy = ConsistentHash::new(ItsOwnKey);
    let total_weight: u32 = endpoints.iter().map(|e| e.weight()).sum();
    let before = owners_by_key(&policy.table(&endpoints), &endpoints);
    let mut ratios = Vec::new();
    for i in 0..8 {
        let at = i * 509 % endpoints.len();
        let gone = endpoints.remove(at);
        let after = owners_by_key(&policy.table(&endpoints), &endpoints);
        let moved = (0..before.len()).filter(|&b| before[b] != after[b]);
        assert!(
            moved.clone().all(|b| before[b] == gone.key_hash()),
            "a key of another endpoint moved"
        );
        let fraction = moved.count() as f64 / before.len() as f64;
        ratios.push(fraction / (f64::from(gone.weight()) / f64::from(total_weight)));
        endpoints.insert(at, gone);
        let restored = owners_by_key(&policy.table(&endpoints), &endpoints);
        assert!(restored == before, "adding it back restores every bucket");
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    println!("N = 4096: keys moved per removal / the endpoint's weight share: mean {mean:.3}, each {ratios:.3?}");
}

#[test]
fn a_pool_outgrowing_two_byte_slots_gets_a_wide_table() {
    let pool: Vec<Arc<EndpointStats>> = (0..65_600u64)
        .map(|i| {
            Arc::new(EndpointStats::member(
                1,
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                None,
            ))
        })
        .collect();
    let kept = flat_from(0).vnodes(1);
    let narrow = kept.table(&pool[..65_500]);
    assert!(matches!(
        narrow.lookup,
        Lookup::Flat(placement::Owners::Narrow(_))
    ));
    let widened = kept.table(&pool);
    let whole = kept.clone().table(&pool);
    assert!(matches!(
        widened.lookup,
        Lookup::Flat(placement::Owners::Wide(_))
    ));
    assert!(owners_by_key(&widened, &pool) == owners_by_key(&whole, &pool));
}

#[test]
fn bad_load_factors_are_clamped() {
    let policy = ConsistentHash::new(ItsOwnKey);
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
