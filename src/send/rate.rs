//! Pacing: tickets for sending, at the campaign's (adaptive) rate, taken in small
//! batches so that a batch's rows are claimed in one transaction and their
//! requests written at once.
//!
//! Two rules together:
//! - a shared `governor` limiter (GCRA) at the current rate: it spreads tickets over
//!   time, so batches stay small and regular;
//! - a log of the requests that left in the last second plus a jitter allowance,
//!   checked at the moment each request would go (when the connection asks for its
//!   body, see `provider::departure`): never more than the rate in it, so no
//!   one-second window at the provider holds more than the rate, however batches,
//!   commits and new connections delay them. GCRA alone would have to lower its rate
//!   by a whole batch to promise that (1.5% at 1,000/s with 10 ms batches).
//!
//! A ticket is taken before its row is claimed, and the claim's commit takes a few
//! milliseconds (its fsync) before the request can go. Tickets may therefore be
//! taken that much ahead of the log's room ([`Inner::lead`]: the median of the time
//! recent claims took from take to departure), so that the commit does not add its
//! own time to every second of the rate; the check at departure keeps the rule. A
//! request that is early waits there with its row in flight (a kill then leaves that
//! row in doubt though it never left), so the lead is a typical commit time, not the
//! slowest.
//!
//! Throttling halves the rate and pauses for `Retry-After`; the rate then recovers
//! gradually, never above what was configured.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Any `rate + 1` departures in a row span at least one second plus this allowance,
/// so jitter up to that long between a request going to the socket and reaching the
/// provider never puts more than `rate` requests into any one-second window there.
/// The allowance is this, or the time between two requests when that is longer:
/// where requests are far apart a wider allowance costs little (2% at 50/s, where
/// loaded test machines saw requests 10 ms late). Departures are counted as the
/// bytes go, after any connection handshake, so what is left to absorb is the
/// network's own jitter.
const MIN_JITTER_ALLOWANCE: Duration = Duration::from_millis(2);
/// The most a ticket is taken ahead of the log's room: a claim's commit rarely takes
/// longer, and a request that waits at departure holds its row in flight unsent.
const MAX_LEAD: Duration = Duration::from_millis(10);
/// Throttling within this long after the last is the same episode: halve only once.
const THROTTLE_EPISODE: Duration = Duration::from_secs(1);
/// How long without throttling before the rate starts to recover.
const CALM_BEFORE_RECOVERY: Duration = Duration::from_secs(5);
/// The longest pause a `Retry-After` may impose.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);
/// How often a batch of requests goes, and at most a claim is made: each claim is
/// one durable commit (an fsync and the pages it writes, a few hundred µs of CPU and
/// 1–2 ms of waiting here), so at 1,000/s twenty rows share one instead of each
/// paying its own, and above 50/s a claim also takes the next interval's rows, which
/// then go without one (`send::dispatch`): forty rows a commit. The batch's requests
/// leave together; the one-second rule does not depend on it, and neither does what
/// a crash leaves in doubt: rows claimed but not yet gone are sent again by the next
/// run, which the departure log tells apart (`departure_log`). A 50 ms interval cut
/// the journal writer's CPU by a quarter at 1,000/s but held the rate 2–3% short
/// (BENCHMARKS.md): larger batches at once are what the one-second rule holds back.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug)]
struct State {
    configured: f64,
    current: f64,
    paused_until: Option<Instant>,
    last_throttle: Option<Instant>,
    last_change: Instant,
    generation: u64,
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The pacer's state, over governor's clock (a fake one in tests).
struct Inner<C: Clock + Clone> {
    state: State,
    limiter: Limiter<C>,
    limiter_generation: u64,
    clock: C,
    /// Requests sent within the last second plus the jitter allowance, by time.
    log: VecDeque<(C::Instant, u32)>,
    in_log: u32,
    /// Tickets taken whose requests have not gone yet (their rows are being
    /// claimed): they count against the rate until they depart or are given back.
    reserved: u32,
    /// When the last tickets were taken, until the first of them departs.
    taken_at: Option<C::Instant>,
    /// How long recent claims took from take to departure, newest last.
    lags: VecDeque<Duration>,
    /// The median of `lags`, up to [`MAX_LEAD`].
    lead: Duration,
}

/// Whether tickets are for rows still to be claimed, whose requests wait for the
/// claim's commit, or for rows claimed ahead, whose requests go at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// Taken ahead of the log's room by the commit's usual time ([`Inner::lead`]),
    /// which these tickets' departures also measure.
    Claim,
    /// No commit in between: taken as the log's room is now.
    None,
}

