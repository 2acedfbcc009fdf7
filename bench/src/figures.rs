//! Figures: each measured several times, reported as median, min and max beside its baseline.

use serde::Serialize;

/// One reported figure (the `--json` shape).
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The figure's name in the issue's terms (`ingest`, `query_p99.hour.k100`...).
    pub name: String,
    /// The unit of `median`, `min`, `max` and `baseline`.
    pub unit: &'static str,
    /// The median over the repeats.
    pub median: f64,
    /// The lowest of the repeats.
    pub min: f64,
    /// The highest of the repeats.
    pub max: f64,
    /// The baseline's median on the same workload, when the figure has one.
    pub baseline: Option<f64>,
    /// Above 1 means topk wins: ours over baseline for rates, baseline over ours for times and sizes.
    pub ratio: Option<f64>,
}

/// Whether more is better (rates) or less (latencies, bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// The median of `samples` (0 when empty).
pub fn median(samples: &[f64]) -> f64 {
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    if s.len().is_multiple_of(2) {
        (s[mid - 1] + s[mid]) / 2.0
    } else {
        s[mid]
    }
}

/// The `q` quantile (0..=1) of `samples`, nearest rank.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut s = samples.to_vec();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// Builds a figure from repeated measurements and, optionally, the baseline's.
pub fn figure(
    name: impl Into<String>,
    unit: &'static str,
    better: Better,
    ours: &[f64],
    baseline: Option<&[f64]>,
) -> Figure {
    let med = median(ours);
    let base = baseline.map(median);
    let ratio = base
        .filter(|b| *b > 0.0 && med > 0.0)
        .map(|b| match better {
            Better::Higher => med / b,
            Better::Lower => b / med,
        });
    Figure {
        name: name.into(),
        unit,
        median: med,
        min: ours.iter().copied().fold(f64::INFINITY, f64::min),
        max: ours.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        baseline: base,
        ratio,
    }
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The figures as a Markdown table, for people (and BENCHMARKS.md).
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| figure | unit | median | min | max | baseline | ratio |\n|---|---|---|---|---|---|---|\n");
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            f.name,
            f.unit,
            num(f.median),
            num(f.min),
            num(f.max),
            f.baseline.map_or("".into(), num),
            f.ratio.map_or("".into(), |r| format!("{}x", num(r))),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_quantile_and_ratio_direction() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.99), 99.0);
        assert_eq!(quantile(&xs, 0.5), 50.0);
        let rate = figure("r", "views/s", Better::Higher, &[200.0], Some(&[100.0]));
        assert_eq!(rate.ratio, Some(2.0));
        let latency = figure("l", "ms", Better::Lower, &[2.0], Some(&[100.0]));
        assert_eq!(latency.ratio, Some(50.0));
    }
}
