//! Latency samples and their percentiles. Pure: the integration tests
//! include this file too and run its unit tests (see `tests/it/main.rs`).
use std::time::Duration;

use serde::Serialize;

/// A percentile summary of latency samples, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Self::of_sorted_ms(&ms)
    }

    fn of_sorted_ms(ms: &[f64]) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        Self {
            count: ms.len(),
            p50_ms: percentile(ms, 50.0),
            p95_ms: percentile(ms, 95.0),
            p99_ms: percentile(ms, 99.0),
            max_ms: ms[ms.len() - 1],
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }

    pub fn brief(&self) -> String {
        format!(
            "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorted samples in milliseconds (for the chart).
pub fn sorted_ms(samples: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// What a closed or open loop produced: per-operation latencies, failures
/// and how long it ran.
#[derive(Debug, Clone, Default)]
pub struct LoopResult {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl LoopResult {
    pub fn ok(&self) -> usize {
        self.latencies.len()
    }

    /// Successful operations per second of wall time.
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            self.ok() as f64 / secs
        }
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.latencies)
    }

    /// One progress line: rate, latency and errors.
    pub fn brief(&self) -> String {
        let errors = match &self.first_error {
            Some(e) => format!(", {} errors (first: {e})", self.errors),
            None => String::new(),
        };
        format!("{:.0}/s, {}{errors}", self.per_second(), self.summary().brief())
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "errors": self.errors,
            "first_error": self.first_error,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "per_second": self.per_second(),
            "latency": self.summary(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 50.0), 50.0);
        assert_eq!(super::percentile(&v, 99.0), 99.0);
        assert_eq!(super::percentile(&v, 100.0), 100.0);
        assert_eq!(super::percentile(&v, 0.0), 1.0, "the lowest rank is the first sample");
        assert_eq!(super::percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn a_summary_sorts_its_samples() {
        let samples: Vec<std::time::Duration> =
            [30, 10, 20].into_iter().map(std::time::Duration::from_millis).collect();
        let s = super::Summary::of(&samples);
        assert_eq!((s.count, s.p50_ms, s.max_ms, s.mean_ms), (3, 20.0, 30.0, 20.0));
    }
}
