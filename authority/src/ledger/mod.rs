//! The usage ledger's writer (issue 18; `docs/formats.md`, "Usage ledger").
//!
//! Records go to `STATE_DIR/ledger/segment-NNNNNNNN.tlg`, append-only,
//! each chained to the one before by hash ([`tether_keys::ledger`]). One
//! thread (`tether-ledger`) owns the files and commits in groups: whatever
//! was appended while it wrote and synced the last batch goes out in the
//! next write and the next `fdatasync`. Under load (the last commit covered
//! more than one request) commits start at most every [`COMMIT_INTERVAL`],
//! so one `fdatasync` and one wake cover many tokens; a lone request is
//! committed at once. Requests wait on a `watch` of the writer's progress
//! (durable sequence, failed, stopped): one wake per commit, no lock after.
//!
//! **Durability rule.** A record is durable (written and `fdatasync`ed)
//! before what it describes takes effect: `GET /token` sends a token only
//! after the count that includes it is durable ([`Ledger::durable`]); a
//! certificate's record is durable before its session issues anything;
//! the head a certificate commits to is durable before the dongle is asked.
//! Other records (refusals, lease and dongle events) are durable within one
//! group commit, normally a few milliseconds. A SIGKILL therefore loses no
//! record that was promised.
//!
//! **Aggregation.** Tokens are counted per service per minute (one
//! [`TokenMinute`] record per service and minute, with the refusals by
//! code and the instances holding a lease at the minute's close): a record
//! per token would cost ~80 bytes a token, ~230 MB a day at 10 services x
//! 100 instances refreshing every 30 s, against 1.64 MB (the `token_http`
//! bench). The counts of
//! the open minute are made durable in `minute.pending` (cumulative frames,
//! same format, not chained) at every group commit, and turned into chained
//! records when the minute closes or at the next start after a crash. That
//! file has two fixed slots written in turn, in place: it never grows, so
//! the `fdatasync` each token waits for commits no metadata, and a torn
//! write leaves the snapshot before it whole in the other slot.
//!
//! **Crash repair.** At start the last segment is read frame by frame; a
//! torn or damaged tail is moved aside to `torn-SEQ-TIME.bin` (never kept in
//! the chain, never silently dropped) and a `repaired` record says so.
//!
//! **Rotation.** A segment is closed once it holds `segment_bytes` or more;
//! a batch is never split, and the chain runs on across segments.
//!
//! **Full disk, unwritable directory.** At start: tetherd does not start
//! (fail closed). While running: the batch is kept in memory and retried
//! every second (the open minute's counts are written in place, so it is
//! a record to append that first meets a full disk); meanwhile `GET
//! /token` is refused (`internal`, "the usage ledger cannot be written")
//! and the error is logged, so no token goes out that the ledger does not
//! hold. Nothing already written is touched:
//! a partly written batch is cut back to the last whole frame.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tether_keys::delegation::LedgerHead;
use tether_keys::ledger::{Event, Frame, Record, TokenMinute, read_frame};
use tether_keys::{Certificate, TokenSigner, UnixTime};

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8] = b"tether/ledger-segment/v1\0";
/// Default segment size bound, in bytes (`--ledger-segment-size`).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The open minute's counts.
const PENDING_FILE: &str = "minute.pending";
/// Size of each of the two snapshot slots of `minute.pending`, in bytes.
pub const SLOT_BYTES: u64 = 128 * 1024;
/// Bytes before a slot's frames: generation u64, length u32, check [u8; 8].
const SLOT_HEADER: usize = 20;
/// How long the writer waits before trying a failed write again.
const RETRY: Duration = Duration::from_secs(1);
/// Under load (the last group commit covered more than one request), the
/// least time from the start of one group commit to the start of the next:
/// the writer lets requests gather for up to this long, so one `fdatasync`
/// (and one wake of the waiting requests) covers many tokens instead of two
/// or three. A lone request is committed at once.
pub const COMMIT_INTERVAL: Duration = Duration::from_micros(500);

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A file of the ledger could not be read or written.
    #[error("usage ledger {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The writer cannot write now (full disk, read-only directory): no
    /// token may go out until it can.
    #[error("the usage ledger cannot be written: {0}")]
    Unwritable(String),
    /// The ledger was closed (clean shutdown).
    #[error("the usage ledger is closed")]
    Closed,
}

fn io(path: &Path, source: std::io::Error) -> LedgerError {
    LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Default)]
struct Counts {
    issued: u32,
    refused: BTreeMap<String, u32>,
}

