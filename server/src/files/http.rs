//! The HTTP side of file sharing: a connection the sniffer found to speak HTTP (plain or
//! inside TLS) is served by hyper, one connection at a time, with this router:
//!
//! - `OPTIONS|HEAD|PATCH|DELETE /uploads/TOKEN`: tus 1.0 (core, `checksum` with sha256,
//!   `termination`);
//! - `GET|HEAD /files/ID/NAME`: downloads, with `Range` (tower-http's `ServeFile`).
//!
//! Everything else is 404. No handler turns anything from the request into a path: tokens
//! and ids are looked up in memory, and the file served is the one the record names.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, options};
use base64::Engine as _;
use chat_shared::ErrorCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::bulk::Bulk;
use super::upload::{Upload, WriteError};
use super::{Files, names, share};
use crate::chat::Chat;

const TUS_VERSION: &str = "1.0.0";

/// tus's status for a body that does not match its `Upload-Checksum`.
const CHECKSUM_MISMATCH: u16 = 460;

/// How much of a file one read takes (each read is one blocking call): 256 KiB keeps a
/// 1 GiB download to 4,096 of them, and a download's memory to a few of them.
const READ_CHUNK: usize = 256 * 1024;

/// How long a shutting-down server lets a request in flight finish.
const DRAIN: Duration = Duration::from_secs(2);

/// HTTP as the server serves it: the router, and the runtime its connections run on.
pub(crate) struct HttpSide {
    pub(crate) router: axum::Router,
    pub(crate) bulk: Bulk,
}

impl HttpSide {
    /// Built once per server, from within the chat's runtime.
    ///
    /// # Errors
    /// The transfers' runtime could not be started.
    pub(crate) fn new(chat: Arc<Chat>, files: Arc<Files>, stall: Duration) -> io::Result<Self> {
        let bulk = Bulk::start(files.config().nice)?;
        let app = App {
            chat,
            files,
            stall,
            chat_runtime: Handle::current(),
        };
        Ok(Self {
            router: router(app),
            bulk,
        })
    }
}

/// What the handlers share.
#[derive(Clone)]
struct App {
    chat: Arc<Chat>,
    files: Arc<Files>,
    /// How long a request body may send nothing (`--write-timeout`: progress, either way).
    stall: Duration,
    /// Where sharing a file runs: posting may start a room's long-lived tasks (a cluster
    /// room's publisher), which belong with the chat, not at the transfers' priority.
    chat_runtime: Handle,
}

fn router(app: App) -> axum::Router {
    axum::Router::new()
        .route(
            "/uploads/{token}",
            options(tus_options)
                .head(tus_head)
                .patch(tus_patch)
                .delete(tus_delete),
        )
        .route("/files/{id}/{name}", get(download))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such thing here\n") })
        .with_state(app)
}

