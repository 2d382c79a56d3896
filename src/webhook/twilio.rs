//! Twilio's webhooks: status callbacks and incoming messages, form-encoded, signed
//! in `X-Twilio-Signature`.
//!
//! Twilio signs the full URL it called (scheme, host, path and query, as configured
//! in Twilio) followed by every POST parameter sorted by name, each name immediately
//! followed by its value, with HMAC-SHA1 keyed by the account's auth token, base64.
//! Behind a proxy the server cannot know that URL, so it is configured
//! (`--public-url`).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{
    Delivery, Event, InboundEvent, OptOutRequest, OptOutRules, Source, StatusEvent,
    possible::possible,
};
use crate::phone::E164;

type HmacSha1 = Hmac<Sha1>;

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The query parameter a status callback URL may carry to name its journal row
/// (`?cb=wacampaign:{campaign}:{digits}`), so a status matches a row held in doubt
/// before its message SID is known.
pub const CALLBACK_QUERY: &str = "cb";

/// The `StatusCallback` URL for one message: the public webhook URL with the
/// message's journal row in [`CALLBACK_QUERY`], so its statuses find the row even
/// when the send's answer (and with it the SID) was lost.
pub fn status_callback_url(public_url: &str, campaign_id: &str, phone: E164) -> String {
    let callback =
        crate::provider::cloud_api::callback_data(campaign_id, &crate::provider::To::Phone(phone));
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair(CALLBACK_QUERY, &callback)
        .finish();
    let separator = if public_url.contains('?') { '&' } else { '?' };
    format!("{public_url}{separator}{query}")
}

/// The form's parameters, in the order sent.
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The string Twilio signs: the URL, then each parameter name followed by its
/// value, names sorted; a name sent more than once contributes each distinct
/// value, sorted (as Twilio's own validators do).
fn signed_data(url: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut data = String::with_capacity(url.len() + pairs.len() * 32);
    data.push_str(url);
    for (name, value) in pairs {
        data.push_str(name);
        data.push_str(value);
    }
    data
}

