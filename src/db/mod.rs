//! The SQLite database that holds the consent ledger, the send journal and what the
//! webhook server records.
//!
//! One file, created readable by its owner only (it holds customers' phone numbers),
//! in WAL mode with `synchronous=FULL`: an opt-out or a send intent that was
//! acknowledged survives a power cut. Schema changes are numbered migrations applied
//! by `user_version`; a file written by a newer version is refused, not touched.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use thiserror::Error;

/// The migrations, in order; migration N brings the schema to `user_version` N.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_consent_ledger.sql"),
    include_str!("migrations/0002_send_journal.sql"),
    include_str!("migrations/0003_consent_standing_index.sql"),
    include_str!("migrations/0004_webhooks.sql"),
    include_str!("migrations/0005_ledger_refuses_replace.sql"),
    include_str!("migrations/0006_journal_by_person.sql"),
    include_str!("migrations/0007_erasure.sql"),
    include_str!("migrations/0008_templates.sql"),
    include_str!("migrations/0009_possible_opt_outs_and_pricing.sql"),
    include_str!("migrations/0010_audience_caps.sql"),
    include_str!("migrations/0011_identities_and_messaging_limit.sql"),
    include_str!("migrations/0012_journal_contact.sql"),
    include_str!("migrations/0013_journal_status_fold.sql"),
    include_str!("migrations/0014_journal_pages.sql"),
    include_str!("migrations/0015_departure_log.sql"),
    include_str!("migrations/0016_person_index_on_demand.sql"),
    include_str!("migrations/0017_in_flight_index_on_demand.sql"),
    include_str!("migrations/0018_accepted_by_time_on_demand.sql"),
    include_str!("migrations/0019_claims_by_mark.sql"),
];

/// What runs in Rust right after a migration's SQL, in its transaction: for 0007,
/// re-anchoring the ledger's old events, then the trigger that allows only erasures;
/// for 0013, folding the statuses already recorded onto their journal rows (with the
/// journal's own statement, so the backfill and the live fold cannot disagree).
fn after_migration(tx: &Connection, version: u32) -> rusqlite::Result<()> {
    if version == 7 {
        crate::consent::reanchor::run(tx)?;
        tx.execute_batch(include_str!("migrations/0007_erasure_trigger.sql"))?;
    }
    if version == 13 {
        crate::journal::fold::backfill(tx)?;
    }
    Ok(())
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a writer waits for another process's transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DbError {
    #[error(
        "{path} is readable by other users (mode {mode:04o}) and holds customers' phone \
         numbers; run `chmod 600 {path}` and try again"
    )]
    Permissions { path: String, mode: u32 },
    #[error(
        "{path} was written by a newer wacampaign (schema {found}, this build knows up to \
         {SCHEMA_VERSION}); upgrade wacampaign. The file was not changed."
    )]
    TooNew { path: String, found: u32 },
    #[error(
        "cannot create database {path} (its directory must be writable by you, or point \
         --db or WACAMPAIGN_DB at another path)"
    )]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "database {path} cannot be written: even to read it, wacampaign writes the file and \
         creates {path}-wal and {path}-shm beside it; make the file and its directory \
         writable by you, or work on a copy in a writable directory"
    )]
    ReadOnly {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {path}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
}

/// An open database with the current schema.
#[derive(Debug)]
pub struct Db {
    pub conn: Connection,
    path: PathBuf,
}

