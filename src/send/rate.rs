//! Pacing: one pacer thread hands out send tickets, one at a time, on a fixed
//! timeline at the campaign's rate; throttling halves the rate and pauses for
//! `Retry-After`, then the rate recovers gradually, never above what was configured.
//!
//! The timeline is a shared `governor` limiter (GCRA) with a small burst: a ticket
//! handed out a little late (the timer fired late, the thread was busy) may be made up
//! by the next, so lateness does not pile up and cost throughput, as it does with a
//! burst of one (at 1,000/s a tenth of a millisecond lost per ticket cost 9% of the
//! rate). The burst's tickets may then go back to back, so the period is chosen for
//! any `rate + 1` tickets to span a second plus a jitter allowance:
//! `(1 s + allowance) / (rate - (burst - 1))`.
//! The limiter is consulted from a thread of its own with `check`, sleeping exactly
//! as long as governor says, because a tokio timer fires only on millisecond ticks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Any `rate + 1` tickets in a row span at least one second plus the jitter
/// allowance, so jitter up to that long between a ticket and its request reaching
/// the server never puts more than `rate` requests into any one-second window
/// there. The allowance is this, or half the time between requests when that is
/// longer: on a busy 2-core machine requests were seen up to 4 ms late, and where
/// requests are far apart a wider allowance costs little (1% at 50/s).
const MIN_JITTER_ALLOWANCE: Duration = Duration::from_millis(4);
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
    waiters: Option<std::sync::mpsc::Sender<oneshot::Sender<()>>>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").finish_non_exhaustive()
    }
}

