//! The tus 1.0 upload client (core protocol and the `checksum` extension with `sha256`), as
//! `docs/PROTOCOL.md` "Files" specifies the server's side, and the file's own SHA-256.
//!
//! The task sends the file from the slot's offset in chunks, one `PATCH` each with its
//! `Upload-Checksum`, on one kept-alive connection. When a request fails (the connection
//! drops, the server restarts) it asks `HEAD` where the server is and goes on from there,
//! with backoff, a few times; then it reports [`TransferEvent::Stalled`] and the app asks
//! the chat server for the slot again (after a reconnect: with the same id, so the same
//! slot and its offset).
//!
//! Layout:
//! - [`checksum_header`], [`PatchOutcome`] and [`classify_patch`], [`upload_offset`]: the
//!   protocol's pieces, pure.
//! - [`hash_file`]: a file's length and SHA-256, streaming.
//! - [`upload`]: the task.

use std::io::{self, Read, SeekFrom};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderMap};
use hyper::{Method, StatusCode};
use ring::digest::{Context, SHA256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::time::sleep;

use crate::http::{Conn, Http, HttpError, Url};
use crate::runtime::now_ms;
use crate::transfer::{TransferEvent, UploadJob};

/// The tus version every request names.
pub const TUS_RESUMABLE: &str = "1.0.0";

/// Bytes per `PATCH`: big enough that the per-request cost vanishes at loopback speed,
/// small enough that a failed chunk costs little and progress moves often.
pub const CHUNK: usize = 2 * 1024 * 1024;

/// Requests in a row that may fail before the task stalls and leaves it to a new slot.
pub const MAX_FAILURES: u32 = 6;

/// Shortest time between two progress reports.
pub const PROGRESS_EVERY_MS: i64 = 100;

/// `Upload-Checksum` for a chunk: `sha256 ` and the base64 of its SHA-256.
pub fn checksum_header(chunk: &[u8]) -> String {
    let digest = ring::digest::digest(&SHA256, chunk);
    format!(
        "sha256 {}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

/// `Upload-Offset` of an answer.
pub fn upload_offset(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("upload-offset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What the answer to a `PATCH` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOutcome {
    /// Taken: the server now has this many bytes.
    Advanced(u64),
    /// 409: our offset is not the server's (ask `HEAD`), or, after the last byte, the
    /// uploader may no longer share there.
    Conflict,
    /// 460: the body did not match its checksum (nothing of it kept), or, after the last
    /// byte, the whole file did not match its announced SHA-256.
    ChecksumMismatch,
    /// 404/410: the slot is unknown, expired, used or abandoned.
    Gone,
    /// Refused for good: 413 (past the length), 507 (the server's disk is full), and any
    /// other 4xx.
    Refused(String),
    /// Worth another try (5xx other than 507, or 204 without an offset).
    Retry(String),
}

/// Reads the answer to a `PATCH`.
pub fn classify_patch(status: StatusCode, headers: &HeaderMap) -> PatchOutcome {
    match status.as_u16() {
        200 | 204 => match upload_offset(headers) {
            Some(offset) => PatchOutcome::Advanced(offset),
            None => PatchOutcome::Retry("answer without Upload-Offset".into()),
        },
        409 => PatchOutcome::Conflict,
        460 => PatchOutcome::ChecksumMismatch,
        404 | 410 => PatchOutcome::Gone,
        413 => PatchOutcome::Refused("the server says the file is longer than announced".into()),
        507 => PatchOutcome::Refused("the server's disk is full".into()),
        code @ 400..=499 => PatchOutcome::Refused(format!("refused by the server ({code})")),
        code => PatchOutcome::Retry(format!("server error {code}")),
    }
}

/// The length and SHA-256 (lowercase hex) of a file, read in large blocks. Blocking: run it
/// off the async threads.
///
/// # Errors
/// The file cannot be opened or read.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file"));
    }
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(ctx.finish().as_ref())))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Why one attempt ended.
enum Stop {
    /// Report this and end the task.
    End(TransferEvent),
    /// A failure worth another attempt (after `HEAD`).
    Again(String),
}

/// Throttled progress reports.
struct Reporter<'a> {
    id: uuid::Uuid,
    events: &'a mpsc::Sender<TransferEvent>,
    last_ms: i64,
}

