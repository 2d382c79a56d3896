//! The circuit breaker: halt a campaign whose recent sends mostly fail, before the
//! number's quality rating pays for it.

use std::collections::VecDeque;

/// Halts when more than `threshold` of the last `window` outcomes were hard failures,
/// once at least `min_seen` outcomes were seen.
#[derive(Debug, Clone)]
pub struct Breaker {
    recent: VecDeque<bool>,
    failures: usize,
    window: usize,
    min_seen: usize,
    threshold: f64,
}

impl Default for Breaker {
    /// 5% of the last 200 outcomes, with at least 50 seen.
    fn default() -> Self {
        Breaker::new(200, 50, 0.05)
    }
}

impl Breaker {
    pub fn new(window: usize, min_seen: usize, threshold: f64) -> Self {
        Breaker {
            recent: VecDeque::with_capacity(window),
            failures: 0,
            window,
            min_seen,
            threshold,
        }
    }

    /// Records an outcome; `Some(reason)` when the breaker trips.
    pub fn record(&mut self, hard_failure: bool) -> Option<String> {
        if self.recent.len() == self.window && self.recent.pop_front() == Some(true) {
            self.failures -= 1;
        }
        self.recent.push_back(hard_failure);
        self.failures += usize::from(hard_failure);
        let seen = self.recent.len();
        (seen >= self.min_seen && self.failures as f64 > self.threshold * seen as f64).then(|| {
            format!(
                "circuit breaker: {} hard failures in the last {seen} outcomes (threshold {:.0}%)",
                self.failures,
                self.threshold * 100.0
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate_every: usize, n: usize) -> Option<String> {
        let mut b = Breaker::default();
        (0..n).find_map(|i| b.record(i % rate_every == 0))
    }

    #[test]
    fn ten_percent_trips_two_percent_does_not() {
        assert!(run(10, 1000).is_some());
        assert!(run(50, 5000).is_none());
    }

    #[test]
    fn nothing_trips_before_enough_is_seen() {
        let mut b = Breaker::default();
        for _ in 0..49 {
            assert!(b.record(true).is_none());
        }
        assert!(b.record(true).is_some());
    }
}
