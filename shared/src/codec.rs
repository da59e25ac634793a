//! Framed mode: a 4-byte big-endian length, then one JSON object.
//!
//! The length prefix is the answer to TCP's "sticky packets": a receiver never guesses where
//! a message ends. The maximum frame length is explicit on both sides (tokio-util's default is
//! 8 MiB; ours is the contract's 64 KiB), and an over-long prefix is refused before anything
//! of that size is allocated.
//!
//! Layout:
//! - [`FrameCodec`]: raw payloads, for the server, which parses requests itself so that a bad
//!   frame is an answerable error rather than the end of the stream.
//! - [`encode_frame`]: one event to wire bytes, once, to be shared by every recipient.
//! - [`ClientCodec`]: typed frames for clients, including the contract's rule of discarding
//!   everything before the first `0x00` (a line-mode greeting sent to a slow client).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LengthDelimitedCodecError};

use crate::error::CodecError;
use crate::message::{ClientMsg, Request, ServerMsg};

/// Length of the big-endian length prefix.
pub const PREFIX_LEN: usize = 4;

fn length_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(PREFIX_LEN)
        .max_frame_length(max_frame)
        .new_codec()
}

fn map_io(err: std::io::Error, max: usize) -> CodecError {
    let too_large = err
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
    if too_large {
        CodecError::FrameTooLarge { max }
    } else {
        CodecError::Io(err)
    }
}

/// Splits a byte stream into raw frame payloads of at most `max_frame` bytes.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
    max_frame: usize,
}

impl FrameCodec {
    /// A codec refusing payloads over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            inner: length_codec(max_frame),
            max_frame,
        }
    }

    /// The configured maximum payload length.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        self.inner
            .decode(src)
            .map_err(|e| map_io(e, self.max_frame))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.inner
            .encode(payload, dst)
            .map_err(|e| map_io(e, self.max_frame))
    }
}

/// Encodes `msg` as one complete frame (prefix included), ready to be written as is.
///
/// The server calls this once per event and hands the same [`Bytes`] to every recipient.
/// The caller enforces the maximum frame length: only it knows how to shrink what it sends
/// (a `history` is cut, not refused).
///
/// # Errors
/// Only if `msg` cannot be serialised, which for this crate's types means a bug.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> Result<Bytes, serde_json::Error> {
    // A chat message's frame is about 200 bytes: starting at 128 cost every one a
    // reallocation on its way (a doubling, to the same 256 this starts with).
    let mut buf = BytesMut::with_capacity(256);
    buf.put_bytes(0, PREFIX_LEN);
    let mut writer = buf.writer();
    serde_json::to_writer(&mut writer, msg)?;
    let mut buf = writer.into_inner();
    let len = u32::try_from(buf.len() - PREFIX_LEN).unwrap_or(u32::MAX);
    buf[..PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The payload length of a complete frame made by [`encode_frame`].
pub fn payload_len(frame: &[u8]) -> usize {
    frame.len().saturating_sub(PREFIX_LEN)
}

/// Typed framed codec for clients: decodes [`ServerMsg`], encodes [`Request`]s.
///
/// Until the first `0x00` arrives every byte is discarded: a server that greeted a slow
/// client in line mode switches to framed mode on the client's first byte, and the greeting
/// (text, never NUL) must not be read as a length prefix.
#[derive(Debug)]
pub struct ClientCodec {
    frames: FrameCodec,
    synced: bool,
}

impl ClientCodec {
    /// A client codec with the given maximum frame payload.
    pub fn new(max_frame: usize) -> Self {
        Self {
            frames: FrameCodec::new(max_frame),
            synced: false,
        }
    }
}

impl Default for ClientCodec {
    fn default() -> Self {
        Self::new(crate::MAX_FRAME_LEN)
    }
}

impl Decoder for ClientCodec {
    type Item = ServerMsg;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ServerMsg>, CodecError> {
        if !self.synced {
            match src.iter().position(|&b| b == 0) {
                Some(start) => {
                    src.advance(start);
                    self.synced = true;
                }
                None => {
                    src.clear();
                    return Ok(None);
                }
            }
        }
        match self.frames.decode(src)? {
            Some(frame) => Ok(Some(serde_json::from_slice(&frame)?)),
            None => Ok(None),
        }
    }
}

impl Encoder<Request> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, req: Request, dst: &mut BytesMut) -> Result<(), CodecError> {
        let json = serde_json::to_vec(&req)?;
        self.frames.encode(Bytes::from(json), dst)
    }
}

