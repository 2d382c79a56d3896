//! The process exit codes, in one place so `--help`, the README and the code agree.
//!
//! Cron jobs branch on these, so they are part of the interface: never renumber one.

use std::process::ExitCode;

/// How a command ended, as a cron job or a shell script sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success,
    /// The run finished, but some recipients failed or are in doubt (see `status`).
    Partial,
    /// Bad usage, an invalid campaign file or input: nothing was sent.
    Invalid,
    /// Halted mid-run (auth, quality or policy error, circuit breaker) or locked by
    /// another process; resumable once the cause is fixed.
    Halted,
    /// Interrupted by Ctrl-C or SIGTERM after recording what was in flight; resumable.
    Interrupted,
}

impl Exit {
    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Partial => 1,
            Exit::Invalid => 2,
            Exit::Halted => 3,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// The table printed at the end of `--help`.
pub const HELP: &str = "\
Exit codes:
  0    done: everything asked for was done
  1    finished, but some recipients failed or are in doubt (see `wacampaign status`);
       `consent verify` found the ledger altered
  2    invalid usage, campaign file or input; nothing was sent (`send` also on a
       database that does not exist or whose consent ledger is empty)
  3    halted (auth, quality or policy error, circuit breaker), locked by another
       process, or the business number stayed busy past `--wait`; fix the cause and
       run again to resume (`--resume-halted` after a halt)
  130  interrupted (Ctrl-C, SIGTERM); what was in flight was recorded, run again to
       resume";
