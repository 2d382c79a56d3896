//! The integration tests: one binary (as ripgrep and just do), running the real
//! `wacampaign` against files written into a temporary directory.

mod check;
mod preview;
mod support;
