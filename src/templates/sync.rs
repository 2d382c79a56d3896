//! Reading every template of an account: Meta's `message_templates` listing, page by
//! page, or the saved answer the simulator serves. Nothing is stored until the last
//! page has arrived, so a sync that fails halfway keeps the previous one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::SyncedTemplate;
use super::answer::{self, AnswerError};
use crate::provider::http;
use crate::secret::Secret;

/// The fields a sync asks for: everything pre-flight and `templates show` read.
pub const FIELDS: &str = "name,language,status,category,quality_score,parameter_format,components";
/// Templates asked for per page.
pub const PAGE_SIZE: u32 = 100;
/// A listing longer than this many pages is a loop in the server's cursors.
const MAX_PAGES: usize = 1000;
/// How many times a page answered 429 is asked again.
const MAX_RETRIES: u32 = 3;
/// The longest `Retry-After` waited for; a longer one ends the sync with when to retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error(
        "{url}: the access token was refused (HTTP {status}{detail}); check the token in \
         {token_origin} and that it may read WhatsApp Business Account templates \
         (whatsapp_business_management). The cache was not changed."
    )]
    Unauthorized {
        url: String,
        status: u16,
        detail: String,
        token_origin: String,
    },
    #[error(
        "{url}: rate limited (HTTP 429) {attempts} times{wait}; run `wacampaign templates sync` \
         again later. The cache was not changed."
    )]
    RateLimited {
        url: String,
        attempts: u32,
        wait: String,
    },
    #[error("{url}: HTTP {status}{detail}. The cache was not changed.")]
    Http {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: {detail}. The cache was not changed.")]
    Transport { url: String, detail: String },
    // Not a `source`: the answer's error is the whole message, said once.
    #[error("{0}. The cache was not changed.")]
    Answer(AnswerError),
    #[error(
        "{url}: more than {MAX_PAGES} pages; the server's cursors loop. The cache was not changed."
    )]
    TooManyPages { url: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

impl From<AnswerError> for SyncError {
    fn from(e: AnswerError) -> Self {
        SyncError::Answer(e)
    }
}

/// Where an account's templates are read from.
#[derive(Debug)]
pub enum Source {
    /// Meta's Graph API.
    Graph {
        base_url: String,
        api_version: String,
        waba_id: String,
        token: Secret,
        /// Where the token came from, to name it in an error (never its value).
        token_origin: String,
        timeout: Duration,
    },
    /// A saved `message_templates` answer.
    File(PathBuf),
    /// Twilio's Content API (`GET /v1/ContentAndApprovals`), with HTTP Basic auth.
    TwilioContent {
        base_url: String,
        username: String,
        password: Secret,
        timeout: Duration,
    },
}

impl Source {
    /// Where the templates come from, for the record: never a credential.
    pub fn origin(&self) -> String {
        match self {
            Source::Graph {
                base_url,
                api_version,
                waba_id,
                ..
            } => format!("{base_url}/{api_version}/{waba_id}/message_templates"),
            Source::File(path) => path.display().to_string(),
            Source::TwilioContent { base_url, .. } => format!("{base_url}/v1/ContentAndApprovals"),
        }
    }

    /// Every template, or an error and nothing.
    pub fn fetch_all(&self) -> Result<Vec<SyncedTemplate>, SyncError> {
        match self {
            Source::File(path) => read_file(path),
            Source::Graph { .. } | Source::TwilioContent { .. } => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| SyncError::Transport {
                        url: self.origin(),
                        detail: format!("starting the async runtime: {e}"),
                    })?;
                match self {
                    Source::TwilioContent { .. } => runtime.block_on(self.fetch_twilio()),
                    _ => runtime.block_on(self.fetch_graph()),
                }
            }
        }
    }

    async fn fetch_graph(&self) -> Result<Vec<SyncedTemplate>, SyncError> {
        let Source::Graph {
            token,
            token_origin,
            timeout,
            ..
        } = self
        else {
            return Ok(Vec::new());
        };
        let url = self.origin();
        let client = http::client(*timeout, 1).map_err(|e| SyncError::Transport {
            url: url.clone(),
            detail: format!("{e:#}"),
        })?;
        let mut templates = Vec::new();
        let mut after: Option<String> = None;
        for page_number in 1..=MAX_PAGES {
            let mut page_url = reqwest::Url::parse(&url).map_err(|e| SyncError::Transport {
                url: url.clone(),
                detail: format!("not a URL: {e}"),
            })?;
            {
                let mut query = page_url.query_pairs_mut();
                query
                    .append_pair("fields", FIELDS)
                    .append_pair("limit", &PAGE_SIZE.to_string());
                if let Some(cursor) = &after {
                    query.append_pair("after", cursor);
                }
            }
            let answer = get_page(
                || client.get(page_url.clone()).bearer_auth(token.expose()),
                token,
                *timeout,
                &url,
            )
            .await?;
            if matches!(answer.status, 401 | 403) {
                return Err(SyncError::Unauthorized {
                    url: url.clone(),
                    status: answer.status,
                    detail: graph_detail(&answer.body, token),
                    token_origin: token_origin.clone(),
                });
            }
            if !answer.is_success() {
                return Err(SyncError::Http {
                    url: url.clone(),
                    status: answer.status,
                    detail: graph_detail(&answer.body, token),
                });
            }
            let page = answer::parse(&answer.body, &format!("{url} (page {page_number})"))?;
            templates.extend(page.templates);
            match page.after {
                Some(cursor) if after.as_deref() != Some(cursor.as_str()) => after = Some(cursor),
                Some(_) => return Err(SyncError::TooManyPages { url }),
                None => return Ok(templates),
            }
        }
        Err(SyncError::TooManyPages { url })
    }
}

