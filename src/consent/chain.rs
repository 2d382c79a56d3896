//! How an event is chained: its commitment to the personal fields and its hash over
//! the one before it. The ledger appends and verifies with these, and the
//! re-anchoring of an old ledger rewrites its chain with them.

use sha2::{Digest, Sha256};

use super::Event;

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The commitment to an event's personal fields: SHA-256 of the salt, a line feed,
/// and `[subject, source, evidence, dedupe_key]` as compact JSON.
pub fn commitment(event: &Event) -> String {
    let fields = serde_json::json!([
        event.subject,
        event.source,
        event.evidence,
        event.dedupe_key,
    ]);
    let mut hasher = Sha256::new();
    hasher.update(event.salt.as_deref().unwrap_or_default().as_bytes());
    hasher.update(b"\n");
    hasher.update(fields.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// An event's hash: SHA-256 of the previous hash, a line feed, and the event's fields
/// as a compact JSON array, so an auditor can recompute it with any JSON library.
///
/// Format 2 (erasable): `["v2", id, commitment, purpose, action, occurred_at,
/// recorded_at, method, recorded_via, notice_hash, actor]`, the personal fields
/// entering only through the commitment. Format 1 (before migration 0007):
/// `[id, subject, purpose, action, occurred_at, recorded_at, method, recorded_via,
/// source, evidence, notice_hash, actor, dedupe_key]`.
pub fn hash_event(event: &Event) -> String {
    let fields = if event.format == 2 {
        serde_json::json!([
            "v2",
            event.id,
            event.commitment,
            event.purpose,
            event.action,
            event.occurred_at,
            event.recorded_at,
            event.method,
            event.recorded_via,
            event.notice_hash,
            event.actor,
        ])
    } else {
        legacy_fields(event)
    };
    let mut hasher = Sha256::new();
    hasher.update(event.prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(fields.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

fn legacy_fields(event: &Event) -> serde_json::Value {
    serde_json::json!([
        event.id,
        event.subject,
        event.purpose,
        event.action,
        event.occurred_at,
        event.recorded_at,
        event.method,
        event.recorded_via,
        event.source,
        event.evidence,
        event.notice_hash,
        event.actor,
        event.dedupe_key,
    ])
}
