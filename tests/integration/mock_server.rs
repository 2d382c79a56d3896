//! A scriptable fake of Meta's Cloud API on 127.0.0.1, for the send tests.
//!
//! It is a small HTTP/1.1 server on a raw `tokio::net::TcpListener`, not an axum
//! router, because one of the things it must do is read a request in full and then
//! close the connection without answering: the case where the client cannot know
//! whether the message went out. An axum handler can only do that by panicking; here
//! it is dropping a socket. Everything else is just as simple by hand: reqwest sends
//! `Content-Length` bodies and keeps connections alive, and the server answers with
//! `Content-Length` too.
//!
//! It runs on its own thread with its own tokio runtime, so a test blocked on a
//! subprocess never stalls it. It logs every request it reads in full (the test
//! oracle): the order it came in, the recipient `to`, when the body's last byte was
//! read, the headers, and what it answered. What it answers is a [`Rule`] from each
//! request to a [`Reply`], and a latency added to every answer; both can be changed
//! while a campaign runs.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What the server answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200 with a Cloud API send response and a fresh wamid.
    Accept,
    /// A Graph API error: `{"error":{"message":..,"type":"OAuthException","code":..}}`.
    Graph {
        status: u16,
        code: i64,
        message: String,
        /// Sent as a `Retry-After` header (seconds) when set.
        retry_after: Option<u64>,
    },
    /// 429 with `Retry-After` (seconds) and no Graph error code.
    TooMany { retry_after: u64 },
    /// This HTTP status with a body that is not a Graph error, as a proxy in front of
    /// Meta would send.
    Status(u16),
    /// Accepts the message but answers only after this long (longer than the client's
    /// timeout, in the tests).
    Slow(Duration),
    /// Reads the request in full, then closes the connection without a word.
    Drop,
    /// 401 with code 190 whose message repeats the request's `Authorization` header,
    /// as a hostile or careless server might.
    EchoAuthorization,
    /// 200, with the request's `Authorization` header as the wamid, the WhatsApp ID
    /// and the message status.
    AcceptEchoingAuthorization,
    /// This status and body, as given (any provider's error document, or none).
    Raw { status: u16, body: String },
}

