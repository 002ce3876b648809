//! PKCE (RFC 7636, method S256), as RFC 8252 §8.1 requires of native apps: each
//! authorization makes a fresh secret verifier and sends Kandan only its SHA-256 (the
//! challenge); the code exchange must then bring the verifier. An app that intercepts the
//! code on its way back (another program on the loopback port, another app registered for
//! `linzumi://`) cannot exchange it.
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The `code_challenge_method` sent with every authorization.
pub const CODE_CHALLENGE_METHOD: &str = "S256";

/// Why a string cannot be a code verifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a PKCE code verifier is 43 to 128 characters from A-Z, a-z, 0-9 and -._~")]
pub struct InvalidVerifier;

/// The secret half of PKCE. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl CodeVerifier {
    /// 32 bytes from the thread-local CSPRNG (ChaCha, seeded from the operating system),
    /// base64url without padding: 43 characters, 256 bits (RFC 7636 §4.1's recommendation).
    pub fn generate() -> CodeVerifier {
        CodeVerifier(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
    }

    /// A given verifier (a test's, or a known-answer vector), checked for RFC 7636's shape.
    pub fn new(verifier: impl Into<String>) -> Result<CodeVerifier, InvalidVerifier> {
        let verifier = verifier.into();
        let unreserved =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if (43..=128).contains(&verifier.len()) && verifier.bytes().all(unreserved) {
            Ok(CodeVerifier(verifier))
        } else {
            Err(InvalidVerifier)
        }
    }

    /// The verifier itself, for the token exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `BASE64URL(SHA256(verifier))` without padding: what the authorize URL carries.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeVerifier(REDACTED)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_rfc_7636_s256_of_the_verifier() {
        // RFC 7636 Appendix B.
        let verifier = CodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(
            verifier.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_fresh_well_formed_and_hidden() {
        let (a, b) = (CodeVerifier::generate(), CodeVerifier::generate());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(CodeVerifier::new(a.expose()), Ok(a.clone()));
        assert_eq!(a.challenge().len(), 43);
        assert_ne!(a.challenge(), a.expose());
        assert_eq!(format!("{a:?}"), "CodeVerifier(REDACTED)");
    }

    #[test]
    fn malformed_verifiers_are_refused() {
        for bad in [
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+", "a".repeat(42)),
        ] {
            assert_eq!(CodeVerifier::new(bad), Err(InvalidVerifier));
        }
        assert!(CodeVerifier::new("a".repeat(128)).is_ok());
        assert!(CodeVerifier::new(format!("{}-._~", "a".repeat(39))).is_ok());
    }
}
