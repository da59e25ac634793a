//! Downloading a shared file: `GET` with `Range` into `NAME.part`, resumed from what is
//! already there, SHA-256 verified at the end, then renamed to a name that is not taken.
//!
//! The name is the server's, so it is cleaned first ([`safe_name`]): nothing in it may make
//! a path outside the chosen directory, hide the file, or draw escape sequences.
//!
//! Layout:
//! - [`safe_name`] and [`numbered`]: names, pure.
//! - [`download`]: the task.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chat_shared::validate::is_invisible;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_RANGE, RANGE};
use hyper::{Method, StatusCode};
use ring::digest::{Context, SHA256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::sleep;

use crate::http::{Http, Url};
use crate::runtime::now_ms;
use crate::transfer::{DownloadJob, TransferEvent};
use crate::tus::{MAX_FAILURES, PROGRESS_EVERY_MS, hex, retry_delay};

/// Longest name kept, in bytes (file systems allow 255; `.part` and ` (12)` need room).
const MAX_NAME_BYTES: usize = 200;

/// The server's file name made safe as one path component: no `/`, `\`, control or
/// invisible characters, no leading dots (no `..`, no hidden file), no trailing dots or
/// spaces, at most 200 bytes (the extension kept); `download` when nothing is left.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|&c| !matches!(c, '/' | '\\') && !c.is_control() && !is_invisible(c))
        .collect();
    let mut s = cleaned.trim().trim_start_matches('.').trim().to_owned();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    let s = s.trim_end_matches(['.', ' ']).to_owned();
    if s.is_empty() {
        return "download".to_owned();
    }
    if s.len() <= MAX_NAME_BYTES {
        return s;
    }
    let (stem, ext) = split_ext(&s);
    let keep = MAX_NAME_BYTES.saturating_sub(ext.len());
    let mut cut = keep.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &stem[..cut])
}

/// `("报告", ".pdf")`; a name without a dot, or only a leading one, has no extension.
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && i + 1 < name.len() => name.split_at(i),
        _ => (name, ""),
    }
}

/// The `n`th alternative to `name`: `报告 (1).pdf`; 0 is the name itself.
pub fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    let (stem, ext) = split_ext(name);
    format!("{stem} ({n}){ext}")
}

/// Moves the verified `part` to the first free name in `dir`, never replacing a file: a
/// hard link fails on a taken name, atomically, where a rename would overwrite.
fn place(part: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    for n in 0..10_000 {
        let target = dir.join(numbered(name, n));
        match std::fs::hard_link(part, &target) {
            Ok(()) => {
                std::fs::remove_file(part)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // A file system without hard links: check, then rename (a race with another
            // program creating the same name at the same moment is the only risk).
            Err(_) if !target.exists() => {
                std::fs::rename(part, &target)?;
                return Ok(target);
            }
            Err(_) => {}
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free name for the file",
    ))
}

/// Downloads `job`, reporting to `events`; ends with [`TransferEvent::Saved`] or `Failed`.
pub async fn download(http: Http, job: DownloadJob, events: mpsc::Sender<TransferEvent>) {
    let end = run(&http, &job, &events).await;
    // Ignored: an app that is gone needs no report.
    let _ = events.send(end).await;
}

/// Why one attempt ended early.
enum Stop {
    End(String),
    Again(String),
}

async fn run(
    http: &Http,
    job: &DownloadJob,
    events: &mpsc::Sender<TransferEvent>,
) -> TransferEvent {
    let id = job.id;
    let failed = |error: String| TransferEvent::Failed { id, error };
    let url = match Url::parse(&job.file.url) {
        Ok(u) => u,
        Err(e) => return failed(e.to_string()),
    };
    let name = safe_name(&job.file.name);
    let part = job.dir.join(format!("{name}.part"));
    let mut restarted = false;
    'whole: loop {
        let (mut have, mut ctx) = match resume_state(&part, job.file.size).await {
            Ok(state) => state,
            Err(e) => return failed(format!("cannot read {}: {e}", part.display())),
        };
        let resumed = have > 0;
        let mut failures = 0u32;
        while have < job.file.size {
            match fetch(http, &url, &part, job, &mut have, &mut ctx, events).await {
                Ok(()) => {}
                Err(Stop::End(e)) => return failed(e),
                Err(Stop::Again(reason)) => {
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        return failed(format!("{reason} (the .part file is kept for a retry)"));
                    }
                    let retrying = TransferEvent::Retrying { id, reason };
                    if events.send(retrying).await.is_err() {
                        return failed("the app is gone".into());
                    }
                    sleep(retry_delay(failures)).await;
                }
            }
        }
        let sha = hex(ctx.finish().as_ref());
        if !sha.eq_ignore_ascii_case(&job.file.sha256) {
            // Ignored: the part is wrong either way; a leftover would only be resumed again.
            let _ = tokio::fs::remove_file(&part).await;
            if resumed && !restarted {
                // The old part may have belonged to another file of that name: once more
                // from the start.
                restarted = true;
                continue 'whole;
            }
            return failed(format!("SHA-256 mismatch (got {sha}): nothing was kept"));
        }
        let dir = job.dir.clone();
        let placed = tokio::task::spawn_blocking(move || place(&part, &dir, &name)).await;
        return match placed {
            Ok(Ok(path)) => TransferEvent::Saved { id, path },
            Ok(Err(e)) => failed(format!("cannot save it: {e}")),
            Err(e) => failed(format!("cannot save it: {e}")),
        };
    }
}

