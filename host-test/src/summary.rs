//! The end-of-run report on stderr.
//!
//! Everything but the record count and distinct sources comes from the
//! component's own counters (`stats`), so the summary and the component can
//! never disagree about hits, misses or requests.

use std::fmt;
use std::time::Duration;

use crate::runtime::Stats;

/// What one run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Lines read (and written).
    pub records: u64,
    /// Distinct source addresses among them.
    pub distinct_sources: usize,
    /// The component's counters at the end.
    pub stats: Stats,
    /// Wall time from the first read to the last write.
    pub elapsed: Duration,
}

impl Summary {
    /// Records per second, over at least a millisecond so that a tiny input
    /// does not report an absurd rate.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.max(Duration::from_millis(1)).as_secs_f64()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(f, "records:          {}", self.records)?;
        writeln!(f, "hits:             {}", s.hits)?;
        writeln!(f, "misses:           {}", s.misses)?;
        writeln!(f, "failures:         {}", s.failures)?;
        writeln!(f, "skipped:          {}", s.skipped)?;
        writeln!(f, "distinct sources: {}", self.distinct_sources)?;
        writeln!(f, "MISP requests:    {} ({} failed)", s.misp_requests, s.failed_requests)?;
        writeln!(f, "cache hit ratio:  {:.1}%", s.cache_hit_ratio() * 100.0)?;
        if s.stale_answers > 0 || s.breaker_trips > 0 {
            writeln!(f, "stale answers:    {}", s.stale_answers)?;
            writeln!(f, "breaker:          {} ({} trips)", s.breaker, s.breaker_trips)?;
        }
        write!(f, "records/s:        {:.0}", self.rate())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_every_counter() {
        let summary = Summary {
            records: 1000,
            distinct_sources: 12,
            stats: Stats {
                records_seen: 1000,
                hits: 600,
                misses: 300,
                failures: 50,
                skipped: 50,
                cache_hits: 930,
                misp_requests: 4,
                failed_requests: 1,
                ..Stats::default()
            },
            elapsed: Duration::from_millis(500),
        };
        assert_eq!(
            summary.to_string(),
            "records:          1000\n\
             hits:             600\n\
             misses:           300\n\
             failures:         50\n\
             skipped:          50\n\
             distinct sources: 12\n\
             MISP requests:    4 (1 failed)\n\
             cache hit ratio:  97.9%\n\
             records/s:        2000"
        );
    }
}
