//! The states of a journal row, and which may follow which.
//!
//! ```text
//!             claim                  answer
//! planned ───────────► in_flight ───────────► accepted ──(failed status 131049)──► deferred
//!    ▲                    │  │                                                      │
//!    │ --in-doubt resend  │  └─► failed | opted_out | deferred ◄────────────────────┘
//!    │                    ▼                    │ (send-by passed, or given up)
//! in_doubt ◄── crash / no answer               └──────────────► expired
//! ```
//!
//! `in_doubt` is settled to `accepted` when a delivery status proves the message
//! went out. A planned row's claim is its campaign's mark moving past it
//! ([`super::claims`]): the row reads `in_flight` to everyone, though its column
//! keeps `planned` until its answer. Only this module spells the states' names; SQL elsewhere asks it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// In the current plan, not yet sent.
    Planned,
    /// The intent to send is durable; the request is being (or about to be) written.
    InFlight,
    /// The provider took the message.
    Accepted,
    /// This recipient cannot get this message.
    Failed,
    /// The request may have gone out; held until the operator or a status decides.
    InDoubt,
    /// Not sent yet; due again at `retry_at`.
    Deferred,
    /// The person stopped these messages.
    OptedOut,
    /// Its send-by time passed before it could be sent: never sent.
    Expired,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Planned,
        State::InFlight,
        State::Accepted,
        State::Failed,
        State::InDoubt,
        State::Deferred,
        State::OptedOut,
        State::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Planned => "planned",
            State::InFlight => "in_flight",
            State::Accepted => "accepted",
            State::Failed => "failed",
            State::InDoubt => "in_doubt",
            State::Deferred => "deferred",
            State::OptedOut => "opted_out",
            State::Expired => "expired",
        }
    }

    /// How a person reads it in a report.
    pub fn label(self) -> &'static str {
        match self {
            State::Planned => "planned",
            State::InFlight => "in flight",
            State::Accepted => "accepted",
            State::Failed => "failed",
            State::InDoubt => "in doubt",
            State::Deferred => "deferred",
            State::OptedOut => "opted out",
            State::Expired => "expired",
        }
    }

    /// The order reports list them in: outcomes first, then what is left.
    pub const REPORT_ORDER: [State; 8] = [
        State::Accepted,
        State::Failed,
        State::OptedOut,
        State::InDoubt,
        State::Expired,
        State::Deferred,
        State::Planned,
        State::InFlight,
    ];

    /// Whether `self → to` is a transition the journal makes.
    pub fn may_become(self, to: State) -> bool {
        use State::*;
        match (self, to) {
            (Planned | Deferred, InFlight | OptedOut | Failed | Expired) => true,
            (InFlight, Accepted | Failed | InDoubt | Deferred | OptedOut) => true,
            // A status proves an attempt went out.
            (InDoubt | Deferred, Accepted) => true,
            // The operator resends, or a halt returns an unsent row.
            (InDoubt, Planned) => true,
            // Meta reports some refusals (131049) only in a status, after accepting.
            (Accepted, Deferred | Failed | OptedOut) => true,
            _ => false,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<State, String> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a journal state"))
    }
}

impl rusqlite::ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for State {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse()
            .map_err(|e: String| rusqlite::types::FromSqlError::Other(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_name() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        assert!("sent".parse::<State>().is_err());
    }

    /// The journal's CHECK constraint, as the migrations leave it, takes every
    /// state and nothing else.
    #[test]
    fn the_schema_allows_exactly_these_states() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("w.db")).unwrap();
        db.conn
            .execute(
                "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at)
                 VALUES ('c', 'f', 't', 'es_MX', 'utility', 'cloud_api', '2026-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
        let insert = |person: i64, state: &str| {
            db.conn.execute(
                "INSERT INTO journal (campaign_id, person_id, phone, line, seq, plan_run, params,
                     state, updated_at)
                 VALUES ('c', ?1, '+525512345678', 2, ?1, 1, '[]', ?2, '2026-01-01T00:00:00Z')",
                rusqlite::params![person, state],
            )
        };
        for (person, state) in State::ALL.into_iter().enumerate() {
            insert(person as i64, state.as_str()).unwrap();
        }
        for other in ["sent", "Accepted", "", "accepted "] {
            let err = insert(99, other).unwrap_err().to_string();
            assert!(err.contains("CHECK constraint failed"), "{other}: {err}");
        }
        let moved = db
            .conn
            .execute("UPDATE journal SET state = 'sent' WHERE person_id = 0", [])
            .unwrap_err()
            .to_string();
        assert!(moved.contains("CHECK constraint failed"), "{moved}");
    }

    #[test]
    fn nothing_leaves_a_final_state_except_by_a_status_or_the_operator() {
        assert!(!State::Failed.may_become(State::Planned));
        assert!(!State::OptedOut.may_become(State::InFlight));
        assert!(!State::Expired.may_become(State::InFlight));
        assert!(!State::Accepted.may_become(State::InFlight));
        assert!(State::InDoubt.may_become(State::Accepted));
        assert!(State::Accepted.may_become(State::Deferred));
    }
}
