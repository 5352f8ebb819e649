//! `tether dongle enroll --fido2` and `tether dongle probe --fido2`: a FIDO2
//! security key becomes a Tether dongle (`docs/dongle-protocol.md`, section 8).
//!
//! Enrolment, at the vendor, with one touch: getInfo (shown), a
//! non-resident credential (makeCredential, credProtect 1, EdDSA preferred,
//! ES256 accepted), its attestation checked ([`crate::attestation`]), one
//! silent assertion (`up=false`) checked with the new credential, then
//! `OUT/dongle.fido2.pem` (public, 0644), which `tether license issue
//! --dongle-pub` takes.

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr as _;
use std::time::Instant;

use anyhow::{Context as _, bail};
use tether_dongle::LinkError;
use tether_dongle::fido2::{
    AuthenticatorInfo, CtapStatus, Fido2Client, Fido2Selector, GetAssertion, MakeCredential,
    NewCredential, ctap::hex,
};
use tether_keys::fido2::normalize_es256_signature;
use tether_keys::keyfile::{self, Overwrite};
use tether_keys::{Fido2Algorithm, Fido2Credential};

use crate::attestation::{self, Policy, Verdict};
use crate::cli::{EnrollArgs, ProbeArgs};
use crate::dongle::ms;

/// The identity file name `enroll` writes.
pub const IDENTITY_FILE: &str = "dongle.fido2.pem";

/// Known models by AAGUID (the vendors' published values), for the default
/// model name; any other AAGUID is named by its hex.
const MODELS: &[(&str, &str)] = &[
    (
        "cb69481e8ff7403993ec0a2729a154a8",
        "YubiKey 5 (firmware 5.1)",
    ),
    (
        "ee882879721c491397753dfcce97072a",
        "YubiKey 5 (firmware 5.2/5.4)",
    ),
    (
        "fa2b99dc9e3942578f924a30d23c4118",
        "YubiKey 5 NFC (firmware 5.1)",
    ),
    (
        "2fc0579f811347eab116bb5a8db9202a",
        "YubiKey 5 NFC (firmware 5.2/5.4)",
    ),
    ("c5ef55ffad9a4b9fb580adebafe026d0", "YubiKey 5Ci"),
    ("73bb0cd4e50249b89c6fb59445bf720b", "YubiKey 5 FIPS"),
    ("c1f9a0bc1dd2404ab27f8e29047a43fd", "YubiKey 5 FIPS NFC"),
    (
        "ec99db19cd1f4c06a2a9940f17a6a30b",
        "Nitrokey 3 (NFC, lpc55)",
    ),
    ("2cd2f727f6ca44da8f485c2e5da000a2", "Nitrokey 3 AM (nrf52)"),
    ("8876631bd4a0427f57730ec71c9e0279", "SoloKeys Solo"),
];

fn model_of(aaguid: &[u8; 16]) -> String {
    let h = hex(aaguid);
    MODELS
        .iter()
        .find(|(id, _)| *id == h)
        .map_or_else(|| format!("FIDO2 key {h}"), |(_, name)| (*name).to_string())
}

fn open(device: &str) -> anyhow::Result<(Fido2Selector, Fido2Client)> {
    let selector = Fido2Selector::from_str(device)?;
    let client = Fido2Client::connect(&selector).map_err(|e| match e {
        LinkError::Absent => anyhow::anyhow!(
            "no FIDO2 security key found ({selector}); is it plugged in, and may this user open its /dev/hidraw device?"
        ),
        other => anyhow::Error::from(other).context(format!("{selector}")),
    })?;
    Ok((selector, client))
}

