//! The safe core of the bindings: status codes, the mapping from the
//! verifier's refusals, the claims as JSON, and the verifier and refresher
//! handles. The C entry points (`lib.rs`) wrap it; the Python package
//! (`verifier/python`) compiles this same file, so both speak one set of
//! codes.

use std::ffi::CStr;
use std::path::Path;
use std::time::Duration;

use tether_keys::{PublicKey, ServiceSecret, Vendor};
use tether_verifier::{Error, Expectations, LicenseState, LicenseWatch, Verifier, WatchConfig};

/// What a call did: success, the reason a token was refused, or why the call
/// itself failed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TetherStatus {
    /// Success.
    Ok = 0,
    /// Not a well-formed token (size, base64, JSON, missing or repeated claims).
    Malformed = 1,
    /// The header names an algorithm other than EdDSA / Ed25519.
    UnsupportedAlgorithm = 2,
    /// The JOSE header has a parameter the verifier refuses.
    BadHeader = 3,
    /// A link of the chain does not lead to the trusted vendor key.
    UntrustedChain = 4,
    /// The token's signature does not verify under the certified session key.
    BadSignature = 5,
    /// The token, its certificate or its license is past its end.
    Expired = 6,
    /// The token, its certificate or its license is not valid yet.
    NotYetValid = 7,
    /// The token is for another service.
    WrongAudience = 8,
    /// `iss` does not name the licensed dongle.
    WrongIssuer = 9,
    /// The license does not list this service.
    ServiceNotLicensed = 10,
    /// A required feature is not in the license.
    MissingFeature = 11,
    /// The token was issued to another consumer instance.
    WrongInstance = 12,
    /// The token does not echo the nonce given.
    NonceMismatch = 13,
    /// The certificate's window is longer than allowed.
    CertificateTooLong = 14,
    /// The token lives longer than the license or its certificate allow.
    LifetimeTooLong = 15,
    /// Under a license that demands fresh nonces (or for a token with a
    /// `prf` claim), the token's `(aud, ins, nonce)` leaf is not proven to
    /// be in its certificate's Merkle commitment (no proof, no commitment,
    /// a proof that does not lead to the root).
    NotIncluded = 16,
    /// The certificate commits to more instances of a service than the
    /// license has seats for.
    OverSeats = 17,
    /// The token echoes a nonce drawn a nonce period ago or longer (given by
    /// the refresher, never by an offline verify).
    StaleNonce = 18,
    /// Refused for a reason this version of the library has no code for
    /// (a newer verifier's reason): the token is refused all the same.
    OtherRefusal = 63,
    /// A pointer that must not be NULL was NULL.
    NullArgument = 64,
    /// Text that must be UTF-8 was not.
    InvalidUtf8 = 65,
    /// The vendor public key could not be read or is not a vendor public key.
    BadKey = 66,
    /// An argument is out of its domain (a bad URL, instance id or secret,
    /// a buffer length that overflows).
    InvalidArgument = 67,
    /// A file could not be read, or a thread could not be started.
    Io = 68,
    /// A bug: the library panicked. The call had no effect; the handle may
    /// still be used or freed.
    InternalPanic = 127,
}

impl TetherStatus {
    /// Every status, in code order.
    pub(crate) const ALL: [TetherStatus; 26] = [
        TetherStatus::Ok,
        TetherStatus::Malformed,
        TetherStatus::UnsupportedAlgorithm,
        TetherStatus::BadHeader,
        TetherStatus::UntrustedChain,
        TetherStatus::BadSignature,
        TetherStatus::Expired,
        TetherStatus::NotYetValid,
        TetherStatus::WrongAudience,
        TetherStatus::WrongIssuer,
        TetherStatus::ServiceNotLicensed,
        TetherStatus::MissingFeature,
        TetherStatus::WrongInstance,
        TetherStatus::NonceMismatch,
        TetherStatus::CertificateTooLong,
        TetherStatus::LifetimeTooLong,
        TetherStatus::NotIncluded,
        TetherStatus::OverSeats,
        TetherStatus::StaleNonce,
        TetherStatus::OtherRefusal,
        TetherStatus::NullArgument,
        TetherStatus::InvalidUtf8,
        TetherStatus::BadKey,
        TetherStatus::InvalidArgument,
        TetherStatus::Io,
        TetherStatus::InternalPanic,
    ];

