//! Provisioning: key pairs, licenses, service enrolment.
//!
//! Every command refuses to overwrite an existing file unless `--force` is
//! given, and every failure is one line naming the file and what is wrong.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tether_keys::keyfile::{self, Overwrite, SERIAL_HEADER};
use tether_keys::license::normalize_names;
use tether_keys::{
    CredentialFile, Dongle, DongleIdentity, Fido2Credential, LicenseId, LicenseTerms, SecretKey,
    Vendor,
};
use tether_tools::human;

use crate::cli::{KeygenCmd, LicenseCmd, LicenseIssueArgs, ServiceCmd};

/// File names inside a key directory.
pub const VENDOR_KEY: &str = "vendor.key";
/// The vendor public key file name.
pub const VENDOR_PUB: &str = "vendor.pub";
/// The dongle private key file name (the identity a flasher or the emulator loads).
pub const DONGLE_KEY: &str = "dongle.key";
/// The dongle public key file name (carries the serial).
pub const DONGLE_PUB: &str = "dongle.pub";

fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Never
    }
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("{}: cannot create directory", dir.display()))
}

/// Refuses up front when any of `paths` exists, so a pair is never half written.
fn refuse_existing(paths: &[&Path], force: bool) -> anyhow::Result<()> {
    if !force && let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(tether_keys::Error::Exists(p.to_path_buf()).into());
    }
    Ok(())
}

/// A random dongle serial: `TD-` and 8 hex digits.
fn random_serial() -> String {
    let mut raw = [0u8; 4];
    tether_keys::random_fill(&mut raw);
    format!("TD-{}", hex(&raw).to_uppercase())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a fresh vendor root pair into `out`; returns the two paths.
///
/// # Errors
///
/// When `out` cannot be created or written, or (without `force`) a key
/// file already exists.
pub fn keygen_vendor(out: &Path, force: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
    ensure_dir(out)?;
    let (key_path, pub_path) = (out.join(VENDOR_KEY), out.join(VENDOR_PUB));
    refuse_existing(&[&key_path, &pub_path], force)?;
    let key = SecretKey::<Vendor>::generate();
    keyfile::write_secret_key(&key_path, &key, &[], overwrite(force))?;
    keyfile::write_public_key(&pub_path, &key.public(), &[], overwrite(force))?;
    Ok((key_path, pub_path))
}

/// Writes a fresh dongle identity into `out`; returns the serial and the two paths.
///
/// # Errors
///
/// For a serial that is not 1-64 printable ASCII characters, and as
/// [`keygen_vendor`].
pub fn keygen_dongle(
    out: &Path,
    serial: Option<String>,
    force: bool,
) -> anyhow::Result<(String, PathBuf, PathBuf)> {
    let serial = serial.unwrap_or_else(random_serial);
    if serial.is_empty() || serial.len() > 64 || !serial.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("invalid dongle serial {serial:?}: use 1-64 printable ASCII characters, no spaces");
    }
    ensure_dir(out)?;
    let (key_path, pub_path) = (out.join(DONGLE_KEY), out.join(DONGLE_PUB));
    refuse_existing(&[&key_path, &pub_path], force)?;
    let key = SecretKey::<Dongle>::generate();
    let headers = [(SERIAL_HEADER, serial.as_str())];
    keyfile::write_secret_key(&key_path, &key, &headers, overwrite(force))?;
    keyfile::write_public_key(&pub_path, &key.public(), &headers, overwrite(force))?;
    Ok((serial, key_path, pub_path))
}

