//! The C entry points called from Rust with bad input (issue 20): NULL,
//! non-UTF-8, huge tokens, wrong key files, random bytes. Each call returns
//! a status code and leaves the out pointers NULL on failure; none panics
//! (a panic would show as `InternalPanic`) or crashes. Also the conformance
//! set through the C ABI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use proptest::prelude::*;

use super::*;

fn pem() -> String {
    tether_keys::keyfile::public_key_pem(&tether_keys::testkeys::vendor().public(), &[])
}

fn expectations(service: &CStr) -> TetherExpectations {
    TetherExpectations {
        service: service.as_ptr(),
        features: ptr::null(),
        features_len: 0,
        leeway_secs: 5,
        instance: ptr::null(),
    }
}

fn verifier() -> *mut TetherVerifier {
    let pem = pem();
    let expect = expectations(c"backend");
    let mut out = ptr::null_mut();
    // SAFETY: valid pointers for the call.
    let status =
        unsafe { tether_verifier_new_from_pem(pem.as_ptr(), pem.len(), &expect, &mut out) };
    assert_eq!(status, TetherStatus::Ok);
    assert!(!out.is_null());
    out
}

/// Verifies NUL-terminated `token` bytes; checks the out pointer's contract.
fn verify_bytes(v: *const TetherVerifier, token: &[u8]) -> TetherStatus {
    let c = CString::new(token.to_vec()).unwrap();
    let mut claims: *mut c_char = ptr::dangling_mut();
    // SAFETY: live handle, a NUL-terminated string, a writable out pointer.
    let status = unsafe { tether_verify(v, c.as_ptr(), ptr::null(), 0, &mut claims) };
    // The length-taking entry point answers the same, byte for byte.
    let mut claims_n: *mut c_char = ptr::dangling_mut();
    // SAFETY: live handle, token.len() readable bytes, a writable out pointer.
    let status_n = unsafe {
        tether_verify_n(
            v,
            token.as_ptr(),
            token.len(),
            ptr::null(),
            0,
            &mut claims_n,
        )
    };
    assert_eq!(
        status_n, status,
        "tether_verify_n disagrees with tether_verify"
    );
    if status_n == TetherStatus::Ok {
        // SAFETY: a string from the library, freed once.
        unsafe { tether_string_free(claims_n) };
    } else {
        assert!(claims_n.is_null(), "out pointer set on failure");
    }
    if status == TetherStatus::Ok {
        assert!(!claims.is_null());
        // SAFETY: a string from the library, freed once.
        unsafe { tether_string_free(claims) };
    } else {
        assert!(claims.is_null(), "out pointer set on failure");
        assert!(!tether_last_error().is_null(), "no reason in words");
    }
    status
}

