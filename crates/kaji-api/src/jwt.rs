//! Service-account JSON Web Tokens: ES256 (ECDSA P-256 with SHA-256) signing and verification
//! with one key pair, as upstream's `pkg/serviceaccount/jwt.go` (compact JWS, `kid` = the
//! base64url SHA-256 of the public key's PKIX DER), and the claims of legacy Secret tokens
//! (`pkg/serviceaccount/legacy.go`). The API server (TokenRequest, the authenticator, JWKS) and
//! the controller manager (the tokens controller) share it. No I/O: callers keep the key's PEM.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};

/// The issuer of bound tokens (upstream's `--service-account-issuer` as k3s and kubeadm set it).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The issuer of legacy Secret tokens (upstream `LegacyIssuer`).
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// The Secret type of legacy tokens.
pub const SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// Annotations of a legacy token Secret.
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// DER prefix of a P-256 SubjectPublicKeyInfo (ecPublicKey, prime256v1, BIT STRING of 66 bytes);
/// the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported signing algorithm {0:?}")]
    Algorithm(String),
    #[error("invalid signature")]
    Signature,
    #[error("invalid key: {0}")]
    Key(String),
}

/// The service-account signing key (an ECDSA P-256 key pair).
pub struct SigningKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key pair.
    pub fn generate() -> Result<SigningKey, JwtError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| JwtError::Key(e.to_string()))?;
        SigningKey::from_pkcs8(doc.as_ref())
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, JwtError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| JwtError::Key(format!("not a PKCS#8 P-256 key: {e}")))?;
        let kid = key_id(pair.public_key().as_ref());
        Ok(SigningKey {
            pair,
            pkcs8: der.to_vec(),
            kid,
        })
    }

    /// Reads a `PRIVATE KEY` (PKCS#8) PEM block.
    pub fn from_pem(pem: &str) -> Result<SigningKey, JwtError> {
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .map(str::trim)
            .collect();
        if body.is_empty() {
            return Err(JwtError::Key("no PRIVATE KEY PEM block".into()));
        }
        let der = STANDARD
            .decode(body)
            .map_err(|e| JwtError::Key(format!("PEM body: {e}")))?;
        SigningKey::from_pkcs8(&der)
    }

    /// The key as a PKCS#8 `PRIVATE KEY` PEM block.
    pub fn to_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.pkcs8);
        let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }

    /// The `kid` header of every token this key signs.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (RFC 7517), as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// A compact JWS of `claims` (`{"alg":"ES256","kid":...}` header).
    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let mut input = URL_SAFE_NO_PAD.encode(header.to_string());
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|e| JwtError::Key(e.to_string()))?;
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok(input)
    }

    /// The claims of `token` if this key signed it (nothing else is checked here).
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = decode_part(h)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if alg != "ES256" {
            return Err(JwtError::Algorithm(alg.to_string()));
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let public =
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref());
        let signed_len = h.len() + 1 + c.len();
        public
            .verify(&token.as_bytes()[..signed_len], &sig)
            .map_err(|_| JwtError::Signature)?;
        decode_part(c)
    }
}

fn decode_part(part: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(JwtError::Malformed)
    }
}

/// Whether `token` looks like a JWT (three base64url parts, a JSON header): what upstream's
/// authenticator checks before trying the signature.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()), (Some(h), Some(_), Some(_), None) if decode_part(h).is_ok())
}

/// Upstream's keyIDFromPublicKey: base64url(SHA-256(PKIX DER of the public key)).
fn key_id(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &der))
}

/// The user name of a service account (`system:serviceaccount:NS:NAME`).
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The claims of a legacy token Secret's token (upstream's LegacyClaims): no expiry, no audience.
pub fn legacy_claims(namespace: &str, sa_name: &str, sa_uid: &str, secret_name: &str) -> Value {
    json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret_name,
        "kubernetes.io/serviceaccount/service-account.name": sa_name,
        "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
        "sub": username(namespace, sa_name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_round_trips() {
        let key = SigningKey::generate().unwrap();
        let claims = json!({"iss": ISSUER, "sub": "system:serviceaccount:a:b", "exp": 1});
        let token = key.sign(&claims).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert!(looks_like_jwt(&token));
        assert_eq!(key.verify(&token).unwrap(), claims);
        let header = decode_part(token.split('.').next().unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": key.key_id()}));
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.key_id(), key.key_id());
        let token = key.sign(&json!({"a": 1})).unwrap();
        assert_eq!(again.verify(&token).unwrap(), json!({"a": 1}));
        assert!(SigningKey::from_pem("nonsense").is_err());
    }

    #[test]
    fn tampered_or_foreign_tokens_fail() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let token = key.sign(&json!({"sub": "x"})).unwrap();
        assert_eq!(other.verify(&token), Err(JwtError::Signature));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(r#"{"sub":"y"}"#),
            parts[2]
        );
        assert_eq!(key.verify(&forged), Err(JwtError::Signature));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(key.verify(&none), Err(JwtError::Algorithm("none".into())));
        assert_eq!(key.verify("a.b"), Err(JwtError::Malformed));
        assert_eq!(key.verify("!!.??.**"), Err(JwtError::Malformed));
        assert!(!looks_like_jwt("abcdef.0123456789abcdef"));
    }

    #[test]
    fn jwk_and_kid_describe_the_public_key() {
        let key = SigningKey::generate().unwrap();
        let jwk = key.jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["kid"], key.key_id());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        // SHA-256 -> 43 base64url characters.
        assert_eq!(key.key_id().len(), 43);
    }

    #[test]
    fn legacy_claims_as_upstream() {
        let c = legacy_claims("ns", "sa", "u-1", "sa-token");
        assert_eq!(c["iss"], "kubernetes/serviceaccount");
        assert_eq!(c["sub"], "system:serviceaccount:ns:sa");
        assert_eq!(c["kubernetes.io/serviceaccount/secret.name"], "sa-token");
        assert!(c.get("exp").is_none());
    }
}
