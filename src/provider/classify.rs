//! Every provider outcome is classified once, here, into what the pipeline acts on.
//!
//! Meta documents that clients must act on `error.code`, not on the HTTP status; the
//! HTTP status decides only when there is no code (or one the table does not know).
//! Twilio's codes sit in the same table, marked as Twilio's. A code means the same
//! whether it comes in a send's answer ([`classify`]) or in a status webhook
//! ([`code_class`]), so the webhook asks this table too.

use std::time::Duration;

use serde::Serialize;

use super::{Family, Response};
use crate::consent::Purpose;

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
    /// Too many messages to this one recipient: only their message waits, the
    /// campaign's pace is untouched.
    BackOffRecipient {
        #[serde(skip)]
        retry_after: Option<Duration>,
    },
    /// This person cannot take this message for a while (Meta's per-user marketing
    /// limit): their message waits `after`, never sooner; neither the pace nor the
    /// breaker counts it.
    DeferRecipient {
        #[serde(skip)]
        after: Duration,
    },
    /// This recipient cannot get this message; the campaign goes on.
    FailRecipient,
    /// Terminal for this recipient, but no sign of a bad campaign (Meta's marketing
    /// experiment): failed, not retried, and not counted by the circuit breaker.
    SkipRecipient,
    /// The recipient stopped these messages: record an opt-out for this purpose.
    OptOut {
        purpose: Purpose,
    },
    /// Nothing more can be sent until the operator fixes the cause.
    Halt,
    /// A code we do not know: retried a bounded number of times, then failed.
    Unknown,
    /// The message may have gone out.
    InDoubt,
}