impl Source {
    async fn fetch_twilio(&self) -> Result<Vec<SyncedTemplate>, SyncError> {
        let Source::TwilioContent {
            username,
            password,
            timeout,
            ..
        } = self
        else {
            return Ok(Vec::new());
        };
        let url = self.origin();
        let client = http::client(*timeout, 1).map_err(|e| SyncError::Transport {
            url: url.clone(),
            detail: format!("{e:#}"),
        })?;
        let mut templates = Vec::new();
        let mut query = format!("PageSize={PAGE_SIZE}");
        for page_number in 1..=MAX_PAGES {
            let page_url = format!("{url}?{query}");
            let answer = get_page(
                || {
                    client
                        .get(&page_url)
                        .basic_auth(username, Some(password.expose()))
                },
                password,
                *timeout,
                &url,
            )
            .await?;
            if matches!(answer.status, 401 | 403) {
                return Err(SyncError::Unauthorized {
                    url: url.clone(),
                    status: answer.status,
                    detail: String::new(),
                    token_origin: "the Twilio credentials (TWILIO_AUTH_TOKEN, or \
                                   TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET)"
                        .into(),
                });
            }
            if !answer.is_success() {
                return Err(SyncError::Http {
                    url: url.clone(),
                    status: answer.status,
                    detail: String::new(),
                });
            }
            let page = answer::parse_twilio(&answer.body, &format!("{url} (page {page_number})"))?;
            templates.extend(page.templates);
            match page.after {
                Some(next) if next != query => query = next,
                Some(_) => return Err(SyncError::TooManyPages { url }),
                None => return Ok(templates),
            }
        }
        Err(SyncError::TooManyPages { url })
    }
}

/// One page of a listing, asked again after a 429 as its `Retry-After` says (a few
/// times, never for long), for either provider.
async fn get_page(
    request: impl Fn() -> reqwest::RequestBuilder,
    secret: &Secret,
    timeout: Duration,
    url: &str,
) -> Result<http::Answer, SyncError> {
    let mut attempts = 0;
    loop {
        let answer = http::send(request(), secret, timeout)
            .await
            .map_err(|response| SyncError::Transport {
                url: url.to_owned(),
                detail: describe_failure(&response),
            })?;
        if answer.status != 429 {
            return Ok(answer);
        }
        attempts += 1;
        let wait = answer.retry_after.unwrap_or(Duration::from_secs(2));
        if attempts > MAX_RETRIES || wait > MAX_RETRY_AFTER {
            return Err(SyncError::RateLimited {
                url: url.to_owned(),
                attempts,
                wait: answer
                    .retry_after
                    .map(|w| format!(" (Retry-After: {}s)", w.as_secs()))
                    .unwrap_or_default(),
            });
        }
        tokio::time::sleep(wait).await;
    }
}

fn read_file(path: &Path) -> Result<Vec<SyncedTemplate>, SyncError> {
    let bytes = std::fs::read(path).map_err(|source| SyncError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let page = answer::parse(&bytes, &path.display().to_string())?;
    if page.after.is_some() {
        return Err(AnswerError::NotTemplates {
            origin: path.display().to_string(),
            detail: "it is one page of several (`paging.next` is set); save every page's \
                     `data` in one answer"
                .into(),
        }
        .into());
    }
    Ok(page.templates)
}

/// `: <Graph error message> (code N)` from an error body, redacted; empty otherwise.
fn graph_detail(body: &[u8], token: &Secret) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let message = value
        .pointer("/error/message")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let code = value
        .pointer("/error/code")
        .and_then(serde_json::Value::as_i64)
        .map(|c| format!(" (code {c})"))
        .unwrap_or_default();
    if message.is_empty() && code.is_empty() {
        String::new()
    } else {
        format!(": {}{code}", token.redact(message))
    }
}

fn describe_failure(response: &crate::provider::Response) -> String {
    use crate::provider::Response;
    match response {
        Response::NotSent { detail } | Response::InDoubt { detail } => detail.clone(),
        Response::Accepted { status, .. } => status.clone().unwrap_or_default(),
        Response::Rejected { detail, .. } => detail.clone(),
    }
}
