//! The one request a provider sends per message, on HTTP/1.1 connections this
//! module opens and keeps itself.
//!
//! A general client does per request what a campaign needs once: reqwest parsed the
//! URL again for each request (twice: once for its redirect policy), ran it through
//! its redirect and retry layers, and built its headers anew. At 1,000 messages a
//! second those layers were a sixth of the send's CPU (BENCHMARKS.md). Here the
//! address, the headers and the TLS setup are made once; a request is the body and a
//! connection from the idle queue. Everything else the providers send (media
//! uploads, template syncs, account reads) still goes through reqwest.
//!
//! Requests through a proxy (`HTTPS_PROXY` and the like) also go through reqwest,
//! which knows how to reach one: see [`super::http::Messages`].

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http_body::Body as _;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::Response;
use super::departure::{DepartingBody, Departure, Leaving};
use super::http::{Answer, Failure, parse_retry_after};
use crate::secret::Secret;

/// The most of an answer's body kept: Meta's and Twilio's answers are a few hundred
/// bytes; a server that sends more is not one of them.
const MAX_BODY: usize = 1 << 20;

/// Finds the addresses of a host name. Tests give one that knows no names, so no
/// test reaches a real resolver.
pub trait Resolve: Send + Sync {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + '_>>;
}

/// The system's resolver (getaddrinfo, on a blocking thread).
struct System;

impl Resolve for System {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + '_>> {
        let target = format!("{host}:{port}");
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

/// Connections to one provider address, and the fixed parts of its requests.
pub struct Wire {
    host: String,
    port: u16,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Origin-form: the path and query, as the request line carries them.
    path: http::Uri,
    /// Host, User-Agent, Content-Type, Authorization: the same on every request.
    headers: http::HeaderMap,
    connect_timeout: Duration,
    timeout: Duration,
    resolver: Arc<dyn Resolve>,
    /// Connections whose last answer was read whole, oldest first: a connection
    /// is ready again only once its task has seen the end of that answer, which
    /// the oldest has had the longest to do.
    idle: Mutex<VecDeque<SendRequest<DepartingBody>>>,
    max_idle: usize,
}

impl Wire {
    /// `url`: where messages are posted; `headers`: added to every request
    /// (Authorization is marked sensitive, so no debug output shows it).
    pub fn new(
        url: &str,
        headers: &[(HeaderName, &str)],
        connect_timeout: Duration,
        timeout: Duration,
        max_idle: usize,
    ) -> anyhow::Result<Wire> {
        let uri: http::Uri = url
            .parse()
            .context("provider.base_url does not make a valid URL: fix it in the campaign file")?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => anyhow::bail!(
                "provider.base_url must start with https:// (or http:// for a local test server)"
            ),
        };
        let host = uri
            .host()
            .context("provider.base_url has no host name: fix it in the campaign file")?
            // An IPv6 literal comes bracketed; the resolver and TLS want it bare.
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .parse()
            .context("provider.base_url makes an invalid path")?;
        let tls = if https {
            let server_name = rustls::pki_types::ServerName::try_from(host.clone())
                .context("provider.base_url's host is not a valid TLS server name")?;
            Some((
                tokio_rustls::TlsConnector::from(Arc::new(tls_config()?)),
                server_name,
            ))
        } else {
            None
        };
        let mut map = http::HeaderMap::new();
        // Host and port as the URL gives them, never its userinfo (`user:pass@`).
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let host_header = match uri.port_u16() {
            Some(port) => format!("{bracketed}:{port}"),
            None => bracketed,
        };
        map.insert(
            header::HOST,
            HeaderValue::from_str(&host_header).context("provider.base_url's host")?,
        );
        map.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("wacampaign/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in headers {
            let mut value = HeaderValue::from_str(value)
                .with_context(|| format!("the {name} header has characters HTTP does not allow"))?;
            if *name == header::AUTHORIZATION {
                value.set_sensitive(true);
            }
            map.insert(name.clone(), value);
        }
        Ok(Wire {
            host,
            port,
            tls,
            path,
            headers: map,
            connect_timeout,
            timeout,
            resolver: Arc::new(System),
            idle: Mutex::new(VecDeque::new()),
            max_idle: max_idle.max(1),
        })
    }

