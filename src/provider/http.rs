//! What the HTTP providers share: one client with explicit timeouts (reqwest has none
//! by default) and connection reuse, and reading an answer into its status,
//! `Retry-After` and body, or the transport failure it was.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;

use super::Response;
use crate::secret::Secret;

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client a provider keeps for the whole run.
pub fn client(timeout: Duration, pool: usize) -> anyhow::Result<reqwest::Client> {
    builder(CONNECT_TIMEOUT, timeout, pool)
        .build()
        .context("building the HTTP client")
}

fn builder(connect_timeout: Duration, timeout: Duration, pool: usize) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .pool_max_idle_per_host(pool)
        // A POST that is redirected is answered as it came: following it would
        // resend a message to an address nobody configured (or turn it into a GET).
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wacampaign/", env!("CARGO_PKG_VERSION")))
}

/// Where a provider posts its messages: on connections of its own
/// ([`super::wire`]), or through reqwest when the environment names a proxy, since
/// reqwest knows how to reach one.
pub enum Messages {
    Direct(super::wire::Wire),
    Proxied {
        client: reqwest::Client,
        url: reqwest::Url,
        headers: reqwest::header::HeaderMap,
        timeout: Duration,
    },
}

/// The variables reqwest reads a proxy from (in either case).
const PROXY_VARIABLES: [&str; 3] = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"];

/// Whether the environment (`var`) names a proxy: then messages go through reqwest.
fn proxy_configured(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    PROXY_VARIABLES.iter().any(|name| {
        [name.to_string(), name.to_ascii_lowercase()]
            .iter()
            .any(|n| var(n).is_some_and(|v| !v.is_empty()))
    })
}

impl Messages {
    /// Messages posted to `url` with `content_type` and `authorization`, waiting
    /// `timeout` for each answer, keeping up to `pool` connections open.
    pub fn new(
        url: &str,
        content_type: &'static str,
        authorization: &str,
        timeout: Duration,
        pool: usize,
    ) -> anyhow::Result<Messages> {
        Messages::with_route(
            url,
            content_type,
            authorization,
            timeout,
            pool,
            proxy_configured(|name| std::env::var_os(name)),
        )
    }

    fn with_route(
        url: &str,
        content_type: &'static str,
        authorization: &str,
        timeout: Duration,
        pool: usize,
        proxied: bool,
    ) -> anyhow::Result<Messages> {
        if !proxied {
            return Ok(Messages::Direct(super::wire::Wire::new(
                url,
                &[
                    (reqwest::header::CONTENT_TYPE, content_type),
                    (reqwest::header::AUTHORIZATION, authorization),
                ],
                CONNECT_TIMEOUT,
                timeout,
                pool,
            )?));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static(content_type),
        );
        let mut auth = reqwest::header::HeaderValue::from_str(authorization)
            .context("the Authorization header has characters HTTP does not allow")?;
        auth.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        Ok(Messages::Proxied {
            client: client(timeout, pool)?,
            url: reqwest::Url::parse(url).context(
                "provider.base_url does not make a valid URL: fix it in the campaign file",
            )?,
            headers,
            timeout,
        })
    }

    /// Posts one message's `body`; as [`send_message`].
    pub async fn send(
        &self,
        body: Bytes,
        departure: super::Departure,
        secret: &Secret,
    ) -> Result<Answer, Response> {
        match self {
            Messages::Direct(wire) => wire.send(body, departure, secret).await,
            Messages::Proxied {
                client,
                url,
                headers,
                timeout,
            } => {
                let leaving = super::departure::Leaving::default();
                let request = client
                    .post(url.clone())
                    .headers(headers.clone())
                    .body(departure.body(body, leaving.clone()));
                exchange(request, secret, *timeout, Some(&leaving)).await
            }
        }
    }
}

/// An answer whose body was read.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of a body that is not the provider's error document, for the record,
    /// with `secret` redacted. Redacted whole, then cut: cut first, a secret that
    /// crossed the cut would keep its first characters. Without the status: the
    /// pipeline puts `HTTP {status}: ` before every detail that has no error code.
    pub fn snippet(&self, secret: &Secret) -> String {
        const SHOWN: usize = 300;
        let text = secret.redact(&String::from_utf8_lossy(&self.body));
        let end = text
            .char_indices()
            .nth(SHOWN)
            .map_or(text.len(), |(at, _)| at);
        let text = text[..end].trim();
        if text.is_empty() {
            "(empty body)".to_owned()
        } else {
            text.to_owned()
        }
    }
}