/// The `X-Twilio-Signature` Twilio sends for a POST of `params` to `url`.
pub fn signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut mac = HmacSha1::new_from_slice(auth_token).expect("HMAC takes a key of any length");
    mac.update(signed_data(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header` is Twilio's signature of this request. Compared in constant time.
pub fn signature_valid(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> bool {
    let Some(Ok(given)) =
        header.map(|h| base64::engine::general_purpose::STANDARD.decode(h.trim()))
    else {
        return false;
    };
    let Ok(mut mac) = HmacSha1::new_from_slice(auth_token) else {
        return false;
    };
    mac.update(signed_data(url, params).as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// Reads a verified form into events: a status callback (`MessageStatus`) or an
/// incoming message (`From` and `Body`).
pub fn parse(
    body: Vec<u8>,
    params: &[(String, String)],
    callback: Option<String>,
    rules: &OptOutRules,
    received_at: &str,
) -> Delivery {
    let mut delivery = Delivery::new(Source::Twilio, body);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let sid = get("MessageSid").or_else(|| get("SmsSid"));
    let status = get("MessageStatus")
        .or_else(|| get("SmsStatus"))
        .map(str::to_ascii_lowercase);
    let Some(sid) = sid else {
        delivery.unreadable = Some("no MessageSid: not a message webhook".to_owned());
        return delivery;
    };
    match status.as_deref() {
        Some(status) if !matches!(status, "received" | "receiving") => {
            let error_code = get("ErrorCode")
                .and_then(|c| c.parse::<i64>().ok())
                .filter(|&c| c != 0);
            let error_detail = error_code.map(|code| match get("ErrorMessage") {
                Some(message) => format!("Twilio error {code}: {message}"),
                None => format!("Twilio error {code}"),
            });
            delivery.events.push(Event::Status(StatusEvent {
                source: Source::Twilio,
                message_id: sid.to_owned(),
                status: status.to_owned(),
                timestamp: 0,
                occurred_at: received_at.to_owned(),
                recipient: get("To").map(str::to_owned),
                callback,
                error_code,
                error_detail,
                pricing: None,
            }));
        }
        _ => {
            let Some(from_raw) = get("From") else {
                delivery.unreadable = Some("an incoming message without From".to_owned());
                return delivery;
            };
            let whatsapp = from_raw.starts_with("whatsapp:");
            let Some(from) = E164::from_digits(from_raw.trim_start_matches("whatsapp:")) else {
                delivery.unreadable = Some(format!("From `{from_raw}` is not a phone number"));
                return delivery;
            };
            let text = get("Body").unwrap_or_default();
            let payload = get("ButtonPayload");
            let opt_out_type = get("OptOutType").map(str::to_ascii_uppercase);
            let opts_out = opt_out_type.as_deref() == Some("STOP")
                || rules.is_opt_out_text(text)
                || payload.is_some_and(|p| rules.is_opt_out_payload(p));
            let opt_out = opts_out.then(|| OptOutRequest {
                method: if whatsapp {
                    "whatsapp_reply"
                } else {
                    "sms_reply"
                }
                .to_owned(),
                evidence: match (payload, &opt_out_type) {
                    (Some(payload), _) => format!("button payload `{payload}`, text `{text}`"),
                    (None, Some(kind)) => format!("{text} (Twilio OptOutType={kind})"),
                    (None, None) => text.to_owned(),
                },
            });
            let possible_opt_out = if opt_out.is_none() && payload.is_none() {
                possible(rules, text)
            } else {
                None
            };
            let kind = if payload.is_some() {
                "button"
            } else if get("NumMedia").is_some_and(|n| n != "0") {
                "media"
            } else {
                "text"
            };
            delivery.events.push(Event::Inbound(InboundEvent {
                source: Source::Twilio,
                message_id: sid.to_owned(),
                from,
                kind: kind.to_owned(),
                context_id: get("OriginalRepliedMessageSid").map(str::to_owned),
                occurred_at: received_at.to_owned(),
                opt_out,
                possible_opt_out,
                button_payload: payload.map(str::to_owned),
            }));
        }
    }
    delivery
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The vectors in Twilio's own validator tests (twilio-php
    /// `tests/Twilio/Unit/Security/RequestValidatorTest.php`): auth token `12345`.
    #[test]
    fn twilios_published_vectors() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let form = params(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("From", "+14158675309"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            signature(b"12345", url, &form),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(signature_valid(
            b"12345",
            url,
            &form,
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        let repeated = params(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            signature(b"12345", url, &repeated),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn a_status_callback_url_names_its_row() {
        let phone = E164::from_digits("525512345678").unwrap();
        let url = status_callback_url("https://hooks.example.com/webhook/twilio", "promo 1", phone);
        assert_eq!(
            url,
            "https://hooks.example.com/webhook/twilio?cb=wacampaign%3Apromo+1%3A525512345678"
        );
        let query = url.split_once('?').unwrap().1;
        let (_, value) = form_urlencoded::parse(query.as_bytes()).next().unwrap();
        assert_eq!(
            crate::row_key::parse_callback_data(&value).map(|(c, k)| (c, k.person as u64)),
            Some(("promo 1", 525_512_345_678))
        );
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let url = "https://hooks.example.com/webhook/twilio";
        let form = params(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
        let sig = signature(b"token", url, &form);
        assert!(signature_valid(b"token", url, &form, Some(&sig)));
        assert!(!signature_valid(b"token2", url, &form, Some(&sig)));
        assert!(!signature_valid(
            b"token",
            "https://hooks.example.com/other",
            &form,
            Some(&sig)
        ));
        let changed = params(&[("MessageSid", "SM1"), ("MessageStatus", "read")]);
        assert!(!signature_valid(b"token", url, &changed, Some(&sig)));
        assert!(!signature_valid(b"token", url, &form, None));
        assert!(!signature_valid(b"token", url, &form, Some("not base64!")));
    }

    #[test]
    fn status_callbacks_and_replies_become_events() {
        let rules = OptOutRules::default();
        let status = params(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "63016"),
            ("To", "whatsapp:+525512345678"),
        ]);
        let d = parse(Vec::new(), &status, None, &rules, "2026-01-01T00:00:00Z");
        let [Event::Status(s)] = d.events.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(
            (s.status.as_str(), s.error_code, s.timestamp),
            ("undelivered", Some(63016), 0)
        );

        let reply = params(&[
            ("MessageSid", "SM2"),
            ("SmsStatus", "received"),
            ("From", "whatsapp:+5215512345678"),
            ("Body", "BAJA"),
        ]);
        let d = parse(Vec::new(), &reply, None, &rules, "2026-01-01T00:00:00Z");
        let [Event::Inbound(m)] = d.events.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(m.from.to_string(), "+5215512345678");
        assert_eq!(m.opt_out.as_ref().unwrap().method, "whatsapp_reply");
        assert_eq!(m.possible_opt_out, None);

        let sentence = params(&[
            ("MessageSid", "SM4"),
            ("From", "whatsapp:+5215512345678"),
            ("Body", "Ya no me manden nada por favor"),
        ]);
        let d = parse(Vec::new(), &sentence, None, &rules, "x");
        let [Event::Inbound(m)] = d.events.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(m.opt_out, None, "a sentence is not acted on");
        let possible = m.possible_opt_out.as_ref().expect("but kept for a person");
        assert_eq!(possible.text, "Ya no me manden nada por favor");

        let advanced = params(&[
            ("MessageSid", "SM3"),
            ("From", "+14155550123"),
            ("Body", "please no more"),
            ("OptOutType", "STOP"),
        ]);
        let d = parse(Vec::new(), &advanced, None, &rules, "x");
        let [Event::Inbound(m)] = d.events.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(m.opt_out.as_ref().unwrap().method, "sms_reply");
    }
}