#[derive(Debug, Default)]
struct Shared {
    head: LedgerHead,
    /// Frames appended and not yet written.
    pending: Vec<u8>,
    /// Bumped by every change that must reach the disk.
    requested: u64,
    /// The last `requested` value known durable.
    durable: u64,
    /// Why the last write failed (cleared by the next that succeeds).
    failed: Option<String>,
    /// Counts of open minutes, by minute then service (looked up by `&str`:
    /// no allocation per token once a service has a count in the minute).
    tallies: BTreeMap<u64, BTreeMap<String, Counts>>,
    tally_dirty: bool,
    /// Minutes closed into records since the pending file was last reset.
    tally_reset: bool,
    /// The head's sequence when the pending file was last reset: its frames
    /// carry this plus one, so a restart tells counts already closed into
    /// records (at a later sequence) from counts still open.
    tally_base: u64,
    /// Live instances by service at the last minute close (for lapses).
    live: BTreeMap<String, BTreeSet<String>>,
    /// Instances that gave their seat back since the last close.
    released: BTreeSet<(String, String)>,
    last_close: u64,
    closed: bool,
    stop: bool,
}

/// The writer's progress, as published to async waiters.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The last `requested` value known durable.
    durable: u64,
    /// The last write failed (why: `Shared::failed`).
    failed: bool,
    /// The writer has stopped.
    stopped: bool,
}

/// The ledger: append events, wait for durability, read the head.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    shared: Mutex<Shared>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes those waiting for durability.
    done: Condvar,
    /// What the writer last achieved: the async waiters ([`Ledger::durable`])
    /// wait on this alone, with no lock taken after they wake.
    durable_tx: tokio::sync::watch::Sender<Progress>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The files, owned by the writer thread.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
    segment: File,
    segment_path: PathBuf,
    index: u32,
    len: u64,
    segment_bytes: u64,
    pending: File,
    /// The generation of the last snapshot written to `minute.pending`.
    generation: u64,
}

fn segment_name(index: u32) -> String {
    format!("segment-{index:08}.tlg")
}

/// The segment files of `dir`, in order.
///
/// # Errors
///
/// When the directory cannot be read.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, LedgerError> {
    let mut out: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("segment-")
            .and_then(|n| n.strip_suffix(".tlg"))
            .and_then(|n| n.parse().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Whole records with their hashes.
    pub records: Vec<(Record, tether_keys::merkle::Hash)>,
    /// Byte offset after the last whole record.
    pub good_len: u64,
    /// Bytes after it that are not a whole record (a torn tail).
    pub torn: u64,
}

/// Reads one segment's records, stopping at the first frame that is torn or bad.
///
/// # Errors
///
/// When the file cannot be read or does not start with [`SEGMENT_MAGIC`].
pub fn scan(path: &Path) -> Result<Scan, LedgerError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io(path, e))?;
    if bytes.len() < SEGMENT_MAGIC.len() {
        // Torn while being created: only its magic is missing.
        return Ok(Scan {
            records: Vec::new(),
            good_len: 0,
            torn: bytes.len() as u64,
        });
    }
    if !bytes.starts_with(SEGMENT_MAGIC) {
        return Err(io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a ledger segment (wrong magic)",
            ),
        ));
    }
    let mut at = SEGMENT_MAGIC.len();
    let mut out = Scan::default();
    while at < bytes.len() {
        match read_frame(&bytes[at..]) {
            Frame::Whole(rec, hash, used) => {
                out.records.push((*rec, hash));
                at += used;
            }
            Frame::NeedMore | Frame::Bad(_) => break,
        }
    }
    out.good_len = at as u64;
    out.torn = (bytes.len() - at) as u64;
    Ok(out)
}

/// Every record of the ledger in `dir`, in order, with the licenses they
/// name; for `tether usage export`. A torn tail (tetherd not yet restarted
/// after a crash) is left out.
///
/// # Errors
///
/// When a segment cannot be read.
pub fn read_all(dir: &Path) -> Result<Vec<(Record, tether_keys::merkle::Hash)>, LedgerError> {
    let mut out = Vec::new();
    for path in segments(dir)? {
        out.extend(scan(&path)?.records);
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

fn open_append(path: &Path) -> Result<File, LedgerError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))
}

impl Files {
    fn new_segment(dir: &Path, index: u32) -> Result<(File, PathBuf), LedgerError> {
        let path = dir.join(segment_name(index));
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        f.write_all(SEGMENT_MAGIC).map_err(|e| io(&path, e))?;
        f.sync_data().map_err(|e| io(&path, e))?;
        sync_dir(dir)?;
        Ok((f, path))
    }

