//! Offline verification of a token down the whole chain:
//! vendor -> license -> dongle -> certificate -> session key -> JWT -> claims.
//!
//! Order: structure, then the chain (license under the vendor key,
//! certificate under the licensed dongle key, `kid` naming the certified
//! session key), then the token's signature (`verify_strict`), and only then
//! the claims and every time window. So a forged token is reported as
//! forged, and an authentic one by what is wrong with it.
//!
//! Caches: licenses and certificates that verified are kept by their exact
//! base64 text, so a new token under a known certificate costs one signature
//! check; tokens that verified are kept by their signature (and compared in
//! full on a hit) until they expire, so re-verifying costs a lookup. Time,
//! audience and nonce checks run on every call, cached or not. Only inputs
//! that verified are cached, and every cache is bounded. Memos skip work
//! only for byte-identical inputs: the header of the last token that
//! verified is not parsed again, the `kid` a certificate's session key
//! needs is computed once per certificate, and each certificate keeps the
//! inner Merkle nodes of proofs that reached its root
//! ([`tether_keys::merkle::NodeMemo`]: a node is reused only when both its
//! inputs are equal), so every verdict is the one without them.
//!
//! Freshness (issue 15; `docs/formats.md`, "Token claims"): under a license
//! with a `nonce_period`, a token must prove, with its `prf` claim, that its
//! `(aud, ins, nonce)` leaf is in the Merkle tree its certificate commits
//! to, and the certificate's per-service counts must stay within the
//! license's seats. Those checks do not depend on the time or on the nonce
//! asked for, so they run once per token, before it is cached.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tether_keys::merkle::{InclusionProof, Leaf, NodeMemo};
use tether_keys::{Certificate, License, LicenseId, PublicKey, TokenClaims, UnixTime, Vendor};

use crate::error::{Error, Result};

/// Tokens larger than this many bytes are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a service expects of its tokens.
#[derive(Debug, Clone)]
pub struct Expectations {
    service: String,
    features: Vec<String>,
    leeway: u64,
    max_cert_lifetime: u64,
    instance: Option<String>,
    require_freshness: bool,
    refuse_grace: bool,
}

impl Expectations {
    /// Tokens for `service` (`aud` and `sub`), 5 s leeway, certificates of at
    /// most 15 minutes.
    pub fn new(service: &str) -> Self {
        Expectations {
            service: service.to_string(),
            features: Vec::new(),
            leeway: 5,
            max_cert_lifetime: 15 * 60,
            instance: None,
            require_freshness: false,
            refuse_grace: false,
        }
    }

    /// This consumer's instance id: tokens must name it in their `ins`
    /// claim (`GET /token?instance=`), so a token copied to another instance
    /// is refused there.
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// Refuse licenses without a nonce period (freshness, `docs/threat-model.md`):
    /// pinned by a vendor whose licenses all demand fresh nonces, so that a
    /// rogue authority cannot switch freshness off with an older version of
    /// the license issued before it did (the refusal is [`Error::NotIncluded`]).
    pub fn require_freshness(mut self) -> Self {
        self.require_freshness = true;
        self
    }

    /// Refuse tokens issued in the license's grace period (after its
    /// `not_after`; they carry a `grace` claim), and licenses past their
    /// `not_after`: for a service that must stop when the license ends
    /// rather than when its vendor-signed grace does. The refusal is
    /// [`Error::Expired`] naming the license. By default tokens in grace
    /// are accepted (`docs/formats.md`, "Token claims").
    pub fn refuse_grace(mut self) -> Self {
        self.refuse_grace = true;
        self
    }

    /// Features the license must grant.
    pub fn require_features<S: Into<String>>(
        mut self,
        features: impl IntoIterator<Item = S>,
    ) -> Self {
        self.features = features.into_iter().map(Into::into).collect();
        self
    }

    /// Clock leeway in seconds for every time check (default 5 s): how far
    /// this host's clock may disagree with the authority's. It widens every
    /// window, the certificate's included.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// The longest certificate window accepted, in seconds: what a session
    /// key dumped from memory is worth at most.
    pub fn max_cert_lifetime(mut self, seconds: u64) -> Self {
        self.max_cert_lifetime = seconds;
        self
    }