/// How many recent claims' lags the lead is taken from.
const LAGS_KEPT: usize = 16;

/// Hands out send tickets at the campaign's (adaptive) rate. Cheap to clone.
#[derive(Clone)]
pub struct Pacer {
    inner: Option<Arc<Mutex<Inner<DefaultClock>>>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").finish_non_exhaustive()
    }
}

impl Pacer {
    /// A pacer for `rate` per second; `None` sends as fast as the provider answers.
    pub fn start(rate: Option<u32>) -> Pacer {
        let Some(rate) = rate.filter(|r| *r > 0) else {
            return Pacer { inner: None };
        };
        Pacer {
            inner: Some(Arc::new(Mutex::new(Inner::new(
                f64::from(rate),
                DefaultClock::default(),
            )))),
        }
    }

    /// Takes up to `max` tickets that are due now (at least one), or says how long
    /// until one is; `lead` says whether a claim's commit stands between them and
    /// their requests.
    pub fn take(&self, max: usize, lead: Lead) -> Result<usize, Duration> {
        let Some(inner) = &self.inner else {
            return Ok(max);
        };
        let Ok(mut inner) = inner.lock() else {
            return Ok(0);
        };
        inner.take(max, Instant::now(), lead)
    }

    /// Gives back tickets that will not be used (a claim found fewer rows).
    pub fn release(&self, unused: usize) {
        if let Some(inner) = &self.inner
            && let Ok(mut inner) = inner.lock()
        {
            inner.release(unused);
        }
    }

    /// A ticket's request would go now: `Ok` counts it from this moment, `Err` says
    /// how long it must wait so that no second holds more than the rate.
    pub fn depart(&self) -> Result<(), Duration> {
        match &self.inner {
            Some(inner) => inner.lock().map_or(Ok(()), |mut inner| inner.depart()),
            None => Ok(()),
        }
    }

    /// The provider said to slow down.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        if let Some(inner) = &self.inner
            && let Ok(mut inner) = inner.lock()
        {
            inner.state.throttle(Instant::now(), retry_after);
        }
    }

    /// The rate in force now (messages per second); 0 when unlimited.
    pub fn current_rate(&self) -> f64 {
        self.inner
            .as_ref()
            .and_then(|i| i.lock().ok().map(|i| i.state.current))
            .unwrap_or(0.0)
    }
}

impl crate::provider::Pace for Pacer {
    fn depart(&self) -> Result<(), Duration> {
        Pacer::depart(self)
    }

    fn abandon(&self) {
        self.release(1);
    }
}

impl<C: Clock + Clone> Inner<C> {
    fn new(rate: f64, clock: C) -> Inner<C> {
        let state = State::new(rate, Instant::now());
        Inner {
            limiter: RateLimiter::direct_with_clock(quota(state.current), clock.clone()),
            limiter_generation: state.generation,
            state,
            clock,
            log: VecDeque::new(),
            in_log: 0,
            reserved: 0,
            taken_at: None,
            lags: VecDeque::with_capacity(LAGS_KEPT),
            lead: Duration::ZERO,
        }
    }

    fn span(&self) -> Duration {
        Duration::from_secs(1) + jitter_allowance(self.state.current)
    }

    /// Requests allowed in one span.
    fn allowed(&self) -> u32 {
        (self.state.current.floor() as u32).max(1)
    }

    /// Drops the log's entries older than the span.
    fn age_out(&mut self, now: C::Instant) {
        let span = self.span();
        while let Some(&(at, n)) = self.log.front() {
            if Duration::from(now.duration_since(at)) < span {
                break;
            }
            self.log.pop_front();
            self.in_log -= n;
        }
    }