    /// The same, finding host names with `resolver`.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Wire {
        self.resolver = resolver;
        self
    }

    /// Posts one message's `body`, telling `departure` when it goes to the socket,
    /// and reads the answer. `Err` holds what the pipeline records instead, as
    /// [`super::http::Messages::send`] does through reqwest.
    pub async fn send(
        &self,
        body: Bytes,
        departure: Departure,
        secret: &Secret,
    ) -> Result<Answer, Response> {
        let leaving = Leaving::default();
        // The answer's status, once its head came: a timeout while its body is read
        // after a 2xx is still an acceptance.
        let head = std::sync::atomic::AtomicU16::new(0);
        let result = tokio::time::timeout(
            self.timeout,
            self.exchange(departure.into_body(body, leaving.clone()), &head),
        )
        .await;
        // Giving up settles it: a body that had not left by now never will. Also
        // when an answer came: a server may answer (a 429, a 401) before the pacer
        // let the body go, and the body must not go after that.
        let may_have_left = !leaving.give_up();
        let result = match result {
            Ok(result) => result,
            Err(_) => Err((
                Failure::Timeout { connect: false },
                Some(head.load(std::sync::atomic::Ordering::Relaxed)).filter(|s| *s != 0),
            )),
        };
        let failure = match result {
            Ok(answer) => return Ok(answer),
            Err((failure, Some(status))) if (200..300).contains(&status) => {
                return Err(Response::Accepted {
                    message_id: None,
                    wa_id: None,
                    status: Some(format!(
                        "accepted; body unreadable: {}",
                        secret.redact(&failure.describe(self.connect_timeout, self.timeout))
                    )),
                });
            }
            Err((failure, _)) => failure,
        };
        let detail = secret.redact(&failure.describe(self.connect_timeout, self.timeout));
        if !may_have_left || failure.before_connection() {
            Err(Response::NotSent { detail })
        } else {
            Err(Response::InDoubt { detail })
        }
    }

    /// The request on a connection: `Err` with the failure, and the status when the
    /// answer's head had come.
    async fn exchange(
        &self,
        body: DepartingBody,
        head: &std::sync::atomic::AtomicU16,
    ) -> Result<Answer, (Failure, Option<u16>)> {
        let mut request = http::Request::new(body);
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        let mut tries = 0;
        let (sender, response) = loop {
            tries += 1;
            let mut sender = match self.checkout() {
                Some(sender) => sender,
                // Boxed: opening a connection (TCP, TLS, the handshake) takes a few
                // KiB of future that every request would otherwise carry, allocate
                // and copy, for the few that open one.
                None => Box::pin(self.connect()).await.map_err(|f| (f, None))?,
            };
            match sender.try_send_request(request).await {
                Ok(response) => break (sender, response),
                // The connection closed before the request was written (a keep-alive
                // the server had just ended): the same request on another one, once;
                // a server that closes every connection it accepts is a failure.
                Err(mut e) => match e.take_message() {
                    Some(back) if tries < 2 => request = back,
                    _ => return Err((Failure::Transport(e.into_error()), None)),
                },
            }
        };
        let status = response.status().as_u16();
        head.store(status, std::sync::atomic::Ordering::Relaxed);
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let mut incoming = response.into_body();
        let mut body = BytesMut::new();
        let mut whole = true;
        while let Some(frame) =
            std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| (Failure::Transport(e), Some(status)))?;
            if let Ok(data) = frame.into_data() {
                let room = MAX_BODY.saturating_sub(body.len());
                body.extend_from_slice(&data[..data.len().min(room)]);
                if data.len() > room {
                    whole = false;
                    break;
                }
            }
        }
        // Read to its end, the connection can carry the next request; a body cut
        // short leaves it mid-answer, so it is closed.
        if whole && !sender.is_closed() {
            self.checkin(sender);
        } else {
            drop(sender);
        }
        Ok(Answer {
            status,
            retry_after,
            body: body.freeze(),
        })
    }

    /// An idle connection that is ready for a request; closed ones are dropped.
    fn checkout(&self) -> Option<SendRequest<DepartingBody>> {
        let mut idle = self.idle.lock().ok()?;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        for _ in 0..idle.len() {
            let mut sender = idle.pop_front()?;
            match sender.poll_ready(&mut cx) {
                std::task::Poll::Ready(Ok(())) => return Some(sender),
                std::task::Poll::Ready(Err(_)) => {}
                // Still finishing its last answer: kept for the next request.
                std::task::Poll::Pending => idle.push_back(sender),
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<DepartingBody>) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push_back(sender);
        }
    }

    /// A new connection: resolve, TCP, TLS when https, all within the connect
    /// timeout; its task runs on the current runtime until the connection closes.
    async fn connect(&self) -> Result<SendRequest<DepartingBody>, Failure> {
        let open = async {
            let addrs = match self.host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, self.port)],
                Err(_) => self
                    .resolver
                    .resolve(&self.host, self.port)
                    .await
                    .map_err(Failure::Dns)?,
            };
            let mut last = None;
            let mut stream = None;
            for addr in addrs {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let stream = match stream {
                Some(s) => s,
                None => {
                    return Err(Failure::Connect(last.unwrap_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "the provider's host name has no address",
                        )
                    })));
                }
            };
            // A request is one write; waiting for more to coalesce only delays it.
            let _ = stream.set_nodelay(true);
            match &self.tls {
                None => handshake(stream).await,
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), stream)
                        .await
                        .map_err(Failure::Tls)?;
                    handshake(stream).await
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout { connect: true }),
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<DepartingBody>, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Failure::Transport)?;
    // The connection's errors reach the request that was on it.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// TLS as reqwest sets it up: the platform's certificate verifier, aws-lc-rs, and
