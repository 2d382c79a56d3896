//! `wacampaign send` against a mock Cloud API on 127.0.0.1 (`mock_server.rs`): the
//! real binary, a real HTTP client, a real journal on disk. The server's log of what
//! it read is the oracle: who was messaged, how often, when, with which headers.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mock_server::{MockServer, Received, Reply};
use crate::support::{CAMPAIGN, Fixture, NO_MESSAGING_LIMIT, edit, opt_in_everyone, wacampaign_in};

/// No test run of the binary may take longer than this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How a test campaign sends.
#[derive(Debug, Clone, Copy)]
struct Sending {
    rate: u32,
    concurrency: usize,
    timeout_ms: u64,
}

impl Default for Sending {
    fn default() -> Self {
        Sending {
            rate: 1000,
            concurrency: 8,
            timeout_ms: 5000,
        }
    }
}

/// The shared test campaign (`support::CAMPAIGN`) pointed at `base_url`.
fn campaign(base_url: &str, sending: Sending) -> String {
    format!(
        "{CAMPAIGN}base_url = \"{base_url}\"\ntimeout_ms = {}\n\n[sending]\nrate_per_second = {}\nconcurrency = {}\n",
        sending.timeout_ms, sending.rate, sending.concurrency
    )
}

/// The `i`th test recipient, in E.164: Mexico City numbers from +52 55 2000 0000.
fn phone(i: usize) -> String {
    format!("+5255{}", 20_000_000 + i)
}

/// A campaign of `contacts` opted-in recipients in a scratch directory.
struct Setup {
    _fx: Fixture,
    dir: PathBuf,
    phones: Vec<String>,
    token: String,
}

impl Setup {
    fn new(contacts: usize, base_url: &str, sending: Sending) -> Setup {
        Setup::with_token(contacts, base_url, sending, "EAAGtest0token0for0the0mock")
    }

    fn with_token(contacts: usize, base_url: &str, sending: Sending, token: &str) -> Setup {
        let fx = Fixture::new();
        let phones: Vec<String> = (0..contacts).map(phone).collect();
        let mut csv = String::from("name,phone,date\n");
        for (i, p) in phones.iter().enumerate() {
            // Written as people type them; the plan normalises them to `p`.
            let national = &p[3..];
            csv.push_str(&format!(
                "Cliente {i},+52 {} {} {},martes\n",
                &national[..2],
                &national[2..6],
                &national[6..]
            ));
        }
        let dir = fx
            .write("contacts.csv", csv)
            .parent()
            .expect("the fixture's directory")
            .to_path_buf();
        fx.write("campaign.toml", campaign(base_url, sending));
        opt_in_everyone(&dir.join("campaign.toml"), &dir.join("wacampaign.db"));
        Setup {
            _fx: fx,
            dir,
            phones,
            token: token.to_owned(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("wacampaign.db")
    }

    fn rewrite_campaign(&self, text: &str) {
        std::fs::write(self.dir.join("campaign.toml"), text).expect("writing campaign.toml");
    }

    fn campaign_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("campaign.toml")).expect("reading campaign.toml")
    }

    /// The binary, with the token in `WHATSAPP_TOKEN` and nothing from the
    /// developer's `WACAMPAIGN_*` environment.
    fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = wacampaign_in(&self.dir, &self.db());
        cmd.env("WHATSAPP_TOKEN", &self.token)
            .env_remove("WACAMPAIGN_RATE")
            .env_remove("WACAMPAIGN_CONCURRENCY")
            .timeout(COMMAND_TIMEOUT);
        cmd
    }

    /// `wacampaign send campaign.toml` plus `args`.
    fn send(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = self.cmd();
        cmd.args(["send", "campaign.toml"]).args(args);
        cmd
    }

    /// `wacampaign send campaign.toml` plus `args` as a plain process, for what
    /// `assert_cmd` cannot do (run in the background, set limits before `exec`).
    fn send_process(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wacampaign"));
        cmd.current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("WHATSAPP_TOKEN", &self.token)
            .env(NO_MESSAGING_LIMIT.0, NO_MESSAGING_LIMIT.1)
            .env_remove("WACAMPAIGN_DB")
            .env_remove("WACAMPAIGN_COLOR")
            .env_remove("WACAMPAIGN_RATE")
            .env_remove("WACAMPAIGN_CONCURRENCY")
            .args(["--color", "never", "--db"])
            .arg(self.db())
            .args(["send", "campaign.toml"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// The same as [`Setup::send`], started in the background; output discarded
    /// unless `piped`.
    fn spawn_send(&self, args: &[&str], piped: bool) -> Child {
        let output = || {
            if piped { Stdio::piped() } else { Stdio::null() }
        };
        self.send_process(args)
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("starting wacampaign send")
    }

    /// `status --json`'s data, or `None` when the campaign was never begun.
    fn try_status(&self) -> Option<Value> {
        let output = self
            .cmd()
            .args(["--json", "status", "campaign.toml"])
            .output()
            .expect("running status");
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8(output.stdout).expect("status prints UTF-8");
        let line: Value =
            serde_json::from_str(text.trim()).expect("status --json is one JSON line");
        assert_eq!(line["type"], "status");
        Some(line["data"].clone())
    }

    fn status(&self) -> Value {
        self.try_status().expect("status succeeds")
    }

    /// One journal count from `status --json` (`accepted`, `in_doubt`...).
    fn count(&self, state: &str) -> u64 {
        self.status()["counts"][state]
            .as_u64()
            .unwrap_or_else(|| panic!("status has no count `{state}`"))
    }

    /// Each recipient's state, from `status --csv`.
    fn states(&self) -> HashMap<String, String> {
        self.cmd()
            .args(["status", "campaign.toml", "--csv", "status.csv"])
            .assert()
            .success();
        let mut reader = csv::Reader::from_path(self.dir.join("status.csv")).expect("status.csv");
        let headers = reader.headers().expect("a header row").clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("status.csv has no `{name}` column"))
        };
        let (phone, state) = (column("phone"), column("state"));
        reader
            .records()
            .map(|r| {
                let r = r.expect("a status.csv row");
                // Cells starting with `+` get an apostrophe, so spreadsheets do not
                // read them as formulas.
                let number = r[phone].strip_prefix('\'').unwrap_or(&r[phone]);
                (number.to_owned(), r[state].to_owned())
            })
            .collect()
    }
}

/// The JSON Lines on stdout, each parsed.
fn json_lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `data` of the summary a `--json` run ends its stdout with.
fn summary_data(assert: &assert_cmd::assert::Assert) -> Value {
    json_lines(&assert.get_output().stdout)
        .pop()
        .expect("a summary line")["data"]
        .clone()
}

