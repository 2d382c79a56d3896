//! Meta's WhatsApp Cloud API webhooks: the verification handshake, the
//! `X-Hub-Signature-256` check, and the payloads (`WebhookPayload` → `entry[]` →
//! `changes[]` → `value`) in Meta's OpenAPI description, v23.0, plus the
//! `user_preferences` field documented beside it.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    Billing, BsuidOptOut, Delivery, Event, IdentityLink, InboundEvent, NumberChange, OptOutRequest,
    OptOutRules, Preference, PreferenceEvent, Source, StatusEvent, TemplateChange, TemplateEvent,
    possible::possible, unix_to_rfc3339,
};
use crate::identity::Bsuid;
use crate::phone::E164;

type HmacSha256 = Hmac<Sha256>;

/// The header Meta signs POST bodies in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of the raw `body` keyed
/// with the app secret. Compared in constant time.
pub fn signature_valid(app_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest.trim()) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(app_secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The `X-Hub-Signature-256` value Meta would send for `body`: for load
/// generators and tests.
pub fn signature_header(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(app_secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The verification handshake: the challenge to echo when `mode` is `subscribe`
/// and `token` is ours (compared in constant time, lengths included), else `None`.
pub fn handshake<'a>(
    expected_token: Option<&str>,
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'a str>,
) -> Option<&'a str> {
    let expected = expected_token?;
    if mode != Some("subscribe") {
        return None;
    }
    let given = token?;
    // Hash both so the comparison takes the same time whatever their lengths.
    let same: bool = Sha256::digest(expected.as_bytes())
        .ct_eq(&Sha256::digest(given.as_bytes()))
        .into();
    if !same {
        return None;
    }
    challenge.filter(|c| !c.is_empty() && c.len() <= 512)
}

/// Reads a verified body into events. A body that is not a webhook payload is
/// kept with the reason (`unreadable`), since a retry would not make it readable.
pub fn parse(body: Vec<u8>, rules: &OptOutRules, received_at: &str) -> Delivery {
    let mut delivery = Delivery::new(Source::Meta, body);
    match serde_json::from_slice::<Payload>(&delivery.body) {
        Ok(payload) => delivery.events = events(&payload, rules, received_at),
        Err(e) => delivery.unreadable = Some(format!("not a webhook payload: {e}")),
    }
    delivery
}

fn events(payload: &Payload, rules: &OptOutRules, received_at: &str) -> Vec<Event> {
    let mut events = Vec::new();
    for change in payload.entry.iter().flat_map(|e| &e.changes) {
        let Some(value) = &change.value else {
            continue;
        };
        // Identities first: a stop or a status in the same payload then finds the
        // person already linked.
        for contact in &value.contacts {
            if let Some(link) = identity_link(contact.user_id.as_deref(), contact.wa_id.as_deref())
            {
                events.push(Event::Link(link));
            }
        }
        for status in &value.statuses {
            if let Some(link) = identity_link(
                status.recipient_user_id.as_deref(),
                status.recipient_id.as_deref(),
            ) {
                events.push(Event::Link(link));
            }
            if let Some(event) = status_event(status, received_at) {
                events.push(Event::Status(event));
            }
        }
        for update in &value.user_id_update {
            if let Some(event) = user_id_update(update) {
                events.push(event);
            }
        }
        // A user who hides their number is named by their BSUID alone.
        let sender_bsuid = value.contacts.iter().find_map(|c| c.user_id.as_deref());
        for message in &value.messages {
            if let Some(event) = message_event(message, rules, received_at, sender_bsuid) {
                events.push(event);
            }
        }
        for preference in &value.user_preferences {
            if let Some(event) = preference_event(preference, received_at) {
                events.push(Event::Preference(event));
            }
        }
        if let Some(event) = template_event(change.field.as_deref(), value) {
            events.push(Event::Template(event));
        }
    }
    events
}

/// A BSUID seen beside a number (or alone): `contacts[].user_id` beside `wa_id`,
/// `recipient_user_id` beside `recipient_id`. A malformed BSUID links nothing.
fn identity_link(user_id: Option<&str>, wa_id: Option<&str>) -> Option<IdentityLink> {
    let bsuid = Bsuid::parse(user_id?).ok()?;
    Some(IdentityLink {
        bsuid,
        phone: wa_id.and_then(E164::from_digits),
        previous: None,
    })
}

/// `user_id_update`: a user's BSUID changed. Meta's reference gives no example of
/// this payload; the fields read are the ones its system messages carry
/// (`previous_user_id`, `user_id`, and `wa_id` when a number may be shared), also
/// accepted as `{"user_id": {"previous": …, "current": …}}`.
fn user_id_update(update: &UserIdUpdate) -> Option<Event> {
    let (previous, current) = match &update.user_id {
        Some(UserIdField::Pair { previous, current }) => (previous.clone(), current.clone()),
        Some(UserIdField::Plain(current)) => {
            (update.previous_user_id.clone(), Some(current.clone()))
        }
        None => (update.previous_user_id.clone(), None),
    };
    let bsuid = Bsuid::parse(current.as_deref()?).ok()?;
    Some(Event::Link(IdentityLink {
        bsuid,
        phone: update.wa_id.as_deref().and_then(E164::from_digits),
        previous: previous.as_deref().and_then(|p| Bsuid::parse(p).ok()),
    }))
}

fn template_event(field: Option<&str>, value: &Value) -> Option<TemplateEvent> {
    let upper = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_uppercase)
    };
    let change = match field? {
        "message_template_status_update" => TemplateChange::Status(upper(&value.event)?),
        "message_template_quality_update" => {
            TemplateChange::Quality(upper(&value.new_quality_score)?)
        }
        "template_category_update" => TemplateChange::Category(upper(&value.new_category)?),
        _ => return None,
    };
    let template_id = match &value.message_template_id {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Some(TemplateEvent {
        template_id,
        name: value.message_template_name.clone()?,
        language: value.message_template_language.clone(),
        change,
    })
}