/// Serves one HTTP/1.1 connection until the client is done or `stop`; then requests in
/// flight get [`DRAIN`] to finish. A client gets `header_timeout` for each request's head.
pub(crate) async fn serve<IO>(
    io: IO,
    router: axum::Router,
    stop: CancellationToken,
    header_timeout: Duration,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let done = tokio::select! {
        done = conn.as_mut() => done,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN, conn.as_mut()).await {
                Ok(done) => done,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = done {
        debug!(error = %e, "HTTP connection ended");
    }
}

fn tus(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

fn status(code: StatusCode, text: &str) -> Response {
    tus((code, format!("{text}\n")).into_response())
}

/// tus requires `Tus-Resumable` on every request but `OPTIONS`: the refusal of one
/// without it.
fn wrong_version(headers: &HeaderMap) -> Option<Response> {
    if headers
        .get("tus-resumable")
        .is_some_and(|v| v == TUS_VERSION)
    {
        return None;
    }
    let mut refused = status(
        StatusCode::PRECONDITION_FAILED,
        "this server speaks tus 1.0.0",
    );
    refused
        .headers_mut()
        .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    Some(refused)
}

fn with_offset(mut response: Response, offset: u64) -> Response {
    response
        .headers_mut()
        .insert("upload-offset", HeaderValue::from(offset));
    response
}

async fn tus_options(State(app): State<App>) -> Response {
    let mut response = status(StatusCode::NO_CONTENT, "");
    *response.body_mut() = Body::empty();
    let h = response.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert(
        "tus-extension",
        HeaderValue::from_static("checksum,termination"),
    );
    h.insert("tus-checksum-algorithm", HeaderValue::from_static("sha256"));
    h.insert(
        "tus-max-size",
        HeaderValue::from(app.files.config().max_file_size),
    );
    response
}

/// The live upload a tus request names, or the refusal of the request.
fn upload_for(app: &App, token: &str, headers: &HeaderMap) -> Result<Arc<Upload>, Box<Response>> {
    if let Some(refused) = wrong_version(headers) {
        return Err(Box::new(refused));
    }
    app.files.upload(token).ok_or_else(|| {
        Box::new(status(
            StatusCode::NOT_FOUND,
            "no such upload (expired, finished or abandoned)",
        ))
    })
}

async fn tus_head(
    State(app): State<App>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let upload = match upload_for(&app, &token, &headers) {
        Ok(upload) => upload,
        Err(refused) => return *refused,
    };
    let mut response = with_offset(status(StatusCode::OK, ""), upload.offset());
    *response.body_mut() = Body::empty();
    let h = response.headers_mut();
    h.insert("upload-length", HeaderValue::from(upload.size));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn tus_delete(
    State(app): State<App>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let upload = match upload_for(&app, &token, &headers) {
        Ok(upload) => upload,
        Err(refused) => return *refused,
    };
    app.files.abandon(&upload);
    status(StatusCode::NO_CONTENT, "")
}

/// `sha256 BASE64` → the digest; `Err` for another algorithm or a malformed value.
fn parse_checksum(value: &HeaderValue) -> Result<[u8; 32], &'static str> {
    let value = value.to_str().map_err(|_| "Upload-Checksum is not text")?;
    let (algorithm, digest) = value
        .split_once(' ')
        .ok_or("Upload-Checksum is ALGORITHM BASE64")?;
    if algorithm != "sha256" {
        return Err("the only checksum algorithm is sha256");
    }
    base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
        .ok_or("Upload-Checksum's digest is not 32 bytes of base64")
}

async fn tus_patch(
    State(app): State<App>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let upload = match upload_for(&app, &token, headers) {
        Ok(upload) => upload,
        Err(refused) => return *refused,
    };
    if headers
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v != "application/offset+octet-stream")
    {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/offset+octet-stream",
        );
    }
    let Some(offset) = headers
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return status(
            StatusCode::BAD_REQUEST,
            "Upload-Offset is missing or not a number",
        );
    };
    let checksum = match headers.get("upload-checksum").map(parse_checksum) {
        None => None,
        Some(Ok(digest)) => Some(digest),
        Some(Err(why)) => return status(StatusCode::BAD_REQUEST, why),
    };
    if upload.kept().is_some() {
        // Complete already, its share waiting for its uploader: maybe it is back.
        return published(&app, &upload, upload.size).await;
    }
    // Memory for uploads in flight is bounded server-wide: a request waits its turn, for
    // as long as a client may stall, then is told to come back.
    let Ok(Ok(_writing)) =
        tokio::time::timeout(app.stall, Arc::clone(&app.files.writing).acquire_owned()).await
    else {
        let mut busy = status(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads are being written right now; retry",
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return busy;
    };
    let counters = &app.chat.ops.metrics.files;
    let (at, whole) = match upload.append(offset, body, checksum, app.stall).await {
        Ok(done) => done,
        Err(e) => {
            match &e {
                WriteError::Aborted(now) => {
                    counters.upload_bytes.inc_by(now.saturating_sub(offset));
                }
                WriteError::Disk(_) => counters.failed("disk"),
                _ => {}
            }
            return refused_write(&e);
        }
    };
    counters.upload_bytes.inc_by(at.saturating_sub(offset));
    let Some(matches) = whole else {
        return with_offset(status(StatusCode::NO_CONTENT, ""), at);
    };
    if !matches {
        counters.failed("checksum");
        app.files.abandon(&upload);
        let text = format!(
            "{} arrived whole but its SHA-256 is not the one announced: it was deleted, upload \
             it again",
            upload.name
        );
        share::tell(
            &app.chat,
            &upload,
            ErrorCode::ChecksumMismatch,
            text.clone(),
        );
        return status(checksum_status(), &text);
    }
    finish(&app, &upload, at).await
}

