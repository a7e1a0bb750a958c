//! What a scenario measured: per operation, an HDR histogram of latencies, a count, errors and
//! the wall time; printed as a table or as JSON, with the baseline's figures and the ratios.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies of one kind of request, in microseconds (1 µs to 10 min, 3 significant digits).
#[derive(Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
    errors: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("valid histogram bounds"),
            errors: 0,
        }
    }
}

impl Latencies {
    pub fn record(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 600_000_000);
        self.histogram
            .record(micros)
            .expect("clamped into the histogram's bounds");
    }

    pub fn error(&mut self) {
        self.errors += 1;
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms of the same bounds");
        self.errors += other.errors;
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    fn ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    /// The figures of these latencies over `wall` seconds of load.
    pub fn figures(&self, wall: Duration) -> Figures {
        let secs = wall.as_secs_f64().max(1e-9);
        Figures {
            count: self.count(),
            errors: self.errors,
            per_sec: self.count() as f64 / secs,
            p50_ms: self.ms(0.50),
            p95_ms: self.ms(0.95),
            p99_ms: self.ms(0.99),
            max_ms: self.histogram.max() as f64 / 1000.0,
        }
    }
}

/// Recorded latencies per operation name.
#[derive(Clone, Default)]
pub struct Recorder {
    pub ops: BTreeMap<String, Latencies>,
}

impl Recorder {
    pub fn record(&mut self, op: &str, took: Duration, ok: bool) {
        let l = self.ops.entry(op.to_owned()).or_default();
        if ok {
            l.record(took);
        } else {
            l.error();
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (op, l) in &other.ops {
            self.ops.entry(op.clone()).or_default().merge(l);
        }
    }

    /// Every operation together.
    pub fn all(&self) -> Latencies {
        let mut all = Latencies::default();
        for l in self.ops.values() {
            all.merge(l);
        }
        all
    }

    pub fn errors(&self) -> u64 {
        self.ops.values().map(|l| l.errors).sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub count: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A figure of the scenario beside the same figure of its baseline, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub what: String,
    pub value: f64,
    pub unit: String,
    pub baseline: String,
    pub baseline_value: f64,
    /// `value / baseline_value`.
    pub ratio: f64,
}

impl Compared {
    pub fn new(
        what: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
        baseline: impl Into<String>,
        baseline_value: f64,
    ) -> Self {
        Self {
            what: what.into(),
            value,
            unit: unit.into(),
            baseline: baseline.into(),
            baseline_value,
            ratio: if baseline_value > 0.0 {
                value / baseline_value
            } else {
                f64::NAN
            },
        }
    }
}

/// One scenario's whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub connections: usize,
    pub wall_secs: f64,
    /// Per operation, plus `all`.
    pub operations: BTreeMap<String, Figures>,
    /// Scenario-specific facts (e.g. the pseudonym check, the data set's size).
    pub notes: BTreeMap<String, serde_json::Value>,
    pub compared: Vec<Compared>,
}

impl Report {
    pub fn new(scenario: &str, connections: usize, wall: Duration, recorder: &Recorder) -> Self {
        let mut operations: BTreeMap<String, Figures> = recorder
            .ops
            .iter()
            .map(|(op, l)| (op.clone(), l.figures(wall)))
            .collect();
        operations.insert("all".into(), recorder.all().figures(wall));
        Self {
            scenario: scenario.to_owned(),
            connections,
            wall_secs: wall.as_secs_f64(),
            operations,
            notes: BTreeMap::new(),
            compared: Vec::new(),
        }
    }

    pub fn note(&mut self, key: &str, value: impl Serialize) {
        self.notes.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
    }

    /// The table a person reads.
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {}: {} connections, {:.1} s\n{:<22} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9}\n",
            self.scenario,
            self.connections,
            self.wall_secs,
            "operation",
            "count",
            "errors",
            "per s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms"
        );
        let mut rows: Vec<(&String, &Figures)> = self
            .operations
            .iter()
            .filter(|(k, _)| *k != "all")
            .collect();
        if let Some(all) = self.operations.get_key_value("all") {
            rows.push(all);
        }
        for (op, f) in rows {
            out.push_str(&format!(
                "{:<28} {:>8} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                op, f.count, f.errors, f.per_sec, f.p50_ms, f.p95_ms, f.p99_ms, f.max_ms
            ));
        }
        for (k, v) in &self.notes {
            out.push_str(&format!("{k}: {v}\n"));
        }
        if !self.compared.is_empty() {
            out.push_str(&format!(
                "{:<28} {:>12} {:<6} {:<34} {:>12} {:>8}\n",
                "figure", "value", "unit", "baseline (same run)", "baseline", "ratio"
            ));
            for c in &self.compared {
                out.push_str(&format!(
                    "{:<28} {:>12.2} {:<6} {:<34} {:>12.2} {:>8.3}\n",
                    c.what, c.value, c.unit, c.baseline, c.baseline_value, c.ratio
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_rates_and_ratios_come_from_what_was_recorded() {
        let mut r = Recorder::default();
        for ms in 1..=100u64 {
            r.record("get", Duration::from_millis(ms), true);
        }
        r.record("get", Duration::from_millis(5), false);
        r.record("post", Duration::from_millis(200), true);
        let report = Report::new("t", 4, Duration::from_secs(2), &r);
        let get = &report.operations["get"];
        assert_eq!((get.count, get.errors), (100, 1));
        assert!((get.per_sec - 50.0).abs() < 1e-9);
        assert!((get.p50_ms - 50.0).abs() < 0.1, "{}", get.p50_ms);
        assert!((get.p99_ms - 99.0).abs() < 0.1, "{}", get.p99_ms);
        let all = &report.operations["all"];
        assert_eq!((all.count, all.errors), (101, 1));
        assert!((all.max_ms - 200.0).abs() < 0.2, "{}", all.max_ms);
        let c = Compared::new("x", 50.0, "req/s", "y", 200.0);
        assert!((c.ratio - 0.25).abs() < 1e-12);
        assert!(report.table().contains("get"));
    }
}
