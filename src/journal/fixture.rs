//! Journal rows for the tests of modules that read the journal: they state a row's
//! state as a [`State`], and only this module writes it into the table.

use rusqlite::{Connection, params};

use super::State;

/// One row of plan run 1 with no parameters, attempted once; its line in the
/// contacts file follows its header (`seq + 1`).
pub struct Row<'a> {
    pub campaign: &'a str,
    pub person: i64,
    pub phone: &'a str,
    pub seq: i64,
    pub state: State,
    pub message_id: Option<&'a str>,
    pub outcome_at: Option<&'a str>,
    pub updated_at: &'a str,
}

pub fn insert(conn: &Connection, row: &Row) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO journal (campaign_id, person_id, phone, line, seq, plan_run, params, state,
             attempts, message_id, outcome_at, updated_at)
         VALUES (?1, ?2, ?3, ?4 + 1, ?4, 1, '[]', ?5, 1, ?6, ?7, ?8)",
        params![
            row.campaign,
            row.person,
            row.phone,
            row.seq,
            row.state,
            row.message_id,
            row.outcome_at,
            row.updated_at
        ],
    )?;
    Ok(())
}

/// Puts every row of `campaign` in `state`, as a step of the send would.
pub fn set_state(conn: &Connection, campaign: &str, state: State) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE journal SET state = ?2 WHERE campaign_id = ?1",
        params![campaign, state],
    )?;
    Ok(())
}
