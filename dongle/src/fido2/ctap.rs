//! CTAP2 commands (FIDO CTAP 2.1, section 6): the requests Tether sends and
//! strict decoders of the answers. Each request is one command byte and a
//! canonical CBOR map; each answer is a status byte (section 6.3) and, on
//! success, one CBOR map with integer keys and nothing after it.

use std::collections::BTreeMap;

use ciborium::Value;

use super::cbor::{self, Map, b, i, map, t};
use super::cose::{CosePublicKey, PREFERRED_ALGORITHMS};
use crate::error::ProtocolError;

/// authenticatorMakeCredential (section 6.1).
pub const MAKE_CREDENTIAL: u8 = 0x01;
/// authenticatorGetAssertion (section 6.2).
pub const GET_ASSERTION: u8 = 0x02;
/// authenticatorGetInfo (section 6.4).
pub const GET_INFO: u8 = 0x04;

/// authenticatorData flag: user present (WebAuthn L2, section 6.1).
pub const FLAG_UP: u8 = 0x01;
/// authenticatorData flag: user verified.
pub const FLAG_UV: u8 = 0x04;
/// authenticatorData flag: attested credential data included.
pub const FLAG_AT: u8 = 0x40;
/// authenticatorData flag: extension data included.
pub const FLAG_ED: u8 = 0x80;

fn malformed(what: &'static str, reason: &'static str) -> ProtocolError {
    ProtocolError::Malformed { what, reason }
}

/// The answer to authenticatorGetInfo (section 6.4), the fields Tether reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorInfo {
    /// 0x01 versions, e.g. `FIDO_2_0`, `FIDO_2_1`, `U2F_V2`.
    pub versions: Vec<String>,
    /// 0x02 extensions, e.g. `credProtect`.
    pub extensions: Vec<String>,
    /// 0x03 the model's AAGUID.
    pub aaguid: [u8; 16],
    /// 0x04 options (`rk`, `up`, `uv`, `alwaysUv`, `clientPin`, ...).
    pub options: BTreeMap<String, bool>,
    /// 0x05 maxMsgSize, in bytes.
    pub max_msg_size: Option<u64>,
    /// 0x0A algorithms (COSE ids), when the key lists them.
    pub algorithms: Option<Vec<i64>>,
    /// 0x0E firmwareVersion.
    pub firmware_version: Option<u64>,
}