    /// `wall` is the monotonic time, for pauses and recovery; tickets follow the
    /// limiter's clock.
    fn take(&mut self, max: usize, wall: Instant, kind: Lead) -> Result<usize, Duration> {
        let lead = match kind {
            Lead::Claim => self.lead,
            Lead::None => Duration::ZERO,
        };
        if let Some(until) = self.state.paused_until
            && until > wall
        {
            return Err(until - wall);
        }
        self.state.recover(wall);
        let now = self.clock.now();
        if self.limiter_generation != self.state.generation {
            // The log still holds the tickets of the last second, so the window rule
            // stands across the change.
            self.limiter =
                RateLimiter::direct_with_clock(quota(self.state.current), self.clock.clone());
            self.limiter_generation = self.state.generation;
        }
        self.age_out(now);
        let span = self.span();
        let age = |at: C::Instant| Duration::from(now.duration_since(at));
        // Entries that will have aged out by the time tickets taken now depart.
        let leaving: u32 = self
            .log
            .iter()
            .take_while(|&&(at, _)| age(at) + lead >= span)
            .map(|&(_, n)| n)
            .sum();
        let allowed = self.allowed();
        let staying = self.in_log - leaving;
        let room = allowed.saturating_sub(staying + self.reserved);
        if room == 0 && staying < allowed {
            // Taken tickets whose requests are about to leave: look again shortly.
            return Err(Duration::from_millis(1));
        }
        if room == 0 {
            let oldest = self
                .log
                .iter()
                .find(|&&(at, _)| age(at) + lead < span)
                .map_or(Duration::ZERO, |&(at, _)| age(at));
            return Err((span - lead)
                .saturating_sub(oldest)
                .max(Duration::from_micros(100)));
        }
        let want = u32::try_from(max).unwrap_or(u32::MAX).min(room);
        let mut taken = 0;
        while taken < want {
            match self.limiter.check() {
                Ok(()) => taken += 1,
                Err(not_until) if taken == 0 => {
                    return Err(not_until.wait_time_from(now));
                }
                Err(_) => break,
            }
        }
        self.reserved += taken;
        // Only a claim's time to departure is the lead's measure.
        if taken > 0 && matches!(kind, Lead::Claim) && self.taken_at.is_none() {
            self.taken_at = Some(now);
        }
        Ok(taken as usize)
    }

    fn release(&mut self, unused: usize) {
        self.reserved = self
            .reserved
            .saturating_sub(u32::try_from(unused).unwrap_or(u32::MAX));
    }

