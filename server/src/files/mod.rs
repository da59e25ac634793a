//! File sharing: upload slots, resumable tus uploads, content-addressed storage and
//! downloads, all over HTTP on the chat port; chat carries only a file's metadata.

pub(crate) mod error;

pub(crate) use error::FileError;
