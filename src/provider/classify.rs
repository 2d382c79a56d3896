//! Every provider outcome is classified once, here, into what the pipeline acts on.
//!
//! Meta documents that clients must act on `error.code`, not on the HTTP status; the
//! HTTP status decides only when there is no code.

use std::time::Duration;

use serde::Serialize;

use super::Response;

/// What the pipeline does with an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Accepted,
    /// Not sent; safe to try again later. `throttled` also slows the whole campaign.
    RetryLater {
        throttled: bool,
        #[serde(skip)]
        retry_after: Option<Duration>,
    },
    /// This recipient cannot get this message; the campaign goes on.
    FailRecipient,
    /// The recipient stopped marketing messages: record an opt-out.
    OptOut,
    /// Nothing more can be sent until the operator fixes the cause.
    Halt,
    /// A code we do not know: retried a bounded number of times, then failed.
    Unknown,
    /// The message may have gone out.
    InDoubt,
}

/// The table: Meta's Cloud API error codes and what they mean for a campaign.
/// Kept as data so a reader sees every decision in one place.
const META: &[(i64, i64, Kind, &str)] = &[
    (4, 4, Kind::Throttle, "application request limit reached"),
    (
        80007,
        80007,
        Kind::Throttle,
        "WhatsApp Business Account rate limit",
    ),
    (
        130429,
        130429,
        Kind::Throttle,
        "cloud API throughput reached",
    ),
    (
        131057,
        131057,
        Kind::Retry,
        "business account in maintenance mode",
    ),
    (131026, 131026, Kind::Fail, "message undeliverable"),
    (
        131049,
        131049,
        Kind::Fail,
        "not delivered to maintain ecosystem health",
    ),
    (
        130472,
        130472,
        Kind::Fail,
        "user's number is part of an experiment",
    ),
    (131021, 131021, Kind::Fail, "recipient cannot be the sender"),
    (
        130403,
        130403,
        Kind::Fail,
        "recipient not allowed for this business",
    ),
    (132005, 132005, Kind::Fail, "translated text too long"),
    (
        132012,
        132012,
        Kind::Fail,
        "parameter format does not match the template",
    ),
    (
        131050,
        131050,
        Kind::OptOut,
        "user stopped marketing messages",
    ),
    (0, 0, Kind::Halt, "authentication exception"),
    (3, 3, Kind::Halt, "API method capability or permissions"),
    (10, 10, Kind::Halt, "permission denied"),
    (190, 190, Kind::Halt, "access token expired or invalid"),
    (200, 299, Kind::Halt, "API permissions"),
    (
        368,
        368,
        Kind::Halt,
        "temporarily blocked for policy violations",
    ),
    (131031, 131031, Kind::Halt, "business account locked"),
    (
        131042,
        131042,
        Kind::Halt,
        "business eligibility payment issue",
    ),
    (
        131048,
        131048,
        Kind::Halt,
        "spam rate limit hit: quality restrictions",
    ),
    (131051, 131051, Kind::Halt, "unsupported message type"),
    (
        131056,
        131056,
        Kind::Halt,
        "pair rate limit: the same recipient twice, which a campaign never does",
    ),
    (
        132000,
        132000,
        Kind::Halt,
        "template parameter count mismatch",
    ),
    (
        132001,
        132001,
        Kind::Halt,
        "template does not exist in this language",
    ),
    (
        132007,
        132007,
        Kind::Halt,
        "template format character policy violated",
    ),
    (
        132015,
        132015,
        Kind::Halt,
        "template paused for low quality",
    ),
    (132016, 132016, Kind::Halt, "template disabled"),
    (133010, 133010, Kind::Halt, "phone number not registered"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Throttle,
    Retry,
    Fail,
    OptOut,
    Halt,
}

/// What the table says about a Meta error code, if it knows it.
pub fn meta_code(code: i64) -> Option<(Class, &'static str)> {
    META.iter()
        .find(|(low, high, _, _)| (*low..=*high).contains(&code))
        .map(|(_, _, kind, meaning)| {
            let class = match kind {
                Kind::Throttle => Class::RetryLater {
                    throttled: true,
                    retry_after: None,
                },
                Kind::Retry => Class::RetryLater {
                    throttled: false,
                    retry_after: None,
                },
                Kind::Fail => Class::FailRecipient,
                Kind::OptOut => Class::OptOut,
                Kind::Halt => Class::Halt,
            };
            (class, *meaning)
        })
}

/// Classifies a provider's response.
pub fn classify(response: &Response) -> Class {
    match response {
        Response::Accepted { .. } => Class::Accepted,
        Response::NotSent { .. } => Class::RetryLater {
            throttled: false,
            retry_after: None,
        },
        Response::InDoubt { .. } => Class::InDoubt,
        Response::Rejected {
            http_status,
            code,
            retry_after,
            ..
        } => {
            if let Some((class, _)) = code.and_then(meta_code) {
                return match class {
                    Class::RetryLater { throttled, .. } => Class::RetryLater {
                        throttled,
                        retry_after: *retry_after,
                    },
                    other => other,
                };
            }
            match http_status {
                429 => Class::RetryLater {
                    throttled: true,
                    retry_after: *retry_after,
                },
                401 | 403 => Class::Halt,
                500..=599 => Class::InDoubt,
                _ => Class::Unknown,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, code: Option<i64>) -> Response {
        Response::Rejected {
            http_status: status,
            code,
            detail: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn the_code_decides_not_the_status() {
        assert_eq!(classify(&rejected(400, Some(131048))), Class::Halt);
        assert_eq!(classify(&rejected(400, Some(131026))), Class::FailRecipient);
        assert_eq!(classify(&rejected(400, Some(131050))), Class::OptOut);
        assert_eq!(
            classify(&rejected(500, Some(131057))),
            Class::RetryLater {
                throttled: false,
                retry_after: None
            }
        );
        assert_eq!(
            classify(&rejected(403, Some(250))),
            Class::Halt,
            "200-299 range"
        );
        assert!(matches!(
            classify(&rejected(400, Some(130429))),
            Class::RetryLater {
                throttled: true,
                ..
            }
        ));
    }

    #[test]
    fn without_a_code_the_status_decides() {
        assert!(matches!(
            classify(&rejected(429, None)),
            Class::RetryLater {
                throttled: true,
                ..
            }
        ));
        assert_eq!(classify(&rejected(502, None)), Class::InDoubt);
        assert_eq!(classify(&rejected(401, None)), Class::Halt);
        assert_eq!(classify(&rejected(400, Some(999_999))), Class::Unknown);
    }
}
