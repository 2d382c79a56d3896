//! wacampaign: consent-first WhatsApp bulk campaigns.
//!
//! The binary is a thin shell around [`run`]; everything it does is here, so tests
//! and `examples/` can drive the same code.

pub mod account;
pub mod audience;
pub mod backup;
pub mod campaign;
pub mod category;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod consent;
pub mod contacts;
pub mod db;
pub mod departure_log;
pub mod erasure;
pub mod exclusion;
pub mod exit_codes;
pub mod fail_closed;
pub mod followup;
pub mod frequency_cap;
pub mod gate;
pub mod hold;
pub mod identity;
pub mod journal;
pub mod lock;
pub mod media;
pub mod messaging_limit;
pub mod occurrence;
pub mod phone;
pub mod plan;
pub mod pricing;
pub mod provider;
pub mod quiet_hours;
pub mod report;
pub mod retention;
pub mod row_key;
pub mod secret;
pub mod send;
pub mod service_window;
pub mod subject;
pub mod suppression;
pub mod template;
pub mod templates;
pub mod test_send;
pub mod timezone;
pub mod ui;
pub mod webhook;

use clap::CommandFactory;
use cli::{Cli, Command};
use exit_codes::Exit;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    // Before anything reads the time: a malformed WACAMPAIGN_NOW is an error, not
    // silently the system clock.
    clock::init()?;
    let g = &cli.global;
    let ctx = cmd::Context {
        db: g.db.clone(),
        ui: ui::Ui::new(g.json, g.quiet, g.verbose, g.color),
        suppression_key_file: g.suppression_key_file.clone(),
    };
    match &cli.command {
        Command::Check(args) => cmd::check::run(&ctx, args),
        Command::Preview(args) => cmd::preview::run(&ctx, args),
        Command::Consent(args) => cmd::consent::run(&ctx, args),
        Command::Send(args) => cmd::send::run(&ctx, args),
        Command::Status(args) => cmd::status::run(&ctx, args),
        Command::Report(args) => cmd::report::run(&ctx, args),
        Command::Webhook(args) => cmd::webhook::run(&ctx, args),
        Command::Erase(args) => cmd::erase::run(&ctx, args),
        Command::Backup(args) => cmd::backup::run(&ctx, args),
        Command::Subject(args) => cmd::subject::run(&ctx, args),
        Command::Prune(args) => cmd::prune::run(&ctx, args),
        Command::Templates(args) => cmd::templates::run(&ctx, args),
        Command::Account(args) => cmd::account::run(&ctx, args),
        // Both describe the whole command line: it is handed down to them, so no
        // command reaches back up to the parser.
        Command::Completions(args) => cmd::completions::run(&ctx, args, Cli::command()),
        Command::Man(args) => cmd::man::run(&ctx, args, Cli::command()),
    }
}

/// The exit code for an error that ended a command.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    let locked = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<lock::LockError>(),
            Some(lock::LockError::Held { .. } | lock::LockError::NumberBusy { .. })
        )
    });
    if locked { Exit::Halted } else { Exit::Invalid }
}

/// Whether the error is only stdout being closed early (`wacampaign ... | head`),
/// which is not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
