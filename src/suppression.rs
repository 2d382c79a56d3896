//! The suppression list: who was erased, kept as a keyed hash of each identity.
//!
//! After `wacampaign erase`, nothing in the database names the person; what remains
//! is HMAC-SHA256(key, identity) for each of their identities, with the key kept
//! outside the database (`WACAMPAIGN_SUPPRESSION_KEY`, or a file readable only by
//! its owner named by `--suppression-key-file` / `WACAMPAIGN_SUPPRESSION_KEY_FILE`).
//! Without the key the list cannot be reversed by hashing every phone number; with
//! it, every campaign leaves the person out as erased, and imports and opt-ins for
//! them are refused until an evidenced consent is recorded after the erasure.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Sha256;
use thiserror::Error;

/// The environment variable holding the key itself.
pub const KEY_VARIABLE: &str = "WACAMPAIGN_SUPPRESSION_KEY";
/// The environment variable naming a file holding the key.
pub const KEY_FILE_VARIABLE: &str = "WACAMPAIGN_SUPPRESSION_KEY_FILE";

const HOW_TO_CREATE: &str = "create one with `(umask 077; head -c 32 /dev/urandom | base64 > \
     ~/.wacampaign-suppression.key)` and pass --suppression-key-file ~/.wacampaign-suppression.key \
     (or set WACAMPAIGN_SUPPRESSION_KEY_FILE), or export WACAMPAIGN_SUPPRESSION_KEY; keep it \
     apart from the database and its backups, and never change it";

const KEY_CHECK_INPUT: &[u8] = b"wacampaign suppression key check";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SuppressionError {
    #[error(
        "no suppression key: {KEY_VARIABLE} is not set and no key file is named; {HOW_TO_CREATE}"
    )]
    Missing,
    #[error(
        "suppression key file {path} is readable by other users (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    WorldReadable { path: String, mode: u32 },
    #[error("cannot read suppression key file {path}; {HOW_TO_CREATE}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the suppression key from {origin} is too short ({len} bytes); use at least 16 random bytes: {HOW_TO_CREATE}"
    )]
    TooShort { origin: String, len: usize },
    #[error(
        "the suppression key from {origin} is not the one earlier erasures used: with it, erased \
         people would no longer be recognised. Use the original key; nothing was changed"
    )]
    WrongKey { origin: String },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The HMAC key. Its `Debug` shows only where it came from.
#[derive(Clone)]
pub struct SuppressionKey {
    bytes: Vec<u8>,
    origin: String,
}

impl fmt::Debug for SuppressionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SuppressionKey(from {}, [redacted])", self.origin)
    }
}

impl SuppressionKey {
    /// The key from `file` when one is named, else from `WACAMPAIGN_SUPPRESSION_KEY`.
    pub fn load(file: Option<&Path>) -> Result<SuppressionKey, SuppressionError> {
        if let Some(path) = file {
            let shown = path.display().to_string();
            let read = |source| SuppressionError::Read {
                path: shown.clone(),
                source,
            };
            let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(SuppressionError::WorldReadable {
                    path: shown,
                    mode: mode & 0o7777,
                });
            }
            let text = std::fs::read_to_string(path).map_err(read)?;
            return SuppressionKey::new(text.trim(), format!("file {shown}"));
        }
        match std::env::var(KEY_VARIABLE) {
            Ok(value) if !value.trim().is_empty() => {
                SuppressionKey::new(value.trim(), KEY_VARIABLE.to_owned())
            }
            _ => Err(SuppressionError::Missing),
        }
    }

    pub fn new(text: &str, origin: String) -> Result<SuppressionKey, SuppressionError> {
        if text.len() < 16 {
            return Err(SuppressionError::TooShort {
                origin,
                len: text.len(),
            });
        }
        Ok(SuppressionKey {
            bytes: text.as_bytes().to_vec(),
            origin,
        })
    }

    fn mac(&self, input: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.bytes).expect("HMAC takes a key of any length");
        mac.update(input);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The keyed hash an identity is suppressed under.
    pub fn hash(&self, identity: &Identity) -> String {
        match identity {
            Identity::Phone(phone) => self.mac(format!("phone:{}", phone.consent_key()).as_bytes()),
            Identity::Bsuid(bsuid) => self.mac(format!("bsuid:{bsuid}").as_bytes()),
        }
    }

    /// Checks the key against the one earlier erasures used, noting it on first use.
    pub fn check_against(&self, conn: &Connection) -> Result<(), SuppressionError> {
        let expected = self.mac(KEY_CHECK_INPUT);
        let stored: Option<String> = conn
            .query_row(
                "SELECT check_hmac FROM suppression_key_check WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match stored {
            Some(stored) if stored == expected => Ok(()),
            Some(_) => Err(SuppressionError::WrongKey {
                origin: self.origin.clone(),
            }),
            None => {
                conn.execute(
                    "INSERT INTO suppression_key_check (id, check_hmac) VALUES (1, ?1)",
                    params![expected],
                )?;
                Ok(())
            }
        }
    }
}

