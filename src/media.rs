//! Checking a header's media links before the first send: WhatsApp fetches each
//! link itself, and a link it cannot fetch (unreachable, the wrong type, too large)
//! fails every message that carries it. Apart from the campaign file it checks:
//! it goes on the network.

use std::time::Duration;

use thiserror::Error;

use crate::campaign::components::{Media, limits};

/// Why a link will not do.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaError {
    #[error("{url}: not reachable ({detail})")]
    Unreachable { url: String, detail: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: content type `{found}`; a {media} header takes {wanted}")]
    Type {
        url: String,
        found: String,
        media: &'static str,
        wanted: String,
    },
    #[error("{url}: {size} bytes; a {media} header takes at most {limit}")]
    TooLarge {
        url: String,
        size: u64,
        media: &'static str,
        limit: u64,
    },
}

/// Checks one link with a HEAD request, or a ranged GET (`Range: bytes=0-0`) when the
/// server refuses HEAD: reachable, of a content type and a size WhatsApp takes.
pub async fn check_link(
    client: &reqwest::Client,
    url: &str,
    media: Media,
) -> Result<(), MediaError> {
    let unreachable = |e: reqwest::Error| MediaError::Unreachable {
        url: url.to_owned(),
        detail: e.without_url().to_string(),
    };
    // The header itself: reqwest's `content_length()` is the body's, none for a HEAD.
    let header_length = |r: &reqwest::Response| {
        r.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let mut response = client.head(url).send().await.map_err(unreachable)?;
    let mut size = header_length(&response).filter(|n| *n > 0);
    if matches!(response.status().as_u16(), 403 | 405 | 501) {
        response = client
            .get(url)
            .header(reqwest::header::RANGE, "bytes=0-0")
            .send()
            .await
            .map_err(unreachable)?;
        // `Content-Range: bytes 0-0/12345`: the total after the slash.
        size = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|n| n.parse().ok())
            .or_else(|| header_length(&response).filter(|n| *n > 1));
    }
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(MediaError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let (types, limit) = limits(media);
    let found = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !types.iter().any(|t| found.starts_with(t)) {
        return Err(MediaError::Type {
            url: url.to_owned(),
            found,
            media: media.as_str(),
            wanted: types.join(", "),
        });
    }
    if let Some(size) = size
        && size > limit
    {
        return Err(MediaError::TooLarge {
            url: url.to_owned(),
            size,
            media: media.as_str(),
            limit,
        });
    }
    Ok(())
}

/// Checks every link, one after another (a campaign has one fixed link, or the
/// distinct links of a column); the problems found, in the order given.
pub fn check_links(links: &[String], media: Media, timeout: Duration) -> Vec<MediaError> {
    let unreachable = |detail: String| {
        links
            .iter()
            .map(|url| MediaError::Unreachable {
                url: url.clone(),
                detail: detail.clone(),
            })
            .collect()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return unreachable(format!("starting the async runtime: {e}")),
    };
    let client = match crate::provider::http::client(timeout, 2) {
        Ok(client) => client,
        Err(e) => return unreachable(format!("{e:#}")),
    };
    runtime.block_on(async {
        let mut problems = Vec::new();
        for url in links {
            if let Err(e) = check_link(&client, url, media).await {
                problems.push(e);
            }
        }
        problems
    })
}

/// The most distinct links of a column checked before a send.
pub const MAX_CHECKED_LINKS: usize = 1000;

/// The campaign's header media links, by link (`media_id`s are not fetched): the
/// fixed one, or the distinct well-formed ones of its column (up to
/// [`MAX_CHECKED_LINKS`]), and the kind of media they must be.
pub fn links_of(
    campaign: &crate::campaign::Campaign,
) -> Result<Option<(Media, Vec<String>)>, crate::contacts::ContactsError> {
    use crate::campaign::ValueSource;
    use crate::campaign::components::{Part, check};
    let Some(part) = campaign
        .template
        .parts
        .iter()
        .find(|p| matches!(p.part, Part::HeaderMedia { by_id: false, .. }))
    else {
        return Ok(None);
    };
    let Part::HeaderMedia { media, .. } = part.part else {
        return Ok(None);
    };
    let mut links = Vec::new();
    match &part.source {
        ValueSource::Fixed(value) => links.extend(check(&part.part, value).ok()),
        ValueSource::Column { column, default } => {
            let mut reader = crate::contacts::ContactReader::open(&campaign.contacts)?;
            let index = reader.column_index(column, &part.key)?;
            let mut row = crate::contacts::Row::default();
            let mut seen = std::collections::BTreeSet::new();
            seen.extend(default.as_deref().and_then(|d| check(&part.part, d).ok()));
            while seen.len() < MAX_CHECKED_LINKS && reader.read_row(&mut row)? {
                if let Some(link) = row.get(index).and_then(|v| check(&part.part, v).ok()) {
                    seen.insert(link);
                }
            }
            links.extend(seen);
        }
    }
    Ok(Some((media, links)))
}
