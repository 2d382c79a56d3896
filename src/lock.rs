//! One sender per campaign, and one pace per business number: OS file locks on
//! sibling lock files. The OS releases a lock when its holder exits, however it
//! exits, so a killed run never blocks the next. The holder writes who it is (pid,
//! host, command, since when) into the file once it has the lock, so a run refused
//! or kept waiting can say by whom.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LockError {
    #[error(
        "campaign `{campaign}` is being sent by another process ({holder}; lock {path}); \
         wait for it to finish, or stop it; a killed process releases the lock at once"
    )]
    Held {
        campaign: String,
        path: String,
        holder: String,
    },
    #[error(
        "business number {number} is still sending for another run ({holder}; lock {path}) \
         after waiting {waited}: two runs from one number share its pace, one after the \
         other. Run again later, or give --wait a longer time"
    )]
    NumberBusy {
        number: String,
        path: String,
        holder: String,
        waited: String,
    },
    #[error("cannot create lock file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Who holds a lock, as its holder wrote it into the lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since: String,
}

impl Holder {
    /// This process.
    pub fn current() -> Holder {
        let mut command: String = std::env::args().collect::<Vec<_>>().join(" ");
        if command.len() > 300 {
            let mut end = 300;
            while !command.is_char_boundary(end) {
                end -= 1;
            }
            command.truncate(end);
            command.push('…');
        }
        Holder {
            pid: std::process::id(),
            host: hostname(),
            command: command.replace('\n', " "),
            since: crate::clock::now_string(),
        }
    }

