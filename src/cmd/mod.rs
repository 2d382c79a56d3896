//! One module per command; each owns its clap `Args` and its `run`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::campaign::Campaign;
use crate::db::Db;
use crate::gate::Gate;
use crate::ui::Ui;

pub mod check;
pub mod consent;
pub mod preview;
pub mod send;
pub mod status;
pub mod templates;
pub mod webhook;

/// What every command gets from the global options.
#[derive(Debug)]
pub struct Context {
    pub db: PathBuf,
    pub ui: Ui,
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
        Gate::load(db.as_ref().map(|db| &db.conn), campaign)
            .with_context(|| format!("loading the consent ledger from {}", self.db.display()))
    }
}