impl Reporter<'_> {
    async fn send(&self, ev: TransferEvent) -> bool {
        self.events.send(ev).await.is_ok()
    }

    /// Reports `done` unless a report went out very recently (the last one always goes).
    async fn progress(&mut self, done: u64, last: bool) -> bool {
        let at_ms = now_ms();
        if !last && at_ms - self.last_ms < PROGRESS_EVERY_MS {
            return true;
        }
        self.last_ms = at_ms;
        self.send(TransferEvent::Progress {
            id: self.id,
            done,
            at_ms,
        })
        .await
    }
}

/// Uploads `job` with `chunk`-byte `PATCH`es, reporting to `events`; ends with
/// [`TransferEvent::Uploaded`], `Stalled`, `SlotGone` or `Failed`. Ends quietly when
/// `events` is closed (the app is gone).
pub async fn upload(http: Http, job: UploadJob, chunk: usize, events: mpsc::Sender<TransferEvent>) {
    let mut reporter = Reporter {
        id: job.id,
        events: &events,
        last_ms: 0,
    };
    let end = match Url::parse(&job.url) {
        Ok(url) => run(&http, &job, &url, chunk.max(1), &mut reporter).await,
        Err(e) => TransferEvent::Failed {
            id: job.id,
            error: e.to_string(),
        },
    };
    // Ignored: an app that is gone needs no report.
    let _ = reporter.send(end).await;
}

async fn run(
    http: &Http,
    job: &UploadJob,
    url: &Url,
    chunk: usize,
    reporter: &mut Reporter<'_>,
) -> TransferEvent {
    let id = job.id;
    let mut file = match tokio::fs::File::open(&job.path).await {
        Ok(f) => f,
        Err(e) => {
            return TransferEvent::Failed {
                id,
                error: format!("cannot read {}: {e}", job.path.display()),
            };
        }
    };
    let mut offset = job.offset;
    let mut failures = 0u32;
    let mut ask_offset = false;
    let mut buf = vec![0u8; chunk];
    loop {
        match attempt(
            http,
            job,
            url,
            &mut file,
            &mut buf,
            &mut offset,
            ask_offset,
            reporter,
        )
        .await
        {
            Ok(()) => return TransferEvent::Uploaded { id },
            Err(Stop::End(ev)) => return ev,
            Err(Stop::Again(reason)) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    return TransferEvent::Stalled { id, reason };
                }
                let retrying = TransferEvent::Retrying {
                    id,
                    reason: reason.clone(),
                };
                if !reporter.send(retrying).await {
                    return TransferEvent::Stalled { id, reason };
                }
                sleep(retry_delay(failures)).await;
                ask_offset = true;
            }
        }
    }
}

/// 0.5 s doubling to 8 s.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(500u64 << failures.saturating_sub(1).min(4))
}

