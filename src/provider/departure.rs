//! The moment a request starts to leave: when its body is first asked for, which
//! is when the connection is open and its bytes go to the socket.
//!
//! The pacer counts a request against the one-second rule from this moment, not from
//! when its ticket was taken: a request that first waits for a new connection (its
//! TCP and TLS handshakes) would otherwise reach the provider later than the pacer
//! assumed, and land in the same second as requests paced after it.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

/// Whoever paces the sends: asked at the moment each request would go.
pub trait Pace: Send + Sync {
    /// The request may go now, and is counted from now; or not for this long.
    fn depart(&self) -> Result<(), Duration>;
    /// A request that will never go gives its place back.
    fn abandon(&self);
}

/// One request's departure: asks the pacer at the moment the request would go and
/// waits if it must; dropped before that, gives the request's place back.
pub struct Departure {
    pace: Option<Arc<dyn Pace>>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The journal's departure log and the row this request is for.
    note: Option<(Arc<crate::departure_log::Departures>, i64)>,
}

impl Departure {
    /// A departure the pacer decides.
    pub fn paced(pace: Arc<dyn Pace>) -> Departure {
        Departure {
            pace: Some(pace),
            wait: None,
            note: None,
        }
    }

    /// The same, noting in the journal's departure log that `row`'s request left,
    /// at the moment it goes: a kill before then leaves the row provably unsent.
    pub fn noting(
        mut self,
        log: Option<Arc<crate::departure_log::Departures>>,
        row: i64,
    ) -> Departure {
        self.note = log.map(|log| (log, row));
        self
    }

    /// Ready once the request may go: it is then counted as gone.
    pub fn poll_depart(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(pace) = &self.pace {
            loop {
                if let Some(wait) = &mut self.wait {
                    std::task::ready!(wait.as_mut().poll(cx));
                    self.wait = None;
                }
                match pace.depart() {
                    Ok(()) => {
                        if let Some((log, row)) = self.note.take() {
                            log.departed(row);
                        }
                        break;
                    }
                    Err(wait) => {
                        self.wait = Some(Box::pin(tokio::time::sleep(wait)));
                    }
                }
            }
            self.pace = None;
        }
        Poll::Ready(())
    }

    /// Waits until the request may go (for senders that have no body to poll).
    pub async fn depart(&mut self) {
        std::future::poll_fn(|cx| self.poll_depart(cx)).await;
    }

    /// A request body that departs when first polled: the moment the connection is
    /// open and asks for the bytes to write; unless `leaving` was given up first.
    pub fn body(self, bytes: Bytes, leaving: Leaving) -> reqwest::Body {
        reqwest::Body::wrap(self.into_body(bytes, leaving))
    }

    /// The same body, for a connection of our own ([`super::wire`]).
    pub fn into_body(self, bytes: Bytes, leaving: Leaving) -> DepartingBody {
        DepartingBody {
            bytes: Some(bytes),
            departure: self,
            leaving,
        }
    }
}

/// Whether a request's body left, decided once by whichever comes first: the
/// connection taking the body, or the sender giving up on the request (a timeout).
/// The connection keeps the request after the sender has stopped waiting for it; a
/// body still held by the pacer would otherwise go later, after the sender had
/// recorded it as never sent and due again.
#[derive(Debug, Clone, Default)]
pub struct Leaving(Arc<AtomicU8>);

const WAITING: u8 = 0;
const LEFT: u8 = 1;
const GIVEN_UP: u8 = 2;

impl Leaving {
    /// The body is about to go: false if the sender gave up first.
    fn go(&self) -> bool {
        match self
            .0
            .compare_exchange(WAITING, LEFT, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == LEFT,
        }
    }

    fn given_up(&self) -> bool {
        self.0.load(Ordering::Acquire) == GIVEN_UP
    }

    /// The sender stops waiting: true if the body never left, and now never will.
    pub fn give_up(&self) -> bool {
        match self
            .0
            .compare_exchange(WAITING, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == GIVEN_UP,
        }
    }
}

/// The body's error when its request was given up before it could leave.
#[derive(Debug)]
pub struct GivenUp;

impl std::fmt::Display for GivenUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request was given up before it was sent")
    }
}

impl std::error::Error for GivenUp {}

