//! One module per command; each owns its clap `Args` and its `run`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::campaign::Campaign;
use crate::db::Db;
use crate::gate::Gate;
use crate::ui::Ui;

pub mod account;
pub mod backup;
pub mod check;
pub mod completions;
pub mod consent;
pub mod erase;
pub mod man;
pub mod preview;
pub mod prune;
pub mod report;
pub mod send;
pub mod status;
pub mod subject;
pub mod templates;
pub mod webhook;
pub mod where_arg;

/// What every command gets from the global options.
#[derive(Debug)]
pub struct Context {
    pub db: PathBuf,
    pub ui: Ui,
    /// A file holding the suppression key (else `WACAMPAIGN_SUPPRESSION_KEY`).
    pub suppression_key_file: Option<PathBuf>,
}

impl Context {
    /// Who may receive `campaign`: the consent ledger loaded for its purpose (and the
    /// open customer-service windows for a session campaign). Without a database
    /// every contact lacks an opt-in, which the caller is warned about, and no file
    /// is created.
    pub fn consent_gate(&self, campaign: &Campaign) -> anyhow::Result<Gate> {
        let db = Db::open_existing(&self.db)?;
        if db.is_none() {
            self.ui.warn(format!(
                "no consent ledger at {}: every contact lacks an opt-in. Record opt-ins with \
                 `wacampaign consent import` or `wacampaign consent opt-in`, or point --db at the ledger",
                self.db.display()
            ));
        }
        let mut gate = Gate::load(db.as_ref().map(|db| &db.conn), campaign)
            .with_context(|| format!("loading the consent ledger from {}", self.db.display()))?;
        if let Some(db) = &db {
            gate.erased = self.suppressions(&db.conn)?;
        }
        Ok(gate)
    }

    /// The suppressions in force (people erased), or `None` when there are none; the
    /// key is needed only when there are.
    pub fn suppressions(
        &self,
        conn: &rusqlite::Connection,
    ) -> anyhow::Result<Option<crate::suppression::Suppressions>> {
        crate::suppression::Suppressions::load(conn, self.suppression_key_file.as_deref())
            .with_context(|| {
                format!(
                    "loading the suppression list (people erased) from {}",
                    self.db.display()
                )
            })
    }
}