    /// The stable name of the status (`"expired"`, ...): the reason codes of
    /// `tests/conformance/vectors.json`, and what the Python exceptions carry.
    pub const fn name(self) -> &'static str {
        self.name_c().to_str_const()
    }

    pub(crate) const fn name_c(self) -> &'static Name {
        match self {
            TetherStatus::Ok => &Name(c"ok"),
            TetherStatus::Malformed => &Name(c"malformed"),
            TetherStatus::UnsupportedAlgorithm => &Name(c"unsupported_algorithm"),
            TetherStatus::BadHeader => &Name(c"bad_header"),
            TetherStatus::UntrustedChain => &Name(c"untrusted_chain"),
            TetherStatus::BadSignature => &Name(c"bad_signature"),
            TetherStatus::Expired => &Name(c"expired"),
            TetherStatus::NotYetValid => &Name(c"not_yet_valid"),
            TetherStatus::WrongAudience => &Name(c"wrong_audience"),
            TetherStatus::WrongIssuer => &Name(c"wrong_issuer"),
            TetherStatus::ServiceNotLicensed => &Name(c"service_not_licensed"),
            TetherStatus::MissingFeature => &Name(c"missing_feature"),
            TetherStatus::WrongInstance => &Name(c"wrong_instance"),
            TetherStatus::NonceMismatch => &Name(c"nonce_mismatch"),
            TetherStatus::CertificateTooLong => &Name(c"certificate_too_long"),
            TetherStatus::LifetimeTooLong => &Name(c"lifetime_too_long"),
            TetherStatus::NotIncluded => &Name(c"not_included"),
            TetherStatus::OverSeats => &Name(c"over_seats"),
            TetherStatus::StaleNonce => &Name(c"stale_nonce"),
            TetherStatus::OtherRefusal => &Name(c"other_refusal"),
            TetherStatus::NullArgument => &Name(c"null_argument"),
            TetherStatus::InvalidUtf8 => &Name(c"invalid_utf8"),
            TetherStatus::BadKey => &Name(c"bad_key"),
            TetherStatus::InvalidArgument => &Name(c"invalid_argument"),
            TetherStatus::Io => &Name(c"io"),
            TetherStatus::InternalPanic => &Name(c"internal_panic"),
        }
    }

    /// Whether this status is the refusal of a token (codes 1 to 63).
    pub const fn is_refusal(self) -> bool {
        matches!(self as u32, 1..=63)
    }
}

/// A status name, as a C string with static lifetime.
pub(crate) struct Name(pub(crate) &'static CStr);

impl Name {
    const fn to_str_const(&self) -> &'static str {
        match self.0.to_str() {
            Ok(s) => s,
            Err(_) => "",
        }
    }
}

/// The status for a refusal of the verifier. A reason added to
/// [`tether_verifier::Error`] after this library was written maps to
/// [`TetherStatus::OtherRefusal`] until it gets a code of its own.
pub fn status_of(error: &Error) -> TetherStatus {
    match error {
        Error::Malformed(_) => TetherStatus::Malformed,
        Error::UnsupportedAlgorithm(_) => TetherStatus::UnsupportedAlgorithm,
        Error::BadHeader(_) => TetherStatus::BadHeader,
        Error::UntrustedChain(_) => TetherStatus::UntrustedChain,
        Error::BadSignature => TetherStatus::BadSignature,
        Error::Expired(_) => TetherStatus::Expired,
        Error::NotYetValid(_) => TetherStatus::NotYetValid,
        Error::WrongAudience { .. } => TetherStatus::WrongAudience,
        Error::WrongIssuer(_) => TetherStatus::WrongIssuer,
        Error::ServiceNotLicensed(_) => TetherStatus::ServiceNotLicensed,
        Error::MissingFeature(_) => TetherStatus::MissingFeature,
        Error::WrongInstance => TetherStatus::WrongInstance,
        Error::NonceMismatch => TetherStatus::NonceMismatch,
        Error::CertificateTooLong(_) => TetherStatus::CertificateTooLong,
        Error::LifetimeTooLong => TetherStatus::LifetimeTooLong,
        Error::NotIncluded(_) => TetherStatus::NotIncluded,
        Error::OverSeats { .. } => TetherStatus::OverSeats,
        Error::StaleNonce => TetherStatus::StaleNonce,
        _ => TetherStatus::OtherRefusal,
    }
}