    /// The clock leeway, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// Whether a token naming `ins` may serve the instance `own`: a token for
/// another instance never, and one naming none only for a service without a
/// seat limit (the authority issues tokens of a seat-limited service only
/// to named instances, so an unnamed one there was not issued to us).
pub fn instance_matches(ins: Option<&str>, own: &str, seats: Option<u32>) -> bool {
    match ins {
        Some(i) => i == own,
        None => seats.is_none(),
    }
}

/// A verified token: its claims and the window that bounds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The claims.
    pub claims: Arc<TokenClaims>,
    /// End of the certificate that vouches for the token.
    pub cert_not_after: UnixTime,
    /// The license's seat count for the token's service (`None`: unlimited).
    pub seats: Option<u32>,
    /// The nonce the token echoes (its `nonce` claim), if any.
    pub nonce: Option<String>,
    /// The license's nonce period, in seconds: how often this consumer must
    /// draw a fresh nonce (0: freshness not required).
    pub nonce_period: u32,
    /// The end of the license's grace period when the token was issued in
    /// it (its `grace` claim): the license has expired, and tokens stop at
    /// this instant. A consumer should warn loudly.
    pub grace: Option<UnixTime>,
}

/// Which `nonce` claim a call accepts.
#[derive(Debug, Clone, Copy)]
enum NonceRule<'a> {
    /// Any, or none.
    Any,
    /// Exactly this one.
    Is(&'a str),
    /// One of these.
    OneOf(&'a [&'a str]),
}

impl<'a> From<Option<&'a str>> for NonceRule<'a> {
    fn from(nonce: Option<&'a str>) -> Self {
        nonce.map_or(NonceRule::Any, NonceRule::Is)
    }
}

/// The `alg` values accepted, both meaning Ed25519 (RFC 8037; RFC 9864
/// section 2.2): `EdDSA` is what Tether emits, `Ed25519` its
/// fully-specified name. Compared exactly: `alg` is case-sensitive.
const ACCEPTED_ALGS: [&str; 2] = ["EdDSA", "Ed25519"];

/// Parameters of JWE (RFC 7516 section 4.1) and of nested tokens (`cty`,
/// RFC 7519 section 5.2): a signed Tether token has none of them.
const FOREIGN_PARAMETERS: [&str; 3] = ["enc", "zip", "cty"];

/// The JOSE header, checked parameter by parameter (RFC 7515 section 4.1,
/// RFC 8725; `docs/formats.md`, "Token header"): what is left to use.
#[derive(Debug)]
struct Header {
    kid: Option<Box<str>>,
}

/// A JSON object whose member names are unique: RFC 7515 section 4 lets a
/// parser refuse duplicates or keep the last; refusing leaves no doubt about
/// which `alg` or `kid` was meant. (`serde_json::Map` keeps the last.)
struct UniqueObject(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<UniqueObject, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    let value: serde_json::Value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Parses and checks the JOSE header. Parameters not named here are
/// ignored, as RFC 7515 section 4 requires of parameters not listed in
/// `crit`.
fn parse_header(bytes: &[u8]) -> Result<Header> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(Error::Malformed("header is not a JSON object with alg"));
    }
    // A repeated member is malformed JSON for a JOSE header, like any other.
    let UniqueObject(h) = serde_json::from_slice(bytes)
        .map_err(|_| Error::Malformed("header is not a JSON object with alg"))?;
    match h.get("alg") {
        Some(serde_json::Value::String(alg)) if ACCEPTED_ALGS.contains(&alg.as_str()) => {}
        Some(serde_json::Value::String(alg)) => {
            return Err(Error::UnsupportedAlgorithm(alg.clone()));
        }
        _ => return Err(Error::Malformed("header is not a JSON object with alg")),
    }
    if h.contains_key("crit") {
        return Err(Error::BadHeader(
            "crit names extensions, and this verifier understands none",
        ));
    }
    // jku, jwk, x5u, x5c, x5t and x5t#S256 (RFC 7515 sections 4.1.2 to
    // 4.1.8) are ignored: they are never read, fetched or used to pick a
    // key. The only key is the certified session key, found through the
    // chain in the claims and named by `kid` (RFC 8725 section 3.10).
    if FOREIGN_PARAMETERS.iter().any(|p| h.contains_key(*p)) {
        return Err(Error::BadHeader(
            "cty, enc or zip: not a signed Tether token",
        ));
    }
    match h.get("b64") {
        None | Some(serde_json::Value::Bool(true)) => {}
        Some(_) => {
            return Err(Error::BadHeader(
                "b64 other than true (RFC 7797 unencoded payload) is not accepted",
            ));
        }
    }
    match h.get("typ") {
        None => {}
        Some(serde_json::Value::String(t))
            if t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt") => {}
        Some(_) => return Err(Error::BadHeader("typ is not JWT")),
    }
    let kid = match h.get("kid") {
        None => None,
        Some(serde_json::Value::String(k)) => Some(k.as_str().into()),
        Some(_) => return Err(Error::Malformed("kid is not a string")),
    };
    Ok(Header { kid })
}

