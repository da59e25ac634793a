//! IRC's byte-level decoder and line parser: bytes to [`Message`]s (tags, command,
//! parameters), within the line limits of the IRC grammar.
//!
//! - `\n` ends a line and a `\r` before it is dropped (some clients send bare `\n`);
//! - the message part (command and parameters) may be 512 bytes with its `\r\n`, and the
//!   tags in front of it 8191 with their `@` and space (IRCv3 message-tags); a longer line
//!   is discarded while it streams in, never buffered past the limit, and reported once as
//!   [`IrcItem::TooLong`], to be answered with 417;
//! - invalid UTF-8 becomes U+FFFD rather than a disconnect;
//! - a line that parses to no command (only spaces, only tags) is skipped.
//!
//! Nothing here panics on any input: the property test at the end feeds it random bytes.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

/// The message part's limit, with its `\r\n` (RFC 1459, kept by modern IRC).
pub(crate) const MAX_MESSAGE: usize = 512;
/// The tags' limit, with the leading `@` and the space after them (IRCv3 message-tags).
pub(crate) const MAX_TAGS: usize = 8191;
/// Most parameters a message may have (RFC 1459); more are joined into the last.
const MAX_PARAMS: usize = 15;

/// One parsed client line. The prefix a client may send is ignored (a client's source is
/// the server's to say), and so are the client's tags but `label` (labeled-response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// Upper-cased, as commands are case-insensitive.
    pub(crate) command: String,
    pub(crate) params: Vec<String>,
    /// The `label` tag's value as sent (still escaped, so it goes back as it came), when
    /// it is a usable one: 1 to [`MAX_LABEL`] bytes.
    pub(crate) label: Option<Box<str>>,
}

/// The longest `label` taken (the labeled-response spec's limit for clients).
pub(crate) const MAX_LABEL: usize = 64;

