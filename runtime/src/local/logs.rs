//! Replica logs: each replica's stdout and stderr go, line by line, to its own file
//! under the home directory, rotated by size, with secret values redacted.
//!
//! The daemon reads the replica's pipes itself (rather than handing the process the
//! file) so that it can redact secrets before anything touches the disk, rotate without
//! the application's help, and keep the last lines in memory for rollout diagnostics.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Secret values redacted from replica output (each line of a multi-line one too).
pub use slipway_platform::redact::{Redactor, REDACTED};

/// How big a log file grows before it is rotated, and how many rotated files are kept.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// How many of a replica's last lines are kept in memory for error messages.
const RECENT_LINES: usize = 40;

/// One replica's log file. `replica.log` is current; `replica.log.1` is the previous, etc.
#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    rotation: Rotation,
    redactor: Arc<Redactor>,
    recent: VecDeque<String>,
}

pub type SharedSink = Arc<Mutex<LogSink>>;

impl LogSink {
    pub fn open(path: PathBuf, rotation: Rotation, redactor: Arc<Redactor>) -> LogSink {
        let mut sink = LogSink {
            path,
            file: None,
            size: 0,
            rotation,
            redactor,
            recent: VecDeque::with_capacity(RECENT_LINES),
        };
        sink.reopen();
        sink
    }

    fn reopen(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
        {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(file);
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot open replica log");
                self.file = None;
            }
        }
    }

    /// Writes one line (without its newline) from `stream` (`stdout`, `stderr` or
    /// `slipway` for the runtime's own notes), redacted and timestamped.
    pub fn write_line(&mut self, stream: &str, line: &str) {
        let line = self.redactor.redact(line);
        let entry = format!("{} {stream} {line}\n", rfc3339_now());
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(entry.trim_end().to_string());
        if self.size + entry.len() as u64 > self.rotation.max_bytes && self.size > 0 {
            self.rotate();
        }
        if let Some(file) = &mut self.file {
            if file.write_all(entry.as_bytes()).is_ok() {
                self.size += entry.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let keep = self.rotation.keep.max(1);
        let _ = std::fs::remove_file(rotated(&self.path, keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
        }
        let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
        self.reopen();
    }

    /// The last `n` lines written (at most [`RECENT_LINES`]).
    pub fn recent(&self, n: usize) -> Vec<String> {
        let skip = self.recent.len().saturating_sub(n);
        self.recent.iter().skip(skip).cloned().collect()
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Copies a replica's pipe into its log, line by line, until the pipe closes.
pub async fn pump(reader: impl AsyncRead + Unpin, stream: &'static str, sink: SharedSink) {
    /// A line longer than this is split, so a program printing without newlines cannot
    /// grow the daemon's memory.
    const MAX_LINE: usize = 16 * 1024;
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        match limited.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                let text = String::from_utf8_lossy(&buf);
                if let Ok(mut sink) = sink.lock() {
                    sink.write_line(stream, &text);
                }
            }
        }
    }
}

/// Deletes the log files (and their rotations) of replicas that no longer run, keeping
/// the `keep` most recent, so that many rollouts do not pile up files. The logs of
/// `running` replicas are never deleted.
pub fn prune(dir: &Path, running: &[PathBuf], keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut old: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log") && !running.contains(p))
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH);
            (t, p)
        })
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(keep);
    for (_, path) in old.into_iter().take(excess) {
        let _ = std::fs::remove_file(&path);
        for n in 1..=9 {
            let _ = std::fs::remove_file(rotated(&path, n));
        }
    }
}

/// The last `n` lines of a replica's log, from its files (the current one, then the
/// rotated ones when the current is short).
pub fn tail_file(path: &Path, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut candidates = vec![path.to_path_buf()];
    candidates.extend((1..=9).map(|k| rotated(path, k)));
    for file in candidates {
        if lines.len() >= n {
            break;
        }
        let Ok(text) = read_tail(&file, 1024 * 1024) else {
            break;
        };
        let mut older: Vec<String> = text.lines().map(str::to_string).collect();
        let want = n - lines.len();
        if older.len() > want {
            older.drain(..older.len() - want);
        }
        older.append(&mut lines);
        lines = older;
    }
    lines
}

/// Reads at most the last `max` bytes of a file, starting at a line boundary.
fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        if let Some(pos) = text.find('\n') {
            text.drain(..=pos);
        }
    }
    Ok(text)
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Formats seconds since the epoch (UTC), with Howard Hinnant's civil-from-days.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn rotates_by_size_keeping_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let secret = "s3cr3t".to_string();
        let mut sink = LogSink::open(
            path.clone(),
            Rotation {
                max_bytes: 200,
                keep: 2,
            },
            Arc::new(Redactor::new([secret.as_str()], 1)),
        );
        for i in 0..40 {
            sink.write_line("stdout", &format!("line {i} with s3cr3t"));
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "only `keep` rotated files");
        let all: String = [path.clone(), rotated(&path, 1), rotated(&path, 2)]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(!all.contains("s3cr3t") && all.contains(REDACTED));
        let old: Vec<PathBuf> = (0..5)
            .map(|i| dir.path().join(format!("old{i}.log")))
            .collect();
        for p in &old {
            std::fs::write(p, "x\n").unwrap();
        }
        prune(dir.path(), std::slice::from_ref(&path), 2);
        let left = old.iter().filter(|p| p.exists()).count();
        assert_eq!(left, 2, "only the 2 most recent old logs stay");
        assert!(
            path.exists() && rotated(&path, 1).exists(),
            "running logs stay"
        );
        let tail = tail_file(&path, 3);
        assert_eq!(tail.len(), 3);
        assert!(tail[2].ends_with("line 39 with [REDACTED]"), "{tail:?}");
        let recent = sink.recent(2);
        assert!(recent[1].ends_with("line 39 with [REDACTED]"));
    }
}
