//! `tether inspect`: what a key, license, credential file or token holds.
//!
//! A token (a JWT as the argument, a file holding one, or the JSON answer of
//! `GET /token`) is shown as its header, claims, and the license and
//! certificate inside, each marked verified or not: with `--vendor-pub` every
//! signature down to the vendor root is checked, without it nothing is.
//!
//! Human output shows instants as RFC 3339 UTC with the time left and
//! durations with units; `--json` keeps UNIX seconds.

use std::fs;
use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tether_keys::keyfile::{self, SERIAL_HEADER};
use tether_keys::{
    Certificate, CredentialFile, Dongle, DongleIdentity, Fido2Credential, License, PublicKey,
    Vendor,
};
use tether_tools::human;

use crate::cli::InspectArgs;

/// Files larger than this are not Tether files (licenses are at most 3 KiB).
const MAX_INPUT: u64 = 1 << 20;

/// Keys whose numbers are instants (UNIX seconds) in human output.
const INSTANTS: &[&str] = &["issued_at", "not_before", "not_after", "iat", "nbf", "exp"];
/// Keys whose numbers are durations in seconds in human output.
const DURATIONS: &[&str] = &["max_token_ttl", "lifetime", "grace", "nonce_period"];

/// Where a signature check stands, for the output.
fn status(result: Option<Result<(), String>>, why_not: &str) -> Value {
    match result {
        Some(Ok(())) => json!("verified"),
        Some(Err(e)) => json!(format!("INVALID: {e}")),
        None => json!(format!("not verified ({why_not})")),
    }
}

const NO_VENDOR: &str = "pass --vendor-pub to check it";

fn license_json(license: &License, vendor: Option<&PublicKey<Vendor>>) -> Value {
    let t = license.terms();
    let checked = vendor.map(|v| license.verify(v).map_err(|e| e.to_string()));
    let seats: serde_json::Map<String, Value> = t
        .services
        .iter()
        .map(|s| {
            let n = t.seats_for(s).map_or(json!("unlimited"), |n| json!(n));
            (s.clone(), n)
        })
        .collect();
    json!({
        "kind": "license",
        "format_version": license.version(),
        "id": t.id.to_string(),
        "sequence": t.sequence,
        "customer": t.customer,
        "vendor": license.vendor().to_string(),
        "dongle_serial": t.dongle_serial,
        "dongle_kind": t.dongle.kind_name(),
        "dongle_key": t.dongle.fingerprint().to_string(),
        "dongle": dongle_json(&t.dongle),
        "issued_at": t.issued_at,
        "not_before": t.not_before,
        "not_after": t.not_after,
        "max_token_ttl": t.max_token_ttl,
        "features": t.features,
        "services": t.services,
        "seats": seats,
        "grace": t.grace,
        "nonce_period": t.nonce_period,
        "signature": status(checked, NO_VENDOR),
    })
}

/// The dongle a license names: its key, and for a FIDO2 key the
/// credential's rpId, AAGUID, model, algorithm and (shortened) id.
fn dongle_json(dongle: &DongleIdentity) -> Value {
    match dongle {
        DongleIdentity::Native(key) => json!({
            "key": key.fingerprint().to_string(),
        }),
        DongleIdentity::Fido2(c) => json!({
            "key": c.fingerprint().to_string(),
            "rp_id": c.rp_id,
            "aaguid": c.aaguid_string(),
            "model": c.model,
            "algorithm": c.algorithm.name(),
            "credential_id": c.short_credential_id(),
        }),
    }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_string(&mut text)
            .context("stdin")?;
        if text.len() as u64 > MAX_INPUT {
            bail!("stdin: more than {MAX_INPUT} bytes: not a Tether file or token");
        }
        return Ok(text);
    }
    let len = fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    if len > MAX_INPUT {
        bail!(
            "{}: {len} bytes: too large for a Tether file or token",
            path.display()
        );
    }
    fs::read_to_string(path).with_context(|| format!("{}", path.display()))
}

/// Three base64url parts separated by dots, nothing else.
fn looks_like_jwt(text: &str) -> bool {
    text.split('.').count() == 3
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The token in `text`: a bare JWT or the JSON answer of `GET /token`.
fn token_in(text: &str) -> Option<String> {
    let text = text.trim();
    if text.starts_with('{') {
        let answer: Value = serde_json::from_str(text).ok()?;
        return answer.get("token")?.as_str().map(str::to_string);
    }
    looks_like_jwt(text).then(|| text.to_string())
}

fn b64_json(part: &str, what: &str) -> anyhow::Result<Value> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .with_context(|| format!("not a token: the {what} is not base64url"))?;
    let value: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("not a token: the {what} is not JSON"))?;
    if !value.is_object() {
        bail!("not a token: the {what} is not a JSON object");
    }
    Ok(value)
}