/// The table: the providers' error codes and what they mean for a campaign. Kept as
/// data so a reader sees every decision in one place.
const TABLE: &[(Family, i64, i64, Kind, &str)] = &[
    (
        Family::Meta,
        4,
        4,
        Kind::Throttle,
        "application request limit reached",
    ),
    (
        Family::Meta,
        80007,
        80007,
        Kind::Throttle,
        "WhatsApp Business Account rate limit",
    ),
    (
        Family::Meta,
        130429,
        130429,
        Kind::Throttle,
        "cloud API throughput reached",
    ),
    (
        Family::Meta,
        131057,
        131057,
        Kind::Retry,
        "business account in maintenance mode",
    ),
    (
        Family::Meta,
        131026,
        131026,
        Kind::Fail,
        "message undeliverable",
    ),
    (
        Family::Meta,
        131049,
        131049,
        Kind::DeferRecipient,
        "per-user marketing limit: this person got too many marketing messages; Meta asks for 24 h before another",
    ),
    (
        Family::Meta,
        131062,
        131062,
        Kind::Fail,
        "business-scoped user ID not allowed for this template: Meta sends no one-tap, zero-tap or copy-code authentication template to a BSUID; send it to the number",
    ),
    (
        Family::Meta,
        130472,
        130472,
        Kind::SkipRecipient,
        "user's number is part of Meta's marketing experiment: not delivered, not billed, and a retry gets the same answer",
    ),
    (
        Family::Meta,
        131021,
        131021,
        Kind::Fail,
        "recipient cannot be the sender",
    ),
    (
        Family::Meta,
        130403,
        130403,
        Kind::Fail,
        "recipient not allowed for this business",
    ),
    (
        Family::Meta,
        132005,
        132005,
        Kind::Fail,
        "translated text too long",
    ),
    (
        Family::Meta,
        132012,
        132012,
        Kind::Halt,
        "parameter format does not match the template",
    ),
    (
        Family::Meta,
        131050,
        131050,
        Kind::OptOutMarketing,
        "user stopped marketing messages",
    ),
    (Family::Meta, 0, 0, Kind::Halt, "authentication exception"),
    (
        Family::Meta,
        3,
        3,
        Kind::Halt,
        "API method capability or permissions",
    ),
    (Family::Meta, 10, 10, Kind::Halt, "permission denied"),
    (
        Family::Meta,
        190,
        190,
        Kind::Halt,
        "access token expired or invalid",
    ),
    (Family::Meta, 200, 299, Kind::Halt, "API permissions"),
    (
        Family::Meta,
        368,
        368,
        Kind::Halt,
        "temporarily blocked for policy violations",
    ),
    (
        Family::Meta,
        131031,
        131031,
        Kind::Halt,
        "business account locked",
    ),
    (
        Family::Meta,
        131042,
        131042,
        Kind::Halt,
        "business eligibility payment issue",
    ),
    (
        Family::Meta,
        131048,
        131048,
        Kind::Halt,
        "spam rate limit hit: quality restrictions",
    ),
    (
        Family::Meta,
        131051,
        131051,
        Kind::Halt,
        "unsupported message type",
    ),
    (
        Family::Meta,
        131056,
        131056,
        Kind::BackOffRecipient,
        "pair rate limit: too many messages to this recipient",
    ),
    (
        Family::Meta,
        132000,
        132000,
        Kind::Halt,
        "template parameter count mismatch",
    ),
    (
        Family::Meta,
        132001,
        132001,
        Kind::Halt,
        "template does not exist in this language",
    ),
    (
        Family::Meta,
        132007,
        132007,
        Kind::Halt,
        "template format character policy violated",
    ),
    (
        Family::Meta,
        132015,
        132015,
        Kind::Halt,
        "template paused for low quality",
    ),
    (
        Family::Meta,
        132016,
        132016,
        Kind::Halt,
        "template disabled",
    ),
    (
        Family::Meta,
        133010,
        133010,
        Kind::Halt,
        "phone number not registered",
    ),
    (
        Family::Twilio,
        20429,
        20429,
        Kind::Throttle,
        "too many requests",
    ),
    (
        Family::Twilio,
        63018,
        63018,
        Kind::Throttle,
        "rate limit exceeded for the WhatsApp sender",
    ),
    (
        Family::Twilio,
        63016,
        63016,
        Kind::Fail,
        "outside the customer-service window: a template is needed",
    ),
    (
        Family::Twilio,
        21211,
        21211,
        Kind::Fail,
        "invalid 'To' phone number",
    ),
    (
        Family::Twilio,
        63014,
        63014,
        Kind::OptOutAll,
        "blocked by the end user",
    ),
    (
        Family::Twilio,
        21610,
        21610,
        Kind::OptOutAll,
        "the recipient unsubscribed (STOP)",
    ),
    (
        Family::Twilio,
        63027,
        63027,
        Kind::Halt,
        "template does not exist for this language",
    ),
    (
        Family::Twilio,
        63028,
        63028,
        Kind::Halt,
        "template parameter count mismatch",
    ),
    (
        Family::Twilio,
        20003,
        20003,
        Kind::Halt,
        "authentication failed",
    ),
    (
        Family::Twilio,
        20404,
        20404,
        Kind::Halt,
        "resource not found on this account",
    ),
];

/// How long Meta asks to wait before sending marketing again to a person who hit
/// the per-user marketing limit (131049). Retrying sooner can block delivery to
/// them for a day.
pub const MARKETING_LIMIT_WAIT: Duration = Duration::from_secs(24 * 3600);

/// How many times one message is deferred by the per-user limit before it is given
/// up, with the reason.
pub const MAX_DEFERRALS: u32 = 3;

/// How long Meta's pair rate limit asks between two messages to the same person
/// (one every 6 seconds), when the answer carries no `Retry-After`.
pub const PAIR_RATE_WAIT: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Throttle,
    Retry,
    /// Another sender (or a burst) used up this recipient's allowance.
    BackOffRecipient,
    /// The person's own limit: wait a day.
    DeferRecipient,
    Fail,
    /// Terminal, but says nothing about the campaign.
    SkipRecipient,
    /// WhatsApp's own "stop marketing messages".
    OptOutMarketing,
    /// A STOP or a block: nothing more from this sender.
    OptOutAll,
    Halt,
}

