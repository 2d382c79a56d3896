//! The real `wacampaign webhook serve` on a free port of 127.0.0.1, a client that
//! signs requests the way Meta and Twilio do (written here from their documented
//! algorithms, not with the library's own signer), and a view of the database.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use tempfile::TempDir;

pub const APP_SECRET: &str = "test-app-secret-0123456789";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const TWILIO_TOKEN: &str = "test-twilio-auth-token";
/// The URL Twilio is told to call, behind an imagined TLS proxy.
pub const TWILIO_URL: &str = "https://hooks.example.test/webhook/twilio";

/// `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body, keyed
/// with the app secret (Meta's "Validating payloads").
pub fn meta_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `X-Twilio-Signature`: base64 of the HMAC-SHA1, keyed with the auth token, of the
/// full URL followed by each POST parameter's name and value, sorted by name
/// (Twilio's "Validating requests").
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn form(params: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
        .into_bytes()
}

/// A scratch directory with the database the server and the commands share.
pub struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("wacampaign.db")
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The binary run here, with deterministic output.
    pub fn wacampaign(&self) -> assert_cmd::Command {
        crate::support::wacampaign_in(self.path(), &self.db())
    }

    /// Every row of every table the webhook server may write, as text: equal
    /// snapshots mean nothing was recorded.
    pub fn snapshot(&self) -> String {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        let mut out = String::new();
        for table in [
            "webhook_deliveries",
            "message_statuses",
            "inbound_messages",
            "number_links",
            "consent_events",
            "journal",
        ] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
                .unwrap();
            let columns = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            out.push_str(&format!("[{table}]\n"));
            while let Some(row) = rows.next().unwrap() {
                for i in 0..columns {
                    out.push_str(&format!("{:?}|", row.get_ref(i).unwrap()));
                }
                out.push('\n');
            }
        }
        out
    }

    pub fn count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// `wacampaign webhook serve` running on 127.0.0.1, stopped with SIGTERM on drop.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    log: PathBuf,
    agent: ureq::Agent,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Server {
    /// Starts the server on a free port with every provider enabled, and waits until
    /// it answers.
    pub fn start(ws: &Workspace, extra: &[&str]) -> Server {
        let mut last = String::new();
        for attempt in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let log = ws.path().join(format!("webhook-{attempt}.log"));
            let log_file = File::create(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_wacampaign"))
                .current_dir(ws.path())
                .env("NO_COLOR", "1")
                .env("WHATSAPP_APP_SECRET", APP_SECRET)
                .env("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN)
                .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
                .env_remove("WACAMPAIGN_OPT_OUT_KEYWORDS")
                .env_remove("WACAMPAIGN_DB")
                .args(["--color", "never", "--db"])
                .arg(ws.db())
                .args(["webhook", "serve", "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["--public-url", TWILIO_URL])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .expect("starting wacampaign webhook serve");
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into();
            let mut server = Server {
                child: Some(child),
                base: format!("http://127.0.0.1:{port}"),
                log,
                agent,
            };
            match server.wait_until_ready() {
                Ok(()) => return server,
                Err(why) => last = why,
            }
        }
        panic!("the webhook server did not start: {last}");
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("it exited ({status}):\n{}", self.log()));
            }
            if let Ok(response) = self.agent.get(format!("{}/healthz", self.base)).call()
                && response.status() == 200
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("not answering after 30 s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port`, for raw TCP clients.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// How many sockets the server process holds open (its listener, its
    /// connections, and the runtime's own signal pipe): read from /proc, so it
    /// counts what the kernel sees, not what the server thinks it has.
    pub fn open_sockets(&self) -> usize {
        let pid = self.child.as_ref().expect("running").id();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .filter(|target| target.to_string_lossy().starts_with("socket:"))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs `body` to Meta's path with `signature` as `X-Hub-Signature-256`.
    pub fn post_meta(&self, body: &[u8], signature: Option<&str>) -> Reply {
        let mut request = self
            .agent
            .post(format!("{}/webhook/meta", self.base))
            .content_type("application/json");
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        reply(request.send(body))
    }

    /// POSTs a payload signed with the test app secret.
    pub fn post_meta_signed(&self, payload: &serde_json::Value) -> Reply {
        let body = serde_json::to_vec(payload).unwrap();
        self.post_meta(&body, Some(&meta_signature(APP_SECRET, &body)))
    }

    pub fn verify(&self, query: &[(&str, &str)]) -> Reply {
        let mut request = self.agent.get(format!("{}/webhook/meta", self.base));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        reply(request.call())
    }

    /// POSTs a form to Twilio's path (and `query`), with `signature` as
    /// `X-Twilio-Signature`.
    pub fn post_twilio(&self, query: &str, body: &[u8], signature: Option<&str>) -> Reply {
        let mut request = self
            .agent
            .post(format!("{}/webhook/twilio{query}", self.base))
            .content_type("application/x-www-form-urlencoded");
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        reply(request.send(body))
    }

    /// POSTs Twilio's parameters, signed as Twilio signs them for [`TWILIO_URL`].
    pub fn post_twilio_signed(&self, params: &[(&str, &str)]) -> Reply {
        let signature = twilio_signature(TWILIO_TOKEN, TWILIO_URL, params);
        self.post_twilio("", &form(params), Some(&signature))
    }

    /// Sends only the headers of a POST declaring `length` bytes, and returns the
    /// status line the server answers with.
    pub fn status_line_for_declared_length(&self, length: usize) -> String {
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST /webhook/meta HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             X-Hub-Signature-256: sha256=00\r\nContent-Length: {length}\r\n\r\n"
        )
        .unwrap();
        let mut answer = [0u8; 64];
        let n = stream.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Stops the server with SIGTERM, as systemd does, and returns how it exited
    /// and what it logged.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let status = self.terminate();
        (status, self.log())
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}

fn reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = result.expect("the webhook server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Reply {
        status,
        content_type,
        body,
    }
}
