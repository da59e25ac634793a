//! Password hashes: Argon2id through the `argon2` crate, stored as PHC strings.
//!
//! The parameters are the crate's defaults, RFC 9106's second recommendation as OWASP
//! gives it: Argon2id, 19 MiB of memory, 2 passes, 1 lane, a 16-byte random salt per hash,
//! a 32-byte output. The PHC string carries its own parameters, so a later change of them
//! still verifies old hashes. A hash takes tens of milliseconds of one core and 19 MiB:
//! callers run it on the blocking pool, a few at a time (see `Auth`).

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Why a hash could not be made or checked (never because the password was wrong).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub(crate) struct HashError(String);

/// A new PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for `password`, salted afresh.
///
/// # Errors
/// The system's random source failed.
pub(crate) fn hash(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` is the one `phc` was made from. A malformed stored hash never
/// matches.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_never_contains_it() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterx", &phc));
        assert!(!verify("correct horse battery", "not a hash"));
        // Salted per hash: the same password hashes differently.
        assert_ne!(hash("correct horse battery").unwrap(), phc);
    }
}
