//! Figures as the tables print them: every run kept, min / median / max, ratios taken
//! within one run.

use serde_json::{json, Value};

#[derive(Clone, Debug, Default)]
pub struct Figure {
    pub runs: Vec<f64>,
}

impl Figure {
    pub fn of(runs: Vec<f64>) -> Self {
        Self { runs }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// A figure back from its JSON form (the runs; the summary is recomputed).
    pub fn from_json(v: &Value) -> Self {
        Self::of(
            v["runs"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default(),
        )
    }

    pub fn json(&self) -> Value {
        json!({ "runs": self.runs, "min": self.min(), "median": self.median(), "max": self.max() })
    }

    /// "median (min-max)" with `digits` decimals.
    pub fn cell(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}-{:.d$})",
            self.median(),
            self.min(),
            self.max(),
            d = digits
        )
    }
}

/// Per-run ratios of two figures measured in the same runs.
pub fn ratio(a: &Figure, b: &Figure) -> Figure {
    Figure::of(a.runs.iter().zip(&b.runs).map(|(x, y)| x / y).collect())
}