/// What the table says about a provider's error code, if it knows it.
pub fn lookup(family: Family, code: i64) -> Option<(Class, &'static str)> {
    TABLE
        .iter()
        .find(|(f, low, high, _, _)| *f == family && (*low..=*high).contains(&code))
        .map(|(_, _, _, kind, meaning)| {
            let class = match kind {
                Kind::Throttle => Class::RetryLater {
                    throttled: true,
                    retry_after: None,
                },
                Kind::Retry => Class::RetryLater {
                    throttled: false,
                    retry_after: None,
                },
                Kind::BackOffRecipient => Class::BackOffRecipient {
                    retry_after: Some(PAIR_RATE_WAIT),
                },
                Kind::DeferRecipient => Class::DeferRecipient {
                    after: MARKETING_LIMIT_WAIT,
                },
                Kind::Fail => Class::FailRecipient,
                Kind::SkipRecipient => Class::SkipRecipient,
                Kind::OptOutMarketing => Class::OptOut {
                    purpose: Purpose::Marketing,
                },
                Kind::OptOutAll => Class::OptOut {
                    purpose: Purpose::All,
                },
                Kind::Halt => Class::Halt,
            };
            (class, *meaning)
        })
}

/// What to do about a code, for the people reading a report: the codes whose
/// remedy is specific; the others get their kind's advice ([`Kind::advice`]).
const ADVICE: &[(Family, i64, &str)] = &[
    (
        Family::Meta,
        131026,
        "The number may not be on WhatsApp, or the person has not accepted WhatsApp's \
         latest terms or uses an old app. Confirm the number with them by another channel; \
         these messages are not billed.",
    ),
    (
        Family::Meta,
        131050,
        "The person stopped marketing messages in WhatsApp. It is recorded as an opt-out; \
         they can still get utility messages.",
    ),
    (
        Family::Meta,
        131049,
        "Meta limits how many marketing messages one person gets. They wait 24 h and a \
         later run sends them; send fewer marketing campaigns to the same people.",
    ),
    (
        Family::Meta,
        190,
        "Renew the access token (WHATSAPP_TOKEN), then run `send` again with \
         --resume-halted.",
    ),
    (
        Family::Meta,
        132015,
        "Meta paused the template for low quality: edit it or use another, then resume.",
    ),
    (
        Family::Meta,
        132016,
        "Meta disabled the template: create a new one and point the campaign at it.",
    ),
    (
        Family::Meta,
        131048,
        "Too many people blocked or reported recent messages: pause, review who you send \
         to and how often, then resume.",
    ),
];

impl Kind {
    /// What to do about a failure of this kind.
    fn advice(self) -> &'static str {
        match self {
            Kind::Throttle => {
                "Nothing: the campaign slowed down and retried. If it recurs, lower \
                 sending.rate_per_second."
            }
            Kind::Retry => {
                "Retried automatically; if it persists, check the provider's status page."
            }
            Kind::BackOffRecipient => {
                "Retried after a pause; avoid sending several campaigns to one person at once."
            }
            Kind::DeferRecipient => "Waits and is sent by a later run; nothing to do now.",
            Kind::Fail => {
                "Not retried: check the number or the values in the contacts file, and fix or \
                 remove the row."
            }
            Kind::SkipRecipient => "Nothing: Meta holds these numbers out; they are not billed.",
            Kind::OptOutMarketing | Kind::OptOutAll => {
                "Recorded as an opt-out: do not send them marketing again."
            }
            Kind::Halt => {
                "The campaign halted: fix the account, token or template named in the \
                 detail, then run `send` again with --resume-halted."
            }
        }
    }
}

/// What a code means and what to do about it, for a report: `None` when the table
/// does not know the code.
pub fn explain(family: Family, code: i64) -> Option<(&'static str, &'static str)> {
    let (_, _, _, kind, meaning) = TABLE
        .iter()
        .find(|(f, low, high, _, _)| *f == family && (*low..=*high).contains(&code))?;
    let advice = ADVICE
        .iter()
        .find(|(f, c, _)| *f == family && *c == code)
        .map_or_else(|| kind.advice(), |(_, _, advice)| advice);
    Some((meaning, advice))
}

