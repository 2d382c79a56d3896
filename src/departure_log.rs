//! Which claimed rows' requests left, kept where a killed process cannot lose it.
//!
//! A row is marked in flight, durably, before its request is written; a process
//! killed after that cannot tell by the journal alone whether the request went,
//! so the next run holds every such row in doubt. Most of them never left: a claim
//! commits a batch, then writes its requests one by one, and a kill between the
//! two (the commit's fsync takes a millisecond or more) caught whole batches
//! unsent (BENCHMARKS.md, "kills").
//!
//! So each request, at the moment it departs (just before its bytes go to the
//! socket), writes its row's id into this log: a file beside the database, mapped
//! into memory, so a departure costs one store and no system call. What a process
//! stores in a shared file mapping is in the kernel's page cache at once, and stays
//! there, to be written to disk, when the process is killed. It is not fsynced: a
//! power cut or a crash of the machine may lose it. The log therefore records the
//! machine's boot id, and a run trusts its predecessor's log only on the same boot;
//! otherwise every row left in flight is held in doubt, as without a log.
//!
//! A run creates its log when it starts sending, not before: a run that ends
//! without sending (nothing to send, a refusal by `--max-cost`, a question answered
//! no) never has one. A run that ends with every outcome recorded removes its log;
//! the next run removes the last one's once the journal has settled the rows it
//! spoke for. So only a killed run leaves one, for the run after it.
//!
//! Each accepted answer is noted the same way, with its message id, in a second
//! ring: a run killed after an answer came back and before the journal committed
//! it (outcomes are committed with the next claim, every few tens of
//! milliseconds) leaves the message known as accepted, not in doubt, and the next
//! run records it so ([`Previous::answered`]).
//!
//! The log is a ring of [`SLOTS`] row ids. A row can be in flight for at most the
//! provider timeout (at most 300 s, `campaign::provider`), during which at most
//! 1,000 requests a second depart (the tool's highest rate): 300,000 departures,
//! well within the ring, so the departure of a row still in flight is never
//! overwritten.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering, fence};

use anyhow::Context as _;

/// Row ids the ring holds (8 MiB of the file).
pub const SLOTS: usize = 1 << 20;
/// A log with departures only, as runs before answers were noted wrote it.
const MAGIC_DEPARTURES: &[u8; 8] = b"WACDEP01";
const MAGIC: &[u8; 8] = b"WACDEP02";
/// Accepted answers the second ring holds. An answer waits there at most until
/// the journal's next commit; while another process holds the database's lock,
/// nothing new is claimed, so at most the window's requests come back meanwhile
/// (in the thousands): the ring's oldest slots are long committed when it wraps.
pub const ANSWER_SLOTS: usize = 1 << 15;
/// One answer: the row (0 while it is written), when, the id's length, the id.
const ANSWER_SIZE: usize = 128;
/// The longest message id noted (Meta's wamids are about 60 bytes, Twilio's SIDs
/// 34); a longer one is left to the journal's commit alone.
const ID_MAX: usize = ANSWER_SIZE - 24;
/// Where the answers' ring starts: the next answer's number, padding, the slots.
const ANSWERS_AT: usize = HEADER + SLOTS * 8;
const ANSWER_SLOTS_AT: usize = ANSWERS_AT + 64;
const LEN: usize = ANSWER_SLOTS_AT + ANSWER_SLOTS * ANSWER_SIZE;
/// Magic, the boot id (36 ASCII bytes), the run's nonce, padding; then the next
/// slot's number.
const HEADER: usize = 64;
const NONCE_AT: usize = 44;
const NEXT_AT: usize = 56;

/// The log beside the database at `db` for `campaign`: `<db>.<campaign>.departures`.
pub fn path(db: &Path, campaign: &str) -> PathBuf {
    let canonical = db.canonicalize().ok();
    let db = canonical.as_deref().unwrap_or(db);
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{campaign}.departures"));
    db.with_file_name(name)
}