/// stdout and stderr of a finished command, together.
fn all_output(assert: &assert_cmd::assert::Assert) -> String {
    let out = assert.get_output();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How many requests the server read for each recipient.
fn requests_by_recipient(log: &[Received]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for r in log {
        *by.entry(r.to.clone()).or_insert(0) += 1;
    }
    by
}

/// The recipients the server took a message for, each once.
fn accepted_once(log: &[Received]) -> HashSet<String> {
    let mut seen = HashSet::new();
    for r in log.iter().filter(|r| r.reply.accepts()) {
        assert!(
            seen.insert(r.to.clone()),
            "{} was messaged twice (request {})",
            r.to,
            r.n
        );
    }
    seen
}

fn all(phones: &[String]) -> HashSet<String> {
    phones.iter().cloned().collect()
}

/// Waits for a background run to end, at most [`COMMAND_TIMEOUT`].
fn wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for wacampaign") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wacampaign send did not finish in {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- crash safety ----

/// Kill the real process with SIGKILL at 20 moments of a 5,000-recipient campaign,
/// resuming each time: nobody is messaged twice, each kill leaves at most the
/// in-flight window in doubt, and in the end everyone is accepted or in doubt.
#[test]
fn sigkill_at_random_moments_never_messages_anyone_twice() {
    const CONTACTS: usize = 5000;
    const CONCURRENCY: usize = 16;
    let started = Instant::now();
    let server = MockServer::start();
    server.set_latency(Duration::from_millis(3));
    let setup = Setup::new(
        CONTACTS,
        &server.base_url(),
        Sending {
            rate: 1000,
            concurrency: CONCURRENCY,
            timeout_ms: 5000,
        },
    );
    let mut rng = fastrand::Rng::with_seed(0x5EED_0FC0_FFEE);
    // Rows in doubt or in flight after the latest kill: a kill before the next run
    // reached its journal leaves the same in-flight rows, so they are not summed.
    let mut held = 0;
    let mut kills_mid_flight = 0;
    for kill in 0..20 {
        let before = server.count();
        let mut child = setup.spawn_send(&["--yes", "--quiet"], false);
        if kill % 5 == 0 {
            // Anywhere in the run, including while it plans and opens the journal.
            std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
        } else {
            // While it sends: once this run's first request is in, a little later.
            let deadline = Instant::now() + Duration::from_secs(30);
            while server.count() == before
                && child.try_wait().expect("polling").is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(rng.u64(0..250)));
        }
        // `Child::kill` is SIGKILL on Unix: no chance to record anything.
        let _ = child.kill();
        child.wait().expect("reaping the killed run");

        let log = server.log();
        accepted_once(&log);
        assert!(
            requests_by_recipient(&log).values().all(|&n| n == 1),
            "after kill {kill}: a recipient was requested twice"
        );
        if let Some(status) = setup.try_status() {
            let in_flight = status["counts"]["in_flight"].as_u64().expect("in_flight");
            assert!(
                in_flight <= CONCURRENCY as u64,
                "kill {kill} left {in_flight} messages in flight, more than the window of {CONCURRENCY}"
            );
            let in_doubt = status["counts"]["in_doubt"].as_u64().expect("in_doubt");
            held = in_doubt + in_flight;
            kills_mid_flight += usize::from(in_flight > 0);
        }
    }
    assert!(
        kills_mid_flight >= 5,
        "only {kills_mid_flight} of 20 kills caught messages in flight: the test did not test"
    );

    let last = setup.send(&["--yes", "--json"]).assert();
    let summary = json_lines(&last.get_output().stdout)
        .pop()
        .expect("a summary line");
    let counts = setup.status()["counts"].clone();
    let (accepted, in_doubt) = (
        counts["accepted"].as_u64().expect("accepted"),
        counts["in_doubt"].as_u64().expect("in_doubt"),
    );
    // Rows the departure log proves never left were sent by a later run instead.
    assert!(
        in_doubt <= held,
        "only messages the kills left in flight are in doubt: {in_doubt} of {held}"
    );
    assert_eq!(
        accepted + in_doubt,
        CONTACTS as u64,
        "every eligible contact is accepted or in doubt: {counts}"
    );
    assert_eq!(
        last.get_output().status.code(),
        Some(if in_doubt > 0 { 1 } else { 0 }),
        "{summary}"
    );

    let log = server.log();
    let messaged = accepted_once(&log);
    assert!(requests_by_recipient(&log).values().all(|&n| n == 1));
    let states = setup.states();
    for p in &setup.phones {
        let state = states.get(p).map(String::as_str);
        match state {
            Some("accepted") => assert!(messaged.contains(p), "{p} accepted but never sent"),
            Some("in_doubt") => {}
            other => panic!("{p} ended {other:?}"),
        }
    }
    for p in &messaged {
        assert!(
            matches!(
                states.get(p).map(String::as_str),
                Some("accepted" | "in_doubt")
            ),
            "{p} was messaged but the journal says {:?}",
            states.get(p)
        );
    }
    eprintln!(
        "sigkill test: {held} held in doubt after 20 kills ({kills_mid_flight} mid-flight), {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A listener whose queue of connections is full: a connection to it never opens,
/// so requests wait for their connection with their rows claimed. Returned with the
/// connections that fill it.
fn full_listener() -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
    // SAFETY: listen(2) on a socket this test owns; a backlog of 0 keeps at most one
    // connection waiting.
    assert_eq!(
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) },
        0
    );
    let addr = listener.local_addr().expect("its address");
    let held = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .collect();
    (listener, held)
}