fn no_nul(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_tokens_are_refused_never_crash(token in no_nul(2048)) {
        let v = verifier();
        let status = verify_bytes(v, &token);
        prop_assert!(status.is_refusal() || status == TetherStatus::InvalidUtf8, "{status:?}");
        // SAFETY: the handle from verifier(), freed once.
        unsafe { tether_verifier_free(v) };
    }

    #[test]
    fn mangled_valid_tokens_are_refused(at in 0usize..400, byte in 1u8..=255) {
        let v = verifier();
        let vectors = vectors();
        let good = vectors.iter().find(|x| x["name"] == "valid_basic").unwrap();
        let mut token = good["token"].as_str().unwrap().as_bytes().to_vec();
        let at = at % token.len();
        prop_assume!(token[at] != byte);
        token[at] = byte;
        let status = verify_bytes(v, &token);
        prop_assert_ne!(status, TetherStatus::Ok);
        prop_assert_ne!(status, TetherStatus::InternalPanic);
        // SAFETY: freed once.
        unsafe { tether_verifier_free(v) };
    }

    #[test]
    fn random_accepted_lists_give_a_status(
        nonces in proptest::collection::vec(
            prop_oneof![
                3 => Just(b"n-1".to_vec()),
                3 => Just(b"n-2".to_vec()),
                4 => no_nul(24),
            ],
            0..8,
        ),
        null_at in proptest::option::of(0usize..8),
    ) {
        let v = verifier();
        let token = fresh_token();
        let owned: Vec<CString> = nonces.iter().map(|n| CString::new(n.clone()).unwrap()).collect();
        let mut ptrs: Vec<*const c_char> = owned.iter().map(|n| n.as_ptr()).collect();
        if let Some(i) = null_at.filter(|&i| i < ptrs.len()) {
            ptrs[i] = ptr::null();
        }
        // The first bad element decides; then whether "n-1" is accepted.
        let mut want = TetherStatus::NonceMismatch;
        for (p, n) in ptrs.iter().zip(&nonces) {
            if p.is_null() {
                want = TetherStatus::NullArgument;
                break;
            }
            match std::str::from_utf8(n) {
                Err(_) => {
                    want = TetherStatus::InvalidUtf8;
                    break;
                }
                Ok("n-1") => want = TetherStatus::Ok,
                Ok(_) => {}
            }
        }
        let mut claims: *mut c_char = ptr::dangling_mut();
        // SAFETY: a live handle, a NUL-terminated token, ptrs.len() pointers
        // each NULL or a string, a writable out pointer.
        let status = unsafe {
            tether_verify_fresh(v, token.as_ptr(), ptrs.as_ptr(), ptrs.len(), FRESH_NOW, &mut claims)
        };
        prop_assert_eq!(status, want);
        if status == TetherStatus::Ok {
            prop_assert!(!claims.is_null());
            // SAFETY: a string from the library, freed once.
            unsafe { tether_string_free(claims) };
        } else {
            prop_assert!(claims.is_null(), "out pointer set on failure");
        }
        // SAFETY: freed once.
        unsafe { tether_verifier_free(v) };
    }

    #[test]
    fn random_tokens_are_refused_by_verify_fresh(token in no_nul(2048)) {
        let v = verifier();
        let c = CString::new(token).unwrap();
        let accepted = [c"n-1".as_ptr()];
        let mut claims: *mut c_char = ptr::dangling_mut();
        // SAFETY: valid pointers for the call.
        let status = unsafe {
            tether_verify_fresh(v, c.as_ptr(), accepted.as_ptr(), 1, 0, &mut claims)
        };
        prop_assert!(status.is_refusal() || status == TetherStatus::InvalidUtf8, "{status:?}");
        prop_assert!(claims.is_null());
        // SAFETY: freed once.
        unsafe { tether_verifier_free(v) };
    }

    #[test]
    fn random_pem_bytes_give_a_status(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let expect = expectations(c"backend");
        let mut out = ptr::dangling_mut();
        // SAFETY: bytes readable for their length; out writable.
        let status = unsafe {
            tether_verifier_new_from_pem(bytes.as_ptr(), bytes.len(), &expect, &mut out)
        };
        prop_assert!(matches!(status, TetherStatus::BadKey | TetherStatus::InvalidUtf8), "{status:?}");
        prop_assert!(out.is_null());
    }

    #[test]
    fn random_paths_give_a_status(path in no_nul(200)) {
        let expect = expectations(c"backend");
        let c = CString::new(path).unwrap();
        let mut out = ptr::dangling_mut();
        // SAFETY: a NUL-terminated string; out writable.
        let status = unsafe { tether_verifier_new_from_file(c.as_ptr(), &expect, &mut out) };
        prop_assert!(matches!(status, TetherStatus::BadKey | TetherStatus::InvalidUtf8), "{status:?}");
        prop_assert!(out.is_null());
    }

    #[test]
    fn random_expectations_give_a_status(
        service in no_nul(40), feature in no_nul(40), instance in no_nul(80), leeway in any::<u64>()
    ) {
        let pem = pem();
        let service = CString::new(service).unwrap();
        let feature = CString::new(feature).unwrap();
        let instance = CString::new(instance).unwrap();
        let features = [feature.as_ptr()];
        let expect = TetherExpectations {
            service: service.as_ptr(),
            features: features.as_ptr(),
            features_len: 1,
            leeway_secs: leeway,
            instance: instance.as_ptr(),
        };
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        let status = unsafe { tether_verifier_new_from_pem(pem.as_ptr(), pem.len(), &expect, &mut out) };
        prop_assert!(matches!(status, TetherStatus::Ok | TetherStatus::InvalidUtf8 | TetherStatus::InvalidArgument), "{status:?}");
        if status == TetherStatus::Ok {
            let mut claims = ptr::null_mut();
            // SAFETY: a live handle, a static string, a writable out pointer.
            let s = unsafe { tether_verify(out, c"a.b.c".as_ptr(), ptr::null(), 1, &mut claims) };
            prop_assert!(s.is_refusal());
            // SAFETY: freed once.
            unsafe { tether_verifier_free(out) };
        } else {
            prop_assert!(out.is_null());
        }
    }
}

