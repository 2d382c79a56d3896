//! Pacing: one shared `governor` limiter hands out send tickets, one at a time, at
//! the campaign's rate; throttling halves the rate and pauses for `Retry-After`, then
//! the rate recovers gradually, never above what was configured.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Requests are spaced this much wider than the rate asks, so that network jitter
/// never puts more than `rate` requests into any one-second window at the server.
const SPACING_MARGIN: f64 = 1.003;
/// Throttling within this long after the last is the same episode: halve only once.
const THROTTLE_EPISODE: Duration = Duration::from_secs(1);
/// How long without throttling before the rate starts to recover.
const CALM_BEFORE_RECOVERY: Duration = Duration::from_secs(5);
/// The longest pause a `Retry-After` may impose.
const MAX_PAUSE: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct State {
    configured: f64,
    current: f64,
    paused_until: Option<Instant>,
    last_throttle: Option<Instant>,
    last_change: Instant,
    generation: u64,
}

/// Hands out send tickets at the campaign's (adaptive) rate. Cheap to clone.
#[derive(Clone)]
pub struct Pacer {
    waiters: Option<mpsc::UnboundedSender<oneshot::Sender<()>>>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").finish_non_exhaustive()
    }
}

impl Pacer {
    /// Starts the pacer task; `None` sends as fast as the provider answers.
    pub fn start(rate: Option<u32>) -> Pacer {
        let state = Arc::new(Mutex::new(State::new(
            f64::from(rate.unwrap_or(0)),
            Instant::now(),
        )));
        if rate.is_none() {
            return Pacer {
                waiters: None,
                state,
            };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(pace(rx, Arc::clone(&state)));
        Pacer {
            waiters: Some(tx),
            state,
        }
    }

    /// Waits for this request's turn.
    pub async fn ticket(&self) {
        let Some(waiters) = &self.waiters else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if waiters.send(tx).is_ok() {
            let _ = rx.await;
        }
    }

    /// The provider said to slow down.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        if let Ok(mut s) = self.state.lock() {
            s.throttle(Instant::now(), retry_after);
        }
    }

    /// The rate in force now (messages per second); 0 when unlimited.
    pub fn current_rate(&self) -> f64 {
        self.state.lock().map_or(0.0, |s| s.current)
    }
}

impl State {
    fn new(configured: f64, now: Instant) -> State {
        State {
            configured,
            current: configured,
            paused_until: None,
            last_throttle: None,
            last_change: now,
            generation: 0,
        }
    }

    /// Halves the rate (once per episode) and pauses for `retry_after`.
    fn throttle(&mut self, now: Instant, retry_after: Option<Duration>) {
        let pause = retry_after.unwrap_or(Duration::from_secs(1)).min(MAX_PAUSE);
        self.paused_until = Some(
            self.paused_until
                .map_or(now + pause, |p| p.max(now + pause)),
        );
        let new_episode = self
            .last_throttle
            .is_none_or(|t| now.duration_since(t) > THROTTLE_EPISODE);
        self.last_throttle = Some(now);
        if new_episode && self.configured > 0.0 {
            self.current = (self.current / 2.0).max(1.0);
            self.last_change = now;
            self.generation += 1;
        }
    }

    /// After a calm spell, raises the rate a step, never above what was configured.
    fn recover(&mut self, now: Instant) {
        let calm = self
            .last_throttle
            .is_none_or(|t| now.duration_since(t) > CALM_BEFORE_RECOVERY);
        if calm
            && self.current < self.configured
            && now.duration_since(self.last_change) > Duration::from_secs(1)
        {
            self.current = (self.current * 1.25 + 1.0).min(self.configured);
            self.last_change = now;
            self.generation += 1;
        }
    }
}

fn limiter(rate: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(SPACING_MARGIN / rate.max(0.01));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        // A burst of one: requests are evenly spaced, never bunched, so no one-second
        // window ever holds more than the rate.
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

async fn pace(mut waiters: mpsc::UnboundedReceiver<oneshot::Sender<()>>, state: Arc<Mutex<State>>) {
    let (mut current_limiter, mut generation) = {
        let s = state
            .lock()
            .map(|s| (s.current, s.generation))
            .unwrap_or((1.0, 0));
        (limiter(s.0), s.1)
    };
    while let Some(waiter) = waiters.recv().await {
        loop {
            let pause = state.lock().ok().and_then(|s| s.paused_until);
            match pause {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        if let Ok(mut s) = state.lock() {
            s.recover(Instant::now());
            if s.generation != generation {
                generation = s.generation;
                current_limiter = limiter(s.current);
            }
        }
        current_limiter.until_ready().await;
        let _ = waiter.send(());
    }
}

/// Capped exponential backoff with full jitter: a random wait up to
/// `min(cap, base * 2^attempt)`, so retries from many recipients spread out.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let base = Duration::from_millis(500);
    let cap = Duration::from_secs(60);
    let ceiling = base
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(cap);
    let jittered = ceiling
        .mul_f64(fastrand::f64())
        .max(Duration::from_millis(100));
    retry_after.map_or(jittered, |r| r.max(jittered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_but_stays_capped() {
        for attempt in 0..40 {
            let d = backoff(attempt, None);
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_secs(60),
                "{d:?}"
            );
        }
        assert!(backoff(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }

    #[test]
    fn throttling_halves_then_recovers_without_exceeding_the_configured_rate() {
        let start = Instant::now();
        let mut s = State::new(100.0, start);
        s.throttle(start, None);
        s.throttle(
            start + Duration::from_millis(300),
            Some(Duration::from_secs(7)),
        );
        assert!(
            (s.current - 50.0).abs() < f64::EPSILON,
            "one episode halves once"
        );
        assert_eq!(
            s.paused_until,
            Some(start + Duration::from_millis(7300)),
            "Retry-After is honoured"
        );
        s.recover(start + Duration::from_secs(3));
        assert!(
            (s.current - 50.0).abs() < f64::EPSILON,
            "no recovery while it is not calm"
        );
        for second in 6..60 {
            s.recover(start + Duration::from_secs(second));
            assert!(s.current <= 100.0);
        }
        assert!(
            (s.current - 100.0).abs() < f64::EPSILON,
            "recovered to {}",
            s.current
        );
    }
}
