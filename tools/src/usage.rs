//! `tether usage`: the usage ledger's export (at the site) and its
//! verification (at the vendor); `docs/formats.md`, "Usage export".

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tether_keys::keyfile::{self, Overwrite};
use tether_keys::ledger::{self, Event, Export, Report, Severity};
use tether_keys::{UnixTime, Vendor};

use crate::cli::{UsageCmd, UsageExportArgs, UsageVerifyArgs};

/// Exit status of `tether usage verify` when the export does not verify.
const NOT_VERIFIED: u8 = 3;

/// Runs a `tether usage` subcommand.
pub fn run(cmd: &UsageCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        UsageCmd::Export(args) => export(args),
        UsageCmd::Verify(args) => verify(args),
    }
}

/// `--since`: a day (`YYYY-MM-DD`, UTC midnight) or an RFC 3339 instant.
fn parse_since(text: &str) -> anyhow::Result<UnixTime> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(UnixTime::from_secs(
            u64::try_from(ts.as_second()).unwrap_or(0),
        ));
    }
    let date: jiff::civil::Date = text
        .parse()
        .with_context(|| format!("--since {text:?}: expected YYYY-MM-DD or an RFC 3339 instant"))?;
    let ts = jiff::tz::TimeZone::UTC
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .with_context(|| format!("--since {text:?}"))?;
    Ok(UnixTime::from_secs(
        u64::try_from(ts.as_second()).unwrap_or(0),
    ))
}

fn export(args: &UsageExportArgs) -> anyhow::Result<ExitCode> {
    let dir = args.state_dir.join("ledger");
    if !dir.is_dir() {
        bail!(
            "{}: no usage ledger here (is this tetherd's state directory?)",
            dir.display()
        );
    }
    let all = tether_authority::ledger::read_all(&dir)
        .with_context(|| format!("cannot read the usage ledger in {}", dir.display()))?;
    // Every license the ledger names, whatever --since keeps: the
    // certificates of the records kept are checked against them.
    let mut licenses: Vec<Vec<u8>> = Vec::new();
    for (r, _) in &all {
        if let Event::Start { license, .. } | Event::LicenseInstalled { license } = &r.event
            && !licenses.contains(license)
        {
            licenses.push(license.clone());
        }
    }
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let start = since.map_or(0, |t| {
        all.iter()
            .position(|(r, _)| r.time >= t)
            .unwrap_or(all.len())
    });
    // Back to the certificate in force at that point, so the checkpoints
    // that follow are under a session key the export itself certifies.
    let start = all[..start]
        .iter()
        .rposition(|(r, _)| matches!(r.event, Event::Certificate { .. }))
        .filter(|_| start > 0 && start < all.len())
        .unwrap_or(start);
    let records = all[start..].to_vec();
    let export = Export {
        exported_at: UnixTime::now(),
        licenses,
        records,
    };
    let overwrite = if args.force {
        Overwrite::Replace
    } else {
        Overwrite::Never
    };
    keyfile::write_file(&args.out, &export.encode(), 0o644, overwrite)?;
    match (export.records.first(), export.records.last()) {
        (Some((first, _)), Some((last, _))) => println!(
            "wrote {}: records {} to {} ({} records, {} to {})",
            args.out.display(),
            first.sequence,
            last.sequence,
            export.records.len(),
            first.time,
            last.time
        ),
        _ => println!("wrote {}: no records", args.out.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads an export, never more than [`ledger::MAX_EXPORT_LEN`] bytes (one
/// byte over is read only to tell the file is too long): a huge file or a
/// device file is refused instead of filling memory.
fn read_export(path: &Path) -> anyhow::Result<Export> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(ledger::MAX_EXPORT_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}", path.display()))?;
    if bytes.len() > ledger::MAX_EXPORT_LEN {
        bail!(
            "{}: longer than the largest usage export ({} bytes)",
            path.display(),
            ledger::MAX_EXPORT_LEN
        );
    }
    Export::decode(&bytes).with_context(|| format!("{}", path.display()))
}

fn verify(args: &UsageVerifyArgs) -> anyhow::Result<ExitCode> {
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&args.vendor_pub)?;
    let export = read_export(&args.file)?;
    let mut report = ledger::verify(&vendor, &export);
    if let Some(prev) = &args.previous {
        let older = read_export(prev)?;
        report
            .findings
            .extend(ledger::chain_exports(&older, &export));
        report.verified = !report
            .findings
            .iter()
            .any(|f| f.severity == Severity::Error);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_VERIFIED)
    })
}

fn print_report(r: &Report) {
    println!(
        "{}: {} records ({} to {}), {} dongle certificates (last counter {}), {} records after the last signature",
        if r.verified {
            "VERIFIED"
        } else {
            "NOT VERIFIED"
        },
        r.records,
        r.first_sequence,
        r.last_sequence,
        r.certificates,
        r.last_counter,
        r.unsealed_tail
    );
    if !r.usage.is_empty() {
        println!();
        println!(
            "{:<10}  {:<16} {:>14} {:>10} {:>12}  refusals",
            "day", "service", "instance-hours", "peak seats", "tokens"
        );
        for u in &r.usage {
            let refusals: Vec<String> =
                u.refusals.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{:<10}  {:<16} {:>14.2} {:>10} {:>12}  {}",
                u.day,
                u.service,
                u.instance_hours,
                u.peak_seats,
                u.tokens_issued,
                refusals.join(" ")
            );
        }
    }
    let human = |secs: u64| humantime::format_duration(std::time::Duration::from_secs(secs));
    for (day, secs) in &r.dongle_absent_secs {
        println!("{day}: dongle absent for {}", human(*secs));
    }
    for (day, secs) in &r.daemon_down_secs {
        println!("{day}: tetherd not running for {}", human(*secs));
    }
    if !r.findings.is_empty() {
        println!();
        for f in &r.findings {
            let at = match (f.index, f.sequence) {
                (Some(i), Some(s)) => format!("record {s} (#{i} in the file)"),
                (None, Some(s)) => format!("record {s}"),
                _ => "export".to_string(),
            };
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            println!("{sev}: {}: {at}: {}", f.kind, f.detail);
        }
    }
}