/// Keeps a verified upload and shares it.
async fn finish(app: &App, upload: &Arc<Upload>, at: u64) -> Response {
    let files = Arc::clone(&app.files);
    let kept = {
        let upload = Arc::clone(upload);
        tokio::task::spawn_blocking(move || files.keep(&upload)).await
    };
    match kept {
        Ok(Ok(_)) => published(app, upload, at).await,
        Ok(Err(e)) => {
            app.chat.ops.metrics.files.failed("disk");
            warn!(error = %e, "an uploaded file could not be kept");
            let text = format!("{} could not be stored: {e}", upload.name);
            share::tell(&app.chat, upload, ErrorCode::Unavailable, text.clone());
            status(disk_status(&e), &text)
        }
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Shares a kept upload, and says how that went: 204 when shared or waiting for its
/// uploader to come back (the upload itself is complete either way), 409 when refused.
async fn published(app: &App, upload: &Arc<Upload>, at: u64) -> Response {
    let (chat, files, shared) = (
        Arc::clone(&app.chat),
        Arc::clone(&app.files),
        Arc::clone(upload),
    );
    let publishing = app
        .chat_runtime
        .spawn(async move { share::publish(&chat, &files, &shared) });
    match publishing.await {
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Ok(share::Published::Shared | share::Published::Waiting) => {
            with_offset(status(StatusCode::NO_CONTENT, ""), at)
        }
        Ok(share::Published::Refused(e)) => status(
            StatusCode::CONFLICT,
            &format!("{} was not shared: {e}", upload.name),
        ),
    }
}

fn checksum_status() -> StatusCode {
    StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST)
}

/// 507 for a full disk (or a file-size limit, which looks the same to a client).
fn disk_status(e: &std::io::Error) -> StatusCode {
    use std::io::ErrorKind::{FileTooLarge, StorageFull};
    if matches!(e.kind(), StorageFull | FileTooLarge) {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

fn refused_write(e: &WriteError) -> Response {
    let text = e.to_string();
    match e {
        WriteError::Busy => status(StatusCode::CONFLICT, &text),
        WriteError::Offset(at) => with_offset(status(StatusCode::CONFLICT, &text), *at),
        WriteError::TooLong => status(StatusCode::PAYLOAD_TOO_LARGE, &text),
        WriteError::Checksum => status(checksum_status(), &text),
        WriteError::Aborted(at) => with_offset(status(StatusCode::BAD_REQUEST, &text), *at),
        WriteError::Disk(io) => {
            warn!(error = %io, "an upload could not be written");
            status(disk_status(io), &text)
        }
    }
}

/// `GET`/`HEAD /files/ID/NAME`. The name is for people; the id alone decides.
async fn download(
    State(app): State<App>,
    Path((id, _name)): Path<(String, String)>,
    request: Request,
) -> Response {
    if app.files.config().require_auth && !authorised(&app.chat, request.headers()) {
        let mut refused = (
            StatusCode::UNAUTHORIZED,
            "this server wants Authorization: Bearer SESSION (the session id of a \
             connection online now)\n",
        )
            .into_response();
        refused
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refused;
    }
    let Some((blob, file)) = app.files.download(&id) else {
        return (
            StatusCode::NOT_FOUND,
            "no such file (expired or never shared)\n",
        )
            .into_response();
    };
    let etag = format!("\"{}\"", file.sha256);
    if request
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let served = tower_http::services::ServeFile::new(blob)
        .with_buf_chunk_size(READ_CHUNK)
        .oneshot(request)
        .await;
    let mut response = match served {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if response.status().is_success() {
        app.chat.ops.metrics.files.downloads.inc();
    }
    let h = response.headers_mut();
    // Never shown as a page, whatever it holds: uploaded HTML must not run as this site.
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Ok(value) = HeaderValue::from_str(&names::content_disposition(&file.name)) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    response
}

/// `Authorization: Bearer SESSION` naming a connection that is online now.
fn authorised(chat: &Chat, headers: &HeaderMap) -> bool {
    let Some(session) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|v| v.trim().parse::<uuid::Uuid>().ok())
    else {
        return false;
    };
    chat.ops.is_open(session)
}