#[test]
fn null_arguments_are_a_status() {
    let pem = pem();
    let expect = expectations(c"backend");
    let mut out = ptr::null_mut();
    // SAFETY: every pointer is NULL or valid; that is what is under test.
    unsafe {
        assert_eq!(
            tether_verifier_new_from_pem(ptr::null(), 10, &expect, &mut out),
            TetherStatus::NullArgument
        );
        assert_eq!(
            tether_verifier_new_from_pem(pem.as_ptr(), pem.len(), ptr::null(), &mut out),
            TetherStatus::NullArgument
        );
        assert_eq!(
            tether_verifier_new_from_pem(pem.as_ptr(), pem.len(), &expect, ptr::null_mut()),
            TetherStatus::NullArgument
        );
        assert_eq!(
            tether_verifier_new_from_file(ptr::null(), &expect, &mut out),
            TetherStatus::NullArgument
        );
        let no_service = TetherExpectations {
            service: ptr::null(),
            ..expect
        };
        assert_eq!(
            tether_verifier_new_from_pem(pem.as_ptr(), pem.len(), &no_service, &mut out),
            TetherStatus::NullArgument
        );
        let missing_features = TetherExpectations {
            features_len: 3,
            ..expect
        };
        assert_eq!(
            tether_verifier_new_from_pem(pem.as_ptr(), pem.len(), &missing_features, &mut out),
            TetherStatus::NullArgument
        );
        let null_feature = [ptr::null::<c_char>()];
        let with_null_feature = TetherExpectations {
            features: null_feature.as_ptr(),
            features_len: 1,
            ..expect
        };
        assert_eq!(
            tether_verifier_new_from_pem(pem.as_ptr(), pem.len(), &with_null_feature, &mut out),
            TetherStatus::NullArgument
        );
        assert!(out.is_null());
        assert_eq!(
            tether_verify(ptr::null(), c"x".as_ptr(), ptr::null(), 0, ptr::null_mut()),
            TetherStatus::NullArgument
        );
        let v = verifier();
        assert_eq!(
            tether_verify(v, ptr::null(), ptr::null(), 0, ptr::null_mut()),
            TetherStatus::NullArgument
        );
        assert_eq!(
            tether_verify_n(v, ptr::null(), 5, ptr::null(), 0, ptr::null_mut()),
            TetherStatus::NullArgument
        );
        assert_eq!(
            tether_verify_n(
                ptr::null(),
                b"a.b.c".as_ptr(),
                5,
                ptr::null(),
                0,
                ptr::null_mut()
            ),
            TetherStatus::NullArgument
        );
        // A length past 64 KiB is refused before a byte is read.
        assert_eq!(
            tether_verify_n(
                v,
                b"a.b.c".as_ptr(),
                usize::MAX,
                ptr::null(),
                0,
                ptr::null_mut()
            ),
            TetherStatus::Malformed
        );
        let mut watch = ptr::null_mut();
        assert_eq!(
            tether_watch_start(ptr::null(), c"/x".as_ptr(), v, &mut watch),
            TetherStatus::NullArgument
        );
        assert_eq!(
            tether_watch_start(c"http://127.0.0.1:1".as_ptr(), ptr::null(), v, &mut watch),
            TetherStatus::NullArgument
        );
        assert_eq!(
            tether_watch_start(
                c"http://127.0.0.1:1".as_ptr(),
                c"/x".as_ptr(),
                ptr::null(),
                &mut watch
            ),
            TetherStatus::NullArgument
        );
        assert!(watch.is_null());
        assert!(!tether_watch_is_licensed(ptr::null()));
        let mut state = TetherLicenseState::Licensed;
        let mut reason = ptr::dangling_mut();
        assert_eq!(
            tether_watch_state(ptr::null(), &mut state, &mut reason),
            TetherStatus::NullArgument
        );
        assert_eq!(state, TetherLicenseState::Unlicensed);
        assert!(reason.is_null());
        let mut claims = ptr::dangling_mut();
        assert_eq!(
            tether_watch_claims(ptr::null(), &mut claims),
            TetherStatus::NullArgument
        );
        assert!(claims.is_null());
        tether_watch_stop(ptr::null_mut());
        tether_verifier_free(ptr::null_mut());
        tether_string_free(ptr::null_mut());
        tether_verifier_free(v);
    }
}

#[test]
fn huge_and_non_utf8_tokens() {
    let v = verifier();
    assert_eq!(
        verify_bytes(v, &vec![b'a'; 1 << 20]),
        TetherStatus::Malformed
    );
    assert_eq!(verify_bytes(v, b"\xff\xfe.a.b"), TetherStatus::InvalidUtf8);
    // SAFETY: freed once.
    unsafe { tether_verifier_free(v) };
}

/// The time the freshness vectors are verified at.
const FRESH_NOW: u64 = 1_800_000_000;

