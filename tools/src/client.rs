//! Commands that talk to a running tetherd or service (`token`, `health`),
//! and `verify`, which checks a token offline as a consumer would.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tether_keys::ServiceSecret;
use tether_tools::http;

use crate::cli::{SecretArgs, TokenArgs, VerifyArgs};

/// Reads the service secret from `--secret-file` or `--secret`/`TETHER_SECRET`.
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

pub fn token(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let secret = load_secret(&args.secret)?;
    let path = match &args.nonce {
        Some(n) => format!("/token?nonce={n}"),
        None => "/token".to_string(),
    };
    let resp = http::get(&args.url, &path, Some(secret.expose()))
        .with_context(|| format!("cannot reach {}", args.url))?;
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

pub fn health(url: &str) -> anyhow::Result<ExitCode> {
    let (base, path) = match url.trim_start_matches("http://").split_once('/') {
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
        .verify_at(&text, args.nonce.as_deref(), tether_keys::now_unix())
        .context("token refused")?;
    let c = &verified.claims;
    println!(
        "valid token {} for {} from {}, expires {}, certificate until {}",
        c.jti, c.aud, c.iss, c.exp, verified.cert_not_after
    );
    Ok(ExitCode::SUCCESS)
}