/// Killed while its claimed rows wait for connections that never open: their
/// requests never left, and the departure log says so. The next run sends them
/// (each once) instead of holding them in doubt; without the log (deleted), it
/// holds them in doubt, as the journal alone must.
fn killed_before_any_request_left(keep_log: bool) {
    let (listener, held) = full_listener();
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let setup = Setup::new(
        20,
        &base_url,
        Sending {
            rate: 1000,
            concurrency: 8,
            timeout_ms: 30_000,
        },
    );
    let mut child = setup.spawn_send(&["--yes", "--quiet"], false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup
        .try_status()
        .is_none_or(|s| s["counts"]["in_flight"].as_u64() == Some(0))
    {
        assert!(Instant::now() < deadline, "no row was ever claimed");
        assert!(
            child.try_wait().expect("polling").is_none(),
            "the run ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().expect("reaping the killed run");
    let claimed = setup.status()["counts"]["in_flight"]
        .as_u64()
        .expect("in_flight");
    // The README's queries see the same rows in flight in the file, where the
    // claim left them planned under the campaign's mark.
    let (_, queries) = crate::conventions::database_section();
    let query = |name: &str| {
        queries
            .iter()
            .find(|(n, _)| n.starts_with(name))
            .unwrap_or_else(|| panic!("the README's query `{name}`"))
            .1
            .clone()
    };
    let conn = rusqlite::Connection::open(setup.db()).expect("the database");
    let in_file = conn
        .prepare(&query("the rows in flight"))
        .expect("the README's query")
        .query_map([], |_| Ok(()))
        .expect("running it")
        .count();
    assert_eq!(in_file as u64, claimed, "the README's rows in flight");
    let by_state: u64 = conn
        .prepare(&query("a campaign by state").replace("demo-black-friday", "test-campaign"))
        .expect("the README's query")
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .expect("running it")
        .filter_map(Result::ok)
        .filter(|(state, _)| state == "in_flight")
        .map(|(_, n)| n as u64)
        .sum();
    assert_eq!(by_state, claimed, "the README's count by state");
    drop(conn);
    let log_file = setup.dir.join("wacampaign.db.test-campaign.departures");
    assert!(
        log_file.exists(),
        "the run kept a departure log beside the database"
    );
    if !keep_log {
        std::fs::remove_file(&log_file).expect("removing the log");
    }

    // A dry run first: it reads the rows left in flight and the log as the run
    // will, says what the run then sends, and leaves both for it.
    let dry = setup.send(&["--dry-run", "--json"]).assert().code(0);
    let dry = summary_data(&dry);
    assert_eq!(
        setup.status()["counts"]["in_flight"].as_u64(),
        Some(claimed),
        "the dry run wrote nothing"
    );
    assert_eq!(log_file.exists(), keep_log);

    // The provider is reachable again; nothing ever reached it before.
    let server = MockServer::on(listener);
    drop(held);
    let run = setup.send(&["--yes", "--json"]).assert();
    let output = all_output(&run);
    let real = summary_data(&run);
    for figure in ["to_send", "recovered_never_left", "recovered_in_doubt"] {
        assert_eq!(dry[figure], real[figure], "{figure}: {dry}\n{real}");
    }
    let counts = setup.status()["counts"].clone();
    let log = server.log();
    assert!(
        requests_by_recipient(&log).values().all(|&n| n == 1),
        "{output}"
    );
    if keep_log {
        run.code(0);
        assert!(
            output.contains(&format!(
                "{claimed} messages were claimed when the last run stopped but their requests \
                 had not left"
            )),
            "{output}"
        );
        assert_eq!(counts["accepted"].as_u64(), Some(20), "{counts}");
        assert_eq!(counts["in_doubt"].as_u64(), Some(0), "{counts}");
        assert_eq!(accepted_once(&log), all(&setup.phones));
        assert!(
            !log_file.exists(),
            "a run that ended with every outcome recorded leaves no log"
        );
    } else {
        run.code(1);
        assert_eq!(counts["in_doubt"].as_u64(), Some(claimed), "{counts}");
        assert_eq!(counts["accepted"].as_u64(), Some(20 - claimed), "{counts}");
        assert_eq!(
            log.len() as u64,
            20 - claimed,
            "the rows in doubt were not resent"
        );
    }
}

#[test]
fn rows_whose_requests_never_left_a_killed_run_are_sent_by_the_next() {
    killed_before_any_request_left(true);
}

#[test]
fn without_its_departure_log_a_killed_runs_claimed_rows_are_held_in_doubt() {
    killed_before_any_request_left(false);
}

/// Killed after the provider accepted its messages but before the journal recorded
/// the answers (here another process holds the database's write lock, so the
/// journal writer waits): the departure log kept the acceptances, and the next run
/// records them as accepted with their message ids, instead of holding them in
/// doubt, and sends nobody anything again.
#[test]
fn acceptances_a_killed_run_had_not_recorded_are_kept_by_its_departure_log() {
    let server = MockServer::start();
    server.set_latency(Duration::from_millis(400));
    let setup = Setup::new(
        5,
        &server.base_url(),
        Sending {
            rate: 1000,
            concurrency: 8,
            timeout_ms: 30_000,
        },
    );
    let mut child = setup.spawn_send(&["--yes", "--quiet"], false);
    assert!(
        server.wait_for(5, Duration::from_secs(20)),
        "every request reached the server"
    );
    // The answers are 400 ms away: the lock is held until well after they came.
    let conn = rusqlite::Connection::open(setup.db()).expect("the database");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("a busy timeout");
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("the write lock");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("polling").is_none(),
        "the run waits for the lock"
    );
    let _ = child.kill();
    child.wait().expect("reaping the killed run");
    conn.execute_batch("ROLLBACK").expect("releasing the lock");
    drop(conn);
    assert_eq!(
        setup.status()["counts"]["accepted"].as_u64(),
        Some(0),
        "the journal had recorded none of the answers"
    );

    // A dry run says what the run then does: five served, nothing to send or resend.
    let dry = setup
        .send(&["--dry-run", "--json", "--in-doubt", "resend"])
        .assert()
        .code(0);
    let dry = summary_data(&dry);
    assert_eq!(dry["recovered_accepted"].as_u64(), Some(5), "{dry}");
    assert_eq!(dry["already_served"].as_u64(), Some(5), "{dry}");
    assert_eq!(dry["to_send"].as_u64(), Some(0), "{dry}");

    let run = setup.send(&["--yes", "--json"]).assert().code(0);
    let output = all_output(&run);
    let summary = summary_data(&run);
    assert_eq!(summary["recovered_accepted"].as_u64(), Some(5), "{summary}");
    assert_eq!(summary["already_served"].as_u64(), Some(5), "{summary}");
    assert_eq!(summary["recovered_in_doubt"].as_u64(), Some(0), "{summary}");
    assert_eq!(
        summary["recovered_never_left"].as_u64(),
        Some(0),
        "{summary}"
    );
    assert!(
        output
            .contains("5 messages were accepted by the provider just before the last run stopped"),
        "{output}"
    );
    let counts = setup.status()["counts"].clone();
    assert_eq!(counts["accepted"].as_u64(), Some(5), "{counts}");
    assert_eq!(counts["in_doubt"].as_u64(), Some(0), "{counts}");
    let log = server.log();
    assert_eq!(log.len(), 5, "nobody was sent anything again");
    let sent: HashSet<String> = log
        .iter()
        .map(|r| format!("wamid.HBgNMOCK{:012X}", r.n))
        .collect();
    let recorded: HashSet<String> = rusqlite::Connection::open(setup.db())
        .expect("the database")
        .prepare("SELECT message_id FROM journal WHERE state = 'accepted'")
        .expect("a query")
        .query_map([], |r| r.get(0))
        .expect("running it")
        .collect::<Result<_, _>>()
        .expect("message ids");
    assert_eq!(recorded, sent, "each row has the id its answer gave");
}

/// Stopped (SIGTERM) while rows are claimed ahead of their interval: those rows are
/// given back unsent, with no attempt counted, none is left in flight, and a
/// later run's `--limit` counts them as the new messages they are.
#[test]
fn a_stop_gives_back_the_rows_claimed_ahead_as_never_attempted() {
    let server = MockServer::start();
    let setup = Setup::new(
        3000,
        &server.base_url(),
        Sending {
            rate: 1000,
            concurrency: 200,
            timeout_ms: 30_000,
        },
    );
    let mut child = setup.spawn_send(&["--yes", "--quiet"], false);
    assert!(
        server.wait_for(500, Duration::from_secs(30)),
        "the run was sending"
    );
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait(&mut child);
    assert_eq!(status.code(), Some(130), "interrupted");
    let counts = setup.status()["counts"].clone();
    let count = |state: &str| counts[state].as_u64().unwrap_or(0);
    assert_eq!(count("in_flight"), 0, "{counts}");
    assert_eq!(count("in_doubt"), 0, "{counts}");
    let sent = count("accepted");
    assert_eq!(
        sent + count("planned") + count("deferred"),
        3000,
        "{counts}"
    );
    assert_eq!(server.count() as u64, sent, "{counts}");
    let attempted_but_waiting: i64 = rusqlite::Connection::open(setup.db())
        .expect("the database")
        .query_row(
            "SELECT count(*) FROM journal WHERE state IN ('planned', 'deferred') AND attempts > 0",
            [],
            |r| r.get(0),
        )
        .expect("a count");
    assert_eq!(
        attempted_but_waiting, 0,
        "an attempt counted for a row never sent"
    );

    // Rows given back are first messages: --limit counts them.
    setup.send(&["--yes", "--limit", "5"]).assert().code(0);
    assert_eq!(setup.count("accepted"), sent + 5);
    assert_eq!(server.count() as u64, sent + 5);
}

/// A disk with no room for the departure log (here a file size limit below the
/// log's 8 MiB, which its allocation meets as a full disk would): the run goes on
/// without it, sends every message once, and says what a kill would now cost.
#[test]
fn a_run_whose_departure_log_finds_no_room_sends_everything_and_warns() {
    use std::os::unix::process::CommandExt as _;
    let server = MockServer::start();
    let setup = Setup::new(20, &server.base_url(), Sending::default());
    let mut cmd = setup.send_process(&["--yes"]);
    // SAFETY: between fork and exec, only async-signal-safe calls (setrlimit,
    // signal) that touch nothing of the parent's.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 4 << 20,
                rlim_max: 4 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Past the limit a write fails with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let output = cmd.output().expect("running wacampaign send");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("no departure log for this run (allocating")
            && stderr.contains("every message then in flight is held in doubt"),
        "{stderr}"
    );
    assert_eq!(setup.count("accepted"), 20);
    assert_eq!(accepted_once(&server.log()), all(&setup.phones));
}

// ---- consent ----

/// A campaign of 60 at 20 a second, 2 in flight, against a server answering in
/// `latency`: three seconds in which to do something to a running send.
fn sixty_at_twenty(latency: Duration) -> (MockServer, Setup) {
    let server = MockServer::start();
    server.set_latency(latency);
    let setup = Setup::new(
        60,
        &server.base_url(),
        Sending {
            rate: 20,
            concurrency: 2,
            ..Sending::default()
        },
    );
    (server, setup)
}

#[test]
fn an_opt_out_recorded_mid_campaign_stops_the_send_to_that_number() {
    let (server, setup) = sixty_at_twenty(Duration::from_millis(50));
    let mut child = setup.spawn_send(&["--yes"], false);
    assert!(
        server.wait_for(5, Duration::from_secs(30)),
        "the campaign never started"
    );
    let target = setup.phones.last().expect("a last contact").clone();
    assert!(
        server.log().iter().all(|r| r.to != target),
        "too late: {target} was already sent"
    );
    setup
        .cmd()
        .args([
            "consent",
            "opt-out",
            &target,
            "--purpose",
            "all",
            "--source",
            "test",
        ])
        .assert()
        .success();
    let sent_at_opt_out = server.count();
    assert!(sent_at_opt_out < 50, "the campaign was nearly over");
    assert!(wait(&mut child).success());

    let log = server.log();
    assert!(
        log.iter().all(|r| r.to != target),
        "the server was sent {target} after the opt-out"
    );
    let messaged = accepted_once(&log);
    assert_eq!(messaged.len(), 59);
    assert_eq!(setup.count("opted_out"), 1);
    assert_eq!(setup.count("accepted"), 59);
    assert_eq!(
        setup.states().get(&target).map(String::as_str),
        Some("opted_out")
    );
}

/// A campaign of 60 at 20/s whose journal another process locks (`BEGIN
/// IMMEDIATE` on its own connection) once 5 messages have gone.
fn locked_mid_run() -> (MockServer, Setup, Child, rusqlite::Connection) {
    let (server, setup) = sixty_at_twenty(Duration::from_millis(20));
    let child = setup.spawn_send(&["--yes"], true);
    assert!(
        server.wait_for(5, Duration::from_secs(30)),
        "the campaign never started"
    );
    let other = rusqlite::Connection::open(setup.db()).expect("opening the journal");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("taking the write lock");
    (server, setup, child, other)
}

/// Releases the lock [`locked_mid_run`] took and waits for the send to end: its
/// output and its stderr as text.
fn release_and_finish(other: rusqlite::Connection, child: Child) -> (std::process::Output, String) {
    other
        .execute_batch("COMMIT")
        .expect("releasing the write lock");
    drop(other);
    let (output, _) = run_watching(child, &[], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

/// Another process holding the journal's write lock longer than SQLite's busy
/// timeout (10 s: a large `prune`, an `erase`, a first capped send building its
/// index) pauses the send instead of ending it: nothing leaves while the lock is
/// held, the answers already on their way are recorded once it is released, and
/// nobody is left in doubt.
#[test]
fn a_write_lock_held_past_the_busy_timeout_pauses_the_send_and_loses_no_answer() {
    let (server, setup, child, other) = locked_mid_run();
    // Whatever was claimed before the lock may still go; nothing after it.
    std::thread::sleep(Duration::from_secs(1));
    let sent_under_lock = server.count();
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(
        server.count(),
        sent_under_lock,
        "a message left while another process held the write lock"
    );
    let (output, stderr) = release_and_finish(other, child);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        stderr.contains("write lock"),
        "the wait was not explained: {stderr}"
    );
    let log = server.log();
    assert_eq!(requests_by_recipient(&log).values().max(), Some(&1));
    assert_eq!(accepted_once(&log), all(&setup.phones));
    assert_eq!(setup.count("accepted"), 60);
    assert_eq!(setup.count("in_doubt"), 0);
}

/// Stopped (SIGTERM) while waiting for another process's write lock, a send records
/// what came back once the lock is free, ends as interrupted (130), not halted, and
/// the next run finishes the campaign without `--resume-halted` or a duplicate.
#[test]
fn a_send_stopped_while_waiting_for_the_write_lock_is_interrupted_not_halted() {
    let (server, setup, child, other) = locked_mid_run();
    std::thread::sleep(Duration::from_secs(2));
    let pid = i32::try_from(child.id()).expect("a pid");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_secs(2));
    let (output, stderr) = release_and_finish(other, child);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("recording what was in flight"), "{stderr}");
    let sent = server.count();
    assert!(sent < 60, "the run did not stop: {sent} sent");
    // Every answer that came back is recorded: nothing is left in flight or in doubt.
    assert_eq!(setup.count("accepted"), sent as u64);
    assert_eq!(setup.count("in_flight"), 0);
    assert_eq!(setup.count("in_doubt"), 0);
    let status = setup.status();
    assert!(status.get("halted").is_some_and(Value::is_null), "{status}");

    setup.send(&["--yes"]).assert().success();
    let log = server.log();
    assert_eq!(requests_by_recipient(&log).values().max(), Some(&1));
    assert_eq!(accepted_once(&log), all(&setup.phones));
}

