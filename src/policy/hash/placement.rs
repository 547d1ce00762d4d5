//! Where each endpoint's virtual nodes sit on the ring, and the lookup structure picks read.
//!
//! A key goes to the first virtual node at or after its position, as on any hash ring, with
//! positions compared at a fixed resolution of [`STEPS`] steps. Fixing the resolution makes
//! the mapping a pure function of the set of virtual nodes: every client with the same
//! endpoints agrees on every key, and when an endpoint's nodes leave, only the keys that were
//! on them move, whatever the pool's size.
//!
//! The resolution sets how closely keys follow the ring's arcs. At 2^20 steps, a pool of
//! 4 096 endpoints of weights 1–4 has about 100 steps per unit of weight, and two or three
//! virtual nodes share many a step (only the first owns it), so the steps sample the arcs
//! coarsely: the largest share per unit of weight was 1.37× the mean with 160 virtual nodes
//! and still 1.30× with 256, against 1.28× and 1.27× at two million steps. Two million keep
//! the flat table (two bytes a step) and its slot map within 4 MiB.
//!
//! The ring is kept between snapshots, in a [`Placement`] that a membership or health change
//! edits in place (only the nodes of the endpoints that joined or left move), and each
//! snapshot gets a [`Lookup`] read from it:
//! - up to [`FLAT_FROM`] nodes, the nodes themselves in ring order behind a radix index (a
//!   few cache lines per pick, rebuilt from the ring in one pass per change);
//! - from there on, a flat table of the [`STEPS`] steps, each holding its owner (3.8 MiB
//!   with two-byte owners): one read per pick, and a change rewrites only the steps that the
//!   joining or leaving nodes own, after copying the table for the new snapshot.

use hashring::DefaultHashBuilder;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::Arc;

/// The ring's resolution: positions are compared by which of this many equal steps of the
/// 64-bit hash space they fall in.
pub(super) const STEPS: u32 = 2_000_000;

/// Bits that hold any step.
const STEP_BITS: u32 = u32::BITS - (STEPS - 1).leading_zeros();

/// Virtual nodes from which the lookup is a flat table of all steps. Below, the node list
/// (8 bytes a node, with its index) is rebuilt in one pass per change and takes at most half
/// the table's memory; above, editing the table in place costs less than rebuilding the list.
pub(super) const FLAT_FROM: usize = 1 << 18;

/// A 64-bit position's step at the ring's resolution: its top 32 bits scaled to [`STEPS`]
/// by a multiply and a shift, which keeps ring order (positions in order have steps in
/// order).
#[inline]
pub(super) fn fine(position: u64) -> u32 {
    (((position >> 32) * u64::from(STEPS)) >> 32) as u32
}

/// The position of an endpoint's `replica`-th virtual node: `hashring`'s hash of the pair,
/// as `HashRing` places a node.
pub(super) fn position(endpoint: u64, replica: u32) -> u64 {
    DefaultHashBuilder.hash_one(super::VirtualNode { endpoint, replica })
}

/// One ring, kept between snapshots.
#[derive(Debug)]
pub(super) struct Placement {
    /// Every virtual node, by position; the endpoint's key hash breaks a (2^-64) tie the same
    /// way in every client. The value is the endpoint's slot.
    nodes: BTreeMap<(u64, u64), u32>,
    /// Placed endpoints, by key hash: their slot and number of virtual nodes.
    placed: HashMap<u64, (u32, u32)>,
    free_slots: Vec<u32>,
    slots: u32,
    /// From [`FLAT_FROM`] nodes on: the slot owning each step. Shared with the snapshots
    /// built from it, and copied on write.
    flat: Option<Owners>,
    /// Nodes from which the lookup is flat ([`FLAT_FROM`]; lower in tests).
    flat_from: usize,
    /// Below that, the node list last built, while the ring has not changed since: a snapshot
    /// rebuilt for another reason (another zone's health, slow start) shares it.
    node_list: Option<Lookup>,
    /// The table build that last used this placement (see [`Placements`]).
    last_used: u64,
}

impl Default for Placement {
    fn default() -> Self {
        Placement::flat_from(FLAT_FROM)
    }
}

