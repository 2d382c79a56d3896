//! The in-flight window: how many requests may be on the wire at once.
//!
//! It is the bound on what a crash can leave in doubt (every request on the wire
//! may or may not have reached the provider), so it is kept as small as the rate
//! allows. By Little's law a rate `r` with answers taking `L` needs `r × L` requests
//! in flight: the window follows the latency observed on answers, with headroom,
//! up to a cap. It never grows because the provider is failing: timeouts and 5xx
//! answers halve it, and it grows again only after a calm spell.

use std::time::{Duration, Instant};

/// Headroom over Little's law, for latency that varies from one answer to the next.
const HEADROOM: f64 = 1.5;
/// The latency assumed before the first answer: the slow end of what the Cloud API
/// usually takes, so a run against a slow provider does not stall with its window
/// full before the first answers come back. The first answer replaces it.
const INITIAL_LATENCY: Duration = Duration::from_millis(300);
/// How long after trouble (a timeout, a 5xx) before the window may grow again.
const CALM_AFTER_TROUBLE: Duration = Duration::from_secs(5);
/// The smallest window: the automatic window never goes below this.
const MIN_WINDOW: usize = 4;

/// How the window is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// From the rate and the latency observed, up to a cap.
    Auto { cap: usize },
    /// A fixed size the operator chose (`sending.concurrency`, `--concurrency`).
    Fixed(usize),
}

impl Sizing {
    /// The sizing a campaign's settings ask for.
    pub fn of(sending: &crate::campaign::Sending) -> Sizing {
        match sending.concurrency {
            Some(n) => Sizing::Fixed(n),
            None => Sizing::Auto {
                cap: sending.in_flight_cap(),
            },
        }
    }

    /// The most that can be in flight, so the most a crash can leave in doubt.
    pub fn bound(self) -> usize {
        match self {
            Sizing::Auto { cap } => cap,
            Sizing::Fixed(n) => n,
        }
    }
}

#[derive(Debug)]
pub struct Window {
    sizing: Sizing,
    current: usize,
    /// Smoothed answer latency, seconds.
    latency: f64,
    /// Whether `latency` is still the guess made before any answer.
    guessed: bool,
    last_trouble: Option<Instant>,
}

impl Window {
    pub fn new(sizing: Sizing, rate: Option<u32>) -> Window {
        let mut window = Window {
            sizing,
            current: sizing.bound(),
            latency: INITIAL_LATENCY.as_secs_f64(),
            guessed: true,
            last_trouble: None,
        };
        window.current = window.target(rate.map(f64::from));
        window
    }

    /// Requests allowed on the wire now.
    pub fn size(&self) -> usize {
        self.current
    }

    /// An answer came back after `latency`.
    pub fn answered(&mut self, latency: Duration, rate: Option<f64>, now: Instant) {
        self.latency = if self.guessed {
            latency.as_secs_f64()
        } else {
            0.9 * self.latency + 0.1 * latency.as_secs_f64()
        };
        self.guessed = false;
        let calm = self
            .last_trouble
            .is_none_or(|t| now.duration_since(t) > CALM_AFTER_TROUBLE);
        let target = self.target(rate);
        if calm || target < self.current {
            self.current = target;
        }
    }

    /// No answer has come yet, `waited` after the first request: the latency is at
    /// least that, so a window still sized on the guess grows to it (up to the cap)
    /// instead of stalling the run until the first answers arrive.
    pub fn unanswered_for(&mut self, waited: Duration, rate: Option<f64>) {
        if self.guessed && waited.as_secs_f64() > self.latency {
            self.latency = waited.as_secs_f64();
            self.current = self.current.max(self.target(rate));
        }
    }

    /// A timeout or a 5xx: the provider is struggling, so fewer on the wire.
    pub fn trouble(&mut self, now: Instant) {
        if let Sizing::Auto { .. } = self.sizing {
            self.current = (self.current / 2).max(MIN_WINDOW);
        }
        self.last_trouble = Some(now);
    }

