//! Ingest tokens: how the Worker authenticates telemetry without storing anything.
//!
//! After a device login succeeds the Worker mints `pit1.<install id>.<expiry>.<mac>`, where
//! the MAC is HMAC-SHA256 with a Worker secret over everything before it. Verifying needs
//! only that secret and the clock, so there is no table of issued tokens; a token dies at
//! its expiry (30 days), and rotating the secret revokes them all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: &str = "pit1";
/// How long a minted token is accepted. A refresh of the login mints a new one.
pub const LIFETIME_SECS: u64 = 30 * 24 * 60 * 60;
/// Shorter keys make forgeable tokens; the README asks for 32 random bytes.
pub const MIN_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the ingest token is malformed")]
    Malformed,
    #[error("the ingest token's signature does not match")]
    BadSignature,
    #[error("the ingest token expired")]
    Expired,
    #[error("the install id must be 8 to 64 letters, digits, '-' or '_'")]
    BadInstallId,
    #[error("the Worker's INGEST_TOKEN_KEY is missing or shorter than {MIN_KEY_LEN} bytes")]
    WeakKey,
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub install_id: String,
    pub expires_at: u64,
}

/// Install ids are chosen by the client; they end up in a token and in trace resources,
/// so only a narrow, harmless alphabet is accepted.
pub fn valid_install_id(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn mac(key: &[u8], message: &str) -> Result<Hmac<Sha256>, TokenError> {
    if key.len() < MIN_KEY_LEN {
        return Err(TokenError::WeakKey);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| TokenError::WeakKey)?;
    mac.update(message.as_bytes());
    Ok(mac)
}

/// A token for `install_id`, valid until `now + LIFETIME_SECS`.
pub fn mint(key: &[u8], install_id: &str, now: u64) -> Result<(String, u64), TokenError> {
    if !valid_install_id(install_id) {
        return Err(TokenError::BadInstallId);
    }
    let expires_at = now + LIFETIME_SECS;
    let message = format!("{VERSION}.{install_id}.{expires_at}");
    let tag = mac(key, &message)?.finalize().into_bytes();
    Ok((format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag)), expires_at))
}

/// Checks the signature (in constant time) and the expiry.
pub fn verify(key: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    let (message, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let mut parts = message.split('.');
    let (Some(VERSION), Some(install_id), Some(expiry), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if !valid_install_id(install_id) {
        return Err(TokenError::Malformed);
    }
    let expires_at: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
    mac(key, message)?.verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
    if now >= expires_at {
        return Err(TokenError::Expired);
    }
    Ok(Claims { install_id: install_id.to_string(), expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_764_720_000;

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let (token, expires_at) = mint(KEY, "install-0001", NOW).unwrap();
        assert!(token.starts_with("pit1.install-0001."));
        let claims = verify(KEY, &token, NOW + 10).unwrap();
        assert_eq!(claims.install_id, "install-0001");
        assert_eq!(claims.expires_at, expires_at);
        assert_eq!(verify(KEY, &token, expires_at), Err(TokenError::Expired));
    }

    #[test]
    fn another_key_or_an_edited_claim_fails() {
        let (token, _) = mint(KEY, "install-0001", NOW).unwrap();
        let other_key = b"fedcba9876543210fedcba9876543210";
        assert_eq!(verify(other_key, &token, NOW), Err(TokenError::BadSignature));
        let longer =
            token.replacen(&format!(".{}.", NOW + LIFETIME_SECS), &format!(".{}.", NOW + 10 * LIFETIME_SECS), 1);
        assert_eq!(verify(KEY, &longer, NOW), Err(TokenError::BadSignature));
        let someone_else = token.replacen("install-0001", "install-0002", 1);
        assert_eq!(verify(KEY, &someone_else, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for token in [
            "",
            "pit1",
            "pit1.a.b.c",
            "pit2.install-0001.1.AAAA",
            "pit1.install-0001.soon.AAAA",
            "pit1.install-0001.9.%%%",
            "pit1.x.y.z.w",
        ] {
            assert_eq!(verify(KEY, token, NOW), Err(TokenError::Malformed), "{token:?}");
        }
    }

    #[test]
    fn weak_keys_and_odd_install_ids_are_refused() {
        assert_eq!(mint(b"short", "install-0001", NOW), Err(TokenError::WeakKey));
        assert_eq!(mint(KEY, "short", NOW), Err(TokenError::BadInstallId));
        assert_eq!(mint(KEY, "has.dots.in.it", NOW), Err(TokenError::BadInstallId));
        assert_eq!(mint(KEY, "alice@example.com", NOW), Err(TokenError::BadInstallId));
    }
}
