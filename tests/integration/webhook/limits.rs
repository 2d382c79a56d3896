//! What a client that never finishes can do to `webhook serve`: nothing lasting.
//! Raw TCP clients on 127.0.0.1 send part of a request and stop (slowloris), or
//! dribble it a byte at a time, while the real server runs with small limits.
//!
//! Timing bounds are generous multiples of the configured timeouts, so a loaded
//! machine slows the tests down without failing them.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::harness::{APP_SECRET, Server, Workspace, meta_signature};
use super::{now, status, statuses};

/// How long a test waits for the server to close a connection before calling it
/// held open forever.
const PATIENCE: Duration = Duration::from_secs(20);

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.address()).expect("connecting to the server");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// The start of a POST whose headers never end.
fn slow_headers(server: &Server) -> TcpStream {
    let mut stream = connect(server);
    write!(
        stream,
        "POST /webhook/meta HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
        server.address()
    )
    .unwrap();
    stream
}

/// A POST whose headers are complete but whose body never is.
fn slow_body(server: &Server) -> TcpStream {
    let mut stream = connect(server);
    write!(
        stream,
        "POST /webhook/meta HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: sha256=00\r\nContent-Length: 1000\r\n\r\n{{\"object\":",
        server.address()
    )
    .unwrap();
    stream
}

/// Writes one more byte every 100 ms until the server stops reading or `done`:
/// each byte is progress, so only a deadline on the whole request ends it.
fn dribble(stream: &TcpStream, done: &Arc<AtomicBool>) -> JoinHandle<()> {
    let mut stream = stream.try_clone().unwrap();
    let done = Arc::clone(done);
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            if stream.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Reads until the server closes the connection; returns what it sent and how long
/// that took, or panics after [`PATIENCE`].
fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            // A reset closes it too: the server dropped it with bytes unread.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the server kept the connection open for {:?}; it sent {:?}",
                    started.elapsed(),
                    String::from_utf8_lossy(&received)
                )
            }
            Err(e) => panic!("reading from the server: {e}"),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

fn delivery() -> serde_json::Value {
    statuses(vec![status(
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5",
        "delivered",
        now(),
        "16505551234",
        None,
    )])
}

#[test]
fn slow_headers_and_slow_bodies_are_disconnected() {
    let ws = Workspace::new();
    let server = Server::start(&ws, &["--header-timeout", "1", "--body-timeout", "1"]);
    let done = Arc::new(AtomicBool::new(false));

    let mut silent_headers = slow_headers(&server);
    let mut dribbled_headers = slow_headers(&server);
    let mut silent_body = slow_body(&server);
    let mut dribbled_body = slow_body(&server);
    let writers = [
        dribble(&dribbled_headers, &done),
        dribble(&dribbled_body, &done),
    ];

    for (name, stream, expected_status) in [
        ("silent headers", &mut silent_headers, None),
        ("dribbled headers", &mut dribbled_headers, None),
        ("silent body", &mut silent_body, Some("HTTP/1.1 408")),
        ("dribbled body", &mut dribbled_body, Some("HTTP/1.1 408")),
    ] {
        let (answer, took) = read_until_closed(stream);
        // 1 s configured; 10 s is slack for a loaded machine, far from "never".
        assert!(
            took < Duration::from_secs(10),
            "{name}: closed after {took:?}"
        );
        if let Some(expected) = expected_status {
            assert!(answer.starts_with(expected), "{name}: answered {answer:?}");
        }
    }
    done.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }

    // A client that sends its whole request promptly is unaffected.
    let reply = server.post_meta_signed(&delivery());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(ws.count("SELECT count(*) FROM webhook_deliveries"), 1);
}