/// Header, claims, license and certificate of `token`, each with whether
/// its signature was verified.
fn describe_token(token: &str, vendor: Option<&PublicKey<Vendor>>) -> anyhow::Result<Value> {
    let mut parts = token.splitn(3, '.');
    let (Some(header_b64), Some(claims_b64), Some(sig_b64)) =
        (parts.next(), parts.next(), parts.next())
    else {
        bail!("not a token: a JWT has three parts separated by dots");
    };
    let header = b64_json(header_b64, "header part")?;
    let mut claims = b64_json(claims_b64, "claims part")?;
    let signature: Option<[u8; 64]> = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .ok()
        .and_then(|s| s.try_into().ok());

    let embedded = |name: &str| -> Option<Vec<u8>> {
        claims
            .get(name)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
    };
    let license = embedded("lic").map(|b| License::decode(&b));
    let cert = embedded("dcert").map(|b| Certificate::decode(&b));

    let license_ok = match (&license, vendor) {
        (Some(Ok(l)), Some(v)) => l.verify(v).is_ok(),
        _ => false,
    };
    let license_value = match &license {
        Some(Ok(l)) => license_json(l, vendor),
        Some(Err(e)) => json!({"kind": "license", "error": format!("not a license: {e}")}),
        None => json!({"kind": "license", "error": "the token carries no lic claim"}),
    };

    let mut token_sig = None;
    let cert_value = match (&cert, &license) {
        (Some(Ok(c)), license) => {
            let dongle: Option<&DongleIdentity> = match license {
                Some(Ok(l)) if license_ok => Some(&l.terms().dongle),
                _ => None,
            };
            let checked = dongle.map(|d| c.verify_by(d).map_err(|e| e.to_string()));
            let cert_ok = matches!(checked, Some(Ok(())));
            let session = c.request.session_key;
            if cert_ok {
                let kid = header.get("kid").and_then(Value::as_str);
                let signed_len = header_b64.len() + 1 + claims_b64.len();
                token_sig = Some(if kid != Some(session.fingerprint().short().as_str()) {
                    Err("kid does not name the certified session key".to_string())
                } else if signature
                    .is_some_and(|s| session.verify(&token.as_bytes()[..signed_len], &s))
                {
                    Ok(())
                } else {
                    Err("bad signature".to_string())
                });
            }
            let why_not = if vendor.is_none() {
                NO_VENDOR
            } else {
                "its license is not verified"
            };
            json!({
                "serial": c.serial,
                "dongle_kind": tether_keys::license::kind_name(c.kind()),
                "counter": c.counter,
                "session_key": session.fingerprint().to_string(),
                "not_before": c.request.not_before,
                "not_after": c.request.not_after,
                "lifetime": c.request.not_after.saturating_duration_since(c.request.not_before).as_secs(),
                "version": c.version(),
                "commitment": commitment_value(&c.request.commitment),
                "ledger": ledger_value(&c.request.ledger),
                "signature": status(checked, why_not),
            })
        }
        (Some(Err(e)), _) => json!({"error": format!("not a delegation certificate: {e}")}),
        (None, _) => json!({"error": "the token carries no dcert claim"}),
    };
    // The embedded license and certificate are shown decoded, not as base64.
    if let Some(map) = claims.as_object_mut() {
        map.remove("lic");
        map.remove("dcert");
    }
    let why_not = if vendor.is_none() {
        NO_VENDOR
    } else {
        "its certificate is not verified"
    };
    let mut out = json!({
        "kind": "token",
        "header": header,
        "claims": claims,
        "signature": status(token_sig, why_not),
        "license": license_value,
        "certificate": cert_value,
    });
    if let Some(v) = vendor {
        // The whole verdict a consumer would reach now, time checks included.
        let aud = claims_str(&out, "aud");
        let nonce = out["claims"]["nonce"].as_str().map(str::to_string);
        let verifier = tether_verifier::Verifier::new(*v, tether_verifier::Expectations::new(&aud));
        out["verdict"] =
            match verifier.verify_at(token, nonce.as_deref(), tether_keys::UnixTime::now()) {
                Ok(_) => json!(format!("valid now for {aud}")),
                Err(e) => json!(format!("refused: {e}")),
            };
    }
    Ok(out)
}

fn claims_str(out: &Value, name: &str) -> String {
    out["claims"][name].as_str().unwrap_or_default().to_string()
}

