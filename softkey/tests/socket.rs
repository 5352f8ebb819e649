//! The softkey over its socket link, as a host sees it: real Unix sockets,
//! CTAPHID framing, plug/unplug through the control socket, and the real
//! `tether-softkey` process with a state file and SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tether_softkey::ctaphid::{BROADCAST, CONT_DATA, INIT_DATA, cmd, err, frame};
use tether_softkey::socket::{SocketKey, control};
use tether_softkey::{Device, Options, Softkey, Store};

/// A host on one connection.
struct Host {
    s: UnixStream,
    cid: u32,
}

impl Host {
    fn connect(path: &Path) -> Host {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut h = Host { s, cid: BROADCAST };
        let (c, answer) = h.call(cmd::INIT, b"12345678");
        assert_eq!(c, cmd::INIT);
        assert_eq!(&answer[..8], b"12345678");
        h.cid = u32::from_be_bytes(answer[8..12].try_into().unwrap());
        h
    }

    fn send(&mut self, command: u8, payload: &[u8]) {
        for r in frame(self.cid, command, payload) {
            self.s.write_all(&r).unwrap();
        }
    }

    /// One whole answer message (skipping keepalives).
    fn recv(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        loop {
            let mut r = [0u8; 64];
            self.s.read_exact(&mut r)?;
            assert_eq!(u32::from_be_bytes(r[..4].try_into().unwrap()), self.cid);
            let command = r[4];
            let len = usize::from(u16::from_be_bytes([r[5], r[6]]));
            let mut p = r[7..7 + len.min(INIT_DATA)].to_vec();
            while p.len() < len {
                self.s.read_exact(&mut r)?;
                let take = (len - p.len()).min(CONT_DATA);
                p.extend_from_slice(&r[5..5 + take]);
            }
            if command != cmd::KEEPALIVE {
                return Ok((command, p));
            }
        }
    }

    fn call(&mut self, command: u8, payload: &[u8]) -> (u8, Vec<u8>) {
        self.send(command, payload);
        self.recv().unwrap()
    }
}

#[test]
fn ctaphid_over_the_socket_with_unplug_and_replug() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.sock");
    let key = Softkey::new(Store::in_memory(), Options::default()).unwrap();
    let server = SocketKey::spawn(Device::new(key), &path).unwrap();

    let mut h = Host::connect(&path);
    assert_eq!(h.call(cmd::PING, b"hello"), (cmd::PING, b"hello".to_vec()));
    let (c, info) = h.call(cmd::CBOR, &[0x04]);
    assert_eq!((c, info[0]), (cmd::CBOR, 0));
    let v: ciborium::Value = ciborium::from_reader(&info[1..]).unwrap();
    assert!(format!("{v:?}").contains("FIDO_2_0"));

    let status = control(&path, "status").unwrap();
    assert!(
        status.starts_with("ok plugged=true transport=socket"),
        "{status}"
    );

    // Unplug: the open connection sees EOF at once; new ones are closed.
    let answer = control(&path, "unplug").unwrap();
    assert!(answer.contains("plugged=false"), "{answer}");
    let mut buf = [0u8; 64];
    assert_eq!(h.s.read(&mut buf).unwrap(), 0);
    let mut late = UnixStream::connect(&path).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(late.read(&mut buf).unwrap_or(0), 0);

    // Plug: a power-up, the old channel is gone, a new INIT works.
    server.plug();
    let mut h2 = Host::connect(&path);
    let old = h.cid;
    h2.cid = old;
    assert_eq!(
        h2.call(cmd::PING, b"x"),
        (cmd::ERROR, vec![err::INVALID_CHANNEL])
    );
    assert!(control(&path, "fault silent").is_err());
    assert!(control(&path, "bogus").is_err());
}

#[test]
fn the_binary_serves_persists_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.sock");
    let state = dir.path().join("key.state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether-softkey"))
        .arg("--socket")
        .arg(&path)
        .arg("--state")
        .arg(&state)
        .args([
            "--algorithm",
            "es256",
            "--aaguid",
            "00112233-4455-6677-8899-aabbccddeeff",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 22];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"tether-softkey: ready ");

    let mut h = Host::connect(&path);
    let (_, info) = h.call(cmd::CBOR, &[0x04]);
    let v: ciborium::Value = ciborium::from_reader(&info[1..]).unwrap();
    let aaguid = v
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| *k == ciborium::Value::from(3))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        aaguid,
        ciborium::Value::Bytes(vec![
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff
        ])
    );
    // A reset writes the (empty) state file.
    assert_eq!(h.call(cmd::CBOR, &[0x07]), (cmd::CBOR, vec![0]));
    assert!(state.exists());

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!path.exists(), "the socket is removed on exit");

    // Bad flags are refused with a clear message.
    let out = Command::new(env!("CARGO_BIN_EXE_tether-softkey"))
        .arg("--socket")
        .arg(&path)
        .args(["--aaguid", "xyz"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 hex digits"));
}