// ---- secrets ----

/// Runs `child` to its end, reading `files` again and again while it runs (the WAL
/// exists only while the journal is open), and fails if any copy holds one of
/// `canaries`. Returns the process's output and how many non-empty WAL reads were made.
fn run_watching(
    mut child: Child,
    files: &[PathBuf],
    canaries: &[String],
) -> (std::process::Output, usize) {
    let mut wal_reads = 0;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    // The outputs are small, but read them on threads so a full pipe cannot block the run.
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = loop {
        for file in files {
            if let Ok(bytes) = std::fs::read(file) {
                for canary in canaries {
                    assert_no_canary(&bytes, canary, &file.display().to_string());
                }
                if file.to_string_lossy().ends_with("-wal") && !bytes.is_empty() {
                    wal_reads += 1;
                }
            }
        }
        if let Some(status) = child.try_wait().expect("polling") {
            break status;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = std::process::Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    };
    (output, wal_reads)
}

fn assert_no_canary(bytes: &[u8], canary: &str, what: &str) {
    let found = bytes.windows(canary.len()).any(|w| w == canary.as_bytes());
    assert!(!found, "the token leaked into {what}");
}

/// A fresh random token, so that finding it anywhere can only mean it leaked.
fn canary() -> String {
    let mut rng = fastrand::Rng::new();
    let tail: String = (0..40).map(|_| rng.alphanumeric()).collect();
    format!("EAAGcanary{tail}")
}

/// Sends a campaign whose every request is answered with `reply`, twice (text and
/// `--json`), then runs `status` in every form, and looks for the token everywhere.
fn token_never_leaks(reply: Reply, timeout_ms: u64, expected_exit: i32) {
    let token = canary();
    let server = MockServer::start();
    server.set_rule(move |_| reply.clone());
    let setup = Setup::with_token(
        6,
        &server.base_url(),
        Sending {
            concurrency: 2,
            timeout_ms,
            ..Sending::default()
        },
        &token,
    );
    let db = setup.db();
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let files = [db.clone(), wal.clone()];
    let mut wal_reads = 0;
    let mut outputs = Vec::new();
    for args in [
        &["--yes"][..],
        &["--yes", "--json", "--resume-halted", "--in-doubt", "resend"][..],
    ] {
        let (output, reads) = run_watching(
            setup.spawn_send(args, true),
            &files,
            std::slice::from_ref(&token),
        );
        assert_eq!(
            output.status.code(),
            Some(expected_exit),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        wal_reads += reads;
        outputs.push(output.stdout);
        outputs.push(output.stderr);
    }
    assert!(
        wal_reads > 0,
        "the WAL was never seen: the test did not look"
    );
    for args in [
        &["status", "campaign.toml"][..],
        &["--json", "status", "campaign.toml"][..],
        &["status", "campaign.toml", "--csv", "status.csv"][..],
        &["-vv", "send", "campaign.toml", "--dry-run"][..],
    ] {
        let out = setup.cmd().args(args).output().expect("running wacampaign");
        outputs.push(out.stdout);
        outputs.push(out.stderr);
    }
    for (i, output) in outputs.iter().enumerate() {
        assert_no_canary(output, &token, &format!("output {i}"));
    }
    let csv = std::fs::read(setup.dir.join("status.csv")).expect("status.csv");
    assert!(!csv.is_empty());
    assert_no_canary(&csv, &token, "status.csv");
    for file in &files {
        if let Ok(bytes) = std::fs::read(file) {
            assert_no_canary(&bytes, &token, &file.display().to_string());
        }
    }
    // The token did go out, as the Authorization header: the server had it to echo.
    let log = server.log();
    assert!(!log.is_empty());
    assert!(
        log.iter()
            .all(|r| r.header("authorization") == Some(format!("Bearer {token}").as_str())),
        "the requests carried the token"
    );
}

#[test]
fn the_token_never_leaks_when_a_401_echoes_it() {
    token_never_leaks(Reply::EchoAuthorization, 5000, 3);
}

#[test]
fn the_token_never_leaks_when_an_acceptance_echoes_it() {
    token_never_leaks(Reply::AcceptEchoingAuthorization, 5000, 0);
}

#[test]
fn the_token_never_leaks_on_a_timeout() {
    token_never_leaks(Reply::Slow(Duration::from_millis(1500)), 300, 1);
}

/// The ways a server or proxy may echo `secret` back: cased, URL- and form-encoded,
/// JSON-escaped, and inside the base64 of a Basic `Authorization` header for `user`.
fn spellings(secret: &str, user: &str) -> Vec<String> {
    use base64::Engine as _;
    let percent: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    vec![
        secret.to_owned(),
        secret.to_lowercase(),
        secret.to_uppercase(),
        percent.clone(),
        percent.to_lowercase(),
        form,
        // Inside JSON from an encoder that escapes `/`.
        secret.replace('/', "\\/"),
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

/// A server that echoes the secret in every spelling, in a 401 and in a 500 body,
/// for the Cloud API and for Twilio: no spelling reaches stdout, stderr, the
/// database, its WAL or `status --csv`. Only the exact spelling used to be redacted.
#[test]
fn no_spelling_of_the_secret_leaks_when_a_server_echoes_it() {
    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    for provider in ["cloud_api", "twilio"] {
        for status in [401, 500] {
            let mut rng = fastrand::Rng::new();
            let tail: String = (0..32).map(|_| rng.alphanumeric()).collect();
            // Characters that URL and form encoding change, so those spellings differ.
            let secret = format!("EAAG/canary+{tail}= x");
            let user = if provider == "twilio" { SID } else { "" };
            let variants = spellings(&secret, user);
            let echoed = variants.join(" | ");
            let body = match (provider, status) {
                ("cloud_api", 401) => serde_json::json!({"error": {
                    "message": format!("Invalid OAuth access token: {echoed}"),
                    "type": "OAuthException", "code": 190}})
                .to_string(),
                ("twilio", 401) => serde_json::json!({
                    "code": 20003, "message": format!("Authenticate: {echoed}"), "status": 401})
                .to_string(),
                // Padded so that the first echo crosses the 300 characters kept of a
                // body that is not the provider's error document.
                _ => format!(
                    "<html>{}proxy error; you sent {echoed}</html>",
                    "x".repeat(252)
                ),
            };
            let server = MockServer::start();
            server.set_rule(move |_| Reply::Raw {
                status,
                body: body.clone(),
            });
            let setup = Setup::with_token(2, &server.base_url(), Sending::default(), &secret);
            if provider == "twilio" {
                let text = setup.campaign_text();
                let text = edit(
                    &text,
                    "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
                    &format!(
                        "[provider]\nkind = \"twilio\"\nfrom = \"+14155238886\"\naccount_sid = \"{SID}\"\n"
                    ),
                );
                let text = edit(
                    &text,
                    "[template.variables]",
                    "content_sid = \"HX0123456789abcdef0123456789abcdef\"\n\n[template.variables]",
                );
                setup.rewrite_campaign(&text);
            }
            let db = setup.db();
            let files = [db.clone(), PathBuf::from(format!("{}-wal", db.display()))];
            let mut outputs = Vec::new();
            for args in [&["--yes"][..], &["--yes", "--json", "--resume-halted"][..]] {
                let child = std::process::Command::new(env!("CARGO_BIN_EXE_wacampaign"))
                    .current_dir(&setup.dir)
                    .env("NO_COLOR", "1")
                    .env(NO_MESSAGING_LIMIT.0, NO_MESSAGING_LIMIT.1)
                    .env("WHATSAPP_TOKEN", &secret)
                    .env("TWILIO_AUTH_TOKEN", &secret)
                    .env_remove("TWILIO_API_KEY_SID")
                    .env_remove("TWILIO_API_KEY_SECRET")
                    .env_remove("WACAMPAIGN_DB")
                    .args(["--color", "never", "--db"])
                    .arg(&db)
                    .args(["send", "campaign.toml"])
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("starting wacampaign send");
                let (output, _) = run_watching(child, &files, &variants);
                outputs.push(output.stdout);
                outputs.push(output.stderr);
            }
            for args in [
                &["status", "campaign.toml"][..],
                &["--json", "status", "campaign.toml"][..],
                &["status", "campaign.toml", "--csv", "status.csv"][..],
            ] {
                let out = setup
                    .cmd()
                    .env("TWILIO_AUTH_TOKEN", &secret)
                    .args(args)
                    .output()
                    .expect("running wacampaign");
                outputs.push(out.stdout);
                outputs.push(out.stderr);
            }
            let csv = std::fs::read(setup.dir.join("status.csv")).expect("status.csv");
            let what = format!("{provider} {status}");
            assert!(
                String::from_utf8_lossy(&csv).contains("[redacted]"),
                "{what}: the echo was not recorded: {}",
                String::from_utf8_lossy(&csv)
            );
            // Nor any part of it: eight characters of its random tail are enough to
            // narrow a search for the rest.
            let pieces: Vec<String> = (0..=tail.len() - 8)
                .map(|i| tail[i..i + 8].to_owned())
                .collect();
            for variant in variants.iter().chain(&pieces) {
                for (i, output) in outputs.iter().enumerate() {
                    assert_no_canary(output, variant, &format!("{what} output {i} ({variant})"));
                }
                assert_no_canary(&csv, variant, &format!("{what} status.csv ({variant})"));
                for file in &files {
                    if let Ok(bytes) = std::fs::read(file) {
                        assert_no_canary(&bytes, variant, &format!("{what} {}", file.display()));
                    }
                }
            }
            assert!(!server.log().is_empty(), "{what}: nothing was sent");
        }
    }
}

// ---- halts and the circuit breaker ----

#[test]
fn error_131048_halts_within_the_in_flight_window_and_resumes_only_when_asked() {
    const N: usize = 30;
    const CONCURRENCY: usize = 8;
    let server = MockServer::start();
    server.set_latency(Duration::from_millis(2));
    server.set_rule(|r| {
        if r.n >= N {
            Reply::graph(
                131048,
                "(#131048) Spam rate limit hit: quality restrictions on this number",
            )
        } else {
            Reply::Accept
        }
    });
    let setup = Setup::new(
        200,
        &server.base_url(),
        Sending {
            concurrency: CONCURRENCY,
            ..Sending::default()
        },
    );
    let halted = setup.send(&["--yes"]).assert().code(3);
    let sent = server.count();
    assert!(
        sent <= N + CONCURRENCY,
        "{sent} requests reached the server; at most {} may once the {N}th is refused",
        N + CONCURRENCY
    );
    assert!(
        all_output(&halted).contains("131048"),
        "{}",
        all_output(&halted)
    );

    let refused = setup.send(&["--yes"]).assert().code(3);
    assert_eq!(
        server.count(),
        sent,
        "a halted campaign sent without --resume-halted"
    );
    assert!(
        all_output(&refused).contains("--resume-halted"),
        "{}",
        all_output(&refused)
    );

    // Asking to resume without confirming (no terminal, no --yes) lifts nothing.
    setup.send(&["--resume-halted"]).assert().code(2);
    setup.send(&["--yes"]).assert().code(3);
    assert_eq!(
        server.count(),
        sent,
        "an unconfirmed resume lifted the halt"
    );

    server.set_rule(|_| Reply::Accept);
    setup.send(&["--yes", "--resume-halted"]).assert().code(0);
    assert_eq!(accepted_once(&server.log()), all(&setup.phones));
    assert_eq!(setup.count("accepted"), 200);
}

/// Every `every`th recipient's number is not on WhatsApp (131026).
fn undeliverable_share(every: usize) -> (assert_cmd::assert::Assert, Setup, MockServer) {
    let server = MockServer::start();
    let setup = Setup::new(500, &server.base_url(), Sending::default());
    let failing: HashSet<String> = setup.phones.iter().step_by(every).cloned().collect();
    server.set_rule(move |r| {
        if failing.contains(r.to) {
            Reply::graph(131026, "(#131026) Message undeliverable")
        } else {
            Reply::Accept
        }
    });
    let assert = setup.send(&["--yes"]).assert();
    (assert, setup, server)
}

#[test]
fn ten_percent_undeliverable_trips_the_circuit_breaker() {
    let (assert, _setup, server) = undeliverable_share(10);
    let assert = assert.code(3);
    assert!(
        all_output(&assert).contains("circuit breaker"),
        "{}",
        all_output(&assert)
    );
    assert!(
        server.count() < 500,
        "the breaker did not stop the campaign"
    );
}

#[test]
fn two_percent_undeliverable_does_not_trip_the_circuit_breaker() {
    let (assert, setup, server) = undeliverable_share(50);
    let assert = assert.code(1);
    assert!(!all_output(&assert).contains("circuit breaker"));
    assert_eq!(server.count(), 500);
    assert_eq!(setup.count("failed"), 10);
    assert_eq!(setup.count("accepted"), 490);
}

// ---- pacing ----

#[test]
fn throughput_never_exceeds_the_rate_in_any_one_second_window() {
    const RATE: usize = 50;
    let server = MockServer::start();
    server.set_latency(Duration::from_millis(5));
    let setup = Setup::new(
        400,
        &server.base_url(),
        Sending {
            rate: RATE as u32,
            ..Sending::default()
        },
    );
    setup.send(&["--yes"]).assert().code(0);
    let log = server.log();
    assert_eq!(accepted_once(&log), all(&setup.phones));
    let mut times: Vec<Duration> = log.iter().map(|r| r.at).collect();
    times.sort();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|t| **t < *start + Duration::from_secs(1))
            .count();
        assert!(
            in_window <= RATE,
            "{in_window} requests in the second from {start:?}, over the rate of {RATE}"
        );
    }
    // The tightest the server saw: the shortest time spanned by RATE + 1 requests
    // (over one second, or the loop above would have failed).
    let tightest = times
        .windows(RATE + 1)
        .map(|w| w[RATE] - w[0])
        .min()
        .expect("more than RATE requests");
    eprintln!(
        "pacing: {} requests spanned at least {tightest:?}",
        RATE + 1
    );
    let span = (times[times.len() - 1] - times[0]).as_secs_f64();
    assert!(
        399.0 / span > 0.8 * RATE as f64,
        "{:.1} messages/s: far below the rate",
        399.0 / span
    );
}

/// The one recipient answered `first` once, then accepted: it is sent again no
/// sooner than the `Retry-After`, accepted once, and never failed.
fn retry_after_is_honoured(first: Reply, retry_after: u64) {
    let server = MockServer::start();
    let setup = Setup::new(
        30,
        &server.base_url(),
        Sending {
            rate: 100,
            concurrency: 4,
            ..Sending::default()
        },
    );
    let target = setup.phones[10].clone();
    let answer = target.clone();
    server.set_rule(move |r| {
        if r.to == answer && r.earlier_for_recipient == 0 {
            first.clone()
        } else {
            Reply::Accept
        }
    });
    setup.send(&["--yes"]).assert().code(0);
    let log = server.log();
    let tries: Vec<&Received> = log.iter().filter(|r| r.to == target).collect();
    assert_eq!(tries.len(), 2, "one refusal, one retry");
    let waited = tries[1].at - tries[0].at;
    assert!(
        waited >= Duration::from_secs(retry_after),
        "retried after {waited:?}, before the Retry-After of {retry_after} s"
    );
    assert_eq!(accepted_once(&log), all(&setup.phones));
    assert_eq!(setup.count("accepted"), 30);
    assert_eq!(setup.count("failed"), 0);
}

#[test]
fn a_429_with_retry_after_is_honoured_and_the_message_later_accepted() {
    retry_after_is_honoured(Reply::TooMany { retry_after: 2 }, 2);
}

#[test]
fn retry_after_on_maintenance_mode_is_honoured() {
    retry_after_is_honoured(
        Reply::Graph {
            status: 503,
            code: 131057,
            message: "(#131057) Business account is in maintenance mode".into(),
            retry_after: Some(2),
        },
        2,
    );
}

/// Meta's pair rate limit (131056, too many messages to one person) holds back that
/// person's message for at least the 6 s the limit asks, while everyone else goes out
/// at the campaign's pace: no halt, no slowdown.
#[test]
fn a_pair_rate_limit_defers_that_recipient_only() {
    let server = MockServer::start();
    let setup = Setup::new(
        30,
        &server.base_url(),
        Sending {
            rate: 100,
            concurrency: 4,
            ..Sending::default()
        },
    );
    let target = setup.phones[10].clone();
    let answer = target.clone();
    server.set_rule(move |r| {
        if r.to == answer && r.earlier_for_recipient == 0 {
            Reply::graph(
                131056,
                "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            )
        } else {
            Reply::Accept
        }
    });
    setup.send(&["--yes"]).assert().code(0);
    let log = server.log();
    let tries: Vec<&Received> = log.iter().filter(|r| r.to == target).collect();
    assert_eq!(tries.len(), 2, "one refusal, one retry");
    let waited = tries[1].at - tries[0].at;
    assert!(
        waited >= Duration::from_secs(6),
        "retried after {waited:?}, sooner than the pair rate limit allows"
    );
    let others_done = log
        .iter()
        .filter(|r| r.to != target)
        .map(|r| r.at)
        .max()
        .unwrap();
    assert!(
        others_done < tries[0].at + Duration::from_secs(2),
        "the others waited: the last went out {:?} after the refusal",
        others_done.saturating_sub(tries[0].at)
    );
    assert_eq!(accepted_once(&log), all(&setup.phones));
    assert_eq!(setup.count("accepted"), 30);
    assert_eq!(setup.count("failed"), 0);
}

/// A `Retry-After` too long to honour is capped; the run waits, and stops cleanly on
/// SIGTERM, leaving the messages to retry, not in doubt.
#[test]
fn an_absurd_retry_after_neither_crashes_nor_loses_track() {
    let server = MockServer::start();
    server.set_rule(|_| Reply::TooMany {
        retry_after: 99_999_999_999_999,
    });
    let setup = Setup::new(
        2,
        &server.base_url(),
        Sending {
            concurrency: 2,
            ..Sending::default()
        },
    );
    let mut child = setup.spawn_send(&["--yes"], false);
    assert!(server.wait_for(1, Duration::from_secs(30)));
    // Long enough for the refusal to be recorded.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        child.try_wait().expect("polling"),
        None,
        "the run ended while it should wait"
    );
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) on our own child's pid, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(wait(&mut child).code(), Some(130));
    // The refused one waits for its retry; a run's slow start may not have claimed
    // the other before the pause, which leaves it planned. Either way, both are
    // still to send and neither is in doubt.
    assert!(setup.count("deferred") >= 1);
    assert_eq!(setup.count("deferred") + setup.count("planned"), 2);
    assert_eq!(setup.count("in_doubt"), 0);
    assert_eq!(setup.count("in_flight"), 0);
}

// ---- in doubt ----

/// The 4th recipient's first request gets `reply`: its row is in doubt (exit 1),
/// held by the next run, and sent again only with `--in-doubt resend`.
fn in_doubt_is_held_until_resent(reply: Reply, timeout_ms: u64) {
    let server = MockServer::start();
    let setup = Setup::new(
        10,
        &server.base_url(),
        Sending {
            concurrency: 2,
            timeout_ms,
            ..Sending::default()
        },
    );
    let target = setup.phones[3].clone();
    let answer = target.clone();
    server.set_rule(move |r| {
        if r.to == answer {
            reply.clone()
        } else {
            Reply::Accept
        }
    });
    setup.send(&["--yes"]).assert().code(1);
    assert_eq!(setup.count("in_doubt"), 1);
    assert_eq!(setup.count("accepted"), 9);
    let status = setup.status();
    assert_eq!(status["in_doubt"][0]["phone"], target.as_str(), "{status}");
    assert_eq!(server.count(), 10);

    let held = setup.send(&["--yes"]).assert().code(1);
    assert_eq!(server.count(), 10, "a held message was sent again");
    assert!(
        all_output(&held).contains("in doubt"),
        "{}",
        all_output(&held)
    );

    // Asking to resend without confirming (no terminal, no --yes) changes nothing:
    // the next plain run still holds the message.
    setup.send(&["--in-doubt", "resend"]).assert().code(2);
    setup.send(&["--yes"]).assert().code(1);
    assert_eq!(
        server.count(),
        10,
        "an unconfirmed resend released a held message"
    );

    server.set_rule(|_| Reply::Accept);
    setup
        .send(&["--yes", "--in-doubt", "resend"])
        .assert()
        .code(0);
    let log = server.log();
    assert_eq!(log.len(), 11);
    assert_eq!(log[10].to, target);
    assert_eq!(setup.count("accepted"), 10);
    assert_eq!(setup.count("in_doubt"), 0);
}

#[test]
fn a_5xx_leaves_the_message_in_doubt_until_resent() {
    in_doubt_is_held_until_resent(Reply::Status(502), 5000);
}

#[test]
fn a_timeout_leaves_the_message_in_doubt_until_resent() {
    in_doubt_is_held_until_resent(Reply::Slow(Duration::from_millis(1500)), 300);
}

#[test]
fn a_connection_closed_after_the_request_leaves_the_message_in_doubt() {
    in_doubt_is_held_until_resent(Reply::Drop, 5000);
}

#[test]
fn a_refused_connection_is_retried_not_in_doubt() {
    // A port nobody listens on, until the server starts there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let setup = Setup::new(
        5,
        &format!("http://127.0.0.1:{port}"),
        Sending {
            concurrency: 5,
            ..Sending::default()
        },
    );
    let mut child = setup.spawn_send(&["--yes", "--json"], true);
    std::thread::sleep(Duration::from_millis(800));
    let server = MockServer::start_on(port);
    let status = wait(&mut child);
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut stdout)
        .expect("reading stdout");
    assert_eq!(status.code(), Some(0));
    let summary = json_lines(&stdout).pop().expect("a summary");
    assert!(
        summary["data"]["this_run"]["retried"].as_u64() >= Some(5),
        "{summary}"
    );
    assert_eq!(accepted_once(&server.log()), all(&setup.phones));
    assert_eq!(setup.count("in_doubt"), 0);
    assert_eq!(setup.count("accepted"), 5);
}

