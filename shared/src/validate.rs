//! The naming and text rules of the protocol, in one place so the server enforces exactly
//! what clients check before sending.
//!
//! Layout:
//! - [`Nick`] and [`RoomName`]: checked newtypes; holding one means the rules were applied.
//! - [`clean_text`]: message text (control characters stripped, then length checked).
//! - [`strip_controls`] and [`clean_reason`]: other free text that is relayed to others.

use std::borrow::Cow;
use std::fmt;

use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

/// Longest nick or room name, in code points after NFC normalisation.
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

fn check_name(name: &str) -> Result<(), NameError> {
    let mut count = 0;
    for c in name.chars() {
        if !(c.is_alphanumeric() || c == '-' || c == '_') {
            return Err(NameError::BadChar(c));
        }
        count += 1;
    }
    match count {
        0 => Err(NameError::Empty),
        n if n > MAX_NAME_CHARS => Err(NameError::TooLong),
        _ => Ok(()),
    }
}

/// A valid nick: 1–32 letters, digits, `-` or `_` (Unicode sense), NFC-normalised.
///
/// Display keeps the user's case; uniqueness uses [`Nick::key`], so `Alice` and `alice`
/// cannot both be online.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nick(String);

impl Nick {
    /// Applies the nick rules.
    ///
    /// # Errors
    /// [`NameError`] says which rule the input breaks.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let nfc: String = raw.nfc().collect();
        check_name(&nfc)?;
        Ok(Self(nfc))
    }

    /// The nick as the user chose it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive identity of the nick (Unicode lowercase).
    pub fn key(&self) -> String {
        nick_key(&self.0)
    }
}

/// The case-insensitive identity of a nick-like string, for lookups by what a user typed.
pub fn nick_key(nick: &str) -> String {
    nick.nfc().flat_map(char::to_lowercase).collect()
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

/// A valid room name: the nick alphabet and length, without a leading `#`, lowercase.
///
/// Rooms are case-insensitive, so the canonical (lowercase) form is the only one kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Applies the room rules: strips one leading `#`, then checks and lowercases.
    ///
    /// # Errors
    /// [`NameError`] says which rule the input breaks.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let raw = raw.strip_prefix('#').unwrap_or(raw);
        let nfc: String = raw.nfc().collect();
        check_name(&nfc)?;
        let lower: String = nfc.chars().flat_map(char::to_lowercase).nfc().collect();
        Ok(Self(lower))
    }

    /// The canonical (lowercase) name.
    pub fn as_str(&self) -> &str {
        &self.0
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

fn is_stripped(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// Removes every control character (Unicode `Cc`: C0, DEL, C1) except `\n` and `\t`.
///
/// This is what keeps one client from sending terminal escape sequences to another: line
/// clients read relayed text raw in their terminals. Borrows when there is nothing to strip,
/// which is the common case.
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
    fn nicks_are_nfc_normalised_and_compared_without_case() {
        // "e" + combining acute (2 code points) is stored as the single "é".
        let decomposed = "Jose\u{301}";
        let nick = Nick::parse(decomposed).unwrap();
        assert_eq!(nick.as_str(), "José");
        assert_eq!(nick.key(), Nick::parse("JOSÉ").unwrap().key());
        assert_eq!(Nick::parse("Alice").unwrap().key(), "alice");
        assert_eq!(nick_key("ÄRGER"), "ärger");
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
