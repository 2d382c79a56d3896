//! The consent ledger: opt-ins and opt-outs that can be proved.
//!
//! Every event is appended, never changed (SQLite triggers refuse UPDATE and DELETE),
//! and carries a hash chained to the one before, so `consent verify` detects an
//! edited, deleted or reordered event. Whether a number may receive a campaign is
//! derived from the whole history by [`standing`], never kept as a flag.

mod chain;
mod import;
mod index;
mod ledger;
pub mod reanchor;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use import::{ImportOptions, ImportSummary, import_file};
pub use index::{ConsentIndex, changes_since};

/// What `erasure` needs of the ledger: blanking a person's events and recording the
/// erasure, inside its transaction.
pub mod ledger_erasure {
    pub use super::ledger::{append_erasure_in, erase_subjects_in};
}
pub use chain::{GENESIS, commitment, hash_event};
pub use ledger::{Appended, Ledger, LedgerStats, VerifyReport, append_in, standing_of};

use crate::clock;
use crate::exclusion::Exclusion;

/// What the consent is for. An opt-out may also be for [`Purpose::All`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Marketing,
    Utility,
    All,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Marketing => "marketing",
            Purpose::Utility => "utility",
            Purpose::All => "all",
        }
    }
}

impl FromStr for Purpose {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "marketing" => Ok(Purpose::Marketing),
            "utility" => Ok(Purpose::Utility),
            "all" => Ok(Purpose::All),
            other => Err(format!(
                "unknown purpose `{other}`; use marketing, utility or all"
            )),
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    OptIn,
    OptOut,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::OptIn => "opt_in",
            Action::OptOut => "opt_out",
        }
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "opt_in" => Ok(Action::OptIn),
            "opt_out" => Ok(Action::OptOut),
            other => Err(format!("unknown action `{other}`; use opt_in or opt_out")),
        }
    }
}

/// How an event reached the ledger. Imports never undo an opt-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedVia {
    Import,
    Command,
    Webhook,
    Campaign,
    /// `wacampaign erase`: the event recording an erasure, with no personal data.
    Erasure,
}

impl RecordedVia {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordedVia::Import => "import",
            RecordedVia::Command => "command",
            RecordedVia::Webhook => "webhook",
            RecordedVia::Campaign => "campaign",
            RecordedVia::Erasure => "erasure",
        }
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// A number, or a business-scoped user ID (its events are kept under its own
    /// key; links to the person's other identities are in `identities`).
    pub subject: crate::identity::Identity,
    pub purpose: Purpose,
    pub action: Action,
    /// RFC 3339 UTC (see [`clock`]).
    pub occurred_at: String,
    pub method: String,
    pub recorded_via: RecordedVia,
    pub source: String,
    pub evidence: Option<String>,
    /// The text the person was shown; stored once by its hash.
    pub notice: Option<String>,
    pub actor: String,
    /// Set for events that must be recorded at most once (an imported row, a webhook).
    pub dedupe_key: Option<String>,
}

/// A recorded event, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Event {
    pub id: i64,
    pub subject: String,
    pub purpose: String,
    pub action: String,
    pub occurred_at: String,
    pub recorded_at: String,
    pub method: String,
    pub recorded_via: String,
    pub source: String,
    pub evidence: Option<String>,
    pub notice_hash: Option<String>,
    pub actor: String,
    pub dedupe_key: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// 1: the hash covers the personal fields themselves (before migration 0007);
    /// 2: it covers `commitment`, so the personal fields can be erased.
    #[serde(default = "legacy_format")]
    pub format: i64,
    /// Random, hex; blanked with the personal fields by an erasure.
    #[serde(default)]
    pub salt: Option<String>,
    /// SHA-256 of the salt and the personal fields (see [`ledger::commitment`]).
    #[serde(default)]
    pub commitment: Option<String>,
}

impl Event {
    /// How it was recorded, as `consent show` and `subject export` print it:
    /// `via web_form (import), source: …, evidence: …, notice 6fc9…; recorded … by …`.
    pub fn provenance(&self) -> String {
        format!(
            "via {} ({}), source: {}{}{}; recorded {} by {}",
            self.method,
            self.recorded_via,
            self.source,
            self.evidence
                .as_deref()
                .map(|ev| format!(", evidence: {ev}"))
                .unwrap_or_default(),
            self.notice_hash
                .as_deref()
                .map(|h| format!(", notice {}", h.get(..12).unwrap_or(h)))
                .unwrap_or_default(),
            self.recorded_at,
            self.actor
        )
    }
}

