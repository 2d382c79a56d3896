//! Which replies are opt-outs: a text that is only an opt-out keyword, or a
//! quick-reply button whose payload was declared an opt-out.

use std::collections::HashSet;

/// Keywords recognised without configuration, by language. A text that is only
/// one of these (after [`fold`]) opts the sender out of everything; a text that
/// merely contains one is a [`Reading::Possible`] opt-out for a person to judge.
///
/// English holds every word the US TCPA revocation rule (2024) makes conclusive:
/// STOP, QUIT, END, REVOKE, OPT OUT, CANCEL, UNSUBSCRIBE. The others are the
/// languages of WhatsApp's largest markets; accents are ignored when matching, so
/// `ARRÊT` and `ARRET` are one keyword, and Devanagari, Arabic and Cyrillic are
/// matched as written.
pub const DEFAULT_KEYWORDS_BY_LANGUAGE: &[(&str, &[&str])] = &[
    (
        "English",
        &[
            "STOP",
            "STOPALL",
            "UNSUBSCRIBE",
            "QUIT",
            "END",
            "CANCEL",
            "REVOKE",
            "OPTOUT",
            "OPT OUT",
        ],
    ),
    (
        "Spanish",
        &[
            "BAJA",
            "DAR DE BAJA",
            "ALTO",
            "CANCELAR",
            "PARAR",
            "DETENER",
        ],
    ),
    ("Portuguese", &["SAIR", "PARAR", "CANCELAR", "DESCADASTRAR"]),
    ("Hindi (Latin)", &["BAND", "BAND KARO", "RUKO", "MAT BHEJO"]),
    (
        "Hindi (Devanagari)",
        &["बंद", "बन्द", "बंद करो", "रुको", "मत भेजो"],
    ),
    ("Indonesian", &["BERHENTI", "BATAL", "BERHENTI LANGGANAN"]),
    (
        "Arabic",
        &[
            "توقف",
            "إيقاف",
            "ايقاف",
            "إلغاء",
            "الغاء",
            "إلغاء الاشتراك",
            "الغاء الاشتراك",
        ],
    ),
    ("Turkish", &["DUR", "İPTAL", "ABONELİKTEN ÇIK"]),
    ("German", &["STOPP", "ABMELDEN", "ABBESTELLEN", "ENDE"]),
    (
        "French",
        &["ARRÊT", "ARRÊTER", "DÉSABONNER", "DÉSINSCRIRE", "ANNULER"],
    ),
    (
        "Italian",
        &["BASTA MESSAGGI", "CANCELLA", "DISISCRIVIMI", "ANNULLA"],
    ),
    ("Russian", &["СТОП", "ОТПИСАТЬСЯ", "ОТПИСКА", "ОТМЕНА"]),
];

/// Phrases that read like an opt-out in a longer text ("no me manden más", "please
/// remove me"): such a text is a [`Reading::Possible`] opt-out, never acted on
/// automatically.
pub const POSSIBLE_PHRASES: &[&str] = &[
    "remove me",
    "stop sending",
    "stop messaging",
    "don't message",
    "dont message",
    "do not message",
    "no more messages",
    "no me manden",
    "no me envien",
    "no mas mensajes",
    "dejen de",
    "nao quero",
    "parem de",
    "nao me mandem",
    "mat bhejo",
    "मत भेजो",
    "jangan kirim",
    "lutfen gondermeyin",
    "nicht mehr schreiben",
    "ne plus recevoir",
    "non scrivetemi",
    "не пишите",
];

/// A text reply that is a keyword only when nothing else is in it beyond this many
/// words is looked at as a possible opt-out.
const POSSIBLE_MAX_WORDS: usize = 8;

/// Every default keyword, whatever the language.
pub fn default_keywords() -> impl Iterator<Item = &'static str> {
    DEFAULT_KEYWORDS_BY_LANGUAGE
        .iter()
        .flat_map(|(_, words)| words.iter().copied())
}

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
                &default_keywords().collect::<Vec<_>>(),
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

    /// What a text reply says: an opt-out, possibly one (a person decides), or
    /// neither.
    pub fn read_text(&self, text: &str) -> Reading {
        let folded = fold(text);
        if folded.is_empty() {
            return Reading::Other;
        }
        if self.keywords.contains(&folded) {
            return Reading::OptOut;
        }
        let padded = format!(" {folded} ");
        if let Some(phrase) = POSSIBLE_PHRASES
            .iter()
            .map(|p| fold(p))
            .find(|p| padded.contains(&format!(" {p} ")))
        {
            return Reading::Possible(format!("reads like an opt-out (`{phrase}`)"));
        }
        let words = folded.split(' ').count();
        if words <= POSSIBLE_MAX_WORDS {
            let mut found: Vec<&String> = self
                .keywords
                .iter()
                .filter(|k| padded.contains(&format!(" {k} ")))
                .collect();
            found.sort();
            if let Some(keyword) = found.last() {
                return Reading::Possible(format!("contains the opt-out keyword `{keyword}`"));
            }
        }
        Reading::Other
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

/// What a text reply says about opting out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Only an opt-out keyword: recorded in the ledger.
    OptOut,
    /// Not a bare keyword but reads like one ("please stop", "no me manden más"):
    /// kept for a person to decide, with why.
    Possible(String),
    Other,
}

