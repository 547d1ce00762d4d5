//! MariaDB GTID positions: the last sequence number applied in each replication domain.

use std::fmt;

/// A MariaDB GTID position (`@@gtid_binlog_pos`, `@@gtid_slave_pos`): for each replication
/// domain, the last transaction's GTID, `domain-server-sequence` (`0-1-42,1-2-7`). Within a
/// domain, sequence numbers only grow (with `gtid_strict_mode`, also across a failover),
/// whichever server wrote them, so positions compare domain by domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GtidPosition {
    /// `(domain, sequence)`, one per domain, sorted by domain.
    domains: Vec<(u32, u64)>,
}

/// Text that is no MariaDB GTID position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotAGtidPosition(String);

impl fmt::Display for NotAGtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a MariaDB GTID position: {:?}", self.0)
    }
}

impl std::error::Error for NotAGtidPosition {}

impl GtidPosition {
    /// Parses a position as the server prints it; the empty text is the empty position (no
    /// transaction yet). The server's own text is trusted only as far as it parses.
    pub(crate) fn parse(text: &str) -> Result<Self, NotAGtidPosition> {
        let refuse = || NotAGtidPosition(text.chars().take(80).collect());
        let mut domains = Vec::new();
        for gtid in text
            .split(',')
            .map(str::trim)
            .filter(|gtid| !gtid.is_empty())
        {
            let mut parts = gtid.split('-');
            let (Some(domain), Some(_server), Some(sequence), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(refuse());
            };
            let domain: u32 = domain.parse().map_err(|_| refuse())?;
            let sequence: u64 = sequence.parse().map_err(|_| refuse())?;
            domains.push((domain, sequence));
        }
        domains.sort_unstable();
        if domains.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(refuse()); // a domain twice
        }
        Ok(GtidPosition { domains })
    }

    /// How many transactions of `self` (the primary's position) a replica at `applied` has
    /// not applied: the sum over domains of the sequence numbers it is short.
    pub(crate) fn ahead_of(&self, applied: &GtidPosition) -> u64 {
        self.domains
            .iter()
            .map(|&(domain, sequence)| sequence.saturating_sub(applied.sequence_in(domain)))
            .fold(0u64, u64::saturating_add)
    }

    /// The later of two positions of one history, domain by domain.
    pub(crate) fn max(&self, other: &GtidPosition) -> GtidPosition {
        let mut domains = self.domains.clone();
        for &(domain, sequence) in &other.domains {
            match domains.binary_search_by_key(&domain, |&(d, _)| d) {
                Ok(i) => domains[i].1 = domains[i].1.max(sequence),
                Err(i) => domains.insert(i, (domain, sequence)),
            }
        }
        GtidPosition { domains }
    }

    /// The sequence number of domain 0, if that is the only domain: a position the
    /// read-your-own-writes machinery can compare (0 for the empty position).
    pub(crate) fn sequence_in_only_domain_0(&self) -> Option<u64> {
        match self.domains[..] {
            [] => Some(0),
            [(0, sequence)] => Some(sequence),
            _ => None,
        }
    }

    fn sequence_in(&self, domain: u32) -> u64 {
        self.domains
            .binary_search_by_key(&domain, |&(d, _)| d)
            .map_or(0, |i| self.domains[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_compare_domain_by_domain() {
        let primary = GtidPosition::parse("0-1-42,1-2-7").unwrap();
        let replica = GtidPosition::parse("1-2-5, 0-1-40").unwrap();
        assert_eq!(primary.ahead_of(&replica), 4);
        assert_eq!(replica.ahead_of(&primary), 0);
        assert_eq!(primary.ahead_of(&GtidPosition::parse("").unwrap()), 49);
        // A failover: another server, the same domain's sequence going on.
        let promoted = GtidPosition::parse("0-2-45,1-2-7").unwrap();
        assert_eq!(promoted.ahead_of(&primary), 3);
        assert_eq!(primary.max(&promoted), promoted);
        assert_eq!(
            GtidPosition::parse("0-1-1")
                .unwrap()
                .max(&GtidPosition::parse("3-1-9").unwrap()),
            GtidPosition::parse("0-1-1,3-1-9").unwrap()
        );
    }

    #[test]
    fn what_is_no_position_is_a_typed_error() {
        for text in ["0-1", "0-1-2-3", "a-1-2", "0-1-x", "0-1-2,0-1-3", "-1-2"] {
            assert!(GtidPosition::parse(text).is_err(), "{text}");
        }
        let long = "x".repeat(1000);
        let error = GtidPosition::parse(&long).unwrap_err().to_string();
        assert!(error.len() < 120, "{error}");
    }
}