/// A small bounded map: when full, an arbitrary entry makes room.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::with_capacity(cap),
            cap,
        }
    }
    fn get<Q: ?Sized + Hash + Eq>(&self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.map.get(k).cloned()
    }
    fn insert(&mut self, k: K, v: V) {
        if self.map.len() >= self.cap
            && !self.map.contains_key(&k)
            && let Some(victim) = self.map.keys().next().cloned()
        {
            self.map.remove(&victim);
        }
        self.map.insert(k, v);
    }
}

#[derive(Debug, Clone)]
struct CachedCert {
    cert: Arc<Certificate>,
    /// The license text it was checked against.
    lic: Arc<str>,
    /// The `kid` that names its session key (the short fingerprint),
    /// computed once rather than hashed again for every token.
    kid: Arc<str>,
    /// Inclusion proofs already checked against this certificate: a
    /// consumer gets every token under one certificate with the same proof.
    proven: Arc<Mutex<Proven>>,
}

/// The last few `(prf, aud, ins, nonce)` whose proof held, newest last,
/// and the inner nodes of the paths that led to the certificate's root
/// (a verifier of many consumers' tokens checks proofs of many leaves of
/// one tree, which share the nodes near the root; see [`NodeMemo`]).
#[derive(Debug, Default)]
struct Proven(Vec<(Arc<str>, String, String, String)>, NodeMemo);

impl Proven {
    /// At most this many proofs remembered per certificate.
    const KEPT: usize = 4;

    fn holds(&self, c: &TokenClaims) -> bool {
        self.0.iter().any(|(prf, aud, ins, nonce)| {
            c.prf.as_deref() == Some(&**prf)
                && c.aud == *aud
                && c.ins.as_deref() == Some(ins.as_str())
                && c.nonce.as_deref() == Some(nonce.as_str())
        })
    }