impl AuthenticatorInfo {
    /// Decodes the CBOR map of a successful answer.
    ///
    /// # Errors
    /// [`ProtocolError`] for bytes that are not one map, a missing versions
    /// or AAGUID, or a field of the wrong type.
    pub fn decode(body: &[u8]) -> Result<AuthenticatorInfo, ProtocolError> {
        const W: &str = "authenticatorGetInfo response";
        let m = Map::new(cbor::decode_one(body, W)?, W)?;
        let strings = |v: &Value| -> Result<Vec<String>, ProtocolError> {
            cbor::array(v, W, "a list of strings is not an array")?
                .iter()
                .map(|s| cbor::text(s, W, "a list entry is not text").map(str::to_string))
                .collect()
        };
        let versions = strings(m.required(0x01, "no versions (0x01)")?)?;
        let extensions = m
            .int_key(0x02)
            .map(strings)
            .transpose()?
            .unwrap_or_default();
        let aaguid = cbor::bytes(
            m.required(0x03, "no aaguid (0x03)")?,
            W,
            "aaguid is not bytes",
        )?
        .try_into()
        .map_err(|_| malformed(W, "aaguid is not 16 bytes"))?;
        let mut options = BTreeMap::new();
        if let Some(v) = m.int_key(0x04) {
            let om = Map::new(v.clone(), W)?;
            for (k, v) in om.entries() {
                let k = cbor::text(k, W, "an option name is not text")?;
                options.insert(
                    k.to_string(),
                    cbor::boolean(v, W, "an option is not a boolean")?,
                );
            }
        }
        let uint = |key: i64, reason: &'static str| -> Result<Option<u64>, ProtocolError> {
            m.int_key(key)
                .map(|v| {
                    v.as_integer()
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or(malformed(W, reason))
                })
                .transpose()
        };
        let max_msg_size = uint(0x05, "maxMsgSize is not an unsigned integer")?;
        let firmware_version = uint(0x0E, "firmwareVersion is not an unsigned integer")?;
        let algorithms = m
            .int_key(0x0A)
            .map(|v| {
                cbor::array(v, W, "algorithms is not an array")?
                    .iter()
                    .map(|p| {
                        let p = Map::new(p.clone(), W)?;
                        cbor::int(
                            p.text_key("alg")
                                .ok_or(malformed(W, "an algorithm without alg"))?,
                            W,
                            "alg is not an integer",
                        )
                    })
                    .collect::<Result<Vec<i64>, ProtocolError>>()
            })
            .transpose()?;
        Ok(AuthenticatorInfo {
            versions,
            extensions,
            aaguid,
            options,
            max_msg_size,
            algorithms,
            firmware_version,
        })
    }

    /// True when the key speaks CTAP2 (`FIDO_2_0` or later).
    pub fn is_ctap2(&self) -> bool {
        self.versions.iter().any(|v| v.starts_with("FIDO_2_"))
    }

    /// True when the key demands user verification for every assertion
    /// (`alwaysUv`): it cannot sign silently.
    pub fn always_uv(&self) -> bool {
        self.options.get("alwaysUv") == Some(&true)
    }

    /// The AAGUID as 32 lowercase hex digits.
    pub fn aaguid_hex(&self) -> String {
        hex(&self.aaguid)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// authenticatorMakeCredential parameters (section 6.1.1): a non-resident
/// credential for `rp_id`, algorithms [`PREFERRED_ALGORITHMS`], credProtect 1
/// when the key supports the extension, no PIN, no uv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeCredential {
    /// 0x01 clientDataHash (32 bytes).
    pub client_data_hash: [u8; 32],
    /// 0x02 rp.id, e.g. `tether:default`.
    pub rp_id: String,
    /// 0x03 user.id (1-64 bytes); never shown, since the credential is not resident.
    pub user_id: Vec<u8>,
    /// Sends the credProtect extension (0x06) with value 1 (userVerificationOptional).
    pub cred_protect: bool,
}

impl MakeCredential {
    /// The command byte and CBOR request.
    pub fn encode(&self) -> Vec<u8> {
        let params = PREFERRED_ALGORITHMS
            .iter()
            .map(|alg| map(vec![(t("alg"), i(*alg)), (t("type"), t("public-key"))]))
            .collect();
        let mut entries = vec![
            (i(0x01), b(&self.client_data_hash)),
            (
                i(0x02),
                map(vec![(t("id"), t(&self.rp_id)), (t("name"), t("Tether"))]),
            ),
            (
                i(0x03),
                // displayName is optional in CTAP 2.1 but required by
                // WebAuthn, and some authenticators refuse a user without it.
                map(vec![
                    (t("id"), b(&self.user_id)),
                    (t("name"), t("tether")),
                    (t("displayName"), t("tether")),
                ]),
            ),
            (i(0x04), Value::Array(params)),
        ];
        if self.cred_protect {
            entries.push((i(0x06), map(vec![(t("credProtect"), i(1))])));
        }
        entries.push((i(0x07), map(vec![(t("rk"), Value::Bool(false))])));
        let mut out = vec![MAKE_CREDENTIAL];
        out.extend_from_slice(&cbor::encode(&map(entries)));
        out
    }
}

/// The attestation statement of a new credential (WebAuthn L2, section 8.2
/// for `packed`), the fields Tether checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationStatement {
    /// alg: the COSE algorithm of `sig`.
    pub alg: Option<i64>,
    /// sig: over `authData || clientDataHash`.
    pub sig: Option<Vec<u8>>,
    /// x5c: the attestation certificate and its chain (DER), leaf first;
    /// empty for self attestation.
    pub x5c: Vec<Vec<u8>>,
}

