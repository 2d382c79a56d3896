//! The sending phone number as the Cloud API describes it: its messaging limit,
//! throughput, quality rating and display-name status, read by `wacampaign account`
//! (`GET /{phone-number-id}`) and kept in the database, as templates are, so `send`
//! holds to the limit without asking Meta before every run.
//!
//! The limit is read from `whatsapp_business_manager_messaging_limit` (portfolio
//! limits, since October 2025); `messaging_limit_tier` is deprecated and used only
//! when the other is missing, with a note. An answer with neither leaves the limit
//! unknown: `send` then holds to the lowest tier, never to unlimited.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::campaign::{Campaign, MessageKind, ProviderConfig};
use crate::messaging_limit::{LOWEST_TIER, Limit, Source as LimitSource};
use crate::provider::http;
use crate::secret::Secret;

/// The fields asked for. The v23.0 description lists only `name_status` and
/// `code_verification_status` beyond the defaults; the limit and throughput fields
/// are documented on Meta's phone-number reference and requested by name.
pub const FIELDS: &str = "display_phone_number,verified_name,quality_rating,name_status,\
throughput,whatsapp_business_manager_messaging_limit,messaging_limit_tier";

/// The field the limit is read from now, and the deprecated one.
pub const LIMIT_FIELD: &str = "whatsapp_business_manager_messaging_limit";
pub const DEPRECATED_LIMIT_FIELD: &str = "messaging_limit_tier";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AccountError {
    #[error("{url}: {detail}")]
    Transport { url: String, detail: String },
    #[error(
        "{url} answered HTTP {status}{detail}; check the token (WHATSAPP_TOKEN) and provider.phone_number_id"
    )]
    Http {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url} answered with something other than a phone number: {detail}")]
    NotAnAccount { url: String, detail: String },
}

/// What the Cloud API said about the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhoneAccount {
    pub display_phone: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub name_status: Option<String>,
    pub throughput: Option<String>,
    /// `None` when the answer did not say.
    pub messaging_limit: Option<Limit>,
    /// The field the limit came from.
    pub limit_source: Option<String>,
    pub fetched_at: String,
}

/// The key a campaign's number is cached under; `None` for a provider without one
/// (Twilio and the simulator: set the limit in the campaign file instead).
pub fn key_of(campaign: &Campaign) -> Option<String> {
    match &campaign.provider {
        ProviderConfig::CloudApi {
            phone_number_id, ..
        } => Some(format!("cloud_api:{phone_number_id}")),
        _ => None,
    }
}

/// Reads an answer of `GET /{phone-number-id}`.
pub fn parse(body: &[u8], url: &str, fetched_at: &str) -> Result<PhoneAccount, AccountError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| AccountError::NotAnAccount {
        url: url.to_owned(),
        detail: format!("not JSON: {e}"),
    })?;
    if !value.is_object() || value.get("error").is_some() {
        return Err(AccountError::NotAnAccount {
            url: url.to_owned(),
            detail: "no phone number object".into(),
        });
    }
    let text = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
    };
    let (messaging_limit, limit_source) = match limit_of(value.get(LIMIT_FIELD)) {
        Some(limit) => (Some(limit), Some(LIMIT_FIELD.to_owned())),
        None => match limit_of(value.get(DEPRECATED_LIMIT_FIELD)) {
            Some(limit) => (Some(limit), Some(DEPRECATED_LIMIT_FIELD.to_owned())),
            None => (None, None),
        },
    };
    Ok(PhoneAccount {
        display_phone: text("display_phone_number"),
        verified_name: text("verified_name"),
        quality_rating: text("quality_rating"),
        name_status: text("name_status"),
        // `{"level": "STANDARD"}` in Meta's reference; a plain string is taken too.
        throughput: value
            .get("throughput")
            .and_then(|t| t.get("level").or(Some(t)))
            .and_then(Value::as_str)
            .map(str::to_owned),
        messaging_limit,
        limit_source,
        fetched_at: fetched_at.to_owned(),
    })
}

