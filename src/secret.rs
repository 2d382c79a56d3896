//! Secrets: read from the environment or from a file only its owner can read, and
//! never shown. [`Secret`]'s `Debug` prints nothing of it, and [`Secret::redact`]
//! scrubs it out of any text a server sends back before that text is stored or shown.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use base64::Engine as _;

use anyhow::{Context as _, bail};

use crate::campaign::SecretRef;

#[derive(Clone)]
pub struct Secret(String, Arc<Spellings>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    /// Reads the secret a campaign points to: the file when one is named, else the
    /// environment variable.
    pub fn load(reference: &SecretRef) -> anyhow::Result<Secret> {
        if let Some(path) = &reference.file {
            let shown = path.display();
            let meta = std::fs::metadata(path).with_context(|| format!("token file {shown}"))?;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                bail!(
                    "token file {shown} is readable by other users (mode {:04o}); run `chmod 600 {shown}`",
                    mode & 0o7777
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {shown}"))?;
            return Secret::new(text.trim(), &format!("token file {shown}"));
        }
        match std::env::var(&reference.env) {
            Ok(value) => Secret::new(
                value.trim(),
                &format!("environment variable {}", reference.env),
            ),
            Err(_) => bail!(
                "the environment variable {} is not set; export the access token there \
                 (or set provider.token_file to a file readable only by you)",
                variable_shown(&reference.env)
            ),
        }
    }

    pub fn new(value: &str, origin: &str) -> anyhow::Result<Secret> {
        if value.is_empty() {
            bail!("{origin} is empty");
        }
        let spellings =
            Spellings::of(value).with_context(|| format!("{origin}: preparing its redaction"))?;
        Ok(Secret(value.to_owned(), Arc::new(spellings)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced, in any spelling a
    /// server or proxy might echo it in (see [`Spellings`]).
    pub fn redact(&self, text: &str) -> String {
        self.1.redact(text)
    }

    /// [`Secret::redact`] for a text that is owned already: handed back as it is
    /// when it holds no spelling of the secret (an answer's ids and statuses, on
    /// every message), without a copy.
    pub fn redact_owned(&self, text: String) -> String {
        if self.1.holds_any(&text) {
            self.1.redact(&text)
        } else {
            text
        }
    }
}

/// An environment variable's name as an error may show it: a campaign file that
/// names the token itself where the variable's name belongs (`token_env = "EAAG…"`)
/// must not have it printed back. Names as shells write them (`WHATSAPP_TOKEN`)
/// are shown; anything else is described instead.
pub fn variable_shown(name: &str) -> String {
    let conventional = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if conventional {
        name.to_owned()
    } else {
        "named in the campaign file (not shown: it does not look like a variable's \
         name; if it is the token itself, remove it from the file and revoke it)"
            .to_owned()
    }
}

/// Every spelling of a secret worth looking for, built once when it is loaded: a
/// server or proxy that echoes a request back may have lower- or upper-cased it,
/// URL-encoded it (with `%20` or `+` for a space, `%2f` or `%2F`), or show the
/// `Authorization` header it got, where Basic auth is base64 of `user:secret`.
/// All of them are searched for in one pass over a text (Aho-Corasick), since this
/// runs on every field of every answer a provider gives.
struct Spellings {
    /// Matched ignoring ASCII case: the secret, and its URL and form encodings.
    folded: aho_corasick::AhoCorasick,
    /// Matched exactly: what the secret looks like inside base64 text at each of
    /// the three alignments it can have there (so inside `SID:secret` too).
    exact: aho_corasick::AhoCorasick,
    /// The length of the shortest spelling: a shorter text holds none (and
    /// nothing is searched for a secret too short to look for).
    shortest: usize,
}

impl Spellings {
    /// Secrets shorter than this are not looked for: they would match by chance.
    const MIN_LEN: usize = 4;

    /// Fails only for a secret too large for the search automaton (hundreds of MB):
    /// refused rather than left unredacted.
    fn of(secret: &str) -> anyhow::Result<Spellings> {
        if secret.len() < Self::MIN_LEN {
            return Ok(Spellings {
                folded: aho_corasick::AhoCorasick::new(Vec::<String>::new())?,
                exact: aho_corasick::AhoCorasick::new(Vec::<String>::new())?,
                shortest: usize::MAX,
            });
        }
        let folded = [
            secret.to_owned(),
            percent_encoded(secret),
            form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            // Inside a JSON string, as a server that escapes `/` writes it.
            json_escaped(secret),
        ];
        let mut exact = Vec::new();
        for offset in 0..3 {
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE,
            ] {
                if let Some(core) = base64_core(engine, secret.as_bytes(), offset)
                    && core.len() >= Self::MIN_LEN
                {
                    exact.push(core);
                }
            }
        }
        let shortest = folded
            .iter()
            .chain(&exact)
            .map(String::len)
            .min()
            .unwrap_or(usize::MAX);
        let build = |patterns: &[String], ignore_case: bool| {
            aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(ignore_case)
                .build(patterns)
        };
        Ok(Spellings {
            folded: build(&folded, true)?,
            exact: build(&exact, false)?,
            shortest,
        })
    }

    fn holds_any(&self, text: &str) -> bool {
        text.len() >= self.shortest
            && [&self.folded, &self.exact]
                .iter()
                .any(|automaton| automaton.is_match(text))
    }

    fn redact(&self, text: &str) -> String {
        // Most texts (a message id, a status) are shorter than any spelling: no
        // search, no allocation beyond the copy.
        if text.len() < self.shortest {
            return text.to_owned();
        }
        // Every match of every spelling, overlapping ones too, with ASCII case
        // ignored where it may have changed: positions in `text` itself.
        let mut hits: Vec<(usize, usize)> = [&self.folded, &self.exact]
            .into_iter()
            .flat_map(|automaton| automaton.find_overlapping_iter(text))
            .map(|m| (m.start(), m.end()))
            .collect();
        if hits.is_empty() {
            return text.to_owned();
        }
        hits.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut spans = hits.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            // Overlapping or touching matches are one redaction.
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            if end <= copied {
                continue;
            }
            out.push_str(&text[copied..start.max(copied)]);
            out.push_str("[redacted]");
            copied = end;
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// `text` as it appears between the quotes of a JSON string from an encoder that
/// escapes `/` (PHP's and Java's do) besides `"` and `\`.
fn json_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '"' | '\\' | '/' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The base64 characters that depend only on `secret`'s bytes when it starts
/// `offset` bytes into the encoded data: whatever comes before and after it, these
/// appear in the encoding.
fn base64_core(
    engine: &base64::engine::GeneralPurpose,
    secret: &[u8],
    offset: usize,
) -> Option<String> {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(secret);
    let encoded = engine.encode(&padded);
    // Characters are 6 bits each: the first whole one after the `offset` bytes, up
    // to the last whole one before the secret ends.
    let start = (offset * 8).div_ceil(6);
    let end = ((offset + secret.len()) * 8) / 6;
    encoded.get(start..end).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str) -> Secret {
        Secret::new(value, "test").unwrap()
    }

    #[test]
    fn every_spelling_is_redacted() {
        let s = secret("AbC/de f+gh12");
        for echoed in [
            "AbC/de f+gh12",
            "abc/de f+gh12",
            "ABC/DE F+GH12",
            "AbC%2Fde%20f%2Bgh12",
            "abc%2fde%20f%2bgh12",
            "AbC%2Fde+f%2Bgh12",
            r"AbC\/de f+gh12",
        ] {
            assert_eq!(
                s.redact(&format!("token={echoed}; end")),
                "token=[redacted]; end",
                "{echoed}"
            );
        }
    }

    #[test]
    fn a_token_where_a_variable_name_belongs_is_not_shown() {
        assert_eq!(variable_shown("WHATSAPP_TOKEN"), "WHATSAPP_TOKEN");
        assert_eq!(
            variable_shown("TWILIO_API_KEY_SECRET"),
            "TWILIO_API_KEY_SECRET"
        );
        for token in ["EAAGsupersecret123456", "eaag", "1TOKEN", ""] {
            let shown = variable_shown(token);
            assert!(shown.starts_with("named in the campaign file"), "{token}");
        }
    }

    #[test]
    fn basic_auth_is_redacted_at_any_alignment() {
        let s = secret("0123456789abcdef0123456789abcdef");
        for user in ["AC1", "AC12", "AC123", "SK0123456789abcdef0123456789abcdef"] {
            let header = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:0123456789abcdef0123456789abcdef"));
            let redacted = s.redact(&format!("Basic {header}"));
            assert!(redacted.contains("[redacted]"), "{user}: {redacted}");
            // What is left cannot be decoded back into the secret.
            assert!(
                redacted.len() < header.len(),
                "{user}: {redacted} vs {header}"
            );
        }
        let bare =
            base64::engine::general_purpose::STANDARD.encode("0123456789abcdef0123456789abcdef");
        assert!(s.redact(&bare).contains("[redacted]"));
    }

    #[test]
    fn other_text_is_left_alone() {
        let s = secret("EAAGsecret0token");
        assert_eq!(s.redact("nothing here"), "nothing here");
        assert_eq!(
            s.redact("a EAAGSECRET0TOKEN b eaagsecret0token c"),
            "a [redacted] b [redacted] c"
        );
        assert_eq!(secret("abc").redact("abc"), "abc", "too short to look for");
        // Occurrences that overlap are all covered, not only every other one.
        assert_eq!(secret("abab").redact("ababab x"), "[redacted] x");
        assert_eq!(s.redact_owned("wamid.HBgL".to_owned()), "wamid.HBgL");
        assert_eq!(
            s.redact_owned("id EAAGsecret0TOKEN".to_owned()),
            "id [redacted]"
        );
    }
}