    fn remember(&mut self, c: &TokenClaims) {
        if let (Some(prf), Some(ins), Some(nonce)) = (&c.prf, &c.ins, &c.nonce) {
            if self.0.len() == Self::KEPT {
                self.0.remove(0);
            }
            self.0.push((
                Arc::from(prf.as_str()),
                c.aud.clone(),
                ins.clone(),
                nonce.clone(),
            ));
        }
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: Arc<str>,
    claims: Arc<TokenClaims>,
    license: Arc<License>,
    cert: Arc<Certificate>,
}

/// Verifies tokens offline against one vendor root key. Cheap to share
/// (`&self` everywhere, caches behind mutexes held for a lookup).
#[derive(Debug)]
pub struct Verifier {
    vendor: PublicKey<Vendor>,
    expect: Expectations,
    licenses: Mutex<Bounded<Arc<str>, Arc<License>>>,
    certs: Mutex<Bounded<Arc<str>, CachedCert>>,
    tokens: Mutex<Bounded<Arc<str>, CachedToken>>,
    /// The highest sequence verified per license id: an older version of a
    /// license (say, one without freshness, or with more seats) is refused
    /// once a newer one was seen.
    sequences: Mutex<HashMap<LicenseId, u64>>,
    /// The JOSE header text of the last token that verified, and what it
    /// parsed to: the tokens of one session key share one header, so a
    /// byte-identical header is not parsed again (`parse_header` is a pure
    /// function of those bytes).
    header: Mutex<Option<(Arc<str>, Arc<Header>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a license or certificate failed to decode because it is in a
/// format version (or for a dongle kind) a later Tether writes: refused all
/// the same, but the reason says to upgrade rather than "not a license".
fn newer_format(e: &tether_keys::Error) -> bool {
    matches!(
        e,
        tether_keys::Error::UnsupportedVersion { .. }
            | tether_keys::Error::UnsupportedDongleKind { .. }
    )
}

/// Why a certificate does not hold under the licensed dongle, as a reason
/// a service can log (one per check; no key material).
fn chain_error(e: tether_keys::Error) -> Error {
    use tether_keys::fido2::AssertionFault as F;
    Error::UntrustedChain(match e {
        tether_keys::Error::DongleKindMismatch { .. } => {
            "certificate is from another kind of dongle than the licensed one"
        }
        tether_keys::Error::Fido2(fault) => match fault {
            F::RpIdHash => "FIDO2 certificate is for another rpId than the licensed credential",
            F::UserPresent => {
                "FIDO2 certificate has the UP flag set (a silent assertion is required)"
            }
            F::UserVerified => "FIDO2 certificate has the UV flag set",
            F::BackupEligible => {
                "FIDO2 certificate is from a syncable (backup-eligible) credential"
            }
            F::AttestedData | F::Extensions | F::ReservedFlags => {
                "FIDO2 certificate has flags set that Tether never asks for"
            }
            F::SignatureEncoding => "FIDO2 certificate signature is not in strict encoding",
            F::HighS => "FIDO2 certificate ES256 signature has a high S",
            _ => "certificate is not signed by the licensed dongle",
        },
        _ => "certificate is not signed by the licensed dongle",
    })
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Error::Malformed(what))
}

/// A JSON object, and only an object: serde would also build a struct from
/// an array of its fields (`["EdDSA"]`), which RFC 7515 and 7519 do not allow
/// and other JWT libraries refuse. Repeated keys fail in the derive.
fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

fn window(
    what: &'static str,
    nb: UnixTime,
    na: UnixTime,
    now: UnixTime,
    leeway: Duration,
) -> Result<()> {
    if now.saturating_add(leeway) < nb {
        Err(Error::NotYetValid(what))
    } else if now.saturating_sub(leeway) > na {
        Err(Error::Expired(what))
    } else {
        Ok(())
    }
}

impl Verifier {
    /// A verifier trusting `vendor` for tokens meeting `expect`.
    pub fn new(vendor: PublicKey<Vendor>, expect: Expectations) -> Self {
        Verifier {
            vendor,
            expect,
            licenses: Mutex::new(Bounded::new(16)),
            certs: Mutex::new(Bounded::new(64)),
            tokens: Mutex::new(Bounded::new(4096)),
            sequences: Mutex::new(HashMap::new()),
            header: Mutex::new(None),
        }
    }

    /// The expectations.
    pub fn expectations(&self) -> &Expectations {
        &self.expect
    }

    /// Verifies `token` now (the system clock).
    ///
    /// # Errors
    ///
    /// As [`Self::verify_at`], with no nonce to echo.
    pub fn verify(&self, token: &str) -> Result<Verified> {
        self.verify_at(token, None, UnixTime::now())
    }