    fn to_text(&self) -> String {
        format!(
            "pid={}\nhost={}\nsince={}\ncommand={}\n",
            self.pid, self.host, self.since, self.command
        )
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut holder = Holder::default();
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            match key {
                "pid" => holder.pid = value.parse().ok()?,
                "host" => holder.host = value.to_owned(),
                "since" => holder.since = value.to_owned(),
                "command" => holder.command = value.to_owned(),
                "released_ms" => return None,
                _ => {}
            }
        }
        (holder.pid != 0).then_some(holder)
    }

    /// Reads the holder a lock file names, when it names one.
    pub fn read(path: &Path) -> Option<Holder> {
        let mut text = String::new();
        File::open(path).ok()?.read_to_string(&mut text).ok()?;
        Holder::parse(&text)
    }

    fn describe(path: &Path) -> String {
        match Holder::read(path) {
            Some(h) => format!(
                "pid {} on {}, since {}: `{}`",
                h.pid, h.host, h.since, h.command
            ),
            None => "a process that has not said who it is".to_owned(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this host".to_owned())
}

/// Writes who holds the lock into its file, now that it is ours.
fn claim(file: &mut File) {
    // Best effort: the lock itself is what excludes others; a failed write only
    // leaves a refused run unable to say by whom.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(Holder::current().to_text().as_bytes()));
}

/// The lock file `<db>.<suffix>.lock` beside the database.
fn lock_path(db: &Path, suffix: &str) -> PathBuf {
    // Two spellings of one database (a symlink, `./x.db` and `x.db`) must share
    // one lock.
    let canonical = db.canonicalize().ok();
    let db = canonical.as_deref().unwrap_or(db);
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{suffix}.lock"));
    db.with_file_name(name)
}

fn open(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| LockError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// Held for as long as this value lives.
#[derive(Debug)]
pub struct CampaignLock {
    _file: File,
    path: PathBuf,
}

impl CampaignLock {
    /// Takes the lock for `campaign` beside the database at `db`, or fails at once.
    pub fn acquire(db: &Path, campaign: &str) -> Result<CampaignLock, LockError> {
        let path = lock_path(db, campaign);
        let shown = path.display().to_string();
        let mut file = open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                claim(&mut file);
                Ok(CampaignLock { _file: file, path })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
                campaign: campaign.to_owned(),
                holder: Holder::describe(&path),
                path: shown,
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io {
                path: shown,
                source,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The business number a campaign sends from: one pace for every run that uses it.
pub fn number_of(provider: &crate::campaign::ProviderConfig) -> String {
    use crate::campaign::{ProviderConfig, TwilioSender};
    match provider {
        ProviderConfig::CloudApi {
            phone_number_id, ..
        } => format!("cloud_api-{phone_number_id}"),
        ProviderConfig::Twilio(t) => match &t.sender {
            TwilioSender::From(phone) => format!("twilio-{}", phone.digits()),
            TwilioSender::MessagingService(sid) => format!("twilio-{sid}"),
        },
        ProviderConfig::Simulator(_) => "simulator".to_owned(),
    }
}

/// Held while a run sends from a business number: a second run from the same number
/// (another campaign, an overlapping cron job) waits its turn, so the number's rate
/// and Meta's per-pair limits are never doubled.
#[derive(Debug)]
pub struct NumberLock {
    file: File,
}

/// A number's rate holds over any one-second window: the next run starts no sooner
/// than this after the last one let go, so their requests never share a second.
const NUMBER_HANDOFF: Duration = Duration::from_secs(1);

/// The machine's wall clock in milliseconds: runs started with different
/// `WACAMPAIGN_NOW` still share one real second.
fn wall_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When the previous holder let go, if it said so.
fn released_at(file: &mut File) -> Option<u64> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("released_ms="))
        .and_then(|v| v.trim().parse().ok())
}

impl Drop for NumberLock {
    fn drop(&mut self) {
        // Still holding the lock: the next holder reads this before it sends.
        let _ = self
            .file
            .seek(std::io::SeekFrom::End(0))
            .and_then(|_| writeln!(self.file, "released_ms={}", wall_millis()));
    }
}

impl NumberLock {
    /// Takes the number's lock beside the database at `db`, waiting up to `wait`;
    /// `waiting` is called once, with who holds it, if it is busy.
    pub fn acquire(
        db: &Path,
        number: &str,
        wait: Duration,
        waiting: impl FnOnce(&str),
    ) -> Result<NumberLock, LockError> {
        let path = lock_path(db, &format!("number-{number}"));
        let mut file = open(&path)?;
        let started = Instant::now();
        let mut waiting = Some(waiting);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    if let Some(released) = released_at(&mut file) {
                        let since = wall_millis().saturating_sub(released);
                        let handoff = NUMBER_HANDOFF.as_millis() as u64;
                        if since < handoff {
                            std::thread::sleep(Duration::from_millis(handoff - since));
                        }
                    }
                    claim(&mut file);
                    return Ok(NumberLock { file });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    if let Some(waiting) = waiting.take() {
                        waiting(&Holder::describe(&path));
                    }
                    if started.elapsed() >= wait {
                        return Err(LockError::NumberBusy {
                            number: number.to_owned(),
                            holder: Holder::describe(&path),
                            path: path.display().to_string(),
                            waited: crate::ui::human_duration(wait.as_secs()),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(LockError::Io {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let first = CampaignLock::acquire(&db, "c1").unwrap();
        assert!(matches!(
            CampaignLock::acquire(&db, "c1"),
            Err(LockError::Held { .. })
        ));
        CampaignLock::acquire(&db, "other").expect("other campaigns are independent");
        drop(first);
        CampaignLock::acquire(&db, "c1").expect("released on drop");
    }

    #[test]
    fn a_refusal_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let _first = CampaignLock::acquire(&db, "c1").unwrap();
        let refused = CampaignLock::acquire(&db, "c1").unwrap_err().to_string();
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        assert!(refused.contains("since 20"), "{refused}");
    }

    #[test]
    fn a_busy_number_is_waited_for_then_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let held = NumberLock::acquire(&db, "cloud_api-1", Duration::ZERO, |_| {}).unwrap();
        let mut told = String::new();
        let started = Instant::now();
        let err = NumberLock::acquire(&db, "cloud_api-1", Duration::from_millis(300), |h| {
            told = h.to_owned()
        })
        .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            told.contains(&format!("pid {}", std::process::id())),
            "{told}"
        );
        assert!(matches!(err, LockError::NumberBusy { .. }));
        NumberLock::acquire(&db, "cloud_api-2", Duration::ZERO, |_| {})
            .expect("another number is independent");
        drop(held);
        NumberLock::acquire(&db, "cloud_api-1", Duration::ZERO, |_| {}).expect("released");
    }

    #[test]
    fn two_spellings_of_one_database_share_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        std::fs::write(&db, b"").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let _held = CampaignLock::acquire(&db, "c1").unwrap();
        assert!(matches!(
            CampaignLock::acquire(&link, "c1"),
            Err(LockError::Held { .. })
        ));
    }
}