impl Db {
    /// Opens the database, creating it (mode 0600) and applying migrations as needed.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let shown = path.display().to_string();
        match std::fs::metadata(path) {
            Ok(meta) => check_mode(&shown, meta.permissions().mode())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Create the empty file ourselves so it is never, even briefly,
                // readable by others; SQLite gives its -wal and -shm files the same mode.
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            OpenOptions::new().read(true).open(path)
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|source| DbError::Create {
                        path: shown.clone(),
                        source,
                    })?;
            }
            Err(source) => {
                return Err(DbError::Create {
                    path: shown,
                    source,
                });
            }
        }
        let sqlite = |source| sqlite_error(&shown, source);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        let found: u32 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite)?;
        if found > SCHEMA_VERSION {
            return Err(DbError::TooNew { path: shown, found });
        }
        let mode = enable_wal(&conn).map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(sqlite(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode is {mode}, WAL is required"
            ))));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite)?;
        // A row deleted or moved by an update leaves its old bytes in free space
        // unless they are overwritten: `wacampaign erase` must leave no trace of a
        // person, so every connection zeroes what it frees.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sqlite)?;
        register_functions(&conn).map_err(sqlite)?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.migrate(found).map_err(sqlite)?;
        Ok(db)
    }

    /// Opens an existing database; `None` when there is none yet, so read-only
    /// commands do not create files as a side effect.
    pub fn open_existing(path: &Path) -> Result<Option<Db>, DbError> {
        if path.exists() {
            Db::open(path).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self, from: u32) -> rusqlite::Result<()> {
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
            // Another process may have migrated while we waited for the lock.
            let current: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
            if current as usize > index {
                continue;
            }
            tx.execute_batch(sql)?;
            after_migration(&tx, index as u32 + 1)?;
            tx.pragma_update(None, "user_version", index as u32 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// SQL functions the migrations use for rules that live in Rust.
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    // The journal's person key of a number written as E.164 digits (see
    // row_key): the same for every spelling WhatsApp produces of it.
    conn.create_scalar_function(
        "wa_consent_key",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let digits: i64 = ctx.get(0)?;
            Ok(crate::phone::E164::from_digits(&digits.to_string())
                .map_or(digits, crate::row_key::person_of))
        },
    )
}

/// Puts the database in WAL mode (kept in the file, so usually already done) and
/// returns the mode now in force.
///
/// Switching needs the database to itself, and SQLite answers SQLITE_BUSY at once,
/// without calling the busy handler, when another process holds it: as when several
/// processes create the same new database together. So this retries until the busy
/// timeout, as every other statement waits.
fn enable_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        let current: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        if current.eq_ignore_ascii_case("wal") {
            return Ok(current);
        }
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// SQLite's error while opening `path`, with the fix where there is one to give.
fn sqlite_error(path: &str, source: rusqlite::Error) -> DbError {
    let path = path.to_owned();
    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) {
        DbError::ReadOnly { path, source }
    } else {
        DbError::Sqlite { path, source }
    }
}