    fn depart(&mut self) -> Result<(), Duration> {
        let now = self.clock.now();
        if let Some(taken_at) = self.taken_at.take() {
            // From take to the request being ready to go, before any wait here: the
            // time the claim's commit and the hand-off took.
            let lag = Duration::from(now.duration_since(taken_at)).min(MAX_LEAD);
            if self.lags.len() == LAGS_KEPT {
                self.lags.pop_front();
            }
            self.lags.push_back(lag);
            let mut lags = [Duration::ZERO; LAGS_KEPT];
            let lags = &mut lags[..self.lags.len()];
            for (slot, lag) in lags.iter_mut().zip(&self.lags) {
                *slot = *lag;
            }
            lags.sort_unstable();
            self.lead = lags[lags.len() / 2];
        }
        self.age_out(now);
        let allowed = self.allowed();
        if self.in_log >= allowed {
            let oldest = self.log.front().map_or(Duration::ZERO, |&(at, _)| {
                Duration::from(now.duration_since(at))
            });
            return Err(self
                .span()
                .saturating_sub(oldest)
                .max(Duration::from_micros(100)));
        }
        self.reserved = self.reserved.saturating_sub(1);
        // Requests leaving at the same instant share an entry; any later one has its
        // own, so none ages out before its time.
        match self.log.back_mut() {
            Some((at, n)) if *at == now => *n += 1,
            _ => self.log.push_back((now, 1)),
        }
        self.in_log += 1;
        Ok(())
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
    MIN_JITTER_ALLOWANCE.max(Duration::from_secs(1).div_f64(rate.max(0.01)))
}

/// The batch a claim takes at `rate`: the tickets of one [`BATCH_INTERVAL`].
pub fn batch_size(rate: f64) -> usize {
    ((rate * BATCH_INTERVAL.as_secs_f64()).ceil() as usize).max(1)
}

/// How long a late dispatcher may catch up on: a claim held up by a slow commit
/// (an fsync that took 100 ms on a busy disk) takes the tickets it missed instead of
/// losing them for good, which cost 1–2% of the rate with room for 60 ms. The log,
/// not this, keeps the one-second rule.
const CATCH_UP: Duration = Duration::from_millis(200);

/// The tickets a late claim may take at once beyond its own batch.
pub fn catch_up(rate: f64) -> usize {
    ((rate * CATCH_UP.as_secs_f64()).ceil() as usize).max(1)
}

/// The GCRA quota at `rate` per second: a little faster than the rate, so that once
/// a second of requests has left, the log (exact, and checked as requests leave)
/// decides when the next may go and the limiter only spreads tickets into regular
/// batches. At exactly the rate the two rules took turns to hold tickets back, and
/// the rate came out 1–2% short. Its burst is what a late claim may owe.
fn quota(rate: f64) -> Quota {
    let period = Duration::from_secs(1).div_f64((rate * SPREAD_AHEAD).max(0.01));
    let burst = u32::try_from(catch_up(rate)).unwrap_or(u32::MAX);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

/// How much faster than the rate the limiter runs; see [`quota`].
const SPREAD_AHEAD: f64 = 1.02;

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

    /// Departure times for `rate` per second from a dispatcher that asks every batch
    /// interval for as many tickets as it may take, waking up to `late` after it
    /// meant to, whose claims' commits take up to `commit` before the requests go,
    /// on governor's fake clock. A claim takes `ahead` rows more than its tickets;
    /// while a whole interval's worth of those is left, the next interval sends them
    /// without a claim, as the pipeline does.
    fn departures(
        rate: u32,
        late: Duration,
        commit: Duration,
        seconds: u32,
        ahead: usize,
    ) -> Vec<Duration> {
        let clock = governor::clock::FakeRelativeClock::default();
        let mut inner = Inner::new(f64::from(rate), clock.clone());
        let mut rng = fastrand::Rng::with_seed(u64::from(rate));
        let start = clock.now();
        let elapsed = || Duration::from(clock.now().duration_since(start));
        let mut times = Vec::new();
        let mut ready = 0;
        while times.len() < (rate * seconds) as usize {
            // As the dispatcher asks: a batch at a time, and half a batch more to
            // catch up (on connections it has open and idle).
            let batch = batch_size(f64::from(rate));
            let most = batch + batch / 2;
            let from_ready = ready >= most;
            let lead = if from_ready { Lead::None } else { Lead::Claim };
            match inner.take(most, Instant::now(), lead) {
                Ok(n) => {
                    let taken = elapsed();
                    if !from_ready {
                        clock.advance(commit.mul_f64(rng.f64()));
                        ready = ready.max(n) + ahead;
                    }
                    ready -= n;
                    for _ in 0..n {
                        while let Err(wait) = inner.depart() {
                            clock.advance(wait);
                        }
                        times.push(elapsed());
                    }
                    let next = taken + BATCH_INTERVAL;
                    clock.advance(next.saturating_sub(elapsed()) + late.mul_f64(rng.f64()));
                }
                Err(wait) => clock.advance(wait + late.mul_f64(rng.f64())),
            }
        }
        times
    }

    #[test]
    fn no_second_holds_more_than_the_rate_and_the_rate_is_kept() {
        for (rate, late, commit) in [
            (1000u32, 0u64, 0u64),
            (1000, 1, 2),
            (1000, 2, 2),
            (1000, 1, 8),
            (1000, 2, 15),
            (200, 2, 4),
            (80, 1, 4),
        ] {
            let (late, commit) = (Duration::from_millis(late), Duration::from_millis(commit));
            // Claiming as it sends, and claiming ahead.
            let batch = batch_size(f64::from(rate));
            for ahead in [0, batch + batch / 2] {
                let times = departures(rate, late, commit, 5, ahead);
                let n = rate as usize;
                for (i, w) in times.windows(n + 1).enumerate() {
                    assert!(
                        w[n] - w[0] >= Duration::from_secs(1) + jitter_allowance(f64::from(rate)),
                        "rate {rate}, late {late:?}, commit {commit:?}, ahead {ahead}: departures {i}..={} span {:?}",
                        i + n,
                        w[n] - w[0]
                    );
                }
                // After the first second, the rate holds within 1%, whatever the
                // commits take: tickets are taken that much ahead. At low rates the
                // allowance of one interval between requests costs about one request a
                // second by itself.
                let after = times
                    .iter()
                    .filter(|t| **t >= Duration::from_secs(1))
                    .count();
                let span = (times[times.len() - 1] - Duration::from_secs(1)).as_secs_f64();
                let achieved = after as f64 / span;
                let most =
                    f64::from(rate) / (1.0 + jitter_allowance(f64::from(rate)).as_secs_f64());
                assert!(
                    achieved >= (0.99 * f64::from(rate)).min(0.995 * most),
                    "rate {rate}, late {late:?}, commit {commit:?}, ahead {ahead}: {achieved:.1}/s"
                );
            }
        }
    }

    #[test]
    fn batches_are_one_interval_of_tickets() {
        assert_eq!(batch_size(1000.0), 20);
        assert_eq!(batch_size(80.0), 2);
        assert_eq!(batch_size(0.5), 1);
        assert_eq!(batch_size(40.0), 1);
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

    #[test]
    fn a_paused_pacer_says_how_long_to_wait() {
        let pacer = Pacer::start(Some(100));
        pacer.throttled(Some(Duration::from_secs(3)));
        let wait = pacer.take(5, Lead::Claim).unwrap_err();
        assert!(
            wait > Duration::from_secs(2) && wait <= Duration::from_secs(3),
            "{wait:?}"
        );
        assert_eq!(Pacer::start(None).take(7, Lead::Claim), Ok(7), "unlimited");
    }
}
