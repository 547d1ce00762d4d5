//! The immutable view of the pool that every pick reads.
//!
//! Membership and health changes are rare and picks are constant, so the two are split: a
//! change builds a whole new [`Snapshot`] (eligible endpoints, endpoints on probation, and the
//! policy's precomputed table) under the membership lock and publishes it with `arc-swap`; a
//! pick loads the current snapshot without a lock and never sees a half-applied change.

use super::locality::Zoning;
use super::members::{Member, Members};
use super::state::EndpointState;
use crate::endpoint::EndpointStats;
use crate::policy::Policy;
use crate::rng::Rng;
use std::sync::Arc;

pub(crate) struct Snapshot<K, S, T> {
    /// Eligible endpoints first (`..eligible`, zone by zone), then endpoints on probation (in
    /// panic mode these are eligible as well, and listed twice), then the reserve: the
    /// endpoints of zones that take no traffic now (with locality, while nearer zones are
    /// healthy enough), which only a retry goes to.
    pub(crate) keys: Box<[K]>,
    pub(crate) services: Box<[S]>,
    pub(crate) stats: Box<[Arc<EndpointStats>]>,
    pub(crate) eligible: usize,
    /// Where the endpoints on probation end (they start at `eligible`).
    probation_end: usize,
    /// The eligible endpoints in consecutive parts, one per zone that takes traffic (one part
    /// without locality), then one per zone of the reserve. No part is empty, and there are
    /// none exactly when no endpoint is eligible: policies are never asked about an empty
    /// set.
    pub(crate) shares: Box<[Share<T>]>,
    /// How many of `shares` take traffic.
    traffic: usize,
    /// Endpoints in the pool, eligible or not (draining ones aside).
    pub(crate) members: usize,
}

/// One zone's part of the eligible endpoints and its policy table.
pub(crate) struct Share<T> {
    /// Where the part is in the snapshot's endpoints.
    start: usize,
    end: usize,
    /// A request goes to the first part whose bound is above its 32-bit random draw.
    below: u64,
    pub(crate) table: T,
}

impl<K, S, T> Snapshot<K, S, T> {
    /// The part of the eligible endpoints a request goes to, and where it starts; `None`
    /// when no endpoint is eligible. Draws a random number only when zones share traffic.
    #[inline]
    pub(crate) fn share(&self) -> Option<(std::ops::Range<usize>, &T)> {
        let share = match &self.shares[..self.traffic] {
            [] => return None,
            [only] => only,
            shares => {
                let draw = Rng::Thread.u64() >> 32;
                let i = shares
                    .iter()
                    .position(|share| draw < share.below)
                    .unwrap_or(shares.len() - 1);
                &shares[i]
            }
        };
        Some((share.start..share.end, &share.table))
    }

    /// Every part, traffic first (zone by zone), then the reserve: where a retry looks once
    /// the part it drew holds only endpoints it must avoid.
    pub(crate) fn parts(&self) -> impl Iterator<Item = (std::ops::Range<usize>, &T)> {
        self.shares
            .iter()
            .map(|share| (share.start..share.end, &share.table))
    }

    /// The endpoints on probation.
    pub(crate) fn probation(&self) -> std::ops::Range<usize> {
        self.eligible..self.probation_end
    }
}

type Entry<'a, K, S> = (&'a K, &'a S, &'a Arc<EndpointStats>);

impl<K, S, R> Member<K, S, R> {
    fn entry(&self) -> Entry<'_, K, S> {
        (self.key(), &self.service, self.stats())
    }
}

