//! The CTAP2 layer driven with CBOR written out by hand, in the shape of
//! the CTAP 2.1 specification's examples (section 6.1 "authenticatorMakeCredential",
//! section 6.2 "authenticatorGetAssertion"), and the responses parsed by
//! hand per CTAP 2.1 section 6.1.2 / 6.2.2 and WebAuthn L2 section 6.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ciborium::Value;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::ctaphid::CborHandler as _;
use crate::{Algorithm, Options, Softkey, Store};

/// The BE and BS flags passkey-authenticator sets on every authenticatorData
/// (kept only with `syncable`).
const BE_BS: u8 = 0x08 | 0x10;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<String>()
        .split_whitespace()
        .collect();
    assert!(s.len().is_multiple_of(2), "odd hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// CTAP 2.1, section 6.1, the example authenticatorMakeCredential request
/// (rp example.com, user John P. Smith, ES256 then RS256, rk true).
const SPEC_MAKE_CREDENTIAL: &str = "
01                                      # authenticatorMakeCredential
a5                                      # map(5)
  01                                    # clientDataHash
  58 20 687134968222ec17202e42505f8ed2b16ae22f16bb05b88c25db9e602645f141
  02                                    # rp
  a2 62 6964 6b 6578616d706c652e636f6d  # id: example.com
     64 6e616d65 64 41636d65            # name: Acme
  03                                    # user
  a4 62 6964                            # id: 32 bytes
     58 20 3082019330820138a0030201023082019330820138a003020102308201933082
     64 69636f6e                        # icon
     78 2b 68747470733a2f2f706963732e6578616d706c652e636f6d2f30302f702f61426a6a6a707150622e706e67
     64 6e616d65                        # name
     76 6a6f686e70736d697468406578616d706c652e636f6d
     6b 646973706c61794e616d65          # displayName
     6d 4a6f686e20502e20536d697468
  04                                    # pubKeyCredParams
  82 a2 63 616c67 26                    # alg: -7 (ES256)
        64 74797065 6a 7075626c69632d6b6579
     a2 63 616c67 39 0100               # alg: -257 (RS256)
        64 74797065 6a 7075626c69632d6b6579
  07                                    # options
  a1 62 726b f5                         # rk: true
";

/// Tether's enrollment shape: rp `tether:test`, EdDSA then ES256, a
/// non-resident credential (rk false), credProtect 1 asked.
fn tether_make_credential(cdh: &[u8; 32]) -> Vec<u8> {
    let mut r = hex("01 a5
         01 58 20");
    r.extend_from_slice(cdh);
    r.extend(hex("
        02 a1 62 6964 6b 7465746865723a74657374   # rp id: tether:test
        03 a3 62 6964 41 01                         # user id: h'01'
              64 6e616d65 66 746574686572           # name: tether
              6b 646973706c61794e616d65 66 746574686572
        04 82 a2 63 616c67 27                       # alg: -8 (EdDSA)
                 64 74797065 6a 7075626c69632d6b6579
              a2 63 616c67 26                       # alg: -7 (ES256)
                 64 74797065 6a 7075626c69632d6b6579
        06 a1 6b 6372656450726f74656374 01          # credProtect: 1
    "));
    r
}

/// authenticatorGetAssertion as in CTAP 2.1 section 6.2's example, with
/// our credential in the allow list and options {up: `up`}.
fn get_assertion(rp_id: &str, cdh: &[u8; 32], credential_id: &[u8], up: bool) -> Vec<u8> {
    let mut r = vec![0x02, 0xa4, 0x01, 0x60 + rp_id.len() as u8];
    r.extend_from_slice(rp_id.as_bytes());
    r.extend(hex("02 58 20"));
    r.extend_from_slice(cdh);
    r.extend(hex("03 81 a2 62 6964 58"));
    r.push(credential_id.len() as u8);
    r.extend_from_slice(credential_id);
    r.extend(hex("64 74797065 6a 7075626c69632d6b6579"));
    r.extend(hex("05 a1 62 7570"));
    r.push(if up { 0xf5 } else { 0xf4 });
    r
}

fn map_get(v: &Value, key: impl Into<Value>) -> Option<Value> {
    let key = key.into();
    v.as_map()?
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone())
}

/// Status byte 0 and the CBOR map after it.
fn ok(answer: &[u8]) -> Value {
    assert_eq!(answer[0], 0, "status {:#04x}", answer[0]);
    let v: Value = ciborium::from_reader(&answer[1..]).unwrap();
    assert!(v.is_map());
    v
}

/// authenticatorData (WebAuthn L2 section 6.1), split.
#[derive(Debug)]
struct AuthData {
    rp_id_hash: [u8; 32],
    flags: u8,
    sign_count: u32,
    rest: Vec<u8>,
}

fn auth_data(bytes: &[u8]) -> AuthData {
    assert!(bytes.len() >= 37);
    AuthData {
        rp_id_hash: bytes[..32].try_into().unwrap(),
        flags: bytes[32],
        sign_count: u32::from_be_bytes(bytes[33..37].try_into().unwrap()),
        rest: bytes[37..].to_vec(),
    }
}

struct Made {
    auth_data: Vec<u8>,
    credential_id: Vec<u8>,
    cose_key: Value,
    att_stmt: Value,
}

/// Parses a makeCredential response: fmt packed, authData with AT.
fn made(answer: &[u8]) -> Made {
    let v = ok(answer);
    assert_eq!(map_get(&v, 1), Some(Value::Text("packed".into())));
    let ad = map_get(&v, 2).unwrap().into_bytes().unwrap();
    let parsed = auth_data(&ad);
    assert_eq!(parsed.flags & 0x41, 0x41, "UP and AT");
    assert_eq!(&parsed.rest[..16], crate::ctap2::DEFAULT_AAGUID);
    let len = usize::from(u16::from_be_bytes([parsed.rest[16], parsed.rest[17]]));
    let credential_id = parsed.rest[18..18 + len].to_vec();
    let mut key_bytes = &parsed.rest[18 + len..];
    let cose_key: Value = ciborium::from_reader(&mut key_bytes).unwrap();
    assert!(key_bytes.is_empty(), "nothing after the key (no ED)");
    Made {
        auth_data: ad,
        credential_id,
        cose_key,
        att_stmt: map_get(&v, 3).unwrap(),
    }
}

fn ed25519_key(cose: &Value) -> VerifyingKey {
    assert_eq!(map_get(cose, 1), Some(Value::from(1)), "kty OKP");
    assert_eq!(map_get(cose, -1), Some(Value::from(6)), "crv Ed25519");
    let x: [u8; 32] = map_get(cose, -2)
        .unwrap()
        .into_bytes()
        .unwrap()
        .try_into()
        .unwrap();
    VerifyingKey::from_bytes(&x).unwrap()
}

fn key(options: Options) -> Softkey {
    Softkey::new(Store::in_memory(), options).unwrap()
}

fn answer(k: &mut Softkey, req: &[u8]) -> Vec<u8> {
    k.handle_cbor(req).payload
}

fn signed(ad: &[u8], cdh: &[u8; 32]) -> Vec<u8> {
    [ad, cdh.as_slice()].concat()
}

#[test]
fn get_info_names_fido2_the_aaguid_and_the_algorithm() {
    let mut k = key(Options::default());
    let info = ok(&answer(&mut k, &[0x04]));
    let versions = map_get(&info, 1).unwrap();
    assert!(
        versions
            .as_array()
            .unwrap()
            .contains(&Value::Text("FIDO_2_0".into()))
    );
    assert_eq!(
        map_get(&info, 3).unwrap().into_bytes().unwrap(),
        crate::ctap2::DEFAULT_AAGUID
    );
    let options = map_get(&info, 4).unwrap();
    assert_eq!(map_get(&options, "up"), Some(Value::Bool(true)));
    let algs = format!("{:?}", map_get(&info, 0x0A).unwrap());
    assert!(algs.contains("Integer(-8)"), "{algs}");
    assert!(!algs.contains("Integer(-7)"), "{algs}");
}

#[test]
fn spec_make_credential_example() {
    // An EdDSA-only key has none of ES256 and RS256.
    let mut eddsa = key(Options::default());
    assert_eq!(answer(&mut eddsa, &hex(SPEC_MAKE_CREDENTIAL)), [0x26]);
    // An ES256 key makes it, packed self attestation, DER signature.
    let mut es = key(Options {
        algorithm: Algorithm::Es256,
        ..Options::default()
    });
    let m = made(&answer(&mut es, &hex(SPEC_MAKE_CREDENTIAL)));
    assert_eq!(
        auth_data(&m.auth_data).rp_id_hash,
        <[u8; 32]>::from(Sha256::digest(b"example.com"))
    );
    assert_eq!(map_get(&m.cose_key, 3), Some(Value::from(-7)));
    assert_eq!(map_get(&m.att_stmt, "alg"), Some(Value::from(-7)));
    let sig = map_get(&m.att_stmt, "sig").unwrap().into_bytes().unwrap();
    assert_eq!(sig[0], 0x30, "ASN.1 DER ECDSA-Sig-Value");
    assert_eq!(es.store().len(), 1);

    // The assertion verifies under the credential's P-256 key.
    use p256::ecdsa::signature::Verifier as _;
    let x = map_get(&m.cose_key, -2).unwrap().into_bytes().unwrap();
    let y = map_get(&m.cose_key, -3).unwrap().into_bytes().unwrap();
    let point = [&[0x04u8][..], &x, &y].concat();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let cdh = [9u8; 32];
    let a = ok(&answer(
        &mut es,
        &get_assertion("example.com", &cdh, &m.credential_id, false),
    ));
    let ad = map_get(&a, 2).unwrap().into_bytes().unwrap();
    let sig = map_get(&a, 3).unwrap().into_bytes().unwrap();
    let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
    // Like many real keys, it does not normalise S (about half of its
    // signatures have a high S); the authority puts the low-S twin into
    // the certificate. Either verifies here.
    let sig = sig.normalize_s().unwrap_or(sig);
    vk.verify(&signed(&ad, &cdh), &sig).unwrap();
}

#[test]
fn silent_eddsa_assertions_verify_and_count_up() {
    let mut k = key(Options::default());
    let cdh = [7u8; 32];
    let m = made(&answer(&mut k, &tether_make_credential(&cdh)));
    let vk = ed25519_key(&m.cose_key);
    assert_eq!(map_get(&m.cose_key, 3), Some(Value::from(-8)));
    // Packed self attestation: the credential key over authData || clientDataHash.
    let sig = map_get(&m.att_stmt, "sig").unwrap().into_bytes().unwrap();
    vk.verify_strict(
        &signed(&m.auth_data, &cdh),
        &Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();

    for expected_count in 1..=3u32 {
        let cdh = [expected_count as u8; 32];
        let a = ok(&answer(
            &mut k,
            &get_assertion("tether:test", &cdh, &m.credential_id, false),
        ));
        let cred = map_get(&a, 1).unwrap();
        assert_eq!(
            map_get(&cred, "id").unwrap().into_bytes().unwrap(),
            m.credential_id
        );
        let ad_bytes = map_get(&a, 2).unwrap().into_bytes().unwrap();
        assert_eq!(ad_bytes.len(), 37, "no AT, no ED in an assertion");
        let ad = auth_data(&ad_bytes);
        assert_eq!(
            ad.rp_id_hash,
            <[u8; 32]>::from(Sha256::digest(b"tether:test"))
        );
        // UP, UV, AT and ED clear, as asked; BE and BS cleared (device-bound).
        assert_eq!(ad.flags, 0, "up=false: no flag at all");
        assert_eq!(ad.sign_count, expected_count);
        let sig = map_get(&a, 3).unwrap().into_bytes().unwrap();
        vk.verify_strict(
            &signed(&ad_bytes, &cdh),
            &Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn unknown_credential_and_wrong_rp_are_no_credentials() {
    let mut k = key(Options::default());
    let cdh = [1u8; 32];
    let m = made(&answer(&mut k, &tether_make_credential(&cdh)));
    assert_eq!(
        answer(
            &mut k,
            &get_assertion("tether:test", &cdh, &[0xAB; 16], false)
        ),
        [0x2E]
    );
    assert_eq!(
        answer(
            &mut k,
            &get_assertion("tether:other", &cdh, &m.credential_id, false)
        ),
        [0x2E]
    );
    // Reset forgets it.
    assert_eq!(answer(&mut k, &[0x07]), [0x00]);
    assert_eq!(
        answer(
            &mut k,
            &get_assertion("tether:test", &cdh, &m.credential_id, false)
        ),
        [0x2E]
    );
}

#[test]
fn fault_modes() {
    let cdh = [3u8; 32];
    // --require-up: up=false refused, up=true answered with UP.
    let mut k = key(Options {
        require_up: true,
        ..Options::default()
    });
    let m = made(&answer(&mut k, &tether_make_credential(&cdh)));
    assert_eq!(
        answer(
            &mut k,
            &get_assertion("tether:test", &cdh, &m.credential_id, false)
        ),
        [0x2B]
    );
    let a = ok(&answer(
        &mut k,
        &get_assertion("tether:test", &cdh, &m.credential_id, true),
    ));
    assert_eq!(
        auth_data(&map_get(&a, 2).unwrap().into_bytes().unwrap()).flags,
        0x01
    );

    // --force-up: UP set although up=false was asked.
    let mut k = key(Options {
        force_up: true,
        ..Options::default()
    });
    let m = made(&answer(&mut k, &tether_make_credential(&cdh)));
    let a = k.handle_cbor(&get_assertion("tether:test", &cdh, &m.credential_id, false));
    assert!(a.touched);
    let a = ok(&a.payload);
    assert_eq!(
        auth_data(&map_get(&a, 2).unwrap().into_bytes().unwrap()).flags,
        0x01
    );

    // --no-counter: signCount stays 0.
    let mut k = key(Options {
        counter: false,
        ..Options::default()
    });
    let m = made(&answer(&mut k, &tether_make_credential(&cdh)));
    for _ in 0..2 {
        let a = ok(&answer(
            &mut k,
            &get_assertion("tether:test", &cdh, &m.credential_id, false),
        ));
        assert_eq!(
            auth_data(&map_get(&a, 2).unwrap().into_bytes().unwrap()).sign_count,
            0
        );
    }
}

#[test]
fn malformed_requests_get_status_codes_not_panics() {
    let mut k = key(Options::default());
    assert_eq!(answer(&mut k, &[]), [0x03]); // CTAP1_ERR_INVALID_LENGTH
    assert_eq!(answer(&mut k, &[0x41]), [0x01]); // CTAP1_ERR_INVALID_COMMAND
    assert_eq!(answer(&mut k, &[0x08]), [0x30]); // CTAP2_ERR_NOT_ALLOWED
    assert_eq!(answer(&mut k, &[0x02]), [0x14]); // CTAP2_ERR_MISSING_PARAMETER
    assert_eq!(answer(&mut k, &[0x02, 0xff, 0x00]), [0x12]); // CTAP2_ERR_INVALID_CBOR
    assert_eq!(answer(&mut k, &[0x01, 0xa1, 0x01, 0x01]), [0x12]);
    // Truncations of a valid request never panic.
    let full = tether_make_credential(&[0; 32]);
    for n in 1..full.len() {
        let a = answer(&mut k, &full[..n]);
        assert_ne!(a[0], 0, "a truncated request at {n} was accepted");
    }
}

#[test]
fn state_file_persists_resets_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("key.state");
    let cdh = [5u8; 32];
    let count = |k: &mut Softkey, id: &[u8]| {
        let a = ok(&answer(k, &get_assertion("tether:test", &cdh, id, false)));
        auth_data(&map_get(&a, 2).unwrap().into_bytes().unwrap()).sign_count
    };
    let mut k = Softkey::new(Store::open(&state).unwrap(), Options::default()).unwrap();
    let id = made(&answer(&mut k, &tether_make_credential(&cdh))).credential_id;
    assert_eq!(count(&mut k, &id), 1);
    drop(k);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let old = std::fs::read(&state).unwrap();

    // Restarted: same credential, the counter goes on.
    let mut k = Softkey::new(Store::open(&state).unwrap(), Options::default()).unwrap();
    assert_eq!(count(&mut k, &id), 2);
    assert_eq!(count(&mut k, &id), 3);
    drop(k);

    // A clone rolled back: the older copy signs with a lower counter.
    std::fs::write(&state, &old).unwrap();
    let mut k = Softkey::new(Store::open(&state).unwrap(), Options::default()).unwrap();
    assert_eq!(count(&mut k, &id), 2);
    drop(k);

    // A factory reset: the credential is unknown.
    std::fs::remove_file(&state).unwrap();
    let mut k = Softkey::new(Store::open(&state).unwrap(), Options::default()).unwrap();
    assert_eq!(
        answer(&mut k, &get_assertion("tether:test", &cdh, &id, false)),
        [0x2E]
    );

    // Not a state file: a clear error.
    std::fs::write(&state, b"junk").unwrap();
    let e = Store::open(&state).unwrap_err().to_string();
    assert!(e.contains("not a softkey state file"), "{e}");
}

#[test]
fn syncable_keeps_passkey_authenticators_backup_flags() {
    let cdh = [4u8; 32];
    for (syncable, flags) in [(false, 0), (true, BE_BS)] {
        let mut k = key(Options {
            syncable,
            ..Options::default()
        });
        let m = made(&answer(&mut k, &tether_make_credential(&cdh)));
        assert_eq!(auth_data(&m.auth_data).flags & BE_BS, flags);
        let vk = ed25519_key(&m.cose_key);
        let sig = map_get(&m.att_stmt, "sig").unwrap().into_bytes().unwrap();
        vk.verify_strict(
            &signed(&m.auth_data, &cdh),
            &Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();
        let a = ok(&answer(
            &mut k,
            &get_assertion("tether:test", &cdh, &m.credential_id, false),
        ));
        let ad = map_get(&a, 2).unwrap().into_bytes().unwrap();
        assert_eq!(auth_data(&ad).flags, flags);
        let sig = map_get(&a, 3).unwrap().into_bytes().unwrap();
        vk.verify_strict(&signed(&ad, &cdh), &Signature::from_slice(&sig).unwrap())
            .unwrap();
    }
}

/// Every map definite-length with its keys in CTAP2 canonical order
/// (CTAP 2.1 section 8): re-encoding the parsed value gives the same bytes,
/// and no indefinite-length map or array header appears at any item start.
fn assert_canonical(answer: &[u8]) {
    assert_eq!(answer[0], 0);
    let v: Value = ciborium::from_reader(&answer[1..]).unwrap();
    fn walk(v: &Value) {
        match v {
            Value::Map(m) => {
                let keys: Vec<Vec<u8>> = m
                    .iter()
                    .map(|(k, _)| {
                        let mut e = Vec::new();
                        ciborium::into_writer(k, &mut e).unwrap();
                        e
                    })
                    .collect();
                let mut sorted = keys.clone();
                sorted.sort_by_key(|e| (e[0] >> 5, e.len(), e.clone()));
                assert_eq!(keys, sorted, "map keys not in canonical order");
                for (k, v) in m {
                    walk(k);
                    walk(v);
                }
            }
            Value::Array(a) => a.iter().for_each(walk),
            _ => {}
        }
    }
    walk(&v);
    let mut again = Vec::new();
    ciborium::into_writer(&v, &mut again).unwrap();
    assert_eq!(again, answer[1..], "not definite-length or not minimal");
}

#[test]
fn responses_are_ctap2_canonical_cbor() {
    let mut k = key(Options::default());
    assert_canonical(&answer(&mut k, &[0x04]));
    let cdh = [2u8; 32];
    let made_answer = answer(&mut k, &tether_make_credential(&cdh));
    assert_canonical(&made_answer);
    let m = made(&made_answer);
    assert_canonical(&answer(
        &mut k,
        &get_assertion("tether:test", &cdh, &m.credential_id, false),
    ));
}

#[test]
fn user_name_and_display_name_are_optional() {
    // CTAP 2.1 section 6.1: user {id} alone, as libfido2 sends without a
    // display name; EdDSA; no options.
    let mut req = hex("01 a4 01 58 20");
    req.extend_from_slice(&[8u8; 32]);
    req.extend(hex("
        02 a1 62 6964 6b 7465746865723a74657374
        03 a1 62 6964 41 07
        04 81 a2 63 616c67 27 64 74797065 6a 7075626c69632d6b6579
    "));
    let mut k = key(Options::default());
    let m = made(&answer(&mut k, &req));
    assert_eq!(m.credential_id.len(), 16);
    // And with a name only.
    let mut req = hex("01 a4 01 58 20");
    req.extend_from_slice(&[8u8; 32]);
    req.extend(hex("
        02 a1 62 6964 6b 7465746865723a74657374
        03 a2 62 6964 41 07 64 6e616d65 67 766d2d75736572
        04 81 a2 63 616c67 27 64 74797065 6a 7075626c69632d6b6579
    "));
    made(&answer(&mut k, &req));
}