impl Placement {
    /// Makes the placement hold exactly `wanted` (key hash, virtual nodes) endpoints, moving
    /// only what changed, and returns the slot of each in `wanted`'s order.
    pub(super) fn update(&mut self, wanted: &[(u64, u32)]) -> Vec<u32> {
        let target: HashMap<u64, u32> = wanted.iter().copied().collect();
        // (key, from, to): replicas `from..to` join or leave.
        let joining: Vec<(u64, u32, u32)> = target
            .iter()
            .map(|(&key, &to)| (key, self.placed.get(&key).map_or(0, |p| p.1), to))
            .filter(|(_, from, to)| to > from)
            .collect();
        let leaving: Vec<(u64, u32, u32)> = self
            .placed
            .iter()
            .map(|(&key, &(_, from))| (key, target.get(&key).copied().unwrap_or(0), from))
            .filter(|(_, to, from)| to < from)
            .collect();
        let count = |changes: &[(u64, u32, u32)]| -> usize {
            changes
                .iter()
                .map(|(_, a, b)| a.abs_diff(*b) as usize)
                .sum()
        };
        let (joins, leaves) = (count(&joining), count(&leaving));
        if joins + leaves > 0 {
            self.node_list = None;
        }
        let flat = self.nodes.len() + joins - leaves >= self.flat_from;
        let new_slots = joining
            .iter()
            .filter(|(key, ..)| !self.placed.contains_key(key));
        let widen = matches!(self.flat, Some(Owners::Narrow(_)))
            && self.slots as usize + new_slots.count() > NARROW_SLOTS;
        match self.flat.take() {
            Some(mut owners) if flat && !widen && joins + leaves <= self.nodes.len() / 2 => {
                // Joins first, so the ring is never empty while leavers are taken out.
                for &(key, from, to) in &joining {
                    let (slot, positions) = self.place(key, from..to, true);
                    for position in positions {
                        fill(&self.nodes, &mut owners, (position, key), Some(slot));
                    }
                }
                for &(key, to, from) in &leaving {
                    for position in self.unplace(key, to..from) {
                        fill(&self.nodes, &mut owners, (position, key), None);
                    }
                }
                self.flat = Some(owners);
            }
            _ => {
                for &(key, to, from) in &leaving {
                    self.unplace(key, to..from);
                }
                let bulk = self.nodes.is_empty();
                let mut added = Vec::with_capacity(if bulk { joins } else { 0 });
                for &(key, from, to) in &joining {
                    let (slot, positions) = self.place(key, from..to, !bulk);
                    added.extend(positions.into_iter().map(|p| ((p, key), slot)));
                }
                if bulk {
                    // From sorted input, the map is built in one pass.
                    added.sort_unstable();
                    self.nodes = added.into_iter().collect();
                }
                self.flat = flat.then(|| self.sample());
            }
        }
        wanted.iter().map(|(key, _)| self.placed[key].0).collect()
    }

    /// A placement that turns flat from `flat_from` nodes on.
    pub(super) fn flat_from(flat_from: usize) -> Self {
        Placement {
            nodes: BTreeMap::new(),
            placed: HashMap::new(),
            free_slots: Vec::new(),
            slots: 0,
            flat: None,
            flat_from,
            node_list: None,
            last_used: 0,
        }
    }

    /// The lookup structure for a snapshot of the ring as it is now.
    pub(super) fn lookup(&mut self) -> Lookup {
        if let Some(owners) = &self.flat {
            return Lookup::Flat(owners.clone());
        }
        self.node_list
            .get_or_insert_with(|| node_list(&self.nodes))
            .clone()
    }

    pub(super) fn slots(&self) -> usize {
        self.slots as usize
    }

    pub(super) fn nodes(&self) -> usize {
        self.nodes.len()
    }

    pub(super) fn contains(&self, key: u64) -> bool {
        self.placed.contains_key(&key)
    }

    /// Puts `key`'s virtual nodes `replicas` on the ring (into the map only if `insert`);
    /// returns its slot and their positions.
    fn place(&mut self, key: u64, replicas: Range<u32>, insert: bool) -> (u32, Vec<u64>) {
        let slot = match self.placed.get(&key) {
            Some(&(slot, _)) => slot,
            None => self.free_slots.pop().unwrap_or_else(|| {
                self.slots += 1;
                self.slots - 1
            }),
        };
        self.placed.insert(key, (slot, replicas.end));
        let positions: Vec<u64> = replicas.map(|r| position(key, r)).collect();
        if insert {
            for &p in &positions {
                self.nodes.insert((p, key), slot);
            }
        }
        (slot, positions)
    }

    /// Takes `key`'s virtual nodes `replicas` (its last ones) off the ring; returns their
    /// positions.
    fn unplace(&mut self, key: u64, replicas: Range<u32>) -> Vec<u64> {
        let Some(&(slot, _)) = self.placed.get(&key) else {
            return Vec::new();
        };
        if replicas.start == 0 {
            self.placed.remove(&key);
            self.free_slots.push(slot);
        } else {
            self.placed.insert(key, (slot, replicas.start));
        }
        let positions: Vec<u64> = replicas.map(|r| position(key, r)).collect();
        for &p in &positions {
            self.nodes.remove(&(p, key));
        }
        positions
    }