/// This boot of the machine, as the kernel names it; `None` where it cannot say.
fn boot_id() -> Option<[u8; 36]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    text.trim().as_bytes().try_into().ok()
}

/// What the previous run's log says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Previous {
    /// The rows whose requests departed.
    pub departed: HashSet<i64>,
    /// The rows whose requests were accepted, with what the answer said.
    pub answered: HashMap<i64, Answer>,
}

/// An accepted answer, as the log kept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub message_id: String,
    /// When it came back, in milliseconds since the Unix epoch (the tool's clock).
    pub at_ms: i64,
}

/// What the previous run's log says, when it can be trusted: written on this
/// boot of the machine, by the run the journal names (`nonce`: a run that wrote no
/// log, a library caller's, leaves none to match). `None` when there is no such
/// log; then every row left in flight may have gone.
pub fn previous(path: &Path, nonce: i64) -> Option<Previous> {
    let boot = boot_id()?;
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header).ok()?;
    let with_answers = &header[..8] == MAGIC;
    if !(with_answers || &header[..8] == MAGIC_DEPARTURES)
        || header[8..44] != boot
        || header[NONCE_AT..NONCE_AT + 8] != nonce.to_le_bytes()
    {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let word = |c: &[u8]| i64::from_le_bytes(c.try_into().unwrap_or_default());
    let ring = SLOTS * 8;
    let departed = bytes[..ring.min(bytes.len())]
        .chunks_exact(8)
        .map(word)
        .filter(|&row| row != 0)
        .collect();
    let slots = ANSWER_SLOTS_AT - HEADER;
    let answered = if with_answers && bytes.len() >= slots {
        bytes[slots..]
            .chunks_exact(ANSWER_SIZE)
            .filter_map(|slot| {
                let row = word(&slot[..8]);
                let len = usize::from(u16::from_le_bytes([slot[16], slot[17]]));
                let id = slot.get(24..24 + len)?;
                let message_id = String::from_utf8(id.to_vec()).ok()?;
                (row != 0 && !message_id.is_empty()).then(|| {
                    let at_ms = word(&slot[8..16]);
                    (row, Answer { message_id, at_ms })
                })
            })
            .collect()
    } else {
        HashMap::new()
    };
    Some(Previous { departed, answered })
}

/// This run's log, written as requests depart.
pub struct Departures {
    map: memmap2::MmapMut,
    path: PathBuf,
}

impl std::fmt::Debug for Departures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Departures").finish_non_exhaustive()
    }
}

