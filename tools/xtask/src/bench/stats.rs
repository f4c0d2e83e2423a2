//! Several runs of one figure: median and spread, and ratios of medians checked against a
//! target.

use serde::Serialize;

/// One figure over several runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest run's value.
    pub min: f64,
    /// The largest run's value.
    pub max: f64,
    /// Every run's value, in run order.
    pub runs: Vec<f64>,
}

impl Spread {
    /// The spread of `values`; `None` without any.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 };
        Some(Self { median, min: sorted[0], max: sorted[sorted.len() - 1], runs: values.to_vec() })
    }

    /// `median (min..max)` with `unit`, for tables.
    pub fn describe(&self, unit: &str) -> String {
        if self.runs.len() == 1 {
            return format!("{}{unit}", compact(self.median));
        }
        format!("{}{unit} ({}..{})", compact(self.median), compact(self.min), compact(self.max))
    }
}

/// A number without needless decimals: integers as such, others to 3 significant places.
pub fn compact(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// How a ratio compares with its target: the issue sets upper bounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioCheck {
    /// What is divided by what, e.g. `oob-thread max, grinder / idle`.
    pub name: String,
    /// The ratio of the medians; `None` when the denominator is 0.
    pub ratio: Option<f64>,
    /// The largest acceptable ratio.
    pub target: f64,
    /// `met`, `missed by 0.35 (1.55x against 1.20x)` or `undefined (…)`.
    pub verdict: String,
    /// The ratio of each run's pair (run i of the numerator over run i of the denominator),
    /// when both figures come from several runs ([`RatioCheck::of_runs`]): its min..max says
    /// how far one run's ratio strays from the ratio of the medians.
    pub per_run: Option<Spread>,
}

impl RatioCheck {
    /// Compares `numerator / denominator` with `target`.
    pub fn new(name: impl Into<String>, numerator: f64, denominator: f64, target: f64) -> Self {
        let name = name.into();
        if denominator <= 0.0 || !denominator.is_finite() || !numerator.is_finite() {
            return Self {
                name,
                ratio: None,
                target,
                verdict: format!("undefined (denominator {})", compact(denominator)),
                per_run: None,
            };
        }
        let ratio = numerator / denominator;
        let verdict = if ratio <= target {
            format!("met ({ratio:.3}x, target <= {target}x)")
        } else {
            format!("MISSED by {:.3} ({ratio:.3}x, target <= {target}x)", ratio - target)
        };
        Self { name, ratio: Some(ratio), target, verdict, per_run: None }
    }

    /// Compares the ratio of the medians of `numerator` and `denominator` with `target`, and
    /// keeps the spread of the per-run ratios (runs paired by index; a run whose denominator
    /// is not positive is left out), shown as `runs min..max` after the ratio in the verdict
    /// when there are several runs.
    pub fn of_runs(name: impl Into<String>, numerator: &Spread, denominator: &Spread, target: f64) -> Self {
        let mut check = Self::new(name, numerator.median, denominator.median, target);
        let ratios: Vec<f64> = numerator
            .runs
            .iter()
            .zip(&denominator.runs)
            .filter(|&(n, d)| *d > 0.0 && d.is_finite() && n.is_finite())
            .map(|(n, d)| n / d)
            .collect();
        check.per_run = Spread::of(&ratios);
        if let (Some(spread), Some(_)) = (&check.per_run, check.ratio)
            && spread.runs.len() > 1
        {
            let runs = format!(", runs {:.3}..{:.3}x", spread.min, spread.max);
            if let Some(at) = check.verdict.find(", target") {
                check.verdict.insert_str(at, &runs);
            }
        }
        check
    }

    /// Whether the target was met.
    pub fn met(&self) -> bool {
        self.ratio.is_some_and(|ratio| ratio <= self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let odd = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        assert_eq!(odd.runs, vec![3.0, 1.0, 2.0]);
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 10.0]).unwrap().median, 3.0);
        assert!(Spread::of(&[]).is_none());
        assert_eq!(odd.describe(" ns"), "2 ns (1..3)");
        assert_eq!(Spread::of(&[0.25]).unwrap().describe(" s"), "0.250 s");
    }

    #[test]
    fn ratios_against_targets() {
        let met = RatioCheck::new("a / b", 105.0, 100.0, 1.10);
        assert!(met.met());
        assert!(met.verdict.starts_with("met (1.050x"), "{}", met.verdict);
        let missed = RatioCheck::new("a / b", 150.0, 100.0, 1.2);
        assert!(!missed.met());
        assert!(missed.verdict.starts_with("MISSED by 0.300 (1.500x"), "{}", missed.verdict);
        let runs = RatioCheck::of_runs(
            "a / b",
            &Spread::of(&[110.0, 100.0, 120.0]).unwrap(),
            &Spread::of(&[100.0, 100.0, 100.0]).unwrap(),
            1.05,
        );
        assert_eq!(runs.ratio, Some(1.1));
        assert!(!runs.met());
        assert_eq!(runs.verdict, "MISSED by 0.050 (1.100x, runs 1.000..1.200x, target <= 1.05x)");
        let spread = runs.per_run.as_ref().unwrap();
        assert_eq!((spread.median, spread.runs.len()), (1.1, 3));
        let one = RatioCheck::of_runs("a / b", &Spread::of(&[99.0]).unwrap(), &Spread::of(&[100.0]).unwrap(), 1.05);
        assert!(one.verdict.starts_with("met (0.990x"), "one run shows no spread: {}", one.verdict);
        let undefined = RatioCheck::new("a / b", 5.0, 0.0, 1.2);
        assert!(!undefined.met());
        assert_eq!(undefined.ratio, None);
        assert!(undefined.verdict.starts_with("undefined"));
    }
}
