//! Everything held about one person, for a data subject access request: their
//! identities and the links between them, their consent events with evidence and
//! notices, every campaign message with its outcome and statuses, and their replies.

use std::fmt::Write as _;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::consent::{Event, Ledger};
use crate::erasure::resolve;
use crate::journal::query::{PersonMessage, messages_of_person};
use crate::phone::E164;
use crate::suppression::Identity;

#[derive(Debug, Clone, Serialize)]
pub struct SubjectRecord {
    /// As asked for.
    pub identity: String,
    pub phones: Vec<String>,
    pub bsuids: Vec<String>,
    pub number_changes: Vec<NumberChange>,
    pub consent_events: Vec<Event>,
    /// (hash, text, recorded_at) of the notices their events cite.
    pub notices: Vec<Notice>,
    pub messages: Vec<PersonMessage>,
    pub replies: Vec<Reply>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NumberChange {
    pub old_phone: String,
    pub new_phone: String,
    pub changed_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub hash: String,
    pub text: String,
    pub recorded_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub message_id: String,
    pub phone: String,
    pub kind: String,
    /// The message it answered, when the person used WhatsApp's reply.
    pub context_id: Option<String>,
    pub occurred_at: String,
}

/// Collects everything held about `identity` and every identity linked to it.
pub fn collect(
    conn: &Connection,
    identity: &Identity,
    shown: &str,
) -> rusqlite::Result<SubjectRecord> {
    let linked = resolve(conn, identity)?;
    let phones: Vec<E164> = linked
        .phone_keys
        .iter()
        .filter_map(|k| E164::from_digits(&k.to_string()))
        .collect();
    let ledger = Ledger::new(conn);
    let mut consent_events = Vec::new();
    let mut notices = Vec::new();
    for phone in &phones {
        consent_events.extend(ledger.history(*phone)?);
        for (hash, text, recorded_at) in ledger.notices(Some((*phone).into()))? {
            if !notices.iter().any(|n: &Notice| n.hash == hash) {
                notices.push(Notice {
                    hash,
                    text,
                    recorded_at,
                });
            }
        }
    }
    consent_events.sort_by(|a, b| (&a.occurred_at, a.id).cmp(&(&b.occurred_at, b.id)));
    let mut messages = Vec::new();
    for person in linked.persons() {
        messages.extend(messages_of_person(conn, person)?);
    }
    let mut replies = Vec::new();
    let mut number_changes = Vec::new();
    for key in &linked.phone_keys {
        let mut stmt = conn.prepare_cached(
            "SELECT message_id, phone, kind, context_id, occurred_at FROM inbound_messages
             WHERE consent_key = ?1 ORDER BY occurred_at",
        )?;
        for reply in stmt.query_map(params![key], |r| {
            Ok(Reply {
                message_id: r.get(0)?,
                phone: r.get(1)?,
                kind: r.get(2)?,
                context_id: r.get(3)?,
                occurred_at: r.get(4)?,
            })
        })? {
            replies.push(reply?);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT old_phone, new_phone, changed_at FROM number_links
             WHERE old_consent_key = ?1 ORDER BY changed_at",
        )?;
        for change in stmt.query_map(params![key], |r| {
            Ok(NumberChange {
                old_phone: r.get(0)?,
                new_phone: r.get(1)?,
                changed_at: r.get(2)?,
            })
        })? {
            number_changes.push(change?);
        }
    }
    Ok(SubjectRecord {
        identity: shown.to_owned(),
        phones: phones.iter().map(ToString::to_string).collect(),
        bsuids: linked.bsuids.iter().cloned().collect(),
        number_changes,
        consent_events,
        notices,
        messages,
        replies,
    })
}

impl SubjectRecord {
    /// Whether nothing at all is held.
    pub fn is_empty(&self) -> bool {
        self.consent_events.is_empty()
            && self.messages.is_empty()
            && self.replies.is_empty()
            && self.number_changes.is_empty()
            && self.bsuids.len() <= usize::from(matches!(self.phones.len(), 0))
    }

    /// The record as a person reads it.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Everything held about {}", self.identity);
        let _ = writeln!(out, "\nIdentities");
        for phone in &self.phones {
            let _ = writeln!(out, "  phone number  {phone}");
        }
        for bsuid in &self.bsuids {
            let _ = writeln!(out, "  WhatsApp user ID  {bsuid}");
        }
        for c in &self.number_changes {
            let _ = writeln!(
                out,
                "  changed number from {} to {} on {}",
                c.old_phone, c.new_phone, c.changed_at
            );
        }
        let _ = writeln!(out, "\nConsent ({} events)", self.consent_events.len());
        for e in &self.consent_events {
            let _ = writeln!(
                out,
                "  #{} {} {} {} {}",
                e.id,
                e.occurred_at,
                e.action,
                e.purpose,
                e.provenance()
            );
        }
        for n in &self.notices {
            let _ = writeln!(
                out,
                "  notice {} (recorded {}):\n    {}",
                n.hash.get(..12).unwrap_or(&n.hash),
                n.recorded_at,
                n.text.trim().replace('\n', "\n    ")
            );
        }
        let _ = writeln!(out, "\nMessages ({})", self.messages.len());
        for m in &self.messages {
            let values = match &m.values {
                serde_json::Value::Array(v) => v
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" | "),
                other => other.to_string(),
            };
            let _ = writeln!(
                out,
                "  campaign {}{} ({} template {}) to {}: {} after {} attempt(s){}",
                m.campaign_id,
                if m.occurrence.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", m.occurrence)
                },
                m.category,
                m.template,
                m.phone.as_deref().or(m.bsuid.as_deref()).unwrap_or("?"),
                m.state,
                m.attempts,
                m.outcome_at
                    .as_deref()
                    .map(|t| format!(" on {t}"))
                    .unwrap_or_default()
            );
            let _ = writeln!(out, "    values: {values}");
            if let Some(serde_json::Value::Object(contact)) = &m.contact {
                let cells: Vec<String> = contact
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                let _ = writeln!(out, "    contact row: {}", cells.join(", "));
            }
            if let Some(detail) = &m.error_detail {
                let _ = writeln!(out, "    detail: {detail}");
            }
            for s in &m.statuses {
                let _ = writeln!(out, "    {} at {}", s.status, s.occurred_at);
            }
        }
        let _ = writeln!(out, "\nReplies ({})", self.replies.len());
        for r in &self.replies {
            let _ = writeln!(
                out,
                "  {} from {} at {}{}",
                r.kind,
                r.phone,
                r.occurred_at,
                r.context_id
                    .as_deref()
                    .map(|c| format!(", answering {c}"))
                    .unwrap_or_default()
            );
        }
        out
    }
}
