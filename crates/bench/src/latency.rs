//! Latency samples in an HDR histogram (hdrhistogram), read as percentiles in microseconds.
//!
//! Owns: recording and reading latencies. Must not touch how they are measured.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The largest latency recorded exactly; longer ones are recorded as this (60 s).
const MAX_NS: u64 = 60_000_000_000;

/// Recorded latencies.
#[derive(Debug, Clone)]
pub struct Latencies {
    hist: Option<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    /// None recorded yet.
    pub fn new() -> Latencies {
        // 3 significant figures from 1 ns to 60 s: always valid bounds.
        Latencies {
            hist: Histogram::new_with_bounds(1, MAX_NS, 3).ok(),
        }
    }

    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos())
            .unwrap_or(MAX_NS)
            .clamp(1, MAX_NS);
        if let Some(h) = &mut self.hist {
            h.saturating_record(ns);
        }
    }

    /// Adds another set of samples to these.
    pub fn merge(&mut self, other: &Latencies) {
        if let (Some(a), Some(b)) = (&mut self.hist, &other.hist) {
            let _ = a.add(b);
        }
    }

    /// How many were recorded.
    pub fn len(&self) -> u64 {
        self.hist.as_ref().map_or(0, Histogram::len)
    }

    /// Whether none were recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `q` quantile (0.99 for p99) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut l = Latencies::new();
        for us in 1..=100u64 {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.len(), 100);
        let p99 = l.quantile_us(0.99);
        assert!((98.0..=100.5).contains(&p99), "{p99}");
        let p50 = l.quantile_us(0.5);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
    }
}
