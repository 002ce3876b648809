//! Where an app-server listens, and the capability token it asks of every client.
//!
//! A loopback port is open to every local user, so the runner starts its app-server with
//! `--ws-auth capability-token`: only a client that sends `Authorization: Bearer <token>`
//! gets past the WebSocket handshake. The token stays in the runner's memory (and the
//! environment of the TUI it opens); the app-server gets only its SHA-256.
use std::fmt;
use std::path::Path;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A secret that lets a client drive an app-server. Never printed: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct CapabilityToken(String);

impl CapabilityToken {
    /// 256 random bits, as hex.
    pub fn generate() -> CapabilityToken {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        CapabilityToken::remembered(hex(&bytes))
    }

    /// The token in a file (as `codex app-server --ws-token-file` reads it), trimmed.
    pub fn from_file(path: &Path) -> Result<CapabilityToken, String> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            format!(
                "cannot read the Codex token file {}: {error}",
                path.display()
            )
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("the Codex token file {} is empty", path.display()));
        }
        Ok(CapabilityToken::remembered(token.to_owned()))
    }

    fn remembered(token: String) -> CapabilityToken {
        crate::secrets::remember(&token);
        CapabilityToken(token)
    }

    /// What `--ws-token-sha256` expects: the token's SHA-256 as hex.
    pub fn sha256_hex(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// The token itself, for the `Authorization` header and the TUI's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CapabilityToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("CapabilityToken(REDACTED)")
    }
}

/// An app-server's `ws://` URL and the token it asks for (`None`: it asks for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppServerAddress {
    pub url: String,
    pub token: Option<CapabilityToken>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_never_debug_printed() {
        let (one, two) = (CapabilityToken::generate(), CapabilityToken::generate());
        assert_ne!(one, two);
        assert_eq!(one.expose().len(), 64);
        assert!(!format!("{one:?}").contains(one.expose()));
        let address = AppServerAddress {
            url: "ws://127.0.0.1:1".into(),
            token: Some(one.clone()),
        };
        assert!(!format!("{address:?}").contains(one.expose()));
    }

    #[test]
    fn the_digest_is_the_sha256_of_the_token() {
        let token = CapabilityToken("abc".into());
        assert_eq!(
            token.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_token_file_is_trimmed_and_must_hold_something() {
        let dir = std::env::temp_dir().join(format!("linzumi-token-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "secret\n").unwrap();
        assert_eq!(
            CapabilityToken::from_file(&file).unwrap().expose(),
            "secret"
        );
        std::fs::write(&file, " \n").unwrap();
        assert!(
            CapabilityToken::from_file(&file)
                .unwrap_err()
                .contains("is empty")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