    /// Verifies `token` at `now`, requiring it to echo `nonce` if given.
    ///
    /// # Errors
    ///
    /// Why the token is refused, checked in this order so that a forged
    /// token is reported as forged:
    /// - [`Error::Malformed`]: over [`MAX_TOKEN_LEN`] bytes, not a compact
    ///   JWS, bad base64url, JSON that is not an object of the expected
    ///   members (a repeated member included), a `lic` or `dcert` that does
    ///   not decode, a `prf` that is not an inclusion proof (checked after
    ///   the signature);
    /// - [`Error::UnsupportedAlgorithm`]: `alg` other than `EdDSA`/`Ed25519`;
    /// - [`Error::BadHeader`]: a header parameter refused (`crit`, `b64`
    ///   other than true, `typ` other than JWT, `cty`, `enc`, `zip`);
    /// - [`Error::UntrustedChain`]: the license is not signed by the vendor
    ///   key, the certificate not by the licensed dongle, or `kid` does not
    ///   name the certified session key;
    /// - [`Error::BadSignature`]: the token's signature does not verify;
    /// - [`Error::NotIncluded`], [`Error::OverSeats`]: under a license with a
    ///   `nonce_period` (or for any token with a `prf` claim), the token's
    ///   `(aud, ins, nonce)` leaf is not proven to be in the certificate's
    ///   commitment, or the commitment counts more instances of a service
    ///   than the license has seats;
    /// - [`Error::WrongAudience`], [`Error::WrongIssuer`],
    ///   [`Error::ServiceNotLicensed`], [`Error::MissingFeature`],
    ///   [`Error::NonceMismatch`]: an authentic token that is not for us;
    /// - [`Error::CertificateTooLong`], [`Error::LifetimeTooLong`]: windows
    ///   longer than allowed;
    /// - [`Error::Expired`], [`Error::NotYetValid`]: the license (its end
    ///   is that of its grace period, unless
    ///   [`Expectations::refuse_grace`]), the certificate or the token at
    ///   `now`, give or take the leeway; with `refuse_grace`, also a token
    ///   carrying a `grace` claim;
    /// - [`Error::Malformed`] as well for a `grace` claim that is not the
    ///   license's grace end.
    pub fn verify_at(&self, token: &str, nonce: Option<&str>, now: UnixTime) -> Result<Verified> {
        self.verify_with(token.as_bytes(), NonceRule::from(nonce), now)
    }

    /// Verifies `token` at `now` (UNIX seconds), requiring its `nonce` claim
    /// to be one of `accepted`: what a consumer that keeps a ring of recent
    /// nonces (its current one and the one before) checks, since the
    /// authority may answer with the previous nonce until the current one
    /// is in a certificate.
    ///
    /// # Errors
    ///
    /// As [`Self::verify_at`]; [`Error::NonceMismatch`] when the token has
    /// no `nonce` claim or one not in `accepted` (an empty `accepted`
    /// accepts nothing).
    pub fn verify_fresh(&self, token: &str, accepted: &[&str], now: UnixTime) -> Result<Verified> {
        self.verify_with(token.as_bytes(), NonceRule::OneOf(accepted), now)
    }