    fn target(&self, rate: Option<f64>) -> usize {
        match self.sizing {
            Sizing::Fixed(n) => n,
            Sizing::Auto { cap } => {
                let Some(rate) = rate.filter(|r| *r > 0.0) else {
                    return cap;
                };
                // Rows are claimed a batch at a time, and a late claim catches up on
                // the tickets it missed: room for that on top of what the answers'
                // latency keeps on the wire.
                let batch = super::rate::batch_size(rate);
                let need = (rate * self.latency * HEADROOM).ceil() as usize
                    + batch
                    + super::rate::catch_up(rate);
                need.clamp(MIN_WINDOW.max(batch), cap)
            }
        }
    }

    /// Whether this window keeps the rate from being reached at the latency seen:
    /// what the plan summary and the progress line warn about.
    pub fn limits(&self, rate: f64) -> bool {
        rate > 0.0 && (self.current as f64) < rate * self.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(rate: u32) -> Sizing {
        Sizing::of(&crate::campaign::Sending {
            rate_per_second: rate,
            concurrency: None,
            us_marketing: false,
            messaging_limit: None,
            messaging_limit_other: 0,
        })
    }

    #[test]
    fn the_window_follows_littles_law_up_to_its_cap() {
        let now = Instant::now();
        let mut w = Window::new(auto(1000), Some(1000));
        for _ in 0..200 {
            w.answered(Duration::from_millis(300), Some(1000.0), now);
        }
        // 1,000/s × 0.3 s × 1.5, a batch of 20 and ten to catch up.
        assert!((670..=675).contains(&w.size()), "{}", w.size());
        for _ in 0..200 {
            w.answered(Duration::from_secs(5), Some(1000.0), now);
        }
        assert_eq!(w.size(), 1250, "capped");
        assert!(
            w.limits(1000.0),
            "5 s answers at 1,000/s need 5,000 in flight"
        );
    }

    #[test]
    fn trouble_shrinks_it_and_slowness_alone_does_not_regrow_it_at_once() {
        let start = Instant::now();
        let mut w = Window::new(auto(1000), Some(1000));
        for _ in 0..100 {
            w.answered(Duration::from_millis(100), Some(1000.0), start);
        }
        let before = w.size();
        w.trouble(start);
        assert_eq!(w.size(), before / 2);
        w.answered(
            Duration::from_millis(900),
            Some(1000.0),
            start + Duration::from_secs(1),
        );
        assert_eq!(w.size(), before / 2, "no growth right after trouble");
        w.answered(
            Duration::from_millis(100),
            Some(1000.0),
            start + Duration::from_secs(6),
        );
        assert!(w.size() > before / 2, "grows again after a calm spell");
    }

    #[test]
    fn before_any_answer_the_time_waited_is_a_floor_on_the_latency() {
        let now = Instant::now();
        let mut w = Window::new(auto(1000), Some(1000));
        let guessed = w.size();
        w.unanswered_for(Duration::from_millis(200), Some(1000.0));
        assert_eq!(w.size(), guessed, "within the guess");
        w.unanswered_for(Duration::from_millis(700), Some(1000.0));
        assert!(w.size() > guessed, "{} > {guessed}", w.size());
        w.unanswered_for(Duration::from_secs(5), Some(1000.0));
        assert_eq!(w.size(), 1250, "capped");
        // Once answers come, they decide.
        w.answered(Duration::from_millis(100), Some(1000.0), now);
        let answered = w.size();
        w.unanswered_for(Duration::from_secs(3), Some(1000.0));
        assert_eq!(w.size(), answered);
    }

    #[test]
    fn a_fixed_window_is_what_the_operator_chose() {
        let mut w = Window::new(Sizing::Fixed(32), Some(1000));
        w.answered(Duration::from_millis(100), Some(1000.0), Instant::now());
        w.trouble(Instant::now());
        assert_eq!(w.size(), 32);
        assert!(w.limits(1000.0), "32 in flight at 100 ms is 320/s");
        let fixed = crate::campaign::Sending {
            rate_per_second: 1000,
            concurrency: Some(32),
            us_marketing: false,
            messaging_limit: None,
            messaging_limit_other: 0,
        };
        assert_eq!(fixed.rate_holds_below(), Duration::from_millis(32));
    }
}