impl Drop for Departure {
    fn drop(&mut self) {
        if let Some(pace) = self.pace.take() {
            pace.abandon();
        }
    }
}

impl std::fmt::Debug for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Departure")
            .field("paced", &self.pace.is_some())
            .finish_non_exhaustive()
    }
}

/// One whole body, in one frame, with an exact size (so it goes with a
/// `Content-Length`, as a plain byte body would).
pub struct DepartingBody {
    bytes: Option<Bytes>,
    departure: Departure,
    leaving: Leaving,
}

impl http_body::Body for DepartingBody {
    type Data = Bytes;
    type Error = GivenUp;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.bytes.is_none() {
            return Poll::Ready(None);
        }
        if self.leaving.given_up() {
            self.bytes = None;
            return Poll::Ready(Some(Err(GivenUp)));
        }
        std::task::ready!(self.departure.poll_depart(cx));
        // Given up while the pacer held it: it must not go now.
        if !self.leaving.go() {
            self.bytes = None;
            return Poll::Ready(Some(Err(GivenUp)));
        }
        Poll::Ready(self.bytes.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// Refuses the first `refusals` departures with a short wait.
    #[derive(Default)]
    struct Gate {
        refusals: AtomicU32,
        departed: AtomicU32,
        abandoned: AtomicU32,
    }

    impl Pace for Gate {
        fn depart(&self) -> Result<(), Duration> {
            if self.refusals.load(Ordering::SeqCst) > 0 {
                self.refusals.fetch_sub(1, Ordering::SeqCst);
                return Err(Duration::from_millis(2));
            }
            self.departed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn abandon(&self) {
            self.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn paced(gate: &Arc<Gate>) -> Departure {
        let pace: Arc<dyn Pace> = gate.clone();
        Departure::paced(pace)
    }

    #[tokio::test]
    async fn a_departure_waits_for_the_pacer_and_is_told_once() {
        let gate = Arc::new(Gate::default());
        gate.refusals.store(2, Ordering::SeqCst);
        let mut departure = paced(&gate);
        departure.depart().await;
        departure.depart().await;
        drop(departure);
        assert_eq!(gate.refusals.load(Ordering::SeqCst), 0, "it waited twice");
        assert_eq!(gate.departed.load(Ordering::SeqCst), 1, "counted once");
        assert_eq!(gate.abandoned.load(Ordering::SeqCst), 0);

        drop(paced(&gate));
        assert_eq!(gate.departed.load(Ordering::SeqCst), 1);
        assert_eq!(
            gate.abandoned.load(Ordering::SeqCst),
            1,
            "its place given back"
        );
    }

    #[tokio::test]
    async fn the_body_departs_when_first_polled_and_keeps_its_length() {
        use http_body::Body as _;
        let gate = Arc::new(Gate::default());
        gate.refusals.store(1, Ordering::SeqCst);
        let departure = paced(&gate);
        let leaving = Leaving::default();
        let mut body = DepartingBody {
            bytes: Some(Bytes::from_static(b"{\"a\":1}")),
            departure,
            leaving: leaving.clone(),
        };
        assert_eq!(body.size_hint().exact(), Some(7));
        assert_eq!(
            gate.departed.load(Ordering::SeqCst),
            0,
            "not before it is polled"
        );
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let Some(Ok(frame)) = frame else {
            panic!("one frame");
        };
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(gate.departed.load(Ordering::SeqCst), 1);
        assert!(body.is_end_stream());
        let end = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(end.is_none());
        assert!(!leaving.give_up(), "it left: too late to give up");
    }

    #[tokio::test]
    async fn a_body_given_up_while_held_never_goes() {
        use http_body::Body as _;
        let gate = Arc::new(Gate::default());
        gate.refusals.store(1, Ordering::SeqCst);
        let departure = paced(&gate);
        let leaving = Leaving::default();
        let mut body = DepartingBody {
            bytes: Some(Bytes::from_static(b"{}")),
            departure,
            leaving: leaving.clone(),
        };
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending(), "held");
        assert!(leaving.give_up(), "never left");
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(matches!(frame, Some(Err(GivenUp))), "{frame:?}");
        drop(body);
        assert_eq!(gate.departed.load(Ordering::SeqCst), 0);
        assert_eq!(
            gate.abandoned.load(Ordering::SeqCst),
            1,
            "its place given back"
        );
    }
}
