//! Errors of the framed codec.

use thiserror::Error;

/// Why a framed stream could not produce or accept a frame.
///
/// `FrameTooLarge` is fatal for the connection: the length prefix is the only thing that
/// delimits frames, so once it is rejected the stream cannot be resynchronised.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A length prefix announced more than the configured maximum.
    #[error("frame larger than the maximum of {max} bytes")]
    FrameTooLarge {
        /// The configured maximum payload length.
        max: usize,
    },
    /// A complete frame held something other than the expected JSON.
    #[error("invalid JSON frame: {0}")]
    Json(#[from] serde_json::Error),
}
