//! The loopback Cloud API the send benchmarks talk to, in a child process so its CPU
//! is measured apart from the sender's: a minimal HTTP/1.1 server on tokio that
//! answers every request like Meta's Cloud API (`messages[0].id` a unique wamid,
//! `contacts[0].wa_id`) after a fixed latency, keeps each request's receive time and,
//! if asked, appends each request's `to` to a log file as it arrives.
//!
//! A request's receive time is the kernel's (`SO_TIMESTAMPNS`): when its last bytes
//! reached this machine's socket, as a provider's edge would count it, not when this
//! server's one thread got round to reading it. Under load, a new connection can
//! wait in the accept queue for milliseconds and then be read together with others,
//! which bunched receive times taken by the server's own clock into false bursts.
//!
//! The server runs as `SCHED_BATCH`, so that when a sender's request wakes it, it does
//! not preempt the sender on the sender's own CPU: a provider is another machine,
//! and on a 2-core box the woken server otherwise cost the sender about one
//! involuntary context switch per message, which no real send pays. Every sender
//! measured against it (the engine and the Python peer alike) gets the same server.
//! `BENCH_SERVER_NORMAL=1` runs it as an ordinary process, as before.
//!
//! An example that uses it runs itself again as `EXAMPLE serve LATENCY_MS [LOG]` and
//! hands that mode to [`serve`].

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

/// The server child: its port, and a pipe whose closing tells it to stop.
pub struct Server {
    pub port: u16,
    child: Child,
}

/// What the server saw.
pub struct Served {
    pub count: u64,
    /// Receive times of the first and last request, from the server's start.
    pub first: Duration,
    pub last: Duration,
    /// The most requests received in any one-second window.
    pub busiest_second: u64,
    pub cpu: Duration,
}

impl Served {
    /// (count − 1) / (last receive − first receive).
    pub fn achieved_rate(&self) -> f64 {
        self.count.saturating_sub(1) as f64 / self.span().as_secs_f64()
    }

    pub fn span(&self) -> Duration {
        self.last.saturating_sub(self.first)
    }
}

impl Server {
    /// Starts `current_exe() serve LATENCY_MS [LOG]` and reads its port.
    pub fn start(latency: Duration, log: Option<&Path>) -> anyhow::Result<Server> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["serve", &latency.as_millis().to_string()]);
        if let Some(log) = log {
            command.arg(log);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().context("server stdout")?).read_line(&mut line)?;
        let port = line.trim().parse().context("the server's port")?;
        Ok(Server { port, child })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) -> anyhow::Result<Served> {
        drop(self.child.stdin.take());
        let mut report = String::new();
        self.child
            .stdout
            .take()
            .context("server stdout")?
            .read_to_string(&mut report)?;
        let (status, usage) = super::wait_with_rusage(self.child.id())?;
        if status != 0 {
            bail!("the server exited with {status}");
        }
        let fields: Vec<u64> = report
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("the server's report")?;
        let [count, first, last, busiest_second] = fields[..] else {
            bail!("the server's report: `{report}`");
        };
        Ok(Served {
            count,
            first: Duration::from_micros(first),
            last: Duration::from_micros(last),
            busiest_second,
            cpu: super::timeval(usage.ru_utime) + super::timeval(usage.ru_stime),
        })
    }
}

/// The `serve` mode's arguments after `serve`: `LATENCY_MS [LOG]`.
pub fn serve_args(args: &[String]) -> anyhow::Result<()> {
    let latency: u64 = args
        .first()
        .map_or(Ok(0), |a| a.parse())
        .context("serve LATENCY_MS [LOG]")?;
    serve(
        Duration::from_millis(latency),
        args.get(1).map(PathBuf::from),
    )
}

