//! Importing consent records from a CSV file: one event per row, all or nothing, and
//! a second import of the same file records nothing new.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ledger::{Appended, append_in};
use super::{Action, ConsentIndex, NewEvent, Purpose, RecordedVia};
use crate::clock;
use crate::contacts::{ContactReader, ContactsError, Encoding, Row};
use crate::exclusion::ConsentGate;
use crate::phone::{DefaultRegion, E164};
use crate::suppression::{Identity, Suppressions};

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub file: PathBuf,
    pub purpose: Purpose,
    pub action: Action,
    pub method: String,
    pub phone_column: String,
    pub default_region: Option<DefaultRegion>,
    pub occurred_column: Option<String>,
    pub evidence_column: Option<String>,
    /// The text people were shown when they consented.
    pub notice: Option<String>,
    pub actor: String,
    pub delimiter: Option<u8>,
    pub encoding: Encoding,
    /// People erased: their rows are refused, never recorded.
    pub suppressions: Option<Suppressions>,
}

/// A row that could not be imported, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedRow {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    pub file: String,
    pub sha256: String,
    pub recorded: u64,
    pub already_present: u64,
    /// Opt-ins recorded, but the number stays blocked by an opt-out the import cannot lift.
    pub blocked_by_opt_out: u64,
    pub invalid: u64,
    /// Rows for people who were erased: refused (listed in `rejected`).
    pub erased: u64,
    pub rejected: Vec<RejectedRow>,
}

pub fn import_file(conn: &Connection, options: &ImportOptions) -> anyhow::Result<ImportSummary> {
    if options.action == Action::OptIn && options.purpose == Purpose::All {
        bail!("an opt-in is for one purpose: use --purpose marketing or --purpose utility");
    }
    let shown = options.file.display().to_string();
    // Opened before it is hashed: opening refuses a file that is not text from its
    // first mebibyte, where hashing would read every byte of it first.
    let mut reader = ContactReader::open_path(&options.file, options.delimiter, options.encoding)
        .map_err(for_import)?;
    let sha256 = file_sha256(&options.file).with_context(|| format!("reading {shown}"))?;
    let file_name = options
        .file
        .file_name()
        .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());

    let phone_index = reader.column_index(&options.phone_column, "--phone-column")?;
    let occurred_index = options
        .occurred_column
        .as_deref()
        .map(|c| reader.column_index(c, "--occurred-column"))
        .transpose()?;
    let evidence_index = options
        .evidence_column
        .as_deref()
        .map(|c| reader.column_index(c, "--evidence-column"))
        .transpose()?;

    let mut summary = ImportSummary {
        file: shown,
        sha256: sha256.clone(),
        ..ImportSummary::default()
    };
    let now_instant = clock::now();
    let now = clock::format(now_instant);
    let mut recorded_subjects = Vec::new();
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let mut row = Row::default();
    while reader.read_row(&mut row).map_err(for_import)? {
        let mut reject = |reason: String| {
            summary.invalid += 1;
            summary.rejected.push(RejectedRow {
                line: row.line,
                reason,
            });
        };
        let raw = row.get(phone_index).unwrap_or("");
        let subject = match E164::normalize(raw, options.default_region) {
            Ok(subject) => subject,
            Err(e) => {
                reject(format!("invalid number: {e}"));
                continue;
            }
        };
        if let Some(erased) = options
            .suppressions
            .as_ref()
            .and_then(|s| s.lookup(&Identity::Phone(subject)))
        {
            summary.erased += 1;
            summary.rejected.push(RejectedRow {
                line: row.line,
                reason: format!(
                    "refused: this person was erased on {} at their request; an import cannot \
                     record anything for them. If they gave new consent after that, record it \
                     with `wacampaign consent opt-in --after-erasure` and its evidence",
                    clock::date_part(&erased.erased_at)
                ),
            });
            continue;
        }
        let occurred_at = match occurred_index.map(|i| row.get(i).unwrap_or("")) {
            None => now.clone(),
            Some(cell) => match super::occurred_at(cell, now_instant) {
                Ok(at) => at,
                Err(e) => {
                    reject(format!("invalid date: {e}"));
                    continue;
                }
            },
        };
        let evidence = evidence_index
            .and_then(|i| row.get(i))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let event = NewEvent {
            subject: subject.into(),
            purpose: options.purpose,
            action: options.action,
            occurred_at,
            method: options.method.clone(),
            recorded_via: RecordedVia::Import,
            source: format!("{file_name} sha256:{sha256} line {}", row.line),
            evidence,
            notice: options.notice.clone(),
            actor: options.actor.clone(),
            dedupe_key: Some(format!(
                "import:{sha256}:{}:{}:{}",
                row.line,
                options.purpose.as_str(),
                options.action.as_str()
            )),
        };
        match append_in(&tx, &event)? {
            Appended::Recorded(_) => {
                summary.recorded += 1;
                recorded_subjects.push(subject);
            }
            Appended::AlreadyPresent(_) => summary.already_present += 1,
        }
    }
    tx.commit()?;

    if options.action == Action::OptIn && !recorded_subjects.is_empty() {
        let index = ConsentIndex::load(conn, options.purpose)?;
        summary.blocked_by_opt_out = recorded_subjects
            .iter()
            .filter(|s| index.check(**s).is_err())
            .count() as u64;
    }
    Ok(summary)
}

/// The contacts reader's advice for a file that is not UTF-8 names the campaign
/// file's `encoding` key; an import is told with `--encoding`.
fn for_import(error: ContactsError) -> anyhow::Error {
    match error {
        ContactsError::NotUtf8 { path, line } => anyhow::anyhow!(
            "{path} line {line} is not valid UTF-8; if the file came from Excel, pass \
             --encoding windows-1252, or save it as \"CSV UTF-8\"; nothing was imported"
        ),
        other => other.into(),
    }
}

fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
