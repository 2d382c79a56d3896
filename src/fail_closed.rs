//! Commands that send refuse a database that cannot be the operator's ledger.
//!
//! A cron job started in the wrong directory would otherwise create an empty
//! `wacampaign.db`, find no consent, send nothing and exit 0, and nobody would be
//! told. The tables always exist after migrations, so their presence proves nothing:
//! what proves a ledger is a file that was there before the command, holding at
//! least one consent event.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FailClosed {
    #[error(
        "no database at {path}: a command that sends never creates one, since an empty \
         ledger lets no one through. The path comes from --db, else the WACAMPAIGN_DB \
         variable, else wacampaign.db in the current directory: point one of them at your \
         ledger (a cron job starts in the home directory). Nothing was sent"
    )]
    Missing { path: String },
    #[error(
        "the consent ledger in {path} holds no event: nobody has opted in, so nothing can be \
         sent. If this is not your ledger, point --db (or WACAMPAIGN_DB) at it; else record \
         opt-ins first (`wacampaign consent import FILE --purpose ... --method ...`, or \
         `wacampaign consent opt-in NUMBER ...`). Nothing was sent"
    )]
    EmptyLedger { path: String },
    #[error("reading the consent ledger in {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
}

/// The path as the operator should read it: absolute, so a relative default names
/// the directory the command ran in.
pub fn shown(path: &Path) -> String {
    let absolute: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    absolute.display().to_string()
}

/// Before a command that sends opens (and so would create) the database.
pub fn require_existing(path: &Path) -> Result<(), FailClosed> {
    if path.exists() {
        Ok(())
    } else {
        Err(FailClosed::Missing { path: shown(path) })
    }
}

/// Whether the consent ledger holds any event at all.
pub fn ledger_has_events(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM consent_events)", [], |r| {
        r.get(0)
    })
}

/// Once it is open: the ledger must hold at least one consent event.
pub fn require_consent(conn: &Connection, path: &Path) -> Result<(), FailClosed> {
    let any = ledger_has_events(conn).map_err(|source| FailClosed::Sqlite {
        path: shown(path),
        source,
    })?;
    if any {
        Ok(())
    } else {
        Err(FailClosed::EmptyLedger { path: shown(path) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_and_an_empty_ledger_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let missing = require_existing(&path).unwrap_err().to_string();
        assert!(missing.contains(&path.display().to_string()), "{missing}");
        assert!(missing.contains("--db") && missing.contains("WACAMPAIGN_DB"));
        assert!(!path.exists(), "nothing is created");
        let db = crate::db::Db::open(&path).unwrap();
        let empty = require_consent(&db.conn, &path).unwrap_err().to_string();
        assert!(empty.contains("holds no event"), "{empty}");
    }
}
