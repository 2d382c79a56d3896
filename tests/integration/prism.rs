//! Stoplight Prism serving a provider's official OpenAPI description
//! (`../shared/specs`) as a validating mock: a request that breaks the contract gets
//! a 4xx with the list of violations, a valid one gets the spec's example response.
//!
//! **One Prism per spec per test run.** [`meta`] and [`twilio`] start Prism on first
//! use, on a free port of 127.0.0.1, and every later caller in the same test binary
//! gets the same server (a `OnceLock`; callers racing the first start wait for it).
//! Loading a spec takes seconds (here on 2 cores: about 3 s for either file alone,
//! 4.5 s each when both load at once; the specs' README says 20 s for Meta's on a
//! slower machine), so tests must not start their own. The wait is capped at 120 s
//! (`WACAMPAIGN_PRISM_TIMEOUT` seconds to change it).
//!
//! **Prism ends with the test process.** Statics are never dropped, so no `Drop` can
//! stop it. Prism runs instead under a small `sh` wrapper, a process group of its
//! own, whose standard input is a pipe from the test process: the test process never
//! writes to it, and the kernel closes it when that process exits, however it exits
//! (all passed, a panic, an abort, SIGKILL, Ctrl-C). On that end-of-file the wrapper
//! ends its process group: Prism, whatever Prism started, and itself. Prism's output
//! goes to a log file (in `CARGO_TARGET_TMPDIR`, removed at the end), never to the
//! test's stdout or stderr, so not even a Prism slow to die holds the pipe a CI runner
//! reads from and makes it wait.
//!
//! **Prism may be missing.** It is found at `WACAMPAIGN_PRISM`, else where
//! `.ci/install-prism` puts it, else at `~/.cache/prism` (the specs' README). Where
//! it is not installed, a test that asks for it prints
//! `skipped: Prism not installed (run .ci/install-prism)` and returns early, unless
//! `CI` is `true`: CI must run these tests, so there the test fails. A Prism that is
//! installed but does not start fails the test everywhere.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

/// How long a spec may take to load before the test gives up, unless
/// `WACAMPAIGN_PRISM_TIMEOUT` says how many seconds.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

fn startup_timeout() -> Duration {
    std::env::var("WACAMPAIGN_PRISM_TIMEOUT")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(STARTUP_TIMEOUT, Duration::from_secs)
}

/// Runs Prism (`$1 mock -h 127.0.0.1 -p $2 $3`, logging to `$4`) until standard input
/// reaches end-of-file, then removes the log and ends its whole process group: the
/// wrapper is started as a group of its own, so that is Prism, anything Prism
/// started, and the wrapper. A Prism that exits by itself leaves its log for the
/// error message. Asynchronous commands get /dev/null as standard input (no job
/// control), so the watcher reads the pipe as fd 3.
const WRAPPER: &str = r#"
"$1" mock -h 127.0.0.1 -p "$2" "$3" </dev/null &
prism=$!
exec 3<&0
{ read -r _ || :; rm -f "$4"; kill -TERM 0; } <&3 &
watcher=$!
exec 3<&- </dev/null
wait "$prism"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// The contracts in `../shared/specs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// Meta's WhatsApp Business Platform, Graph API v23.0.
    Meta,
    /// Twilio's REST API 2010-04-01.
    Twilio,
    /// Twilio's Content API v1 (the account's templates and their approvals).
    TwilioContent,
}

impl Spec {
    fn file_name(self) -> &'static str {
        match self {
            Spec::Meta => "meta-business-messaging-api_v23.0.yaml",
            Spec::Twilio => "twilio_api_v2010.yaml",
            Spec::TwilioContent => "twilio_content_v1.yaml",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Spec::Meta => "meta",
            Spec::Twilio => "twilio",
            Spec::TwilioContent => "twilio-content",
        }
    }
}