/// The form keywords and replies are compared in:
///
/// 1. NFKC (full-width `ＳＴＯＰ`, ligatures and compatibility spaces become plain);
/// 2. Unicode full case folding (`STOPP` and `stopp`, `ß` and `ss`);
/// 3. accents dropped from Latin letters only (`ARRÊT` = `arret`, `İPTAL` =
///    `iptal`), so the marks that spell Devanagari, Arabic or Cyrillic words (a
///    virama, an anusvara, the breve of `й`) are kept;
/// 4. what surrounds the words trimmed (whitespace of any script, punctuation,
///    emoji), inner runs of spaces, hyphens and underscores made one space,
///    zero-width spaces and the Arabic tatweel removed.
pub fn fold(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;

    let folded = caseless::default_case_fold_str(&text.nfkc().collect::<String>());
    // Decomposed, a Latin letter's accent is a combining mark after it: dropped.
    let mut stripped = String::with_capacity(folded.len());
    let mut after_latin = false;
    for c in folded.nfd() {
        if is_combining_mark(c) {
            if !after_latin {
                stripped.push(c);
            }
            continue;
        }
        after_latin = is_latin(c);
        match c {
            // Turkish dotless i: `IPTAL` typed on a Turkish keyboard.
            'ı' => stripped.push('i'),
            // Zero-width space, word joiner, BOM, Arabic tatweel: no letters.
            '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{0640}' => {}
            '-' | '_' => stripped.push(' '),
            _ => stripped.push(c),
        }
    }
    let recomposed: String = stripped.nfc().collect();
    let is_word_char =
        |c: char| c.is_alphanumeric() || (is_combining_mark(c) && !is_variation_selector(c));
    recomposed
        .split(|c: char| c.is_whitespace())
        .map(|word| word.trim_matches(|c: char| !is_word_char(c)))
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Latin letters, whose accents [`fold`] ignores.
fn is_latin(c: char) -> bool {
    c.is_ascii_alphabetic()
        || matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' | '\u{2C60}'..='\u{2C7F}' | '\u{A720}'..='\u{A7FF}')
}

/// Emoji presentation selectors are marks, but belong to the emoji they follow.
fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
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

    fn opts_out(text: &str) -> bool {
        OptOutRules::default().is_opt_out_text(text)
    }

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
    fn every_tcpa_revocation_word_is_conclusive() {
        for word in [
            "STOP",
            "QUIT",
            "END",
            "REVOKE",
            "OPT OUT",
            "CANCEL",
            "UNSUBSCRIBE",
        ] {
            assert!(opts_out(word), "{word}");
            assert!(opts_out(&word.to_lowercase()), "{word}");
        }
        assert!(opts_out("Revoke."));
        assert!(opts_out("opt-out"));
    }

    #[test]
    fn hindi_in_latin_and_devanagari_script() {
        for text in [
            "Band karo",
            "RUKO",
            "mat bhejo",
            "बंद",
            "बन्द",
            "बंद करो",
            " रुको। ",
        ] {
            assert!(opts_out(text), "{text:?}");
        }
        // The marks spell the word: without the anusvara (or the matra) it is
        // another word, so they must not be stripped as a Latin accent is.
        assert_ne!(fold("बंद"), "बद");
        assert!(!opts_out("बद"));
        assert!(!opts_out("रक"));
        assert_eq!(fold("रुको"), "रुको");
    }

    #[test]
    fn indonesian() {
        assert!(opts_out("Berhenti"));
        assert!(opts_out("batal!"));
        assert!(opts_out("berhenti langganan"));
    }

    #[test]
    fn arabic_as_written_with_tatweel_ignored() {
        assert!(opts_out("توقف"));
        assert!(opts_out("إلغاء الاشتراك"));
        assert!(opts_out("الغاء"));
        assert!(opts_out("تـوقـف"), "the tatweel only stretches the line");
        assert!(opts_out("توقف."));
    }

    #[test]
    fn turkish_with_and_without_dotted_capitals() {
        for text in [
            "DUR",
            "İPTAL",
            "iptal",
            "IPTAL",
            "Abonelikten çık",
            "ABONELIKTEN CIK",
        ] {
            assert!(opts_out(text), "{text:?}");
        }
    }

    #[test]
    fn german_with_sharp_s_and_case_folding() {
        assert!(opts_out("Stopp"));
        assert!(opts_out("ABMELDEN"));
        assert!(opts_out("abbestellen"));
        assert_eq!(fold("STRAẞE"), fold("strasse"), "full case folding");
    }

    #[test]
    fn french_with_accents_ignored() {
        for text in [
            "ARRÊT",
            "arret",
            "Arrêter",
            "désabonner",
            "DESINSCRIRE",
            "annuler",
        ] {
            assert!(opts_out(text), "{text:?}");
        }
    }

    #[test]
    fn italian() {
        assert!(opts_out("Cancella"));
        assert!(opts_out("disiscrivimi"));
        assert!(opts_out("annulla"));
    }

    #[test]
    fn russian_in_cyrillic_with_its_marks_kept() {
        assert!(opts_out("Стоп"));
        assert!(opts_out("ОТПИСАТЬСЯ"));
        assert!(opts_out("отписка!"));
        // й is и with a breve: a letter of its own in Russian, not an accent.
        assert_ne!(fold("й"), fold("и"));
    }

    #[test]
    fn keywords_wrapped_in_punctuation_emoji_or_other_spaces() {
        for text in [
            "🛑 STOP 🛑",
            "STOP🙅\u{200D}♀\u{FE0F}",
            "👍🏽stop",
            "\u{3000}STOP\u{3000}",
            "\u{00A0}baja\u{202F}",
            "«STOP»",
            "（ＳＴＯＰ）",
            "\u{200B}STOP\u{200B}",
            "dar\u{00A0}de\u{2003}baja",
            "STOP!!!",
            "...stop...",
            "¿¡CANCELAR!?",
        ] {
            assert!(opts_out(text), "{text:?}");
        }
        for text in ["🛑", "!!!", "\u{3000}"] {
            assert!(!opts_out(text), "{text:?}");
        }
    }

    #[test]
    fn replies_that_read_like_an_opt_out_need_a_person() {
        let rules = OptOutRules::default();
        for text in [
            "please stop",
            "No me manden más",
            "STOP sending me these",
            "Quero sair por favor",
            "बंद करो please",
            "Please remove me from this list, I never asked for any of it at all",
        ] {
            assert!(
                matches!(rules.read_text(text), Reading::Possible(_)),
                "{text:?}: {:?}",
                rules.read_text(text)
            );
        }
        assert_eq!(rules.read_text("STOP"), Reading::OptOut);
        for text in ["hola", "gracias, nos vemos el lunes", "ok 👍", ""] {
            assert_eq!(rules.read_text(text), Reading::Other, "{text:?}");
        }
        let Reading::Possible(why) = rules.read_text("no me manden más") else {
            unreachable!()
        };
        assert!(why.contains("no me manden"), "{why}");
    }

    proptest::proptest! {
        /// Whatever punctuation, emoji and spaces of any script surround a keyword,
        /// it is still one; and no text makes the matcher panic.
        #[test]
        fn a_keyword_wrapped_in_anything_but_letters_is_still_one(
            before in "[ \u{00A0}\u{2003}\u{3000}\u{200B}.,;:!?¡¿«»()\\[\\]\"'*~🛑🙏👍🏽❤\u{FE0F}\u{200D}-]{0,6}",
            after in "[ \u{00A0}\u{2003}\u{3000}\u{200B}.,;:!?¡¿«»()\\[\\]\"'*~🛑🙏👍🏽❤\u{FE0F}\u{200D}-]{0,6}",
            index in 0usize..64,
            noise in "\\PC{0,40}",
        ) {
            let rules = OptOutRules::default();
            let keywords: Vec<&str> = default_keywords().collect();
            let keyword = keywords[index % keywords.len()];
            let text = format!("{before}{keyword}{after}");
            proptest::prop_assert!(rules.is_opt_out_text(&text), "{:?}", text);
            let _ = rules.read_text(&noise);
            let _ = fold(&noise);
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
