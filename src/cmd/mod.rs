//! One module per command; each owns its clap `Args` and its `run`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::campaign::Campaign;
use crate::consent::ConsentIndex;
use crate::db::Db;
use crate::ui::Ui;

pub mod check;
pub mod consent;
pub mod preview;
pub mod send;
pub mod status;
pub mod webhook;

/// What every command gets from the global options.
#[derive(Debug)]
pub struct Context {
    pub db: PathBuf,
    pub ui: Ui,
}

impl Context {
    /// The consent ledger loaded for a campaign's purpose. Without a database every
    /// contact lacks an opt-in, which the caller is warned about, and no file is created.
    pub fn consent_gate(&self, campaign: &Campaign) -> anyhow::Result<ConsentIndex> {
        let purpose = campaign.purpose();
        match Db::open_existing(&self.db)? {
            Some(db) => Ok(ConsentIndex::load(&db.conn, purpose).with_context(|| {
                format!("loading the consent ledger from {}", self.db.display())
            })?),
            None => {
                self.ui.warn(format!(
                    "no consent ledger at {}: every contact lacks an opt-in. Record opt-ins with \
                     `wacampaign consent import` or `wacampaign consent opt-in`, or point --db at the ledger",
                    self.db.display()
                ));
                Ok(ConsentIndex::empty(purpose))
            }
        }
    }
}