impl Reply {
    /// A Graph error with this code, as HTTP 400.
    pub fn graph(code: i64, message: &str) -> Reply {
        Reply::Graph {
            status: 400,
            code,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    /// Whether the message was taken (a 200 was, or would have been, sent).
    pub fn accepts(&self) -> bool {
        matches!(
            self,
            Reply::Accept | Reply::Slow(_) | Reply::AcceptEchoingAuthorization
        )
    }
}

/// A request as the [`Rule`] sees it.
#[derive(Debug)]
pub struct Request<'a> {
    /// 1 for the first request the server read, 2 for the next...
    pub n: usize,
    /// The recipient, as sent (`+525512345678`).
    pub to: &'a str,
    /// How many requests for this recipient came before this one.
    pub earlier_for_recipient: usize,
    /// The request target: path and query (`/v23.0/1/message_templates?...`).
    pub path: &'a str,
}

pub type Rule = Arc<dyn Fn(&Request<'_>) -> Reply + Send + Sync>;

/// One request the server read in full.
#[derive(Debug, Clone)]
pub struct Received {
    pub n: usize,
    pub to: String,
    /// When its last byte was read, from when the server started.
    pub at: Duration,
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub reply: Reply,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Script {
    rule: Rule,
    latency: Duration,
}

struct Shared {
    started: Instant,
    script: Mutex<Script>,
    log: Mutex<Vec<Received>>,
    per_recipient: Mutex<HashMap<String, usize>>,
}

/// A running mock Cloud API; stopped when dropped.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has already failed; keep serving.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MockServer {
    /// A server on a free port that accepts every message at once.
    pub fn start() -> MockServer {
        MockServer::on(StdListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0"))
    }

    /// A server on `port`, which must be free (the connection-refused test picks a
    /// port, lets the client fail on it, then starts the server there).
    pub fn start_on(port: u16) -> MockServer {
        MockServer::on(
            StdListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}")),
        )
    }

    /// A server on `listener`, bound by the test (one whose queue of connections
    /// was full until now, say).
    pub fn on(listener: StdListener) -> MockServer {
        listener
            .set_nonblocking(true)
            .expect("making the listener non-blocking");
        let addr = listener.local_addr().expect("the listener's address");
        let shared = Arc::new(Shared {
            started: Instant::now(),
            script: Mutex::new(Script {
                rule: Arc::new(|_| Reply::Accept),
                latency: Duration::ZERO,
            }),
            log: Mutex::new(Vec::new()),
            per_recipient: Mutex::new(HashMap::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("mock-cloud-api-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("starting the mock server's runtime");
                runtime.block_on(async move {
                    let listener =
                        TcpListener::from_std(listener).expect("registering the listener");
                    tokio::select! {
                        () = accept_loop(listener, serving) => {},
                        _ = stopped => {},
                    }
                });
            })
            .expect("starting the mock server's thread");
        MockServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// What the campaign's `provider.base_url` should say.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every request from now on by `rule`.
    pub fn set_rule(&self, rule: impl Fn(&Request<'_>) -> Reply + Send + Sync + 'static) {
        lock(&self.shared.script).rule = Arc::new(rule);
    }

    /// Waits this long before every answer from now on.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.script).latency = latency;
    }

    /// Every request read so far, in the order they came in.
    pub fn log(&self) -> Vec<Received> {
        lock(&self.shared.log).clone()
    }

    /// How many requests were read so far.
    pub fn count(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Waits until at least `n` requests were read, or `timeout` passed; true if they were.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
    }
}

/// A request line and headers, parsed.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    content_length: usize,
}

fn parse_head(text: &str) -> Option<Head> {
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let mut headers = Vec::new();
    let mut content_length = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        if name == "content-length" {
            content_length = value.parse().ok()?;
        }
        headers.push((name, value));
    }
    Some(Head {
        method,
        path,
        headers,
        content_length,
    })
}

/// Serves the requests of one keep-alive connection, one after the other.
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let Some(head) = std::str::from_utf8(&buffer[..head_end])
            .ok()
            .and_then(parse_head)
        else {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        while buffer.len() < head_end + head.content_length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let at = shared.started.elapsed();
        let body: Value = serde_json::from_slice(&buffer[head_end..head_end + head.content_length])
            .unwrap_or(Value::Null);
        buffer.drain(..head_end + head.content_length);

        let to = body["to"].as_str().unwrap_or_default().to_owned();
        let (reply, latency, n) = {
            // The log's lock is held while the rule runs, so `n` is the arrival order.
            let mut log = lock(&shared.log);
            let n = log.len() + 1;
            let earlier = {
                let mut seen = lock(&shared.per_recipient);
                let count = seen.entry(to.clone()).or_insert(0);
                *count += 1;
                *count - 1
            };
            let (rule, latency) = {
                let script = lock(&shared.script);
                (Arc::clone(&script.rule), script.latency)
            };
            let reply = rule(&Request {
                n,
                to: &to,
                earlier_for_recipient: earlier,
                path: &head.path,
            });
            log.push(Received {
                n,
                to: to.clone(),
                at,
                method: head.method.clone(),
                path: head.path.clone(),
                headers: head.headers.clone(),
                body,
                reply: reply.clone(),
            });
            (reply, latency, n)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let authorization = head
            .headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        let (status, extra_header, payload) = match &reply {
            Reply::Drop => return,
            Reply::Accept => (200, None, accepted(&to, n)),
            Reply::Slow(delay) => {
                tokio::time::sleep(*delay).await;
                (200, None, accepted(&to, n))
            }
            Reply::Graph {
                status,
                code,
                message,
                retry_after,
            } => (*status, *retry_after, graph_error(*code, message)),
            Reply::TooMany { retry_after } => (
                429,
                Some(*retry_after),
                "{\"message\":\"slow down\"}".to_owned(),
            ),
            Reply::Status(status) => (
                *status,
                None,
                format!("<html><body><h1>{status}</h1>upstream error</body></html>"),
            ),
            Reply::Raw { status, body } => (*status, None, body.clone()),
            Reply::AcceptEchoingAuthorization => (
                200,
                None,
                json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": authorization}],
                    "messages": [{"id": authorization, "message_status": authorization}]
                })
                .to_string(),
            ),
            Reply::EchoAuthorization => (
                401,
                None,
                graph_error(
                    190,
                    &format!(
                        "Invalid OAuth access token - Cannot parse access token: {authorization}"
                    ),
                ),
            ),
        };
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            reason(status),
            payload.len()
        );
        if let Some(seconds) = extra_header {
            response.push_str(&format!("retry-after: {seconds}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&payload);
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn accepted(to: &str, n: usize) -> String {
    json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to.trim_start_matches('+')}],
        "messages": [{"id": format!("wamid.HBgNMOCK{n:012X}"), "message_status": "accepted"}]
    })
    .to_string()
}

fn graph_error(code: i64, message: &str) -> String {
    json!({
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "AbCdEfGhIjKlMnOpQrStUvW"
        }
    })
    .to_string()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