/// Sends `request` and reads the answer. `Err` holds what the pipeline should
/// record instead: a transport failure, or a 2xx whose body could not be read.
/// `timeout` is the one the client was built with, to say how long was waited.
pub async fn send(
    request: reqwest::RequestBuilder,
    secret: &Secret,
    timeout: Duration,
) -> Result<Answer, Response> {
    exchange(request, secret, timeout, None).await
}

/// `leaving`: whether the request's body left; `None` when not watched (then any
/// failure after connecting may have delivered it).
async fn exchange(
    request: reqwest::RequestBuilder,
    secret: &Secret,
    timeout: Duration,
    leaving: Option<&super::departure::Leaving>,
) -> Result<Answer, Response> {
    // Giving up settles it: a body that had not left by now never will.
    let may_have_left = || leaving.is_none_or(|l| !l.give_up());
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, secret, CONNECT_TIMEOUT, timeout, may_have_left()))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let body = response.bytes().await;
    // An answer came: a body the pacer still held must not go after it.
    if let Some(leaving) = leaving {
        leaving.give_up();
    }
    match body {
        Ok(body) => Ok(Answer {
            status,
            retry_after,
            body,
        }),
        // The status line arrived, so a 2xx means the provider took the message.
        Err(e) if (200..300).contains(&status) => Err(Response::Accepted {
            message_id: None,
            wa_id: None,
            status: Some(format!(
                "accepted; body unreadable: {}",
                secret.redact(&describe(&e, CONNECT_TIMEOUT, timeout))
            )),
        }),
        Err(e) => Err(transport_error(&e, secret, CONNECT_TIMEOUT, timeout, true)),
    }
}

/// `Retry-After` in either form HTTP allows: seconds, or a date (`Wed, 21 Oct 2026
/// 07:28:00 GMT`), as a wait from `now`.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// A request that never left (no connection, one reqwest could not even build, or
/// one whose body was never asked for) is safe to retry; any other failure may
/// have delivered it.
fn transport_error(
    error: &reqwest::Error,
    secret: &Secret,
    connect_timeout: Duration,
    timeout: Duration,
    may_have_left: bool,
) -> Response {
    let detail = secret.redact(&describe(error, connect_timeout, timeout));
    if !may_have_left || error.is_connect() || error.is_builder() {
        Response::NotSent { detail }
    } else {
        Response::InDoubt { detail }
    }
}

/// What happened, in words an operator can act on, then the innermost cause.
/// reqwest's own message ("error sending request for url (...)") says neither, and
/// names the URL; the URL is left out (a base URL may carry credentials), and the
/// causes below it are the library's and the OS's words, which name no URL.
fn describe(error: &reqwest::Error, connect_timeout: Duration, timeout: Duration) -> String {
    let causes = causes(error);
    if error.is_dns() {
        return with_root(
            "DNS failure: the provider's host name could not be resolved",
            &causes,
        );
    }
    if error.is_timeout() {
        return Failure::Timeout {
            connect: error.is_connect(),
        }
        .describe(connect_timeout, timeout);
    }
    describe_causes(&causes, error.is_connect())
}