pub use crate::identity::Identity;

/// When a suppressed identity was erased.
#[derive(Debug, Clone)]
pub struct Erased {
    pub erased_at: String,
}

/// The suppressions in force, loaded once for a plan or an import.
#[derive(Debug, Clone)]
pub struct Suppressions {
    key: SuppressionKey,
    by_hash: HashMap<String, Erased>,
}

impl Suppressions {
    /// The suppressions in force, or `None` when nobody is suppressed (no key is then
    /// needed). `key_file` as for [`SuppressionKey::load`].
    pub fn load(
        conn: &Connection,
        key_file: Option<&Path>,
    ) -> Result<Option<Suppressions>, SuppressionError> {
        let in_force: i64 = conn.query_row(
            "SELECT count(*) FROM suppressions WHERE lifted_by IS NULL",
            [],
            |r| r.get(0),
        )?;
        if in_force == 0 {
            return Ok(None);
        }
        let key = SuppressionKey::load(key_file)?;
        key.check_against(conn)?;
        let mut by_hash = HashMap::new();
        let mut stmt = conn
            .prepare("SELECT identity_hmac, erased_at FROM suppressions WHERE lifted_by IS NULL")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            by_hash.insert(
                row.get(0)?,
                Erased {
                    erased_at: row.get(1)?,
                },
            );
        }
        Ok(Some(Suppressions { key, by_hash }))
    }

    /// Whether `identity` was erased, and when.
    pub fn lookup(&self, identity: &Identity) -> Option<&Erased> {
        self.by_hash.get(&self.key.hash(identity))
    }

    pub fn key(&self) -> &SuppressionKey {
        &self.key
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Records a suppression (or renews one lifted earlier) inside the erasing transaction.
pub fn suppress_in(
    tx: &Connection,
    key: &SuppressionKey,
    identity: &Identity,
    erased_at: &str,
    event_id: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO suppressions (identity_hmac, kind, erased_at, event_id)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (identity_hmac) DO UPDATE SET erased_at = excluded.erased_at,
             event_id = excluded.event_id, lifted_by = NULL, lifted_at = NULL",
    )?
    .execute(params![
        key.hash(identity),
        identity.kind(),
        erased_at,
        event_id
    ])?;
    Ok(())
}

/// Lifts a phone's suppression: a new, evidenced consent (ledger event `event_id`)
/// was recorded after the erasure.
pub fn lift_in(
    tx: &Connection,
    key: &SuppressionKey,
    identity: &Identity,
    event_id: i64,
    at: &str,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "UPDATE suppressions SET lifted_by = ?2, lifted_at = ?3
         WHERE identity_hmac = ?1 AND lifted_by IS NULL",
    )?
    .execute(params![key.hash(identity), event_id, at])
}

/// Where the key file setting comes from, for messages.
pub fn key_file_from_env() -> Option<PathBuf> {
    std::env::var_os(KEY_FILE_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_number_has_one_hash_and_another_key_another() {
        let key = SuppressionKey::new("0123456789abcdef0123", "test".into()).unwrap();
        let a = Identity::parse("+52 1 55 1234 5678", None).unwrap();
        let b = Identity::parse("+52 55 1234 5678", None).unwrap();
        assert_eq!(key.hash(&a), key.hash(&b));
        let other = SuppressionKey::new("fedcba9876543210fedc", "test".into()).unwrap();
        assert_ne!(key.hash(&a), other.hash(&a));
        assert!(!key.hash(&a).contains("5512345678"));
    }

    #[test]
    fn bsuids_are_told_from_numbers() {
        assert_eq!(
            Identity::parse("US.13491208655302741918", None).unwrap(),
            Identity::Bsuid("US.13491208655302741918".into())
        );
        assert!(matches!(
            Identity::parse("+5491123456789", None).unwrap(),
            Identity::Phone(_)
        ));
        assert!(Identity::parse("us.123", None).is_err());
        assert!(Identity::parse("US.", None).is_err());
    }

    #[test]
    fn a_short_key_is_refused_with_how_to_make_one() {
        let err = SuppressionKey::new("short", "test".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("head -c 32 /dev/urandom"), "{err}");
    }
}