    /// Writes `bytes` (whole frames) and syncs; on failure cuts the
    /// segment back to its last whole frame.
    fn append(&mut self, bytes: &[u8]) -> Result<(), LedgerError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.len >= self.segment_bytes {
            let (f, path) = Self::new_segment(&self.dir, self.index + 1)?;
            self.index += 1;
            self.segment = f;
            self.segment_path = path;
            self.len = SEGMENT_MAGIC.len() as u64;
        }
        let result = self
            .segment
            .write_all(bytes)
            .and_then(|()| self.segment.sync_data());
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Never leave half a batch behind a later whole one.
                let _ = self.segment.set_len(self.len);
                Err(io(&self.segment_path, e))
            }
        }
    }

    /// Writes a snapshot of the open minutes' counts into the slot after
    /// the last one, in place (the file never grows, so `fdatasync` has no
    /// metadata to commit: ~30% faster than an append on ext4), the other
    /// slot keeping the snapshot before it in case this one is torn.
    fn write_tallies(&mut self, frames: &[u8]) -> Result<(), LedgerError> {
        use std::os::unix::fs::FileExt as _;
        let path = self.dir.join(PENDING_FILE);
        if (SLOT_HEADER + frames.len()) as u64 > SLOT_BYTES {
            return Err(io(
                &path,
                std::io::Error::other("more open minute counts than a snapshot slot holds"),
            ));
        }
        let generation = self.generation + 1;
        let buf = slot_bytes(generation, frames);
        self.pending
            .write_all_at(&buf, (generation % 2) * SLOT_BYTES)
            .and_then(|()| self.pending.sync_data())
            .map_err(|e| io(&path, e))?;
        self.generation = generation;
        Ok(())
    }
}

fn slot_check(generation: u64, frames: &[u8]) -> [u8; 8] {
    let mut bytes = generation.to_be_bytes().to_vec();
    bytes.extend_from_slice(frames);
    let h = tether_keys::ledger::record_hash(&bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h[..8]);
    out
}

fn slot_bytes(generation: u64, frames: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SLOT_HEADER + frames.len());
    buf.extend_from_slice(&generation.to_be_bytes());
    buf.extend_from_slice(&(frames.len() as u32).to_be_bytes());
    buf.extend_from_slice(&slot_check(generation, frames));
    buf.extend_from_slice(frames);
    buf
}

/// The newest whole snapshot of [`PENDING_FILE`]: its generation and frames.
fn read_slots(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut best: Option<(u64, &[u8])> = None;
    for slot in 0..2usize {
        let start = slot * SLOT_BYTES as usize;
        let Some(head) = bytes.get(start..start + SLOT_HEADER) else {
            continue;
        };
        let generation = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(head[8..12].try_into().unwrap_or_default()) as usize;
        let Some(frames) = bytes.get(start + SLOT_HEADER..start + SLOT_HEADER + len) else {
            continue;
        };
        if generation == 0 || head[12..20] != slot_check(generation, frames) {
            continue;
        }
        if best.is_none_or(|(g, _)| generation > g) {
            best = Some((generation, frames));
        }
    }
    best
}

fn tally_frames(
    tallies: &BTreeMap<u64, BTreeMap<String, Counts>>,
    sequence: u64,
    time: UnixTime,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (minute, service, c) in tallies
        .iter()
        .flat_map(|(m, per)| per.iter().map(move |(s, c)| (m, s, c)))
    {
        let rec = Record {
            sequence,
            time,
            prev: [0; 32],
            event: Event::TokenMinute(TokenMinute {
                service: service.clone(),
                minute: *minute,
                issued: c.issued,
                instances: 0,
                refused: c.refused.clone(),
            }),
        };
        out.extend_from_slice(&rec.frame().0);
    }
    out
}

