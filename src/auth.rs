//! Identity: turns a request's credentials into the [`Actor`] it acts as.
//!
//! Bearer JWTs (`jsonwebtoken`), verified with an HS256 secret and/or the
//! RS256/ES256 public keys of a JWKS file (picked by `kid`). `exp` and `sub`
//! are required, `iss` and `aud` checked when configured, and the token's
//! `alg` must be the key's: a token cannot choose how it is verified (so no
//! `alg: none`, and no RS256 public key used as an HS256 secret).
//!
//! With no key configured the service runs in open development mode: every
//! request acts as staff (a bearer value must still look like a JWT). The
//! operators' `--admin-token` is accepted in both modes as an alias for an
//! admin. In both modes a request can narrow its role, never widen it, with
//! `Twofold-Role` (and `Twofold-Customer-Id`): see [`narrow`].
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Actor, Narrowing, Role};

/// Where keys come from and what tokens must say (built from the configuration).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub jwt_secret: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`.
    pub leeway: Duration,
    /// The operators' static token: an admin.
    pub admin_token: Option<String>,
}

/// Why the keys could not be loaded (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the JWKS file {path} is not a JSON Web Key Set: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("the JWKS file {path} has an unusable key{kid}: {reason}")]
    Key { path: String, kid: String, reason: String },
    #[error("the JWT secret must be at least 32 bytes (it is {0})")]
    ShortSecret(usize),
}

/// Why credentials were refused: the client's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidToken(pub String);

/// An actor, and when its credentials expire (Unix seconds; `None`: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub actor: Actor,
    pub expires_at: Option<u64>,
}

/// A token's claims, as minted and as read.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies credentials.
#[derive(Clone)]
pub struct Authenticator(Arc<Inner>);

struct Inner {
    secret: Option<DecodingKey>,
    public_keys: Vec<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    admin_token: Option<String>,
}

/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

impl Authenticator {
    /// Open development mode, with no admin token.
    pub fn open() -> Self {
        let settings = AuthSettings::default();
        // No secret and no key file: nothing can fail, so this builds directly.
        Self(Arc::new(Inner {
            secret: None,
            public_keys: Vec::new(),
            issuer: settings.issuer,
            audience: settings.audience,
            leeway: settings.leeway,
            admin_token: None,
        }))
    }

    pub fn from_settings(settings: &AuthSettings) -> Result<Self, KeyError> {
        let secret = match &settings.jwt_secret {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => return Err(KeyError::ShortSecret(secret.len())),
            Some(secret) => Some(DecodingKey::from_secret(secret.as_bytes())),
            None => None,
        };
        let public_keys = match &settings.jwks_file {
            Some(path) => load_jwks(path)?,
            None => Vec::new(),
        };
        Ok(Self(Arc::new(Inner {
            secret,
            public_keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway,
            admin_token: settings.admin_token.clone().filter(|t| !t.is_empty()),
        })))
    }

    /// No key configured: every request acts as staff.
    pub fn is_open(&self) -> bool {
        self.0.secret.is_none() && self.0.public_keys.is_empty()
    }

    /// The actor of a request with this `Authorization` header value (or
    /// WebSocket `authorization` value). No credentials: anonymous (staff in
    /// open mode). Credentials that do not verify: refused, never downgraded.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, InvalidToken> {
        let inner = &self.0;
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            let actor = if self.is_open() { Actor::open() } else { Actor::anonymous() };
            return Ok(Authenticated { actor, expires_at: None });
        };
        let token = bearer(value)?;
        if inner.admin_token.as_deref().is_some_and(|admin| constant_time_eq(token.as_bytes(), admin.as_bytes())) {
            return Ok(Authenticated { actor: Actor::admin("admin-token"), expires_at: None });
        }
        if self.is_open() {
            // Nothing to verify a token with, so open mode acts as staff;
            // but a value that could never be a token is refused as keyed
            // mode refuses it, so a frontend's handling of a bad token can
            // be tried without setting up keys.
            jsonwebtoken::decode_header(token).map_err(|_| not_a_jwt())?;
            return Ok(Authenticated { actor: Actor::open(), expires_at: None });
        }
        self.verify(token)
    }

    fn verify(&self, token: &str) -> Result<Authenticated, InvalidToken> {
        let inner = &self.0;
        let header = jsonwebtoken::decode_header(token).map_err(|_| not_a_jwt())?;
        let key = match header.alg {
            Algorithm::HS256 => inner
                .secret
                .as_ref()
                .ok_or_else(|| InvalidToken("HS256 tokens are not accepted by this server".into()))?,
            alg => {
                let candidates: Vec<&PublicKey> = inner
                    .public_keys
                    .iter()
                    .filter(|k| header.kid.is_none() || k.kid == header.kid)
                    .filter(|k| k.algorithm == alg)
                    .collect();
                match candidates.as_slice() {
                    [one] => &one.key,
                    [] => {
                        return Err(InvalidToken(format!(
                            "no key of this server verifies {alg:?} tokens with this kid"
                        )))
                    }
                    _ => return Err(InvalidToken("the token names no kid and several keys could verify it".into())),
                }
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = inner.leeway.as_secs();
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        if let Some(issuer) = &inner.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &inner.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let claims =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| InvalidToken(reason(&e)))?.claims;
        let actor = match Role::parse(&claims.role) {
            Some(Role::Customer) => {
                let id = claims
                    .customer_id
                    .as_deref()
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .ok_or_else(|| InvalidToken("a customer token needs a customer_id claim (a UUID)".into()))?;
                Actor::customer(claims.sub, id)
            }
            Some(Role::Staff) => Actor::staff(claims.sub),
            Some(Role::Admin) => Actor::admin(claims.sub),
            Some(Role::Anonymous) | None => {
                return Err(InvalidToken(format!(
                    "the token's role {:?} is not one of customer, staff, admin",
                    truncate(&claims.role, 40)
                )))
            }
        };
        if actor.sub.trim().is_empty() {
            return Err(InvalidToken("the token's sub is empty".into()));
        }
        Ok(Authenticated { actor, expires_at: Some(claims.exp) })
    }
}

