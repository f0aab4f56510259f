//! Respondent keys: the keyed HMAC that replaces raw respondent ids before
//! an interview leaves ingest.
//!
//! The key is HMAC-SHA256 of the respondent id under a configured secret, as
//! lowercase hex. The same id always gives the same key (so the aggregator
//! can find duplicate respondents), but without the secret a key cannot be
//! linked back to an id, not even by trying every plausible id.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Turns respondent ids into respondent keys. Holds the secret; its `Debug`
/// output does not show it.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// The HMAC state after absorbing the key, cloned for each id.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer { .. }")
    }
}

impl Pseudonymizer {
    /// A pseudonymizer keyed by `secret` (any length; HMAC hashes long keys).
    pub fn new(secret: &[u8]) -> Pseudonymizer {
        // HMAC accepts keys of every length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Pseudonymizer { mac }
    }

    /// The respondent key of an id: 64 lowercase hex characters.
    pub fn key(&self, respondent_id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(respondent_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The claim of a submission id by a respondent ([`super::claims`]):
    /// keyed hashes of (study, submission id) and of the respondent, so the
    /// claims topic holds neither id. `respondent_key` is [`Pseudonymizer::key`]'s.
    pub fn claim(&self, study: &str, submission_id: &str, respondent_key: &str) -> super::claims::Claim {
        let mut mac = self.mac.clone();
        // Domain-separated from respondent keys; the NUL keeps study and id apart.
        mac.update(b"fieldwatch submission id\0");
        mac.update(study.as_bytes());
        mac.update(b"\0");
        mac.update(submission_id.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let mut submission = [0u8; 16];
        submission.copy_from_slice(&bytes[..16]);
        // The respondent key is already a keyed hash (hex); its first 64 bits.
        let respondent = respondent_key.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0);
        super::claims::Claim { submission: u128::from_le_bytes(submission), respondent }
    }
}

/// The Kafka record key of an interview: `<study>/<respondent key>`.
/// Study ids never contain `/`, so the split is unambiguous; keying by
/// respondent sends all of a respondent's interviews to one partition,
/// where the aggregator detects duplicates.
pub fn record_key(study: &str, respondent_key: &str) -> String {
    format!("{study}/{respondent_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_depend_on_study_id_and_respondent() {
        let p = Pseudonymizer::new(b"unit-test-key-0123456789");
        let k = p.key("r1");
        let a = p.claim("s", "sub-1", &k);
        assert_eq!(a, p.claim("s", "sub-1", &k));
        assert_ne!(a.submission, p.claim("t", "sub-1", &k).submission);
        assert_ne!(a.submission, p.claim("s", "sub-2", &k).submission);
        // "s" + "ub-1x" must not collide with "su" + "b-1x".
        assert_ne!(p.claim("s", "ub", &k).submission, p.claim("su", "b", &k).submission);
        assert_ne!(a.respondent, p.claim("s", "sub-1", &p.key("r2")).respondent);
        assert_eq!(a.respondent, u64::from_str_radix(&k[..16], 16).expect("hex"));
    }

    #[test]
    fn keys_match_the_rfc_4231_test_vector() {
        // RFC 4231, test case 2.
        let p = Pseudonymizer::new(b"Jefe");
        assert_eq!(
            p.key("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_same_id_gives_the_same_key_and_other_ids_or_secrets_differ() {
        let p = Pseudonymizer::new(b"secret-one");
        assert_eq!(p.key("R-0001"), p.key("R-0001"));
        assert_ne!(p.key("R-0001"), p.key("R-0002"));
        assert_ne!(p.key("R-0001"), Pseudonymizer::new(b"secret-two").key("R-0001"));
    }

    #[test]
    fn a_key_is_hex_and_never_contains_the_id_or_the_secret() {
        let p = Pseudonymizer::new(b"s3cret");
        let k = p.key("R-0001");
        assert_eq!(k.len(), 64);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(!k.contains("R-0001"));
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn record_keys_join_study_and_respondent_key() {
        assert_eq!(record_key("le-trafficking", "ab12"), "le-trafficking/ab12");
    }
}