/// One connection's worth: `HEAD` if asked, then `PATCH`es until the end or a failure.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    http: &Http,
    job: &UploadJob,
    url: &Url,
    file: &mut tokio::fs::File,
    buf: &mut [u8],
    offset: &mut u64,
    ask_offset: bool,
    reporter: &mut Reporter<'_>,
) -> Result<(), Stop> {
    let id = job.id;
    let again = |e: HttpError| Stop::Again(e.to_string());
    let mut conn = http.connect(url).await.map_err(again)?;
    if ask_offset {
        *offset = head_offset(&mut conn, url, id).await?;
        if !reporter.progress(*offset, true).await {
            return Err(Stop::Again("the app is gone".into()));
        }
    }
    let mut checksum_refusals = 0;
    while *offset < job.size {
        let len = usize::try_from(job.size - *offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let body = read_at(file, *offset, &mut buf[..len]).await.map_err(|e| {
            Stop::End(TransferEvent::Failed {
                id,
                error: format!("cannot read {}: {e}", job.path.display()),
            })
        })?;
        let last = *offset + len as u64 == job.size;
        let req = conn
            .request(Method::PATCH, url)
            .header("tus-resumable", TUS_RESUMABLE)
            .header(CONTENT_TYPE, "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .header("upload-checksum", checksum_header(&body))
            .body(Full::new(body))
            .map_err(|e| Stop::Again(e.to_string()))?;
        let res = conn.send(req).await.map_err(again)?;
        let (parts, body) = res.into_parts();
        // The body (if any) is read so the connection can carry the next request.
        let _ = body.collect().await;
        match classify_patch(parts.status, &parts.headers) {
            PatchOutcome::Advanced(new) => {
                *offset = new;
                if !reporter.progress(new, new >= job.size).await {
                    return Err(Stop::Again("the app is gone".into()));
                }
            }
            PatchOutcome::Conflict if last => {
                // Either our offset was stale, or the file may not be shared where asked.
                let server = head_offset(&mut conn, url, id).await?;
                if server == *offset {
                    return Err(Stop::End(TransferEvent::Failed {
                        id,
                        error: "the server would not share it (are you still in the room, \
                                or the recipient online?)"
                            .into(),
                    }));
                }
                *offset = server;
            }
            PatchOutcome::Conflict => *offset = head_offset(&mut conn, url, id).await?,
            PatchOutcome::ChecksumMismatch if last => {
                return Err(Stop::End(TransferEvent::Failed {
                    id,
                    error: "the file's SHA-256 did not match (did it change while uploading?)"
                        .into(),
                }));
            }
            PatchOutcome::ChecksumMismatch => {
                // Damaged on the way; nothing of it was kept. Send it again, a few times.
                checksum_refusals += 1;
                if checksum_refusals > 3 {
                    return Err(Stop::Again("chunks keep arriving damaged".into()));
                }
            }
            PatchOutcome::Gone => return Err(Stop::End(TransferEvent::SlotGone { id })),
            PatchOutcome::Refused(error) => {
                return Err(Stop::End(TransferEvent::Failed { id, error }));
            }
            PatchOutcome::Retry(reason) => return Err(Stop::Again(reason)),
        }
    }
    Ok(())
}

/// The server's offset (`HEAD`).
async fn head_offset(conn: &mut Conn, url: &Url, id: uuid::Uuid) -> Result<u64, Stop> {
    let req = conn
        .request(Method::HEAD, url)
        .header("tus-resumable", TUS_RESUMABLE)
        .body(Full::new(Bytes::new()))
        .map_err(|e| Stop::Again(e.to_string()))?;
    let res = conn
        .send(req)
        .await
        .map_err(|e| Stop::Again(e.to_string()))?;
    match res.status().as_u16() {
        200 | 204 => upload_offset(res.headers())
            .ok_or_else(|| Stop::Again("HEAD without Upload-Offset".into())),
        404 | 410 => Err(Stop::End(TransferEvent::SlotGone { id })),
        code => Err(Stop::Again(format!("HEAD answered {code}"))),
    }
}

/// Reads `buf.len()` bytes of `file` at `offset`.
async fn read_at(file: &mut tokio::fs::File, offset: u64, buf: &mut [u8]) -> io::Result<Bytes> {
    file.seek(SeekFrom::Start(offset)).await?;
    file.read_exact(buf).await?;
    Ok(Bytes::copy_from_slice(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(offset: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = offset {
            h.insert("upload-offset", HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn the_checksum_header_is_sha256_in_base64() {
        // `printf abc | openssl dgst -sha256 -binary | base64`
        assert_eq!(
            checksum_header(b"abc"),
            "sha256 ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn patch_answers_are_read_as_the_contract_says() {
        let ok = StatusCode::NO_CONTENT;
        assert_eq!(
            classify_patch(ok, &headers(Some("4096"))),
            PatchOutcome::Advanced(4096)
        );
        assert!(matches!(
            classify_patch(ok, &headers(None)),
            PatchOutcome::Retry(_)
        ));
        let status = |c: u16| StatusCode::from_u16(c).unwrap();
        assert_eq!(
            classify_patch(status(409), &headers(None)),
            PatchOutcome::Conflict
        );
        assert_eq!(
            classify_patch(status(460), &headers(None)),
            PatchOutcome::ChecksumMismatch
        );
        assert_eq!(
            classify_patch(status(404), &headers(None)),
            PatchOutcome::Gone
        );
        assert_eq!(
            classify_patch(status(410), &headers(None)),
            PatchOutcome::Gone
        );
        assert!(matches!(
            classify_patch(status(507), &headers(None)),
            PatchOutcome::Refused(e) if e.contains("disk is full")
        ));
        assert!(matches!(
            classify_patch(status(413), &headers(None)),
            PatchOutcome::Refused(_)
        ));
        assert!(matches!(
            classify_patch(status(503), &headers(None)),
            PatchOutcome::Retry(_)
        ));
        assert_eq!(upload_offset(&headers(Some(" 12 "))), Some(12));
        assert_eq!(upload_offset(&headers(Some("-1"))), None);
    }

    #[test]
    fn a_file_is_hashed_streaming_as_sha256sum_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("报告.pdf");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            hash_file(&path).unwrap(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
        assert!(hash_file(dir.path()).is_err(), "a directory is no file");
    }

    #[test]
    fn retries_back_off_and_are_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_millis(1000));
        assert_eq!(retry_delay(30), Duration::from_millis(8000));
    }
}