impl Ledger {
    /// Opens (or starts) the ledger in `dir`: repairs a torn tail, turns the
    /// counts a crash left in `minute.pending` into records, and starts the
    /// writer thread. The caller then appends a [`Event::Start`].
    ///
    /// # Errors
    ///
    /// [`LedgerError::Io`] when the directory or a file cannot be created,
    /// read or written (tetherd then does not start).
    pub fn open(dir: &Path, segment_bytes: u64, now: UnixTime) -> Result<Arc<Ledger>, LedgerError> {
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(dir, e))?;
        }
        let mut head = LedgerHead::default();
        let mut repaired = None;
        // The latest record of each (minute, service) closed, by sequence.
        let mut minutes_seen: BTreeMap<(u64, String), u64> = BTreeMap::new();
        let paths = segments(dir)?;
        let (segment, segment_path, index, len) = match paths.last() {
            None => {
                let (f, p) = Files::new_segment(dir, 1)?;
                (f, p, 1, SEGMENT_MAGIC.len() as u64)
            }
            Some(last) => {
                let found = scan(last)?;
                if found.torn > 0 {
                    let seq = found.records.last().map_or(0, |(r, _)| r.sequence) + 1;
                    repaired = Some(keep_aside(dir, last, found.good_len, seq, now)?);
                }
                let records = if found.records.is_empty() && paths.len() > 1 {
                    scan(&paths[paths.len() - 2])?.records
                } else {
                    found.records
                };
                if let Some((r, h)) = records.last() {
                    head = LedgerHead {
                        sequence: r.sequence,
                        hash: *h,
                    };
                }
                for (r, _) in &records {
                    if let Event::TokenMinute(m) = &r.event {
                        minutes_seen.insert((m.minute, m.service.clone()), r.sequence);
                    }
                }
                let mut f = open_append(last)?;
                let mut len = found.good_len;
                if len == 0 {
                    f.write_all(SEGMENT_MAGIC).map_err(|e| io(last, e))?;
                    f.sync_data().map_err(|e| io(last, e))?;
                    len = SEGMENT_MAGIC.len() as u64;
                }
                let index = last
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("segment-"))
                    .and_then(|n| n.strip_suffix(".tlg"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                (f, last.clone(), index, len)
            }
        };
        // The open minute a crash left: the last count of each (minute, service).
        let pending_path = dir.join(PENDING_FILE);
        let mut leftover: BTreeMap<(u64, String), (u64, TokenMinute)> = BTreeMap::new();
        let mut generation = 0;
        if let Ok(bytes) = std::fs::read(&pending_path)
            && let Some((g, frames)) = read_slots(&bytes)
        {
            generation = g;
            let mut at = 0;
            while let Frame::Whole(rec, _, used) = read_frame(&frames[at..]) {
                if let Event::TokenMinute(m) = &rec.event {
                    leftover.insert((m.minute, m.service.clone()), (rec.sequence, m.clone()));
                }
                at += used;
            }
        }
        // Two slots, allocated and zeroed once, written in place from here on.
        let pending = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&pending_path)
            .map_err(|e| io(&pending_path, e))?;
        let ledger = Arc::new(Ledger {
            dir: dir.to_path_buf(),
            shared: Mutex::new(Shared {
                head,
                last_close: now.secs() / 60,
                ..Shared::default()
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            durable_tx: tokio::sync::watch::channel(Progress::default()).0,
            writer: Mutex::new(None),
        });
        let mut files = Files {
            dir: dir.to_path_buf(),
            segment,
            segment_path,
            index,
            len,
            segment_bytes: segment_bytes.max(1024),
            pending,
            generation,
        };
        {
            let mut s = ledger.shared.lock();
            if let Some(event) = repaired {
                append_locked(&mut s, now, event);
            }
            for (key, (base, m)) in leftover {
                // Closed into a record after the frame's reset: already counted.
                if minutes_seen.get(&key).is_none_or(|seq| *seq < base) {
                    append_locked(&mut s, now, Event::TokenMinute(m));
                }
            }
            s.tally_base = s.head.sequence;
            let bytes = std::mem::take(&mut s.pending);
            files.append(&bytes)?;
            // Both slots emptied: what was left is in the chain now.
            let zeros = vec![0u8; 2 * SLOT_BYTES as usize];
            {
                use std::os::unix::fs::FileExt as _;
                files
                    .pending
                    .write_all_at(&zeros, 0)
                    .and_then(|()| files.pending.set_len(2 * SLOT_BYTES))
                    .map_err(|e| io(&pending_path, e))?;
            }
            files.write_tallies(&[])?;
            files.write_tallies(&[])?;
        }
        let writer = {
            let ledger = ledger.clone();
            std::thread::Builder::new()
                .name("tether-ledger".into())
                .spawn(move || ledger.write_loop(files))
                .map_err(|e| io(dir, e))?
        };
        *ledger.writer.lock() = Some(writer);
        Ok(ledger)
    }

    /// The ledger's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_loop(&self, files: Files) {
        self.write_batches(files);
        self.durable_tx.send_modify(|p| p.stopped = true);
    }

    fn write_batches(&self, mut files: Files) {
        // When the last group commit started, if it covered more than one request.
        let mut busy_since: Option<std::time::Instant> = None;
        loop {
            {
                let mut s = self.shared.lock();
                while !s.stop && s.pending.is_empty() && !s.tally_dirty && s.durable == s.requested
                {
                    self.work.wait(&mut s);
                }
                if s.stop && s.pending.is_empty() && !s.tally_dirty {
                    return;
                }
            }
            // Pacing under load: a plain sleep (not a wait on `work`), so the
            // requests arriving meanwhile do not wake the writer one by one.
            if let Some(at) = busy_since {
                let wait = COMMIT_INTERVAL.saturating_sub(at.elapsed());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
            }
            let started = std::time::Instant::now();
            let (bytes, tallies, reset, upto, covered) = {
                let mut s = self.shared.lock();
                let tallies = (s.tally_dirty || s.tally_reset)
                    .then(|| tally_frames(&s.tallies, s.tally_base + 1, UnixTime::now()));
                let reset = s.tally_reset;
                s.tally_dirty = false;
                s.tally_reset = false;
                let covered = s.requested - s.durable;
                (
                    std::mem::take(&mut s.pending),
                    tallies,
                    reset,
                    s.requested,
                    covered,
                )
            };
            busy_since = (covered > 1).then_some(started);
            let mut result = files.append(&bytes);
            if result.is_ok()
                && let Some(frames) = &tallies
            {
                result = files.write_tallies(frames);
            }
            let mut s = self.shared.lock();
            match result {
                Ok(()) => {
                    if s.failed.take().is_some() {
                        tracing::warn!("usage ledger writable again; issuing tokens");
                    }
                    s.durable = s.durable.max(upto);
                    self.durable_tx.send_replace(Progress {
                        durable: s.durable,
                        failed: false,
                        stopped: false,
                    });
                    self.done.notify_all();
                }
                Err(e) => {
                    // Keep everything for the next try, in order.
                    let mut kept = bytes;
                    kept.extend_from_slice(&s.pending);
                    s.pending = kept;
                    s.tally_dirty |= tallies.is_some();
                    s.tally_reset |= reset;
                    if s.failed.is_none() {
                        tracing::error!(error = %e, "usage ledger cannot be written: tokens are refused until it can");
                    }
                    s.failed = Some(e.to_string());
                    self.durable_tx.send_replace(Progress {
                        durable: s.durable,
                        failed: true,
                        stopped: false,
                    });
                    self.done.notify_all();
                    if s.stop {
                        return;
                    }
                    self.work.wait_for(&mut s, RETRY);
                }
            }
        }
    }

    /// Appends `event` (durable within one group commit).
    pub fn append(&self, event: Event) {
        let mut s = self.shared.lock();
        if s.closed {
            return;
        }
        append_locked(&mut s, UnixTime::now(), event);
        self.work.notify_one();
    }

    /// Counts a token issued to `service` in the current minute.
    pub fn token(&self, service: &str, now: UnixTime) {
        self.tally(service, now, None);
    }

    /// Counts a refusal of `service` (`-` when unknown) with `code`.
    pub fn refusal(&self, service: &str, code: &str, now: UnixTime) {
        self.tally(service, now, Some(code));
    }

    /// Takes back a token counted by [`Ledger::token`] that was never sent
    /// (its count could not be made durable): the count the writer keeps
    /// trying to write is the tokens that went out.
    pub fn uncount(&self, service: &str, now: UnixTime) {
        let mut s = self.shared.lock();
        let minute = now.secs() / 60 * 60;
        // The token was counted in this minute or the one before.
        for m in [minute, minute.saturating_sub(60)] {
            if let Some(c) = s.tallies.get_mut(&m).and_then(|per| per.get_mut(service))
                && c.issued > 0
            {
                c.issued -= 1;
                s.tally_dirty = true;
                return;
            }
        }
    }

    fn tally(&self, service: &str, now: UnixTime, refused: Option<&str>) {
        let mut s = self.shared.lock();
        if s.closed {
            return;
        }
        let minute = now.secs() / 60 * 60;
        let per = s.tallies.entry(minute).or_default();
        // Allocates only for the first count of a service in a minute.
        if !per.contains_key(service) {
            per.insert(service.to_string(), Counts::default());
        }
        if let Some(c) = per.get_mut(service) {
            match refused {
                None => c.issued = c.issued.saturating_add(1),
                Some(code) => {
                    if let Some(n) = c.refused.get_mut(code) {
                        *n = n.saturating_add(1);
                    } else {
                        c.refused.insert(code.to_string(), 1);
                    }
                }
            }
        }
        s.tally_dirty = true;
        s.requested += 1;
        self.work.notify_one();
    }

    /// Whether the last write succeeded (`Err` names why not).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unwritable`] while writes fail.
    pub fn healthy(&self) -> Result<(), LedgerError> {
        match &self.shared.lock().failed {
            Some(why) => Err(LedgerError::Unwritable(why.clone())),
            None => Ok(()),
        }
    }

    /// Waits until everything appended or counted so far is durable.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unwritable`] when the write failed.
    pub async fn durable(&self) -> Result<(), LedgerError> {
        let target = self.shared.lock().requested;
        // One receiver, woken by each group commit; the progress it carries
        // is enough to decide, so no lock is taken again after a wake.
        let mut rx = self.durable_tx.subscribe();
        let reached = rx
            .wait_for(|p| p.durable >= target || p.failed || p.stopped)
            .await
            .map(|p| *p);
        match reached {
            Ok(p) if p.durable >= target => Ok(()),
            Ok(p) if p.failed => Err(LedgerError::Unwritable(
                self.shared
                    .lock()
                    .failed
                    .clone()
                    .unwrap_or_else(|| "the last write failed".into()),
            )),
            _ => Err(LedgerError::Closed),
        }
    }

    /// [`Ledger::durable`] for a thread that may block; returns the head
    /// that is then durable.
    ///
    /// # Errors
    ///
    /// As [`Ledger::durable`].
    pub fn sync(&self) -> Result<LedgerHead, LedgerError> {
        let mut s = self.shared.lock();
        s.requested += 1;
        let target = s.requested;
        self.work.notify_one();
        loop {
            if s.durable >= target {
                return Ok(s.head);
            }
            if let Some(why) = &s.failed {
                return Err(LedgerError::Unwritable(why.clone()));
            }
            if s.stop {
                return Err(LedgerError::Closed);
            }
            self.done.wait_for(&mut s, RETRY);
        }
    }

    /// The head, as appended so far (durable or not).
    pub fn head(&self) -> LedgerHead {
        self.shared.lock().head
    }

    /// Writes a certificate the dongle signed, then a checkpoint of the head
    /// that includes it, signed by the session key it certifies; durable
    /// when this returns.
    ///
    /// # Errors
    ///
    /// As [`Ledger::sync`]: the session must not start then.
    pub fn certificate(&self, cert: &Certificate, signer: &TokenSigner) -> Result<(), LedgerError> {
        {
            let mut s = self.shared.lock();
            if s.closed {
                return Err(LedgerError::Closed);
            }
            append_locked(
                &mut s,
                UnixTime::now(),
                Event::Certificate {
                    cert: cert.encoded().to_vec(),
                },
            );
            let head = s.head;
            append_locked(
                &mut s,
                UnixTime::now(),
                Event::Checkpoint(Box::new(signer.sign_checkpoint(&head))),
            );
        }
        self.sync().map(|_| ())
    }

    /// Notes that `instance` gave its seat back (no lapse record then).
    pub fn released(&self, service: &str, instance: &str) {
        self.shared
            .lock()
            .released
            .insert((service.to_string(), instance.to_string()));
        self.append(Event::LeaseReleased {
            service: service.into(),
            instance: instance.into(),
        });
    }

    /// Closes every minute before `now`'s into [`TokenMinute`] records, with
    /// `live` (instances holding a lease, by service) as the instance count,
    /// and records the leases that lapsed since the last close. Cheap when
    /// the minute has not changed; `force` closes the current minute too
    /// (at shutdown).
    pub fn close_minutes(
        &self,
        now: UnixTime,
        live: impl FnOnce() -> BTreeMap<String, BTreeSet<String>>,
        force: bool,
    ) {
        let this = now.secs() / 60;
        let s = self.shared.lock();
        if s.closed || (!force && this <= s.last_close) {
            return;
        }
        drop(s);
        let live = live();
        let mut s = self.shared.lock();
        let horizon = if force { u64::MAX } else { this * 60 };
        // Every minute before the horizon (all of them when forced).
        let open = s.tallies.split_off(&horizon);
        let closing = std::mem::replace(&mut s.tallies, open);
        let mut done_services = BTreeSet::new();
        for (minute, per) in closing {
            for (service, c) in per {
                let instances = live.get(&service).map_or(0, |l| l.len() as u32);
                done_services.insert(service.clone());
                append_locked(
                    &mut s,
                    now,
                    Event::TokenMinute(TokenMinute {
                        service,
                        minute,
                        issued: c.issued,
                        instances,
                        refused: c.refused,
                    }),
                );
            }
        }
        // Services with live instances and no token this minute still count.
        let last_minute = if force { this * 60 } else { this * 60 - 60 };
        for (service, set) in &live {
            if !set.is_empty() && !done_services.contains(service) {
                append_locked(
                    &mut s,
                    now,
                    Event::TokenMinute(TokenMinute {
                        service: service.clone(),
                        minute: last_minute,
                        issued: 0,
                        instances: set.len() as u32,
                        refused: BTreeMap::new(),
                    }),
                );
            }
        }
        let before = std::mem::take(&mut s.live);
        let released = std::mem::take(&mut s.released);
        for (service, set) in &before {
            for instance in set {
                let gone = !live.get(service).is_some_and(|l| l.contains(instance));
                if gone && !released.contains(&(service.clone(), instance.clone())) {
                    append_locked(
                        &mut s,
                        now,
                        Event::LeaseLapsed {
                            service: service.clone(),
                            instance: instance.clone(),
                        },
                    );
                }
            }
        }
        s.live = live;
        s.last_close = this;
        s.tally_reset = true;
        s.tally_base = s.head.sequence;
        self.work.notify_one();
    }

    /// Clean shutdown: closes the open minute, appends [`Event::Stop`] and
    /// a checkpoint signed by `signer` (the session key, when one is held),
    /// waits for it all to be durable, and stops the writer.
    pub fn shutdown(
        &self,
        live: impl FnOnce() -> BTreeMap<String, BTreeSet<String>>,
        signer: Option<&TokenSigner>,
    ) {
        self.close_minutes(UnixTime::now(), live, true);
        {
            let mut s = self.shared.lock();
            if s.closed {
                return;
            }
            append_locked(&mut s, UnixTime::now(), Event::Stop);
            if let Some(signer) = signer {
                let head = s.head;
                append_locked(
                    &mut s,
                    UnixTime::now(),
                    Event::Checkpoint(Box::new(signer.sign_checkpoint(&head))),
                );
            }
            s.closed = true;
        }
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "the usage ledger's last records could not be written");
        }
        self.shared.lock().stop = true;
        self.work.notify_all();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

