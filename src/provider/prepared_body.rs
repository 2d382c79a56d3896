//! A message body serialized once per campaign, with a hole for each string that
//! changes from one message to the next.
//!
//! A template message's JSON is the same for every recipient but for a few strings:
//! the address, the rendered values and the callback data. serde_json wrote all of
//! it for every message: about 7,000 instructions, most of them escaping the same
//! thirty keys and constant strings again (BENCHMARKS.md). Here the body is written
//! once with a stand-in for each changing string, cut at the stand-ins, and each
//! message only copies the pieces and escapes its own strings.
//!
//! The result is byte for byte what serde_json writes for the message (a property
//! test holds the two together), so the request contract is the serializer's. Where
//! that cannot be guaranteed (a stand-in came out other than as a whole string, or a
//! message has a different number of values), the caller serializes as before.

/// Opens and closes a stand-in: characters from Unicode's private use area, which
/// serde_json writes as they are, never escaped.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// What fills a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hole {
    Recipient,
    Callback,
    Value(usize),
}

/// The strings a body is first serialized with, each standing for one that a
/// message fills in.
pub struct StandIns {
    pub recipient: String,
    pub callback: String,
    pub values: Vec<String>,
}

/// A body cut at its holes.
#[derive(Debug)]
pub struct PreparedBody {
    /// The JSON around the holes, pieces one after another.
    text: Vec<u8>,
    /// Each hole, after the piece of `text` that ends at this offset.
    holes: Vec<(usize, Hole)>,
    /// How many values a message must bring.
    values: usize,
}

impl PreparedBody {
    /// Prepares the body `serialize` writes for messages with `values` values.
    /// `None` when a stand-in did not come out as a whole JSON string of its own:
    /// then that body must be serialized message by message.
    pub fn new(
        values: usize,
        serialize: impl FnOnce(&StandIns) -> Option<Vec<u8>>,
    ) -> Option<PreparedBody> {
        // A random mark in every stand-in, so that no text of the campaign's own can
        // pass for one.
        let mark = format!("{OPEN}{:016x}", fastrand::u64(..));
        let stand_in = |tag: &str| format!("{mark}{tag}{CLOSE}");
        let stand_ins = StandIns {
            recipient: stand_in("r"),
            callback: stand_in("c"),
            values: (0..values).map(|i| stand_in(&i.to_string())).collect(),
        };
        let json = serialize(&stand_ins)?;
        let opening = format!("\"{mark}");
        let closing = format!("{CLOSE}\"");
        let mut text = Vec::with_capacity(json.len());
        let mut holes = Vec::new();
        let mut rest = json.as_slice();
        while let Some(at) = find(rest, opening.as_bytes()) {
            text.extend_from_slice(&rest[..at]);
            let inside = &rest[at + opening.len()..];
            let end = find(inside, closing.as_bytes())?;
            let hole = match std::str::from_utf8(&inside[..end]).ok()? {
                "r" => Hole::Recipient,
                "c" => Hole::Callback,
                n => Hole::Value(n.parse().ok().filter(|&i| i < values)?),
            };
            holes.push((text.len(), hole));
            rest = &inside[end + closing.len()..];
        }
        text.extend_from_slice(rest);
        let mut open = [0u8; 4];
        if find(&text, OPEN.encode_utf8(&mut open).as_bytes()).is_some() {
            return None;
        }
        Some(PreparedBody {
            text,
            holes,
            values,
        })
    }

    /// One message's body; `None` when it brings another number of values than the
    /// body was prepared for.
    pub fn fill(&self, recipient: &str, values: &[String], callback: &str) -> Option<Vec<u8>> {
        if values.len() != self.values {
            return None;
        }
        let strings: usize =
            values.iter().map(String::len).sum::<usize>() + recipient.len() + callback.len();
        let mut out = Vec::with_capacity(self.text.len() + strings + 2 * self.holes.len() + 16);
        let mut from = 0;
        for &(at, hole) in &self.holes {
            out.extend_from_slice(&self.text[from..at]);
            from = at;
            let string = match hole {
                Hole::Recipient => recipient,
                Hole::Callback => callback,
                Hole::Value(i) => values.get(i)?,
            };
            push_json_string(&mut out, string)?;
        }
        out.extend_from_slice(&self.text[from..]);
        Some(out)
    }
}

/// A JSON string as serde_json writes it: most need no escaping and are copied;
/// the others go through serde_json itself.
fn push_json_string(out: &mut Vec<u8>, s: &str) -> Option<()> {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(&mut *out, s).ok()
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Some(())
    }
}

/// Only used while preparing, once per campaign.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &StandIns) -> Option<Vec<u8>> {
        serde_json::to_vec(&serde_json::json!({
            "to": s.recipient,
            "list": [{"text": s.values[0]}, {"text": s.values[1]}],
            "code": s.values[1],
            "data": s.callback,
        }))
        .ok()
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn a_filled_body_is_what_serde_json_writes() {
        let prepared = PreparedBody::new(2, body).unwrap();
        for values in [
            ["Ana", "es_MX"],
            ["\"quoted\"\n\\", "\u{1}\u{E000}x\u{E001}"],
        ] {
            let values = strings(&values);
            let expected = body(&StandIns {
                recipient: "+5215512345678".into(),
                callback: "c1:42".into(),
                values: values.clone(),
            })
            .unwrap();
            let filled = prepared.fill("+5215512345678", &values, "c1:42").unwrap();
            assert_eq!(
                String::from_utf8(filled).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    #[test]
    fn another_number_of_values_is_not_filled() {
        let prepared = PreparedBody::new(2, body).unwrap();
        assert!(prepared.fill("x", &strings(&["a"]), "c").is_none());
        assert!(
            prepared
                .fill("x", &strings(&["a", "b", "c"]), "c")
                .is_none()
        );
    }

    #[test]
    fn a_stand_in_inside_a_longer_string_is_not_prepared() {
        let inside = |s: &StandIns| {
            serde_json::to_vec(&serde_json::json!({ "text": format!("Hi {}", s.values[0]) })).ok()
        };
        assert!(PreparedBody::new(1, inside).is_none());
    }

    #[test]
    fn a_stand_in_escaped_or_changed_is_not_prepared() {
        let changed = |s: &StandIns| {
            let reversed: String = s.values[0].chars().rev().collect();
            serde_json::to_vec(&serde_json::json!({ "text": reversed })).ok()
        };
        assert!(PreparedBody::new(1, changed).is_none());
    }
}
