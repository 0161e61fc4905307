//! How long claims take, for `orch worker`'s exit line and `orch bench --workers`.

use std::time::Duration;

/// Samples kept for percentiles; later claims are counted but not sampled, so memory stays
/// bounded however long a worker runs.
const MAX_SAMPLES: usize = 100_000;

/// Durations of `claim_next_run` calls that returned a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimStats {
    pub claims: u64,
    micros: Vec<u64>,
}

impl ClaimStats {
    pub fn record(&mut self, took: Duration) {
        self.claims += 1;
        if self.micros.len() < MAX_SAMPLES {
            self.micros
                .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
    }

    /// The `p`-th percentile (0–100, nearest rank) of the sampled claims; `None` without any.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.micros.is_empty() {
            return None;
        }
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * sorted.len() as f64).ceil() as usize;
        let index = rank.saturating_sub(1).min(sorted.len() - 1);
        Some(Duration::from_micros(sorted[index]))
    }

    /// `412 claims, p50 1.2 ms, p99 8.4 ms`.
    pub fn describe(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_owned(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            })
        };
        format!(
            "{} claims, p50 {}, p99 {}",
            self.claims,
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s = ClaimStats::default();
        assert_eq!(s.percentile(50.0), None);
        assert_eq!(s.describe(), "0 claims, p50 -, p99 -");
        for ms in 1..=100 {
            s.record(Duration::from_millis(ms));
        }
        assert_eq!(s.percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(s.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(s.percentile(100.0), Some(Duration::from_millis(100)));
        assert_eq!(s.describe(), "100 claims, p50 50.0 ms, p99 99.0 ms");
    }
}
