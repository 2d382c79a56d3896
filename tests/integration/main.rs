//! The integration tests: one binary (as ripgrep and just do), running the real
//! `wacampaign` against files written into a temporary directory, and against real
//! servers on 127.0.0.1.

mod audience;
mod backup;
mod bsuid;
mod check;
mod clinic_week;
mod conformance;
mod consent;
mod consent_support;
mod conventions;
mod cost;
mod cron_output;
mod departure_log;
mod dry_run;
mod erase;
mod fail_closed;
mod frequency_cap;
mod fuzz;
mod messaging_limit;
mod mock_server;
mod preview;
mod prism;
mod prune;
mod quiet_hours;
mod recurring;
mod report;
mod scheduled_examples;
mod send;
mod send_conformance;
mod session;
mod subject;
mod support;
mod templates;
mod test_sends;
mod webhook;