fn append_locked(s: &mut Shared, now: UnixTime, event: Event) {
    let rec = Record {
        sequence: s.head.sequence + 1,
        time: now,
        prev: s.head.hash,
        event,
    };
    let (frame, hash) = rec.frame();
    s.pending.extend_from_slice(&frame);
    s.head = LedgerHead {
        sequence: rec.sequence,
        hash,
    };
    s.requested += 1;
}

/// Moves a torn tail aside and cuts the segment back to its last whole frame.
fn keep_aside(
    dir: &Path,
    segment: &Path,
    good_len: u64,
    seq: u64,
    now: UnixTime,
) -> Result<Event, LedgerError> {
    let bytes = std::fs::read(segment).map_err(|e| io(segment, e))?;
    let torn = &bytes[(good_len as usize).min(bytes.len())..];
    let name = format!("torn-{seq}-{}.bin", now.secs());
    let aside = dir.join(&name);
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&aside)
            .map_err(|e| io(&aside, e))?;
        f.write_all(torn).map_err(|e| io(&aside, e))?;
        f.sync_all().map_err(|e| io(&aside, e))?;
    }
    let f = OpenOptions::new()
        .write(true)
        .open(segment)
        .map_err(|e| io(segment, e))?;
    f.set_len(good_len).map_err(|e| io(segment, e))?;
    f.sync_all().map_err(|e| io(segment, e))?;
    sync_dir(dir)?;
    tracing::warn!(
        bytes = torn.len(),
        kept_as = %aside.display(),
        "usage ledger: a torn last record was cut and kept aside"
    );
    Ok(Event::Repaired {
        discarded: torn.len() as u64,
        kept_as: name,
    })
}