/// A new credential (section 6.1.2): the attestation object's fields and
/// what its authenticator data says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// 0x01 fmt: `packed`, `none`, `fido-u2f`, ...
    pub fmt: String,
    /// 0x02 authData, raw (the attestation signature covers these bytes).
    pub auth_data: Vec<u8>,
    /// 0x03 attStmt.
    pub att_stmt: AttestationStatement,
    /// SHA-256 of the RP id, from authData.
    pub rp_id_hash: [u8; 32],
    /// authData flags.
    pub flags: u8,
    /// authData signCount.
    pub sign_count: u32,
    /// The AAGUID in the attested credential data.
    pub aaguid: [u8; 16],
    /// The credential id.
    pub credential_id: Vec<u8>,
    /// The credential public key.
    pub public_key: CosePublicKey,
}

impl NewCredential {
    /// Decodes the CBOR map of a successful makeCredential answer and the
    /// authenticator data in it (WebAuthn L2, section 6.5.1: attested
    /// credential data after the 37-byte header).
    ///
    /// # Errors
    /// [`ProtocolError`] for a malformed map, authData without the AT flag,
    /// a truncated or overlong authData, or an unsupported credential key.
    pub fn decode(body: &[u8]) -> Result<NewCredential, ProtocolError> {
        const W: &str = "authenticatorMakeCredential response";
        const A: &str = "authenticatorData (makeCredential)";
        let m = Map::new(cbor::decode_one(body, W)?, W)?;
        let fmt = cbor::text(m.required(0x01, "no fmt (0x01)")?, W, "fmt is not text")?.to_string();
        let auth_data = cbor::bytes(
            m.required(0x02, "no authData (0x02)")?,
            W,
            "authData is not bytes",
        )?
        .to_vec();
        let st = Map::new(m.required(0x03, "no attStmt (0x03)")?.clone(), W)?;
        let att_stmt = AttestationStatement {
            alg: st
                .text_key("alg")
                .map(|v| cbor::int(v, W, "attStmt alg is not an integer"))
                .transpose()?,
            sig: st
                .text_key("sig")
                .map(|v| cbor::bytes(v, W, "attStmt sig is not bytes").map(<[u8]>::to_vec))
                .transpose()?,
            x5c: st
                .text_key("x5c")
                .map(|v| {
                    cbor::array(v, W, "x5c is not an array")?
                        .iter()
                        .map(|c| cbor::bytes(c, W, "an x5c entry is not bytes").map(<[u8]>::to_vec))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
        };
        if auth_data.len() < 37 + 18 {
            return Err(ProtocolError::BadLength {
                what: A,
                expected: 55,
                got: auth_data.len(),
            });
        }
        let rp_id_hash: [u8; 32] = auth_data[..32]
            .try_into()
            .map_err(|_| malformed(A, "short"))?;
        let flags = auth_data[32];
        let sign_count =
            u32::from_be_bytes([auth_data[33], auth_data[34], auth_data[35], auth_data[36]]);
        if flags & FLAG_AT == 0 {
            return Err(malformed(A, "no attested credential data (AT flag clear)"));
        }
        let aaguid: [u8; 16] = auth_data[37..53]
            .try_into()
            .map_err(|_| malformed(A, "short"))?;
        let id_len = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
        let rest = &auth_data[55..];
        if rest.len() < id_len {
            return Err(malformed(A, "credential id runs past the end"));
        }
        let (credential_id, rest) = rest.split_at(id_len);
        if credential_id.is_empty() {
            return Err(malformed(A, "empty credential id"));
        }
        let (key, used) = cbor::decode_prefix(rest, A)?;
        let public_key = CosePublicKey::from_cbor(key)?;
        let rest = &rest[used..];
        if flags & FLAG_ED != 0 {
            // One extensions map, then nothing.
            cbor::decode_one(rest, A)?;
        } else if !rest.is_empty() {
            return Err(ProtocolError::TrailingBytes {
                what: A,
                extra: rest.len(),
            });
        }
        Ok(NewCredential {
            fmt,
            auth_data: auth_data.clone(),
            att_stmt,
            rp_id_hash,
            flags,
            sign_count,
            aaguid,
            credential_id: credential_id.to_vec(),
            public_key,
        })
    }
}

/// authenticatorGetAssertion parameters (section 6.2.1), always silent:
/// allowList = one credential, options `up=false`, no uv, no PIN, no
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetAssertion {
    /// 0x01 rpId.
    pub rp_id: String,
    /// 0x02 clientDataHash.
    pub client_data_hash: [u8; 32],
    /// The one credential id of the allowList (0x03).
    pub credential_id: Vec<u8>,
}

impl GetAssertion {
    /// The command byte and CBOR request.
    pub fn encode(&self) -> Vec<u8> {
        let entries = vec![
            (i(0x01), t(&self.rp_id)),
            (i(0x02), b(&self.client_data_hash)),
            (
                i(0x03),
                Value::Array(vec![map(vec![
                    (t("id"), b(&self.credential_id)),
                    (t("type"), t("public-key")),
                ])]),
            ),
            (i(0x05), map(vec![(t("up"), Value::Bool(false))])),
        ];
        let mut out = vec![GET_ASSERTION];
        out.extend_from_slice(&cbor::encode(&map(entries)));
        out
    }
}

/// An assertion (section 6.2.2): raw authenticator data and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// 0x02 authData (37 bytes for an assertion without extensions).
    pub auth_data: Vec<u8>,
    /// 0x03 signature: 64 bytes (Ed25519) or DER (ES256).
    pub signature: Vec<u8>,
}

impl Assertion {
    /// Decodes a successful getAssertion answer for `credential_id`.
    ///
    /// # Errors
    /// [`ProtocolError`] for a malformed map, a credential other than the
    /// one asked for, or more than one credential.
    pub fn decode(body: &[u8], credential_id: &[u8]) -> Result<Assertion, ProtocolError> {
        const W: &str = "authenticatorGetAssertion response";
        let m = Map::new(cbor::decode_one(body, W)?, W)?;
        // 0x01 may be left out when the allowList has one entry (section 6.2.2).
        if let Some(cred) = m.int_key(0x01) {
            let cred = Map::new(cred.clone(), W)?;
            let id = cbor::bytes(
                cred.text_key("id")
                    .ok_or(malformed(W, "credential without id"))?,
                W,
                "credential id is not bytes",
            )?;
            if id != credential_id {
                return Err(malformed(W, "the key answered for another credential"));
            }
        }
        if let Some(n) = m.int_key(0x05)
            && cbor::int(n, W, "numberOfCredentials is not an integer")? != 1
        {
            return Err(malformed(W, "more than one credential answered"));
        }
        Ok(Assertion {
            auth_data: cbor::bytes(
                m.required(0x02, "no authData (0x02)")?,
                W,
                "authData is not bytes",
            )?
            .to_vec(),
            signature: cbor::bytes(
                m.required(0x03, "no signature (0x03)")?,
                W,
                "signature is not bytes",
            )?
            .to_vec(),
        })
    }

    /// The signCount of the authenticator data (bytes 33..37), 0 when too short.
    pub fn sign_count(&self) -> u32 {
        self.auth_data
            .get(33..37)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Splits a CTAP2 answer into its status and body (section 6.3).
///
/// # Errors
/// [`ProtocolError::BadLength`] for an empty answer.
pub fn split_status(answer: &[u8]) -> Result<(u8, &[u8]), ProtocolError> {
    answer
        .split_first()
        .map(|(s, b)| (*s, b))
        .ok_or(ProtocolError::BadLength {
            what: "CTAP2 response",
            expected: 1,
            got: 0,
        })
}
