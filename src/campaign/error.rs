//! A problem in the campaign file, and how the sections that check it point at
//! where it is.

use thiserror::Error;

/// A problem in the campaign file, located where the file allows it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CampaignError {
    #[error("cannot read campaign file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Malformed TOML, an unknown key, a wrong type or a missing key; toml's message
    /// already names the line, the column and what was expected.
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    /// `template.body` is left out, to be taken from the synced template, and
    /// none was given.
    #[error(
        "{path}: template.body is left out, so it is taken from the synced template \
         `{name}` ({language}), and there is none: run `wacampaign templates sync {path}` \
         (or write the approved body as template.body)"
    )]
    BodyNotSynced {
        path: String,
        name: String,
        language: String,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Builds a [`CampaignError::Invalid`] at a byte range of the file: each section's
/// checks take one, so they need not know the file's text or path.
pub(super) type Locate<'a> = dyn Fn(std::ops::Range<usize>, String) -> CampaignError + 'a;