/// Instances holding a live lease, by service.
pub fn live_instances(
    auth: &crate::Authority,
    now: UnixTime,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in auth.leases.rows(now) {
        out.entry(row.service).or_default().insert(row.instance);
    }
    out
}

/// Closes the minutes before now (the watchdog calls this every turn; cheap
/// until the minute changes).
pub fn tick(auth: &crate::Authority) {
    if let Some(l) = auth.ledger.get() {
        let now = auth.now();
        l.close_minutes(now, || live_instances(auth, now), false);
    }
}

/// Clean shutdown of `auth`'s ledger: the open minute, the stop record, a
/// checkpoint signed by the session key when one is held.
pub fn shutdown(auth: &crate::Authority) {
    if let Some(l) = auth.ledger.get() {
        let now = auth.now();
        let session = auth.session();
        l.shutdown(
            || live_instances(auth, now),
            session.as_ref().map(|s| s.signer()),
        );
    }
}

/// The authority's ledger, once attached ([`crate::load`] opens it);
/// every call is a no-op before (unit tests, benches without one).
#[derive(Debug, Default)]
pub struct Slot(OnceLock<Arc<Ledger>>);

impl Slot {
    /// Attaches `ledger` (once; a second call is ignored).
    pub fn attach(&self, ledger: Arc<Ledger>) {
        let _ = self.0.set(ledger);
    }