fn status_event(status: &Status, received_at: &str) -> Option<StatusEvent> {
    let message_id = status.id.clone().filter(|id| !id.is_empty())?;
    let kind = status.status.clone()?.to_ascii_lowercase();
    let timestamp = status.timestamp.as_ref().and_then(Timestamp::seconds);
    let error = status.errors.first();
    Some(StatusEvent {
        source: Source::Meta,
        message_id,
        status: kind,
        timestamp: timestamp.unwrap_or(0),
        occurred_at: timestamp
            .and_then(unix_to_rfc3339)
            .unwrap_or_else(|| received_at.to_owned()),
        recipient: status.recipient_id.clone(),
        callback: status.biz_opaque_callback_data.clone(),
        error_code: error.and_then(|e| e.code),
        error_detail: error.map(StatusError::describe),
        pricing: status.pricing.as_ref().map(|p| Billing {
            billable: p.billable,
            category: p.category.clone(),
            kind: p.kind.clone(),
        }),
    })
}

fn message_event(
    message: &Message,
    rules: &OptOutRules,
    received_at: &str,
    sender_bsuid: Option<&str>,
) -> Option<Event> {
    let id = message.id.clone().filter(|id| !id.is_empty())?;
    // A BSUID change reports no number.
    if let Some(system) = &message.system
        && system.kind.as_deref() == Some("user_changed_user_id")
    {
        return Some(Event::Link(IdentityLink {
            bsuid: Bsuid::parse(system.user_id.as_deref()?).ok()?,
            phone: None,
            previous: system
                .previous_user_id
                .as_deref()
                .and_then(|p| Bsuid::parse(p).ok()),
        }));
    }
    let Some(from) = message.from.as_deref().and_then(E164::from_digits) else {
        // No number: an opt-out is still an opt-out, recorded under the BSUID.
        let bsuid = message
            .from_user_id
            .as_deref()
            .or(sender_bsuid)
            .and_then(|b| Bsuid::parse(b).ok())?;
        return Some(Event::BsuidOptOut(BsuidOptOut {
            bsuid,
            message_id: id,
            occurred_at: message
                .timestamp
                .as_ref()
                .and_then(Timestamp::seconds)
                .and_then(unix_to_rfc3339)
                .unwrap_or_else(|| received_at.to_owned()),
            request: opt_out_request(message, rules)?,
        }));
    };
    let occurred_at = message
        .timestamp
        .as_ref()
        .and_then(Timestamp::seconds)
        .and_then(unix_to_rfc3339)
        .unwrap_or_else(|| received_at.to_owned());
    let kind = message.kind.clone().unwrap_or_else(|| "unknown".to_owned());
    if kind == "system" {
        let system = message.system.as_ref()?;
        return match system.kind.as_deref() {
            Some("user_changed_number") => {
                let new = E164::from_digits(system.wa_id.as_deref()?)?;
                Some(Event::NumberChanged(NumberChange {
                    source: Source::Meta,
                    old: from,
                    new,
                    occurred_at,
                    message_id: id,
                    body: system.body.clone().unwrap_or_default(),
                }))
            }
            // The older shape of a marketing preference change.
            Some("user_preference_changed") => {
                let marketing = match system.marketing.as_deref()? {
                    "stop" => Preference::Stop,
                    "resume" => Preference::Resume,
                    _ => return None,
                };
                Some(Event::Preference(PreferenceEvent {
                    source: Source::Meta,
                    wa_id: Some(from),
                    user_id: system.user_id.as_deref().and_then(|b| Bsuid::parse(b).ok()),
                    marketing,
                    timestamp: message
                        .timestamp
                        .as_ref()
                        .and_then(Timestamp::seconds)
                        .unwrap_or(0),
                    occurred_at,
                    evidence: serde_json::to_string(system).unwrap_or_default(),
                }))
            }
            _ => None,
        };
    }
    let opt_out = opt_out_request(message, rules);
    let possible_opt_out = match (
        &opt_out,
        message.text.as_ref().and_then(|t| t.body.as_deref()),
    ) {
        (None, Some(text)) => possible(rules, text),
        _ => None,
    };
    Some(Event::Inbound(InboundEvent {
        source: Source::Meta,
        message_id: id,
        from,
        kind,
        context_id: message.context.as_ref().and_then(|c| c.id.clone()),
        occurred_at,
        opt_out,
        possible_opt_out,
        button_payload: message
            .button
            .as_ref()
            .and_then(|b| b.payload.clone())
            .or_else(|| {
                message
                    .interactive
                    .as_ref()
                    .and_then(|i| i.button_reply.as_ref())
                    .and_then(|r| r.id.clone())
            }),
    }))
}

