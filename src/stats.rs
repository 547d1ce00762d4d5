//! Pearson's χ² goodness-of-fit test, for the distribution tests of the random policies.
//!
//! DESIGN §7: a distribution test either has an exact oracle or rejects at α = 1e-6 with at
//! least 500 expected picks per bucket, so it fails on a real bias and (almost) never on luck.

/// The p-value of observing `counts` when bucket `i` should get a share proportional to
/// `expected[i]`.
pub(crate) fn chi_squared_p_value(counts: &[u64], expected: &[f64]) -> f64 {
    assert_eq!(counts.len(), expected.len());
    let n: f64 = counts.iter().map(|&c| c as f64).sum();
    let total: f64 = expected.iter().sum();
    let statistic: f64 = counts
        .iter()
        .zip(expected)
        .map(|(&c, &e)| {
            let e = n * e / total;
            assert!(e >= 500.0, "a χ² bucket expects {e} < 500 picks");
            (c as f64 - e).powi(2) / e
        })
        .sum();
    let degrees = (counts.len() - 1) as f64;
    upper_regularized_gamma(degrees / 2.0, statistic / 2.0)
}

/// Q(a, x) = Γ(a, x) / Γ(a): series below `a + 1`, Lentz's continued fraction above
/// (Numerical Recipes §6.2).
fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * log_prefix.exp()
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            d = if d.abs() < tiny { tiny } else { d };
            c = b + an / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        log_prefix.exp() * h
    }
}

/// ln Γ(x) by the Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x > 0.
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let series = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |acc, (i, g)| acc + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_quantiles() {
        // Critical values of the χ² distribution (e.g. from scipy.stats.chi2.isf).
        let q = |df: f64, x: f64| upper_regularized_gamma(df / 2.0, x / 2.0);
        assert!((q(1.0, 3.841_458_820_694_124) - 0.05).abs() < 1e-9);
        assert!((q(4.0, 9.487_729_036_781_154) - 0.05).abs() < 1e-9);
        assert!((q(9.0, 21.665_994_333_461_924) - 0.01).abs() < 1e-9);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    }
}