    /// [`Self::verify_at`] for a token given as bytes, as it comes off a
    /// socket or across the C ABI: a token this verifier has already
    /// verified is recognised by its bytes, so only a new token is checked
    /// to be UTF-8 (a compact JWS is ASCII, RFC 7515 section 7.1).
    ///
    /// # Errors
    ///
    /// As [`Self::verify_at`]; [`Error::Malformed`] for bytes that are not
    /// UTF-8.
    pub fn verify_bytes_at(
        &self,
        token: &[u8],
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<Verified> {
        self.verify_with(token, NonceRule::from(nonce), now)
    }

    /// [`Self::verify_fresh`] for a token given as bytes (see
    /// [`Self::verify_bytes_at`]).
    ///
    /// # Errors
    ///
    /// As [`Self::verify_fresh`]; [`Error::Malformed`] for bytes that are
    /// not UTF-8.
    pub fn verify_fresh_bytes(
        &self,
        token: &[u8],
        accepted: &[&str],
        now: UnixTime,
    ) -> Result<Verified> {
        self.verify_with(token, NonceRule::OneOf(accepted), now)
    }

    fn verify_with(&self, token: &[u8], nonce: NonceRule<'_>, now: UnixTime) -> Result<Verified> {
        const NOT_TEXT: Error = Error::Malformed("token is not UTF-8 text");
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::Malformed("token too large"));
        }
        let signed_len = token
            .iter()
            .rposition(|&b| b == b'.')
            .ok_or(Error::Malformed("not a compact JWS"))?;
        let sig_text = std::str::from_utf8(&token[signed_len + 1..]).map_err(|_| NOT_TEXT)?;
        let cached = lock(&self.tokens).get(sig_text);
        let entry = match cached {
            // Equal bytes to a cached (so UTF-8) token: no need to check again.
            Some(hit) if hit.token.as_bytes() == token => hit,
            _ => self.verify_chain(
                std::str::from_utf8(token).map_err(|_| NOT_TEXT)?,
                signed_len,
            )?,
        };
        self.check_claims(&entry, nonce, now)?;
        let terms = entry.license.terms();
        if self.expect.require_freshness && terms.nonce_period == 0 {
            return Err(Error::NotIncluded(
                "the license demands no fresh nonces, and this service requires them",
            ));
        }
        {
            let mut seen = lock(&self.sequences);
            let highest = seen.entry(terms.id).or_insert(terms.sequence);
            if terms.sequence < *highest {
                return Err(Error::UntrustedChain(
                    "a superseded version of the license (its sequence is below one already verified)",
                ));
            }
            *highest = terms.sequence;
        }
        Ok(Verified {
            claims: entry.claims.clone(),
            cert_not_after: entry.cert.request.not_after,
            seats: entry.license.terms().seats_for(&entry.claims.aud),
            nonce: entry.claims.nonce.clone(),
            nonce_period: entry.license.terms().nonce_period,
            grace: entry.claims.grace,
        })
    }

    /// Everything that does not depend on the time: structure, chain, signature.
    fn verify_chain(&self, token: &str, signed_len: usize) -> Result<CachedToken> {
        let signed = &token[..signed_len];
        let (header_text, claims_text) = signed
            .split_once('.')
            .ok_or(Error::Malformed("not a compact JWS"))?;
        if claims_text.contains('.') {
            return Err(Error::Malformed("not a compact JWS"));
        }
        let header = self.header(header_text)?;
        let signature: [u8; 64] = b64(&token[signed_len + 1..], "signature is not base64url")?
            .try_into()
            .map_err(|_| Error::Malformed("signature is not 64 bytes"))?;
        let claims: TokenClaims = json_object(&b64(claims_text, "claims are not base64url")?)
            .ok_or(Error::Malformed(
                "claims missing, repeated or of the wrong type",
            ))?;

        let license = self.license(&claims.lic)?;
        let CachedCert {
            cert, proven, kid, ..
        } = self.certificate(&claims.dcert, &claims.lic, &license)?;
        let session = cert.request.session_key;
        if header.kid.as_deref() != Some(&*kid) {
            return Err(Error::UntrustedChain(
                "kid does not name the certified session key",
            ));
        }
        if !session.verify(signed.as_bytes(), &signature) {
            return Err(Error::BadSignature);
        }
        // The proof, unless this very proof of this very leaf held under
        // this certificate before (the seat counts are checked either way).
        // The node memo is used when no other thread holds it: a proof is
        // never waited on, only checked without the memo.
        if claims.prf.is_some() && lock(&proven).holds(&claims) {
            check_seats(&license, &cert)?;
        } else {
            match proven.try_lock() {
                Ok(mut memo) => {
                    check_inclusion(&claims, &license, &cert, Some(&mut memo.1))?;
                    memo.remember(&claims);
                }
                Err(_) => {
                    check_inclusion(&claims, &license, &cert, None)?;
                    lock(&proven).remember(&claims);
                }
            }
        }
        let entry = CachedToken {
            token: Arc::from(token),
            claims: Arc::new(claims),
            license,
            cert,
        };
        let key: Arc<str> = Arc::from(&token[signed_len + 1..]);
        lock(&self.tokens).insert(key, entry.clone());
        *lock(&self.header) = Some((Arc::from(header_text), header));
        Ok(entry)
    }