// ---- re-runs, locks, and the command line ----

#[test]
fn rerunning_a_finished_campaign_sends_nothing() {
    let server = MockServer::start();
    let setup = Setup::new(10, &server.base_url(), Sending::default());
    setup.send(&["--yes"]).assert().code(0);
    assert_eq!(server.count(), 10);
    let again = setup.send(&["--yes"]).assert().code(0);
    assert_eq!(server.count(), 10);
    assert!(
        all_output(&again).contains("nothing to send"),
        "{}",
        all_output(&again)
    );
}

#[test]
fn a_changed_template_under_the_same_id_is_refused() {
    let server = MockServer::start();
    let setup = Setup::new(10, &server.base_url(), Sending::default());
    setup.send(&["--yes", "--limit", "3"]).assert().code(0);
    setup.rewrite_campaign(&edit(
        &setup.campaign_text(),
        "tu cita es el {{2}}.",
        "tu cita es el {{2}}. Responde SI para confirmar.",
    ));
    let refused = setup.send(&["--yes"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("different template") && stderr.contains("new campaign.id"),
        "{stderr}"
    );
    assert_eq!(server.count(), 3);
}

#[test]
fn a_second_send_of_the_same_campaign_is_refused_at_once() {
    let server = MockServer::start();
    server.set_latency(Duration::from_millis(100));
    let setup = Setup::new(
        30,
        &server.base_url(),
        Sending {
            rate: 10,
            concurrency: 2,
            ..Sending::default()
        },
    );
    let mut first = setup.spawn_send(&["--yes"], false);
    assert!(server.wait_for(1, Duration::from_secs(30)));
    let asked = Instant::now();
    let second = setup.send(&["--yes"]).assert().code(3);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "refused only after {:?}",
        asked.elapsed()
    );
    assert!(
        first.try_wait().expect("polling").is_none(),
        "the first run had already finished"
    );
    let stderr = String::from_utf8_lossy(&second.get_output().stderr).into_owned();
    assert!(stderr.contains("another process"), "{stderr}");
    assert!(wait(&mut first).success());
    assert_eq!(accepted_once(&server.log()), all(&setup.phones));
    assert_eq!(server.count(), 30);
}

