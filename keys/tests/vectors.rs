//! Test vectors in `keys/testdata/`: exact bytes for the encoders, and `fail_`
//! vectors that must be rejected, each for its own reason.
//!
//! The vectors are made from the fixed test keys, so they regenerate to the
//! same bytes; `TETHER_REGENERATE_VECTORS=1 cargo test -p tether-keys --test vectors`
//! rewrites them after a deliberate format change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use tether_keys::delegation::{DONGLE_KIND_FIDO2, LedgerHead, presence_message};
use tether_keys::merkle::{self, InclusionProof, Leaf, LeafSet};
use tether_keys::{
    Certificate, DelegationRequest, Error, License, LicenseId, LicenseTerms, SecretKey, UnixTime,
    Vendor, domain, keyfile, testkeys,
};

/// The time every vector is checked at.
const NOW: u64 = 1_750_000_000;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn terms(not_before: u64, not_after: u64) -> LicenseTerms {
    let (not_before, not_after) = (
        UnixTime::from_secs(not_before),
        UnixTime::from_secs(not_after),
    );
    LicenseTerms {
        id: LicenseId([0x11; 16]),
        customer: "ACME Corp".into(),
        dongle_serial: "TD-0001".into(),
        dongle: testkeys::dongle().public().into(),
        issued_at: not_before,
        not_before,
        not_after,
        max_token_ttl: 300,
        features: vec!["mux".into(), "record".into()],
        services: vec!["backend".into(), "muxer".into()],
        seats: [("backend".to_string(), 4)].into(),
        sequence: 1,
        grace: 0,
        nonce_period: 0,
    }
}

/// The three consumer instances of the worked example in `docs/formats.md`.
fn leaves() -> LeafSet {
    LeafSet::new([
        Leaf::new("muxer", "m-1", "n3").unwrap(),
        Leaf::new("backend", "b-2", "n2").unwrap(),
        Leaf::new("backend", "b-1", "n1").unwrap(),
    ])
}

fn request(not_before: u64, not_after: u64) -> DelegationRequest {
    let (not_before, not_after) = (
        UnixTime::from_secs(not_before),
        UnixTime::from_secs(not_after),
    );
    let mut req = DelegationRequest::new(
        [0xAB; 32],
        testkeys::session().public(),
        not_before,
        not_after,
    );
    req.commitment = leaves().commitment().unwrap();
    req.ledger = LedgerHead {
        sequence: 42,
        hash: [0x5A; 32],
    };
    req
}

fn resign(bytes: &[u8], tag: &[u8], sign: impl Fn(&[u8]) -> [u8; 64]) -> Vec<u8> {
    let body = &bytes[..bytes.len() - 64];
    let mut out = body.to_vec();
    out.extend_from_slice(&sign(&domain::tagged(tag, body)));
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.push('\n');
    s
}

fn unhex(text: &str) -> Vec<u8> {
    let t = text.trim();
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap())
        .collect()
}

