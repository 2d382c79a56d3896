//! One module per command; each owns its clap `Args` and its `run`.

use std::path::PathBuf;

use crate::ui::Ui;

pub mod check;
pub mod preview;

/// What every command gets from the global options.
#[derive(Debug)]
pub struct Context {
    pub db: PathBuf,
    pub ui: Ui,
}
