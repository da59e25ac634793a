//! TLS on the plain port: the acceptor, the certificate it presents, and its reload.
//!
//! rustls with the `ring` provider (no aws-lc: the build needs only a C compiler), TLS 1.2
//! and 1.3 only. The certificate is not fixed in the rustls config but given by a resolver
//! that holds the current one: a reload swaps it there, so a renewed certificate is served
//! to every new handshake while connections already established keep theirs untouched.
//! A reload that fails keeps the certificate in use; only the start refuses to run
//! without a usable one.
//!
//! Files are PEM. A self-signed certificate (`TlsSource::SelfSigned`) is two files in the
//! data directory, generated with rcgen when neither exists and reused after that, so its
//! fingerprint, which clients pin, stays the same across restarts.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::info;

use crate::config::TlsSource;

/// The self-signed certificate's file in the data directory.
pub(crate) const SELF_SIGNED_CERT: &str = "tls-self-signed-cert.pem";
/// The self-signed certificate's private key in the data directory.
pub(crate) const SELF_SIGNED_KEY: &str = "tls-self-signed-key.pem";

/// Why the certificate could not be loaded (or made). Each names the file at fault, since
/// that is what the person starting the server has to fix.
#[derive(Debug, Error)]
pub(crate) enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not a valid PEM certificate file: {source}", path.display())]
    Certificate { path: PathBuf, source: pem::Error },
    #[error("{} holds no usable PEM private key: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The server's TLS side: accepts handshakes with the current certificate.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    /// Loads the certificate (generating the self-signed one if it is missing) and logs its
    /// fingerprint.
    ///
    /// # Errors
    /// A file that is missing, unreadable or not PEM, a key that does not match the
    /// certificate, or a self-signed certificate that cannot be written.
    pub(crate) fn new(source: &TlsSource) -> Result<Self, TlsError> {
        let (cert, key) = match source {
            TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
            TlsSource::SelfSigned { dir } => {
                let (cert, key) = (dir.join(SELF_SIGNED_CERT), dir.join(SELF_SIGNED_KEY));
                if !cert.exists() && !key.exists() {
                    generate(dir, &cert, &key)?;
                    info!(
                        "generated a self-signed TLS certificate in {}",
                        cert.display()
                    );
                }
                (cert, key)
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = load(&provider, &cert, &key)?;
        info!(
            "TLS certificate {}, SHA-256 fingerprint {}",
            cert.display(),
            fingerprint(leaf(&current))
        );
        let resolver = Arc::new(Resolver(RwLock::new(Arc::new(current))));
        let config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            provider,
            cert,
            key,
        })
    }

    /// Reads the files again and, if they hold a valid pair, serves it to every handshake
    /// from now on; returns its fingerprint.
    ///
    /// # Errors
    /// As for [`Tls::new`]; the certificate in use stays.
    pub(crate) fn reload(&self) -> Result<String, TlsError> {
        let fresh = load(&self.provider, &self.cert, &self.key)?;
        let fingerprint = fingerprint(leaf(&fresh));
        *self
            .resolver
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(fingerprint)
    }

    /// The server side of a handshake over `io`.
    ///
    /// # Errors
    /// Anything that is not a TLS 1.2 or 1.3 ClientHello this server can answer, or the
    /// connection's failure.
    pub(crate) async fn accept<IO>(&self, io: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(io).await
    }
}

/// Hands every handshake the certificate current at that moment.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// The certificate chain in `cert` with the private key in `key`, checked to belong
/// together.
fn load(provider: &CryptoProvider, cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Certificate {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let bad_key = |reason: String| TlsError::Key {
        path: key.to_owned(),
        reason,
    };
    let private = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| bad_key(e.to_string()))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
        other => bad_key(other.to_string()),
    })
}

fn leaf(key: &CertifiedKey) -> &CertificateDer<'static> {
    // `load` refuses an empty chain.
    &key.cert[0]
}

/// A certificate's SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it:
/// uppercase hex pairs joined by colons.
pub(crate) fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let mut out = String::with_capacity(digest.as_ref().len() * 3);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Makes a self-signed certificate for `localhost` and the loopback addresses and writes it
/// and its key (readable by the owner only) into `dir`.
fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let made = rcgen::generate_simple_self_signed(names.to_vec())?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write_new(key, made.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, made.cert.pem().as_bytes(), 0o644)
}

/// Creates `path` (never overwriting one) with `mode` on Unix.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn files(cert: &Path, key: &Path) -> TlsSource {
        TlsSource::Files {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }
    }

    #[test]
    fn fingerprint_is_openssl_style() {
        let fp = fingerprint(&CertificateDer::from(b"abc".to_vec()));
        assert_eq!(
            fp,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn startup_errors_name_the_file_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, key_a) = pair(dir.path(), "a");
        let (_, key_b) = pair(dir.path(), "b");
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();

        let err = |source| Tls::new(&source).err().expect("refused").to_string();
        let e = err(files(&missing, &key_a));
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        let e = err(files(&cert_a, &missing));
        assert!(e.contains("missing.pem"), "{e}");
        let e = err(files(&garbage, &key_a));
        assert!(
            e.contains("garbage.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = err(files(&cert_a, &garbage));
        assert!(
            e.contains("garbage.pem") && e.contains("private key"),
            "{e}"
        );
        let e = err(files(&key_a, &key_a));
        assert!(e.contains("a.key"), "a key given as the certificate: {e}");
        let e = err(files(&cert_a, &key_b));
        assert!(
            e.contains("b.key") && e.contains("a.crt") && e.contains("does not belong"),
            "{e}"
        );
        assert!(Tls::new(&files(&cert_a, &key_a)).is_ok());
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate_and_a_good_one_swaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "live");
        let tls = Tls::new(&files(&cert, &key)).unwrap();
        let served = || fingerprint(leaf(&tls.resolver.0.read().unwrap()));
        let before = served();

        std::fs::write(&key, "truncated").unwrap();
        let e = tls.reload().unwrap_err().to_string();
        assert!(e.contains("live.key"), "{e}");
        assert_eq!(
            served(),
            before,
            "a failed reload keeps the old certificate"
        );

        let (new_cert, new_key) = pair(dir.path(), "renewed");
        std::fs::rename(new_cert, &cert).unwrap();
        std::fs::rename(new_key, &key).unwrap();
        let after = tls.reload().unwrap();
        assert_ne!(after, before);
        assert_eq!(served(), after);
    }

    #[test]
    fn self_signed_is_generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let source = TlsSource::SelfSigned { dir: data.clone() };
        let first = Tls::new(&source).unwrap();
        let pem = std::fs::read(data.join(SELF_SIGNED_CERT)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(SELF_SIGNED_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the key is the owner's alone");
        }
        let second = Tls::new(&source).unwrap();
        assert_eq!(std::fs::read(data.join(SELF_SIGNED_CERT)).unwrap(), pem);
        assert_eq!(first.reload().unwrap(), second.reload().unwrap());

        std::fs::remove_file(data.join(SELF_SIGNED_KEY)).unwrap();
        let e = Tls::new(&source).err().expect("half a pair").to_string();
        assert!(e.contains(SELF_SIGNED_KEY), "{e}");
    }
}
