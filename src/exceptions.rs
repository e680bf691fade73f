//! Exceptions: approved, time-boxed deviations from the control.
//!
//! Some users legitimately hold two active keys for a while (a rotation
//! window, a vendor integration). CIS asks that such exceptions be tracked
//! with an owner and an expiry. A finding that matches an unexpired
//! exception is still published — the SIEM keeps the record — but marked
//! `suppressed` and carrying the exception, so alerting can skip it. An
//! expired exception no longer applies.
//!
//! The file is YAML or TOML (by extension; otherwise both are tried):
//!
//! ```yaml
//! exceptions:
//!   - account: "111122223333"      # 12 digits, or "*" for every account
//!     user: "ci-deploy-*"          # glob: * any run, ? one character
//!     reason: "key rotation of the CI deployer, CHG-1234"
//!     owner: "platform-team@example.com"
//!     expires: 2027-01-31          # last day it applies (UTC, inclusive)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// One approved exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exception {
    pub account: String,
    pub user: String,
    pub reason: String,
    pub owner: String,
    /// Last day the exception applies, `YYYY-MM-DD` (UTC, inclusive).
    #[serde(serialize_with = "serialize_date")]
    pub expires: Date,
}

fn serialize_date<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.format(format_description!("[year]-[month]-[day]")).map_err(serde::ser::Error::custom)?)
}

impl Exception {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now.date() > self.expires
    }

    pub fn matches(&self, account_id: &str, user_name: &str) -> bool {
        (self.account == "*" || self.account == account_id) && glob_match(&self.user, user_name)
    }
}

/// The loaded exceptions file (empty when none is configured).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exceptions {
    pub source: Option<PathBuf>,
    pub entries: Vec<Exception>,
}

/// Why the file cannot be used. Start-up stops with it; a reload keeps the
/// previous exceptions.
#[derive(Debug, thiserror::Error)]
pub enum ExceptionsError {
    #[error("cannot read exceptions file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("exceptions file {path} is not valid {format}: {message}")]
    Syntax { path: PathBuf, format: &'static str, message: String },
    #[error("exceptions file {path}: expected a top-level `exceptions` list")]
    Shape { path: PathBuf },
    #[error("exceptions file {path}: entry {index} ({label}): {message}")]
    Entry { path: PathBuf, index: usize, label: String, message: String },
}

/// An entry as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    account: String,
    user: String,
    reason: String,
    owner: String,
    expires: RawDate,
}

/// TOML has a date type; YAML gives a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDate {
    Text(String),
    Toml(toml::value::Datetime),
}

impl Exceptions {
    /// The exception that covers (account, user) at `now`, if any.
    pub fn matching(&self, account_id: &str, user_name: &str, now: OffsetDateTime) -> Option<&Exception> {
        self.entries.iter().find(|e| !e.is_expired(now) && e.matches(account_id, user_name))
    }

    /// Loads and validates a file.
    pub fn load(path: &Path) -> Result<Exceptions, ExceptionsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExceptionsError::Read { path: path.to_path_buf(), source })?;
        Exceptions::parse(path, &text)
    }

    /// Parses and validates `text`, read from `path` (whose extension picks
    /// YAML or TOML; otherwise both are tried).
    pub fn parse(path: &Path, text: &str) -> Result<Exceptions, ExceptionsError> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let entries = match ext.as_str() {
            "toml" => from_toml(path, text)?,
            "yaml" | "yml" => from_yaml(path, text)?,
            _ => from_yaml(path, text).or_else(|_| from_toml(path, text))?,
        };
        Ok(Exceptions { source: Some(path.to_path_buf()), entries })
    }
}

fn from_yaml(path: &Path, text: &str) -> Result<Vec<Exception>, ExceptionsError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ExceptionsError::Syntax {
        path: path.to_path_buf(),
        format: "YAML",
        message: e.to_string(),
    })?;
    let list = match doc.get("exceptions") {
        Some(serde_yaml::Value::Sequence(list)) => list.clone(),
        Some(serde_yaml::Value::Null) => Vec::new(),
        _ if doc.is_null() => Vec::new(),
        _ => return Err(ExceptionsError::Shape { path: path.to_path_buf() }),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let label = label_of(v.get("user").and_then(|u| u.as_str()), v.get("account").and_then(|a| a.as_str()));
            let raw = serde_yaml::from_value::<RawEntry>(v).map_err(|e| entry_error(path, i, &label, e.to_string()))?;
            validate(path, i, raw)
        })
        .collect()
}

fn from_toml(path: &Path, text: &str) -> Result<Vec<Exception>, ExceptionsError> {
    let doc: toml::Table =
        toml::from_str(text).map_err(|e| ExceptionsError::Syntax { path: path.to_path_buf(), format: "TOML", message: e.to_string() })?;
    let list = match doc.get("exceptions") {
        Some(toml::Value::Array(list)) => list.clone(),
        None => Vec::new(),
        Some(_) => return Err(ExceptionsError::Shape { path: path.to_path_buf() }),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let label = label_of(v.get("user").and_then(|u| u.as_str()), v.get("account").and_then(|a| a.as_str()));
            let raw = v.try_into::<RawEntry>().map_err(|e| entry_error(path, i, &label, e.to_string()))?;
            validate(path, i, raw)
        })
        .collect()
}

fn label_of(user: Option<&str>, account: Option<&str>) -> String {
    format!("account {}, user {}", account.unwrap_or("?"), user.unwrap_or("?"))
}

/// Entries are numbered from 1, as a person counts them in the file.
fn entry_error(path: &Path, index: usize, label: &str, message: String) -> ExceptionsError {
    ExceptionsError::Entry { path: path.to_path_buf(), index: index + 1, label: label.to_string(), message: message.replace('\n', " ") }
}

fn validate(path: &Path, index: usize, raw: RawEntry) -> Result<Exception, ExceptionsError> {
    let label = label_of(Some(&raw.user), Some(&raw.account));
    let fail = |m: String| entry_error(path, index, &label, m);
    if raw.account != "*" && !(raw.account.len() == 12 && raw.account.bytes().all(|b| b.is_ascii_digit())) {
        return Err(fail(format!("account {:?} is neither a 12-digit account id nor \"*\"", raw.account)));
    }
    for (field, value) in [("user", &raw.user), ("reason", &raw.reason), ("owner", &raw.owner)] {
        if value.trim().is_empty() {
            return Err(fail(format!("`{field}` must not be empty")));
        }
    }
    let text = match &raw.expires {
        RawDate::Text(s) => s.clone(),
        RawDate::Toml(d) => d.to_string(),
    };
    let expires = Date::parse(text.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| fail(format!("expires {text:?} is not a date (YYYY-MM-DD)")))?;
    Ok(Exception { account: raw.account, user: raw.user, reason: raw.reason, owner: raw.owner, expires })
}

/// Glob match: `*` any run of characters, `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}