fn opt_out_request(message: &Message, rules: &OptOutRules) -> Option<OptOutRequest> {
    let request = |evidence: String| {
        Some(OptOutRequest {
            method: "whatsapp_reply".to_owned(),
            evidence,
        })
    };
    if let Some(text) = message.text.as_ref().and_then(|t| t.body.as_deref())
        && rules.is_opt_out_text(text)
    {
        return request(text.to_owned());
    }
    if let Some(button) = &message.button {
        let payload = button.payload.as_deref().unwrap_or_default();
        let text = button.text.as_deref().unwrap_or_default();
        if rules.is_opt_out_payload(payload) || rules.is_opt_out_text(text) {
            return request(format!("button payload `{payload}`, text `{text}`"));
        }
    }
    if let Some(reply) = message
        .interactive
        .as_ref()
        .and_then(|i| i.button_reply.as_ref())
    {
        let id = reply.id.as_deref().unwrap_or_default();
        let title = reply.title.as_deref().unwrap_or_default();
        if rules.is_opt_out_payload(id) || rules.is_opt_out_text(title) {
            return request(format!("button reply id `{id}`, title `{title}`"));
        }
    }
    None
}

fn preference_event(preference: &UserPreference, received_at: &str) -> Option<PreferenceEvent> {
    if preference.category.as_deref() != Some("marketing_messages") {
        return None;
    }
    let marketing = match preference.value.as_deref()? {
        "stop" => Preference::Stop,
        "resume" => Preference::Resume,
        _ => return None,
    };
    let timestamp = preference.timestamp.as_ref().and_then(Timestamp::seconds);
    // A user who hides their number is named by their BSUID alone.
    let wa_id = preference.wa_id.as_deref().and_then(E164::from_digits);
    let user_id = preference
        .user_id
        .as_deref()
        .and_then(|b| Bsuid::parse(b).ok());
    if wa_id.is_none() && user_id.is_none() {
        return None;
    }
    Some(PreferenceEvent {
        source: Source::Meta,
        wa_id,
        user_id,
        marketing,
        timestamp: timestamp.unwrap_or(0),
        occurred_at: timestamp
            .and_then(unix_to_rfc3339)
            .unwrap_or_else(|| received_at.to_owned()),
        evidence: serde_json::to_string(preference).unwrap_or_default(),
    })
}

