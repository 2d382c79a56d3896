//! One sender per campaign: an OS file lock on a sibling lock file. The OS releases
//! it when the holder exits, however it exits, so a killed run never blocks the next.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LockError {
    #[error(
        "campaign `{campaign}` is being sent by another process (lock {path}); wait for it \
         to finish, or stop it; a killed process releases the lock at once"
    )]
    Held { campaign: String, path: String },
    #[error("cannot create lock file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Held for as long as this value lives.
#[derive(Debug)]
pub struct CampaignLock {
    _file: File,
    path: PathBuf,
}

impl CampaignLock {
    /// Takes the lock for `campaign` beside the database at `db`, or fails at once.
    pub fn acquire(db: &Path, campaign: &str) -> Result<CampaignLock, LockError> {
        // Two spellings of one database (a symlink, `./x.db` and `x.db`) must share
        // one lock.
        let canonical = db.canonicalize().ok();
        let db = canonical.as_deref().unwrap_or(db);
        let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(format!(".{campaign}.lock"));
        let path = db.with_file_name(name);
        let shown = path.display().to_string();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| LockError::Io {
                path: shown.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(CampaignLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
                campaign: campaign.to_owned(),
                path: shown,
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io {
                path: shown,
                source,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let first = CampaignLock::acquire(&db, "c1").unwrap();
        assert!(matches!(
            CampaignLock::acquire(&db, "c1"),
            Err(LockError::Held { .. })
        ));
        CampaignLock::acquire(&db, "other").expect("other campaigns are independent");
        drop(first);
        CampaignLock::acquire(&db, "c1").expect("released on drop");
    }

    #[test]
    fn two_spellings_of_one_database_share_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        std::fs::write(&db, b"").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let _held = CampaignLock::acquire(&db, "c1").unwrap();
        assert!(matches!(
            CampaignLock::acquire(&link, "c1"),
            Err(LockError::Held { .. })
        ));
    }
}
