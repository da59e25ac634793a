//! Framed mode: length-prefixed JSON frames, as `chat-tui`, bots and tests speak it.

use bytes::Bytes;
use chat_shared::{CodecError, FrameCodec, Request, ServerMsg, encode_frame};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::error;
use uuid::Uuid;

use super::outbox::Outbox;
use super::reader::Reader;
use super::{Caps, slots};
use super::{Inbound, Wire};
use crate::event::Event;

pub(crate) struct FramedWire<R, W> {
    reader: Reader<R, FrameCodec>,
    writer: W,
    out: Outbox,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> FramedWire<R, W> {
    pub(crate) fn new(reader: R, writer: W, max_frame: usize) -> Self {
        Self {
            reader: Reader::new(reader, FrameCodec::new(max_frame)),
            writer,
            out: Outbox::default(),
        }
    }
}

/// Encodes an event as one frame. A moderation notice travels the room's path as a
/// message (that is how history keeps it) but is sent live as its own event type.
pub(crate) fn encode(msg: &ServerMsg) -> Bytes {
    let live = match msg {
        ServerMsg::Message(m) => m.live(),
        _ => None,
    };
    encode_frame(live.as_ref().unwrap_or(msg)).unwrap_or_else(|e| {
        // Unreachable for the protocol's types (all map keys are strings); dropping the
        // event is better than taking the connection down.
        error!(error = %e, "failed to encode an event");
        Bytes::new()
    })
}

/// Parses one frame; a bad one keeps its `id` (when readable) for the error's `ref`.
pub(crate) fn parse(frame: &[u8]) -> Inbound {
    match serde_json::from_slice::<Request>(frame) {
        Ok(req) => Inbound::Request(req),
        Err(e) => {
            #[derive(Deserialize)]
            struct IdOnly {
                id: Option<Uuid>,
            }
            let ref_id = serde_json::from_slice::<IdOnly>(frame)
                .ok()
                .and_then(|x| x.id);
            Inbound::Invalid {
                ref_id,
                reason: e.to_string(),
            }
        }
    }
}

/// The payload length of `event`'s frame (encoded once and kept for its recipients).
pub(crate) fn payload_len(event: &Event) -> usize {
    chat_shared::codec::payload_len(event.encoded(slots::FRAMED, encode))
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Wire for FramedWire<R, W> {
    fn caps(&self) -> Caps {
        Caps {
            pings: true,
            echoes_own: true,
        }
    }

    async fn recv(&mut self) -> std::io::Result<Option<Inbound>> {
        match self.reader.next().await {
            None => Ok(None),
            Some(Ok(frame)) => Ok(Some(parse(&frame))),
            Some(Err(CodecError::FrameTooLarge { max })) => {
                Ok(Some(Inbound::FrameTooLarge { max }))
            }
            Some(Err(CodecError::Io(e))) => Err(e),
            // FrameCodec does not parse JSON; kept for completeness of the match.
            Some(Err(e @ CodecError::Json(_))) => Err(std::io::Error::other(e)),
        }
    }

    fn push(&mut self, event: &Event) {
        self.out.push(event.encoded(slots::FRAMED, encode));
    }

    fn pending(&self) -> usize {
        self.out.len()
    }

    fn take_read(&mut self) -> u64 {
        self.reader.take_read()
    }

    fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush(&mut self.writer).await
    }

    async fn close(&mut self) {
        super::linger(self.reader.get_mut(), &mut self.writer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::ClientMsg;

    #[test]
    fn bad_frames_keep_a_readable_id_for_ref() {
        let id = Uuid::now_v7();
        let frame = format!(r#"{{"type":"shout","id":"{id}"}}"#);
        let Inbound::Invalid { ref_id, .. } = parse(frame.as_bytes()) else {
            panic!("unknown type parsed");
        };
        assert_eq!(ref_id, Some(id));
        let Inbound::Invalid { ref_id, .. } = parse(b"{not json") else {
            panic!("garbage parsed");
        };
        assert_eq!(ref_id, None);
        assert!(matches!(
            parse(br#"{"type":"rooms"}"#),
            Inbound::Request(Request {
                msg: ClientMsg::Rooms {},
                ..
            })
        ));
    }
}

/// Property tests: the framed decoder and the request parser take any bytes. A longer run:
/// `PROPTEST_CASES=200000 cargo test --release -p chat-server fuzz_`.
#[cfg(test)]
mod fuzz {
    use super::*;
    use bytes::BytesMut;
    use chat_shared::FrameCodec;
    use proptest::prelude::*;
    use tokio_util::codec::Decoder;

    const MAX: usize = 1024;

    proptest! {
        #[test]
        fn fuzz_frame_decoder_and_parser_never_panic_or_overallocate(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut codec = FrameCodec::new(MAX);
            let mut src = BytesMut::from(&bytes[..]);
            loop {
                match codec.decode(&mut src) {
                    Ok(Some(frame)) => {
                        prop_assert!(frame.len() <= MAX);
                        let _ = parse(&frame); // any outcome but a panic is fine
                    }
                    Ok(None) => break,
                    Err(CodecError::FrameTooLarge { .. }) => break,
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
                // Never reserves the announced length of a refused frame.
                prop_assert!(src.capacity() <= bytes.len().max(MAX + 4) * 2);
            }
        }

        #[test]
        fn fuzz_parser_on_json_shaped_input(
            kind in prop_oneof![
                Just("say".to_owned()), Just("hello".to_owned()), Just("join".to_owned()),
                Just("dm".to_owned()), "[a-z]{1,8}",
            ],
            field in "[a-z]{1,6}",
            value in prop_oneof![
                Just("null".to_owned()), Just("1e400".to_owned()), Just("-1".to_owned()),
                Just("\"\\u0000\\ud800\"".to_owned()), "\"[^\"\\\\]{0,40}\"", Just("[[[[]]]]".to_owned()),
            ],
        ) {
            let json = format!(r#"{{"type":"{kind}","{field}":{value},"room":"lobby","text":"x"}}"#);
            match parse(json.as_bytes()) {
                Inbound::Request(_) | Inbound::Invalid { .. } => {}
                other => prop_assert!(false, "parse gave {other:?}"),
            }
        }
    }
}