impl Message {
    /// Parameter `i`, or `""` when it is missing (IRC's missing and empty mean the same to
    /// most commands; those for which they do not check [`Message::params`]'s length).
    pub(crate) fn arg(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IrcItem {
    Line(Message),
    /// A line over the limits was dropped.
    TooLong,
}

#[derive(Debug, Default)]
pub(crate) struct IrcCodec {
    line: Vec<u8>,
    /// Bytes of the current line so far, those dropped for being too long included.
    seen: usize,
}

/// The longest line the codec holds: both limits, as either part may be empty.
const MAX_LINE: usize = MAX_MESSAGE + MAX_TAGS;

impl IrcCodec {
    fn finish(&mut self) -> Option<IrcItem> {
        let seen = std::mem::take(&mut self.seen);
        let mut bytes = std::mem::take(&mut self.line);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let item = if seen > MAX_LINE + 1 {
            Some(IrcItem::TooLong)
        } else {
            match parse(&String::from_utf8_lossy(&bytes)) {
                Ok(Some(msg)) => Some(IrcItem::Line(msg)),
                Ok(None) => None,
                Err(TooLong) => Some(IrcItem::TooLong),
            }
        };
        if bytes.capacity() <= 1024 {
            // Reused for the next line; a long line's buffer is not kept for the life of
            // the connection.
            bytes.clear();
            self.line = bytes;
        }
        item
    }
}

impl Decoder for IrcCodec {
    type Item = IrcItem;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<IrcItem>, std::io::Error> {
        loop {
            let Some(end) = src.iter().position(|&b| b == b'\n') else {
                // Keep only what fits (one byte over: it may be the `\r`).
                self.seen += src.len();
                let room = (MAX_LINE + 1).saturating_sub(self.line.len());
                self.line.extend_from_slice(&src[..src.len().min(room)]);
                src.clear();
                return Ok(None);
            };
            self.seen += end;
            let room = (MAX_LINE + 1).saturating_sub(self.line.len());
            self.line.extend_from_slice(&src[..end.min(room)]);
            let _ = src.split_to(end + 1);
            if let Some(item) = self.finish() {
                return Ok(Some(item));
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<IrcItem>, std::io::Error> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        if self.seen == 0 {
            return Ok(None);
        }
        // A last line without its terminator is still a line.
        Ok(self.finish())
    }
}

/// The line broke the 512/8191 rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

/// Parses one line (without its terminator): `[@tags ][:prefix ]COMMAND [params] [:trailing]`.
/// `Ok(None)`: nothing to parse (an empty line, or tags and a prefix without a command).
pub(crate) fn parse(line: &str) -> Result<Option<Message>, TooLong> {
    let mut rest = line;
    let mut label = None;
    if let Some(tagged) = rest.strip_prefix('@') {
        let (tags, after) = tagged.split_once(' ').unwrap_or((tagged, ""));
        // `@`, the tags and the space.
        if tags.len() + 2 > MAX_TAGS {
            return Err(TooLong);
        }
        label = tags
            .split(';')
            .find_map(|tag| tag.strip_prefix("label="))
            .filter(|l| (1..=MAX_LABEL).contains(&l.len()))
            .map(Into::into);
        rest = after;
    }
    rest = rest.trim_start_matches(' ');
    // 510 for the message, with 2 for the `\r\n` it was sent with.
    if rest.len() + 2 > MAX_MESSAGE {
        return Err(TooLong);
    }
    if rest.starts_with(':') {
        rest = rest.split_once(' ').map_or("", |(_, after)| after);
        rest = rest.trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return Ok(None);
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_owned());
            break;
        }
        if params.len() + 1 == MAX_PARAMS {
            params.push(rest.to_owned());
            break;
        }
        let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(param.to_owned());
        rest = after;
    }
    Ok(Some(Message {
        command: command.to_ascii_uppercase(),
        params,
        label,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(line: &str) -> Message {
        parse(line).unwrap().unwrap()
    }

    #[test]
    fn tags_and_prefix_are_skipped_and_trailing_keeps_its_spaces() {
        let m = msg("@label=1;+typing :me!u@h privmsg #rust :hello  there :)");
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#rust", "hello  there :)"]);
        assert_eq!(msg("NICK   alice  ").params, ["alice"]);
        assert_eq!(msg("PRIVMSG #a :").params, ["#a", ""]);
        assert_eq!(parse("   ").unwrap(), None);
        assert_eq!(parse("@a=b").unwrap(), None);
    }

    #[test]
    fn the_label_tag_is_kept_as_sent_and_an_empty_or_overlong_one_dropped() {
        assert_eq!(
            msg("@+x=1;label=a\\sb PING t").label.as_deref(),
            Some("a\\sb")
        );
        assert_eq!(msg("@label= PING t").label, None);
        assert_eq!(
            msg(&format!("@label={} PING t", "x".repeat(65))).label,
            None
        );
        assert_eq!(msg("PING t").label, None);
    }

    #[test]
    fn the_message_part_has_512_bytes_and_the_tags_8191() {
        let at_limit = format!("PRIVMSG #a :{}", "x".repeat(510 - 12));
        assert!(parse(&at_limit).is_ok());
        assert_eq!(parse(&format!("{at_limit}x")), Err(TooLong));
        let tags = format!("@t={}", "y".repeat(8191 - 4));
        assert!(parse(&format!("{tags} {at_limit}")).is_ok());
        assert_eq!(parse(&format!("{tags}y {at_limit}")), Err(TooLong));
    }

    #[test]
    fn a_long_line_is_dropped_as_it_streams_and_reported_once() {
        let mut codec = IrcCodec::default();
        let mut src = BytesMut::from(&b"NICK a\r\n"[..]);
        assert!(matches!(
            codec.decode(&mut src).unwrap(),
            Some(IrcItem::Line(_))
        ));
        for _ in 0..10 {
            src.extend_from_slice(&[b'x'; 4096]);
            assert_eq!(codec.decode(&mut src).unwrap(), None);
            assert!(codec.line.len() <= MAX_LINE + 1);
        }
        src.extend_from_slice(b"\r\nPING :t\r\n");
        assert_eq!(codec.decode(&mut src).unwrap(), Some(IrcItem::TooLong));
        let Some(IrcItem::Line(ping)) = codec.decode(&mut src).unwrap() else {
            panic!("the next line is lost");
        };
        assert_eq!(ping.params, ["t"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let mut codec = IrcCodec::default();
        let mut src = BytesMut::from(&b"PRIVMSG #a :caf\xe9\n"[..]);
        let Some(IrcItem::Line(m)) = codec.decode(&mut src).unwrap() else {
            panic!("no line");
        };
        assert_eq!(m.params[1], "caf\u{fffd}");
    }
}

/// Property test: any bytes, in any chunks, decode without a panic or an unbounded buffer.
/// A longer run: `PROPTEST_CASES=200000 cargo test --release -p chat-server fuzz_irc`.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_irc_decoder_never_panics_or_overbuffers(
            chunks in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..64),
                    "[@:A-Za-z0-9 #=;\\r\\n]{0,600}".prop_map(String::into_bytes),
                    Just(vec![b'x'; 9000]),
                ],
                0..16,
            ),
        ) {
            let mut codec = IrcCodec::default();
            let mut src = BytesMut::new();
            for chunk in &chunks {
                src.extend_from_slice(chunk);
                while let Some(item) = codec.decode(&mut src).unwrap() {
                    if let IrcItem::Line(m) = item {
                        prop_assert!(!m.command.is_empty());
                        prop_assert!(m.params.len() <= MAX_PARAMS);
                    }
                }
                prop_assert!(codec.line.len() <= MAX_LINE + 1);
            }
            let _ = codec.decode_eof(&mut src).unwrap();
        }
    }
}
