//! Following a growing log file like `tail -F`.
//!
//! Cowrie rotates `cowrie.json` daily by renaming it and starting a new file;
//! `copytruncate` setups truncate it in place instead. Both are noticed at
//! end of file by polling: a different inode at the path means "rotated,
//! open the new file", a length below the read position means "truncated,
//! start over". The file is read from its beginning, since every record in
//! it still needs enriching.
//!
//! Limitation: polling every 250 ms instead of inotify keeps this portable
//! and dependency-free, at the cost of up to 250 ms of added latency.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Line;

const POLL: Duration = Duration::from_millis(250);

/// Set to stop following; the channel then closes at the next poll.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Asks the follower to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Starts following `path` on a thread of its own; fails at once when the
/// file cannot be opened.
pub fn follow(path: PathBuf, stop: StopFlag) -> std::io::Result<mpsc::Receiver<Line>> {
    let file = File::open(&path)?;
    let (tx, rx) = mpsc::channel(4096);
    std::thread::spawn(move || follow_loop(&path, file, &tx, &stop));
    Ok(rx)
}

fn follow_loop(path: &Path, file: File, tx: &mpsc::Sender<Line>, stop: &StopFlag) {
    let mut identity = file_id(&file);
    let mut reader = BufReader::new(file);
    let mut position = 0u64;
    let mut partial = Vec::new();
    loop {
        // Checked per line, not only at end of file, so that a file written
        // faster than it is read still stops promptly.
        if stop.stopped() || tx.is_closed() {
            return;
        }
        match reader.read_until(b'\n', &mut partial) {
            Ok(0) => {
                std::thread::sleep(POLL);
                if let Some((file, id)) = replacement(path, identity, position) {
                    tracing::info!(path = %path.display(), "log file replaced; reopening");
                    reader = BufReader::new(file);
                    identity = id;
                    position = 0;
                    partial.clear();
                }
            }
            Ok(read) => {
                position += read as u64;
                if partial.last() == Some(&b'\n') {
                    partial.pop();
                    if tx.blocking_send(Ok(std::mem::take(&mut partial))).is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                let _ = tx.blocking_send(Err(err));
                return;
            }
        }
    }
}

/// The file now at `path` when it is another file or was truncated.
fn replacement(path: &Path, current: Option<u64>, position: u64) -> Option<(File, Option<u64>)> {
    let file = File::open(path).ok()?;
    let id = file_id(&file);
    let len = file.metadata().ok()?.len();
    (id != current || len < position).then_some((file, id))
}

#[cfg(unix)]
fn file_id(file: &File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| m.ino())
}

/// Limitation: without inodes only truncation is detected.
#[cfg(not(unix))]
fn file_id(_file: &File) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    async fn next(rx: &mut mpsc::Receiver<Line>) -> String {
        let line = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
        String::from_utf8(line.unwrap().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn rotation_and_truncation_are_survived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cowrie.json");
        std::fs::write(&path, "one\n").unwrap();
        let stop = StopFlag::default();
        let mut rx = follow(path.clone(), stop.clone()).unwrap();
        assert_eq!(next(&mut rx).await, "one");

        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"tw").unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        file.write_all(b"o\n").unwrap();
        assert_eq!(next(&mut rx).await, "two");

        std::fs::rename(&path, dir.path().join("cowrie.json.2026-01-01")).unwrap();
        std::fs::write(&path, "three\n").unwrap();
        assert_eq!(next(&mut rx).await, "three");

        std::fs::write(&path, "").unwrap();
        std::fs::write(&path, "4\n").unwrap();
        assert_eq!(next(&mut rx).await, "4");

        stop.stop();
        let end = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
        assert!(end.is_none());
    }
}