/// `what`, then the innermost of `causes` in brackets.
fn with_root(what: &str, causes: &[&(dyn std::error::Error + 'static)]) -> String {
    match causes.last().map(ToString::to_string) {
        Some(root) if !root.is_empty() => format!("{what} ({root})"),
        _ => what.to_owned(),
    }
}

/// What a chain of errors, outermost first, says happened: TLS, a refused, reset
/// or closed connection, else that the connection (`connecting`) or the request
/// failed.
fn describe_causes(causes: &[&(dyn std::error::Error + 'static)], connecting: bool) -> String {
    if let Some(tls) = causes.iter().find_map(|e| find::<rustls::Error>(*e)) {
        return format!("TLS failure: {tls}");
    }
    for cause in causes {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            let what = match io.kind() {
                ErrorKind::ConnectionRefused => {
                    "connection refused: nothing is listening at the provider's address"
                }
                ErrorKind::ConnectionReset => "connection reset by the server",
                ErrorKind::ConnectionAborted => "connection aborted",
                ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => {
                    "connection closed by the server before an answer"
                }
                ErrorKind::TimedOut => "timed out",
                _ => continue,
            };
            return with_root(what, causes);
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            return "connection closed by the server before an answer".to_owned();
        }
    }
    if connecting {
        return with_root("cannot connect", causes);
    }
    with_root("request failed", causes)
}

/// `error`, then the errors beneath it.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut causes = vec![error];
    let mut next = error.source();
    while let Some(cause) = next {
        causes.push(cause);
        next = cause.source();
    }
    causes
}

/// A transport failure of a message's own connection ([`super::wire`]), by the
/// step it happened at.
#[derive(Debug)]
pub enum Failure {
    /// The host name did not resolve.
    Dns(std::io::Error),
    /// No connection within the connect timeout, or no answer within the timeout.
    Timeout { connect: bool },
    /// The TCP connection failed.
    Connect(std::io::Error),
    /// The TLS handshake failed.
    Tls(std::io::Error),
    /// The request or its answer failed on an open connection.
    Transport(hyper::Error),
}

impl Failure {
    /// Whether it happened before any connection could carry the request, so the
    /// request never left.
    pub fn before_connection(&self) -> bool {
        !matches!(
            self,
            Failure::Transport(_) | Failure::Timeout { connect: false }
        )
    }

    /// In the same words as a failure reqwest met.
    pub fn describe(&self, connect_timeout: Duration, timeout: Duration) -> String {
        match self {
            Failure::Dns(e) => with_root(
                "DNS failure: the provider's host name could not be resolved",
                &chain(e),
            ),
            Failure::Timeout { connect: true } => format!(
                "connect timeout: no connection within {}",
                seconds(connect_timeout)
            ),
            Failure::Timeout { connect: false } => {
                format!("read timeout: no answer within {}", seconds(timeout))
            }
            Failure::Connect(e) | Failure::Tls(e) => describe_causes(&chain(e), true),
            Failure::Transport(e) => describe_causes(&chain(e), false),
        }
    }
}

/// The errors beneath reqwest's own, outermost first.
fn causes(error: &reqwest::Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = std::error::Error::source(error);
    while let Some(cause) = next {
        out.push(cause);
        next = cause.source();
    }
    out
}

/// `error` as a `T`, or the `T` an `io::Error` wraps, however deep: an io::Error's
/// `source()` skips the error it wraps, and the TLS stack wraps its errors in two.
fn find<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    if let Some(found) = error.downcast_ref::<T>() {
        return Some(found);
    }
    let mut inner = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    loop {
        if let Some(found) = inner.downcast_ref::<T>() {
            return Some(found);
        }
        inner = inner.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// `5 s`, `0.3 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
pub(in crate::provider) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    fn secret() -> Secret {
        Secret::new("EAAGtest0secret", "test").unwrap()
    }

    /// Posts to `url` with a client that waits `timeout` for an answer, and returns
    /// what the pipeline would record.
    async fn post(client: &reqwest::Client, url: &str, timeout: Duration) -> Response {
        let request = client.post(url).body("{}");
        match send(request, &secret(), timeout).await {
            Ok(answer) => panic!("an answer: HTTP {}", answer.status),
            Err(response) => response,
        }
    }

    /// Posts a message to `url` on a connection of its own, with a connect timeout
    /// of `connect`, and returns what the pipeline would record.
    async fn post_message(url: &str, connect: Duration, timeout: Duration) -> Response {
        post_on(super::super::wire::Wire::new(url, &[], connect, timeout, 1).unwrap()).await
    }

    async fn post_on(wire: super::super::wire::Wire) -> Response {
        let pace: Arc<dyn super::super::Pace> = gate(Duration::ZERO);
        match wire
            .send(
                Bytes::from_static(b"{}"),
                super::super::Departure::paced(pace),
                &secret(),
            )
            .await
        {
            Ok(answer) => panic!("an answer: HTTP {}", answer.status),
            Err(response) => response,
        }
    }

    fn detail(response: &Response) -> &str {
        match response {
            Response::NotSent { detail } | Response::InDoubt { detail } => detail,
            other => panic!("not a transport failure: {other:?}"),
        }
    }

    /// A loopback server that reads one request and then does `then` with the socket;
    /// returns its messages URL. The wire's tests use it too.
    pub(in crate::provider) async fn serve_once<F, Fut>(then: F) -> String
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let _ = socket.read(&mut buf).await;
            then(socket).await;
        });
        format!("http://{addr}/v23.0/1/messages")
    }

    /// A pacer that lets requests go after `hold`, counting what it was told.
    struct Gate {
        hold: Duration,
        asked: std::time::Instant,
        departed: std::sync::atomic::AtomicU32,
        abandoned: std::sync::atomic::AtomicU32,
    }

    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    impl super::super::Pace for Gate {
        fn depart(&self) -> Result<(), Duration> {
            let waited = self.asked.elapsed();
            if waited < self.hold {
                return Err(self.hold - waited);
            }
            self.departed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn abandon(&self) {
            self.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn gate(hold: Duration) -> Arc<Gate> {
        Arc::new(Gate {
            hold,
            asked: std::time::Instant::now(),
            departed: Default::default(),
            abandoned: Default::default(),
        })
    }

    /// Messages on connections of their own, and through reqwest (as with a proxy).
    fn messages(url: &str, timeout: Duration, proxied: bool) -> Messages {
        Messages::with_route(
            url,
            "application/json",
            "Bearer EAAGtest0secret",
            timeout,
            1,
            proxied,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_message_goes_when_the_pacer_lets_it_with_its_length() {
        for proxied in [false, true] {
            a_message_goes_when_the_pacer_lets_it(proxied).await;
        }
    }

    async fn a_message_goes_when_the_pacer_lets_it(proxied: bool) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut seen = Vec::new();
            // The head may come first: the body leaves when the pacer lets it.
            while !seen.ends_with(b"}") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the body");
                seen.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await;
        });
        let started = std::time::Instant::now();
        let gate = gate(Duration::from_millis(50));
        let pace: Arc<dyn super::super::Pace> = gate.clone();
        let answer = messages(
            &format!("http://{addr}/v23.0/1/messages"),
            Duration::from_secs(5),
            proxied,
        )
        .send(
            Bytes::from_static(b"{\"to\":\"1\"}"),
            super::super::Departure::paced(pace),
            &secret(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "held until let go"
        );
        let request = rx.await.unwrap().to_ascii_lowercase();
        assert!(request.contains("content-length: 10\r\n"), "{request}");
        assert!(
            request.contains("content-type: application/json\r\n"),
            "{request}"
        );
        assert!(
            request.contains("authorization: bearer eaagtest0secret\r\n"),
            "{request}"
        );
        assert!(
            request.starts_with("post /v23.0/1/messages http/1.1\r\n"),
            "{request}"
        );
        assert!(request.ends_with("{\"to\":\"1\"}"), "{request}");
        assert_eq!(gate.departed.load(Ordering::SeqCst), 1);
        assert_eq!(gate.abandoned.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_message_that_timed_out_before_it_left_was_not_sent() {
        for proxied in [false, true] {
            a_message_timed_out_before_it_left(proxied).await;
        }
    }

    async fn a_message_timed_out_before_it_left(proxied: bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut seen = Vec::new();
            // Whatever arrives until the client gives up.
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(seen);
        });
        // The pacer holds the request longer than the client waits for an answer.
        let gate = gate(Duration::from_secs(1));
        let timeout = Duration::from_millis(300);
        let client = messages(&format!("http://{addr}/v23.0/1/messages"), timeout, proxied);
        let pace: Arc<dyn super::super::Pace> = gate.clone();
        let response = client
            .send(
                Bytes::from_static(b"{\"to\":\"1\"}"),
                super::super::Departure::paced(pace),
                &secret(),
            )
            .await
            .err()
            .expect("no answer");
        assert!(matches!(response, Response::NotSent { .. }), "{response:?}");
        // The connection still holds the request: once the pacer would let it go, it
        // must not, since it was recorded as never sent.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (departed, abandoned) = (
            gate.departed.load(Ordering::SeqCst),
            gate.abandoned.load(Ordering::SeqCst),
        );
        assert_eq!(
            departed + abandoned,
            1,
            "{departed} departed, {abandoned} given back"
        );
        drop(client);
        let seen = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("the connection closes")
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&seen).contains("{\"to\""),
            "the body never went: {}",
            String::from_utf8_lossy(&seen)
        );
    }

    #[tokio::test]
    async fn a_redirect_is_answered_as_it_came_and_not_followed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        seen.fetch_add(1, Ordering::SeqCst);
                        let _ = socket
                            .write_all(
                                b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                    }
                });
            }
        });
        let client = client(Duration::from_secs(5), 1).unwrap();
        let request = client
            .post(format!("http://{addr}/v23.0/1/messages"))
            .body("{}");
        let answer = send(request, &secret(), Duration::from_secs(5))
            .await
            .unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(answer.status, 307);
        assert_eq!(
            requests.load(Ordering::SeqCst),
            1,
            "not sent again elsewhere"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_says_so_and_was_not_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = client(Duration::from_secs(5), 1).unwrap();
        let url = format!("http://127.0.0.1:{port}/v23.0/1/messages");
        for response in [
            post(&client, &url, Duration::from_secs(5)).await,
            post_message(&url, CONNECT_TIMEOUT, Duration::from_secs(5)).await,
        ] {
            assert!(matches!(response, Response::NotSent { .. }), "{response:?}");
            let detail = detail(&response);
            assert!(
                detail.starts_with(
                    "connection refused: nothing is listening at the provider's address ("
                ),
                "{detail}"
            );
            assert!(!detail.contains("127.0.0.1"), "no URL: {detail}");
        }
    }

    #[tokio::test]
    async fn a_reset_connection_says_so_and_is_in_doubt() {
        let reset = |socket: tokio::net::TcpStream| async move {
            socket.set_zero_linger().unwrap();
            drop(socket);
        };
        let client = client(Duration::from_secs(5), 1).unwrap();
        let timeout = Duration::from_secs(5);
        for response in [
            post(&client, &serve_once(reset).await, timeout).await,
            post_message(&serve_once(reset).await, CONNECT_TIMEOUT, timeout).await,
        ] {
            assert!(matches!(response, Response::InDoubt { .. }), "{response:?}");
            let detail = detail(&response);
            assert!(
                detail.starts_with("connection reset by the server ("),
                "{detail}"
            );
        }
    }

    #[tokio::test]
    async fn a_connection_closed_without_an_answer_says_so() {
        let close = |socket: tokio::net::TcpStream| async move { drop(socket) };
        let client = client(Duration::from_secs(5), 1).unwrap();
        let timeout = Duration::from_secs(5);
        for response in [
            post(&client, &serve_once(close).await, timeout).await,
            post_message(&serve_once(close).await, CONNECT_TIMEOUT, timeout).await,
        ] {
            assert!(matches!(response, Response::InDoubt { .. }), "{response:?}");
            assert_eq!(
                detail(&response),
                "connection closed by the server before an answer"
            );
        }
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_read_timeout() {
        let silent = |socket: tokio::net::TcpStream| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(socket);
        };
        let timeout = Duration::from_millis(300);
        let client = client(timeout, 1).unwrap();
        for response in [
            post(&client, &serve_once(silent).await, timeout).await,
            post_message(&serve_once(silent).await, CONNECT_TIMEOUT, timeout).await,
        ] {
            assert!(matches!(response, Response::InDoubt { .. }), "{response:?}");
            assert_eq!(detail(&response), "read timeout: no answer within 0.3 s");
        }
    }

    #[tokio::test]
    async fn a_server_that_speaks_no_tls_is_a_tls_failure() {
        let plain = |mut socket: tokio::net::TcpStream| async move {
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        };
        let https = |url: String| url.replacen("http://", "https://", 1);
        let client = client(Duration::from_secs(5), 1).unwrap();
        let timeout = Duration::from_secs(5);
        for response in [
            post(&client, &https(serve_once(plain).await), timeout).await,
            post_message(&https(serve_once(plain).await), CONNECT_TIMEOUT, timeout).await,
        ] {
            assert!(matches!(response, Response::NotSent { .. }), "{response:?}");
            let detail = detail(&response);
            assert!(detail.starts_with("TLS failure: "), "{detail}");
        }
    }

    /// A resolver that knows no names, so no test reaches a real one.
    struct NoSuchHost;

    impl reqwest::dns::Resolve for NoSuchHost {
        fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
            Box::pin(async { Err("no such host (test resolver)".into()) })
        }
    }

    impl super::super::wire::Resolve for NoSuchHost {
        fn resolve(
            &self,
            _: &str,
            _: u16,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = std::io::Result<Vec<std::net::SocketAddr>>> + Send + '_>,
        > {
            Box::pin(async { Err(std::io::Error::other("no such host (test resolver)")) })
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_dns_failure() {
        let client = builder(CONNECT_TIMEOUT, Duration::from_secs(5), 1)
            .dns_resolver(NoSuchHost)
            .build()
            .unwrap();
        let response = post(
            &client,
            "http://graph.provider.invalid/v23.0/1/messages",
            Duration::from_secs(5),
        )
        .await;
        let wire = super::super::wire::Wire::new(
            "http://graph.provider.invalid/v23.0/1/messages",
            &[],
            CONNECT_TIMEOUT,
            Duration::from_secs(5),
            1,
        )
        .unwrap()
        .with_resolver(Arc::new(NoSuchHost));
        for response in [response, post_on(wire).await] {
            assert!(matches!(response, Response::NotSent { .. }), "{response:?}");
            assert_eq!(
                detail(&response),
                "DNS failure: the provider's host name could not be resolved \
                 (no such host (test resolver))"
            );
        }
    }

    /// A listener whose accept queue is full drops further SYNs, so a connection
    /// to it never opens: a connect timeout on loopback.
    #[tokio::test]
    async fn a_connection_that_never_opens_is_a_connect_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // SAFETY: listen(2) on a socket this test owns; a backlog of 0 keeps at most
        // one connection waiting.
        assert_eq!(
            unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) },
            0
        );
        let mut held = Vec::new();
        for _ in 0..4 {
            if let Ok(stream) =
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            {
                held.push(stream);
            }
        }
        let connect = Duration::from_millis(300);
        let client = builder(connect, Duration::from_secs(5), 1).build().unwrap();
        let url = format!("http://{addr}/v23.0/1/messages");
        let error = client.post(&url).send().await.unwrap_err();
        let response = transport_error(&error, &secret(), connect, Duration::from_secs(5), true);
        for response in [
            response,
            post_message(&url, connect, Duration::from_secs(5)).await,
        ] {
            assert!(matches!(response, Response::NotSent { .. }), "{response:?}");
            assert_eq!(
                detail(&response),
                "connect timeout: no connection within 0.3 s"
            );
        }
        drop(held);
    }

    #[test]
    fn messages_go_through_reqwest_only_when_a_proxy_is_set() {
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(!proxy_configured(env(&[])));
        assert!(
            !proxy_configured(env(&[("HTTPS_PROXY", "")])),
            "empty is unset"
        );
        assert!(!proxy_configured(env(&[("NO_PROXY", "*")])));
        for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "all_proxy"] {
            let set: &'static [(&'static str, &'static str)] =
                Box::leak(Box::new([(name, "http://proxy.example:3128")]));
            assert!(proxy_configured(env(set)), "{name}");
        }
        let url = "http://127.0.0.1:9/v23.0/1/messages";
        let timeout = Duration::from_secs(1);
        assert!(matches!(
            Messages::with_route(url, "application/json", "Bearer x", timeout, 1, false),
            Ok(Messages::Direct(_))
        ));
        assert!(matches!(
            Messages::with_route(url, "application/json", "Bearer x", timeout, 1, true),
            Ok(Messages::Proxied { .. })
        ));
    }

    #[test]
    fn a_snippet_does_not_repeat_the_status() {
        let answer = Answer {
            status: 500,
            retry_after: None,
            body: Bytes::from_static(b"<html>Internal Server Error</html>\n"),
        };
        let secret = Secret::new("EAAGsecret0123456789abcdefABCDEF", "test").unwrap();
        assert_eq!(
            answer.snippet(&secret),
            "<html>Internal Server Error</html>"
        );
        let empty = Answer {
            status: 502,
            retry_after: None,
            body: Bytes::new(),
        };
        assert_eq!(empty.snippet(&secret), "(empty body)");
    }

    #[test]
    fn a_secret_that_crosses_the_snippets_end_leaves_none_of_itself() {
        let secret = Secret::new("EAAGsecret0123456789abcdefABCDEF", "test").unwrap();
        // The secret starts 10 characters before the cut.
        let body = format!(
            "<html>{} token=EAAGsecret0123456789abcdefABCDEF</html>",
            "x".repeat(277)
        );
        let answer = Answer {
            status: 502,
            retry_after: None,
            body: Bytes::from(body),
        };
        let snippet = answer.snippet(&secret);
        assert!(!snippet.contains("EAAG"), "{snippet}");
        assert_eq!(snippet.chars().count(), 300);
        assert!(snippet.ends_with("x token=[redacted]"), "{snippet}");
    }

    #[test]
    fn retry_after_is_read_in_both_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