fn print_info(info: &AuthenticatorInfo, client: &mut Fido2Client) {
    let hid = client.hid().info();
    println!(
        "aaguid:      {} ({})",
        info.aaguid_hex(),
        model_of(&info.aaguid)
    );
    println!("versions:    {}", info.versions.join(", "));
    println!(
        "algorithms:  {}",
        info.algorithms.as_ref().map_or_else(
            || "not listed".to_string(),
            |a| a
                .iter()
                .map(|x| cose_name(*x))
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    println!("extensions:  {}", info.extensions.join(", "));
    let options: Vec<String> = info
        .options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("options:     {}", options.join(", "));
    println!(
        "firmware:    {} (CTAPHID device {}.{}.{})",
        info.firmware_version
            .map_or_else(|| "not given".into(), |v| v.to_string()),
        hid.device_version.0,
        hid.device_version.1,
        hid.device_version.2
    );
}

fn cose_name(alg: i64) -> String {
    match alg {
        -8 => "EdDSA (-8)".into(),
        -19 => "Ed25519 (-19)".into(),
        -7 => "ES256 (-7)".into(),
        other => format!("{other}"),
    }
}

/// Says why a key cannot serve, with its model.
fn explain(e: LinkError, model: &str) -> anyhow::Error {
    match e {
        LinkError::Ctap(s) if s.demands_touch() => anyhow::anyhow!(
            "this key demands a touch for every signature ({model}): it cannot serve as a Tether dongle ({s})"
        ),
        LinkError::Ctap(CtapStatus::PinRequired) => anyhow::anyhow!(
            "this key demands a PIN or user verification for every signature ({model}): it cannot serve as a Tether dongle"
        ),
        other => other.into(),
    }
}

/// `tether dongle enroll --fido2`.
///
/// # Errors
/// No key, a key that cannot sign silently, an attestation that does not
/// check out under the policy, or a file that cannot be written.
pub fn enroll(args: &EnrollArgs) -> anyhow::Result<ExitCode> {
    if !args.fido2 {
        bail!(
            "only FIDO2 security keys are enrolled here (--fido2); a native dongle's identity comes from `tether keygen dongle`"
        );
    }
    let policy = match (&args.attestation_roots, args.allow_self_attested) {
        (Some(dir), _) => Policy {
            roots: Policy::load_roots(dir)?,
            allow_self_attested: false,
        },
        (None, true) => Policy {
            roots: Vec::new(),
            allow_self_attested: true,
        },
        (None, false) => bail!(
            "the key's attestation must be checked: give --attestation-roots DIR (PEM roots of the key vendors), \
             or --allow-self-attested to take its model on trust"
        ),
    };
    let rp_id = args
        .rp_id
        .clone()
        .unwrap_or_else(|| format!("tether:{}", args.product.as_deref().unwrap_or("default")));
    if rp_id.is_empty() || rp_id.len() > 255 || rp_id.chars().any(char::is_control) {
        bail!("--rp-id {rp_id:?}: use 1-255 printable characters");
    }
    let out = args.out.join(IDENTITY_FILE);
    if !args.force && out.exists() {
        return Err(tether_keys::Error::Exists(out).into());
    }

    let (selector, mut client) = open(&args.device)?;
    let info = client.get_info().context("authenticatorGetInfo")?;
    println!("key:         {selector}");
    print_info(&info, &mut client);
    if !info.is_ctap2() {
        bail!("the key lists no FIDO_2_x version: a U2F-only key cannot serve as a Tether dongle");
    }
    let model = args.model.clone().unwrap_or_else(|| model_of(&info.aaguid));
    if info.always_uv() {
        bail!(
            "this key demands user verification for every signature (alwaysUv, {model}): it cannot serve as a Tether dongle; \
             turn alwaysUv off on the key first"
        );
    }

    let mut client_data_hash = [0u8; 32];
    tether_keys::random_fill(&mut client_data_hash);
    let mut user_id = [0u8; 16];
    tether_keys::random_fill(&mut user_id);
    println!("touch the key to create the credential ...");
    let cred = client
        .make_credential(&MakeCredential {
            client_data_hash,
            rp_id: rp_id.clone(),
            user_id: user_id.to_vec(),
            cred_protect: info.extensions.iter().any(|e| e == "credProtect"),
        })
        .map_err(|e| explain(e, &model))
        .context("authenticatorMakeCredential")?;
    check_new_credential(&cred, &rp_id)?;
    let verdict = attestation::verify(&cred, &client_data_hash, &policy)?;
    let credential = Fido2Credential {
        rp_id: rp_id.clone(),
        credential_id: cred.credential_id.clone(),
        algorithm: Fido2Algorithm::from_cose(match cred.public_key {
            tether_dongle::fido2::CosePublicKey::Ed25519(_) => -8,
            tether_dongle::fido2::CosePublicKey::P256 { .. } => -7,
        })?,
        public_key: cred.public_key.to_bytes(),
        aaguid: cred.aaguid,
        model,
    };
    credential.validate().context("the new credential")?;

    // The key must sign without a touch, with this very credential.
    let took = silent_assertion(&mut client, &credential)?;
    let pem = credential.to_pem();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create directory", args.out.display()))?;
    keyfile::write_file(
        &out,
        pem.as_bytes(),
        0o644,
        if args.force {
            Overwrite::Replace
        } else {
            Overwrite::Never
        },
    )?;
    println!("credential:  {}", credential.short_credential_id());
    println!("algorithm:   {}", cred.public_key.algorithm_name());
    println!("rp id:       {rp_id}");
    println!("serial:      {}", credential.serial());
    println!("model:       {}", credential.model);
    match verdict {
        Verdict::Chain { leaf, root } => {
            println!("attestation: packed, {leaf} -> trusted root {root}")
        }
        Verdict::SelfAttested => {
            println!("attestation: self attested (allowed by --allow-self-attested)")
        }
        Verdict::None => println!("attestation: none (allowed by --allow-self-attested)"),
    }
    println!(
        "silent:      ok, assertion without a touch verified, {:.2} ms",
        ms(took)
    );
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The new credential's authenticator data must be for our rp id and have
/// no unexpected state.
fn check_new_credential(cred: &NewCredential, rp_id: &str) -> anyhow::Result<()> {
    use sha2::Digest as _;
    let want: [u8; 32] = sha2::Sha256::digest(rp_id.as_bytes()).into();
    if cred.rp_id_hash != want {
        bail!("the key made the credential for another relying party (rpIdHash differs)");
    }
    Ok(())
}

/// One silent getAssertion with `credential`, checked with it; its round trip.
fn silent_assertion(
    client: &mut Fido2Client,
    credential: &Fido2Credential,
) -> anyhow::Result<std::time::Duration> {
    let mut client_data_hash = [0u8; 32];
    tether_keys::random_fill(&mut client_data_hash);
    let started = Instant::now();
    let assertion = client
        .get_assertion(&GetAssertion {
            rp_id: credential.rp_id.clone(),
            client_data_hash,
            credential_id: credential.credential_id.clone(),
        })
        .map_err(|e| explain(e, &credential.model))
        .context("silent authenticatorGetAssertion (up=false)")?;
    let took = started.elapsed();
    let signature = match credential.algorithm {
        Fido2Algorithm::Ed25519 => assertion.signature.clone(),
        Fido2Algorithm::Es256 => normalize_es256_signature(&assertion.signature)?,
    };
    credential
        .verify_assertion(&assertion.auth_data, &client_data_hash, &signature)
        .map_err(|e| match e {
            tether_keys::Error::Fido2(tether_keys::fido2::AssertionFault::UserPresent) => anyhow::anyhow!(
                "the key reported a touch on an assertion asked without one (UP flag set, {}): it cannot serve as a Tether dongle",
                credential.model
            ),
            other => anyhow::Error::from(other).context("the silent assertion does not verify with the new credential"),
        })?;
    Ok(took)
}

/// `tether dongle probe --fido2`.
///
/// # Errors
/// No key, a key that answers garbage, or an identity whose credential the
/// key does not know.
pub fn probe(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let (selector, mut client) = open(&args.device)?;
    let info = client.get_info().context("authenticatorGetInfo")?;
    println!("key:         {selector}");
    print_info(&info, &mut client);
    let mut nonce = [0u8; 32];
    tether_keys::random_fill(&mut nonce);
    let started = Instant::now();
    client.hid().ping(&nonce)?;
    println!(
        "ping:        ok, {:.2} ms round trip",
        ms(started.elapsed())
    );
    match &args.identity {
        Some(path) => {
            let credential = read_identity(path)?;
            println!(
                "serial:      {} ({})",
                credential.serial(),
                credential.model
            );
            let took = silent_assertion(&mut client, &credential)?;
            println!(
                "assertion:   ok, silent, verified, {:.2} ms round trip",
                ms(took)
            );
        }
        None => println!(
            "assertion:   not timed (give --identity DIR/{IDENTITY_FILE} for one silent assertion)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a `dongle.fido2.pem`.
///
/// # Errors
/// When the file cannot be read or does not parse.
pub fn read_identity(path: &Path) -> anyhow::Result<Fido2Credential> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Fido2Credential::from_pem(&text).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_named_by_aaguid_and_unknown_ones_by_hex() {
        let yubikey: [u8; 16] = [
            0xcb, 0x69, 0x48, 0x1e, 0x8f, 0xf7, 0x40, 0x39, 0x93, 0xec, 0x0a, 0x27, 0x29, 0xa1,
            0x54, 0xa8,
        ];
        assert_eq!(model_of(&yubikey), "YubiKey 5 (firmware 5.1)");
        assert_eq!(
            model_of(&[0x11; 16]),
            "FIDO2 key 11111111111111111111111111111111"
        );
        assert!(
            MODELS
                .iter()
                .all(|(h, _)| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