/// The token of the `ok_fresh_included` vector: nonce `n-1`, with its proof.
fn fresh_token() -> CString {
    let vectors = vectors();
    let v = vectors
        .iter()
        .find(|x| x["name"] == "ok_fresh_included")
        .unwrap();
    assert_eq!(v["now"].as_u64(), Some(FRESH_NOW));
    CString::new(v["token"].as_str().unwrap()).unwrap()
}

/// Calls `tether_verify_fresh`; checks the out pointer's contract.
///
/// # Safety
/// As `tether_verify_fresh`, with `out_claims_json` a local.
unsafe fn verify_fresh(
    v: *const TetherVerifier,
    token: *const c_char,
    accepted: *const *const c_char,
    n: usize,
) -> TetherStatus {
    let mut claims: *mut c_char = ptr::dangling_mut();
    // SAFETY: the caller's promise, passed on.
    let status = unsafe { tether_verify_fresh(v, token, accepted, n, FRESH_NOW, &mut claims) };
    if status == TetherStatus::Ok {
        assert!(!claims.is_null());
        // SAFETY: a string from the library.
        let json: serde_json::Value =
            serde_json::from_str(unsafe { CStr::from_ptr(claims) }.to_str().unwrap()).unwrap();
        assert_eq!(json["nonce"], "n-1");
        assert_eq!(json["nonce_period"], 300);
        assert_eq!(json["seats"], 2);
        // SAFETY: freed once.
        unsafe { tether_string_free(claims) };
    } else {
        assert!(claims.is_null(), "out pointer set on failure");
        assert!(!tether_last_error().is_null(), "no reason in words");
    }
    status
}

#[test]
fn verify_fresh_bad_input_is_a_status() {
    let v = verifier();
    let token = fresh_token();
    let good = [c"n-2".as_ptr(), c"n-1".as_ptr()];
    let with_null = [c"n-1".as_ptr(), ptr::null()];
    let not_utf8 = [c"\xff\xfe".as_ptr(), c"n-1".as_ptr()];
    // SAFETY: every pointer is NULL or valid for what the call reads; that
    // is what is under test. The huge counts are refused before any read.
    unsafe {
        assert_eq!(
            verify_fresh(v, token.as_ptr(), good.as_ptr(), 2),
            TetherStatus::Ok
        );
        assert_eq!(
            verify_fresh(ptr::null(), token.as_ptr(), good.as_ptr(), 2),
            TetherStatus::NullArgument
        );
        assert_eq!(
            verify_fresh(v, ptr::null(), good.as_ptr(), 2),
            TetherStatus::NullArgument
        );
        assert_eq!(
            verify_fresh(v, token.as_ptr(), ptr::null(), 1),
            TetherStatus::NullArgument
        );
        assert_eq!(
            verify_fresh(v, token.as_ptr(), ptr::null(), usize::MAX),
            TetherStatus::NullArgument
        );
        assert_eq!(
            verify_fresh(v, token.as_ptr(), good.as_ptr(), usize::MAX),
            TetherStatus::InvalidArgument
        );
        assert_eq!(
            verify_fresh(v, token.as_ptr(), good.as_ptr(), isize::MAX as usize / 4),
            TetherStatus::InvalidArgument
        );
        // No list accepts no nonce.
        assert_eq!(
            verify_fresh(v, token.as_ptr(), ptr::null(), 0),
            TetherStatus::NonceMismatch
        );
        assert_eq!(
            verify_fresh(v, token.as_ptr(), good.as_ptr(), 1),
            TetherStatus::NonceMismatch
        );
        assert_eq!(
            verify_fresh(v, token.as_ptr(), with_null.as_ptr(), 2),
            TetherStatus::NullArgument
        );
        // Only the first element is read when n is 1.
        assert_eq!(
            verify_fresh(v, token.as_ptr(), with_null.as_ptr(), 1),
            TetherStatus::Ok
        );
        assert_eq!(
            verify_fresh(v, token.as_ptr(), not_utf8.as_ptr(), 2),
            TetherStatus::InvalidUtf8
        );
        assert_eq!(
            verify_fresh(v, c"\xff\xfe.a.b".as_ptr(), good.as_ptr(), 2),
            TetherStatus::InvalidUtf8
        );
        let huge = CString::new(vec![b'a'; 1 << 20]).unwrap();
        assert_eq!(
            verify_fresh(v, huge.as_ptr(), good.as_ptr(), 2),
            TetherStatus::Malformed
        );
        // A NULL out pointer is allowed.
        assert_eq!(
            tether_verify_fresh(
                v,
                token.as_ptr(),
                good.as_ptr(),
                2,
                FRESH_NOW,
                ptr::null_mut()
            ),
            TetherStatus::Ok
        );
        tether_verifier_free(v);
    }
}

