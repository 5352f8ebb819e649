//! `tetherd`, the Tether license authority, as a library.
//!
//! [`run`] serves the HTTP API on the given listeners, keeps the presence
//! watchdog running against the dongle, and returns when `shutdown`
//! completes, after in-flight requests have finished and the session key has
//! been wiped. The `tetherd` binary is a thin wrapper; tests call [`run`] on
//! `127.0.0.1:0`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod authority;
pub mod clock;
pub mod config;
mod daemon;
pub mod freshness;
pub mod http;
pub mod leases;
pub mod ledger;
pub mod license;
pub mod metrics;
pub mod presence;
pub mod receipts;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tether_keys::{CredentialFile, Vendor, keyfile};
use tokio_util::sync::CancellationToken;

pub use authority::Authority;
pub use config::{Config, Listen};
pub use daemon::{error_line, main};

/// A bound listener, TCP or Unix.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// Unix-domain socket.
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// Binds `listen` (removing a stale Unix socket file first).
    ///
    /// # Errors
    ///
    /// When the address cannot be bound (in use, no permission).
    pub async fn bind(listen: &Listen) -> anyhow::Result<Listener> {
        match listen {
            Listen::Tcp(addr) => Ok(Listener::Tcp(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?,
            )),
            Listen::Unix(path) => {
                let _ = std::fs::remove_file(path);
                Ok(Listener::Unix(
                    tokio::net::UnixListener::bind(path)
                        .with_context(|| format!("cannot listen on {}", path.display()))?,
                ))
            }
        }
    }
}

/// Loads and checks everything the configuration names: the license must
/// verify under the vendor key and the credential file must parse. Returns
/// the authority, ready for [`run`].
///
/// # Errors
///
/// When a file cannot be read or parsed, the license does not verify under
/// the vendor key, or the state directory cannot be opened.
pub fn load(config: &Config) -> anyhow::Result<Arc<Authority>> {
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&config.vendor_pub)?;
    let license = keyfile::read_license(&config.license)?;
    license
        .verify(&vendor)
        .with_context(|| format!("{}", config.license.display()))?;
    let store = state::StateStore::open(&config.state_dir)?;
    let license = license::prefer_installed(license, &config.state_dir, &vendor);
    let (id, sequence) = (license.terms().id.to_string(), license.terms().sequence);
    if let Some(high) = store.license_sequence(&id)
        && sequence < high
    {
        anyhow::bail!(
            "{}: license {id} is at sequence {sequence}, below sequence {high} already installed here ({}): \
             an older version of a license cannot be put back; start with the latest license file",
            config.license.display(),
            store.path().display()
        );
    }
    presence::check_kind(&config.dongle, license.terms())
        .with_context(|| format!("{}", config.license.display()))?;
    store.record_license_sequence(&id, sequence)?;
    let period = u64::from(license.terms().nonce_period);
    if period > 0 && period < freshness::LEAST_SUSTAINABLE_PERIOD.as_secs() {
        tracing::warn!(
            nonce_period_s = period,
            least_s = freshness::LEAST_SUSTAINABLE_PERIOD.as_secs(),
            "the license's nonce period is shorter than the native dongle's reach rule sustains: \
             consumers may lapse once its budget is spent (docs/threat-model.md, Freshness)"
        );
    }
    let credentials = CredentialFile::load(&config.credentials, false)?;
    for service in credentials.services() {
        if !license.allows_service(service) {
            tracing::warn!(
                service,
                "enrolled service is not in the license; it will get 403"
            );
        }
    }
    let settings = authority::IssueSettings {
        token_ttl: config.token_ttl,
        clock_tolerance: config.clock_tolerance,
        rate_limit: config.rate_limit,
    };
    let auth = Arc::new(Authority::new(license, credentials, settings, store));
    // The usage ledger: opened (and repaired) before anything is served; a
    // ledger that cannot be written stops the daemon here (fail closed).
    let ledger = ledger::Ledger::open(
        &config.state_dir.join("ledger"),
        config.ledger_segment_size,
        auth.now(),
    )
    .context("cannot open the usage ledger")?;
    let mut run_id = [0u8; 16];
    tether_keys::random_fill(&mut run_id);
    ledger.append(tether_keys::ledger::Event::Start {
        run: run_id,
        software: env!("CARGO_PKG_VERSION").into(),
        license: auth.license().encoded().to_vec(),
    });
    ledger.sync().context("cannot write the usage ledger")?;
    auth.ledger.attach(ledger);
    if auth.is_revoked() {
        tracing::error!(license = %id, sequence, "this license was revoked by the vendor: every token is refused (license_revoked)");
    }
    let now = auth.now();
    if let Some(mark) = auth.clock_rolled_back(now) {
        let advice = state::clock_behind_advice(now, mark, auth.store.path());
        tracing::error!(%advice, "tokens will be refused until the clock or its mark is set right");
    } else {
        auth.advance_clock(now)?;
    }
    Ok(auth)
}

