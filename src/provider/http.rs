//! What the HTTP providers share: one client with explicit timeouts (reqwest has none
//! by default) and connection reuse, and reading an answer into its status,
//! `Retry-After` and body, or the transport failure it was.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;

use super::Response;
use crate::secret::Secret;

/// The client a provider keeps for the whole run.
pub fn client(timeout: Duration, pool: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .pool_max_idle_per_host(pool)
        .user_agent(concat!("wacampaign/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// An answer whose body was read.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of a body that is not the provider's error document, for the record.
    pub fn snippet(&self) -> String {
        let end = self.body.len().min(300);
        format!(
            "HTTP {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body[..end])
        )
    }
}

/// Sends `request` and reads the answer. `Err` holds what the pipeline should
/// record instead: a transport failure, or a 2xx whose body could not be read.
pub async fn send(request: reqwest::RequestBuilder, secret: &Secret) -> Result<Answer, Response> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, secret))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    match response.bytes().await {
        Ok(body) => Ok(Answer {
            status,
            retry_after,
            body,
        }),
        // The status line arrived, so a 2xx means the provider took the message.
        Err(e) if (200..300).contains(&status) => Err(Response::Accepted {
            message_id: None,
            wa_id: None,
            status: Some(format!(
                "accepted; body unreadable: {}",
                secret.redact(&e.to_string())
            )),
        }),
        Err(e) => Err(transport_error(&e, secret)),
    }
}

/// `Retry-After` in either form HTTP allows: seconds, or a date (`Wed, 21 Oct 2026
/// 07:28:00 GMT`), as a wait from `now`.
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// A request that never left (no connection, or one reqwest could not even build)
/// is safe to retry; any other failure may have delivered it.
fn transport_error(error: &reqwest::Error, secret: &Secret) -> Response {
    // reqwest's messages name the URL, never headers; redact anyway.
    let detail = secret.redact(&format!("{error:#}"));
    if error.is_connect() || error.is_builder() {
        Response::NotSent { detail }
    } else {
        Response::InDoubt { detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_both_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
