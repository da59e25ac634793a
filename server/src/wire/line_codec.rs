//! Line mode's input decoder: bytes from `nc`, `telnet` or a script, to text lines.
//!
//! What arrives is whatever a terminal or a telnet client sends, so the decoder is lenient
//! where the contract says so and strict about memory:
//! - `\n` and `\r\n` end a line;
//! - telnet commands (IAC …) are removed and never answered; IAC IAC is a literal 0xFF;
//! - invalid UTF-8 becomes U+FFFD rather than a disconnect;
//! - a line over the limit is discarded while it streams in (never buffered past the limit)
//!   and reported once as [`LineItem::TooLong`] when it ends.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// One input line, or the news that one was too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineItem {
    /// A complete line without its terminator.
    Line(String),
    /// A line longer than the limit was dropped; its length in bytes.
    TooLong(usize),
}

/// Where the telnet state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    /// After IAC.
    Iac,
    /// After IAC WILL/WONT/DO/DONT: the option byte comes next.
    Option,
    /// Inside IAC SB … (subnegotiation), until IAC SE.
    Sub,
    /// IAC inside a subnegotiation.
    SubIac,
}

#[derive(Debug)]
pub(crate) struct LineCodec {
    max_line: usize,
    line: Vec<u8>,
    telnet: Telnet,
    /// Bytes of the current line so far, including those dropped for being over the limit.
    seen: usize,
    /// The last byte of the current line was '\r'.
    last_cr: bool,
    /// The client sent a telnet command: it is a telnet client, which understands being
    /// asked not to echo (for a password).
    telnet_seen: bool,
}

impl LineCodec {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            max_line,
            line: Vec::new(),
            telnet: Telnet::Data,
            seen: 0,
            last_cr: false,
            telnet_seen: false,
        }
    }

    /// Whether the client has spoken telnet (see `telnet_seen`).
    pub(crate) fn is_telnet(&self) -> bool {
        self.telnet_seen
    }

    pub(crate) fn max_line(&self) -> usize {
        self.max_line
    }

    fn finish_line(&mut self) -> LineItem {
        // The limit counts bytes before the terminator, and "\r\n" is a terminator.
        let len = std::mem::take(&mut self.seen) - usize::from(self.last_cr);
        let item = if len > self.max_line {
            LineItem::TooLong(len)
        } else {
            self.line.truncate(len);
            LineItem::Line(String::from_utf8_lossy(&self.line).into_owned())
        };
        self.line.clear();
        self.last_cr = false;
        if self.line.capacity() > 1024 {
            // One long line must not pin its buffer for the life of the connection.
            self.line.shrink_to(256);
        }
        item
    }

    /// Feeds one data byte (telnet already removed) into the current line.
    fn data(&mut self, byte: u8) {
        self.seen += 1;
        self.last_cr = byte == b'\r';
        // One byte past the limit is kept: it may be the '\r' of a "\r\n".
        if self.line.len() <= self.max_line {
            self.line.push(byte);
        }
    }
}