#[test]
fn a_dry_run_sends_nothing_and_writes_no_journal_rows() {
    let server = MockServer::start();
    let setup = Setup::new(10, &server.base_url(), Sending::default());
    let dry = setup.send(&["--dry-run"]).assert().code(0);
    assert!(
        all_output(&dry).contains("10 messages would be sent in this run (10 rendered"),
        "{}",
        all_output(&dry)
    );
    assert_eq!(server.count(), 0);
    let conn = rusqlite::Connection::open(setup.db()).expect("opening the database");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
        .expect("counting journal rows");
    let campaigns: i64 = conn
        .query_row("SELECT count(*) FROM campaigns", [], |r| r.get(0))
        .expect("counting campaigns");
    assert_eq!((rows, campaigns), (0, 0));
}

#[test]
fn limit_sends_exactly_n_then_the_rest() {
    let server = MockServer::start();
    let setup = Setup::new(20, &server.base_url(), Sending::default());
    setup.send(&["--yes", "--limit", "7"]).assert().code(0);
    assert_eq!(server.count(), 7);
    assert_eq!(accepted_once(&server.log()).len(), 7);
    assert_eq!(setup.count("accepted"), 7);
    assert_eq!(setup.count("planned"), 13);
    setup.send(&["--yes"]).assert().code(0);
    assert_eq!(server.count(), 20);
    assert_eq!(accepted_once(&server.log()), all(&setup.phones));
}