fn legacy_format() -> i64 {
    1
}

impl Event {
    /// Whether an erasure blanked this event's personal fields.
    pub fn is_erased(&self) -> bool {
        self.format == 2 && self.salt.is_none()
    }
}

/// The minimum of an event that decides a standing.
#[derive(Debug, Clone, Copy)]
pub struct Fact<'a> {
    pub purpose: &'a str,
    pub action: &'a str,
    pub occurred_at: &'a str,
    pub method: &'a str,
    pub recorded_via: &'a str,
    pub has_evidence: bool,
}

/// Whether a number may receive messages of one purpose, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Opted in on this date, by this method.
    OptedIn {
        since: String,
        method: String,
    },
    /// Opted out (for this purpose or for all); only a later opt-in with its own
    /// evidence, not an import, lifts it.
    OptedOut {
        since: String,
        method: String,
    },
    NoOptIn,
}

impl Standing {
    pub fn allows(&self) -> bool {
        matches!(self, Standing::OptedIn { .. })
    }

    /// Why a contact is excluded, or `None` if it may receive the campaign.
    pub fn exclusion(&self, purpose: Purpose) -> Option<Exclusion> {
        match self {
            Standing::OptedIn { .. } => None,
            Standing::OptedOut { since, method } => Some(Exclusion::OptedOut {
                date: clock::date_part(since).to_owned(),
                method: method.clone(),
            }),
            Standing::NoOptIn => Some(Exclusion::NoOptIn {
                purpose: purpose.as_str().to_owned(),
            }),
        }
    }

    pub fn describe(&self, purpose: Purpose) -> String {
        match self {
            Standing::OptedIn { since, method } => {
                format!(
                    "may receive {purpose} messages: opted in on {} via {method}",
                    clock::date_part(since)
                )
            }
            Standing::OptedOut { since, method } => format!(
                "blocked for {purpose}: opted out on {} via {method}",
                clock::date_part(since)
            ),
            Standing::NoOptIn => format!("blocked for {purpose}: no opt-in for {purpose}"),
        }
    }
}

/// Folds a number's history into its standing for `purpose`.
///
/// `facts` must be in the order the person acted (occurred_at, then id). The rules:
/// an opt-out for the purpose or for `all` blocks; an opt-in for the purpose allows,
/// unless an opt-out stands, which only a later opt-in with its own evidence, not an
/// import, lifts.
pub fn standing<'a>(purpose: Purpose, facts: impl IntoIterator<Item = Fact<'a>>) -> Standing {
    let mut fold = StandingFold::new(purpose);
    for fact in facts {
        fold.push(&fact);
    }
    fold.finish()
}

/// [`standing`], one fact at a time, for callers streaming rows from SQLite.
#[derive(Debug, Clone)]
pub struct StandingFold {
    purpose: Purpose,
    /// The opt-out that stands, if any: (occurred_at, method).
    opted_out: Option<(String, String)>,
    /// The opt-in that counts, if any: (occurred_at, method).
    opted_in: Option<(String, String)>,
}

impl StandingFold {
    pub fn new(purpose: Purpose) -> Self {
        StandingFold {
            purpose,
            opted_out: None,
            opted_in: None,
        }
    }

    pub fn push(&mut self, fact: &Fact<'_>) {
        let for_purpose = fact.purpose == self.purpose.as_str();
        let owned = || (fact.occurred_at.to_owned(), fact.method.to_owned());
        match fact.action {
            "opt_out" if for_purpose || fact.purpose == Purpose::All.as_str() => {
                self.opted_out = Some(owned());
                self.opted_in = None;
            }
            "opt_in" if for_purpose => match &self.opted_out {
                Some((out_at, _)) => {
                    let lifts = fact.recorded_via != RecordedVia::Import.as_str()
                        && fact.has_evidence
                        && fact.occurred_at > out_at.as_str();
                    if lifts {
                        self.opted_out = None;
                        self.opted_in = Some(owned());
                    }
                }
                None => self.opted_in = Some(owned()),
            },
            _ => {}
        }
    }

    pub fn finish(self) -> Standing {
        match (self.opted_out, self.opted_in) {
            (Some((since, method)), _) => Standing::OptedOut { since, method },
            (None, Some((since, method))) => Standing::OptedIn { since, method },
            (None, None) => Standing::NoOptIn,
        }
    }
}

