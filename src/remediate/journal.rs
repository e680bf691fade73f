//! The journal of a run: one JSON line per action, with the user's keys
//! before and after, written and flushed to disk before the run goes on,
//! so that `--undo` knows exactly what was changed even when the run was
//! stopped half-way.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{KeyLine, RemediateError};

/// One action: a deactivation (`--apply`) or a re-activation (`--undo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When it was made (RFC 3339).
    pub at: String,
    /// `deactivate` or `reactivate`.
    pub action: String,
    /// `done` or `failed`.
    pub result: String,
    pub account_id: String,
    pub user_name: String,
    pub user_arn: String,
    pub access_key_id: String,
    /// Why the key was chosen (`never_used`, `least_recently_used`, `undo`).
    pub reason: String,
    /// The user's keys just before the action.
    pub before: Vec<KeyLine>,
    /// The user's keys just after it, as listed again; when IAM did not
    /// list the change yet (it propagates), the keys before with the key's
    /// new status; empty when a failed action's keys could not be listed.
    pub after: Vec<KeyLine>,
    /// Why the action failed.
    pub error: Option<String>,
}

impl JournalEntry {
    pub fn is_done(&self) -> bool {
        self.result == "done"
    }
}

/// The journal file of a run, created for it.
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Creates `path`; one that exists already is refused (a journal is
    /// never appended to nor overwritten).
    pub fn create(path: &Path) -> Result<Journal, RemediateError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| RemediateError::JournalCreate { path: path.display().to_string(), source })?;
        Ok(Journal { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `entry` and waits until it is on disk.
    pub fn write(&mut self, entry: &JournalEntry) -> Result<(), RemediateError> {
        let fail = |source| RemediateError::JournalWrite { path: self.path.display().to_string(), source };
        let mut line = serde_json::to_string(entry).map_err(|e| fail(std::io::Error::other(e)))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(fail)?;
        self.file.sync_data().map_err(fail)
    }
}

/// The entries of a journal file.
pub fn read(path: &Path) -> Result<Vec<JournalEntry>, RemediateError> {
    let fail = |message: String| RemediateError::Read { what: "the journal", path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| fail(format!("line {}: {e}", i + 1))))
        .collect()
}