impl Decoder for LineCodec {
    type Item = LineItem;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<LineItem>, std::io::Error> {
        let mut used = 0;
        let mut out = None;
        for &byte in src.iter() {
            used += 1;
            self.telnet = match (self.telnet, byte) {
                (Telnet::Data, IAC) => Telnet::Iac,
                (Telnet::Data, b'\n') => {
                    out = Some(self.finish_line());
                    Telnet::Data
                }
                (Telnet::Data, b) => {
                    self.data(b);
                    Telnet::Data
                }
                (Telnet::Iac, IAC) => {
                    self.data(IAC);
                    Telnet::Data
                }
                (Telnet::Iac, WILL..=DONT) => {
                    self.telnet_seen = true;
                    Telnet::Option
                }
                (Telnet::Iac, SB) => {
                    self.telnet_seen = true;
                    Telnet::Sub
                }
                // Any other command byte (NOP, GA, AYT, …) stands alone; a stray byte after
                // IAC is dropped with it rather than guessed at.
                (Telnet::Iac, _) | (Telnet::Option, _) => Telnet::Data,
                (Telnet::Sub, IAC) => Telnet::SubIac,
                (Telnet::Sub, _) => Telnet::Sub,
                (Telnet::SubIac, SE) => Telnet::Data,
                (Telnet::SubIac, _) => Telnet::Sub,
            };
            if out.is_some() {
                break;
            }
        }
        let _ = src.split_to(used);
        Ok(out)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<LineItem>, std::io::Error> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        // A last line without a terminator (`nc` and Ctrl-D) still counts.
        if self.seen > 0 {
            return Ok(Some(self.finish_line()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, bytes: &[u8]) -> Vec<LineItem> {
        let mut src = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut src).unwrap() {
            out.push(item);
        }
        assert!(
            src.is_empty(),
            "the decoder consumes everything it is given"
        );
        out
    }

    fn line(s: &str) -> LineItem {
        LineItem::Line(s.into())
    }

    #[test]
    fn lf_and_crlf_both_end_lines() {
        let mut c = LineCodec::new(100);
        assert_eq!(
            decode_all(&mut c, b"one\ntwo\r\n\r\nthree"),
            [line("one"), line("two"), line("")]
        );
        let mut rest = BytesMut::new();
        assert_eq!(c.decode_eof(&mut rest).unwrap(), Some(line("three")));
        assert_eq!(c.decode_eof(&mut rest).unwrap(), None);
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut c = LineCodec::new(100);
        assert!(decode_all(&mut c, "你".as_bytes()).is_empty());
        assert!(decode_all(&mut c, b"\xe5\xa5").is_empty()); // first two bytes of 好
        assert_eq!(decode_all(&mut c, b"\xbd\r"), []);
        assert_eq!(decode_all(&mut c, b"\n"), [line("你好")]);
    }

    #[test]
    fn telnet_commands_are_removed() {
        let mut c = LineCodec::new(100);
        // IAC WILL ECHO, IAC DO SGA, IAC SB NAWS 0 80 0 24 IAC SE, IAC NOP, IAC IAC.
        let input = b"\xff\xfb\x01he\xff\xfd\x03llo\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0 w\xff\xf1o\xff\xffrld\r\n";
        assert_eq!(decode_all(&mut c, input), [line("hello wo\u{fffd}rld")]);
    }

    #[test]
    fn telnet_state_survives_split_reads() {
        let mut c = LineCodec::new(100);
        assert!(decode_all(&mut c, b"a\xff").is_empty());
        assert!(decode_all(&mut c, b"\xfb").is_empty());
        assert_eq!(decode_all(&mut c, b"\x18b\n"), [line("ab")]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let mut c = LineCodec::new(100);
        assert_eq!(
            decode_all(&mut c, b"ok \xc3\x28 \xf0\x9f\x98\n"),
            [line("ok \u{fffd}( \u{fffd}")]
        );
    }

    #[test]
    fn over_long_lines_are_dropped_then_reading_goes_on() {
        let mut c = LineCodec::new(8);
        assert_eq!(
            decode_all(&mut c, b"12345678\r\n123456789\nok\n"),
            [line("12345678"), LineItem::TooLong(9), line("ok")]
        );
        // Memory stays bounded while a huge line streams in.
        for _ in 0..1000 {
            decode_all(&mut c, &[b'x'; 1024]);
        }
        assert!(c.line.capacity() <= 64);
        assert_eq!(decode_all(&mut c, b"\n"), [LineItem::TooLong(1024 * 1000)]);
        assert_eq!(decode_all(&mut c, b"next\n"), [line("next")]);
    }
}

/// Property tests: the line decoder takes any bytes, split anywhere. A longer run:
/// `PROPTEST_CASES=200000 cargo test --release -p chat-server fuzz_`.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn decode_chunks(max: usize, bytes: &[u8], splits: &[usize]) -> Vec<LineItem> {
        let mut codec = LineCodec::new(max);
        let mut out = Vec::new();
        let mut src = BytesMut::new();
        let mut start = 0;
        let mut cuts: Vec<usize> = splits.iter().map(|s| s % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(bytes.len());
        for cut in cuts {
            src.extend_from_slice(&bytes[start..cut.max(start)]);
            start = cut.max(start);
            while let Some(item) = codec.decode(&mut src).unwrap() {
                out.push(item);
            }
        }
        while let Some(item) = codec.decode_eof(&mut src).unwrap() {
            out.push(item);
        }
        out
    }

    proptest! {
        #[test]
        fn fuzz_line_decoder_is_split_invariant_and_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            splits in proptest::collection::vec(any::<usize>(), 0..16),
            max in 1usize..64,
        ) {
            let whole = decode_chunks(max, &bytes, &[]);
            let split = decode_chunks(max, &bytes, &splits);
            prop_assert_eq!(&whole, &split);
            for item in &whole {
                if let LineItem::Line(line) = item {
                    // U+FFFD may take 3 bytes for 1 invalid byte; count chars against bytes.
                    prop_assert!(line.chars().count() <= max);
                    prop_assert!(!line.contains('\n'));
                }
            }
        }

        #[test]
        fn fuzz_line_decoder_on_text_with_telnet_and_newlines(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-z你好 ]{0,20}".prop_map(String::into_bytes),
                    Just(b"\r\n".to_vec()),
                    Just(b"\n".to_vec()),
                    Just(vec![IAC, WILL, 1]),
                    Just(vec![IAC, SB, 31, 0, 80, IAC, SE]),
                    Just(vec![IAC, IAC]),
                ],
                0..40,
            ),
        ) {
            let bytes: Vec<u8> = parts.concat();
            let items = decode_chunks(4096, &bytes, &[]);
            let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
            // One item per newline, plus a last unterminated line if anything follows.
            prop_assert!(items.len() == newlines || items.len() == newlines + 1);
        }
    }
}