fn check_mode(path: &str, mode: u32) -> Result<(), DbError> {
    if mode & 0o077 != 0 {
        return Err(DbError::Permissions {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// A new database (mode 0600) brought to schema `version` as the build of that
/// schema did: its migrations and their Rust steps, in order. For tests of what a
/// later migration does to it.
#[cfg(test)]
pub(crate) fn at_schema(path: &Path, version: u32) -> Connection {
    let conn = Connection::open(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    register_functions(&conn).unwrap();
    for (index, sql) in MIGRATIONS[..version as usize].iter().enumerate() {
        conn.execute_batch(sql).unwrap();
        after_migration(&conn, index as u32 + 1).unwrap();
    }
    conn.pragma_update(None, "user_version", version).unwrap();
    conn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::State;

    #[test]
    fn a_new_database_is_private_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let db = Db::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let version: u32 = db
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let sync: i64 = db
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        drop(db);
        Db::open(&path).expect("reopening an up-to-date database is fine");
    }

    #[test]
    fn a_database_that_cannot_be_created_or_written_says_what_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("w.db");
        let err = Db::open(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "(its directory must be writable by you, or point --db or \
                 WACAMPAIGN_DB at another path)"
            ),
            "{err}"
        );
        // What SQLite says of a database in a directory this user cannot write (not
        // provoked here: these tests may run as root, whom permissions do not stop).
        let readonly = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY_DIRECTORY),
            None,
        );
        let err = sqlite_error("w.db", readonly).to_string();
        assert!(
            err.contains(
                "creates w.db-wal and w.db-shm beside it; make the file and its \
                 directory writable by you"
            ),
            "{err}"
        );
        let other = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            None,
        );
        assert_eq!(sqlite_error("w.db", other).to_string(), "database w.db");
    }

    #[test]
    fn a_world_readable_database_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        drop(Db::open(&path).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Db::open(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_first_version_ledger_gets_the_covering_index_and_keeps_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO consent_events (id, subject, subject_key, purpose, action,
                     occurred_at, recorded_at, method, recorded_via, source, actor,
                     prev_hash, hash)
                 VALUES (1, '+525512345678', 525512345678, 'marketing', 'opt_in',
                     '2026-01-10T00:00:00Z', '2026-01-10T00:00:00Z', 'web_form', 'command',
                     'form 1', 'ana', '0', 'h')",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let db = Db::open(&path).unwrap();
        let version: u32 = db
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let indexes: Vec<String> = db
            .conn
            .prepare(
                "SELECT name FROM sqlite_master
                 WHERE type = 'index' AND tbl_name = 'consent_events' AND sql IS NOT NULL
                 ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["consent_events_standing"]);
        let events: i64 = db
            .conn
            .query_row("SELECT count(*) FROM consent_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 1);
    }

    /// A journal as version 4 wrote it (keyed by E.164 digits), with the gap the new
    /// key closes: one Argentine number journaled in two spellings.
    #[test]
    fn a_journal_keyed_by_number_migrates_with_every_row_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..4] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute(
                "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
                 VALUES ('promo', 'f', 't', 'es_AR', 'marketing', 'cloud_api', '2026-01-01T00:00:00Z', 2)",
                [],
            )
            .unwrap();
            // The states as version 4 spelt them, which are still the journal's.
            conn.execute(
                "INSERT INTO journal (campaign_id, contact_key, phone, line, seq, plan_run, params, state,
                     attempts, message_id, updated_at)
                 VALUES ('promo', 5491123456789, '+5491123456789', 2, 1, 1, '[\"Ana\"]', ?1, 1,
                         'wamid.A', '2026-01-01T00:00:00Z'),
                        ('promo', 541123456789, '+541123456789', 3, 2, 2, '[\"Ana\"]', ?2, 0,
                         NULL, '2026-01-02T00:00:00Z'),
                        ('promo', 5215512345678, '+5215512345678', 4, 3, 2, '[\"Luis\"]', ?3, 1,
                         NULL, '2026-01-02T00:00:00Z')",
                rusqlite::params![State::Accepted, State::Planned, State::InDoubt],
            )
            .unwrap();
            conn.execute_batch(
                "INSERT INTO message_statuses (message_id, status, rank, timestamp, occurred_at, provider,
                     campaign_id, contact_key, received_at)
                 VALUES ('wamid.A', 'delivered', 2, 1, '2026-01-01T00:00:01Z', 'meta', 'promo',
                         5491123456789, '2026-01-01T00:00:02Z');",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 4).unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let db = Db::open(&path).unwrap();
        let rows: Vec<(i64, String, String, State)> = db
            .conn
            .prepare("SELECT person_id, occurrence, phone, state FROM journal ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (
                    541_123_456_789,
                    String::new(),
                    "+5491123456789".into(),
                    State::Accepted
                ),
                (
                    541_123_456_789,
                    "legacy:541123456789".into(),
                    "+541123456789".into(),
                    State::Planned
                ),
                (
                    525_512_345_678,
                    String::new(),
                    "+5215512345678".into(),
                    State::InDoubt
                ),
            ],
            "every row kept; the sent spelling keeps the person's row"
        );
        let status: (i64, String) = db
            .conn
            .query_row(
                "SELECT person_id, occurrence FROM message_statuses WHERE message_id = 'wamid.A'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(status, (541_123_456_789, String::new()));
    }

    fn journal_rows(conn: &Connection) -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = conn.prepare("SELECT * FROM journal ORDER BY id").unwrap();
        let columns = stmt.column_count();
        stmt.query_map([], |r| {
            (0..columns)
                .map(|i| r.get(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// A journal at schema 13, whose frequency caps read one index of accepted and
    /// in-flight rows together, moves to the two indexes of 0014 with every row as
    /// it was and the caps counting the same messages.
    #[test]
    fn a_schema_13_journal_keeps_its_rows_and_its_caps() {
        use crate::category::Category;
        use crate::frequency_cap::{self, Cap};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let person: i64 = 525_512_345_678;
        let before = {
            let conn = at_schema(&path, 13);
            conn.execute_batch(
                "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
                 VALUES ('promo', 'f', 't', 'es_MX', 'marketing', 'cloud_api', '2026-11-01T00:00:00Z', 1),
                        ('notice', 'f', 't', 'es_MX', 'utility', 'cloud_api', '2026-11-01T00:00:00Z', 1);",
            )
            .unwrap();
            for (campaign, who, occurrence, state, intent_at, outcome_at, message_id) in [
                (
                    "promo",
                    person,
                    "",
                    State::Accepted,
                    Some("2026-11-20T09:00:00Z"),
                    Some("2026-11-20T09:00:01Z"),
                    Some("wamid.A"),
                ),
                (
                    "notice",
                    person,
                    "appt-1",
                    State::Accepted,
                    Some("2026-11-21T09:00:00Z"),
                    Some("2026-11-21T09:00:01Z"),
                    Some("wamid.B"),
                ),
                (
                    "notice",
                    person,
                    "appt-2",
                    State::InFlight,
                    Some("2026-11-22T09:00:00Z"),
                    None,
                    None,
                ),
                (
                    "notice",
                    person,
                    "appt-3",
                    State::Failed,
                    Some("2026-11-23T09:00:00Z"),
                    Some("2026-11-23T09:00:01Z"),
                    None,
                ),
                ("promo", person + 1, "", State::Planned, None, None, None),
                (
                    "promo",
                    person + 2,
                    "",
                    State::Accepted,
                    Some("2026-11-20T10:00:00Z"),
                    Some("2026-11-20T10:00:01Z"),
                    Some("wamid.C"),
                ),
            ] {
                conn.execute(
                    "INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run,
                         params, state, attempts, message_id, intent_at, outcome_at, updated_at)
                     VALUES (?1, ?2, ?3, '+' || ?2, 2, ?2 % 100, 1, '[\"Ana\"]', ?4, 1, ?5, ?6, ?7,
                             '2026-11-23T09:00:01Z')",
                    rusqlite::params![campaign, who, occurrence, state, message_id, intent_at, outcome_at],
                )
                .unwrap();
            }
            journal_rows(&conn)
        };
        let db = Db::open(&path).unwrap();
        let version: u32 = db
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(journal_rows(&db.conn), before, "every row as it was");
        let integrity: String = db
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let indexes: Vec<String> = db
            .conn
            .prepare(
                "SELECT name FROM sqlite_master
                 WHERE type = 'index' AND tbl_name = 'journal' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "journal_by_message_id",
                "journal_by_state",
                "journal_due",
                "sqlite_autoindex_journal_1",
            ],
            "the caps' indexes are built by the first capped send, not by migrations"
        );
        crate::journal::hold::ensure_cap_indexes(&db.conn).unwrap();

        let now = crate::clock::parse("2026-11-24T00:00:00Z").unwrap();
        let until = |o: Option<frequency_cap::Over>| o.map(|o| crate::clock::format(o.until));
        let all = [Cap::parse("all", "2 per 7d").unwrap()];
        let check = |caps: &[Cap], category, campaign| {
            until(frequency_cap::check(&db.conn, caps, category, person, campaign, now).unwrap())
        };
        // For promo: notice's message in flight (22nd) and its accepted one (21st).
        assert_eq!(
            check(&all, Category::Marketing, "promo").as_deref(),
            Some("2026-11-28T09:00:01Z")
        );
        // For notice, its own message in flight is not counted: the 21st and the 20th.
        assert_eq!(
            check(&all, Category::Utility, "notice").as_deref(),
            Some("2026-11-27T09:00:01Z")
        );
        let marketing = [Cap::parse("marketing", "2 per 7d").unwrap()];
        assert_eq!(
            check(&marketing, Category::Marketing, "promo"),
            None,
            "one marketing message in the window"
        );
        assert_eq!(
            until(
                frequency_cap::check(
                    &db.conn,
                    &all,
                    Category::Marketing,
                    person + 2,
                    "promo",
                    now
                )
                .unwrap()
            ),
            None
        );
        // The plan's view, accepted messages only: the 21st and the 20th.
        let index =
            frequency_cap::CapIndex::load(&db.conn, &all, Category::Marketing, now).unwrap();
        assert_eq!(
            index
                .over(person)
                .map(|o| crate::clock::format(o.until))
                .as_deref(),
            Some("2026-11-27T09:00:01Z")
        );
        assert!(index.over(person + 2).is_none());
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let db = Db::open(&path).unwrap();
        db.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(db);
        let before = std::fs::read(&path).unwrap();
        let err = Db::open(&path).unwrap_err();
        assert!(matches!(err, DbError::TooNew { found: 99, .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
