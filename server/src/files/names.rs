//! A file's name as people see it: cleaned on the way in, and carried out in links and
//! `Content-Disposition` without ever naming anything on disk (the disk names files by
//! their SHA-256).

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::FileError;

/// The longest name, in bytes of UTF-8 (what most file systems allow).
pub(crate) const MAX_NAME_LEN: usize = 255;

/// What stays unescaped in a path segment or an RFC 5987 value: RFC 3986's unreserved.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The name to keep: controls, bidi and other invisible characters removed (as from any
/// text), surrounding space trimmed. Refused: empty, too long, NUL, a separator, `.`, `..`.
///
/// # Errors
/// [`FileError::NameInvalid`] says which rule the name breaks.
pub(crate) fn clean_name(raw: &str) -> Result<String, FileError> {
    let refuse = |why| {
        Err(FileError::NameInvalid {
            name: chat_shared::validate::strip_controls(raw).into_owned(),
            why,
        })
    };
    // A NUL is refused rather than dropped: it is how a name smuggles a second one.
    if raw.contains('\0') {
        return refuse("it holds a NUL");
    }
    if raw.contains(['/', '\\']) {
        return refuse("it holds a path separator");
    }
    let stripped = chat_shared::validate::strip_controls(raw);
    let name: String = stripped
        .chars()
        .filter(|c| !matches!(c, '\n' | '\t'))
        .collect();
    let name = name.trim();
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name == "." || name == ".." {
        return refuse("it names a directory");
    }
    if name.len() > MAX_NAME_LEN {
        return refuse("it is longer than 255 bytes");
    }
    Ok(name.to_owned())
}

/// `name` as one path segment of a link.
pub(crate) fn url_segment(name: &str) -> String {
    utf8_percent_encode(name, ESCAPED).to_string()
}

/// `Content-Disposition: attachment` with both forms of RFC 6266: `filename` for old
/// clients (ASCII, anything else as `_`) and `filename*` in UTF-8 (so CJK names survive).
pub(crate) fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut value = format!("attachment; filename=\"{fallback}\"");
    let _ = write!(value, "; filename*=UTF-8''{}", url_segment(name));
    value
}

/// `1.2 MiB`: a size for people.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Display only: the loss of precision past 2^53 bytes does not show in one decimal.
    #[allow(clippy::cast_precision_loss)]
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// `3a7b…e1`: enough of a hash to tell files apart by eye.
pub(crate) fn short_hash(hex: &str) -> String {
    match (hex.get(..4), hex.get(hex.len().saturating_sub(2)..)) {
        (Some(head), Some(tail)) if hex.len() > 6 => format!("{head}…{tail}"),
        _ => hex.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_paths_are_refused() {
        for bad in [
            "../etc/passwd",
            "a/b",
            "a\\b",
            "..",
            ".",
            "",
            "  ",
            "x\0y",
            "\u{202e}",
        ] {
            assert!(
                matches!(clean_name(bad), Err(FileError::NameInvalid { .. })),
                "{bad:?}"
            );
        }
        assert!(clean_name(&"a".repeat(256)).is_err());
        assert_eq!(clean_name(&"a".repeat(255)).unwrap().len(), 255);
    }

    #[test]
    fn names_lose_what_could_rearrange_a_screen() {
        assert_eq!(clean_name("rep\u{202e}fdp.exe").unwrap(), "repfdp.exe");
        assert_eq!(clean_name(" a\x1b[31mb.txt\n").unwrap(), "a[31mb.txt");
        assert_eq!(clean_name("报告.pdf").unwrap(), "报告.pdf");
        assert_eq!(clean_name("..hidden").unwrap(), "..hidden");
    }

    #[test]
    fn disposition_and_links_carry_any_name() {
        assert_eq!(
            content_disposition("报告 1.pdf"),
            "attachment; filename=\"__ 1.pdf\"; \
             filename*=UTF-8''%E6%8A%A5%E5%91%8A%201.pdf"
        );
        assert_eq!(
            content_disposition("a\"b.html"),
            "attachment; filename=\"a_b.html\"; filename*=UTF-8''a%22b.html"
        );
        assert_eq!(url_segment("a b/c?.txt"), "a%20b%2Fc%3F.txt");
    }

    #[test]
    fn sizes_and_hashes_for_people() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1_258_291), "1.2 MiB");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
        assert_eq!(short_hash(&"3a7b".repeat(16)), "3a7b…7b");
    }
}