#[test]
fn without_a_terminal_and_without_yes_nothing_is_sent() {
    let server = MockServer::start();
    let setup = Setup::new(10, &server.base_url(), Sending::default());
    let refused = setup.send(&[]).assert().code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(server.count(), 0);
}

#[test]
fn the_json_summary_parses_and_adds_up() {
    let server = MockServer::start();
    let setup = Setup::new(12, &server.base_url(), Sending::default());
    server.set_rule(|r| {
        if r.to.ends_with('5') {
            Reply::graph(131026, "(#131026) Message undeliverable")
        } else {
            Reply::Accept
        }
    });
    let assert = setup.send(&["--yes", "--json"]).assert().code(1);
    let lines = json_lines(&assert.get_output().stdout);
    assert_eq!(lines.len(), 1, "one summary line: {lines:?}");
    let summary = &lines[0];
    assert_eq!(summary["type"], "send_summary");
    let data = &summary["data"];
    assert_eq!(data["dry_run"], false);
    assert_eq!(data["to_send"], 12);
    assert_eq!(data["end"]["end"], "finished");
    assert_eq!(data["this_run"]["accepted"], 11);
    assert_eq!(data["this_run"]["failed"], 1);
    assert_eq!(data["this_run"]["requests"], 12);
    assert_eq!(data["journal"]["accepted"], 11);
    assert_eq!(data["failures_by_code"]["131026"], 1);
    // The wamid the server returned is what the journal kept.
    let log = server.log();
    let first = log
        .iter()
        .find(|r| r.reply.accepts())
        .expect("an accepted message");
    let conn = rusqlite::Connection::open(setup.db()).expect("opening the database");
    let wamid: String = conn
        .query_row(
            "SELECT message_id FROM journal WHERE phone = ?1",
            [&first.to],
            |r| r.get(0),
        )
        .expect("the journal row");
    assert_eq!(wamid, format!("wamid.HBgNMOCK{:012X}", first.n));
}