#[test]
fn every_status_has_its_own_name() {
    let mut names = std::collections::BTreeSet::new();
    for s in TetherStatus::ALL {
        // SAFETY: a static string.
        let name = unsafe { CStr::from_ptr(tether_status_name(s as i32)) };
        assert_eq!(name.to_str().unwrap(), s.name());
        assert!(names.insert(s.name()), "{} twice", s.name());
    }
    assert_eq!(TetherStatus::NotIncluded as i32, 16);
    assert_eq!(TetherStatus::OverSeats as i32, 17);
    assert_eq!(TetherStatus::StaleNonce as i32, 18);
    assert_eq!(TetherStatus::OtherRefusal as i32, 63);
    assert!(TetherStatus::StaleNonce.is_refusal());
}

#[test]
fn wrong_key_files_are_bad_keys() {
    let dir = std::env::temp_dir().join(format!("tether-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("dongle.key");
    tether_keys::keyfile::write_secret_key(
        &secret,
        &tether_keys::testkeys::dongle(),
        &[],
        tether_keys::keyfile::Overwrite::Replace,
    )
    .unwrap();
    let dongle_pub = dir.join("dongle.pub");
    tether_keys::keyfile::write_public_key(
        &dongle_pub,
        &tether_keys::testkeys::dongle().public(),
        &[],
        tether_keys::keyfile::Overwrite::Replace,
    )
    .unwrap();
    let expect = expectations(c"backend");
    for path in [secret, dongle_pub, dir.clone(), dir.join("missing")] {
        let c = CString::new(path.to_str().unwrap()).unwrap();
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        let status = unsafe { tether_verifier_new_from_file(c.as_ptr(), &expect, &mut out) };
        assert_eq!(status, TetherStatus::BadKey, "{}", path.display());
        assert!(out.is_null());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn vectors() -> Vec<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/vectors.json"
    );
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    set["vectors"].as_array().unwrap().clone()
}

#[test]
fn the_conformance_set_through_the_c_abi() {
    let mut failures = Vec::new();
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let e = &v["expect"];
        let service = CString::new(e["service"].as_str().unwrap()).unwrap();
        let features: Vec<CString> = e["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| CString::new(f.as_str().unwrap()).unwrap())
            .collect();
        let feature_ptrs: Vec<*const c_char> = features.iter().map(|f| f.as_ptr()).collect();
        let instance = e["instance"].as_str().map(|i| CString::new(i).unwrap());
        let expect = TetherExpectations {
            service: service.as_ptr(),
            features: feature_ptrs.as_ptr(),
            features_len: feature_ptrs.len(),
            leeway_secs: e["leeway"].as_u64().unwrap(),
            instance: instance.as_ref().map_or(ptr::null(), |i| i.as_ptr()),
        };
        let pem = v["vendor_pub"].as_str().unwrap();
        let token = CString::new(v["token"].as_str().unwrap()).unwrap();
        let nonce = v["nonce"].as_str().map(|n| CString::new(n).unwrap());
        let accepted: Option<Vec<CString>> = v["accepted"].as_array().map(|list| {
            list.iter()
                .map(|n| CString::new(n.as_str().unwrap()).unwrap())
                .collect()
        });
        let accepted_ptrs: Option<Vec<*const c_char>> = accepted
            .as_ref()
            .map(|list| list.iter().map(|n| n.as_ptr()).collect());
        let mut handle = ptr::null_mut();
        let mut claims = ptr::null_mut();
        // SAFETY: valid pointers for each call; the handle and string freed once.
        let got = unsafe {
            assert_eq!(
                tether_verifier_new_from_pem(pem.as_ptr(), pem.len(), &expect, &mut handle),
                TetherStatus::Ok
            );
            if e["refuse_grace"].as_bool().unwrap() {
                assert_eq!(tether_verifier_refuse_grace(handle), TetherStatus::Ok);
            }
            let now = v["now"].as_u64().unwrap();
            let status = match &accepted_ptrs {
                Some(list) => tether_verify_fresh(
                    handle,
                    token.as_ptr(),
                    list.as_ptr(),
                    list.len(),
                    now,
                    &mut claims,
                ),
                None => tether_verify(
                    handle,
                    token.as_ptr(),
                    nonce.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
                    now,
                    &mut claims,
                ),
            };
            tether_string_free(claims);
            tether_verifier_free(handle);
            CStr::from_ptr(tether_status_name(status as i32))
                .to_str()
                .unwrap()
                .to_string()
        };
        if got != v["expected"].as_str().unwrap() {
            failures.push(format!("{name}: expected {}, got {got}", v["expected"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