// The payload, leniently: an item missing what we need is skipped, not the body.

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    field: Option<String>,
    value: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Value {
    #[serde(default)]
    statuses: Vec<Status>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    user_preferences: Vec<UserPreference>,
    #[serde(default)]
    contacts: Vec<ContactInfo>,
    #[serde(default)]
    user_id_update: Vec<UserIdUpdate>,
    // The template webhooks (`message_template_*_update`, `template_category_update`).
    event: Option<String>,
    message_template_id: Option<serde_json::Value>,
    message_template_name: Option<String>,
    message_template_language: Option<String>,
    new_quality_score: Option<String>,
    new_category: Option<String>,
}

/// Meta sends Unix timestamps as strings in messages and statuses, as numbers in
/// `user_preferences`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(untagged)]
enum Timestamp {
    Number(i64),
    Text(String),
}

impl Timestamp {
    fn seconds(&self) -> Option<i64> {
        match self {
            Timestamp::Number(n) => Some(*n),
            Timestamp::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Status {
    id: Option<String>,
    status: Option<String>,
    timestamp: Option<Timestamp>,
    recipient_id: Option<String>,
    recipient_user_id: Option<String>,
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<StatusError>,
    pricing: Option<StatusPricing>,
}

#[derive(Debug, Deserialize)]
struct StatusPricing {
    billable: Option<bool>,
    category: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatusError {
    code: Option<i64>,
    title: Option<String>,
    message: Option<String>,
    error_data: Option<ErrorData>,
}

impl StatusError {
    fn describe(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        for part in [self.title.as_deref(), self.message.as_deref()]
            .into_iter()
            .flatten()
        {
            if !part.is_empty() && !parts.contains(&part) {
                parts.push(part);
            }
        }
        if let Some(details) = self.error_data.as_ref().and_then(|d| d.details.as_deref())
            && !details.is_empty()
        {
            parts.push(details);
        }
        parts.join(": ")
    }
}

#[derive(Debug, Deserialize)]
struct ErrorData {
    details: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    from: Option<String>,
    from_user_id: Option<String>,
    id: Option<String>,
    timestamp: Option<Timestamp>,
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<Text>,
    button: Option<Button>,
    interactive: Option<Interactive>,
    system: Option<System>,
    context: Option<Context>,
}

#[derive(Debug, Deserialize)]
struct Text {
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Button {
    payload: Option<String>,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Interactive {
    button_reply: Option<ButtonReply>,
}

#[derive(Debug, Deserialize)]
struct ButtonReply {
    id: Option<String>,
    title: Option<String>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct System {
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wa_id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    marketing: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContactInfo {
    wa_id: Option<String>,
    user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UserIdUpdate {
    wa_id: Option<String>,
    previous_user_id: Option<String>,
    user_id: Option<UserIdField>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum UserIdField {
    Plain(String),
    Pair {
        previous: Option<String>,
        current: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct Context {
    id: Option<String>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct UserPreference {
    #[serde(skip_serializing_if = "Option::is_none")]
    wa_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    category: Option<String>,
    value: Option<String>,
    timestamp: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-app-secret";

    #[test]
    fn a_signature_is_checked_over_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = signature_header(SECRET, body);
        assert!(signature_valid(SECRET, body, Some(&header)));
        assert!(!signature_valid(SECRET, body, None));
        assert!(!signature_valid(SECRET, body, Some("sha256=00")));
        assert!(!signature_valid(
            SECRET,
            body,
            Some(&header.replace("sha256=", "sha1="))
        ));
        assert!(!signature_valid(b"other", body, Some(&header)));
        let mut flipped = body.to_vec();
        flipped[3] ^= 1;
        assert!(!signature_valid(SECRET, &flipped, Some(&header)));
    }

    #[test]
    fn the_handshake_answers_only_our_token() {
        let ok = handshake(
            Some("tok"),
            Some("subscribe"),
            Some("tok"),
            Some("1158201444"),
        );
        assert_eq!(ok, Some("1158201444"));
        assert_eq!(
            handshake(Some("tok"), Some("subscribe"), Some("tok2"), Some("1")),
            None
        );
        assert_eq!(
            handshake(Some("tok"), Some("unsubscribe"), Some("tok"), Some("1")),
            None
        );
        assert_eq!(
            handshake(None, Some("subscribe"), Some(""), Some("1")),
            None
        );
        assert_eq!(
            handshake(Some("tok"), Some("subscribe"), None, Some("1")),
            None
        );
    }

    #[test]
    fn statuses_messages_and_preferences_become_events() {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "419561257915477", "changes": [
                {"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "statuses": [{
                        "id": "wamid.A", "status": "failed", "timestamp": "1750263773",
                        "recipient_id": "525512345678",
                        "biz_opaque_callback_data": "wacampaign:promo:525512345678",
                        "errors": [{"code": 131050, "title": "Unable to deliver the message",
                                    "message": "Unable to deliver the message",
                                    "error_data": {"details": "user stopped marketing messages"}}]
                    }]}},
                {"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                    "messages": [
                        {"from": "16505551234", "id": "wamid.B", "timestamp": "1749416383",
                         "type": "text", "text": {"body": " Stop "}},
                        {"from": "16505551234", "id": "wamid.C", "timestamp": "1750091045",
                         "type": "button", "context": {"from": "15550783881", "id": "wamid.A"},
                         "button": {"payload": "PROMO_NO", "text": "No more offers"}},
                        {"from": "16505551234", "id": "wamid.D", "timestamp": "1750269342",
                         "type": "system", "system": {"body": "User Sheena Nelson changed from 16505551234 to 12195555358",
                          "wa_id": "12195555358", "type": "user_changed_number"}}
                    ]}},
                {"field": "user_preferences", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "contacts": [{"wa_id": "16505551234"}],
                    "user_preferences": [{"wa_id": "16505551234",
                        "detail": "User requested to stop marketing messages",
                        "category": "marketing_messages", "value": "stop", "timestamp": 1731705721}]
                }}
            ]}]
        });
        let delivery = parse(
            serde_json::to_vec(&body).unwrap(),
            &OptOutRules::default(),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(delivery.unreadable, None);
        let events = delivery.events;
        assert_eq!(events.len(), 5, "{events:#?}");
        let Event::Status(status) = &events[0] else {
            panic!("{events:#?}")
        };
        assert_eq!(status.status, "failed");
        assert_eq!(status.error_code, Some(131050));
        assert_eq!(status.occurred_at, "2025-06-18T16:22:53Z");
        assert_eq!(
            status.error_detail.as_deref(),
            Some("Unable to deliver the message: user stopped marketing messages")
        );
        let Event::Inbound(stop) = &events[1] else {
            panic!()
        };
        assert_eq!(stop.opt_out.as_ref().unwrap().evidence, " Stop ");
        let Event::Inbound(button) = &events[2] else {
            panic!()
        };
        assert_eq!(button.opt_out, None, "`PROMO_NO` is not a declared payload");
        assert_eq!(button.context_id.as_deref(), Some("wamid.A"));
        let Event::NumberChanged(change) = &events[3] else {
            panic!()
        };
        assert_eq!(change.old.to_string(), "+16505551234");
        assert_eq!(change.new.to_string(), "+12195555358");
        let Event::Preference(pref) = &events[4] else {
            panic!()
        };
        assert_eq!(pref.marketing, Preference::Stop);
        assert_eq!(pref.timestamp, 1_731_705_721);

        let rules = OptOutRules::new(Vec::<String>::new(), ["promo_no"]);
        let delivery = parse(serde_json::to_vec(&body).unwrap(), &rules, "x");
        let Event::Inbound(button) = &delivery.events[2] else {
            panic!()
        };
        assert!(button.opt_out.is_some());
    }

    #[test]
    fn bsuids_are_read_from_contacts_statuses_preferences_and_user_id_updates() {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [
                {"field": "user_preferences", "value": {
                    "contacts": [{"user_id": "US.1"}],
                    "user_preferences": [{"user_id": "US.1", "category": "marketing_messages",
                                          "value": "stop", "timestamp": 1731705721}]}},
                {"field": "messages", "value": {
                    "statuses": [{"id": "wamid.A", "status": "delivered", "timestamp": "1",
                                  "recipient_id": "16505551234", "recipient_user_id": "US.2"}]}},
                {"field": "user_id_update", "value": {
                    "user_id_update": [
                        {"wa_id": "16505551234", "previous_user_id": "US.2", "user_id": "US.3"},
                        {"user_id": {"previous": "US.3", "current": "US.4"}},
                        {"previous_user_id": "US.4", "user_id": "not a bsuid"}]}}
            ]}]
        });
        let events = parse(
            serde_json::to_vec(&body).unwrap(),
            &OptOutRules::default(),
            "x",
        )
        .events;
        let bsuid = |b: &str| Bsuid::parse(b).unwrap();
        let phone = E164::from_digits("16505551234");
        assert_eq!(
            events,
            vec![
                Event::Link(IdentityLink { bsuid: bsuid("US.1"), phone: None, previous: None }),
                Event::Preference(PreferenceEvent {
                    source: Source::Meta,
                    wa_id: None,
                    user_id: Some(bsuid("US.1")),
                    marketing: Preference::Stop,
                    timestamp: 1_731_705_721,
                    occurred_at: "2024-11-15T21:22:01Z".into(),
                    evidence: r#"{"user_id":"US.1","category":"marketing_messages","value":"stop","timestamp":1731705721}"#.into(),
                }),
                Event::Link(IdentityLink { bsuid: bsuid("US.2"), phone, previous: None }),
                match &events[3] {
                    Event::Status(s) => Event::Status(s.clone()),
                    other => panic!("{other:?}"),
                },
                Event::Link(IdentityLink {
                    bsuid: bsuid("US.3"),
                    phone,
                    previous: Some(bsuid("US.2"))
                }),
                Event::Link(IdentityLink {
                    bsuid: bsuid("US.4"),
                    phone: None,
                    previous: Some(bsuid("US.3"))
                }),
            ],
            "a malformed BSUID links nothing"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_kept_as_unreadable() {
        let delivery = parse(b"not json".to_vec(), &OptOutRules::default(), "x");
        assert!(delivery.unreadable.is_some());
        assert!(delivery.events.is_empty());
    }
}
