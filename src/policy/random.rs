//! Random and weighted random.

use super::{Candidates, Pick, Policy};
use crate::endpoint::EndpointStats;
use crate::rng::Rng;
use std::sync::Arc;

/// Picks an endpoint at random, in proportion to its weight.
///
/// With equal weights this is uniform random. Unequal weights are served by Vose's alias
/// method, built once per snapshot, so a pick is one random draw and two array reads whatever
/// the number of endpoints.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_lb::{policy::Random, Balance, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let lb = Balance::builder(Random::new().with_rng(42))
///     .endpoints((0..3).map(|i| (i, service_fn(move |()| async move { Ok::<_, BoxError>(i) }))))
///     .build()?;
/// assert!(lb.oneshot(()).await? < 3);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Random {
    rng: Rng,
}

/// A snapshot's precomputed [`Random`] table: draws an endpoint in proportion to its
/// effective weight (also how weighted [`P2c`](super::P2c) draws its two candidates).
#[derive(Debug)]
pub struct AliasTable {
    /// Empty when every weight is equal: a plain uniform draw then.
    columns: Box<[Column]>,
}

/// One column of the alias table: keep the column's own endpoint when the coin (32 random bits)
/// falls below `keep`, else take `alias`.
#[derive(Debug, Clone, Copy)]
struct Column {
    keep: u64,
    alias: u32,
}

const ONE: f64 = (1u64 << 32) as f64;

impl Random {
    /// Random picks from the per-thread generator.
    pub fn new() -> Self {
        Random { rng: Rng::Thread }
    }

    /// Random picks from a seeded generator, for reproducible tests.
    pub fn with_rng(self, seed: u64) -> Self {
        Random {
            rng: Rng::seeded(seed),
        }
    }
}

impl Default for Random {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy for Random {
    type Table = AliasTable;

    fn table(&self, endpoints: &[Arc<EndpointStats>]) -> AliasTable {
        AliasTable::of(endpoints)
    }
}

impl<Req> Pick<Req> for Random {
    fn pick(&self, _: &Req, table: &AliasTable, candidates: &Candidates<'_>) -> Option<usize> {
        Some(table.draw(self.rng.u64(), candidates.len()))
    }
}

impl AliasTable {
    /// The table for `endpoints`' effective weights.
    pub(crate) fn of(endpoints: &[Arc<EndpointStats>]) -> Self {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.effective_weight()).collect();
        if weights.windows(2).all(|w| w[0] == w[1]) {
            return AliasTable {
                columns: Box::new([]),
            };
        }
        AliasTable {
            columns: vose(&weights),
        }
    }

    /// Whether every weight is equal (draws are then plain uniform ones).
    #[inline]
    pub(crate) fn is_uniform(&self) -> bool {
        self.columns.is_empty()
    }

    /// One endpoint among `n`, in proportion to its weight, from 64 random bits.
    ///
    /// The coin is chosen without a branch: it is a fair-ish coin by design, so a branch on
    /// it would be mispredicted on most weighted draws (about 0.7 per P2C pick with weights
    /// 1–4, a few nanoseconds each).
    #[inline]
    pub(crate) fn draw(&self, random: u64, n: usize) -> usize {
        let column = below_u32((random >> 32) as u32, n);
        match self.columns.get(column) {
            None => column,
            Some(c) => {
                let keep = usize::from(u64::from(random as u32) < c.keep).wrapping_neg();
                (column & keep) | (c.alias as usize & !keep)
            }
        }
    }
}

/// Maps 32 random bits onto `0..n` by multiply-shift.
#[inline]
pub(crate) fn below_u32(random: u32, n: usize) -> usize {
    ((u64::from(random) * n as u64) >> 32) as usize
}

/// Vose's alias method: every column holds probability mass 1/n, split between at most two
/// endpoints.
fn vose(weights: &[u32]) -> Box<[Column]> {
    let n = weights.len();
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let mut scaled: Vec<f64> = weights
        .iter()
        .map(|&w| f64::from(w) * n as f64 / total)
        .collect();
    let mut columns = vec![
        Column {
            keep: 1 << 32,
            alias: 0,
        };
        n
    ];
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
    while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
        small.pop();
        columns[s] = Column {
            keep: (scaled[s] * ONE) as u64,
            alias: l as u32,
        };
        scaled[l] -= 1.0 - scaled[s];
        if scaled[l] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    // Whatever remains holds (up to rounding) exactly 1: keep it whole.
    for i in small.into_iter().chain(large) {
        columns[i] = Column {
            keep: 1 << 32,
            alias: i as u32,
        };
    }
    columns.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::{count_picks, endpoints};
    use crate::stats::chi_squared_p_value;

    #[test]
    fn uniform_passes_chi_squared() {
        let eps = endpoints(&[1; 10]);
        let counts = count_picks(&Random::new().with_rng(1), &eps, 10 * 1000);
        let p = chi_squared_p_value(&counts, &[1.0; 10]);
        assert!(p > 1e-6, "p = {p}, counts {counts:?}");
    }

    #[test]
    fn weighted_passes_chi_squared() {
        let weights = [1, 2, 3, 4, 10];
        let eps = endpoints(&weights);
        // The smallest bucket expects 20_000 / 20 × 1 = 1000 picks.
        let counts = count_picks(&Random::new().with_rng(2), &eps, 20_000);
        let expected: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
        let p = chi_squared_p_value(&counts, &expected);
        assert!(p > 1e-6, "p = {p}, counts {counts:?}");
    }

    #[test]
    fn the_test_can_fail() {
        // Guard against a χ² helper that always passes: a skewed sample must be rejected.
        let p = chi_squared_p_value(&[1200, 800], &[1.0, 1.0]);
        assert!(p < 1e-6, "p = {p}");
    }

    #[test]
    fn alias_columns_hold_the_exact_mass() {
        let weights = [1u32, 2, 3, 4, 10];
        let columns = vose(&weights);
        let mut mass = [0f64; 5];
        for (i, c) in columns.iter().enumerate() {
            let keep = c.keep as f64 / ONE;
            mass[i] += keep;
            mass[c.alias as usize] += 1.0 - keep;
        }
        for (m, w) in mass.iter().zip(weights) {
            assert!((m / 5.0 - f64::from(w) / 20.0).abs() < 1e-9, "{mass:?}");
        }
    }
}
