//! Front-end authentication by bearer token.
//!
//! The config holds, per front-end, the SHA-256 of its token (hex), never
//! the token. A call's `authorization: Bearer <token>` is hashed and
//! compared in constant time with every configured hash; the matching
//! front-end's name is the caller's identity, written into each envelope.
//! With no tokens configured the server is open and every caller is
//! [`ANONYMOUS`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

use super::IngestError;

/// Identity of callers when no tokens are configured.
pub const ANONYMOUS: &str = "anonymous";

/// One front-end allowed to submit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Name of the front-end (`cati-east`); recorded in each envelope it sends.
    pub frontend: String,
    /// SHA-256 of its bearer token as 64 hex characters, e.g. from
    /// `printf %s "$TOKEN" | sha256sum`.
    pub sha256: String,
}

/// Checks bearer tokens against the configured hashes.
#[derive(Clone)]
pub struct Authenticator {
    /// `(front-end name, token hash)`; empty = open server.
    tokens: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("frontends", &self.tokens.len()).finish()
    }
}

impl Authenticator {
    /// An authenticator for the configured tokens. Fails on a hash that is
    /// not 64 hex characters or an empty front-end name.
    pub fn new(tokens: &[TokenConfig]) -> Result<Authenticator, IngestError> {
        let mut out = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if t.frontend.is_empty() {
                return Err(IngestError::Config(format!("tokens[{i}]: frontend is empty")));
            }
            let mut hash = [0u8; 32];
            hex::decode_to_slice(t.sha256.trim(), &mut hash).map_err(|_| {
                IngestError::Config(format!("tokens[{i}] ({}): sha256 must be 64 hex characters", t.frontend))
            })?;
            out.push((t.frontend.clone(), hash));
        }
        Ok(Authenticator { tokens: out })
    }

    /// True when no tokens are configured and every call is let in.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller's front-end name, or `Unauthenticated`.
    pub fn identify(&self, metadata: &MetadataMap) -> Result<String, IngestError> {
        self.identify_headers(metadata.as_ref())
    }

    /// [`Self::identify`] on the HTTP headers of a call, before its body
    /// is read (the admission layer).
    pub fn identify_headers(&self, headers: &http::HeaderMap) -> Result<String, IngestError> {
        if self.is_open() {
            return Ok(ANONYMOUS.to_string());
        }
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(IngestError::Unauthenticated)?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every configured hash is compared, in constant time, whatever matches.
        let mut found = None;
        for (name, hash) in &self.tokens {
            let equal: bool = hash.ct_eq(&presented).into();
            if equal && found.is_none() {
                found = Some(name);
            }
        }
        found.cloned().ok_or(IngestError::Unauthenticated)
    }
}

/// The token of an `authorization` value `Bearer <token>` (scheme is
/// case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Hex SHA-256 of a token, as it goes into the config.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(&[
            TokenConfig { frontend: "cati".into(), sha256: token_hash("t-cati") },
            TokenConfig { frontend: "web".into(), sha256: token_hash("t-web") },
        ])
        .expect("valid")
    }

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("ascii"));
        m
    }

    #[test]
    fn a_valid_token_identifies_its_frontend() {
        assert_eq!(auth().identify(&with("Bearer t-web")).ok().as_deref(), Some("web"));
        assert_eq!(auth().identify(&with("bearer t-cati")).ok().as_deref(), Some("cati"));
    }

    #[test]
    fn missing_wrong_or_malformed_tokens_are_unauthenticated() {
        let a = auth();
        for m in
            [MetadataMap::new(), with("Bearer nope"), with("t-web"), with("Basic t-web"), with("Bearer ")]
        {
            assert!(matches!(a.identify(&m), Err(IngestError::Unauthenticated)));
        }
    }

    #[test]
    fn without_tokens_everyone_is_anonymous() {
        let a = Authenticator::new(&[]).expect("valid");
        assert_eq!(a.identify(&MetadataMap::new()).ok().as_deref(), Some(ANONYMOUS));
    }

    #[test]
    fn a_hash_that_is_not_hex_is_a_config_error() {
        let bad = [TokenConfig { frontend: "x".into(), sha256: "xyz".into() }];
        assert!(matches!(Authenticator::new(&bad), Err(IngestError::Config(_))));
    }
}
