//! The TLS client: which certificates chat-tui trusts, and the verifier that adds trust on
//! first use to the usual checks.
//!
//! rustls with the `ring` provider, as the server (the build needs only a C compiler).
//! Certificates are verified as any TLS client does (webpki: chain to a root, validity,
//! the host name), against the system's roots or, with `--tls-ca`, that file's only. A
//! server whose certificate does not chain to a trusted root (a self-signed one) is then
//! judged by its fingerprint, as ssh judges host keys: accepted if it is the one pinned for
//! this server, refused with [`TrustError::Changed`] if another one was pinned, and refused
//! with [`TrustError::Unknown`] (carrying the fingerprint to show the user) if none was.
//! With `--tls-ca` there is no such fallback: the user named what to trust.
//!
//! The refusals travel inside rustls' error out of the handshake; [`trust_error`] gets
//! them back, so the caller can tell "ask the user" from a network failure.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use thiserror::Error;
use tokio_rustls::TlsConnector;

/// Why TLS could not be set up (before any connection).
#[derive(Debug, Error)]
pub enum TlsError {
    /// `--tls-ca` cannot be read or is not PEM.
    #[error("{}: not a readable PEM certificate file: {source}", path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: pem::Error,
    },
    /// `--tls-ca` holds no certificate rustls accepts as a root.
    #[error("{} holds no usable CA certificate", path.display())]
    NoCa {
        /// The file.
        path: PathBuf,
    },
    /// The host cannot be a TLS server name.
    #[error("{0:?} cannot be checked against a certificate")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

/// What trust on first use refuses during a handshake.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TrustError {
    /// Not signed by a trusted authority, and no fingerprint is remembered for the server.
    #[error(
        "the server's certificate is not signed by a trusted authority (SHA-256 {fingerprint}); \
         restart chat-tui to check and accept it"
    )]
    Unknown {
        /// The presented certificate's fingerprint.
        fingerprint: String,
    },
    /// Not the certificate remembered for this server.
    #[error(
        "REMOTE HOST IDENTIFICATION HAS CHANGED: the server's certificate is {presented}, \
         not the {expected} remembered; not connecting"
    )]
    Changed {
        /// The remembered fingerprint.
        expected: String,
        /// The presented one.
        presented: String,
    },
}

/// Which authorities vouch for a server.
#[derive(Debug, Clone)]
pub enum Roots {
    /// The system's roots, then trust on first use for a certificate none of them signed.
    System,
    /// Only the certificates of `--tls-ca` (PEM); no trust on first use.
    CaFile(PathBuf),
}

/// A connector and the name the certificate must carry: everything a connection needs.
#[derive(Clone)]
pub struct TlsClient {
    /// The rustls connector (its config holds the verifier).
    pub connector: TlsConnector,
    /// The host as TLS checks it (a DNS name or an IP address).
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A client for `host`, trusting `roots`, and, under [`Roots::System`], the certificate
    /// with fingerprint `pinned` (the one the user accepted for this server).
    ///
    /// # Errors
    /// An unreadable or empty `--tls-ca`, a host that is no server name, or rustls refusing
    /// the setup.
    pub fn new(host: &str, roots: &Roots, pinned: Option<String>) -> Result<Self, TlsError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError::ServerName(host.to_owned()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (store, tofu) = match roots {
            Roots::System => (system_roots(), true),
            Roots::CaFile(path) => (ca_file(path)?, false),
        };
        // An empty system store (a container without ca-certificates) leaves only trust
        // on first use; webpki's builder refuses to verify against nothing.
        let webpki = if store.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Setup(rustls::Error::General(e.to_string())))?,
            )
        };
        let verifier = Verifier {
            webpki,
            tofu,
            pinned,
            provider: provider.clone(),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The same trust (connector and verifier, pinned fingerprint included) for another
    /// host name: what a file link on the chat server's public URL is checked with.
    ///
    /// # Errors
    /// A host that is no server name.
    pub fn for_host(&self, host: &str) -> Result<Self, TlsError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError::ServerName(host.to_owned()))?;
        Ok(Self {
            connector: self.connector.clone(),
            name,
        })
    }
}

/// The system's roots; certificates it cannot parse are skipped, as every client does (a
/// store with one odd entry must not stop TLS).
fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    store
}

fn ca_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let read_err = |source| TlsError::ReadCa {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(certs);
    if store.is_empty() {
        return Err(TlsError::NoCa {
            path: path.to_owned(),
        });
    }
    Ok(store)
}

/// A certificate's SHA-256 fingerprint as the server logs it (and as
/// `openssl x509 -noout -fingerprint -sha256` prints it): uppercase hex pairs and colons.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(96), |mut out, byte| {
            let sep = if out.is_empty() { "" } else { ":" };
            // Writing to a String cannot fail.
            let _ = write!(out, "{sep}{byte:02X}");
            out
        })
}

/// The trust refusal inside a failed handshake's error, if that is why it failed.
pub fn trust_error(err: &io::Error) -> Option<&TrustError> {
    let mut source: Option<&(dyn StdError + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(e) = source {
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other)))) =
            e.downcast_ref::<rustls::Error>()
        {
            return other.downcast_ref::<TrustError>();
        }
        source = e.source();
    }
    None
}

/// webpki's verdict, then the pinned fingerprint for a certificate no root vouches for.
#[derive(Debug)]
struct Verifier {
    /// `None` when there are no roots at all.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// Whether an unknown issuer falls back to the fingerprint (not with `--tls-ca`).
    tofu: bool,
    pinned: Option<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(CertificateError::UnknownIssuer.into()),
        };
        match verdict {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if self.tofu =>
            {
                let presented = fingerprint(end_entity);
                let refusal = match &self.pinned {
                    Some(expected) if *expected == presented => {
                        return Ok(ServerCertVerified::assertion());
                    }
                    Some(expected) => TrustError::Changed {
                        expected: expected.clone(),
                        presented,
                    },
                    None => TrustError::Unknown {
                        fingerprint: presented,
                    },
                };
                Err(CertificateError::Other(OtherError(Arc::new(refusal))).into())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_the_servers_format() {
        let fp = fingerprint(&CertificateDer::from(b"abc".to_vec()));
        // `printf abc | sha256sum`
        assert_eq!(
            fp,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn a_trust_refusal_is_found_inside_an_io_error() {
        let refusal = TrustError::Unknown {
            fingerprint: "AA".into(),
        };
        let rustls_err: rustls::Error =
            CertificateError::Other(OtherError(Arc::new(refusal.clone()))).into();
        let io_err = io::Error::new(io::ErrorKind::InvalidData, rustls_err);
        assert_eq!(trust_error(&io_err), Some(&refusal));
        let other = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(trust_error(&other), None);
        assert_eq!(
            trust_error(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            None
        );
    }

    #[test]
    fn a_bad_ca_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = TlsClient::new("localhost", &Roots::CaFile(path.clone()), None).unwrap_err();
        assert!(matches!(err, TlsError::NoCa { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = TlsClient::new("localhost", &Roots::CaFile(missing), None).unwrap_err();
        assert!(matches!(err, TlsError::ReadCa { .. }), "{err}");
    }
}
