//! Why a file could not be offered, uploaded or shared.

/// A refusal of the file service; `session/errors.rs` maps each to its protocol code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    #[error("file sharing is off on this server")]
    Off,
    #[error("the file is {size} bytes, over this server's limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error(
        "sharing {size} more bytes would take you over your quota of {quota} bytes \
         ({used} used, uploads in progress included)"
    )]
    QuotaExceeded { size: u64, used: u64, quota: u64 },
    #[error("file name {name:?} cannot be used: {why}")]
    NameInvalid { name: String, why: &'static str },
    #[error("bad upload request: {0}")]
    Bad(&'static str),
    #[error("at most {0} uploads at once per uploader; finish or abandon one first")]
    TooManyUploads(usize),
    #[error("this upload id belongs to another upload")]
    IdInUse,
}