/// Every vector: file name and contents.
fn vectors() -> Vec<(&'static str, String)> {
    let vendor = testkeys::vendor();
    let other_vendor = SecretKey::<Vendor>::from_seed(&[0xEE; 32]);
    let valid = terms(1_700_000_000, 1_800_000_000).sign(&vendor).unwrap();
    let lic = |l: &License| keyfile::license_pem(l);
    let raw_lic = |bytes: Vec<u8>| keyfile::license_pem(&License::decode(&bytes).unwrap());

    let mut tampered = valid.encoded().to_vec();
    tampered[1 + 16 + 32 + 8 + 1] ^= 0x20; // first byte of the customer name (v2)
    let tampered_pem = {
        // The armor is just base64 of the bytes; build it without decoding (it no longer verifies).
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&tampered);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN TETHER LICENSE-----\n{}\n-----END TETHER LICENSE-----\n",
            lines.join("\n")
        )
    };
    let wrong_signer = resign(valid.encoded(), domain::LICENSE, |m| other_vendor.sign(m));

    let dongle = testkeys::dongle();
    let cert = Certificate::sign(request(NOW - 60, NOW + 540), "TD-0001", 7, &dongle).unwrap();
    let mut cert_tampered = cert.encoded().to_vec();
    cert_tampered[1 + 1 + 1 + 7] ^= 0x01; // first nonce byte (v2: version, kind, serial)
    let cert_by_vendor = resign(cert.encoded(), domain::DELEGATION, |m| vendor.sign(m));
    let cert_presence_tag = resign(cert.encoded(), domain::PRESENCE, |m| dongle.sign(m));
    let cert_expired =
        Certificate::sign(request(NOW - 1200, NOW - 600), "TD-0001", 6, &dongle).unwrap();
    // The same body as a FIDO2 key's, which this build does not read yet.
    let mut cert_fido2 = cert.encoded().to_vec();
    cert_fido2[1] = DONGLE_KIND_FIDO2;
    let cert_fido2 = resign(&cert_fido2, domain::DELEGATION, |m| dongle.sign(m));

    let tree = leaves();
    let proof = tree.prove(0).unwrap();
    let mut wrong_index = proof.clone();
    wrong_index.index = 1;

    vec![
        ("license_valid.tether", lic(&valid)),
        ("fail_license_tampered.tether", tampered_pem),
        ("fail_license_wrong_signer.tether", raw_lic(wrong_signer)),
        (
            "fail_license_other_vendor.tether",
            lic(&terms(1_700_000_000, 1_800_000_000)
                .sign(&other_vendor)
                .unwrap()),
        ),
        (
            "fail_license_expired.tether",
            lic(&terms(1_000_000_000, 1_000_086_400).sign(&vendor).unwrap()),
        ),
        ("cert_valid.hex", hex(cert.encoded())),
        ("fail_cert_tampered.hex", hex(&cert_tampered)),
        ("fail_cert_wrong_signer.hex", hex(&cert_by_vendor)),
        ("fail_cert_wrong_domain.hex", hex(&cert_presence_tag)),
        ("fail_cert_expired.hex", hex(cert_expired.encoded())),
        ("fail_cert_fido2_kind.hex", hex(&cert_fido2)),
        ("merkle_root_3_leaves.hex", hex(&tree.root())),
        ("merkle_proof_3_leaves.hex", hex(&proof.encode())),
        (
            "fail_merkle_proof_3_leaves_wrong_index.hex",
            hex(&wrong_index.encode()),
        ),
        ("presence_message.hex", hex(&presence_message(&[0xAB; 32]))),
    ]
}

#[test]
fn vectors_are_reproduced_byte_for_byte() {
    let regenerate = std::env::var_os("TETHER_REGENERATE_VECTORS").is_some();
    for (name, contents) in vectors() {
        let path = dir().join(name);
        if regenerate {
            std::fs::write(&path, &contents).unwrap();
        }
        let stored =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            stored, contents,
            "{name} no longer encodes to the same bytes"
        );
    }
}

fn check_license(name: &str) -> tether_keys::Result<()> {
    let license = keyfile::read_license(&dir().join(name))?;
    license.verify(&testkeys::vendor().public())?;
    license.check_time(UnixTime::from_secs(NOW), Duration::ZERO)
}

fn check_cert(name: &str) -> tether_keys::Result<()> {
    let bytes = unhex(&std::fs::read_to_string(dir().join(name)).unwrap());
    let cert = Certificate::decode(&bytes)?;
    cert.verify(&testkeys::dongle().public())?;
    cert.check_time(UnixTime::from_secs(NOW), Duration::ZERO)
}

/// Checks a proof file for the first leaf of [`leaves`] against the
/// certificate vector's commitment and the root vector.
fn check_proof(name: &str) -> tether_keys::Result<()> {
    let proof =
        InclusionProof::decode(&unhex(&std::fs::read_to_string(dir().join(name)).unwrap()))?;
    let cert = Certificate::decode(&unhex(
        &std::fs::read_to_string(dir().join("cert_valid.hex")).unwrap(),
    ))?;
    let root = unhex(&std::fs::read_to_string(dir().join("merkle_root_3_leaves.hex")).unwrap());
    assert_eq!(root, cert.request.commitment.root);
    let leaf = Leaf::new("backend", "b-1", "n1").unwrap();
    merkle::verify(&cert.request.commitment.root, &leaf, &proof)?;
    cert.request.commitment.check(&leaf, &proof)
}

#[test]
fn valid_vectors_pass() {
    check_license("license_valid.tether").unwrap();
    check_cert("cert_valid.hex").unwrap();
    check_proof("merkle_proof_3_leaves.hex").unwrap();
}

/// Certificates of format version 1 (before the commitment and the ledger
/// head) still read, as committing to no consumers and no ledger.
#[test]
fn version_1_certificate_files_still_read() {
    check_cert("cert_v1_valid.hex").unwrap();
    let bytes = unhex(&std::fs::read_to_string(dir().join("cert_v1_valid.hex")).unwrap());
    let cert = Certificate::decode(&bytes).unwrap();
    assert_eq!(cert.version(), 1);
    assert_eq!(cert.request.commitment.root, merkle::EMPTY_ROOT);
    assert!(cert.request.commitment.is_empty() && cert.request.ledger.is_none());
    assert_eq!((cert.serial.as_str(), cert.counter), ("TD-0001", 7));
}