#[test]
fn requests_are_well_formed_cloud_api_calls() {
    let server = MockServer::start();
    let setup = Setup::new(3, &server.base_url(), Sending::default());
    setup.send(&["--yes"]).assert().code(0);
    for r in server.log() {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v23.0/106540352242922/messages");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body["messaging_product"], "whatsapp");
        assert_eq!(r.body["template"]["name"], "appointment_reminder");
        assert_eq!(
            r.body["template"]["components"][0]["parameters"][1]["text"],
            "martes"
        );
        assert!(setup.phones.contains(&r.to));
    }
}

// ---- reports ----

/// Every report that holds phone numbers replaces an existing file with one only its
/// owner can read: opening the old file kept its mode, so a 0644 report stayed
/// world-readable. A run that fails leaves the old file as it was, and no temporary
/// file behind.
#[test]
fn reports_replace_a_world_readable_file_with_a_private_one() {
    use std::os::unix::fs::PermissionsExt;
    let server = MockServer::start();
    server.set_rule(|_| Reply::Accept);
    let setup = Setup::new(3, &server.base_url(), Sending::default());
    setup.send(&["--yes"]).assert().code(0);

    let reports = ["excluded.csv", "status.csv", "ledger.csv", "ledger.jsonl"];
    for name in reports {
        let path = setup.dir.join(name);
        std::fs::write(&path, "old report\n").expect("writing an old report");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    }
    for args in [
        &["check", "campaign.toml", "--excluded", "excluded.csv"][..],
        &["status", "campaign.toml", "--csv", "status.csv"][..],
        &[
            "consent",
            "export",
            "--format",
            "csv",
            "--output",
            "ledger.csv",
        ][..],
        &["consent", "export", "--output", "ledger.jsonl"][..],
    ] {
        setup.cmd().args(args).assert().success();
    }
    for name in reports {
        let path = setup.dir.join(name);
        let mode = std::fs::metadata(&path).expect(name).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name} holds customers' phone numbers");
        let text = std::fs::read_to_string(&path).expect(name);
        assert!(
            !text.contains("old report"),
            "{name} was not rewritten: {text}"
        );
    }
    let status = std::fs::read_to_string(setup.dir.join("status.csv")).expect("status.csv");
    assert!(status.contains(&setup.phones[0]), "{status}");

    // A check that fails partway (an unclosed quote after an excluded row) keeps the
    // previous report whole.
    std::fs::write(setup.dir.join("excluded.csv"), "old report\n").expect("writing");
    std::fs::write(
        setup.dir.join("contacts.csv"),
        "name,phone,date\nAna,55-CALL-NOW,lunes\n\"Luis,5523456789,martes\n",
    )
    .expect("writing contacts.csv");
    setup
        .cmd()
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .code(2);
    assert_eq!(
        std::fs::read_to_string(setup.dir.join("excluded.csv")).expect("excluded.csv"),
        "old report\n"
    );
    let leftovers = crate::support::files_ending(&setup.dir, ".tmp");
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Each in-doubt row says what happened: a 5xx with its status once (it read
/// "HTTP 500: HTTP 500: ..."), a dropped connection, a read timeout with how long
/// was waited (both read "error sending request for url (...)").
#[test]
fn in_doubt_rows_say_what_happened() {
    let server = MockServer::start();
    let setup = Setup::new(
        4,
        &server.base_url(),
        Sending {
            concurrency: 4,
            timeout_ms: 300,
            ..Sending::default()
        },
    );
    let phones = setup.phones.clone();
    server.set_rule(move |r| {
        if r.to == phones[0] {
            Reply::Status(500)
        } else if r.to == phones[1] {
            Reply::Drop
        } else if r.to == phones[2] {
            Reply::Slow(Duration::from_millis(1500))
        } else {
            Reply::Accept
        }
    });
    setup.send(&["--yes"]).assert().code(1);
    setup
        .cmd()
        .args(["status", "campaign.toml", "--csv", "status.csv"])
        .assert()
        .success();
    let mut reader = csv::Reader::from_path(setup.dir.join("status.csv")).expect("status.csv");
    let details: HashMap<String, String> = reader
        .records()
        .map(|r| {
            let r = r.expect("a row");
            (r[0].trim_start_matches('\'').to_owned(), r[6].to_owned())
        })
        .collect();
    assert_eq!(
        details[&setup.phones[0]],
        "HTTP 500: <html><body><h1>500</h1>upstream error</body></html>"
    );
    assert_eq!(
        details[&setup.phones[1]],
        "connection closed by the server before an answer"
    );
    assert_eq!(
        details[&setup.phones[2]],
        "read timeout: no answer within 0.3 s"
    );
    assert_eq!(details[&setup.phones[3]], "");
}

/// Meta's per-user marketing limit (131049) for half a campaign: not a failure, so
/// the breaker (which trips above 5%) does not; those people wait a day, never less:
/// a run 23 h later sends none of them, a run 25 h later sends them all, once.
#[test]
fn the_per_user_marketing_limit_defers_a_day_without_tripping_the_breaker() {
    const CONTACTS: usize = 60;
    let server = MockServer::start();
    let setup = Setup::new(
        CONTACTS,
        &server.base_url(),
        Sending {
            rate: 200,
            ..Sending::default()
        },
    );
    let limited: std::collections::HashSet<String> =
        setup.phones.iter().step_by(2).cloned().collect();
    let answer = limited.clone();
    server.set_rule(move |r| {
        if answer.contains(r.to) && r.earlier_for_recipient == 0 {
            Reply::graph(
                131049,
                "This message was not delivered to maintain healthy ecosystem engagement.",
            )
        } else {
            Reply::Accept
        }
    });
    let start = chrono::Utc::now();
    let at = |hours: i64| (start + chrono::Duration::hours(hours)).to_rfc3339();

    setup
        .send(&["--yes"])
        .env("WACAMPAIGN_NOW", at(0))
        .assert()
        .code(0)
        .stdout(predicates::str::contains(
            "30 recipients left for a later run",
        ));
    assert_eq!(setup.count("deferred"), 30);
    assert_eq!(setup.count("failed"), 0);
    assert_eq!(setup.count("accepted"), 30);
    assert!(
        setup.status()["halted"].is_null(),
        "the breaker did not trip"
    );

    let before = server.count();
    setup
        .send(&["--yes"])
        .env("WACAMPAIGN_NOW", at(23))
        .assert()
        .code(0);
    assert_eq!(server.count(), before, "23 h later, nobody is messaged");
    assert_eq!(setup.count("deferred"), 30);

    setup
        .send(&["--yes"])
        .env("WACAMPAIGN_NOW", at(25))
        .assert()
        .code(0);
    assert_eq!(setup.count("accepted"), CONTACTS as u64);
    assert_eq!(setup.count("deferred"), 0);
    let log = server.log();
    for phone in &limited {
        assert_eq!(
            log.iter().filter(|r| &r.to == phone).count(),
            2,
            "{phone}: refused once, sent once a day later"
        );
    }
}
