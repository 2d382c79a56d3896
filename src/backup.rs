//! A consistent copy of the database, taken while campaigns and the webhook server
//! write to it, and checked before it is trusted.
//!
//! `VACUUM INTO` reads one snapshot of the database (WAL readers do not block
//! writers, nor writers them) and writes it compacted into a new file. The file is a
//! private temporary file beside the target (mode 0600, like the database), renamed
//! over the target only once the copy has passed SQLite's `integrity_check` and the
//! ledger's own verification; a failed or interrupted backup leaves no target behind
//! and never touches the source.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use thiserror::Error;

use crate::consent::{Ledger, VerifyReport};
use crate::report::PrivateFile;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error(
        "{path} exists; choose a new file name (a date in it suits a nightly backup) or pass --overwrite"
    )]
    Exists { path: String },
    #[error(
        "the disk holding {path} is full or refused the write: the copy did not fit and was \
         removed; the database was not changed. Free space there or back up to another disk"
    )]
    DiskFull { path: String },
    #[error("cannot write a backup beside {path}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("copying the database into {path}")]
    Copy {
        path: String,
        source: rusqlite::Error,
    },
    #[error("checking the copy {path}")]
    Check {
        path: String,
        source: rusqlite::Error,
    },
}

/// What a backup wrote and what its checks found.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// `ok`, or what SQLite's integrity_check found.
    pub integrity: Vec<String>,
    pub ledger: VerifyReport,
}

impl BackupReport {
    pub fn intact(&self) -> bool {
        self.integrity == ["ok"] && self.ledger.intact()
    }
}

/// Copies the database open on `conn` into `target` and checks the copy.
pub fn backup(
    conn: &Connection,
    target: &Path,
    overwrite: bool,
) -> Result<BackupReport, BackupError> {
    let shown = target.display().to_string();
    if target.exists() && !overwrite {
        return Err(BackupError::Exists { path: shown });
    }
    let file = PrivateFile::create(target).map_err(|source| BackupError::Create {
        path: shown.clone(),
        source,
    })?;
    let temp = file.temp_path().to_string_lossy().into_owned();
    conn.execute("VACUUM INTO ?1", [&temp]).map_err(|source| {
        if is_disk_full(&source) {
            BackupError::DiskFull {
                path: shown.clone(),
            }
        } else {
            BackupError::Copy {
                path: shown.clone(),
                source,
            }
        }
    })?;
    let (integrity, ledger) = check(file.temp_path()).map_err(|source| BackupError::Check {
        path: shown.clone(),
        source,
    })?;
    let bytes = std::fs::metadata(file.temp_path()).map_or(0, |m| m.len());
    file.commit().map_err(|source| {
        if source.raw_os_error() == Some(28) {
            BackupError::DiskFull {
                path: shown.clone(),
            }
        } else {
            BackupError::Create {
                path: shown.clone(),
                source,
            }
        }
    })?;
    Ok(BackupReport {
        path: target.to_path_buf(),
        bytes,
        integrity,
        ledger,
    })
}

/// SQLITE_FULL (no space left), or SQLITE_IOERR_WRITE (a write refused: a quota, a
/// file-size limit, a disk that filled between two checks).
fn is_disk_full(error: &rusqlite::Error) -> bool {
    const SQLITE_IOERR_WRITE: std::ffi::c_int = 778;
    matches!(error, rusqlite::Error::SqliteFailure(e, _)
        if e.code == rusqlite::ErrorCode::DiskFull || e.extended_code == SQLITE_IOERR_WRITE)
}

/// SQLite's integrity_check and the ledger's verification, on a copy opened read-only.
pub fn check(path: &Path) -> rusqlite::Result<(Vec<String>, VerifyReport)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let ledger = Ledger::new(&conn).verify()?;
    Ok((integrity, ledger))
}