    /// The ledger, when attached.
    pub fn get(&self) -> Option<&Arc<Ledger>> {
        self.0.get()
    }

    /// [`Ledger::append`].
    pub fn append(&self, event: Event) {
        if let Some(l) = self.get() {
            l.append(event);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn live() -> BTreeMap<String, BTreeSet<String>> {
        BTreeMap::new()
    }

    #[test]
    fn records_chain_rotate_and_survive_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let now = UnixTime::now();
        let ledger = Ledger::open(&path, 1024, now).unwrap();
        for i in 0..100 {
            ledger.append(Event::DongleAbsent {
                reason: format!("reason {i}"),
            });
        }
        ledger.token("backend", now);
        let head = ledger.sync().unwrap();
        assert_eq!(head.sequence, 100);
        ledger.shutdown(live, None);
        let segs = segments(&path).unwrap();
        assert!(segs.len() > 1, "{segs:?}");
        let all = read_all(&path).unwrap();
        assert_eq!(all.len(), 102);
        for w in all.windows(2) {
            assert_eq!(w[1].0.prev, w[0].1);
            assert_eq!(w[1].0.sequence, w[0].0.sequence + 1);
        }
        // A torn tail: half a frame at the end of the last segment.
        let last = segs.last().unwrap();
        let mut f = OpenOptions::new().append(true).open(last).unwrap();
        f.write_all(&[0, 0, 0, 40, 1, 2, 3]).unwrap();
        drop(f);
        let ledger = Ledger::open(&path, 1024, now).unwrap();
        ledger.sync().unwrap();
        ledger.shutdown(live, None);
        let all = read_all(&path).unwrap();
        let repaired = all.iter().find_map(|(r, _)| match &r.event {
            Event::Repaired { discarded, kept_as } => Some((*discarded, kept_as.clone())),
            _ => None,
        });
        let (discarded, kept_as) = repaired.unwrap();
        assert_eq!(discarded, 7);
        assert_eq!(
            std::fs::read(path.join(kept_as)).unwrap(),
            [0, 0, 0, 40, 1, 2, 3]
        );
        for w in all.windows(2) {
            assert_eq!(w[1].0.prev, w[0].1);
        }
    }

    #[test]
    fn the_newest_whole_snapshot_slot_wins() {
        let mut file = vec![0u8; 2 * SLOT_BYTES as usize];
        assert!(read_slots(&file).is_none());
        let (old, new) = (b"older".as_slice(), b"newer".as_slice());
        let s1 = slot_bytes(1, old);
        file[SLOT_BYTES as usize..SLOT_BYTES as usize + s1.len()].copy_from_slice(&s1);
        let s2 = slot_bytes(2, new);
        file[..s2.len()].copy_from_slice(&s2);
        assert_eq!(read_slots(&file), Some((2, new)));
        // The newest torn (a power cut mid-write): the one before it holds.
        file[SLOT_HEADER + 2] ^= 1;
        assert_eq!(read_slots(&file), Some((1, old)));
        // A length past the slot is no snapshot.
        file[SLOT_BYTES as usize + 8..SLOT_BYTES as usize + 12]
            .copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_slots(&file).is_none());
    }