/// Prism serving Meta's Cloud API contract, or `None` (after saying so) where Prism
/// is not installed and this is not CI.
pub fn meta() -> Option<&'static Prism> {
    static PRISM: OnceLock<Availability> = OnceLock::new();
    serving(&PRISM, Spec::Meta)
}

/// Prism serving Twilio's REST API contract; see [`meta`].
pub fn twilio() -> Option<&'static Prism> {
    static PRISM: OnceLock<Availability> = OnceLock::new();
    serving(&PRISM, Spec::Twilio)
}

/// Prism serving Twilio's Content API contract; see [`meta`].
pub fn twilio_content() -> Option<&'static Prism> {
    static PRISM: OnceLock<Availability> = OnceLock::new();
    serving(&PRISM, Spec::TwilioContent)
}

/// A running Prism.
pub struct Prism {
    spec: Spec,
    base_url: String,
    log: PathBuf,
    agent: ureq::Agent,
    /// Never written; it closes when the test process ends, which stops Prism.
    _lifeline: ChildStdin,
    _wrapper: Child,
}

enum Availability {
    Running(Prism),
    /// Prism is not installed: a skip, or a failure under CI.
    NotInstalled(String),
    /// The contracts are not there: a skip, or a failure under CI.
    NoContract(String),
    /// Prism is there but did not come up.
    Broken(String),
}

fn serving(cell: &'static OnceLock<Availability>, spec: Spec) -> Option<&'static Prism> {
    match cell.get_or_init(|| Availability::of(spec)) {
        Availability::Running(prism) => Some(prism),
        Availability::NotInstalled(why) if on_ci() => panic!(
            "Prism is required when CI=true, but {why}. \
             .ci/run installs it with .ci/install-prism and exports WACAMPAIGN_PRISM."
        ),
        Availability::NotInstalled(why) => {
            eprintln!("skipped: Prism not installed (run .ci/install-prism)\n  ({why})");
            None
        }
        Availability::NoContract(why) if on_ci() => {
            panic!("the provider contracts are required when CI=true, but {why}")
        }
        Availability::NoContract(why) => {
            eprintln!("skipped: {why}");
            None
        }
        Availability::Broken(why) => panic!("{why}"),
    }
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

impl Availability {
    fn of(spec: Spec) -> Availability {
        let prism = match locate_prism() {
            Ok(prism) => prism,
            Err(why) => return Availability::NotInstalled(why),
        };
        let spec_file = specs_dir().join(spec.file_name());
        if !spec_file.is_file() {
            return Availability::NoContract(format!(
                "the contract {} is not there (set WACAMPAIGN_SPECS to its directory)",
                spec_file.display()
            ));
        }
        let spec_file = match with_errata(spec, &spec_file) {
            Ok(file) => file,
            Err(why) => return Availability::Broken(why),
        };
        match Prism::start(spec, &prism, &spec_file) {
            Ok(running) => Availability::Running(running),
            Err(why) => Availability::Broken(why),
        }
    }
}

/// `WACAMPAIGN_PRISM` when set (and then only it), else the install script's place,
/// else the one the specs' README uses.
fn locate_prism() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("WACAMPAIGN_PRISM") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("WACAMPAIGN_PRISM={} is not a file", path.display()))
        };
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let install_dir = std::env::var_os("WACAMPAIGN_PRISM_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            home.as_ref()
                .map(|home| home.join(".cache/wacampaign-prism"))
        });
    let candidates: Vec<PathBuf> = [install_dir, home.map(|home| home.join(".cache/prism"))]
        .into_iter()
        .flatten()
        .map(|dir| dir.join("node_modules/.bin/prism"))
        .collect();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "WACAMPAIGN_PRISM is not set and none of {} exists",
                looked.join(", ")
            )
        })
}

/// The committed errata overlay beside a spec (`tests/integration/specs/<spec
/// file stem>.errata.toml`), if it has one.
pub fn errata_file(spec: Spec) -> PathBuf {
    let stem = spec.file_name().trim_end_matches(".yaml");
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/integration/specs/{stem}.errata.toml"))
}