/// Why no token could be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("minting needs the HS256 secret: set --jwt-secret or TWOFOLD_JWT_SECRET")]
    NoSecret,
    #[error("the JWT secret must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    #[error("cannot sign the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Mints an HS256 token for `actor`, valid for `ttl` (`twofold token`).
pub fn mint(settings: &AuthSettings, actor: &Actor, ttl: Duration) -> Result<String, MintError> {
    let secret = settings.jwt_secret.as_deref().ok_or(MintError::NoSecret)?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(MintError::ShortSecret);
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: actor.sub.clone(),
        role: actor.role.as_str().to_owned(),
        customer_id: actor.customer_id.map(|id| id.to_string()),
        exp: now.saturating_add(ttl.as_secs()),
        iat: Some(now),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(MintError::Sign)
}

/// `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer(value: &str) -> Result<&str, InvalidToken> {
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(InvalidToken("credentials must be `Bearer <token>`".into())),
    }
}

fn not_a_jwt() -> InvalidToken {
    InvalidToken("the bearer token is not a well-formed JWT (header.payload.signature)".into())
}

/// The request header that narrows the role a request acts as.
pub const ROLE_HEADER: &str = "twofold-role";
/// The customer a request narrowed to `customer` acts as.
pub const CUSTOMER_ID_HEADER: &str = "twofold-customer-id";

/// Why a request's narrowing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NarrowError {
    /// The headers are malformed: an unknown role, a missing or malformed customer id.
    #[error("{0}")]
    Malformed(String),
    /// A role wider than the credentials give, or another customer.
    #[error(transparent)]
    Widens(#[from] crate::domain::Widening),
}

/// `actor`, narrowed as the request asks (`Twofold-Role`, and
/// `Twofold-Customer-Id` for a customer); unchanged when it asks nothing.
pub fn narrow(actor: Actor, role: Option<&str>, customer_id: Option<&str>) -> Result<Actor, NarrowError> {
    use NarrowError::Malformed;
    let role = role.map(str::trim).filter(|r| !r.is_empty());
    let customer_id = customer_id.map(str::trim).filter(|c| !c.is_empty());
    let Some(role) = role else {
        return match customer_id {
            None => Ok(actor),
            Some(_) => Err(Malformed("Twofold-Customer-Id needs Twofold-Role: customer beside it".into())),
        };
    };
    let role = Role::parse(&role.to_ascii_lowercase()).ok_or_else(|| {
        Malformed(format!("Twofold-Role {:?} is not one of anonymous, customer, staff, admin", truncate(role, 40)))
    })?;
    let customer_id = customer_id
        .map(|id| {
            Uuid::parse_str(id)
                .map_err(|_| Malformed(format!("Twofold-Customer-Id {:?} is not a UUID", truncate(id, 40))))
        })
        .transpose()?;
    let target = match (role, customer_id) {
        (Role::Customer, Some(id)) => Narrowing::Customer(id),
        (Role::Customer, None) => {
            return Err(Malformed(
                "acting as a customer needs the customer's id (the Twofold-Customer-Id header)".into(),
            ))
        }
        (role, Some(_)) => {
            return Err(Malformed(format!(
                "Twofold-Customer-Id goes with Twofold-Role: customer, not with {}",
                role.as_str()
            )))
        }
        (Role::Anonymous, None) => Narrowing::Anonymous,
        (Role::Staff, None) => Narrowing::Staff,
        (Role::Admin, None) => Narrowing::Admin,
    };
    actor.narrowed_to(target).map_err(NarrowError::Widens)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b.iter()).fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    diff == 0
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// What the client is told about a token that did not verify.
fn reason(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::InvalidSignature => "the token's signature is not valid".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not its key's".into(),
        _ => "the token is not valid".into(),
    }
}

