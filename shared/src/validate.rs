//! The naming and text rules of the protocol, in one place so the server enforces exactly
//! what clients check before sending.
//!
//! Layout:
//! - [`Nick`] and [`RoomName`]: checked newtypes; holding one means the rules were applied.
//! - [`nick_key`] and [`name_skeleton`]: a name's identity (case and compatibility forms
//!   folded) and its confusable class (names that look alike share one).
//! - [`clean_text`]: message text (control and invisible format characters stripped, then
//!   length checked).
//! - [`strip_controls`] and [`clean_reason`]: other free text that is relayed to others.
//!
//! Names that cannot be faked: a name is NFKC-normalised (so fullwidth `ＡＬＩＣＥ` is
//! `ALICE`), compared without case, refused when it mixes scripts beyond Unicode TS #39's
//! "highly restrictive" level (Latin with Cyrillic or Greek; Latin with Han, kana or Hangul
//! is fine) or holds a character TS #39 restricts from identifiers, and it collides with
//! every name of the same confusable skeleton (`аlice` with a Cyrillic а is `alice`).

use std::borrow::Cow;
use std::fmt;

use thiserror::Error;
use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// Longest nick or room name, in code points after NFKC normalisation.
pub const MAX_NAME_CHARS: usize = 32;

/// Longest `reason` (part, quit) kept, in bytes; longer ones are cut at a char boundary.
pub const MAX_REASON_LEN: usize = 200;

/// Why a nick or room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// Nothing left after normalisation.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_NAME_CHARS`].
    #[error("must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// A character outside letters, digits, `-` and `_`.
    #[error("{0:?} is not allowed: use letters, digits, '-' and '_'")]
    BadChar(char),
    /// A letter Unicode (TS #39) restricts from identifiers: invisible, obsolete, or made
    /// to look like another.
    #[error("{0:?} is not allowed in names: it is invisible, obsolete or easily mistaken")]
    Restricted(char),
    /// Scripts mixed in a way that can imitate another name (Latin with Cyrillic, say).
    #[error(
        "mixes scripts that can imitate other names (Latin with Han, kana or Hangul is \
         fine; Latin with Cyrillic or Greek is not)"
    )]
    MixedScripts,
}

/// Why a message text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextError {
    /// Empty or only whitespace after stripping control characters.
    #[error("message is empty")]
    Empty,
    /// Longer than the limit after stripping.
    #[error("message is {len} bytes; the limit is {max}")]
    TooLong {
        /// Length in bytes of UTF-8, after stripping.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

/// Checks an NFKC-normalised name.
fn check_name(name: &str) -> Result<(), NameError> {
    let mut count = 0;
    for c in name.chars() {
        if !(c.is_alphanumeric() || c == '-' || c == '_') {
            return Err(NameError::BadChar(c));
        }
        if !c.identifier_allowed() {
            return Err(NameError::Restricted(c));
        }
        count += 1;
    }
    match count {
        0 => Err(NameError::Empty),
        n if n > MAX_NAME_CHARS => Err(NameError::TooLong),
        _ if !name.check_restriction_level(RestrictionLevel::HighlyRestrictive) => {
            Err(NameError::MixedScripts)
        }
        _ => Ok(()),
    }
}

/// A valid nick: 1–32 letters, digits, `-` or `_` (Unicode sense), NFKC-normalised, in
/// scripts that cannot imitate another name (see the module's doc).
///
/// Display keeps the user's case. Identity is [`Nick::key`], so `Alice` and `alice` are one
/// nick; uniqueness is [`Nick::skeleton`], so neither can be online while `аlice` (with a
/// Cyrillic а) is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nick(String);

impl Nick {
    /// Applies the nick rules.
    ///
    /// # Errors
    /// [`NameError`] says which rule the input breaks.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let nfkc: String = raw.nfkc().collect();
        check_name(&nfkc)?;
        Ok(Self(nfkc))
    }

    /// The nick as the user chose it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive identity of the nick (Unicode lowercase).
    pub fn key(&self) -> String {
        nick_key(&self.0)
    }

    /// The nick's confusable class: two nicks that look alike have the same skeleton, and
    /// only one of them can be online or registered.
    pub fn skeleton(&self) -> String {
        name_skeleton(&self.0)
    }
}

/// The case-insensitive identity of a nick-like string (NFKC, lowercased), for lookups by
/// what a user typed.
pub fn nick_key(nick: &str) -> String {
    nick.nfkc().flat_map(char::to_lowercase).nfkc().collect()
}

