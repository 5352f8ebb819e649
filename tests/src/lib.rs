//! Helpers for the end-to-end tests: provision a site, start the real
//! `tether dongle emulate` and `tetherd` processes, talk HTTP to them.
//!
//! Binaries are taken from the same target directory as the test executable
//! (`cargo test --workspace` builds them first; `scripts/test` builds them
//! explicitly).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub use tether_tools::http;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tether_keys::keyfile::{self, Overwrite, SERIAL_HEADER};
use tether_keys::{CredentialFile, Dongle, LicenseId, LicenseTerms, SecretKey, Vendor};

/// Path of a workspace binary next to the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// A provisioned site in a temporary directory.
#[derive(Debug)]
pub struct Site {
    pub dir: tempfile::TempDir,
    pub serial: String,
    pub vendor_pub: PathBuf,
    /// The vendor private key (for tests that issue license updates), in a
    /// directory of its own: the vendor's machine, not the site's disk.
    pub vendor_key: PathBuf,
    pub vendor_dir: tempfile::TempDir,
    pub license: PathBuf,
    pub credentials: PathBuf,
    pub identity: PathBuf,
    pub secrets: Vec<(String, String)>,
    /// `TETHER_LOG` for every process this site starts (default `info`).
    pub log: &'static str,
}

impl Site {
    /// Vendor key, dongle identity, a license for `backend` and `muxer`
    /// (feature `mux`), and credentials for `backend`, `muxer` and `reports`
    /// (the last one not licensed).
    pub fn new() -> Site {
        Self::with_license(|_| {})
    }

    pub fn with_license(edit: impl FnOnce(&mut LicenseTerms)) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let vendor = SecretKey::<Vendor>::generate();
        let dongle = SecretKey::<Dongle>::generate();
        let serial = format!("TD-E2E-{}", std::process::id());
        let vendor_pub = root.join("vendor.pub");
        keyfile::write_public_key(&vendor_pub, &vendor.public(), &[], Overwrite::Never).unwrap();
        let vendor_dir = tempfile::tempdir().unwrap();
        let vendor_key = vendor_dir.path().join("vendor.key");
        keyfile::write_secret_key(&vendor_key, &vendor, &[], Overwrite::Never).unwrap();
        let identity = root.join("dongle");
        std::fs::create_dir_all(&identity).unwrap();
        keyfile::write_secret_key(
            &identity.join("dongle.key"),
            &dongle,
            &[(SERIAL_HEADER, &serial)],
            Overwrite::Never,
        )
        .unwrap();
        let now = tether_keys::UnixTime::now();
        let mut terms = LicenseTerms {
            id: LicenseId::generate(),
            customer: "E2E Test".into(),
            dongle_serial: serial.clone(),
            dongle: dongle.public().into(),
            issued_at: now,
            not_before: now - std::time::Duration::from_secs(60),
            not_after: now + std::time::Duration::from_secs(86_400),
            max_token_ttl: 300,
            features: vec!["mux".into()],
            services: vec!["backend".into(), "muxer".into()],
            seats: Default::default(),
            sequence: 1,
            grace: 0,
            nonce_period: 0,
        };
        edit(&mut terms);
        let license_path = root.join("license.tether");
        let license = terms.sign(&vendor).unwrap();
        keyfile::write_file(
            &license_path,
            keyfile::license_pem(&license).as_bytes(),
            0o644,
            Overwrite::Never,
        )
        .unwrap();
        let credentials = root.join("credentials");
        let mut creds = CredentialFile::default();
        let mut secrets = Vec::new();
        for name in ["backend", "muxer", "reports"] {
            let s = creds.enroll(name, false).unwrap();
            secrets.push((name.to_string(), s.expose().to_string()));
        }
        creds.save(&credentials).unwrap();
        Site {
            dir,
            serial,
            vendor_pub,
            vendor_key,
            vendor_dir,
            license: license_path,
            credentials,
            identity,
            secrets,
            log: "info",
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn secret(&self, service: &str) -> &str {
        &self.secrets.iter().find(|(n, _)| n == service).unwrap().1
    }

    pub fn dongle_socket(&self) -> PathBuf {
        self.path("dongle.sock")
    }

    /// Starts `tether dongle emulate` on this site's identity.
    pub fn start_emulator(&self, extra: &[&str]) -> Proc {
        let sock = self.dongle_socket();
        let mut cmd = Command::new(bin("tether"));
        cmd.args(["dongle", "emulate", "--identity"])
            .arg(&self.identity)
            .arg("--socket")
            .arg(&sock)
            .args(extra)
            .env("TETHER_LOG", self.log);
        let proc = Proc::spawn(cmd, "emulator");
        wait_until(Duration::from_secs(10), || sock.exists());
        proc
    }

    /// Runs `tether dongle plug|unplug|fault ...` against this site's emulator.
    pub fn dongle(&self, args: &[&str]) {
        let out = Command::new(bin("tether"))
            .arg("dongle")
            .arg(args[0])
            .arg("--socket")
            .arg(self.dongle_socket())
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tether dongle {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `tetherd` on an ephemeral loopback port; returns it and its base URL.
    pub fn start_tetherd(&self, extra: &[&str]) -> (Proc, String) {
        self.start_tetherd_on(&free_port().to_string(), extra)
    }

    /// Starts `tetherd` on a given loopback port.
    pub fn start_tetherd_on(&self, port: &str, extra: &[&str]) -> (Proc, String) {
        self.start_tetherd_under(&[], port, extra)
    }

    /// Starts `tetherd` under a wrapper command (e.g. `faketime -f +1h`).
    pub fn start_tetherd_under(
        &self,
        wrapper: &[&str],
        port: &str,
        extra: &[&str],
    ) -> (Proc, String) {
        let proc = Proc::spawn(self.tetherd_command(wrapper, port, extra), "tetherd");
        let url = format!("http://127.0.0.1:{port}");
        wait_until(Duration::from_secs(10), || {
            http::get(&url, "/healthz", None).is_ok()
        });
        (proc, url)
    }

    /// The `tetherd` command [`Site::start_tetherd_under`] runs, for tests
    /// that expect it not to start.
    pub fn tetherd_command(&self, wrapper: &[&str], port: &str, extra: &[&str]) -> Command {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin("tetherd")),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("tetherd"));
                c
            }
        };
        cmd.arg("--license")
            .arg(&self.license)
            .arg("--vendor-pub")
            .arg(&self.vendor_pub)
            .arg("--credentials")
            .arg(&self.credentials)
            .arg("--dongle")
            .arg(format!("socket:{}", self.dongle_socket().display()))
            .arg("--state-dir")
            .arg(self.path("state"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("TETHER_CONFIG", "/dev/null")
            // Many tetherds run at once here: no admin page on its default
            // port unless a test asks (`--admin-listen` wins over the env).
            .env("TETHER_ADMIN_LISTEN", "off")
            .env("TETHER_LOG", self.log);
        cmd
    }
}

impl Site {
    /// Writes a service's secret to a 0600 file and returns its path.
    pub fn secret_file(&self, service: &str) -> PathBuf {
        let path = self.path(&format!("{service}.secret"));
        if !path.exists() {
            keyfile::write_file(
                &path,
                self.secret(service).as_bytes(),
                0o600,
                Overwrite::Never,
            )
            .unwrap();
        }
        path
    }