    /// The whole flat table, sampled from the ring in one pass.
    fn sample(&self) -> Owners {
        let first = self.nodes.values().next().copied().unwrap_or(0);
        let mut nodes = self.nodes.iter().peekable();
        let owners = (0..STEPS).map(|step| {
            while nodes.next_if(|((p, _), _)| fine(*p) < step).is_some() {}
            nodes.peek().map_or(first, |(_, slot)| **slot)
        });
        Owners::of(self.slots as usize, owners)
    }
}

/// Nodes a pick compares at once, without a branch per node; as many sentinels follow the
/// last node, so every window is whole.
const WINDOW: usize = 4;

/// A sentinel's step: past every real step, so no key's step is above it.
const PAST_THE_RING: u32 = u32::MAX;

/// The ring's nodes as a sorted list of (step, slot), behind a radix index.
fn node_list(ring: &BTreeMap<(u64, u64), u32>) -> Lookup {
    let nodes: Arc<[(u32, u32)]> = ring
        .iter()
        .map(|((position, _), slot)| (fine(*position), *slot))
        .chain([(PAST_THE_RING, super::FREE_SLOT); WINDOW])
        .collect();
    let len = ring.len();
    // About one node per index entry.
    let bits = (len.max(2) as u64).ilog2().clamp(1, STEP_BITS);
    let shift = STEP_BITS - bits;
    let mut index = Vec::with_capacity(1 << bits);
    let mut node = 0;
    for bucket in 0..1u32 << bits {
        while node < len && nodes[node].0 >> shift < bucket {
            node += 1;
        }
        index.push(node as u32);
    }
    Lookup::Nodes {
        nodes,
        index: index.into(),
        shift,
    }
}

/// What a snapshot's picks read: a key's step → the slot of its endpoint. Cheap to clone:
/// snapshots of an unchanged ring share it.
#[derive(Debug, Clone)]
pub(super) enum Lookup {
    /// The nodes in ring order, each its step and slot (side by side: a pick reads both),
    /// then [`WINDOW`] sentinels; and `index[b]`, the first node whose step's top bits
    /// (`step >> shift`) are `>= b`.
    Nodes {
        nodes: Arc<[(u32, u32)]>,
        index: Arc<[u32]>,
        shift: u32,
    },
    /// Every step's slot.
    Flat(Owners),
}

impl Lookup {
    /// Where the key at `step` lands: an index into [`Lookup::slot`]'s clockwise order.
    #[inline]
    pub(super) fn locate(&self, step: u32) -> usize {
        match self {
            Lookup::Flat(_) => step as usize,
            Lookup::Nodes {
                nodes,
                index,
                shift,
            } => {
                // Nodes are in order, so the key's node is the window's first at or after its
                // step: the count of those below. Nodes of later buckets, and the sentinels,
                // are never below.
                let start = index[(step >> shift) as usize] as usize;
                let window = &nodes[start..start + WINDOW];
                let below = window.iter().filter(|&&(node, _)| node < step).count();
                let at = if below < WINDOW {
                    start + below
                } else {
                    // A crowded bucket; a sentinel ends the scan.
                    let rest = &nodes[start + WINDOW..];
                    start + WINDOW + rest.iter().take_while(|&&(node, _)| node < step).count()
                };
                // Past the last node: around to the first.
                if at == nodes.len() - WINDOW {
                    0
                } else {
                    at
                }
            }
        }
    }

    /// The slot at `place`, a [`Lookup::locate`] result or a place after it (below
    /// [`Lookup::places`]).
    #[inline]
    pub(super) fn slot(&self, place: usize) -> u32 {
        match self {
            Lookup::Flat(owners) => owners.get(place),
            Lookup::Nodes { nodes, .. } => nodes[place].1,
        }
    }

    /// How many places one turn of the ring has.
    pub(super) fn places(&self) -> usize {
        match self {
            Lookup::Flat(_) => STEPS as usize,
            Lookup::Nodes { nodes, .. } => nodes.len() - WINDOW,
        }
    }

    /// Bytes it takes.
    pub(super) fn bytes(&self) -> usize {
        match self {
            Lookup::Flat(owners) => owners.bytes(),
            Lookup::Nodes { nodes, index, .. } => {
                std::mem::size_of_val(&**nodes) + std::mem::size_of_val(&**index)
            }
        }
    }
}

/// Slots that fit the two-byte table.
const NARROW_SLOTS: usize = 1 << 16;

/// The owner table: each bucket's slot, in two bytes while there are at most 65 536 slots
/// (endpoints), so that a pool of thousands keeps a ring's table at 3.8 MiB.
#[derive(Debug, Clone)]
pub(super) enum Owners {
    Narrow(Arc<[u16]>),
    Wide(Arc<[u32]>),
}

impl Default for Owners {
    fn default() -> Self {
        Owners::Narrow(Arc::from([]))
    }
}

