//! One of two policies, chosen at run time.

use super::{Candidates, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::load::PeakEwma;
use std::sync::Arc;

/// One of two policies, chosen at run time, from configuration: the pool's type stays the same
/// whichever a deployment picks. (A PostgreSQL URL's `load_balance_hosts=random` picks
/// [`Random`](super::Random) over [`P2c`](super::P2c) this way.) A pick costs one match more
/// than the policy's own.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::{Either, P2c, Random}, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let random = std::env::var("LB_POLICY").is_ok_and(|p| p == "random");
/// let policy = match random {
///     true => Either::Right(Random::new()),
///     false => Either::Left(P2c::new()),
/// };
/// let lb = Balance::builder(policy)
///     .endpoints((0..3).map(|i| (i, service_fn(move |()| async move { Ok::<_, BoxError>(i) }))))
///     .build()?;
/// assert!(lb.oneshot(()).await? < 3);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first policy.
    Left(A),
    /// The second policy.
    Right(B),
}

impl<A: Policy, B: Policy> Policy for Either<A, B> {
    /// The table of the policy in use.
    type Table = Either<A::Table, B::Table>;

    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> Self::Table {
        match self {
            Either::Left(a) => Either::Left(a.table(endpoints)),
            Either::Right(b) => Either::Right(b.table(endpoints)),
        }
    }

    fn latency(&self) -> Option<PeakEwma> {
        match self {
            Either::Left(a) => a.latency(),
            Either::Right(b) => b.latency(),
        }
    }

    fn counts_total_in_flight(&self) -> bool {
        match self {
            Either::Left(a) => a.counts_total_in_flight(),
            Either::Right(b) => b.counts_total_in_flight(),
        }
    }
}

impl<Req, A: Pick<Req>, B: Pick<Req>> Pick<Req> for Either<A, B> {
    fn pick(&self, req: &Req, table: &Self::Table, candidates: &Candidates<'_>) -> Option<usize> {
        match (self, table) {
            (Either::Left(a), Either::Left(table)) => a.pick(req, table, candidates),
            (Either::Right(b), Either::Right(table)) => b.pick(req, table, candidates),
            // Never: a policy's tables are its own. Refusing is the safe answer.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{count_picks, endpoints};
    use crate::policy::{P2c, Random, RoundRobin};

    #[test]
    fn each_side_picks_as_its_policy_does() {
        let eps = endpoints(&[2, 1]);
        let n = 60_000;
        for policy in [
            Either::Left(P2c::new().with_rng(3)),
            Either::Right(Random::new().with_rng(3)),
        ] {
            let counts = count_picks(&policy, &eps, n);
            let heavy = counts[0] as f64 / n as f64;
            assert!((heavy - 2.0 / 3.0).abs() < 0.01, "{policy:?}: {counts:?}");
        }
    }

    #[test]
    fn a_foreign_table_is_refused_not_panicked_on() {
        let eps = endpoints(&[1, 1]);
        let table = Either::<RoundRobin, Random>::Right(Random::new()).table(&eps);
        let left = Either::<RoundRobin, Random>::Left(RoundRobin::new());
        assert_eq!(left.pick(&(), &table, &Candidates::new(&eps)), None);
    }
}