    #[test]
    fn counts_of_an_open_minute_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let now = UnixTime::now();
        let ledger = Ledger::open(&path, DEFAULT_SEGMENT_BYTES, now).unwrap();
        for _ in 0..7 {
            ledger.token("backend", now);
        }
        ledger.refusal("backend", "rate_limited", now);
        ledger.sync().unwrap();
        // "Crash": the writer is left running, the files are read anew.
        std::mem::forget(ledger);
        let again = Ledger::open(&path, DEFAULT_SEGMENT_BYTES, now).unwrap();
        again.sync().unwrap();
        let all = read_all(&path).unwrap();
        let minute = all
            .iter()
            .find_map(|(r, _)| match &r.event {
                Event::TokenMinute(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(minute.issued, 7);
        assert_eq!(minute.refused["rate_limited"], 1);
        // A second crash in the same minute: its counts are not the first's.
        for _ in 0..2 {
            again.token("backend", now);
        }
        again.sync().unwrap();
        std::mem::forget(again);
        let third = Ledger::open(&path, DEFAULT_SEGMENT_BYTES, now).unwrap();
        third.sync().unwrap();
        let issued: Vec<u32> = read_all(&path)
            .unwrap()
            .iter()
            .filter_map(|(r, _)| match &r.event {
                Event::TokenMinute(m) => Some(m.issued),
                _ => None,
            })
            .collect();
        assert_eq!(issued, [7, 2]);
    }
}
