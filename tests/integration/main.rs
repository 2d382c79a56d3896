//! The integration tests: one binary (as ripgrep and just do), running the real
//! `wacampaign` against files written into a temporary directory.

mod consent;
mod consent_support;