/// The standing of a person from the standings of their linked identities: an
/// opt-out of any of them blocks them all (it is lifted only by an evidenced opt-in
/// for the identity that opted out); otherwise an opt-in of any of them counts.
pub fn combine(standings: impl IntoIterator<Item = Standing>) -> Standing {
    let mut opted_in = None;
    let mut opted_out: Option<Standing> = None;
    for s in standings {
        match s {
            Standing::OptedOut { ref since, .. } => {
                let later = match &opted_out {
                    Some(Standing::OptedOut { since: seen, .. }) => since > seen,
                    _ => true,
                };
                if later {
                    opted_out = Some(s);
                }
            }
            Standing::OptedIn { .. } if opted_in.is_none() => opted_in = Some(s),
            _ => {}
        }
    }
    opted_out.or(opted_in).unwrap_or(Standing::NoOptIn)
}

/// How far ahead of this machine's clock an event's time may be: another system's
/// clock (a sign-up form's) may run a little fast.
pub const FUTURE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// An event's time as an operator or a file gives it, refused when it lies in the
/// future: the ledger orders a person's events by when they happened, so an opt-in
/// dated 2062 (a typo in the year) would outrank every STOP recorded before then.
pub fn occurred_at(text: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    let at = clock::parse(text)?;
    if at > now + FUTURE_SKEW {
        return Err(format!(
            "{} is in the future (now is {}): an event is recorded when it happened; \
             check the date",
            clock::format(at),
            clock::format(now)
        ));
    }
    Ok(clock::format(at))
}

/// Who is recording: `--actor`, else `WACAMPAIGN_ACTOR`, else the login name
/// (`USER`, `LOGNAME`), else `unknown`.
pub fn default_actor() -> String {
    std::env::var("WACAMPAIGN_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_time_in_the_future_is_refused_beyond_a_little_clock_skew() {
        let now = clock::parse("2026-11-28T12:00:00Z").unwrap();
        assert_eq!(
            occurred_at("2026-11-21 09:30:00", now).as_deref(),
            Ok("2026-11-21T09:30:00Z")
        );
        assert_eq!(
            occurred_at("2026-11-28T12:04:00Z", now).as_deref(),
            Ok("2026-11-28T12:04:00Z"),
            "a form's clock a few minutes fast"
        );
        let refused = occurred_at("2062-11-28", now).unwrap_err();
        assert!(
            refused.contains("2062-11-28T00:00:00Z is in the future"),
            "{refused}"
        );
        assert!(occurred_at("28/11/2026", now).is_err());
    }

    fn fact<'a>(purpose: &'a str, action: &'a str, at: &'a str, via: &'a str) -> Fact<'a> {
        Fact {
            purpose,
            action,
            occurred_at: at,
            method: "web_form",
            recorded_via: via,
            has_evidence: true,
        }
    }

    #[test]
    fn opt_out_wins_in_every_order() {
        let m = Purpose::Marketing;
        let in1 = fact("marketing", "opt_in", "2026-01-01T00:00:00Z", "command");
        let out2 = fact("marketing", "opt_out", "2026-02-01T00:00:00Z", "command");
        assert!(matches!(
            standing(m, [in1, out2]),
            Standing::OptedOut { .. }
        ));
        // An import claiming a later opt-in does not undo an opt-out.
        let import3 = fact("marketing", "opt_in", "2026-03-01T00:00:00Z", "import");
        assert!(matches!(
            standing(m, [out2, import3]),
            Standing::OptedOut { .. }
        ));
        // An opt-out for all blocks a marketing opt-in.
        let all = fact("all", "opt_out", "2026-02-01T00:00:00Z", "webhook");
        assert!(matches!(standing(m, [in1, all]), Standing::OptedOut { .. }));
        assert!(matches!(
            standing(Purpose::Utility, [all]),
            Standing::OptedOut { .. }
        ));
        // A later opt-in with its own evidence lifts it.
        let form3 = fact("marketing", "opt_in", "2026-03-01T00:00:00Z", "command");
        assert!(standing(m, [out2, form3]).allows());
        // ... but not one without evidence, nor one dated before the opt-out.
        let bare = Fact {
            has_evidence: false,
            ..form3
        };
        assert!(!standing(m, [out2, bare]).allows());
        assert!(!standing(m, [out2, in1]).allows());
    }

    #[test]
    fn purposes_are_separate() {
        let util = fact("utility", "opt_in", "2026-01-01T00:00:00Z", "command");
        assert_eq!(standing(Purpose::Marketing, [util]), Standing::NoOptIn);
        assert!(standing(Purpose::Utility, [util]).allows());
        let out = fact("marketing", "opt_out", "2026-02-01T00:00:00Z", "command");
        assert!(standing(Purpose::Utility, [util, out]).allows());
    }
}