/// `tether keygen vendor|dongle`.
///
/// # Errors
///
/// As [`keygen_vendor`] and [`keygen_dongle`].
pub fn keygen(cmd: KeygenCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeygenCmd::Vendor { out, force } => {
            let (key, public) = keygen_vendor(&out, force)?;
            let (pk, _) = keyfile::read_public_key::<Vendor>(&public)?;
            println!(
                "vendor root key: {} (keep offline, mode 0600)",
                key.display()
            );
            println!("vendor public key: {}", public.display());
            println!("fingerprint: {}", pk.fingerprint());
        }
        KeygenCmd::Dongle { out, serial, force } => {
            let (serial, key, public) = keygen_dongle(&out, serial, force)?;
            let (pk, _) = keyfile::read_public_key::<Dongle>(&public)?;
            println!(
                "dongle identity: {} (serial {serial}, mode 0600)",
                key.display()
            );
            println!("dongle public key: {}", public.display());
            println!("fingerprint: {}", pk.fingerprint());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Issues a license from the arguments, writes it to `--out`, returns it.
///
/// # Errors
///
/// When the output exists (without `--force`), a key file cannot be read or
/// holds the wrong key, the serials disagree, a duration, name or the license
/// size is out of bounds, or the file cannot be written.
pub fn license_issue(args: &LicenseIssueArgs) -> anyhow::Result<tether_keys::License> {
    if !args.force && args.out.exists() {
        return Err(tether_keys::Error::Exists(args.out.clone()).into());
    }
    let (vendor, _) = keyfile::read_secret_key::<Vendor>(&args.vendor_key)?;
    let old = match &args.supersedes {
        Some(path) => {
            let old = keyfile::read_license(path)?;
            old.verify(&vendor.public())
                .with_context(|| format!("{}: not signed by this vendor key", path.display()))?;
            Some(old.terms().clone())
        }
        None => None,
    };
    let dongle = match &args.dongle_pub {
        Some(path) => Some(read_dongle_identity(
            path,
            args.serial.as_deref(),
            old.as_ref(),
        )?),
        None => None,
    };
    let (dongle, serial) = match (&old, dongle) {
        (Some(o), Some((dongle, serial))) => {
            if dongle != o.dongle || serial != o.dongle_serial {
                bail!(
                    "the superseded license is for dongle {}, not {serial}: a license update cannot change the dongle (issue a new license instead)",
                    o.dongle_serial
                );
            }
            (dongle, serial)
        }
        (Some(o), None) => (o.dongle.clone(), o.dongle_serial.clone()),
        (None, Some(d)) => d,
        (None, None) => bail!("--dongle-pub is required"),
    };
    let max_token_ttl = match (&args.max_ttl, &old) {
        (None, Some(o)) => o.max_token_ttl,
        (text, _) => {
            let max_ttl = tether_keys::parse_duration(text.as_deref().unwrap_or("5m"))?.as_secs();
            u32::try_from(max_ttl)
                .ok()
                .filter(|t| *t > 0)
                .context("--max-ttl must be between 1s and about 136 years")?
        }
    };
    let nonce_period = match (args.nonce_period.as_deref(), &old) {
        (None, Some(o)) => o.nonce_period,
        (None | Some("off" | "0"), _) => 0,
        (Some(text), _) => u32::try_from(tether_keys::parse_duration(text)?.as_secs())
            .ok()
            .filter(|p| (240..=3600).contains(p))
            .context(
                "--nonce-period must be off or between 4m and 1h: below 4 min the native dongle's \
                 reach rule cannot keep up with rotating nonces (docs/threat-model.md, Freshness)",
            )?,
    };
    if matches!(dongle, DongleIdentity::Fido2(_)) && nonce_period == 0 {
        bail!(
            "{}: a FIDO2 key signs whatever it is asked, as often as asked, so its licenses \
             must demand fresh nonces (docs/threat-model.md, FIDO2 dongles)",
            tether_keys::license::FIDO2_NEEDS_FRESHNESS
        );
    }
    let now = tether_keys::UnixTime::now();
    let not_before = match (args.not_before, &old) {
        (Some(t), _) => tether_keys::UnixTime::from_secs(t),
        (None, Some(o)) => o.not_before,
        (None, None) => now,
    };
    let not_after = match (&args.valid_for, &old) {
        (None, Some(o)) => o.not_after,
        (text, _) => {
            let valid_for =
                tether_keys::parse_duration(text.as_deref().unwrap_or("365d"))?.as_secs();
            not_before
                .checked_add(std::time::Duration::from_secs(valid_for))
                .context("--valid-for is too long")?
        }
    };
    let features = match (&args.features, &old) {
        (None, Some(o)) => o.features.clone(),
        (given, _) => {
            let given: Vec<String> = given
                .iter()
                .flatten()
                .filter(|f| !f.is_empty())
                .cloned()
                .collect();
            normalize_names("feature", &given)?
        }
    };
    let services = match (&args.services, &old) {
        (None, Some(o)) => o.services.clone(),
        (given, _) => normalize_names("service", given.as_deref().unwrap_or_default())?,
    };
    let seats = match (&args.seats, &old) {
        // Seats of services the update drops go with them.
        (None, Some(o)) => o
            .seats
            .iter()
            .filter(|(s, _)| services.contains(s))
            .map(|(s, c)| (s.clone(), *c))
            .collect(),
        (given, _) => parse_seats(given.as_deref().unwrap_or_default())?,
    };
    let customer = match (&args.customer, &old) {
        (Some(c), _) => c.clone(),
        (None, Some(o)) => o.customer.clone(),
        (None, None) => bail!("--customer is required"),
    };
    let terms = LicenseTerms {
        id: old.as_ref().map_or_else(LicenseId::generate, |o| o.id),
        customer,
        dongle_serial: serial,
        dongle,
        issued_at: now,
        not_before,
        not_after,
        max_token_ttl,
        features,
        services,
        seats,
        sequence: match &old {
            Some(o) => o
                .sequence
                .checked_add(1)
                .context("the superseded license has the last sequence there is")?,
            None => 1,
        },
        grace: old.as_ref().map_or(0, |o| o.grace),
        nonce_period,
    };
    let license = terms.sign(&vendor)?;
    keyfile::write_file(
        &args.out,
        keyfile::license_pem(&license).as_bytes(),
        0o644,
        overwrite(args.force),
    )?;
    Ok(license)
}

/// The dongle `--dongle-pub` names and its serial: a native dongle public
/// key file (serial from its header, `--serial` or the superseded license),
/// or a FIDO2 identity file (`TETHER FIDO2 CREDENTIAL`, serial derived from
/// the credential), told apart by the PEM label.
fn read_dongle_identity(
    path: &Path,
    given_serial: Option<&str>,
    old: Option<&LicenseTerms>,
) -> anyhow::Result<(DongleIdentity, String)> {
    let text = fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    if Fido2Credential::is_identity_pem(&text) {
        let cred = Fido2Credential::from_pem(&text)
            .with_context(|| format!("{}: not a FIDO2 identity file", path.display()))?;
        let serial = cred.serial();
        if let Some(given) = given_serial
            && given != serial
        {
            bail!(
                "--serial {given} differs from the serial {serial} of the FIDO2 credential in {} \
                 (a FIDO2 dongle's serial is derived from its credential)",
                path.display()
            );
        }
        return Ok((DongleIdentity::Fido2(cred), serial));
    }
    let (dongle_key, headers) = keyfile::read_public_key::<Dongle>(path)?;
    let serial = match (given_serial, headers.get(SERIAL_HEADER)) {
        (Some(given), Some(in_file)) if given != in_file => bail!(
            "--serial {given} differs from the serial {in_file} in {}",
            path.display()
        ),
        (Some(s), _) => s.to_string(),
        (None, Some(s)) => s.clone(),
        (None, None) => match old {
            Some(o) => o.dongle_serial.clone(),
            None => bail!("{} names no serial: pass --serial", path.display()),
        },
    };
    Ok((DongleIdentity::Native(dongle_key), serial))
}

/// Signs a revocation of the license in `license` (every sequence up to
/// its own) and writes it to `out`.
///
/// # Errors
///
/// When a file cannot be read or written, or the license is not signed by
/// this vendor key.
pub fn license_revoke(
    vendor_key: &Path,
    license: &Path,
    out: &Path,
    force: bool,
) -> anyhow::Result<tether_keys::Revocation> {
    refuse_existing(&[out], force)?;
    let (vendor, _) = keyfile::read_secret_key::<Vendor>(vendor_key)?;
    let lic = keyfile::read_license(license)?;
    lic.verify(&vendor.public())
        .with_context(|| format!("{}: not signed by this vendor key", license.display()))?;
    let rev = tether_keys::Revocation::sign(
        lic.terms().id,
        lic.terms().sequence,
        tether_keys::UnixTime::now(),
        &vendor,
    );
    keyfile::write_file(
        out,
        keyfile::revocation_pem(&rev).as_bytes(),
        0o644,
        overwrite(force),
    )?;
    Ok(rev)
}

/// Parses `--seats SERVICE=COUNT,...` (the license checks that each service
/// is licensed and each count at least 1).
fn parse_seats(pairs: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, u32>> {
    let mut seats = std::collections::BTreeMap::new();
    for pair in pairs.iter().filter(|p| !p.trim().is_empty()) {
        let (service, count) = pair
            .split_once('=')
            .with_context(|| format!("--seats {pair:?}: expected SERVICE=COUNT"))?;
        let count: u32 = count
            .trim()
            .parse()
            .with_context(|| format!("--seats {pair:?}: the count must be a whole number"))?;
        if seats.insert(service.trim().to_string(), count).is_some() {
            anyhow::bail!("--seats names {service:?} twice");
        }
    }
    Ok(seats)
}

/// `tether license issue|verify`.
///
/// # Errors
///
/// As [`license_issue`]; for `verify`, when the signature or the validity
/// window does not hold now.
pub fn license(cmd: LicenseCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LicenseCmd::Issue(args) => {
            let license = license_issue(&args)?;
            println!(
                "license {} (sequence {}) for {} written to {}",
                license.terms().id,
                license.terms().sequence,
                license.terms().customer,
                args.out.display()
            );
        }
        LicenseCmd::Revoke {
            vendor_key,
            license,
            out,
            force,
        } => {
            let rev = license_revoke(&vendor_key, &license, &out, force)?;
            println!(
                "revocation of license {} through sequence {} written to {}",
                rev.license_id,
                rev.through_sequence,
                out.display()
            );
        }
        LicenseCmd::Install(args) => return crate::install::install(&args),
        LicenseCmd::Verify { vendor_pub, file } => {
            let (vendor, _) = keyfile::read_public_key::<Vendor>(&vendor_pub)?;
            let license = keyfile::read_license(&file)?;
            license
                .verify(&vendor)
                .with_context(|| format!("{}", file.display()))?;
            license
                .check_time(tether_keys::UnixTime::now(), std::time::Duration::ZERO)
                .with_context(|| format!("{}", file.display()))?;
            println!(
                "{}: valid license {} for {}, signed by {}, until {}",
                file.display(),
                license.terms().id,
                license.terms().customer,
                license.vendor(),
                human::instant(
                    license.terms().not_after.secs(),
                    tether_keys::UnixTime::now().secs(),
                )
            );
            println!(
                "dongle: {}",
                describe_dongle(&license.terms().dongle_serial, &license.terms().dongle)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line naming a license's dongle: its kind and serial, and the key
/// (native) or the credential (FIDO2: algorithm, rpId, AAGUID, model,
/// shortened credential id).
pub fn describe_dongle(serial: &str, dongle: &DongleIdentity) -> String {
    match dongle {
        DongleIdentity::Native(key) => format!("native {serial}, key {}", key.fingerprint()),
        DongleIdentity::Fido2(c) => format!(
            "FIDO2 {serial}, {} credential {} for rpId {:?}, AAGUID {}, model {:?}",
            c.algorithm,
            c.short_credential_id(),
            c.rp_id,
            c.aaguid_string(),
            c.model
        ),
    }
}

/// `tether service enroll`.
///
/// # Errors
///
/// When the credential file cannot be read or written, the name is invalid
/// or already enrolled (without `--force`), or the secret file exists.
pub fn service(cmd: ServiceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ServiceCmd::Enroll {
            name,
            credentials,
            secret_out,
            force,
        } => {
            if let Some(out) = &secret_out {
                refuse_existing(&[out], force)?;
            }
            let mut file = CredentialFile::load(&credentials, true)?;
            let secret = file.enroll(&name, force)?;
            if let Some(out) = &secret_out {
                keyfile::write_file(out, secret.expose().as_bytes(), 0o600, overwrite(force))?;
            }
            file.save(&credentials)?;
            match &secret_out {
                Some(out) => eprintln!(
                    "enrolled {name} in {}; its secret is in {} (mode 0600)",
                    credentials.display(),
                    out.display()
                ),
                None => {
                    eprintln!(
                        "enrolled {name} in {}; its secret follows and is shown only once:",
                        credentials.display()
                    );
                    println!("{}", secret.expose());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