/// Runs the authority until `shutdown` completes: the watchdog on its thread,
/// the HTTP API on every listener, the admin page on its own
/// (`config.admin_listen`). Then drains in-flight requests, ends event
/// streams, stops the watchdog and wipes the session key.
///
/// # Errors
///
/// When the watchdog thread cannot be started, or the admin address the
/// operator chose cannot be bound.
pub async fn run(
    auth: Arc<Authority>,
    config: &Config,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // One token stops everything; HTTP follows a child of it, cancelled
    // first, so requests drain while the watchdog still holds the session.
    // Dropping `run` (its runtime ending) cancels both.
    let stopping = CancellationToken::new();
    let _stop_on_drop = stopping.clone().drop_guard();
    let draining = stopping.child_token();
    // The admin page's listener, before anything starts: an address the
    // operator chose that cannot be bound stops the daemon here.
    let admin_listener = admin::bind(config).await?;
    let watchdog = presence::spawn(
        auth.clone(),
        presence::WatchSettings {
            driver: presence::driver(&auth, &config.dongle),
            heartbeat: config.heartbeat,
            cert_lifetime: config.cert_lifetime,
        },
        &stopping,
    )
    .context("cannot start the presence watchdog")?;

    // Boxed, like the admin page's: one instantiation of the accept loop
    // serves both (a second one cost the binary 35 KB).
    let routes = warp::Filter::boxed(http::filters::routes(auth.clone(), draining.clone()));
    let conns = Arc::new(http::server::ConnMetrics {
        auth: auth.clone(),
        log: http::server::ConnLog::default(),
    });
    let mut servers = tokio::task::JoinSet::new();
    // License updates and revocations (`tether license install`), and
    // expiry warnings. A vendor key that no longer reads leaves the
    // installed license serving, without updates.
    match keyfile::read_public_key::<Vendor>(&config.vendor_pub) {
        Ok((vendor, _)) => {
            tokio::spawn(license::watch(auth.clone(), vendor, draining.clone()));
        }
        Err(e) => tracing::error!(error = %e, "license updates disabled"),
    }
    tokio::spawn(license::expiry::watch(
        auth.clone(),
        config.expiry_warnings.clone(),
        draining.clone(),
    ));
    for listener in listeners {
        servers.spawn(http::server::serve(
            routes.clone(),
            listener,
            conns.clone(),
            draining.clone(),
        ));
    }
    if let Some(listener) = admin_listener {
        let local = listener.local_addr()?;
        let page = admin::Admin::new(auth.clone(), local, &config.admin_hosts, draining.clone());
        servers.spawn(admin::serve(page, listener));
    }
    shutdown.await;
    tracing::info!("shutting down: draining requests");
    draining.cancel();
    while servers.join_next().await.is_some() {}
    // Requests are done, the session is still held: the last minute, the
    // stop record and a checkpoint under the session key (clean shutdown).
    {
        let auth = auth.clone();
        let _ = tokio::task::spawn_blocking(move || ledger::shutdown(&auth)).await;
    }
    stopping.cancel();
    let _ = tokio::task::spawn_blocking(move || watchdog.join()).await;
    auth.set_absent("authority stopped");
    tracing::info!("stopped; session key wiped");
    Ok(())
}
