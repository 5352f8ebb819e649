//! Commands that talk to a running tetherd or service (`token`, `health`),
//! and `verify`, which checks a token offline as a consumer would.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tether_keys::ServiceSecret;
use tether_tools::{http, human};

use crate::cli::{SecretArgs, TokenArgs, VerifyArgs};

/// Reads the service secret from `--secret-file` or `--secret`/`TETHER_SECRET`.
///
/// # Errors
///
/// When neither is given, the file cannot be read, or the text is not a
/// service secret.
pub fn load_secret(args: &SecretArgs) -> anyhow::Result<ServiceSecret> {
    let text = match (&args.secret_file, &args.secret) {
        (Some(path), _) => zeroize::Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?,
        ),
        (None, Some(s)) => zeroize::Zeroizing::new(s.clone()),
        (None, None) => bail!("no service secret: pass --secret-file (or TETHER_SECRET_FILE)"),
    };
    Ok(ServiceSecret::parse(&text)?)
}

/// How many times `tether token` asks again after 503
/// `awaiting_certificate` (its nonce pending in the next certificate).
const PENDING_TRIES: u32 = 5;

/// `tether token`: fetches a token as `--instance` with a nonce (the given
/// one, else a random one, named on stderr) and prints tetherd's JSON
/// answer. A 503 `awaiting_certificate` is asked again with the same nonce
/// after its `Retry-After` (at most 5 s), up to 5 times.
///
/// # Errors
///
/// When the secret cannot be loaded, the instance id or nonce is not valid,
/// tetherd cannot be reached, or it answers anything but 200 (its message
/// is shown).
pub fn token(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    let secret = load_secret(&args.secret)?;
    if !tether_keys::wire::is_instance_id(&args.instance) {
        bail!("--instance: 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'");
    }
    let nonce = match &args.nonce {
        Some(n) => n.clone(),
        None => {
            let mut raw = [0u8; 18];
            tether_keys::random_fill(&mut raw);
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            eprintln!("nonce: {n}");
            n
        }
    };
    // What tetherd accepts (docs/api.md, `GET /token`), checked here so the
    // nonce cannot change the query.
    if nonce.is_empty()
        || nonce.len() > 128
        || !nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        bail!("--nonce: 1-128 base64url characters (A-Z, a-z, 0-9, '-', '_')");
    }
    let path = format!("/token?nonce={nonce}&instance={}", args.instance);
    let mut tries = 0;
    let resp = loop {
        let resp = http::get(&args.url, &path, Some(secret.expose()))
            .with_context(|| format!("cannot reach {}", args.url))?;
        let pending = resp.status == 503
            && resp.json().is_ok_and(|b| {
                b["code"] == tether_keys::wire::RefusalCode::AwaitingCertificate.as_str()
            });
        tries += 1;
        if !pending || tries > PENDING_TRIES {
            break resp;
        }
        let wait = resp
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, 5);
        eprintln!("nonce pending in the next certificate; asking again in {wait} s");
        std::thread::sleep(std::time::Duration::from_secs(wait));
    };
    if resp.status != 200 {
        let body = resp.json().unwrap_or_default();
        bail!(
            "{} answered {}: {}",
            args.url,
            resp.status,
            body["message"].as_str().unwrap_or("no reason given")
        );
    }
    println!("{}", resp.body.trim_end());
    Ok(ExitCode::SUCCESS)
}

/// `tether health URL`: exit 0 when URL answers 200.
///
/// # Errors
///
/// For a URL that is not `http://`, no answer, or another status.
pub fn health(url: &str) -> anyhow::Result<ExitCode> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (base, path) = match rest.split_once('/') {
        Some((host, rest)) => (format!("http://{host}"), format!("/{rest}")),
        None => (url.to_string(), "/".to_string()),
    };
    let resp = http::get(&base, &path, None).with_context(|| format!("cannot reach {url}"))?;
    if resp.status == 200 {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{url} answered {}", resp.status)
    }
}

/// Verifies a token down to the vendor root, as a consumer does: nothing but
/// `vendor.pub` is trusted.
///
/// # Errors
///
/// When the vendor key cannot be read, the input is not a token or the
/// JSON answer of `GET /token`, or the token is refused (the reason is named).
pub fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    use tether_keys::{Vendor, keyfile};
    use tether_verifier::{Expectations, Verifier};

    let (vendor, _) = keyfile::read_public_key::<Vendor>(&args.vendor_pub)?;
    let mut text = if args.token == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(tether_verifier::MAX_TOKEN_LEN as u64 * 2)
            .read_to_string(&mut s)?;
        s
    } else {
        args.token.clone()
    };
    text = text.trim().to_string();
    if text.starts_with('{') {
        let answer: serde_json::Value = serde_json::from_str(&text).context("not JSON")?;
        text = answer["token"]
            .as_str()
            .context("the JSON answer has no \"token\"")?
            .to_string();
    }
    let verifier = Verifier::new(
        vendor,
        Expectations::new(&args.service).leeway(args.leeway.as_secs()),
    );
    let verified = verifier
        .verify_at(&text, args.nonce.as_deref(), tether_keys::UnixTime::now())
        .context("token refused")?;
    let c = &verified.claims;
    let now = tether_keys::UnixTime::now().secs();
    println!(
        "valid token {} for {} from {}, expires {}, certificate until {}",
        c.jti,
        c.aud,
        c.iss,
        human::instant(c.exp.secs(), now),
        human::instant(verified.cert_not_after.secs(), now)
    );
    if c.prf.is_some() {
        println!(
            "nonce {} of instance {} included in the certificate's commitment (nonce period {} s)",
            c.nonce.as_deref().unwrap_or("?"),
            c.ins.as_deref().unwrap_or("?"),
            verified.nonce_period
        );
    }
    Ok(ExitCode::SUCCESS)
}