/// The verifying keys of a JWKS file: RS256 and ES256 (P-256) keys, each
/// with the algorithm it declares (or its type implies).
fn load_jwks(path: &std::path::Path) -> Result<Vec<PublicKey>, KeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|source| KeyError::Parse { path: shown.clone(), source })?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let bad = |reason: &str| KeyError::Key {
            path: shown.clone(),
            kid: kid.as_deref().map(|k| format!(" (kid {k})")).unwrap_or_default(),
            reason: reason.to_owned(),
        };
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm.map(|a| a.to_string())) {
            (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
            (AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_), Some(alg)) => match alg.as_str() {
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                other => return Err(bad(&format!("algorithm {other} is not supported (RS256, ES256)"))),
            },
            _ => return Err(bad("only RSA (RS256) and P-256 EC (ES256) public keys are supported")),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e.to_string()))?;
        keys.push(PublicKey { kid, algorithm, key });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";

    fn keyed() -> (AuthSettings, Authenticator) {
        let settings = AuthSettings {
            jwt_secret: Some(SECRET.into()),
            leeway: Duration::from_secs(0),
            admin_token: Some("ops-token".into()),
            ..Default::default()
        };
        let auth = Authenticator::from_settings(&settings).expect("keys");
        (settings, auth)
    }

    #[test]
    fn a_minted_token_round_trips() {
        let (settings, auth) = keyed();
        let me = Uuid::new_v4();
        let token = mint(&settings, &Actor::customer("alice", me), Duration::from_secs(60)).expect("mint");
        let got = auth.authenticate(Some(&format!("Bearer {token}"))).expect("valid");
        assert_eq!(got.actor, Actor::customer("alice", me));
        assert!(got.expires_at.is_some());
    }

    #[test]
    fn no_credentials_is_anonymous_and_open_mode_is_staff() {
        let (_, auth) = keyed();
        assert_eq!(auth.authenticate(None).expect("ok").actor, Actor::anonymous());
        let open = Authenticator::open();
        assert_eq!(open.authenticate(None).expect("ok").actor, Actor::open());
        let (secret, _) = keyed();
        let real = mint(&secret, &Actor::customer("c", Uuid::nil()), Duration::from_secs(60)).expect("mints");
        assert_eq!(open.authenticate(Some(&format!("Bearer {real}"))).expect("ok").actor, Actor::open());
    }

    #[test]
    fn open_mode_refuses_what_could_never_be_a_token_as_keyed_mode_does() {
        let (_, keyed) = keyed();
        let open = Authenticator::open();
        for value in ["Bearer whatever", "Basic dXNlcjpwYXNz", "Bearer"] {
            let from_open = open.authenticate(Some(value)).expect_err(value).0;
            let from_keyed = keyed.authenticate(Some(value)).expect_err(value).0;
            assert_eq!(from_open, from_keyed, "{value}");
        }
    }

    #[test]
    fn a_role_narrows_and_never_widens() {
        let id = Uuid::new_v4();
        let staff = Actor::open();
        let customer = narrow(staff.clone(), Some("Customer"), Some(&id.to_string())).expect("narrows");
        assert_eq!((customer.role, customer.customer_id, customer.sub.as_str()), (Role::Customer, Some(id), "open"));
        assert_eq!(narrow(staff.clone(), Some("anonymous"), None).expect("narrows").role, Role::Anonymous);
        assert_eq!(narrow(staff.clone(), None, None).expect("unchanged"), staff);
        let widen = narrow(staff.clone(), Some("admin"), None).expect_err("widens");
        assert!(matches!(&widen, NarrowError::Widens(m) if m.to_string().contains("never widened")), "{widen}");
        let malformed = |e: NarrowError, needle: &str| matches!(&e, NarrowError::Malformed(m) if m.contains(needle));
        assert!(malformed(narrow(staff.clone(), Some("customer"), None).expect_err("no id"), "Twofold-Customer-Id"));
        assert!(malformed(narrow(staff.clone(), Some("customer"), Some("nope")).expect_err("bad id"), "not a UUID"));
        assert!(malformed(narrow(staff.clone(), Some("root"), None).expect_err("unknown"), "not one of"));
        assert!(malformed(narrow(staff, None, Some(&id.to_string())).expect_err("id alone"), "Twofold-Role"));
        let other = Uuid::new_v4();
        let as_other = narrow(customer.clone(), Some("customer"), Some(&other.to_string()));
        assert!(matches!(as_other, Err(NarrowError::Widens(_))));
        assert!(matches!(narrow(customer.clone(), Some("staff"), None), Err(NarrowError::Widens(_))));
        assert_eq!(narrow(customer.clone(), Some("customer"), Some(&id.to_string())).expect("same"), customer);
    }

    #[test]
    fn the_admin_token_is_an_admin_and_garbage_is_refused() {
        let (_, auth) = keyed();
        assert_eq!(auth.authenticate(Some("Bearer ops-token")).expect("ok").actor.role, Role::Admin);
        assert!(auth.authenticate(Some("Basic abc")).is_err());
        assert!(auth.authenticate(Some("Bearer not.a.jwt")).is_err());
    }

    #[test]
    fn a_secret_shorter_than_the_hash_is_refused() {
        let settings = AuthSettings { jwt_secret: Some("short".into()), ..Default::default() };
        assert!(matches!(Authenticator::from_settings(&settings), Err(KeyError::ShortSecret(5))));
    }
}
