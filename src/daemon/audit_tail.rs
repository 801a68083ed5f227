//! Follows the audit trail for the event stream: every record appended to the audit log — by
//! the daemon, its workers, the API's workers or an operator's `usrsvc` — becomes an `audit`
//! event, so `usrsvc events` sees who did what and why as it happens.
//!
//! A thread of its own looks at the file's size four times a second (one `stat`), and reads
//! only what was appended, at most `MAX_READ` per look; a rotated or truncated log is followed
//! from its start. Lines that are not records are skipped.
//!
//! Must not: block the loop (it never touches it), follow a planted symlink or block on a FIFO
//! (the file is opened with `fsafe::open_read`), or read the trail when nobody listens (it
//! then only moves its offset to the end).

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use super::state::{Event, Shared};

const LOOK_EVERY: Duration = Duration::from_millis(250);
/// The most read in one look (a burst of records is followed over a few looks).
const MAX_READ: u64 = 1 << 20;

/// Where the tail is in the file.
#[derive(Debug, Default, PartialEq)]
struct Position {
    path: Option<PathBuf>,
    ino: u64,
    offset: u64,
}

/// Starts the thread; it ends with the process.
pub fn spawn(shared: Shared) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("usrsvcd-audit-tail".into())
        .spawn(move || {
            let mut pos = Position::default();
            let mut partial = Vec::new();
            // The records written before the daemon started are history, not events.
            look(&shared, &mut pos, &mut partial, true);
            loop {
                std::thread::sleep(LOOK_EVERY);
                look(&shared, &mut pos, &mut partial, false);
            }
        })
        .map(drop)
}

fn look(shared: &Shared, pos: &mut Position, partial: &mut Vec<u8>, first: bool) {
    let Some(config) = shared.config() else {
        return;
    };
    let Some(path) = crate::control::audit::log_path(&config) else {
        return;
    };
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    let moved = pos.path.as_ref() != Some(&path) || pos.ino != meta.ino();
    if moved || meta.size() < pos.offset {
        // A new file (rotated, truncated, or the config names another): from its start —
        // except at start-up or when the path changed, when what is there is old.
        let from_start = !first && pos.path.as_ref() == Some(&path);
        *pos = Position {
            path: Some(path.clone()),
            ino: meta.ino(),
            offset: if from_start { 0 } else { meta.size() },
        };
        partial.clear();
    }
    if meta.size() == pos.offset {
        return;
    }
    if shared.subscribers() == 0 {
        pos.offset = meta.size();
        partial.clear();
        return;
    }
    let Ok(mut file) = crate::fsafe::open_read(&path) else {
        return;
    };
    if file.seek(SeekFrom::Start(pos.offset)).is_err() {
        return;
    }
    let mut chunk = Vec::new();
    let Ok(n) = file.take(MAX_READ).read_to_end(&mut chunk) else {
        return;
    };
    pos.offset += n as u64;
    for record in split_records(partial, &chunk) {
        shared.emit(Event::Audit { record });
    }
}

/// The whole records in `partial` + `chunk`; what follows the last newline stays in `partial`
/// (bounded: a line longer than a record can be is dropped).
fn split_records(partial: &mut Vec<u8>, chunk: &[u8]) -> Vec<crate::audit::Record> {
    partial.extend_from_slice(chunk);
    let mut out = Vec::new();
    let Some(last) = partial.iter().rposition(|&b| b == b'\n') else {
        if partial.len() > 2 * crate::audit::MAX_RECORD {
            partial.clear();
        }
        return out;
    };
    for line in partial[..last].split(|&b| b == b'\n') {
        if let Ok(record) = serde_json::from_slice::<crate::audit::Record>(line.trim_ascii()) {
            out.push(record);
        }
    }
    partial.drain(..=last);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_at_newlines_and_a_partial_line_waits() {
        let r = crate::audit::Record::new(
            "p",
            "start",
            crate::audit::Trigger::Cli,
            None,
            "ok",
            None,
            Some(1),
        );
        let line = r.to_line();
        let (a, b) = line.as_bytes().split_at(10);
        let mut partial = Vec::new();
        assert!(split_records(&mut partial, a).is_empty());
        let mut chunk = b.to_vec();
        chunk.extend_from_slice(b"garbage\n");
        chunk.extend_from_slice(&line.as_bytes()[..5]);
        let got = split_records(&mut partial, &chunk);
        assert_eq!(got, vec![r]);
        assert_eq!(partial, &line.as_bytes()[..5]);
    }
}