/// A limit as Meta may write it: `TIER_2K`, `2000`, or an object holding one of
/// those under `tier`, `limit` or `value`.
fn limit_of(value: Option<&Value>) -> Option<Limit> {
    match value? {
        Value::String(s) => Limit::parse(s).ok(),
        Value::Number(n) => n.as_u64().filter(|n| *n > 0).map(Limit::Users),
        Value::Object(o) => ["tier", "limit", "value", "max_unique_users"]
            .iter()
            .find_map(|k| limit_of(o.get(*k))),
        _ => None,
    }
}

/// Asks the Cloud API about the campaign's number.
pub fn fetch(
    campaign: &Campaign,
    token: &Secret,
    now: &str,
) -> Result<(PhoneAccount, Vec<u8>), AccountError> {
    let ProviderConfig::CloudApi {
        phone_number_id,
        api_version,
        base_url,
        timeout,
        ..
    } = &campaign.provider
    else {
        return Err(AccountError::Transport {
            url: String::new(),
            detail: "only a cloud_api campaign has a phone number to ask about".into(),
        });
    };
    let url = format!("{base_url}/{api_version}/{phone_number_id}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AccountError::Transport {
            url: url.clone(),
            detail: format!("starting the async runtime: {e}"),
        })?;
    let answer = runtime.block_on(get(&url, token, *timeout))?;
    if !answer.is_success() {
        return Err(AccountError::Http {
            url,
            status: answer.status,
            detail: graph_detail(&answer.body, token),
        });
    }
    let account = parse(&answer.body, &url, now)?;
    Ok((account, answer.body.to_vec()))
}

async fn get(url: &str, token: &Secret, timeout: Duration) -> Result<http::Answer, AccountError> {
    let client = http::client(timeout, 1).map_err(|e| AccountError::Transport {
        url: url.to_owned(),
        detail: format!("{e:#}"),
    })?;
    let mut target = reqwest::Url::parse(url).map_err(|e| AccountError::Transport {
        url: url.to_owned(),
        detail: format!("not a URL: {e}"),
    })?;
    target.query_pairs_mut().append_pair("fields", FIELDS);
    http::send(
        client.get(target).bearer_auth(token.expose()),
        token,
        timeout,
    )
    .await
    .map_err(|response| AccountError::Transport {
        url: url.to_owned(),
        detail: match response {
            crate::provider::Response::NotSent { detail }
            | crate::provider::Response::InDoubt { detail }
            | crate::provider::Response::Rejected { detail, .. } => detail,
            crate::provider::Response::Accepted { .. } => String::new(),
        },
    })
}

/// `: <Graph error message> (code N)`, redacted; empty when the body has none.
fn graph_detail(body: &[u8], token: &Secret) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let message = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let code = value
        .pointer("/error/code")
        .and_then(Value::as_i64)
        .map(|c| format!(" (code {c})"))
        .unwrap_or_default();
    if message.is_empty() && code.is_empty() {
        String::new()
    } else {
        format!(": {}{code}", token.redact(message))
    }
}

/// Keeps what was read, replacing the number's earlier answer.
pub fn store(
    conn: &Connection,
    key: &str,
    account: &PhoneAccount,
    answer: &[u8],
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO phone_accounts (account_key, display_phone, verified_name, quality_rating,
             name_status, throughput, messaging_limit, limit_source, fetched_at, answer)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (account_key) DO UPDATE SET display_phone = excluded.display_phone,
             verified_name = excluded.verified_name, quality_rating = excluded.quality_rating,
             name_status = excluded.name_status, throughput = excluded.throughput,
             messaging_limit = excluded.messaging_limit, limit_source = excluded.limit_source,
             fetched_at = excluded.fetched_at, answer = excluded.answer",
        params![
            key,
            account.display_phone,
            account.verified_name,
            account.quality_rating,
            account.name_status,
            account.throughput,
            account.messaging_limit.map(Limit::to_db),
            account.limit_source,
            account.fetched_at,
            String::from_utf8_lossy(answer)
        ],
    )?;
    Ok(())
}