impl Pacer {
    /// Starts the pacer; `None` sends as fast as the provider answers.
    ///
    /// The pacer is a thread of its own, not a task: a task's timer fires only on
    /// the runtime's millisecond ticks, and late whenever the workers are busy with
    /// the requests, and every late ticket beyond the allowance costs throughput.
    pub fn start(rate: Option<u32>) -> std::io::Result<Pacer> {
        let state = Arc::new(Mutex::new(State::new(
            f64::from(rate.unwrap_or(0)),
            Instant::now(),
        )));
        if rate.is_none() {
            return Ok(Pacer {
                waiters: None,
                state,
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let paced = Arc::clone(&state);
        std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || pace(&rx, &paced))?;
        Ok(Pacer {
            waiters: Some(tx),
            state,
        })
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

/// The jitter allowance at `rate` per second; see [`MIN_JITTER_ALLOWANCE`].
fn jitter_allowance(rate: f64) -> Duration {
    MIN_JITTER_ALLOWANCE.max(Duration::from_secs(1).div_f64(rate.max(0.01) * 2.0))
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// How late a ticket may be handed out without delaying the tickets after it.
const LATENESS_ALLOWANCE: Duration = Duration::from_millis(2);

/// The quota for `rate` per second. Its burst lets a ticket that was handed out up
/// to [`LATENESS_ALLOWANCE`] late be made up by the next ones (two at most rates,
/// three at 1,000/s); its period makes any `rate + 1` tickets, even with the burst
/// spent at once, span a second plus the jitter allowance.
fn quota(rate: f64) -> (Quota, Duration) {
    let span = Duration::from_secs(1) + jitter_allowance(rate);
    let extra = if rate >= 2.0 {
        (LATENESS_ALLOWANCE.as_secs_f64() * rate)
            .ceil()
            .clamp(1.0, rate - 1.0)
    } else {
        0.0
    };
    let period = span.div_f64((rate - extra).max(0.01));
    let burst = NonZeroU32::new(1 + extra as u32).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    (quota, period)
}

/// Takes the next ticket from `limiter` if it is due; otherwise how long to wait.
fn take<C: Clock>(limiter: &Limiter<C>, clock: &C) -> Option<Duration> {
    match limiter.check() {
        Ok(()) => None,
        Err(not_until) => Some(not_until.wait_time_from(clock.now())),
    }
}

/// The pacer thread: hands out one ticket per waiter, in turn, until every [`Pacer`]
/// is gone.
fn pace(waiters: &std::sync::mpsc::Receiver<oneshot::Sender<()>>, state: &Arc<Mutex<State>>) {
    let clock = DefaultClock::default();
    let (rate, mut generation) = state
        .lock()
        .map(|s| (s.current, s.generation))
        .unwrap_or((1.0, 0));
    let (q, _) = quota(rate);
    let mut limiter: Limiter<DefaultClock> = RateLimiter::direct_with_clock(q, clock.clone());
    let mut last_release: Option<Instant> = None;
    while let Ok(waiter) = waiters.recv() {
        loop {
            let pause = state.lock().ok().and_then(|s| s.paused_until);
            match pause {
                Some(until) if until > Instant::now() => {
                    // In steps, so a run that ends during a long pause frees the thread.
                    let step = (until - Instant::now()).min(Duration::from_millis(100));
                    std::thread::sleep(step);
                    if Arc::strong_count(state) == 1 {
                        return;
                    }
                }
                _ => break,
            }
        }
        if let Ok(mut s) = state.lock() {
            s.recover(Instant::now());
            if s.generation != generation {
                generation = s.generation;
                let (q, period) = quota(s.current);
                limiter = RateLimiter::direct_with_clock(q, clock.clone());
                // A new limiter starts with its burst free: keep one period after the
                // last ticket, so a rate change never puts two back to back.
                if let Some(last) = last_release {
                    let hold = (last + period).saturating_duration_since(Instant::now());
                    std::thread::sleep(hold);
                }
            }
        }
        // A task that stopped waiting (the run is stopping) takes no turn.
        if waiter.is_closed() {
            continue;
        }
        while let Some(wait) = take(&limiter, &clock) {
            std::thread::sleep(wait);
        }
        last_release = Some(Instant::now());
        let _ = waiter.send(());
    }
}

/// Capped exponential backoff with full jitter: a random wait up to
/// `min(cap, base * 2^attempt)`, so retries from many recipients spread out. A
/// `Retry-After` is honoured up to the longest pause, as the pacer honours it.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let base = Duration::from_millis(500);
    let cap = Duration::from_secs(60);
    let ceiling = base
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(cap);
    let jittered = ceiling
        .mul_f64(fastrand::f64())
        .max(Duration::from_millis(100));
    retry_after.map_or(jittered, |r| r.min(MAX_PAUSE).max(jittered))
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
        assert_eq!(backoff(1, Some(Duration::from_secs(u64::MAX))), MAX_PAUSE);
    }

    /// Tickets for `rate` per second to a queue that is never empty, as the pacer
    /// hands them out, on governor's fake clock: one after the other, 5 µs apart when
    /// a ticket is already due, else after sleeping as long as governor says and
    /// waking up to `late` after that.
    fn tickets(rate: u32, late: Duration, seconds: u32) -> Vec<Duration> {
        let clock = governor::clock::FakeRelativeClock::default();
        let (q, _) = quota(f64::from(rate));
        let limiter: Limiter<governor::clock::FakeRelativeClock> =
            RateLimiter::direct_with_clock(q, clock.clone());
        let mut rng = fastrand::Rng::with_seed(u64::from(rate));
        let start = clock.now();
        let mut times = Vec::new();
        for _ in 0..rate * seconds {
            while let Some(wait) = take(&limiter, &clock) {
                clock.advance(wait + late.mul_f64(rng.f64()));
            }
            times.push(Duration::from(governor::clock::Reference::duration_since(
                &clock.now(),
                start,
            )));
            clock.advance(Duration::from_micros(5));
        }
        times
    }

    #[test]
    fn no_second_holds_more_than_the_rate_however_late_the_pacer() {
        for rate in [1000u32, 80, 50, 2, 1] {
            for late in [0, 1, 2, 5, 50, 2000] {
                let times = tickets(rate, Duration::from_millis(late), 20);
                let n = rate as usize;
                for (i, w) in times.windows(n + 1).enumerate() {
                    // A microsecond for rounding the period to nanoseconds.
                    assert!(
                        w[n] - w[0] + Duration::from_micros(1)
                            >= Duration::from_secs(1) + jitter_allowance(f64::from(rate)),
                        "rate {rate}, late up to {late} ms: tickets {i}..={} span {:?}",
                        i + n,
                        w[n] - w[0]
                    );
                }
            }
        }
    }

    #[test]
    fn a_little_lateness_costs_no_throughput() {
        for rate in [1000u32, 80, 50] {
            for late in [0, 1, 2] {
                let times = tickets(rate, Duration::from_millis(late), 20);
                let span = (times[times.len() - 1] - times[0]).as_secs_f64();
                let achieved = (times.len() - 1) as f64 / span;
                let on_time = 1.0 / quota(f64::from(rate)).1.as_secs_f64();
                assert!(
                    achieved >= 0.999 * on_time && achieved <= f64::from(rate),
                    "rate {rate}, late up to {late} ms: {achieved:.2}/s, {on_time:.2}/s on time"
                );
            }
        }
    }

    #[test]
    fn the_allowances_cost_at_most_one_percent_at_1000_per_second() {
        let on_time = 1.0 / quota(1000.0).1.as_secs_f64();
        assert!((990.0..1000.0).contains(&on_time), "{on_time:.2}/s");
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