/// A certificate version this build does not know is refused by name.
#[test]
fn an_unknown_certificate_version_is_refused_by_name() {
    let mut bytes = unhex(&std::fs::read_to_string(dir().join("cert_valid.hex")).unwrap());
    assert_eq!(Certificate::decode(&bytes).unwrap().version(), 2);
    bytes[0] = 3;
    let err = Certificate::decode(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("delegation certificate format version 3"),
        "{err}"
    );
}

/// Files of license format version 1 (written before seats) still read, as
/// a license with no seat limit, sequence 0, no grace and no freshness.
#[test]
fn version_1_license_files_still_read() {
    let license = keyfile::read_license(&dir().join("license_v1_valid.tether")).unwrap();
    license.verify(&testkeys::vendor().public()).unwrap();
    license
        .check_time(UnixTime::from_secs(NOW), Duration::ZERO)
        .unwrap();
    assert_eq!(license.version(), 1);
    let terms = license.terms();
    assert_eq!(terms.sequence, 0);
    assert!(terms.seats.is_empty());
    assert_eq!((terms.grace, terms.nonce_period), (0, 0));
    assert_eq!(terms.services, ["backend", "muxer"]);
}

/// A version this build does not know is refused with a message naming it.
#[test]
fn an_unknown_license_version_is_refused_by_name() {
    let license = keyfile::read_license(&dir().join("license_valid.tether")).unwrap();
    assert_eq!(license.version(), 2);
    let mut bytes = license.encoded().to_vec();
    bytes[0] = 3;
    let err = License::decode(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { version: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("license format version 3"),
        "{err}"
    );
}

#[test]
fn fail_vectors_fail_for_their_own_reason() {
    let bad_sig = |r: tether_keys::Result<()>| matches!(r, Err(Error::BadSignature(_)));
    assert!(bad_sig(check_license("fail_license_tampered.tether")));
    assert!(bad_sig(check_license("fail_license_wrong_signer.tether")));
    assert!(matches!(
        check_license("fail_license_other_vendor.tether"),
        Err(Error::WrongVendor { .. })
    ));
    assert!(matches!(
        check_license("fail_license_expired.tether"),
        Err(Error::Expired {
            what: "license",
            ..
        })
    ));
    assert!(bad_sig(check_cert("fail_cert_tampered.hex")));
    assert!(bad_sig(check_cert("fail_cert_wrong_signer.hex")));
    assert!(bad_sig(check_cert("fail_cert_wrong_domain.hex")));
    assert!(matches!(
        check_cert("fail_cert_expired.hex"),
        Err(Error::Expired {
            what: "delegation certificate",
            ..
        })
    ));
    // A native certificate relabelled kind 2 (FIDO2, issue 16): since this
    // build reads FIDO2 certificates it is refused as one whose counter
    // field is not 0 (a FIDO2 body carries 0; its count is in authData).
    assert!(matches!(
        check_cert("fail_cert_fido2_kind.hex"),
        Err(Error::Malformed {
            reason: "a FIDO2 certificate's counter field is not 0",
            ..
        })
    ));
    assert!(matches!(
        check_proof("fail_merkle_proof_3_leaves_wrong_index.hex"),
        Err(Error::NotIncluded(_))
    ));
}

/// An OpenSSL key encrypted with a passphrase (`openssl pkey -aes256`): refused,
/// with the reason, by both the reader and the importer.
#[test]
fn fail_key_vectors_fail_for_their_own_reason() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k.pem");
    std::fs::copy(dir().join("fail_openssl_encrypted_test_key.pem"), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for err in [
        keyfile::read_secret_key::<Vendor>(&path).map(|_| ()),
        keyfile::import_secret_key::<Vendor>(&path).map(|_| ()),
    ] {
        let err = err.unwrap_err().to_string();
        assert!(err.contains("ENCRYPTED PRIVATE KEY"), "{err}");
    }
}

#[test]
fn every_fail_vector_is_checked() {
    let checked = [
        "fail_license_tampered.tether",
        "fail_license_wrong_signer.tether",
        "fail_license_other_vendor.tether",
        "fail_license_expired.tether",
        "fail_cert_tampered.hex",
        "fail_cert_wrong_signer.hex",
        "fail_cert_wrong_domain.hex",
        "fail_cert_expired.hex",
        "fail_cert_fido2_kind.hex",
        "fail_merkle_proof_3_leaves_wrong_index.hex",
        "fail_openssl_encrypted_test_key.pem",
    ];
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("fail_") {
            assert!(checked.contains(&name.as_str()), "{name} is not checked");
        }
    }
}