/// The confusable class of a name: names that look alike, such as `alice`, `ALICE`,
/// `ＡＬＩＣＥ`, `аlice` with a Cyrillic а, or `ΑΒΟ` in Greek capitals and `ABO`, share it.
///
/// TS #39's skeleton maps each character to the prototype it looks like, but it is not
/// case-blind: it sees Greek `Β` as `B` and Greek `β` as `ß`, and `rn` as `m` only in lower
/// case. So the name is skeletonised in upper case (capitals imitate capitals), lowered,
/// and skeletonised again (small letters imitate small letters), then lowered.
pub fn name_skeleton(name: &str) -> String {
    let upper = nick_key(name).to_uppercase();
    let lower: String = unicode_security::skeleton(&upper)
        .flat_map(char::to_lowercase)
        .collect();
    unicode_security::skeleton(&lower)
        .flat_map(char::to_lowercase)
        .collect()
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Nick {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A valid room name: the nick rules, without a leading `#`, lowercase.
///
/// Rooms are case-insensitive, so the canonical (lowercase) form is the only one kept; a
/// server finds rooms by [`RoomName::skeleton`], so a look-alike name leads to the room it
/// imitates rather than to a second one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Applies the room rules: strips one leading `#`, then checks and lowercases.
    ///
    /// # Errors
    /// [`NameError`] says which rule the input breaks.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let raw = raw.strip_prefix('#').unwrap_or(raw);
        let nfkc: String = raw.nfkc().collect();
        check_name(&nfkc)?;
        Ok(Self(nick_key(&nfkc)))
    }

    /// The canonical (lowercase) name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The room's confusable class (see [`name_skeleton`]).
    pub fn skeleton(&self) -> String {
        name_skeleton(&self.0)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Invisible characters that can hide or reorder text, removed from everything relayed:
/// the Unicode format characters (`Cf`) and the Hangul fillers, which render as nothing.
///
/// - bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) and marks
///   (U+200E, U+200F, U+061C): they reorder what a terminal shows ("Trojan Source");
/// - zero-width space, word joiner and invisible operators (U+200B, U+2060–U+2064), the
///   deprecated format controls U+206A–U+206F, the BOM (U+FEFF), the soft hyphen (U+00AD),
///   the Mongolian vowel separator (U+180E), interlinear annotations (U+FFF9–U+FFFB),
///   Arabic, Syriac, Kaithi, Egyptian, shorthand and musical format controls, and the
///   language tag U+E0001;
/// - the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0 (letters that draw nothing).
///
/// Kept, because emoji and scripts need them: ZWNJ (U+200C), ZWJ (U+200D), the variation
/// selectors (not format characters), and the tag characters U+E0020–U+E007F that spell
/// subdivision flags such as Scotland's.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200B}'),
    ('\u{200E}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
];

/// Whether `c` is one of the invisible characters every relayed text loses (see
/// [`INVISIBLE`]); clients drop them before drawing too.
pub fn is_invisible(c: char) -> bool {
    // Below U+00AD there is nothing to find: one comparison for ASCII text; a binary search
    // of the sorted ranges for the rest.
    if c < '\u{00AD}' {
        return false;
    }
    let i = INVISIBLE.partition_point(|&(_, hi)| hi < c);
    INVISIBLE.get(i).is_some_and(|&(lo, _)| lo <= c)
}

fn is_stripped(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_invisible(c)
}

/// Removes every control character (Unicode `Cc`: C0, DEL, C1) except `\n` and `\t`, and
/// every invisible character that can hide or reorder text (see [`INVISIBLE`]).
///
/// This is what keeps one client from sending terminal escape sequences, or bidi overrides
/// that rearrange a line, to another: line clients read relayed text raw in their
/// terminals. Borrows when there is nothing to strip, which is the common case.
pub fn strip_controls(s: &str) -> Cow<'_, str> {
    if s.chars().any(is_stripped) {
        Cow::Owned(s.chars().filter(|&c| !is_stripped(c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// Applies the text rules: strip control characters, then refuse empty (or whitespace-only)
/// text and text over `max_len` bytes. Text is never truncated: a cut message says
/// something its author did not.
///
/// # Errors
/// [`TextError`] says which rule the input breaks.
pub fn clean_text(raw: &str, max_len: usize) -> Result<String, TextError> {
    let text = strip_controls(raw);
    if text.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if text.len() > max_len {
        return Err(TextError::TooLong {
            len: text.len(),
            max: max_len,
        });
    }
    Ok(text.into_owned())
}

/// Cleans a free-text reason (part, quit): controls stripped, newlines and tabs flattened to
/// spaces, cut to [`MAX_REASON_LEN`] bytes; `None` when nothing is left.
///
/// Unlike message text a reason may be shortened: it is a label, not something a person said
/// to others.
pub fn clean_reason(raw: Option<&str>) -> Option<String> {
    let s: String = strip_controls(raw?)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut end = s.len().min(MAX_REASON_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(s[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks_accept_unicode_letters_digits_dash_underscore() {
        for ok in [
            "alice",
            "Bob_2",
            "x-y",
            "小明",
            "たなか",
            "Ünal",
            "d",
            "١٢٣",
        ] {
            assert_eq!(Nick::parse(ok).unwrap().as_str(), ok, "{ok}");
        }
    }

    #[test]
    fn nicks_refuse_spaces_symbols_emoji_and_empty() {
        assert_eq!(Nick::parse(""), Err(NameError::Empty));
        assert_eq!(Nick::parse("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(Nick::parse("😀"), Err(NameError::BadChar('😀')));
        assert_eq!(Nick::parse("a#b"), Err(NameError::BadChar('#')));
        assert_eq!(Nick::parse("a\u{1b}"), Err(NameError::BadChar('\u{1b}')));
    }

    #[test]
    fn nick_length_counts_code_points_not_bytes() {
        let cjk32 = "字".repeat(32); // 96 bytes, 32 characters
        assert!(Nick::parse(&cjk32).is_ok());
        assert_eq!(Nick::parse(&"字".repeat(33)), Err(NameError::TooLong));
        assert_eq!(Nick::parse(&"a".repeat(33)), Err(NameError::TooLong));
    }

    #[test]
    fn nicks_are_normalised_and_compared_without_case() {
        // "e" + combining acute (2 code points) is stored as the single "é".
        let decomposed = "Jose\u{301}";
        let nick = Nick::parse(decomposed).unwrap();
        assert_eq!(nick.as_str(), "José");
        assert_eq!(nick.key(), Nick::parse("JOSÉ").unwrap().key());
        assert_eq!(Nick::parse("Alice").unwrap().key(), "alice");
        assert_eq!(nick_key("ÄRGER"), "ärger");
    }

    #[test]
    fn look_alike_nicks_share_one_identity_or_skeleton() {
        // Fullwidth is the same nick once normalised, and shown as plain letters.
        assert_eq!(Nick::parse("ＡＬＩＣＥ").unwrap().as_str(), "ALICE");
        let alice = Nick::parse("alice").unwrap();
        assert_eq!(Nick::parse("ＡＬＩＣＥ").unwrap().key(), alice.key());
        // All-Cyrillic and all-Greek look-alikes are single-script, hence valid names, but
        // they have the skeleton of the Latin name they imitate.
        let scope = Nick::parse("scope").unwrap();
        let cyrillic = Nick::parse("ѕсоре").unwrap();
        assert_eq!(cyrillic.skeleton(), scope.skeleton());
        let greek = Nick::parse("ΑΒΟ").unwrap();
        assert_eq!(greek.skeleton(), Nick::parse("ABO").unwrap().skeleton());
        // In Latin alone, what TS #39 lists as confusable: rn and m, 0 and O.
        assert_eq!(name_skeleton("rnoney"), name_skeleton("money"));
        assert_eq!(name_skeleton("b0b"), name_skeleton("BOB"));
        assert_ne!(name_skeleton("bob"), alice.skeleton());
    }

    #[test]
    fn names_mixing_latin_with_cyrillic_or_greek_are_refused_but_cjk_mixes_are_fine() {
        // A Cyrillic а in a Latin name, a Greek ο in another.
        assert_eq!(Nick::parse("\u{430}lice"), Err(NameError::MixedScripts));
        assert_eq!(Nick::parse("b\u{3BF}b"), Err(NameError::MixedScripts));
        assert_eq!(RoomName::parse("l\u{43E}bby"), Err(NameError::MixedScripts));
        for ok in [
            "小明",
            "たなか",
            "タナカ",
            "김철수",
            "alice小明",
            "bob_たなか",
            "テスト2",
        ] {
            assert!(Nick::parse(ok).is_ok(), "{ok}");
        }
        // A Hangul filler is a letter that draws nothing (NFKC makes U+3164 U+1160).
        for filler in ["a\u{3164}", "\u{115F}", "b\u{FFA0}"] {
            assert!(
                matches!(Nick::parse(filler), Err(NameError::Restricted(_))),
                "{filler:?}"
            );
        }
    }

    #[test]
    fn rooms_strip_hash_and_lowercase() {
        assert_eq!(RoomName::parse("#Rust").unwrap().as_str(), "rust");
        assert_eq!(RoomName::parse("中文").unwrap().as_str(), "中文");
        assert_eq!(RoomName::parse("#"), Err(NameError::Empty));
        assert_eq!(RoomName::parse("##a"), Err(NameError::BadChar('#')));
        assert_eq!(RoomName::parse("a.b"), Err(NameError::BadChar('.')));
    }

    #[test]
    fn text_strips_controls_but_keeps_newline_tab_and_emoji() {
        let raw = "red \u{1b}[31mtext\u{7}\r\n\tnext 👋🏽 \u{7f}\u{9b}31m";
        assert_eq!(
            clean_text(raw, 4096).unwrap(),
            "red [31mtext\n\tnext 👋🏽 31m"
        );
        assert!(matches!(strip_controls("plain 你好"), Cow::Borrowed(_)));
    }

    #[test]
    fn text_loses_bidi_controls_and_invisible_characters_but_keeps_emoji_joiners() {
        // "Trojan Source": an override and isolates that reorder a line.
        let raw = "pay \u{202E}01$\u{202C} to \u{2066}bob\u{2069}\u{200B}\u{FEFF}\u{3164}";
        assert_eq!(clean_text(raw, 4096).unwrap(), "pay 01$ to bob");
        for c in [
            '\u{202A}',
            '\u{202D}',
            '\u{2067}',
            '\u{200E}',
            '\u{061C}',
            '\u{E0001}',
        ] {
            assert!(is_stripped(c), "{c:?} passes");
        }
        // ZWJ sequences, ZWNJ in Persian, variation selectors and a tag flag survive.
        for kept in [
            "👩\u{200D}💻",
            "می\u{200C}خواهم",
            "☺\u{FE0F}",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            "你好，世界",
        ] {
            assert_eq!(clean_text(kept, 4096).unwrap(), kept);
        }
        // Invisible only is empty.
        assert_eq!(clean_text("\u{200B}\u{2060}", 10), Err(TextError::Empty));
        assert_eq!(clean_reason(Some("\u{202E}evil")), Some("evil".into()));
    }

    #[test]
    fn text_refuses_empty_and_too_long_without_truncating() {
        assert_eq!(clean_text("", 10), Err(TextError::Empty));
        assert_eq!(clean_text(" \n\u{1b}\t", 10), Err(TextError::Empty));
        assert_eq!(
            clean_text("你好你好", 10),
            Err(TextError::TooLong { len: 12, max: 10 })
        );
        // The limit applies after stripping: escapes do not count.
        assert_eq!(clean_text("\u{1b}\u{1b}abc", 3).unwrap(), "abc");
    }

    #[test]
    fn reasons_are_flattened_and_cut_at_char_boundaries() {
        assert_eq!(
            clean_reason(Some("  bye\nall\u{1b} ")),
            Some("bye all".into())
        );
        assert_eq!(clean_reason(Some(" \u{7} ")), None);
        assert_eq!(clean_reason(None), None);
        let long = "字".repeat(100); // 300 bytes
        let cut = clean_reason(Some(&long)).unwrap();
        assert!(cut.len() <= MAX_REASON_LEN && cut.chars().all(|c| c == '字'));
    }
}

/// Property tests of the rules on arbitrary Unicode.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_clean_text_never_passes_controls_or_exceeds_the_limit(raw in "\\PC*|.*", max in 1usize..64) {
            if let Ok(text) = clean_text(&raw, max) {
                prop_assert!(text.len() <= max);
                prop_assert!(!text.chars().any(is_stripped));
                prop_assert!(!text.trim().is_empty());
            }
        }

        #[test]
        fn fuzz_names_are_stable_under_reparsing(raw in ".{0,40}") {
            if let Ok(nick) = Nick::parse(&raw) {
                prop_assert_eq!(Nick::parse(nick.as_str()).unwrap(), nick.clone());
                prop_assert!(nick.as_str().chars().count() <= MAX_NAME_CHARS);
            }
            if let Ok(room) = RoomName::parse(&raw) {
                prop_assert_eq!(RoomName::parse(room.as_str()).unwrap(), room);
            }
        }
    }
}