    /// The parsed header: remembered when `text` is byte-identical to the
    /// header of the last token that verified, else [`parse_header`].
    fn header(&self, text: &str) -> Result<Arc<Header>> {
        if let Some((known, header)) = &*lock(&self.header)
            && **known == *text
        {
            return Ok(header.clone());
        }
        Ok(Arc::new(parse_header(&b64(
            text,
            "header is not base64url",
        )?)?))
    }

    fn license(&self, lic: &str) -> Result<Arc<License>> {
        if let Some(hit) = lock(&self.licenses).get(lic) {
            return Ok(hit);
        }
        let license = License::decode(&b64(lic, "lic is not base64url")?).map_err(|e| {
            if newer_format(&e) {
                Error::Malformed(
                    "lic is in a license format this build does not read (newer Tether): upgrade the verifier",
                )
            } else {
                Error::Malformed("lic is not a license")
            }
        })?;
        license.verify(&self.vendor).map_err(|_| {
            Error::UntrustedChain("license is not signed by the trusted vendor key")
        })?;
        let license = Arc::new(license);
        lock(&self.licenses).insert(Arc::from(lic), license.clone());
        Ok(license)
    }

    fn certificate(&self, dcert: &str, lic: &str, license: &License) -> Result<CachedCert> {
        if let Some(hit) = lock(&self.certs).get(dcert)
            && *hit.lic == *lic
        {
            return Ok(hit);
        }
        let cert = Certificate::decode(&b64(dcert, "dcert is not base64url")?).map_err(|e| {
            if newer_format(&e) {
                Error::Malformed(
                    "dcert is in a certificate format this build does not read (newer Tether): upgrade the verifier",
                )
            } else {
                Error::Malformed("dcert is not a delegation certificate")
            }
        })?;
        let terms = license.terms();
        if cert.serial != terms.dongle_serial {
            return Err(Error::UntrustedChain("certificate is from another dongle"));
        }
        cert.verify_by(&terms.dongle).map_err(chain_error)?;
        let entry = CachedCert {
            kid: Arc::from(cert.request.session_key.fingerprint().short()),
            cert: Arc::new(cert),
            lic: Arc::from(lic),
            proven: Arc::new(Mutex::new(Proven::default())),
        };
        lock(&self.certs).insert(Arc::from(dcert), entry.clone());
        Ok(entry)
    }