/// The spec with its errata applied, as a copy in `CARGO_TARGET_TMPDIR`; the spec
/// itself when it has none. Each change must find its text exactly `count` times,
/// so an overlay that no longer fits the spec fails instead of silently passing.
pub fn with_errata(spec: Spec, spec_file: &Path) -> Result<PathBuf, String> {
    let errata = errata_file(spec);
    if !errata.is_file() {
        return Ok(spec_file.to_path_buf());
    }
    let patched = apply_errata(spec_file, &errata)?;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{}-{}-{}",
        spec.label(),
        std::process::id(),
        spec.file_name()
    ));
    fs::write(&out, patched).map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(out)
}

/// The text of `spec_file` with every change of `errata` applied.
pub fn apply_errata(spec_file: &Path, errata: &Path) -> Result<String, String> {
    let mut text = fs::read_to_string(spec_file)
        .map_err(|e| format!("reading {}: {e}", spec_file.display()))?;
    let overlay: toml::Table = fs::read_to_string(errata)
        .map_err(|e| format!("reading {}: {e}", errata.display()))?
        .parse()
        .map_err(|e| format!("{}: {e}", errata.display()))?;
    let changes = overlay
        .get("change")
        .and_then(toml::Value::as_array)
        .ok_or_else(|| format!("{}: no [[change]]", errata.display()))?;
    for (n, change) in changes.iter().enumerate() {
        let field = |key: &str| {
            change
                .get(key)
                .ok_or_else(|| format!("{} change {n}: no `{key}`", errata.display()))
        };
        let find = field("find")?.as_str().unwrap_or_default();
        let replace = field("replace")?.as_str().unwrap_or_default();
        let count = field("count")?.as_integer().unwrap_or(-1);
        let doc = field("doc")?.as_str().unwrap_or_default();
        if !doc.starts_with("https://developers.facebook.com/docs/") {
            return Err(format!(
                "{} change {n}: `doc` must cite Meta's documentation, not `{doc}`",
                errata.display()
            ));
        }
        let found = text.matches(find).count();
        if i64::try_from(found).ok() != Some(count) {
            return Err(format!(
                "{} change {n}: its text is in {} {found} times, not {count}; update the overlay \
                 for this version of the spec",
                errata.display(),
                spec_file.display()
            ));
        }
        text = text.replace(find, replace);
    }
    Ok(text)
}

/// `WACAMPAIGN_SPECS`, else `shared/specs` beside the repository.
fn specs_dir() -> PathBuf {
    std::env::var_os("WACAMPAIGN_SPECS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/specs"),
        PathBuf::from,
    )
}