/// Prints its port, serves until stdin closes, then prints
/// `count first_us last_us busiest_second`.
pub fn serve(latency: Duration, log: Option<PathBuf>) -> anyhow::Result<()> {
    if std::env::var_os("BENCH_SERVER_NORMAL").is_none() {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler(2) on this process, with a valid parameter.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        anyhow::ensure!(
            rc == 0,
            "sched_setscheduler: {}",
            std::io::Error::last_os_error()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let log = log
        .map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))
        })
        .transpose()?;
    let shared = Arc::new(Shared {
        times: Mutex::new(Vec::with_capacity(1 << 20)),
        log: log.map(Mutex::new),
        started: wall_ns(),
        latency,
    });
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.cancel();
        });
    }
    let serving = Arc::clone(&shared);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        std::io::stdout().flush()?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    stream.set_nodelay(true)?;
                    timestamp_receives(&stream)?;
                    tokio::spawn(connection(stream, Arc::clone(&serving)));
                }
                () = stop.cancelled() => break,
            }
        }
        anyhow::Ok(())
    })?;
    let mut times = shared
        .times
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    times.sort_unstable();
    let mut busiest = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while *t >= times[start] + 1_000_000 {
            start += 1;
        }
        busiest = busiest.max(end + 1 - start);
    }
    let first = times.first().copied().unwrap_or(0);
    // Each gap with where it began, in ms from the first request: a stall at the
    // start, the end or a steady beat each point somewhere else.
    let mut gaps: Vec<(u64, u64)> = times
        .windows(2)
        .map(|w| (w[1] - w[0], (w[0] - first) / 1000))
        .collect();
    gaps.sort_unstable();
    eprintln!(
        "  server: longest gaps between requests (us, at ms): {:?}",
        gaps.iter().rev().take(8).collect::<Vec<_>>()
    );
    if std::env::var_os("BENCH_SERVER_SECONDS").is_some() {
        // Requests per second of the run, from the first: where a rate is lost.
        let mut per_second = Vec::new();
        for t in &times {
            let i = usize::try_from((t - first) / 1_000_000).unwrap_or(0);
            if per_second.len() <= i {
                per_second.resize(i + 1, 0u32);
            }
            per_second[i] += 1;
        }
        let mut first_ms = [0u32; 10];
        for t in &times {
            let i = usize::try_from((t - first) / 100_000).unwrap_or(usize::MAX);
            if let Some(n) = first_ms.get_mut(i) {
                *n += 1;
            }
        }
        eprintln!("  server: per second {per_second:?}; first second per 100 ms {first_ms:?}");
    }
    println!(
        "{} {} {} {busiest}",
        times.len(),
        times.first().unwrap_or(&0),
        times.last().unwrap_or(&0)
    );
    Ok(())
}

struct Shared {
    times: Mutex<Vec<u64>>,
    /// Each request's `to`, one a line, written as the request is read (one `write`
    /// on an append-only file, so a reader sees whole lines).
    log: Option<Mutex<std::fs::File>>,
    /// `CLOCK_REALTIME` at the start, in ns: the kernel's receive stamps use it.
    started: i128,
    latency: Duration,
}

fn wall_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Asks the kernel to stamp each packet this socket receives.
fn timestamp_receives(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket this server owns, with an int option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reads what is there, with the kernel's receive stamp of the last packet read.
async fn read_stamped(
    stream: &tokio::net::TcpStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<i128>)> {
    loop {
        stream.readable().await?;
        match stream.try_io(tokio::io::Interest::READABLE, || recv_stamped(stream, buf)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => return other,
        }
    }
}

fn recv_stamped(
    stream: &tokio::net::TcpStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<i128>)> {
    use std::os::fd::AsRawFd as _;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: a zeroed msghdr is valid; it points at `iov` and `control`, which
    // outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg into buffers this function owns.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &raw mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

async fn connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut stream = stream;
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut response = Vec::with_capacity(512);
    let mut stamp = None;
    loop {
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match read_stamped(&stream, &mut chunk).await {
                Ok((0, _)) | Err(_) => return,
                Ok((n, at)) => {
                    buffer.extend_from_slice(&chunk[..n]);
                    stamp = at.or(stamp);
                }
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            match read_stamped(&stream, &mut chunk).await {
                Ok((0, _)) | Err(_) => return,
                Ok((n, at)) => {
                    buffer.extend_from_slice(&chunk[..n]);
                    stamp = at.or(stamp);
                }
            }
        }
        let at = stamp.take().unwrap_or_else(wall_ns);
        let received = u64::try_from((at - shared.started) / 1000).unwrap_or(0);
        let n = {
            let mut times = shared
                .times
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            times.push(received);
            times.len()
        };
        let body = &buffer[head_end..head_end + length];
        let to = find_to(body).unwrap_or("+0").to_owned();
        if let Some(log) = &shared.log {
            let mut file = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = file.write_all(format!("{to}\n").as_bytes()) {
                eprintln!("  server: writing the log: {e}");
            }
        }
        buffer.drain(..head_end + length);
        if !shared.latency.is_zero() {
            tokio::time::sleep(shared.latency).await;
        }
        let payload = format!(
            "{{\"messaging_product\":\"whatsapp\",\"contacts\":[{{\"input\":\"{to}\",\"wa_id\":\"{}\"}}],\
             \"messages\":[{{\"id\":\"wamid.HBgNBENCH{n:016X}\",\"message_status\":\"accepted\"}}]}}",
            to.trim_start_matches('+')
        );
        response.clear();
        let _ = write!(
            response,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        );
        if stream.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// The `to` of a request body, without parsing the whole JSON (compact or not).
fn find_to(body: &[u8]) -> Option<&str> {
    let key = b"\"to\"";
    let mut rest = &body[body.windows(key.len()).position(|w| w == key)? + key.len()..];
    while let [b' ' | b':', tail @ ..] = rest {
        rest = tail;
    }
    let rest = rest.strip_prefix(b"\"")?;
    let len = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..len]).ok()
}