/// What a provider's error code means, wherever it arrived: `None` when the table
/// does not know it.
pub fn code_class(family: Family, code: i64) -> Option<Class> {
    lookup(family, code).map(|(class, _)| class)
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
            family,
            http_status,
            code,
            retry_after,
            ..
        } => {
            if let Some(class) = code.and_then(|code| code_class(*family, code)) {
                // The answer's own Retry-After, when it has one, says best how long.
                return match class {
                    Class::RetryLater { throttled, .. } => Class::RetryLater {
                        throttled,
                        retry_after: *retry_after,
                    },
                    Class::BackOffRecipient { retry_after: wait } => Class::BackOffRecipient {
                        retry_after: retry_after.or(wait),
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

    #[test]
    fn every_code_a_report_explains_is_in_the_table_with_advice() {
        for (family, code, _) in ADVICE {
            assert!(
                explain(*family, *code).is_some(),
                "{code} has advice but no row"
            );
        }
        let (meaning, advice) = explain(Family::Meta, 131026).unwrap();
        assert_eq!(meaning, "message undeliverable");
        assert!(advice.contains("not billed"));
        // A range's codes share their kind's advice.
        assert!(
            explain(Family::Meta, 250)
                .unwrap()
                .1
                .contains("--resume-halted")
        );
        assert!(explain(Family::Meta, 999_999).is_none());
    }

    fn rejected(status: u16, code: Option<i64>) -> Response {
        Response::Rejected {
            family: Family::Meta,
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
        assert_eq!(
            classify(&rejected(400, Some(131050))),
            Class::OptOut {
                purpose: Purpose::Marketing
            }
        );
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
    fn twilio_codes_come_from_the_same_table() {
        let twilio = |status, code| Response::Rejected {
            family: Family::Twilio,
            http_status: status,
            code: Some(code),
            detail: String::new(),
            retry_after: Some(std::time::Duration::from_secs(3)),
        };
        assert_eq!(
            classify(&twilio(429, 63018)),
            Class::RetryLater {
                throttled: true,
                retry_after: Some(std::time::Duration::from_secs(3))
            }
        );
        assert_eq!(classify(&twilio(400, 63016)), Class::FailRecipient);
        assert_eq!(
            classify(&twilio(400, 21610)),
            Class::OptOut {
                purpose: Purpose::All
            }
        );
        assert_eq!(
            classify(&twilio(400, 63014)),
            Class::OptOut {
                purpose: Purpose::All
            }
        );
        assert_eq!(classify(&twilio(400, 63028)), Class::Halt);
        assert_eq!(classify(&twilio(401, 20003)), Class::Halt);
        assert_eq!(classify(&twilio(400, 21211)), Class::FailRecipient);
        // A Meta code number means nothing from Twilio.
        assert_eq!(classify(&twilio(400, 131048)), Class::Unknown);
    }

    #[test]
    fn a_pair_rate_limit_backs_off_that_recipient_only() {
        let expected = Class::BackOffRecipient {
            retry_after: Some(PAIR_RATE_WAIT),
        };
        assert_eq!(classify(&rejected(400, Some(131056))), expected);
        assert_eq!(code_class(Family::Meta, 131056), Some(expected));
        let with_header = Response::Rejected {
            family: Family::Meta,
            http_status: 400,
            code: Some(131056),
            detail: String::new(),
            retry_after: Some(Duration::from_secs(20)),
        };
        assert_eq!(
            classify(&with_header),
            Class::BackOffRecipient {
                retry_after: Some(Duration::from_secs(20))
            }
        );
    }

    #[test]
    fn a_code_means_the_same_in_an_answer_and_in_a_status() {
        let all = Some(Class::OptOut {
            purpose: Purpose::All,
        });
        assert_eq!(code_class(Family::Twilio, 63014), all);
        assert_eq!(code_class(Family::Twilio, 21610), all);
        assert_eq!(
            code_class(Family::Meta, 131050),
            Some(Class::OptOut {
                purpose: Purpose::Marketing
            })
        );
        assert_eq!(code_class(Family::Meta, 131026), Some(Class::FailRecipient));
        // A template Meta sends to no BSUID fails that recipient, not the campaign.
        assert_eq!(code_class(Family::Meta, 131062), Some(Class::FailRecipient));
        assert_eq!(code_class(Family::Meta, 63014), None);
        assert_eq!(code_class(Family::Twilio, 999_999), None);
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