/// What was last read about the number, if it ever was.
pub fn load(conn: &Connection, key: &str) -> rusqlite::Result<Option<PhoneAccount>> {
    conn.query_row(
        "SELECT display_phone, verified_name, quality_rating, name_status, throughput,
             messaging_limit, limit_source, fetched_at
         FROM phone_accounts WHERE account_key = ?1",
        params![key],
        |r| {
            Ok(PhoneAccount {
                display_phone: r.get(0)?,
                verified_name: r.get(1)?,
                quality_rating: r.get(2)?,
                name_status: r.get(3)?,
                throughput: r.get(4)?,
                messaging_limit: r.get::<_, Option<i64>>(5)?.map(Limit::from_db),
                limit_source: r.get(6)?,
                fetched_at: r.get(7)?,
            })
        },
    )
    .optional()
}

/// The limit a run holds to, and where it came from: the command line (or
/// `WACAMPAIGN_MESSAGING_LIMIT`), the campaign file, the account as `wacampaign
/// account` last read it, else the lowest tier. `None` when no limit applies: a
/// session campaign (every message is inside a window) or the simulator with none
/// set (it reaches nobody).
pub fn limit_for_run(
    conn: &Connection,
    campaign: &Campaign,
    given: Option<Limit>,
) -> rusqlite::Result<Option<(Limit, LimitSource)>> {
    if campaign.kind == MessageKind::Session {
        return Ok(None);
    }
    if let Some(limit) = given {
        return Ok(Some((limit, LimitSource::CommandLine)));
    }
    if let Some(limit) = campaign.sending.messaging_limit {
        return Ok(Some((limit, LimitSource::Campaign)));
    }
    if matches!(campaign.provider, ProviderConfig::Simulator(_)) {
        return Ok(None);
    }
    let cached: Option<(Option<i64>, String)> = match key_of(campaign) {
        Some(key) => conn
            .prepare_cached(
                "SELECT messaging_limit, fetched_at FROM phone_accounts WHERE account_key = ?1",
            )?
            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
        None => None,
    };
    Ok(Some(match cached {
        Some((Some(n), fetched_at)) => (Limit::from_db(n), LimitSource::Account { fetched_at }),
        _ => (Limit::Users(LOWEST_TIER), LimitSource::Unknown),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portfolio_limit_is_read_before_the_deprecated_tier() {
        let body = br#"{"id":"1","display_phone_number":"+1 555-555-5555","verified_name":"Jaspers Market",
            "quality_rating":"GREEN","name_status":"APPROVED","throughput":{"level":"STANDARD"},
            "whatsapp_business_manager_messaging_limit":"TIER_2K","messaging_limit_tier":"TIER_250"}"#;
        let a = parse(body, "u", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(a.messaging_limit, Some(Limit::Users(2000)));
        assert_eq!(a.limit_source.as_deref(), Some(LIMIT_FIELD));
        assert_eq!(a.throughput.as_deref(), Some("STANDARD"));
        assert_eq!(a.quality_rating.as_deref(), Some("GREEN"));

        let old = br#"{"id":"1","messaging_limit_tier":"TIER_UNLIMITED"}"#;
        let a = parse(old, "u", "t").unwrap();
        assert_eq!(a.messaging_limit, Some(Limit::Unlimited));
        assert_eq!(a.limit_source.as_deref(), Some(DEPRECATED_LIMIT_FIELD));

        let none = br#"{"id":"1","quality_rating":"YELLOW"}"#;
        assert_eq!(parse(none, "u", "t").unwrap().messaging_limit, None);
        assert!(parse(br#"{"error":{"message":"x"}}"#, "u", "t").is_err());
        assert!(parse(b"<html>", "u", "t").is_err());
    }
}
