//! The reference services `tether backend` and `tether muxer`: small real
//! HTTP services that do their work only while licensed.
//!
//! Each links the verifier, keeps itself licensed with a `LicenseWatch`
//! (tokens fetched from tetherd, verified offline, refreshed at half-life,
//! dropped at once on an `absent` event), and answers `GET /work` with 503
//! and the reason while unlicensed. The muxer needs the `mux` feature, the
//! backend none, to show feature gating. `GET /status` (alias `/license`)
//! shows the license, whether the event stream is followed, and the clock
//! skew against the authority next to `--leeway`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tether_keys::{Vendor, keyfile};
use tether_tools::human;
use tether_verifier::{Expectations, LicenseState, LicenseWatch, Verifier, WatchConfig};
use warp::Filter as _;
use warp::http::StatusCode;

use crate::cli::ServiceArgs;

/// Which reference service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `backend`: no feature needed.
    Backend,
    /// `muxer`: needs feature `mux`.
    Muxer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Backend => "backend",
            Kind::Muxer => "muxer",
        }
    }
    /// The command, as its log lines name it.
    fn program(self) -> &'static str {
        match self {
            Kind::Backend => "tether backend",
            Kind::Muxer => "tether muxer",
        }
    }
    fn default_features(self) -> Vec<String> {
        match self {
            Kind::Backend => vec![],
            Kind::Muxer => vec!["mux".into()],
        }
    }
}

struct App {
    name: String,
    leeway: Duration,
    watch: LicenseWatch,
    started: Instant,
}

/// The license as the service sees it, for `/license`, `/status` and the
/// demo, with how well the service follows the authority: its event stream
/// and the clock skew measured at the last token's receipt.
fn license_json(app: &App) -> serde_json::Value {
    let mut v = license_state_json(app);
    let h = app.watch.health();
    v["instance"] = json!(app.watch.instance());
    v["events"] = json!({"following": h.following_events, "problem": h.events_problem});
    v["clock"] = json!({
        "authority_ahead_s": h.clock_skew_secs,
        "leeway_s": app.leeway.as_secs(),
        "disagree": h.clocks_disagree,
    });
    v
}

fn license_state_json(app: &App) -> serde_json::Value {
    match app.watch.state() {
        LicenseState::Licensed {
            claims, expires, ..
        } => json!({
            "service": app.name,
            "licensed": true,
            "expires_in_ms": expires.saturating_duration_since(Instant::now()).as_millis() as u64,
            "license_expires_at": claims.exp,
            "jti": claims.jti,
        }),
        LicenseState::Unlicensed { reason } => json!({
            "service": app.name,
            "licensed": false,
            "reason": reason,
        }),
    }
}

fn work(app: &App) -> warp::reply::Response {
    use warp::Reply as _;
    if !app.watch.is_licensed() {
        let reason = match app.watch.state() {
            LicenseState::Unlicensed { reason } => reason,
            LicenseState::Licensed { .. } => "license just changed".into(),
        };
        return warp::reply::with_status(
            warp::reply::json(&json!({"code": "unlicensed", "message": reason})),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response();
    }
    let result = match app.name.as_str() {
        "muxer" => json!({"muxed_streams": 4, "uptime_s": app.started.elapsed().as_secs()}),
        _ => json!({"processed": 1, "uptime_s": app.started.elapsed().as_secs()}),
    };
    warp::reply::json(&json!({"service": app.name, "result": result})).into_response()
}

/// Runs a reference service until SIGTERM/SIGINT.
///
/// # Errors
///
/// When the vendor key or the secret cannot be loaded, or the address
/// cannot be bound.
pub fn run(kind: Kind, args: ServiceArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(|| kind.name().to_string());
    let listen = args.listen.unwrap_or_else(|| match kind {
        Kind::Backend => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Kind::Muxer => SocketAddr::from(([127, 0, 0, 1], 8081)),
    });
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&args.vendor_pub)?;
    let secret = crate::client::load_secret(&args.secret)?;
    let features = args.require.unwrap_or_else(|| kind.default_features());
    let mut expectations = Expectations::new(&name)
        .require_features(features)
        .leeway(args.leeway.as_secs());
    if args.require_freshness {
        expectations = expectations.require_freshness();
    }
    if args.refuse_grace {
        expectations = expectations.refuse_grace();
    }
    let verifier = Verifier::new(vendor, expectations);
    crate::logs::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let config = WatchConfig::new(&args.authority, &name, secret, verifier)
            .follow_events(!args.no_events)
            .event_spread(args.event_spread);
        let watch = LicenseWatch::spawn(config);
        let app = Arc::new(App {
            name: name.clone(),
            leeway: args.leeway,
            watch,
            started: Instant::now(),
        });
        let mut states = app.watch.subscribe();
        let log_name = name.clone();
        tokio::spawn(async move {
            let mut was = None;
            loop {
                let licensed = matches!(&*states.borrow_and_update(), LicenseState::Licensed { .. });
                if was != Some(licensed) {
                    match &*states.borrow() {
                        LicenseState::Licensed { claims, .. } => {
                            tracing::info!(
                                service = %log_name,
                                exp = claims.exp.secs(),
                                expires = %human::instant(claims.exp.secs(), tether_keys::UnixTime::now().secs()),
                                "licensed"
                            );
                        }
                        LicenseState::Unlicensed { reason } => {
                            tracing::warn!(service = %log_name, %reason, "unlicensed: refusing work");
                        }
                    }
                    was = Some(licensed);
                }
                if states.changed().await.is_err() {
                    break;
                }
            }
        });
        let with_app = {
            let app = app.clone();
            warp::any().map(move || app.clone())
        };
        let work_route = warp::path!("work")
            .and(warp::get())
            .and(with_app.clone())
            .map(|app: Arc<App>| work(&app));
        let license_route = warp::path!("license")
            .or(warp::path!("status"))
            .unify()
            .and(warp::get())
            .and(with_app)
            .map(|app: Arc<App>| warp::reply::json(&license_json(&app)));
        let health = warp::path!("healthz")
            .and(warp::get())
            .map(|| warp::reply::json(&json!({"status": "ok"})));
        let routes = work_route
            .or(license_route)
            .or(health)
            .recover(|_rej: warp::Rejection| async {
                Ok::<_, std::convert::Infallible>(warp::reply::with_status(
                    warp::reply::json(&json!({"code": "not_found", "message": "no such endpoint"})),
                    StatusCode::NOT_FOUND,
                ))
            });
        tracing::info!(service = %name, %listen, "serving");
        warp::serve(routes)
            .incoming(listener)
            .graceful(crate::signals::terminated(kind.program()))
            .run()
            .await;
        // Give the seat back at once rather than when its lease lapses.
        if let Err(e) = app.watch.release().await {
            tracing::warn!(service = %name, error = %e, "could not release the seat; it lapses with the last token");
        }
        tracing::info!(service = %name, instance = app.watch.instance(), "stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