/// What is already in `part` (nothing if it is longer than the file), and the SHA-256
/// context over it.
async fn resume_state(part: &Path, size: u64) -> io::Result<(u64, Context)> {
    let mut ctx = Context::new(&SHA256);
    let mut file = match tokio::fs::File::open(part).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, ctx)),
        Err(e) => return Err(e),
    };
    if file.metadata().await?.len() > size {
        drop(file);
        tokio::fs::remove_file(part).await?;
        return Ok((0, ctx));
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        have += n as u64;
    }
    Ok((have, ctx))
}

/// One `GET` from `have`, appended to `part`.
async fn fetch(
    http: &Http,
    url: &Url,
    part: &Path,
    job: &DownloadJob,
    have: &mut u64,
    ctx: &mut Context,
    events: &mpsc::Sender<TransferEvent>,
) -> Result<(), Stop> {
    let again = |e: &dyn std::fmt::Display| Stop::Again(e.to_string());
    let mut conn = http.connect(url).await.map_err(|e| again(&e))?;
    let mut req = conn.request(Method::GET, url);
    if *have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
    }
    let req = req.body(Full::new(Bytes::new())).map_err(|e| again(&e))?;
    let res = conn.send(req).await.map_err(|e| again(&e))?;
    let append = match res.status() {
        StatusCode::PARTIAL_CONTENT => {
            let start = res
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(range_start);
            if start != Some(*have) {
                return Err(Stop::End("the server sent another part than asked".into()));
            }
            true
        }
        StatusCode::OK => {
            // The whole file (no range support, or nothing to resume): start over.
            *have = 0;
            *ctx = Context::new(&SHA256);
            false
        }
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            return Err(Stop::End("the file is no longer on the server".into()));
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            // Ignored: a part the server cannot continue is started over.
            let _ = tokio::fs::remove_file(part).await;
            *have = 0;
            *ctx = Context::new(&SHA256);
            return Err(Stop::Again(
                "the server could not resume; starting over".into(),
            ));
        }
        StatusCode::UNAUTHORIZED => {
            return Err(Stop::End("the server wants a session for downloads".into()));
        }
        code => return Err(Stop::Again(format!("server answered {code}"))),
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .await
        .map_err(|e| Stop::End(format!("cannot write {}: {e}", part.display())))?;
    let mut body = res.into_body();
    let mut last_report = 0i64;
    let result = loop {
        let frame = match tokio::time::timeout(http.timeout, body.frame()).await {
            Err(_) => break Err(Stop::Again("the download stalled".into())),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(again(&e)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            // Expected: trailers carry nothing for us.
            continue;
        };
        if *have + data.len() as u64 > job.file.size {
            break Err(Stop::End(
                "the server sent more than the file's length".into(),
            ));
        }
        if let Err(e) = file.write_all(&data).await {
            break Err(Stop::End(format!("cannot write {}: {e}", part.display())));
        }
        ctx.update(&data);
        *have += data.len() as u64;
        let at_ms = now_ms();
        if at_ms - last_report >= PROGRESS_EVERY_MS || *have == job.file.size {
            last_report = at_ms;
            let progress = TransferEvent::Progress {
                id: job.id,
                done: *have,
                at_ms,
            };
            if events.send(progress).await.is_err() {
                break Err(Stop::End("the app is gone".into()));
            }
        }
    };
    if let Err(e) = file.flush().await {
        return Err(Stop::End(format!("cannot write {}: {e}", part.display())));
    }
    result?;
    if *have < job.file.size {
        return Err(Stop::Again("the connection ended early".into()));
    }
    Ok(())
}

/// The first byte of `Content-Range: bytes START-END/LEN`.
fn range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_server_never_leave_the_directory() {
        assert_eq!(safe_name("报告.pdf"), "报告.pdf");
        assert_eq!(safe_name("../../etc/passwd"), "etcpasswd");
        assert_eq!(safe_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(safe_name("/abs/path.txt"), "abspath.txt");
        assert_eq!(safe_name(".."), "download");
        assert_eq!(safe_name("..."), "download");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("a..b"), "a.b");
        assert_eq!(
            safe_name("evil\u{1b}[2Jname\u{202e}fdp.exe"),
            "evil[2Jnamefdp.exe"
        );
        assert_eq!(safe_name("trailing. . "), "trailing");
        assert_eq!(safe_name("nul\0byte"), "nulbyte");
        assert_eq!(safe_name(""), "download");
        let long = format!("{}.pdf", "报".repeat(100));
        let cut = safe_name(&long);
        assert!(
            cut.len() <= MAX_NAME_BYTES && cut.ends_with(".pdf"),
            "{cut}"
        );
        assert!(!safe_name("x/y").contains('/'));
    }

    #[test]
    fn alternatives_are_numbered_before_the_extension() {
        assert_eq!(numbered("报告.pdf", 0), "报告.pdf");
        assert_eq!(numbered("报告.pdf", 1), "报告 (1).pdf");
        assert_eq!(numbered("README", 2), "README (2)");
        assert_eq!(numbered("a.tar.gz", 1), "a.tar (1).gz");
    }

    #[test]
    fn a_verified_file_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("报告.pdf"), b"mine").unwrap();
        std::fs::write(dir.path().join("报告 (1).pdf"), b"mine too").unwrap();
        let part = dir.path().join("报告.pdf.part");
        std::fs::write(&part, b"theirs").unwrap();
        let got = place(&part, dir.path(), "报告.pdf").unwrap();
        assert_eq!(got, dir.path().join("报告 (2).pdf"));
        assert_eq!(std::fs::read(&got).unwrap(), b"theirs");
        assert_eq!(std::fs::read(dir.path().join("报告.pdf")).unwrap(), b"mine");
        assert!(!part.exists());
    }

    #[test]
    fn content_range_gives_its_start() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