#[test]
fn more_slow_clients_than_the_bound_cannot_lock_out_a_delivery() {
    const BOUND: usize = 8;
    const SLOW_CLIENTS: usize = 40;
    let ws = Workspace::new();
    let server = Server::start(
        &ws,
        &[
            "--max-connections",
            &BOUND.to_string(),
            "--header-timeout",
            "1",
        ],
    );
    let idle_sockets = server.open_sockets();
    let slow: Vec<TcpStream> = (0..SLOW_CLIENTS).map(|_| slow_headers(&server)).collect();

    // A signed delivery sent behind them is still recorded: the slow ones are
    // closed as their header deadline passes, and it is accepted in turn.
    let posted = {
        let base = server.base.clone();
        std::thread::spawn(move || {
            let body = serde_json::to_vec(&delivery()).unwrap();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into();
            let started = Instant::now();
            let response = agent
                .post(format!("{base}/webhook/meta"))
                .content_type("application/json")
                .header("X-Hub-Signature-256", meta_signature(APP_SECRET, &body))
                .send(&body[..])
                .expect("the delivery is answered");
            (response.status().as_u16(), started.elapsed())
        })
    };

    // Meanwhile the server never holds more than the bound: the rest wait in the
    // kernel's backlog, costing it no file.
    let mut most = 0;
    while !posted.is_finished() {
        most = most.max(server.open_sockets());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, took) = posted.join().unwrap();
    assert_eq!(status, 200, "{}", server.log());
    assert_eq!(ws.count("SELECT count(*) FROM webhook_deliveries"), 1);
    assert!(
        most <= idle_sockets + BOUND,
        "the server held {most} sockets with {SLOW_CLIENTS} slow clients \
         ({idle_sockets} when idle, bound {BOUND})"
    );
    // 40 slow clients, 8 at a time, 1 s each: about 5 s; 30 s is slack.
    assert!(took < Duration::from_secs(30), "the delivery took {took:?}");
    drop(slow);
}

#[test]
fn sigterm_with_slow_clients_open_stops_within_its_grace_and_never_answers_200_unrecorded() {
    let ws = Workspace::new();
    // Deadlines far longer than the test, so only the stop can end these clients.
    let server = Server::start(
        &ws,
        &[
            "--header-timeout",
            "120",
            "--body-timeout",
            "120",
            "--shutdown-grace",
            "2",
        ],
    );
    let mut slow: Vec<TcpStream> = (0..5).map(|_| slow_headers(&server)).collect();
    slow.extend((0..5).map(|_| slow_body(&server)));

    // Another process holds the database's write lock, so a delivery that arrives
    // now cannot be recorded before the stop.
    let blocker = rusqlite::Connection::open(ws.db()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let in_flight = {
        let base = server.base.clone();
        std::thread::spawn(move || {
            let body = serde_json::to_vec(&delivery()).unwrap();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into();
            agent
                .post(format!("{base}/webhook/meta"))
                .content_type("application/json")
                .header("X-Hub-Signature-256", meta_signature(APP_SECRET, &body))
                .send(&body[..])
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    let started = Instant::now();
    let (exit, log) = server.stop();
    let took = started.elapsed();
    assert!(exit.success(), "{exit}: {log}");
    // 2 s of grace, a 2 s flush and 2 s for the writer at most: 15 s is slack. The
    // harness kills it after 20 s, which `success` above would catch.
    assert!(
        took < Duration::from_secs(15),
        "stopped after {took:?}: {log}"
    );

    // The delivery was not recorded, so it must not have been answered 200: an
    // error answer (or a dropped connection) makes Meta send it again.
    let answered = in_flight.join().unwrap();
    assert!(
        !matches!(answered, Ok(200)),
        "answered 200 for a delivery that is not on disk: {log}"
    );
    assert!(
        matches!(answered, Ok(503)),
        "expected 503, got {answered:?}: {log}"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(ws.count("SELECT count(*) FROM webhook_deliveries"), 0);

    // Every slow client was let go; those mid-body were told to send again.
    for (i, stream) in slow.iter_mut().enumerate() {
        let (answer, _) = read_until_closed(stream);
        if i >= 5 {
            assert!(answer.starts_with("HTTP/1.1 503"), "client {i}: {answer:?}");
        }
    }
}

#[test]
fn idle_keep_alive_connections_are_reused_then_closed_after_the_header_timeout() {
    let ws = Workspace::new();
    let server = Server::start(&ws, &["--header-timeout", "3"]);
    let mut stream = connect(&server);
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.address()
    );
    for _ in 0..3 {
        stream.write_all(request.as_bytes()).unwrap();
        let answer = read_health_answer(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with("ok\n"), "{answer:?}");
        // Idle between requests, well inside the timeout.
        std::thread::sleep(Duration::from_millis(500));
    }
    // Left idle, it is closed so it cannot hold a slot for ever.
    let (rest, took) = read_until_closed(&mut stream);
    assert_eq!(rest, "");
    assert!(took < Duration::from_secs(15), "closed after {took:?}");
}

/// One answer to `GET /healthz`, read from a connection that stays open.
fn read_health_answer(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.ends_with(b"ok\n") {
        let n = stream
            .read(&mut buf)
            .expect("an answer on the same connection");
        assert!(
            n > 0,
            "closed after {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&received).into_owned()
}