impl<K: Clone + std::fmt::Debug, S: Clone, R> Members<K, S, R> {
    /// The snapshot of the current members: healthy ones are eligible, others are not, ones
    /// on probation are offered for their one probe. When fewer than `panic_threshold` of the
    /// members (of a zone, with locality) are healthy, all of them are eligible (panic mode).
    /// Excluded members are never eligible and do not count towards the threshold: an
    /// exclusion is a decision, not a health signal that might be wrong.
    pub(super) fn snapshot<P: Policy>(
        &mut self,
        policy: &P,
        panic_threshold: f64,
    ) -> Snapshot<K, S, P::Table> {
        let members = self.active().len();
        let zones = self.zoning.as_ref().map_or(1, Zoning::count);
        let in_play = || self.active().iter().filter(|m| m.exclusions().is_empty());
        let mut parts: Vec<(Vec<Entry<'_, K, S>>, f64)> = Vec::with_capacity(zones);
        let mut healthy_fractions = Vec::with_capacity(zones);
        let mut panicking = false;
        let (mut healthy_in_play, mut in_play_count) = (0, 0);
        for zone in 0..zones {
            let in_zone = || in_play().filter(|m| m.zone == zone);
            let total = in_zone().count();
            let healthy = in_zone().filter(|m| m.is_healthy()).count();
            let zone_panics = total > 0 && (healthy as f64) < panic_threshold * total as f64;
            panicking |= zone_panics;
            healthy_in_play += healthy;
            in_play_count += total;
            parts.push((
                in_zone()
                    .filter(|m| zone_panics || m.is_healthy())
                    .map(Member::entry)
                    .collect(),
                1.0,
            ));
            healthy_fractions.push(if total > 0 {
                healthy as f64 / total as f64
            } else {
                0.0
            });
        }
        if let Some(zoning) = &self.zoning {
            let shares = zoning.locality.shares(&healthy_fractions);
            let mut shares = shares.into_iter();
            for part in &mut parts {
                part.1 = shares.next().unwrap_or(0.0);
            }
            // Every zone down: the first with endpoints takes everything (in panic mode).
            if parts.iter().all(|(_, share)| *share == 0.0) {
                if let Some(part) = parts.iter_mut().find(|(part, _)| !part.is_empty()) {
                    part.1 = 1.0;
                }
            }
        }
        // Endpoints on probation are offered their one probe before any pick, in panic mode
        // too: there they are also eligible, but a latency-aware policy may shun them (the
        // failure penalty) and leave them on probation indefinitely.
        let probation = in_play()
            .filter(|m| m.state() == EndpointState::Probation)
            .map(Member::entry)
            .collect();
        let snapshot = Snapshot::build(policy, parts, probation, members);
        if panicking != self.panicking {
            self.panicking = panicking;
            if panicking {
                self.panics += 1;
                tracing::warn!(
                    healthy = healthy_in_play,
                    total = in_play_count,
                    panic_threshold,
                    "panic mode: too few healthy endpoints, balancing over all of them"
                );
            } else {
                tracing::info!(
                    healthy = healthy_in_play,
                    total = in_play_count,
                    "panic mode over"
                );
            }
        }
        snapshot
    }
}

impl<K, S, T> Snapshot<K, S, T> {
    /// `parts`: each zone's eligible endpoints and share of traffic. Parts with no endpoint
    /// are left out; parts with no share go to the reserve.
    fn build<'a, P>(
        policy: &P,
        parts: Vec<(Vec<Entry<'a, K, S>>, f64)>,
        probation: Vec<Entry<'a, K, S>>,
        members: usize,
    ) -> Self
    where
        P: Policy<Table = T>,
        K: Clone + 'a,
        S: Clone + 'a,
    {
        let (traffic, reserve): (Vec<_>, Vec<_>) = parts
            .into_iter()
            .filter(|(part, _)| !part.is_empty())
            .partition(|(_, share)| *share > 0.0);
        let n = traffic
            .iter()
            .chain(&reserve)
            .map(|(part, _)| part.len())
            .sum::<usize>()
            + probation.len();
        let (mut keys, mut services, mut stats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut push = |entries: Vec<Entry<'a, K, S>>| {
            for (key, service, stat) in entries {
                keys.push(key.clone());
                services.push(service.clone());
                stats.push(Arc::clone(stat));
            }
            stats.len()
        };
        // Each part as (start, end, bound of the draw that picks it).
        let mut ranges = Vec::with_capacity(traffic.len() + reserve.len());
        let total: f64 = traffic.iter().map(|(_, share)| share).sum();
        let (mut cumulative, last) = (0.0, traffic.len().saturating_sub(1));
        let mut start = 0;
        for (i, (part, share)) in traffic.into_iter().enumerate() {
            let end = push(part);
            cumulative += share / total;
            let below = match i == last {
                true => u64::MAX,
                false => (cumulative * 4_294_967_296.0) as u64,
            };
            ranges.push((start, end, below));
            start = end;
        }
        let (eligible, traffic_parts) = (start, ranges.len());
        let probation_end = push(probation);
        start = probation_end;
        for (part, _) in reserve {
            let end = push(part);
            ranges.push((start, end, 0));
            start = end;
        }
        let shares = ranges
            .into_iter()
            .map(|(start, end, below)| Share {
                start,
                end,
                below,
                table: policy.table(&stats[start..end]),
            })
            .collect();
        Snapshot {
            keys: keys.into(),
            services: services.into(),
            stats: stats.into(),
            eligible,
            probation_end,
            shares,
            traffic: traffic_parts,
            members,
        }
    }
}
