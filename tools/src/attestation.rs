//! Checks a new FIDO2 credential's attestation at enrolment (WebAuthn L2,
//! section 8.2 "Packed Attestation Statement Format"): the `x5c` chain up
//! to a vendor-trusted root (PEM files in a directory), the leaf's rules
//! (section 8.2.1), and the attestation signature over
//! `authenticatorData || clientDataHash`. Self attestation (no `x5c`) and
//! format `none` prove nothing about the model and are refused unless the
//! operator allows them.
//!
//! Certificates are parsed with RustCrypto's `x509-cert`; signatures are
//! checked with `p256`/`p384` (ECDSA with SHA-256 or SHA-384) and
//! `ed25519-dalek`. RSA roots are not supported.

use std::path::Path;

use anyhow::{Context as _, bail};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::Digest as _;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use tether_dongle::fido2::{CosePublicKey, NewCredential};

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_OU: &str = "2.5.4.11";
/// id-fido-gen-ce-aaguid (WebAuthn L2, section 8.2.1).
const OID_FIDO_AAGUID: &str = "1.3.6.1.4.1.45724.1.1.4";

/// How the attestation was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A chain to a trusted root: the leaf's subject and the root's subject.
    Chain {
        /// The attestation certificate's subject.
        leaf: String,
        /// The trusted root's subject.
        root: String,
    },
    /// Self attestation, allowed by the operator.
    SelfAttested,
    /// No attestation (`none`), allowed by the operator.
    None,
}

/// What the operator trusts.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// PEM roots (every `-----BEGIN CERTIFICATE-----` of every file).
    pub roots: Vec<Certificate>,
    /// Accept self attestation and `none`.
    pub allow_self_attested: bool,
}

impl Policy {
    /// Loads every certificate of every file in `dir`.
    ///
    /// # Errors
    /// When the directory cannot be read, a file holds a certificate that
    /// does not parse, or no certificate is found.
    pub fn load_roots(dir: &Path) -> anyhow::Result<Vec<Certificate>> {
        let mut roots = Vec::new();
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot read the attestation roots", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if !path.is_file() {
                continue;
            }
            let text =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            if !text.starts_with(b"-----BEGIN") && !text.windows(11).any(|w| w == b"-----BEGIN ") {
                continue;
            }
            let certs = Certificate::load_pem_chain(&text)
                .map_err(|e| anyhow::anyhow!("{}: not PEM certificates: {e}", path.display()))?;
            roots.extend(certs);
        }
        if roots.is_empty() {
            bail!(
                "{}: no PEM certificate found (put the key vendor's FIDO attestation root there)",
                dir.display()
            );
        }
        Ok(roots)
    }
}