impl Prism {
    fn start(spec: Spec, prism: &Path, spec_file: &Path) -> Result<Prism, String> {
        // The port is free when asked for but may be taken before Prism binds it.
        const ATTEMPTS: usize = 3;
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            match Prism::start_on_free_port(spec, prism, spec_file) {
                Ok(running) => return Ok(running),
                Err(Start::PortTaken(why)) => last_error = why,
                Err(Start::Failed(why)) => return Err(why),
            }
        }
        Err(last_error)
    }

    fn start_on_free_port(spec: Spec, prism: &Path, spec_file: &Path) -> Result<Prism, Start> {
        let label = spec.label();
        let fail = |what: &str, error: io::Error| Start::Failed(format!("{what}: {error}"));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| fail("finding a free port on 127.0.0.1", e))?
            .port();
        let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("prism-{label}-{}-{port}.log", std::process::id()));
        let log_file =
            File::create(&log).map_err(|e| fail(&format!("creating {}", log.display()), e))?;
        let log_file_too = log_file
            .try_clone()
            .map_err(|e| fail("duplicating the log file handle", e))?;
        let started = Instant::now();
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("prism-wrapper")
            .arg(prism)
            .arg(port.to_string())
            .arg(spec_file)
            .arg(&log)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(log_file_too)
            .spawn()
            .map_err(|e| fail(&format!("starting {}", prism.display()), e))?;
        let lifeline = wrapper.stdin.take().expect("stdin is piped");

        let timeout = startup_timeout();
        let base_url = format!("http://127.0.0.1:{port}");
        let listening = format!("Prism is listening on {base_url}");
        loop {
            // Whether it exited is asked first, so the log read after it is complete.
            let exited = wrapper.try_wait().ok().flatten();
            let text = fs::read(&log)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            if text.contains(&listening) {
                break;
            }
            let timed_out = started.elapsed() > timeout;
            if exited.is_some() || timed_out {
                drop(lifeline);
                let _ = wrapper.kill();
                let _ = wrapper.wait();
                let _ = fs::remove_file(&log);
                let why = match exited {
                    Some(status) => format!("exited ({status})"),
                    None => format!("was not listening after {timeout:?}"),
                };
                let message = format!(
                    "Prism ({}) serving {} {why}; its log ends:\n{}",
                    prism.display(),
                    spec_file.display(),
                    tail(&text, 30)
                );
                return Err(if text.contains("EADDRINUSE") {
                    Start::PortTaken(message)
                } else {
                    Start::Failed(message)
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Shown with --nocapture, or beside a failing test: how long CI waits for it.
        eprintln!(
            "prism: {label} contract loaded in {:.1} s, listening on {base_url}",
            started.elapsed().as_secs_f64()
        );
        let agent = ureq::Agent::config_builder()
            // A 4xx from Prism is the answer under test, not an error.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Prism {
            spec,
            base_url,
            log,
            agent,
            _lifeline: lifeline,
            _wrapper: wrapper,
        })
    }

    /// `http://127.0.0.1:PORT`, to stand in for a provider's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// POSTs a JSON body, as the Cloud API provider does: `Content-Type` exactly
    /// `application/json` (Meta's contract lists the allowed values, and one with
    /// `; charset=utf-8` is not among them) and, when given, `Authorization: Bearer`.
    pub fn post_json(&self, path: &str, bearer: Option<&str>, body: &[u8]) -> Reply {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base_url))
            .content_type("application/json");
        if let Some(token) = bearer {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        self.reply(path, request.send(body))
    }

    /// POSTs an `application/x-www-form-urlencoded` body, as the Twilio provider
    /// does, with HTTP Basic auth when given (account SID, auth token).
    pub fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        fields: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.agent.post(format!("{}{path}", self.base_url));
        if let Some((user, password)) = basic {
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header("Authorization", format!("Basic {credentials}"));
        }
        self.reply(path, request.send_form(fields.iter().copied()))
    }

    fn reply(
        &self,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Reply {
        let mut response = result.unwrap_or_else(|error| {
            panic!(
                "POST {}{path} to Prism ({}) failed: {error}\nPrism's log ends:\n{}",
                self.base_url,
                self.spec.label(),
                self.log_tail(30)
            )
        });
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|error| panic!("reading Prism's answer to POST {path}: {error}"));
        Reply {
            status,
            content_type,
            body,
        }
    }

    /// The last lines Prism logged, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), lines),
            Err(error) => format!("(cannot read {}: {error})", self.log.display()),
        }
    }
}

enum Start {
    PortTaken(String),
    Failed(String),
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Prism's answer.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("Prism's answer is not JSON ({error}):\n{self}"))
    }

    /// The violations Prism lists in an `application/problem+json` answer.
    pub fn violations(&self) -> Vec<String> {
        self.json()["validation"]
            .as_array()
            .map(|violations| {
                violations
                    .iter()
                    .filter_map(|v| v["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} ({}) {}",
            self.status, self.content_type, self.body
        )
    }
}