impl Departures {
    /// Starts a new, empty log at `path` (replacing the last run's, which the
    /// journal has settled by now). `None` where the machine gives no boot id: a
    /// log nobody could trust is not worth writing.
    pub fn start(path: &Path, nonce: i64) -> anyhow::Result<Option<Departures>> {
        let Some(boot) = boot_id() else {
            return Ok(None);
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        // Allocated now, not as the ring fills: a store to a page of a sparse file
        // that the disk has no room for kills the process (SIGBUS); a full disk
        // must fail here, where the run can go on without a log.
        let len = LEN as libc::off_t;
        // SAFETY: posix_fallocate(3) on a file descriptor this function owns.
        let rc = unsafe { libc::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&file), 0, len) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc))
                .with_context(|| format!("allocating {}", path.display()));
        }
        // SAFETY: the file is ours (created above, under the campaign's lock, which
        // every process that writes this log holds), and is never truncated while
        // mapped.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }
            .with_context(|| format!("mapping {}", path.display()))?;
        map[..8].copy_from_slice(MAGIC);
        map[8..44].copy_from_slice(&boot);
        map[NONCE_AT..NONCE_AT + 8].copy_from_slice(&nonce.to_le_bytes());
        Ok(Some(Departures {
            map,
            path: path.to_owned(),
        }))
    }

    fn next(&self) -> &AtomicU64 {
        // SAFETY: NEXT_AT is 8-aligned within a page-aligned mapping that lives as
        // long as `self`; every access to it is atomic.
        unsafe { &*self.map.as_ptr().add(NEXT_AT).cast::<AtomicU64>() }
    }

    fn slot(&self, n: usize) -> &AtomicI64 {
        // SAFETY: the slot (n modulo SLOTS) lies within the mapping, 8-aligned
        // after the 64-byte header; every access to it is atomic.
        unsafe {
            &*self
                .map
                .as_ptr()
                .add(HEADER + (n % SLOTS) * 8)
                .cast::<AtomicI64>()
        }
    }

    fn answer_word(&self, n: usize, word: usize) -> &AtomicU64 {
        // SAFETY: the slot (n modulo ANSWER_SLOTS) and its word lie within the
        // mapping, 8-aligned after the 64-byte-aligned start of the ring; every
        // access to them is atomic.
        unsafe {
            &*self
                .map
                .as_ptr()
                .add(ANSWER_SLOTS_AT + (n % ANSWER_SLOTS) * ANSWER_SIZE + word * 8)
                .cast::<AtomicU64>()
        }
    }

    fn next_answer(&self) -> &AtomicU64 {
        // SAFETY: ANSWERS_AT is 8-aligned within the mapping; accessed atomically.
        unsafe { &*self.map.as_ptr().add(ANSWERS_AT).cast::<AtomicU64>() }
    }

    /// `row`'s request was accepted as `message_id`, at `at_ms` (milliseconds since
    /// the Unix epoch). An id longer than the slot is not noted.
    pub fn answered(&self, row: i64, message_id: &str, at_ms: i64) {
        let id = message_id.as_bytes();
        if id.is_empty() || id.len() > ID_MAX {
            return;
        }
        let n = self.next_answer().fetch_add(1, Ordering::Relaxed) as usize;
        let seal = self.answer_word(n, 0);
        // Unsealed before its words change, so a process killed half-way through
        // leaves a slot the reader skips, never one with another answer's row.
        seal.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        self.answer_word(n, 1)
            .store(at_ms as u64, Ordering::Relaxed);
        self.answer_word(n, 2)
            .store(id.len() as u64, Ordering::Relaxed);
        let mut word = [0u8; 8];
        for (i, chunk) in id.chunks(8).enumerate() {
            word.fill(0);
            word[..chunk.len()].copy_from_slice(chunk);
            self.answer_word(n, 3 + i)
                .store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        seal.store(row as u64, Ordering::Release);
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `row`'s request is about to be written to its socket.
    pub fn departed(&self, row: i64) {
        let n = self.next().fetch_add(1, Ordering::Relaxed) as usize;
        // SeqCst: the row is in the page cache before the socket write that
        // follows this call can begin.
        self.slot(n).store(row, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log started in a directory of its own; `None` on a machine with no boot
    /// id, where no log is written.
    fn started(nonce: i64) -> Option<(tempfile::TempDir, std::path::PathBuf, Departures)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db.c1.departures");
        let log = Departures::start(&path, nonce).unwrap()?;
        Some((dir, path, log))
    }

    #[test]
    fn a_log_read_back_names_the_rows_that_departed_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db.c1.departures");
        assert!(previous(&path, 1).is_none(), "no log yet");
        let Some(log) = Departures::start(&path, 1).unwrap() else {
            // No boot id on this machine: the log is never written, nor trusted.
            assert!(boot_id().is_none());
            return;
        };
        for row in [7, 3, 1_000_000_007] {
            log.departed(row);
        }
        // Read while the run still holds it, as after a SIGKILL: the page cache has it.
        let seen = previous(&path, 1).expect("trusted on this boot");
        assert_eq!(seen.departed, HashSet::from([7, 3, 1_000_000_007]));
        assert!(seen.answered.is_empty());
        drop(log);
        assert_eq!(previous(&path, 1).unwrap().departed.len(), 3);
        assert!(
            previous(&path, 2).is_none(),
            "not the run the journal names"
        );
        // A new run's log starts empty.
        let _fresh = Departures::start(&path, 2).unwrap().unwrap();
        assert_eq!(previous(&path, 2).unwrap(), Previous::default());
    }

    #[test]
    fn a_log_from_another_boot_is_not_trusted() {
        let Some((_dir, path, log)) = started(9) else {
            return;
        };
        log.departed(5);
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        // Another boot of the machine: what was not fsynced may be lost.
        bytes[8] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert!(previous(&path, 9).is_none());
        std::fs::write(&path, b"not a log").unwrap();
        assert!(previous(&path, 9).is_none());
    }

    #[test]
    fn the_ring_wraps_onto_its_oldest_slots() {
        let Some((_dir, path, log)) = started(3) else {
            return;
        };
        for row in 1..=(SLOTS as i64 + 2) {
            log.departed(row);
        }
        let seen = previous(&path, 3).unwrap().departed;
        assert_eq!(seen.len(), SLOTS);
        assert!(!seen.contains(&1) && !seen.contains(&2), "overwritten");
        assert!(seen.contains(&(SLOTS as i64 + 2)));
    }

    #[test]
    fn accepted_answers_are_read_back_with_their_ids_and_times() {
        let Some((_dir, path, log)) = started(4) else {
            return;
        };
        let wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA";
        log.departed(11);
        log.answered(11, wamid, 1_764_331_200_123);
        log.departed(12);
        log.answered(12, "SM0123456789abcdef0123456789abcdef", 1_764_331_200_456);
        // Departed, no answer yet; and an id longer than a slot holds.
        log.departed(13);
        log.departed(14);
        log.answered(14, &"x".repeat(ID_MAX + 1), 1);
        let seen = previous(&path, 4).unwrap();
        assert_eq!(seen.departed, HashSet::from([11, 12, 13, 14]));
        assert_eq!(
            seen.answered,
            HashMap::from([
                (
                    11,
                    Answer {
                        message_id: wamid.to_owned(),
                        at_ms: 1_764_331_200_123
                    }
                ),
                (
                    12,
                    Answer {
                        message_id: "SM0123456789abcdef0123456789abcdef".to_owned(),
                        at_ms: 1_764_331_200_456
                    }
                ),
            ])
        );
        // A slot caught half-written by a kill (its seal not yet stored) is skipped.
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[ANSWER_SLOTS_AT..ANSWER_SLOTS_AT + 8].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let seen = previous(&path, 4).unwrap();
        assert_eq!(seen.answered.keys().copied().collect::<Vec<_>>(), [12]);
    }

    #[test]
    fn a_log_from_before_answers_were_noted_still_names_its_departures() {
        let Some((_dir, path, log)) = started(5) else {
            return;
        };
        log.departed(21);
        drop(log);
        // As the previous version wrote it: its magic, and no answers' ring.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..8].copy_from_slice(MAGIC_DEPARTURES);
        bytes.truncate(HEADER + SLOTS * 8);
        std::fs::write(&path, &bytes).unwrap();
        let seen = previous(&path, 5).unwrap();
        assert_eq!(seen.departed, HashSet::from([21]));
        assert!(seen.answered.is_empty());
    }

    #[test]
    fn the_answers_ring_wraps_onto_its_oldest_slots() {
        let Some((_dir, path, log)) = started(6) else {
            return;
        };
        for row in 1..=(ANSWER_SLOTS as i64 + 1) {
            log.answered(row, &format!("wamid.{row}"), row);
        }
        let answered = previous(&path, 6).unwrap().answered;
        assert_eq!(answered.len(), ANSWER_SLOTS);
        assert!(!answered.contains_key(&1), "overwritten");
        let last = ANSWER_SLOTS as i64 + 1;
        assert_eq!(answered[&last].message_id, format!("wamid.{last}"));
    }
}