/// Checks `cred`'s attestation for `client_data_hash` under `policy`.
///
/// # Errors
/// Each failure with its reason: an unknown format, a bad signature, a
/// leaf that breaks section 8.2.1, a chain that does not reach a root,
/// self attestation or `none` without `allow_self_attested`.
pub fn verify(
    cred: &NewCredential,
    client_data_hash: &[u8; 32],
    policy: &Policy,
) -> anyhow::Result<Verdict> {
    let mut signed = cred.auth_data.clone();
    signed.extend_from_slice(client_data_hash);
    match cred.fmt.as_str() {
        "packed" => {}
        "none" => {
            if policy.allow_self_attested {
                return Ok(Verdict::None);
            }
            bail!(
                "the key gave no attestation (format \"none\"): its model cannot be checked; \
                 pass --allow-self-attested to enrol it anyway"
            );
        }
        other => bail!(
            "attestation format {other:?} is not supported (only \"packed\"; \"none\" and self \
             attestation with --allow-self-attested)"
        ),
    }
    let st = &cred.att_stmt;
    let alg = st.alg.context("packed attestation without alg")?;
    let sig = st
        .sig
        .as_deref()
        .context("packed attestation without sig")?;
    if st.x5c.is_empty() {
        // Self attestation: the credential key signs, with its own algorithm.
        let own = match cred.public_key {
            CosePublicKey::Ed25519(_) => alg == -8 || alg == -19,
            CosePublicKey::P256 { .. } => alg == -7,
        };
        if !own {
            bail!("self attestation with alg {alg}, not the credential's algorithm");
        }
        verify_cose(&cred.public_key, &signed, sig).context(
            "the self-attestation signature does not verify with the new credential's key",
        )?;
        if !policy.allow_self_attested {
            bail!(
                "the key attests itself (packed self attestation, no certificate): its model \
                 cannot be checked; pass --allow-self-attested to enrol it anyway"
            );
        }
        return Ok(Verdict::SelfAttested);
    }
    let chain: Vec<Certificate> = st
        .x5c
        .iter()
        .enumerate()
        .map(|(i, der)| {
            Certificate::from_der(der).map_err(|e| anyhow::anyhow!("x5c[{i}] does not parse: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let leaf = &chain[0];
    check_leaf(leaf, &cred.aaguid)?;
    let leaf_spki = &leaf.tbs_certificate.subject_public_key_info;
    match alg {
        -7 => verify_ecdsa(leaf_spki, &signed, sig, Hash::Sha256),
        -35 => verify_ecdsa(leaf_spki, &signed, sig, Hash::Sha384),
        -8 | -19 => verify_ed25519(leaf_spki, &signed, sig),
        other => bail!("attestation alg {other} is not supported (ES256, ES384, EdDSA)"),
    }
    .context("the attestation signature does not verify with the attestation certificate")?;
    let now = std::time::SystemTime::now();
    for (i, cert) in chain.iter().enumerate() {
        let validity = &cert.tbs_certificate.validity;
        if now < validity.not_before.to_system_time() || now > validity.not_after.to_system_time() {
            bail!(
                "x5c[{i}] ({}) is outside its validity period",
                cert.tbs_certificate.subject
            );
        }
    }
    for i in 0..chain.len() - 1 {
        // RFC 5280, section 6.1.4 (k): an issuer must be a CA, or anyone
        // holding one attestation key mints leaves of any model under it.
        if !is_ca(&chain[i + 1])? {
            bail!(
                "x5c[{}] ({}) is not a CA certificate (basicConstraints cA), and signs x5c[{i}]",
                i + 1,
                chain[i + 1].tbs_certificate.subject
            );
        }
        verify_cert_signature(&chain[i], &chain[i + 1])
            .with_context(|| format!("x5c[{i}] is not signed by x5c[{}]", i + 1))?;
    }
    let top = &chain[chain.len() - 1];
    let top_der = top.to_der()?;
    for root in &policy.roots {
        if root.to_der()? == top_der
            || (root.tbs_certificate.subject == top.tbs_certificate.issuer
                && verify_cert_signature(top, root).is_ok())
        {
            return Ok(Verdict::Chain {
                leaf: leaf.tbs_certificate.subject.to_string(),
                root: root.tbs_certificate.subject.to_string(),
            });
        }
    }
    bail!(
        "the attestation chain ({} -> issuer {}) does not reach any trusted root \
         (--attestation-roots holds {} certificate(s))",
        leaf.tbs_certificate.subject,
        top.tbs_certificate.issuer,
        policy.roots.len()
    )
}

/// Whether `cert` has basicConstraints with cA set (RFC 5280, section
/// 4.2.1.9): what an issuer in the chain must have.
fn is_ca(cert: &Certificate) -> anyhow::Result<bool> {
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id.to_string() == OID_BASIC_CONSTRAINTS {
            let bc = x509_cert::ext::pkix::BasicConstraints::from_der(ext.extn_value.as_bytes())
                .context("basicConstraints does not parse")?;
            return Ok(bc.ca);
        }
    }
    Ok(false)
}

/// WebAuthn L2, section 8.2.1: version 3, subject OU "Authenticator
/// Attestation", not a CA, and the AAGUID extension (if present) equal to
/// the credential's.
fn check_leaf(leaf: &Certificate, aaguid: &[u8; 16]) -> anyhow::Result<()> {
    let tbs = &leaf.tbs_certificate;
    if tbs.version != x509_cert::Version::V3 {
        bail!("the attestation certificate is not X.509 version 3");
    }
    let is_attestation = |atv: &x509_cert::attr::AttributeTypeAndValue| {
        use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
        const OU: &str = "Authenticator Attestation";
        atv.oid.to_string() == OID_OU
            && (atv
                .value
                .decode_as::<Utf8StringRef<'_>>()
                .is_ok_and(|s| s.as_str() == OU)
                || atv
                    .value
                    .decode_as::<PrintableStringRef<'_>>()
                    .is_ok_and(|s| s.as_str() == OU))
    };
    let ou = tbs
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .any(is_attestation);
    if !ou {
        bail!("the attestation certificate's subject has no OU \"Authenticator Attestation\"");
    }
    for ext in tbs.extensions.iter().flatten() {
        match ext.extn_id.to_string().as_str() {
            OID_BASIC_CONSTRAINTS => {
                let bc =
                    x509_cert::ext::pkix::BasicConstraints::from_der(ext.extn_value.as_bytes())
                        .context("basicConstraints does not parse")?;
                if bc.ca {
                    bail!("the attestation certificate is a CA certificate");
                }
            }
            OID_FIDO_AAGUID => {
                if ext.critical {
                    bail!("the AAGUID extension must not be critical");
                }
                let inner =
                    x509_cert::der::asn1::OctetStringRef::from_der(ext.extn_value.as_bytes())
                        .context("the AAGUID extension is not an OCTET STRING")?;
                if inner.as_bytes() != aaguid {
                    bail!("the attestation certificate's AAGUID differs from the credential's");
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
}

fn verify_cert_signature(cert: &Certificate, issuer: &Certificate) -> anyhow::Result<()> {
    let tbs = cert.tbs_certificate.to_der()?;
    let sig = cert
        .signature
        .as_bytes()
        .context("certificate signature is not whole bytes")?;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    match cert.signature_algorithm.oid.to_string().as_str() {
        OID_ECDSA_SHA256 => verify_ecdsa(spki, &tbs, sig, Hash::Sha256),
        OID_ECDSA_SHA384 => verify_ecdsa(spki, &tbs, sig, Hash::Sha384),
        OID_ED25519 => verify_ed25519(spki, &tbs, sig),
        other => bail!(
            "certificate signature algorithm {other} is not supported (ECDSA with SHA-256/384, Ed25519; not RSA)"
        ),
    }
}

fn verify_ecdsa(
    spki: &SubjectPublicKeyInfoOwned,
    msg: &[u8],
    der_sig: &[u8],
    hash: Hash,
) -> anyhow::Result<()> {
    if spki.algorithm.oid.to_string() != OID_EC_PUBLIC_KEY {
        bail!("the signer's key is not an EC key");
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string())
        .context("EC key without a named curve")?;
    let point = spki
        .subject_public_key
        .as_bytes()
        .context("EC key is not whole bytes")?;
    let digest: Vec<u8> = match hash {
        Hash::Sha256 => sha2::Sha256::digest(msg).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(msg).to_vec(),
    };
    match curve.as_str() {
        OID_P256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).context("bad P-256 key")?;
            let sig = p256::ecdsa::Signature::from_der(der_sig).context("bad ECDSA signature")?;
            key.verify_prehash(&digest, &sig)
                .context("bad ECDSA signature")
        }
        OID_P384 => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).context("bad P-384 key")?;
            let sig = p384::ecdsa::Signature::from_der(der_sig).context("bad ECDSA signature")?;
            key.verify_prehash(&digest, &sig)
                .context("bad ECDSA signature")
        }
        other => bail!("EC curve {other} is not supported (P-256, P-384)"),
    }
}

fn verify_ed25519(spki: &SubjectPublicKeyInfoOwned, msg: &[u8], sig: &[u8]) -> anyhow::Result<()> {
    if spki.algorithm.oid.to_string() != OID_ED25519 {
        bail!("the signer's key is not an Ed25519 key");
    }
    let raw: [u8; 32] = spki
        .subject_public_key
        .as_bytes()
        .and_then(|b| b.try_into().ok())
        .context("Ed25519 key is not 32 bytes")?;
    verify_raw_ed25519(&raw, msg, sig)
}

fn verify_raw_ed25519(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> anyhow::Result<()> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(key).context("bad Ed25519 key")?;
    let sig = ed25519_dalek::Signature::from_slice(sig).context("bad Ed25519 signature")?;
    key.verify_strict(msg, &sig)
        .context("bad Ed25519 signature")
}

/// Verifies `sig` over `msg` with a credential key (self attestation).
fn verify_cose(key: &CosePublicKey, msg: &[u8], sig: &[u8]) -> anyhow::Result<()> {
    match key {
        CosePublicKey::Ed25519(k) => verify_raw_ed25519(k, msg, sig),
        CosePublicKey::P256 { .. } => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.to_bytes())
                .context("bad P-256 key")?;
            let sig = p256::ecdsa::Signature::from_der(sig).context("bad ECDSA signature")?;
            key.verify(msg, &sig).context("bad ECDSA signature")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::str::FromStr as _;
    use std::time::Duration;

    use p256::ecdsa::signature::Signer as _;
    use x509_cert::der::asn1::{BitString, ObjectIdentifier, OctetString};
    use x509_cert::der::{Any, Encode as _};
    use x509_cert::ext::Extension;
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::AlgorithmIdentifierOwned;
    use x509_cert::time::Validity;
    use x509_cert::{Certificate, TbsCertificate, Version};

    use tether_dongle::fido2::ctap::AttestationStatement;

    use super::*;

    const AAGUID: [u8; 16] = [0xAB; 16];

    fn oid(s: &str) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(s)
    }

    fn p256_spki(key: &p256::ecdsa::SigningKey) -> SubjectPublicKeyInfoOwned {
        let point = key.verifying_key().to_encoded_point(false);
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: oid(OID_EC_PUBLIC_KEY),
                parameters: Some(Any::encode_from(&oid(OID_P256)).unwrap()),
            },
            subject_public_key: BitString::from_bytes(point.as_bytes()).unwrap(),
        }
    }

    /// A certificate for `subject_key` named `subject`, signed by `issuer_key`
    /// as `issuer` (ECDSA P-256 with SHA-256), with basicConstraints `ca`
    /// and, if given, the FIDO AAGUID extension.
    fn cert(
        subject: &str,
        subject_key: &p256::ecdsa::SigningKey,
        issuer: &str,
        issuer_key: &p256::ecdsa::SigningKey,
        ca: bool,
        aaguid: Option<[u8; 16]>,
    ) -> Certificate {
        let bc = x509_cert::ext::pkix::BasicConstraints {
            ca,
            path_len_constraint: None,
        };
        let mut extensions = vec![Extension {
            extn_id: oid(OID_BASIC_CONSTRAINTS),
            critical: true,
            extn_value: OctetString::new(bc.to_der().unwrap()).unwrap(),
        }];
        if let Some(a) = aaguid {
            extensions.push(Extension {
                extn_id: oid(OID_FIDO_AAGUID),
                critical: false,
                extn_value: OctetString::new(
                    OctetString::new(a.to_vec()).unwrap().to_der().unwrap(),
                )
                .unwrap(),
            });
        }
        let sig_alg = AlgorithmIdentifierOwned {
            oid: oid(OID_ECDSA_SHA256),
            parameters: None,
        };
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::new(&[1]).unwrap(),
            signature: sig_alg.clone(),
            issuer: Name::from_str(issuer).unwrap(),
            validity: Validity::from_now(Duration::from_secs(86_400)).unwrap(),
            subject: Name::from_str(subject).unwrap(),
            subject_public_key_info: p256_spki(subject_key),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        let sig: p256::ecdsa::Signature = issuer_key.sign(&tbs.to_der().unwrap());
        Certificate {
            tbs_certificate: tbs,
            signature_algorithm: sig_alg,
            signature: BitString::from_bytes(sig.to_der().as_bytes()).unwrap(),
        }
    }

    fn key(seed: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    const LEAF: &str = "CN=Test Key Attestation,OU=Authenticator Attestation,O=Test Vendor,C=SE";
    const INTER: &str = "CN=Test FIDO Intermediate,O=Test Vendor,C=SE";
    const ROOT: &str = "CN=Test FIDO Root,O=Test Vendor,C=SE";

    /// A packed attestation by `leaf_key` over authData || cdh, with `x5c`.
    fn credential(
        x5c: &[&Certificate],
        leaf_key: &p256::ecdsa::SigningKey,
        cdh: &[u8; 32],
    ) -> NewCredential {
        let auth_data = vec![0x5A; 60];
        let mut signed = auth_data.clone();
        signed.extend_from_slice(cdh);
        let sig: p256::ecdsa::Signature = leaf_key.sign(&signed);
        NewCredential {
            fmt: "packed".into(),
            auth_data,
            att_stmt: AttestationStatement {
                alg: Some(-7),
                sig: Some(sig.to_der().as_bytes().to_vec()),
                x5c: x5c.iter().map(|c| c.to_der().unwrap()).collect(),
            },
            rp_id_hash: [0; 32],
            flags: 0x41,
            sign_count: 0,
            aaguid: AAGUID,
            credential_id: vec![1; 16],
            public_key: CosePublicKey::Ed25519([0; 32]),
        }
    }

    fn chain() -> (
        Certificate,
        Certificate,
        Certificate,
        p256::ecdsa::SigningKey,
    ) {
        let (leaf_key, inter_key, root_key) = (key(1), key(2), key(3));
        let root = cert(ROOT, &root_key, ROOT, &root_key, true, None);
        let inter = cert(INTER, &inter_key, ROOT, &root_key, true, None);
        let leaf = cert(LEAF, &leaf_key, INTER, &inter_key, false, Some(AAGUID));
        (leaf, inter, root, leaf_key)
    }

    #[test]
    fn a_chain_to_a_trusted_root_verifies() {
        let (leaf, inter, root, leaf_key) = chain();
        let cdh = [9; 32];
        let cred = credential(&[&leaf, &inter], &leaf_key, &cdh);
        let policy = Policy {
            roots: vec![root.clone()],
            allow_self_attested: false,
        };
        let verdict = verify(&cred, &cdh, &policy).unwrap();
        assert!(
            matches!(verdict, Verdict::Chain { ref root, .. } if root.contains("Test FIDO Root")),
            "{verdict:?}"
        );
        // The root given in x5c too is fine.
        let cred = credential(&[&leaf, &inter, &root], &leaf_key, &cdh);
        verify(&cred, &cdh, &policy).unwrap();
    }

    /// RFC 5280, section 6.1.4 (k): every certificate above the leaf must
    /// be a CA. Whoever extracted one real attestation key must not mint
    /// leaves (another model's AAGUID) under its non-CA certificate.
    #[test]
    fn a_leaf_signed_by_a_non_ca_certificate_is_refused() {
        let (real_leaf, inter, root, real_key) = chain();
        let forged_key = key(7);
        let forged = cert(LEAF, &forged_key, LEAF, &real_key, false, Some(AAGUID));
        let cdh = [9; 32];
        let cred = credential(&[&forged, &real_leaf, &inter], &forged_key, &cdh);
        let policy = Policy {
            roots: vec![root],
            allow_self_attested: false,
        };
        let err = verify(&cred, &cdh, &policy).unwrap_err();
        assert!(format!("{err:#}").contains("not a CA"), "{err:#}");
    }

    #[test]
    fn untrusted_roots_bad_signatures_and_bad_leaves_are_refused() {
        let (leaf, inter, root, leaf_key) = chain();
        let cdh = [9; 32];
        let trusted = Policy {
            roots: vec![root],
            allow_self_attested: false,
        };
        // Another root.
        let other = key(4);
        let stranger = Policy {
            roots: vec![cert(ROOT, &other, ROOT, &other, true, None)],
            allow_self_attested: true,
        };
        let err = verify(
            &credential(&[&leaf, &inter], &leaf_key, &cdh),
            &cdh,
            &stranger,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("does not reach any trusted root"),
            "{err:#}"
        );
        // The attestation signature over another clientDataHash.
        let err = verify(
            &credential(&[&leaf, &inter], &leaf_key, &[8; 32]),
            &cdh,
            &trusted,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("attestation signature does not verify"),
            "{err:#}"
        );
        // A missing intermediate.
        let err = verify(&credential(&[&leaf], &leaf_key, &cdh), &cdh, &trusted).unwrap_err();
        assert!(err.to_string().contains("trusted root"), "{err:#}");
        // A leaf without the OU, a CA leaf, another AAGUID.
        let inter_key = key(2);
        for (bad, why) in [
            (
                cert(
                    "CN=x,O=Test Vendor,C=SE",
                    &leaf_key,
                    INTER,
                    &inter_key,
                    false,
                    None,
                ),
                "Authenticator Attestation",
            ),
            (
                cert(LEAF, &leaf_key, INTER, &inter_key, true, None),
                "CA certificate",
            ),
            (
                cert(LEAF, &leaf_key, INTER, &inter_key, false, Some([0xCD; 16])),
                "AAGUID",
            ),
        ] {
            let err = verify(
                &credential(&[&bad, &inter], &leaf_key, &cdh),
                &cdh,
                &trusted,
            )
            .unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err:#}");
        }
    }

    #[test]
    fn self_attestation_and_none_only_when_allowed() {
        let signer = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let cdh = [1; 32];
        let mut cred = credential(&[], &key(1), &cdh);
        cred.public_key = CosePublicKey::Ed25519(signer.verifying_key().to_bytes());
        let mut signed = cred.auth_data.clone();
        signed.extend_from_slice(&cdh);
        use ed25519_dalek::Signer as _;
        cred.att_stmt.alg = Some(-8);
        cred.att_stmt.sig = Some(signer.sign(&signed).to_bytes().to_vec());
        let strict = Policy::default();
        let lax = Policy {
            roots: Vec::new(),
            allow_self_attested: true,
        };
        let err = verify(&cred, &cdh, &strict).unwrap_err();
        assert!(err.to_string().contains("--allow-self-attested"), "{err:#}");
        assert_eq!(verify(&cred, &cdh, &lax).unwrap(), Verdict::SelfAttested);
        // A self-attestation signature that does not verify is refused even when allowed.
        assert!(verify(&cred, &[2; 32], &lax).is_err());
        cred.fmt = "none".into();
        assert!(verify(&cred, &cdh, &strict).is_err());
        assert_eq!(verify(&cred, &cdh, &lax).unwrap(), Verdict::None);
        cred.fmt = "tpm".into();
        assert!(
            verify(&cred, &cdh, &lax)
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
    }

    #[test]
    fn roots_load_from_pem_files() {
        use x509_cert::der::EncodePem as _;
        let (_, _, root, _) = chain();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("root.pem"),
            root.to_pem(x509_cert::der::pem::LineEnding::LF).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
        let roots = Policy::load_roots(dir.path()).unwrap();
        assert_eq!(roots, vec![root]);
        let empty = tempfile::tempdir().unwrap();
        assert!(Policy::load_roots(empty.path()).is_err());
    }
}
