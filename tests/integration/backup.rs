//! `wacampaign backup FILE` while a real send writes to the same database file.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use crate::mock_server::MockServer;
use crate::support::{CAMPAIGN, opt_in_everyone};
use crate::webhook::harness::Workspace;

fn campaign_of(ws: &Workspace, mock: &MockServer, contacts: usize) {
    ws.write(
        "campaign.toml",
        format!(
            "{CAMPAIGN}base_url = \"{}\"\n\n[sending]\nrate_per_second = 150\nconcurrency = 4\n",
            mock.base_url()
        ),
    );
    let mut csv = String::from("name,phone,date\n");
    for i in 0..contacts {
        csv.push_str(&format!("Cliente {i},+52 55 {},martes\n", 30_000_000 + i));
    }
    ws.write("contacts.csv", csv);
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
}

#[test]
fn a_backup_taken_during_a_send_is_private_and_verifies() {
    let ws = Workspace::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(20));
    campaign_of(&ws, &mock, 600);
    let mut send = std::process::Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(ws.path())
        .env("WHATSAPP_TOKEN", "EAAGtest0token")
        .env(
            crate::support::NO_MESSAGING_LIMIT.0,
            crate::support::NO_MESSAGING_LIMIT.1,
        )
        .args(["--color", "never", "--db"])
        .arg(ws.db())
        .args(["send", "campaign.toml", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        mock.wait_for(50, Duration::from_secs(60)),
        "the send started"
    );

    let out = ws
        .wacampaign()
        .args(["backup", "copy.db"])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("integrity_check       ok"), "{stdout}");
    assert!(
        stdout.contains("consent ledger        intact: 600 events"),
        "{stdout}"
    );
    let still_sending = send.try_wait().unwrap().is_none();
    let copy = ws.path().join("copy.db");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the copy is private");

    assert!(send.wait().unwrap().success());
    assert_eq!(mock.count(), 600);
    // The copy is a database of its own: it verifies, and holds one consistent
    // moment of the send (some, not all, messages journaled as accepted).
    crate::support::wacampaign_in(ws.path(), &copy)
        .args(["consent", "verify"])
        .assert()
        .success();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let accepted: i64 = conn
        .query_row(
            "SELECT count(*) FROM journal WHERE state = 'accepted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        still_sending,
        "the send was still running when the backup finished"
    );
    assert!(accepted < 600, "the copy was taken mid-send: {accepted}");
    assert!(accepted >= 1, "the copy holds what was sent before it");
}

#[test]
fn an_existing_target_is_refused_and_overwrite_replaces_it() {
    let ws = Workspace::new();
    let mock = MockServer::start();
    campaign_of(&ws, &mock, 3);
    ws.write("copy.db", "not a database");
    ws.wacampaign()
        .args(["backup", "copy.db"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("copy.db exists"))
        .stderr(predicates::str::contains("--overwrite"));
    assert_eq!(
        std::fs::read(ws.path().join("copy.db")).unwrap(),
        b"not a database"
    );
    ws.wacampaign()
        .args(["backup", "copy.db", "--overwrite"])
        .assert()
        .success();
    crate::support::wacampaign_in(ws.path(), &ws.path().join("copy.db"))
        .args(["consent", "verify"])
        .assert()
        .success()
        .stdout(predicates::str::contains("ledger intact: 3 events"));
}

#[test]
fn a_backup_to_a_missing_directory_fails_clearly_and_leaves_the_source() {
    let ws = Workspace::new();
    let mock = MockServer::start();
    campaign_of(&ws, &mock, 3);
    let before = std::fs::read(ws.db()).unwrap();
    ws.wacampaign()
        .args(["backup", "no/such/dir/copy.db"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "cannot write a backup beside no/such/dir/copy.db",
        ));
    assert_eq!(std::fs::read(ws.db()).unwrap(), before);
}

/// A disk that fills during the copy, as a file-size limit on the process makes
/// one: a clear error, no target and no temporary file left, the source unchanged.
#[test]
fn a_backup_onto_a_full_disk_fails_clearly_and_leaves_the_source() {
    use std::os::unix::process::CommandExt as _;
    let ws = Workspace::new();
    let mock = MockServer::start();
    campaign_of(&ws, &mock, 2000);
    {
        let conn = rusqlite::Connection::open(ws.db()).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let before = std::fs::read(ws.db()).unwrap();
    assert!(
        before.len() > 256 * 1024,
        "the source is larger than the limit"
    );
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wacampaign"));
    command
        .current_dir(ws.path())
        .args(["--color", "never", "--db"])
        .arg(ws.db())
        .args(["backup", "copy.db"]);
    // SAFETY: async-signal-safe calls only, in the child before exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 128 * 1024,
                rlim_max: 128 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is full"), "{stderr}");
    assert!(stderr.contains("the database was not changed"), "{stderr}");
    let left: Vec<String> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("copy") || n.starts_with(".wacampaign"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(std::fs::read(ws.db()).unwrap(), before);
}