    /// Starts `tether backend` or `tether muxer` against `authority`; returns it and its URL.
    pub fn start_service(&self, kind: &str, authority: &str, extra: &[&str]) -> (Proc, String) {
        let port = free_port();
        let mut cmd = Command::new(bin("tether"));
        cmd.arg(kind)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--authority")
            .arg(authority)
            .arg("--vendor-pub")
            .arg(&self.vendor_pub)
            .arg("--secret-file")
            .arg(self.secret_file(kind))
            .args(extra)
            .env("TETHER_LOG", self.log);
        let proc = Proc::spawn(cmd, if kind == "muxer" { "muxer" } else { "backend" });
        let url = format!("http://127.0.0.1:{port}");
        wait_until(Duration::from_secs(10), || {
            http::get(&url, "/healthz", None).is_ok()
        });
        (proc, url)
    }
}

/// Whether a reference service does work right now (`GET /work` is 200).
pub fn works(service_url: &str) -> bool {
    http::get(service_url, "/work", None).is_ok_and(|r| r.status == 200)
}

impl Default for Site {
    fn default() -> Self {
        Self::new()
    }
}

/// A child process, killed on drop; its stderr kept in a file for diagnosis.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
    log: tempfile::NamedTempFile,
}

impl Proc {
    pub fn spawn(mut cmd: Command, name: &'static str) -> Proc {
        let log = tempfile::NamedTempFile::new().unwrap();
        if !cmd.get_envs().any(|(k, _)| k == "TETHER_LOG") {
            cmd.env("TETHER_LOG", "info");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Sends `signal` (by name, e.g. "TERM") with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {} failed", self.name);
    }

    /// Waits for exit up to `timeout`; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.log());
        }
    }
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` every 10 ms until it holds; panics after `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `GET /token` until it answers 200; returns the JSON body.
pub fn wait_for_token(url: &str, secret: &str, timeout: Duration) -> serde_json::Value {
    let mut last = None;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match http::get(url, "/token", Some(secret)) {
            Ok(r) if r.status == 200 => return r.json().unwrap(),
            other => last = Some(other),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no token within {timeout:?}; last answer: {last:?}");
}

/// The exit status of a shell command, for tests that need one (e.g. `kill`).
pub fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap()
        .success()
}

/// Reads a file path as UTF-8 text.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