/// A verified token as one JSON object: the token's claims (`iss`, `sub`,
/// `aud`, `iat`, `nbf`, `exp`, `jti`, `lic`, `dcert`, and `nonce`, `ins`
/// when present), plus `cert_not_after` (UNIX seconds), `seats` (the
/// license's seat count for the service, `null` for unlimited), `nonce`
/// (the nonce the token echoes, `null` for none) and `nonce_period` (the
/// license's, in seconds; 0: freshness not required).
pub fn claims_json(v: &tether_verifier::Verified) -> String {
    let mut obj = match serde_json::to_value(&*v.claims) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    obj.insert("cert_not_after".into(), v.cert_not_after.secs().into());
    obj.insert(
        "nonce".into(),
        v.nonce.clone().map_or(serde_json::Value::Null, Into::into),
    );
    obj.insert("nonce_period".into(), v.nonce_period.into());
    obj.insert(
        "seats".into(),
        v.seats.map_or(serde_json::Value::Null, Into::into),
    );
    serde_json::Value::Object(obj).to_string()
}

/// A failed call: its status and what to tell the caller.
#[derive(Debug)]
pub struct Fail {
    /// What failed.
    pub status: TetherStatus,
    /// Why, in words.
    pub message: String,
}

impl Fail {
    /// A failure with `status` and `message`.
    pub fn new(status: TetherStatus, message: impl Into<String>) -> Self {
        Fail {
            status,
            message: message.into(),
        }
    }
}

impl From<&Error> for Fail {
    fn from(e: &Error) -> Self {
        Fail::new(status_of(e), e.to_string())
    }
}

/// A verifier: one trusted vendor key and what is expected of tokens.
/// Opaque; create with `tether_verifier_new_from_file` or
/// `tether_verifier_new_from_pem`, free with `tether_verifier_free`. Safe to
/// use from several threads at once.
#[derive(Debug)]
pub struct TetherVerifier {
    pub(crate) verifier: Verifier,
    vendor: PublicKey<Vendor>,
    expect: Expectations,
    instance: Option<String>,
}

impl TetherVerifier {
    pub(crate) fn new(
        vendor: PublicKey<Vendor>,
        expect: Expectations,
        instance: Option<String>,
    ) -> Self {
        TetherVerifier {
            verifier: Verifier::new(vendor, expect.clone()),
            vendor,
            expect,
            instance,
        }
    }
}

impl TetherVerifier {
    /// From now on, refuse tokens issued in the license's grace period
    /// (a `grace` claim) and every token after the license's `not_after`:
    /// [`Expectations::refuse_grace`]. A fresh verifier is built: the
    /// chain cache starts empty.
    pub fn refuse_grace(&mut self) {
        self.expect = self.expect.clone().refuse_grace();
        self.verifier = Verifier::new(self.vendor, self.expect.clone());
    }

    /// A verifier for the vendor key in `pem` (PEM text) and these
    /// expectations.
    ///
    /// # Errors
    /// [`TetherStatus::BadKey`] for a PEM that is not a vendor public key,
    /// [`TetherStatus::InvalidArgument`] for a bad instance id.
    pub fn from_pem(
        pem: &str,
        service: &str,
        features: &[String],
        leeway_secs: u64,
        instance: Option<&str>,
    ) -> Result<Self, (TetherStatus, String)> {
        let (vendor, _) = tether_keys::keyfile::parse_public_key::<Vendor>(Path::new("<pem>"), pem)
            .map_err(|e| (TetherStatus::BadKey, e.to_string()))?;
        let mut expect = Expectations::new(service)
            .require_features(features.iter().cloned())
            .leeway(leeway_secs);
        if let Some(id) = instance {
            if !tether_verifier::is_instance_id(id) {
                return Err((
                    TetherStatus::InvalidArgument,
                    "instance is not 1-64 characters of A-Z a-z 0-9 . _ -".into(),
                ));
            }
            expect = expect.instance(id);
        }
        Ok(TetherVerifier::new(
            vendor,
            expect,
            instance.map(str::to_string),
        ))
    }

    /// Verifies `token` at `now` (UNIX seconds; `None`: the system clock):
    /// the claims as [`claims_json`], or the refusal's status and words.
    ///
    /// # Errors
    /// The refusal, as a status (1 to 63) and the reason in words.
    pub fn verify(
        &self,
        token: &str,
        nonce: Option<&str>,
        now: Option<u64>,
    ) -> Result<String, (TetherStatus, String)> {
        let now = now.map_or_else(tether_keys::UnixTime::now, tether_keys::UnixTime::from_secs);
        self.verifier
            .verify_at(token, nonce, now)
            .map(|v| claims_json(&v))
            .map_err(|e| (status_of(&e), e.to_string()))
    }

