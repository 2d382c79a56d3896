//! The integration tests: one binary (as ripgrep and just do), running the real
//! `wacampaign` against files written into a temporary directory, and against real
//! servers on 127.0.0.1.

mod check;
mod conformance;
mod preview;
mod prism;
mod support;
mod webhook;