/// What `inspect` found, as JSON (the human form is printed from it).
fn describe(path: &Path, vendor: Option<&PublicKey<Vendor>>) -> anyhow::Result<Value> {
    let arg = path.to_string_lossy();
    if !path.exists() && looks_like_jwt(&arg) {
        // Most likely a token; if it is not one, it may be a mistyped path.
        return describe_token(&arg, vendor)
            .map_err(|e| anyhow::anyhow!("{arg}: no such file, and {e:#}"));
    }
    let text = read_input(path)?;
    if let Some(token) = token_in(&text) {
        return describe_token(&token, vendor);
    }
    if text.contains("-----BEGIN TETHER LICENSE-----") {
        let license = keyfile::parse_license(path, &text)?;
        return Ok(license_json(&license, vendor));
    }
    if Fido2Credential::is_identity_pem(&text) {
        let cred = Fido2Credential::from_pem(&text)
            .with_context(|| format!("{}: not a FIDO2 identity file", path.display()))?;
        return Ok(json!({
            "kind": "fido2-credential",
            "serial": cred.serial(),
            "dongle_kind": "FIDO2",
            "dongle": dongle_json(&DongleIdentity::Fido2(cred)),
        }));
    }
    if text.contains("-----BEGIN PRIVATE KEY-----") {
        let role = role_of(&text);
        let (fingerprint, headers) = match role.as_str() {
            "vendor" => keyfile::read_secret_key::<Vendor>(path)
                .map(|(k, h)| (k.public().fingerprint(), h))?,
            "dongle" => keyfile::read_secret_key::<Dongle>(path)
                .map(|(k, h)| (k.public().fingerprint(), h))?,
            other => bail!("{}: private key of unknown role {other:?}", path.display()),
        };
        return Ok(json!({
            "kind": "private-key",
            "role": role,
            "fingerprint": fingerprint.to_string(),
            "serial": headers.get(SERIAL_HEADER),
        }));
    }
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        let role = role_of(&text);
        let (fingerprint, headers) = match role.as_str() {
            "dongle" => keyfile::parse_public_key::<Dongle>(path, &text)
                .map(|(k, h)| (k.fingerprint(), h))?,
            _ => keyfile::parse_public_key::<Vendor>(path, &text)
                .map(|(k, h)| (k.fingerprint(), h))?,
        };
        return Ok(json!({
            "kind": "public-key",
            "role": role,
            "fingerprint": fingerprint.to_string(),
            "serial": headers.get(SERIAL_HEADER),
        }));
    }
    if text.lines().any(|l| l.contains(" sha256:")) {
        let creds = CredentialFile::parse(path, &text)?;
        return Ok(json!({
            "kind": "credentials",
            "services": creds.services().collect::<Vec<_>>(),
        }));
    }
    bail!(
        "{}: not a Tether key, license, credential file or token",
        path.display()
    )
}

fn role_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(keyfile::ROLE_HEADER))
        .and_then(|rest| rest.strip_prefix(':'))
        .map_or_else(|| "unknown".to_string(), |r| r.trim().to_string())
}

/// One value as a person reads it: instants and durations with units.
fn shown(key: &str, value: &Value, now: u64) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Number(n) => match n.as_u64() {
            Some(secs) if INSTANTS.contains(&key) => human::instant(secs, now),
            Some(secs) if DURATIONS.contains(&key) => human::seconds(secs),
            _ => n.to_string(),
        },
        other => other.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a certificate commits to about the live consumers: "none", or the
/// root, the leaf count and the leaves per service.
fn commitment_value(c: &tether_keys::Commitment) -> Value {
    if c.is_empty() {
        return json!("none");
    }
    let services: Vec<String> = c.counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    json!({
        "root": hex(&c.root),
        "leaves": c.total(),
        "services": services.join(", "),
    })
}

/// The usage ledger head a certificate commits to: "none", or its
/// sequence and hash.
fn ledger_value(l: &tether_keys::delegation::LedgerHead) -> Value {
    if l.is_none() {
        return json!("none");
    }
    json!({"sequence": l.sequence, "hash": hex(&l.hash)})
}

/// Sections of a token in the order an operator reads them.
const SECTIONS: &[&str] = &["header", "claims", "certificate", "license"];

fn print_human(map: &serde_json::Map<String, Value>, indent: usize, now: u64) {
    let pad = " ".repeat(indent);
    // Plain values first (the kind only at the top), then the sections.
    for (k, v) in map {
        if v.is_object() || (k == "kind" && indent > 2) {
            continue;
        }
        if let Some(text) = shown(k, v, now) {
            println!("{pad}{k:<14} {text}");
        }
    }
    let rank = |k: &str| {
        SECTIONS
            .iter()
            .position(|s| *s == k)
            .unwrap_or(SECTIONS.len())
    };
    let mut sections: Vec<(&String, &serde_json::Map<String, Value>)> = map
        .iter()
        .filter_map(|(k, v)| v.as_object().map(|inner| (k, inner)))
        .collect();
    sections.sort_by_key(|(k, _)| rank(k));
    for (k, inner) in sections {
        println!("{pad}{k}:");
        print_human(inner, indent + 2, now);
    }
}

/// Runs `tether inspect`.
///
/// # Errors
///
/// When the vendor key cannot be read, the input cannot be read or is over
/// 1 MiB, or it is none of a Tether key, license, credential file or token.
/// A token whose signatures do not verify is shown, not an error.
pub fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let vendor = match &args.vendor_pub {
        Some(path) => Some(keyfile::read_public_key::<Vendor>(path)?.0),
        None => None,
    };
    let value = describe(&args.file, vendor.as_ref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if let Some(map) = value.as_object() {
        if value["kind"] == "token" {
            println!("token");
        } else {
            println!("{}", args.file.display());
        }
        print_human(map, 2, tether_keys::UnixTime::now().secs());
    }
    Ok(ExitCode::SUCCESS)
}