    /// Verifies `token` at `now` (UNIX seconds; `None`: the system clock),
    /// requiring its nonce to be one of `accepted` (the nonces this consumer
    /// drew and has not retired): [`Verifier::verify_fresh`]. The claims as
    /// [`claims_json`], or the refusal's status and words.
    ///
    /// # Errors
    /// The refusal, as a status (1 to 63) and the reason in words.
    pub fn verify_fresh(
        &self,
        token: &str,
        accepted: &[&str],
        now: Option<u64>,
    ) -> Result<String, (TetherStatus, String)> {
        let now = now.map_or_else(tether_keys::UnixTime::now, tether_keys::UnixTime::from_secs);
        self.verifier
            .verify_fresh(token, accepted, now)
            .map(|v| claims_json(&v))
            .map_err(|e| (status_of(&e), e.to_string()))
    }
}

/// Whether a watch's service is licensed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TetherLicenseState {
    /// No valid token: do not do licensed work.
    Unlicensed = 0,
    /// A verified token that has not run out is held.
    Licensed = 1,
}

/// A refresher keeping one service licensed in the background (its own
/// thread): it fetches tokens from tetherd, verifies them, renews them, and
/// follows the authority's events. Opaque; create with `tether_watch_start`,
/// stop with `tether_watch_stop`. Safe to query from several threads.
#[derive(Debug)]
pub struct TetherWatch {
    runtime: Option<tokio::runtime::Runtime>,
    watch: Option<LicenseWatch>,
}

impl Drop for TetherWatch {
    fn drop(&mut self) {
        if let (Some(rt), Some(watch)) = (&self.runtime, &self.watch) {
            // Give the seat back at once; an authority out of reach only
            // delays that to the lease's end.
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), watch.release()).await
            });
        }
        drop(self.watch.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// The safe half of [`tether_watch_start`], shared with the Python package.
///
/// # Errors
/// As [`tether_watch_start`], as a status and a message.
pub fn start_watch(
    url: &str,
    secret_file: &str,
    v: &TetherVerifier,
) -> Result<TetherWatch, (TetherStatus, String)> {
    start_watch_inner(url, secret_file, v).map_err(|f| (f.status, f.message))
}

pub(crate) fn start_watch_inner(
    url: &str,
    secret_file: &str,
    v: &TetherVerifier,
) -> Result<TetherWatch, Fail> {
    let authority = url.strip_prefix("http://").unwrap_or("");
    if authority.trim_end_matches('/').is_empty() || authority.contains(char::is_whitespace) {
        return Err(Fail::new(
            TetherStatus::InvalidArgument,
            "url must be http://host:port",
        ));
    }
    let text = std::fs::read_to_string(secret_file)
        .map_err(|e| Fail::new(TetherStatus::Io, format!("secret file {secret_file}: {e}")))?;
    let secret = ServiceSecret::parse(&text).map_err(|e| {
        Fail::new(
            TetherStatus::InvalidArgument,
            format!("secret file {secret_file}: {e}"),
        )
    })?;
    let verifier = Verifier::new(v.vendor, v.expect.clone());
    let mut config = WatchConfig::new(url, v.expect.service(), secret, verifier);
    if let Some(id) = &v.instance {
        config = config
            .instance(id)
            .map_err(|e| Fail::new(TetherStatus::InvalidArgument, e.to_string()))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tether-watch")
        .enable_all()
        .build()
        .map_err(|e| Fail::new(TetherStatus::Io, format!("starting the refresher: {e}")))?;
    let watch = {
        let _entered = runtime.enter();
        LicenseWatch::spawn(config)
    };
    Ok(TetherWatch {
        runtime: Some(runtime),
        watch: Some(watch),
    })
}

impl TetherWatch {
    /// Whether the service holds a token that has not run out.
    pub fn is_licensed(&self) -> bool {
        self.watch.as_ref().is_some_and(LicenseWatch::is_licensed)
    }

    /// The state and, when unlicensed, why (licensed: `"licensed"`).
    pub fn state(&self) -> (TetherLicenseState, String) {
        match self.watch.as_ref().map(LicenseWatch::state) {
            Some(LicenseState::Licensed { .. }) => {
                (TetherLicenseState::Licensed, "licensed".into())
            }
            Some(LicenseState::Unlicensed { reason }) => (TetherLicenseState::Unlicensed, reason),
            None => (TetherLicenseState::Unlicensed, "stopped".into()),
        }
    }

    /// The claims of the token held, as [`claims_json`] gives them but
    /// without `cert_not_after` and `seats`; `None` while unlicensed.
    pub fn claims_json(&self) -> Option<String> {
        match self.watch.as_ref().map(LicenseWatch::state) {
            Some(LicenseState::Licensed { claims, .. }) => serde_json::to_string(&*claims).ok(),
            _ => None,
        }
    }

    /// The instance id tokens are fetched for.
    pub fn instance(&self) -> &str {
        self.watch.as_ref().map_or("", LicenseWatch::instance)
    }
}
