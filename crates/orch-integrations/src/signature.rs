//! HMAC-SHA256 over a raw body, as lowercase hex: the signature convention of the webhooks orch
//! receives (Plane, Gitea/Forgejo, GitHub) and of the notifications it sends. One implementation
//! for both directions, so what orch checks and what it signs cannot drift apart.
//!
//! Never: compare a signature with `==` (timing); [`verify_hex`] compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The hex HMAC-SHA256 of `body` under `secret`.
pub fn sign_hex(secret: &[u8], body: &[u8]) -> String {
    hex::encode(mac(secret, body).finalize().into_bytes())
}

/// Whether `signature_hex` is the HMAC-SHA256 of `body` under `secret`, compared in constant
/// time. Anything that is not hex is `false`.
pub fn verify_hex(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    mac(secret, body).verify_slice(&signature).is_ok()
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC is defined for keys of every length (long keys are hashed first), so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let good = sign_hex(b"secret", b"body");
        assert!(verify_hex(b"secret", b"body", &good));
        assert!(!verify_hex(b"other", b"body", &good));
        assert!(!verify_hex(b"secret", b"body!", &good));
        assert!(!verify_hex(b"secret", b"body", "not hex"));
        assert!(!verify_hex(b"secret", b"body", ""));
    }
}
