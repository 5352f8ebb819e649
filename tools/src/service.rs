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
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use tether_keys::{Vendor, keyfile};
use tether_verifier::{Expectations, LicenseState, LicenseWatch, Verifier, WatchConfig};
use warp::Filter as _;
use warp::http::StatusCode;

use crate::cli::SecretArgs;

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
    fn default_features(self) -> Vec<String> {
        match self {
            Kind::Backend => vec![],
            Kind::Muxer => vec!["mux".into()],
        }
    }
}

/// Flags of `tether backend` and `tether muxer`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Address to serve on (default 127.0.0.1:8080 for backend, :8081 for muxer).
    #[arg(long, env = "TETHER_SERVICE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// tetherd's base URL.
    #[arg(
        long,
        env = "TETHER_AUTHORITY_URL",
        default_value = "http://127.0.0.1:7443"
    )]
    pub authority: String,
    /// The vendor root public key: the only key a token is verified with.
    #[arg(long, env = "TETHER_VENDOR_PUB")]
    pub vendor_pub: PathBuf,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Service name, as enrolled and licensed (default: the command's name).
    #[arg(long, env = "TETHER_SERVICE_NAME")]
    pub name: Option<String>,
    /// Features the license must grant (default: none for backend, `mux` for muxer).
    #[arg(long, env = "TETHER_REQUIRE_FEATURES", value_delimiter = ',')]
    pub require: Option<Vec<String>>,
    /// Do not follow the authority's events: the license then ends at token
    /// expiry at the latest, instead of at once (for tests and comparison).
    #[arg(long, env = "TETHER_NO_EVENTS")]
    pub no_events: bool,
    /// Clock leeway for every time check of a token, its certificate and
    /// its license (e.g. 5s, 30s; at most 5m): how far this host's clock may
    /// disagree with the authority's. `/status` reports the measured skew.
    #[arg(long, env = "TETHER_LEEWAY", default_value = "5s", value_parser = crate::cli::parse_leeway)]
    pub leeway: Duration,
    /// After the authority reports the dongle back, wait a random delay of up
    /// to this long before fetching, so replicas of one service do not
    /// stampede its rate limit (about replicas / rate-limit seconds).
    #[arg(long, env = "TETHER_EVENT_SPREAD", default_value = "1s", value_parser = crate::cli::parse_spread)]
    pub event_spread: Duration,
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
        LicenseState::Licensed { claims, expires } => json!({
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
pub fn run(kind: Kind, args: ServiceArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(|| kind.name().to_string());
    let listen = args.listen.unwrap_or_else(|| match kind {
        Kind::Backend => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Kind::Muxer => SocketAddr::from(([127, 0, 0, 1], 8081)),
    });
    let (vendor, _) = keyfile::read_public_key::<Vendor>(&args.vendor_pub)?;
    let secret = crate::client::load_secret(&args.secret)?;
    let features = args.require.unwrap_or_else(|| kind.default_features());
    let expectations = Expectations::new(&name)
        .require_features(features)
        .leeway(args.leeway.as_secs());
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
                            tracing::info!(service = %log_name, exp = claims.exp, "licensed");
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
            .graceful(tether_authority::shutdown_signal())
            .run()
            .await;
        tracing::info!(service = %name, "stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