    /// Audience, issuer, service, features, nonce and every time window.
    fn check_claims(&self, t: &CachedToken, nonce: NonceRule<'_>, now: UnixTime) -> Result<()> {
        let c = &*t.claims;
        let terms = t.license.terms();
        let req = &t.cert.request;
        let leeway = Duration::from_secs(self.expect.leeway);
        if c.aud != self.expect.service || c.sub != c.aud {
            return Err(Error::WrongAudience {
                found: c.aud.clone(),
                expected: self.expect.service.clone(),
            });
        }
        if c.iss != tether_keys::claims::issuer_for(&terms.dongle_serial) {
            return Err(Error::WrongIssuer(c.iss.clone()));
        }
        if !t.license.allows_service(&c.aud) {
            return Err(Error::ServiceNotLicensed(c.aud.clone()));
        }
        if let Some(missing) = self
            .expect
            .features
            .iter()
            .find(|f| !t.license.has_feature(f))
        {
            return Err(Error::MissingFeature(missing.clone()));
        }
        let nonce_ok = match nonce {
            NonceRule::Any => true,
            NonceRule::Is(n) => c.nonce.as_deref() == Some(n),
            NonceRule::OneOf(accepted) => c
                .nonce
                .as_deref()
                .is_some_and(|mine| accepted.contains(&mine)),
        };
        if !nonce_ok {
            return Err(Error::NonceMismatch);
        }
        if let Some(own) = &self.expect.instance
            && !instance_matches(c.ins.as_deref(), own, terms.seats_for(&c.aud))
        {
            return Err(Error::WrongInstance);
        }
        let cert_len = req
            .not_after
            .saturating_duration_since(req.not_before)
            .as_secs();
        if cert_len > self.expect.max_cert_lifetime {
            return Err(Error::CertificateTooLong(cert_len));
        }
        if c.exp < c.iat
            || c.exp.saturating_duration_since(c.iat)
                > Duration::from_secs(u64::from(terms.max_token_ttl))
            || c.iat.saturating_add(leeway) < req.not_before
            || c.exp > req.not_after.saturating_add(leeway)
        {
            return Err(Error::LifetimeTooLong);
        }
        // The license's grace (vendor-signed) extends its window, unless
        // this service refuses grace. A `grace` claim must name that end.
        let grace_until = terms.grace_until();
        if let Some(claimed) = c.grace {
            if terms.grace == 0 || claimed != grace_until {
                return Err(Error::Malformed(
                    "grace claim is not the end of the license's grace period",
                ));
            }
            if self.expect.refuse_grace {
                return Err(Error::Expired(
                    "license (the token was issued in its grace period, which this service refuses)",
                ));
            }
        }
        let end = if self.expect.refuse_grace {
            terms.not_after
        } else {
            grace_until
        };
        window("license", terms.not_before, end, now, leeway)?;
        window(
            "delegation certificate",
            req.not_before,
            req.not_after,
            now,
            leeway,
        )?;
        if c.iat > now.saturating_add(leeway) {
            return Err(Error::NotYetValid("token"));
        }
        window("token", c.nbf, c.exp, now, leeway)
    }
}

/// The freshness checks of issue 15 (`docs/formats.md`, "Token claims"),
/// which depend on neither the time nor the nonce asked for: under a license
/// with a `nonce_period`, and for any token that carries a `prf` claim, the
/// certificate's commitment counts no service beyond its seats, and the
/// proof leads from the leaf `(aud, ins, nonce)` to the committed root, at a
/// position of the service's range, in a tree of the committed size.
/// `memo`: inner nodes already computed on paths to this certificate's
/// root, taken only for byte-identical inputs (the verdict is the same).
fn check_inclusion(
    c: &TokenClaims,
    license: &License,
    cert: &Certificate,
    memo: Option<&mut NodeMemo>,
) -> Result<()> {
    let fresh = license.terms().nonce_period > 0;
    if !fresh && c.prf.is_none() {
        return Ok(());
    }
    check_seats(license, cert)?;
    let Some(prf) = c.prf.as_deref() else {
        return Err(Error::NotIncluded(
            "no inclusion proof (prf claim) under a license that demands fresh nonces",
        ));
    };
    let (Some(ins), Some(nonce)) = (c.ins.as_deref(), c.nonce.as_deref()) else {
        return Err(Error::NotIncluded(
            "an inclusion proof needs the ins and nonce claims",
        ));
    };
    let commitment = &cert.request.commitment;
    let proof = InclusionProof::from_claim(prf)
        .map_err(|_| Error::Malformed("prf is not an inclusion proof"))?;
    let leaf = Leaf::new(c.aud.as_str(), ins, nonce)
        .map_err(|_| Error::NotIncluded("aud, ins or nonce is empty or longer than 255 bytes"))?;
    let checked = match memo {
        Some(memo) => commitment.check_with_memo(&leaf, &proof, memo),
        None => commitment.check(&leaf, &proof),
    };
    checked.map_err(|e| match e {
        tether_keys::Error::NotIncluded(why) => Error::NotIncluded(why),
        _ => Error::NotIncluded("the inclusion proof does not lead to the root"),
    })
}

/// A version 2 certificate with a commitment whose every service is
/// licensed and within its seats (`docs/formats.md`, "Token claims").
fn check_seats(license: &License, cert: &Certificate) -> Result<()> {
    let commitment = &cert.request.commitment;
    if cert.version() < 2 {
        return Err(Error::NotIncluded(
            "a version 1 certificate commits to no consumers",
        ));
    }
    if commitment.is_empty() {
        return Err(Error::NotIncluded(
            "the certificate commits to no consumers",
        ));
    }
    for (service, &count) in &commitment.counts {
        let seats = if license.allows_service(service) {
            license.terms().seats_for(service)
        } else {
            Some(0)
        };
        if let Some(seats) = seats
            && count > seats
        {
            return Err(Error::OverSeats {
                service: service.clone(),
                count,
                seats,
            });
        }
    }
    Ok(())
}