impl Owners {
    /// The table of `owners`, slots below `slots`: two bytes an entry while they fit.
    pub(super) fn of(slots: usize, owners: impl Iterator<Item = u32>) -> Owners {
        if slots <= NARROW_SLOTS {
            Owners::Narrow(owners.map(|slot| slot as u16).collect())
        } else {
            Owners::Wide(owners.collect())
        }
    }

    /// The slot owning `bucket`.
    #[inline]
    pub(super) fn get(&self, bucket: usize) -> u32 {
        match self {
            Owners::Narrow(owners) => u32::from(owners[bucket]),
            Owners::Wide(owners) => owners[bucket],
        }
    }

    pub(super) fn bytes(&self) -> usize {
        match self {
            Owners::Narrow(owners) => std::mem::size_of_val(&**owners),
            Owners::Wide(owners) => std::mem::size_of_val(&**owners),
        }
    }

    /// Gives buckets `from..=to` to `slot`, copying the table first if a snapshot shares it.
    fn set(&mut self, from: u64, to: u64, slot: u32) {
        let buckets = from as usize..=to as usize;
        match self {
            // `update` widens the table before a slot outgrows two bytes.
            Owners::Narrow(owners) => Arc::make_mut(owners)[buckets].fill(slot as u16),
            Owners::Wide(owners) => Arc::make_mut(owners)[buckets].fill(slot),
        }
    }
}

/// Updates the steps in the gap before the node `at` (position, endpoint key): to `slot` when
/// the node just joined, or to the owner of the next node clockwise when it just left. Those
/// are the only steps whose owner the change can touch.
fn fill(nodes: &BTreeMap<(u64, u64), u32>, owners: &mut Owners, at: (u64, u64), slot: Option<u32>) {
    let position = at.0;
    // The gap runs from the previous node (exclusive) to this one (inclusive), around the
    // ring's end if need be.
    let previous = nodes
        .range(..at)
        .next_back()
        .or_else(|| nodes.iter().next_back())
        .map(|((p, _), _)| *p);
    let owner = match slot {
        Some(slot) => slot,
        None => match nodes.range(at..).next().or_else(|| nodes.iter().next()) {
            Some((_, &next)) => next,
            None => return, // the ring is empty: nothing owns anything
        },
    };
    let last = u64::from(STEPS) - 1;
    let set = |owners: &mut Owners, from: u64, to: u64| owners.set(from, to, owner);
    // Steps s with fine(previous) < s <= fine(position).
    let first_after = |p: u64| u64::from(fine(p)) + 1;
    let at_step = u64::from(fine(position));
    match previous {
        Some(previous) if previous < position => {
            if first_after(previous) <= at_step {
                set(owners, first_after(previous), at_step);
            }
        }
        // Wrapping gap (or this is the only node): after `previous` to the end, then from
        // the start to `position`.
        _ => {
            if let Some(previous) = previous {
                if first_after(previous) <= last {
                    set(owners, first_after(previous), last);
                }
            }
            set(owners, 0, at_step);
        }
    }
}

/// The placements of one policy: one per zone with locality, else one. A table build finds
/// its placement by the endpoints it holds, so zones do not evict each other's rings.
#[derive(Debug)]
pub(super) struct Placements {
    rings: Vec<Placement>,
    builds: u64,
    flat_from: usize,
}

impl Default for Placements {
    fn default() -> Self {
        Placements::flat_from(FLAT_FROM)
    }
}

/// Placements not used by the last this many table builds are dropped.
const KEEP_FOR_BUILDS: u64 = 64;

impl Placements {
    /// Placements whose lookups turn flat from `flat_from` nodes on.
    pub(super) fn flat_from(flat_from: usize) -> Self {
        Placements {
            rings: Vec::new(),
            builds: 0,
            flat_from,
        }
    }

    /// The placement that holds some of `endpoints` (key hash, virtual nodes): the first, a
    /// few more spread along, the last. Or a new one.
    pub(super) fn for_endpoints(&mut self, endpoints: &[(u64, u32)]) -> &mut Placement {
        self.builds += 1;
        let builds = self.builds;
        self.rings
            .retain(|ring| builds - ring.last_used <= KEEP_FOR_BUILDS);
        let probes = 8.min(endpoints.len());
        let probe = |i: usize| endpoints[i * (endpoints.len() - 1) / (probes - 1).max(1)].0;
        let found = self
            .rings
            .iter()
            .position(|ring| (0..probes).any(|i| ring.contains(probe(i))));
        let index = found.unwrap_or_else(|| {
            self.rings.push(Placement::flat_from(self.flat_from));
            self.rings.len() - 1
        });
        let ring = &mut self.rings[index];
        ring.last_used = builds;
        ring
    }
}
