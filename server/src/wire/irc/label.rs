//! labeled-response: a command sent with a `label` tag is answered with that tag, on its
//! one reply line, on a `labeled-response` batch around several, or on an `ACK` when it
//! caused none.
//!
//! What a command's answer is, the adapter tells by time: the lines it caused from when it
//! was read until the session is done with it, which is when the session asks for the next
//! request or flushes (a comma list's queued requests, and a `CHATHISTORY` collected from
//! several pages, keep the answer open until their last). A labeled `PRIVMSG` under
//! echo-message is answered by its echo, which comes once the message is durable: it is
//! told by its message id, which the adapter gives the request.

use std::fmt::Write as _;

use super::IrcWire;
use super::caps::{BATCH, LABELED_RESPONSE};
use super::render::in_batch;

/// An open labeled answer.
#[derive(Debug)]
pub(super) struct Labeled {
    label: Box<str>,
    /// The lines the command caused so far, held back to be tagged.
    pub(super) replies: Vec<u8>,
}

/// `line` (one, with its `\r\n`) with `tag` added in front of its other tags.
fn tagged(line: &str, tag: &str) -> String {
    match line.strip_prefix('@') {
        Some(rest) => format!("@{tag};{rest}"),
        None => format!("@{tag} {line}"),
    }
}

impl<R, W> IrcWire<R, W> {
    /// Starts gathering the answer to a command with `label`, if the client negotiated
    /// labeled-response and is registered (registration's answers are held as they are).
    pub(super) fn open_label(&mut self, label: Option<&str>) {
        let Some(label) = label else { return };
        if self.reg.is_some() || !self.caps.has(LABELED_RESPONSE) {
            return;
        }
        self.extra().label = Some(Labeled {
            label: label.into(),
            replies: Vec::new(),
        });
    }

    /// Whether a labeled command is still being answered.
    pub(super) fn label_open(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.label.is_some())
    }

    /// A flush ends the answer, unless more of the same command is still to come.
    pub(super) fn flushing_label(&mut self) {
        let more = self
            .extra
            .as_ref()
            .is_some_and(|e| !e.queue.is_empty() || e.compound.is_some());
        if !more {
            self.close_label();
        }
    }

    /// Sends the answer gathered, tagged with its label: nothing (a `PRIVMSG` whose echo
    /// is to come) waits for the echo, nothing else is an `ACK`.
    pub(super) fn close_label(&mut self) {
        let Some(extra) = self.extra.as_mut() else {
            return;
        };
        let Some(Labeled { label, replies }) = extra.label.take() else {
            return;
        };
        if replies.is_empty() {
            if let Some((_, waiting)) = extra.echo.as_mut().filter(|(_, l)| l.is_none()) {
                *waiting = Some(label);
                return;
            }
            self.tidy();
            let line = format!("@label={label} :{} ACK\r\n", self.server());
            self.put(line.as_bytes());
            return;
        }
        // Refused: the echo will not come.
        extra.echo = None;
        self.tidy();
        self.put_labeled(&label, &replies);
    }

    /// `replies` with `label`: on the line if it is one, else on a `labeled-response`
    /// batch around them (without `batch`, on the first line).
    fn put_labeled(&mut self, label: &str, replies: &[u8]) {
        let text = String::from_utf8_lossy(replies);
        let tag = format!("label={label}");
        let one = text.split_inclusive("\r\n").nth(1).is_none();
        let mut out = String::new();
        if one || !self.caps.has(BATCH) {
            let mut lines = text.split_inclusive("\r\n");
            if let Some(first) = lines.next() {
                out.push_str(&tagged(first, &tag));
            }
            for line in lines {
                out.push_str(line);
            }
        } else {
            let batch = in_batch(&text, "labeled", "labeled-response", self.server());
            let (open, rest) = batch.split_once("\r\n").unwrap_or((&batch, ""));
            let _ = write!(out, "{}{rest}", tagged(&format!("{open}\r\n"), &tag));
        }
        self.put(out.as_bytes());
    }

    /// The label an event carries if it is the echo a labeled `PRIVMSG` waits for.
    pub(super) fn echo_label(&mut self, id: uuid::Uuid) -> Option<Box<str>> {
        let extra = self.extra.as_mut()?;
        if !extra
            .echo
            .as_ref()
            .is_some_and(|(e, l)| *e == id && l.is_some())
        {
            return None;
        }
        let label = extra.echo.take().and_then(|(_, l)| l);
        self.tidy();
        label
    }

    /// Renders an echo with its label: gathered, then tagged.
    pub(super) fn labeled_echo(&mut self, label: Box<str>, event: &crate::event::Event) {
        self.extra().label = Some(Labeled {
            label,
            replies: Vec::new(),
        });
        self.render_event(event);
        self.close_label();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_goes_in_front_of_the_other_tags() {
        assert_eq!(
            tagged(":s PONG s :t\r\n", "label=1"),
            "@label=1 :s PONG s :t\r\n"
        );
        assert_eq!(
            tagged("@time=x :a PRIVMSG #r :hi\r\n", "label=1"),
            "@label=1;time=x :a PRIVMSG #r :hi\r\n"
        );
    }
}