/// HTTP/1.1 offered by ALPN (this client speaks nothing else).
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_platform_verifier()
        .context("loading the system's certificate verifier")?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// Lets every request go at once.
    struct Open;

    impl super::super::Pace for Open {
        fn depart(&self) -> Result<(), Duration> {
            Ok(())
        }
        fn abandon(&self) {}
    }

    fn secret() -> Secret {
        Secret::new("EAAGtest0secret", "test").unwrap()
    }

    async fn send(wire: &Wire) -> Result<Answer, Response> {
        wire.send(
            Bytes::from_static(b"{\"to\":\"1\"}"),
            Departure::paced(Arc::new(Open)),
            &secret(),
        )
        .await
    }

    /// What a test server saw: connections accepted and requests read.
    #[derive(Default)]
    struct Seen {
        connections: AtomicU32,
        requests: AtomicU32,
    }

    /// A server that answers each request with `answer`, then closes the
    /// connection when `close_after` says so.
    async fn serve(answer: Vec<u8>, close_after: bool) -> (String, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let counts = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counts.connections.fetch_add(1, Ordering::SeqCst);
                let counts = Arc::clone(&counts);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut pending = Vec::new();
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        // Each request here is one head and a 10-byte body.
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            if pending.len() < end + 4 + 10 {
                                break;
                            }
                            pending.drain(..end + 4 + 10);
                            counts.requests.fetch_add(1, Ordering::SeqCst);
                            if socket.write_all(&answer).await.is_err() {
                                return;
                            }
                            if close_after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/v23.0/1/messages"), seen)
    }

    fn wire(url: &str) -> Wire {
        Wire::new(
            url,
            &[(header::CONTENT_TYPE, "application/json")],
            Duration::from_secs(5),
            Duration::from_secs(5),
            4,
        )
        .unwrap()
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";

    #[tokio::test]
    async fn requests_one_after_another_share_one_connection() {
        let (url, seen) = serve(OK.to_vec(), false).await;
        let wire = wire(&url);
        for _ in 0..3 {
            let answer = send(&wire).await.unwrap_or_else(|r| panic!("{r:?}"));
            assert_eq!((answer.status, &answer.body[..]), (200, &b"{}"[..]));
            // The connection's task sees the end of the answer before the next
            // request, as between two claims of a run.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_and_the_request_goes_once() {
        let (url, seen) = serve(OK.to_vec(), true).await;
        let wire = wire(&url);
        send(&wire).await.unwrap_or_else(|r| panic!("{r:?}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = send(&wire).await.unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(answer.status, 200);
        assert_eq!(seen.requests.load(Ordering::SeqCst), 2, "each sent once");
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_redirect_is_answered_as_it_came() {
        let (url, seen) = serve(
            b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
            false,
        )
        .await;
        let answer = send(&wire(&url)).await.unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(answer.status, 307);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            seen.requests.load(Ordering::SeqCst),
            1,
            "not sent elsewhere"
        );
    }

    #[tokio::test]
    async fn an_oversized_answer_is_cut_and_its_connection_not_reused() {
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY * 2
        )
        .into_bytes();
        answer.resize(answer.len() + MAX_BODY * 2, b'x');
        let (url, seen) = serve(answer, false).await;
        let wire = wire(&url);
        let first = send(&wire).await.unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(first.body.len(), MAX_BODY);
        send(&wire).await.unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_2xx_whose_body_never_ends_is_still_an_acceptance() {
        let url = crate::provider::http::tests::serve_once(|mut socket| async move {
            // The head, a promise of 100 bytes, then silence.
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"messages\"")
                .await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        })
        .await;
        let wire = Wire::new(
            &url,
            &[],
            Duration::from_secs(5),
            Duration::from_millis(300),
            1,
        )
        .unwrap();
        match send(&wire).await {
            Err(Response::Accepted { status, .. }) => assert_eq!(
                status.as_deref(),
                Some("accepted; body unreadable: read timeout: no answer within 0.3 s")
            ),
            Err(other) => panic!("{other:?}"),
            Ok(answer) => panic!("a whole answer: HTTP {}", answer.status),
        }
    }

    #[test]
    fn the_host_header_never_carries_the_urls_credentials() {
        let wire = Wire::new(
            "https://user:secret@graph.example:8443/v23.0/1/messages",
            &[],
            Duration::from_secs(5),
            Duration::from_secs(5),
            1,
        )
        .unwrap();
        assert_eq!(wire.headers[header::HOST], "graph.example:8443");
        let v6 = Wire::new(
            "http://[::1]:8080/v23.0/1/messages",
            &[],
            Duration::from_secs(5),
            Duration::from_secs(5),
            1,
        )
        .unwrap();
        assert_eq!(v6.headers[header::HOST], "[::1]:8080");
    }

    #[test]
    fn a_url_that_is_not_http_is_refused_with_what_to_do() {
        let error = Wire::new(
            "ftp://graph.example/v23.0/1/messages",
            &[],
            Duration::from_secs(5),
            Duration::from_secs(5),
            1,
        )
        .err()
        .expect("refused");
        assert!(
            error.to_string().contains("must start with https://"),
            "{error}"
        );
    }
}