impl Encoder<ClientMsg> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, msg: ClientMsg, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(Request::new(msg), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ChatMessage, ErrorCode};
    use uuid::Uuid;

    fn sample() -> ServerMsg {
        ServerMsg::Message(ChatMessage {
            id: Uuid::now_v7(),
            room: "lobby".into(),
            seq: 1,
            from: "アリス".into(),
            text: "こんにちは 🌸".into(),
            ts: 1,
            action: false,
            account: false,
            event: None,
            file: None,
        })
    }

    #[test]
    fn encode_frame_prefixes_the_payload_length() {
        let frame = encode_frame(&sample()).unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(payload_len(&frame), len);
        assert_eq!(frame[0], 0, "frames under 16 MiB start with 0x00");
    }

    #[test]
    fn client_codec_decodes_frames_split_and_glued() {
        let a = encode_frame(&sample()).unwrap();
        let b = encode_frame(&ServerMsg::error(ErrorCode::BadRequest, "x", None)).unwrap();
        let mut all = BytesMut::new();
        all.extend_from_slice(&a);
        all.extend_from_slice(&b);
        let mut codec = ClientCodec::default();
        // Feed one byte at a time: "sticky" and split packets alike.
        let mut src = BytesMut::new();
        let mut out = Vec::new();
        for byte in all {
            src.put_u8(byte);
            while let Some(msg) = codec.decode(&mut src).unwrap() {
                out.push(msg);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], sample_with_id(&out[0]));
    }

    fn sample_with_id(got: &ServerMsg) -> ServerMsg {
        let ServerMsg::Message(m) = got else {
            panic!("expected message, got {got:?}")
        };
        let mut want = sample();
        if let ServerMsg::Message(w) = &mut want {
            w.id = m.id;
        }
        want
    }

    #[test]
    fn client_codec_skips_a_greeting_before_the_first_frame() {
        let mut src = BytesMut::from(&b"Welcome! What is your nick?\r\n"[..]);
        let mut codec = ClientCodec::default();
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert!(src.is_empty());
        src.extend_from_slice(b"more text ");
        src.extend_from_slice(&encode_frame(&ServerMsg::Pong { token: None }).unwrap());
        assert_eq!(
            codec.decode(&mut src).unwrap(),
            Some(ServerMsg::Pong { token: None })
        );
    }

    #[test]
    fn oversized_length_prefix_is_refused_without_allocating_it() {
        let mut codec = FrameCodec::new(64 * 1024);
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, b'{'][..]);
        let err = codec.decode(&mut src).unwrap_err();
        assert!(
            matches!(err, CodecError::FrameTooLarge { max: 65536 }),
            "{err}"
        );
        assert!(src.capacity() < 1024 * 1024);
    }

    #[test]
    fn frame_codec_round_trips_raw_payloads() {
        let mut codec = FrameCodec::new(16);
        let mut buf = BytesMut::new();
        codec.encode(Bytes::from_static(b"{}"), &mut buf).unwrap();
        assert_eq!(&buf[..], b"\0\0\0\x02{}");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"{}");
        assert!(matches!(
            codec.encode(Bytes::from(vec![b' '; 17]), &mut buf),
            Err(CodecError::FrameTooLarge { max: 16 })
        ));
    }
}
