//! Which replies are opt-outs: a text that is only an opt-out keyword, or a
//! quick-reply button whose payload was declared an opt-out.

use std::collections::HashSet;

/// Keywords recognised without configuration: English, Spanish and Portuguese, the
/// languages of the markets wacampaign is used in.
pub const DEFAULT_KEYWORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "QUIT",
    "END",
    "CANCEL",
    "OPTOUT",
    "OPT OUT",
    "BAJA",
    "DAR DE BAJA",
    "ALTO",
    "CANCELAR",
    "PARAR",
    "SAIR",
];

/// The quick-reply payload recognised without configuration.
pub const DEFAULT_PAYLOADS: &[&str] = &["STOP"];

/// The keywords and button payloads that opt a person out. Both are matched after
/// trimming and case folding; configured ones are added to the defaults, never
/// replace them, so configuring one cannot silently stop honouring `STOP`.
#[derive(Debug, Clone)]
pub struct OptOutRules {
    keywords: HashSet<String>,
    payloads: HashSet<String>,
}

impl Default for OptOutRules {
    fn default() -> Self {
        OptOutRules::new(std::iter::empty::<&str>(), std::iter::empty::<&str>())
    }
}

impl OptOutRules {
    pub fn new<K, P>(
        keywords: impl IntoIterator<Item = K>,
        payloads: impl IntoIterator<Item = P>,
    ) -> OptOutRules
    where
        K: AsRef<str>,
        P: AsRef<str>,
    {
        let fold_all = |defaults: &[&str], extra: Vec<String>| {
            defaults
                .iter()
                .map(|k| fold(k))
                .chain(extra.iter().map(|k| fold(k)))
                .filter(|k| !k.is_empty())
                .collect::<HashSet<_>>()
        };
        OptOutRules {
            keywords: fold_all(
                DEFAULT_KEYWORDS,
                keywords
                    .into_iter()
                    .map(|k| k.as_ref().to_owned())
                    .collect(),
            ),
            payloads: fold_all(
                DEFAULT_PAYLOADS,
                payloads
                    .into_iter()
                    .map(|p| p.as_ref().to_owned())
                    .collect(),
            ),
        }
    }

    /// Whether a whole text message is an opt-out keyword ("Stop", " baja. ").
    /// A sentence that merely contains one ("don't stop") is not.
    pub fn is_opt_out_text(&self, text: &str) -> bool {
        self.keywords.contains(&fold(text))
    }

    /// Whether a quick-reply button's payload is a declared opt-out payload.
    pub fn is_opt_out_payload(&self, payload: &str) -> bool {
        self.payloads.contains(&fold(payload))
    }

    /// The keywords, folded and sorted, for the startup message.
    pub fn keywords(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.keywords.iter().map(String::as_str).collect();
        all.sort_unstable();
        all
    }
}

/// Trims whitespace and the punctuation people type around a keyword (`STOP.`,
/// `¡Baja!`), collapses inner whitespace, and folds case.
fn fold(text: &str) -> String {
    let trimmed = text.trim_matches(|c: char| {
        c.is_whitespace() || c.is_ascii_punctuation() || matches!(c, '¡' | '¿' | '…')
    });
    let words: Vec<&str> = trimmed.split_whitespace().collect();
    words.join(" ").to_lowercase()
}

/// Records the quick-reply payloads `campaign_id` declared as opt-outs, so the
/// webhook server honours a tap on them. A payload already declared keeps its
/// first campaign.
pub fn declare(
    conn: &rusqlite::Connection,
    campaign_id: &str,
    payloads: &[String],
    now: &str,
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO opt_out_payloads (payload, campaign_id, recorded_at) VALUES (?1, ?2, ?3)",
    )?;
    for payload in payloads {
        insert.execute(rusqlite::params![payload.trim(), campaign_id, now])?;
    }
    Ok(())
}

/// The campaign that declared `payload` an opt-out, if one did.
pub fn declared_by(conn: &rusqlite::Connection, payload: &str) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension as _;
    conn.prepare_cached("SELECT campaign_id FROM opt_out_payloads WHERE payload = ?1")?
        .query_row(rusqlite::params![payload.trim()], |r| r.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_messages_after_trimming_and_folding() {
        let rules = OptOutRules::default();
        for text in [
            "STOP", "stop", " Stop ", "Stop.", "¡BAJA!", "cancelar", "Sair", "quit\n", "END",
        ] {
            assert!(rules.is_opt_out_text(text), "{text:?}");
        }
        for text in ["please stop", "don't stop", "stopped", "", "  ", "hola"] {
            assert!(!rules.is_opt_out_text(text), "{text:?}");
        }
    }

    #[test]
    fn configured_keywords_and_payloads_add_to_the_defaults() {
        let rules = OptOutRules::new(["basta", "NO MAS"], ["UNSUB_PROMO"]);
        assert!(rules.is_opt_out_text("Basta"));
        assert!(rules.is_opt_out_text("no  más") == rules.is_opt_out_text("no más"));
        assert!(rules.is_opt_out_text("no mas"));
        assert!(rules.is_opt_out_text("STOP"), "defaults stay");
        assert!(rules.is_opt_out_payload("unsub_promo"));
        assert!(rules.is_opt_out_payload("STOP"));
        assert!(!rules.is_opt_out_payload("Unsubscribe"));
    }
}
