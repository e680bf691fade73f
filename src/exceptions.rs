//! Exceptions: approved, time-boxed deviations from the control.
//!
//! Some users legitimately hold two active keys for a while (a rotation
//! window, a vendor integration). CIS asks that such exceptions be tracked
//! with an owner and an expiry. A finding that matches an unexpired
//! exception is still published — the SIEM keeps the record — but marked
//! `suppressed` and carrying the exception, so alerting can skip it. An
//! expired exception no longer applies.
//!
//! The document is YAML or TOML (by the file's or key's extension;
//! otherwise both are tried); it comes from a file, an SSM parameter or an
//! S3 object ([`crate::exceptions_source`]):
//!
//! ```yaml
//! exceptions:
//!   - account: "111122223333"      # 12 digits, or "*" for every account
//!     user: "ci-deploy-*"          # glob: * any run, ? one character
//!     reason: "key rotation of the CI deployer, CHG-1234"
//!     owner: "platform-team@example.com"   # or a team handle: "@platform-team"
//!     approved: 2026-12-01         # optional: the day it was approved
//!     expires: 2027-01-31          # last day it applies (UTC, inclusive)
//! ```
//!
//! User names match without regard to case, as IAM compares them (IAM does
//! not allow `Alice` and `alice` side by side). What an entry may say beyond
//! its syntax (how far its expiry, who owns it, how wide it is) is
//! [`policy`]'s.

mod policy;

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::macros::format_description;
use time::{Date, OffsetDateTime};

pub(crate) use self::policy::report_expiring;
pub use self::policy::{expiring, Policy, DEFAULT_MAX_DAYS, DEFAULT_WARN_DAYS};

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
    fn is_expired(&self, now: OffsetDateTime) -> bool {
        now.date() > self.expires
    }

    /// Whether the entry names this account and user; the user's name is
    /// compared without regard to case, glob included.
    pub fn matches(&self, account_id: &str, user_name: &str) -> bool {
        (self.account == "*" || self.account == account_id) && glob_match(&self.user.to_lowercase(), &user_name.to_lowercase())
    }
}

/// The loaded exceptions (empty when none are configured).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exceptions {
    /// Where they were read from (`file /etc/keywatch/exceptions.yaml`,
    /// `ssm:/keywatch/exceptions`, `s3://bucket/key`).
    pub source: Option<String>,
    pub entries: Vec<Exception>,
}

/// The syntax of an exceptions document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
    /// Unknown: YAML is tried, then TOML.
    Either,
}

impl Format {
    /// The format a file or object name says by its extension.
    pub(crate) fn of_name(name: &str) -> Format {
        let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Format::Toml,
            "yaml" | "yml" => Format::Yaml,
            _ => Format::Either,
        }
    }
}

/// Why the exceptions cannot be used. Start-up stops with it; a reload
/// keeps the previous exceptions. `origin` says where they come from, as in
/// [`Exceptions::source`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExceptionsError {
    #[error("cannot read exceptions {origin}: {message}")]
    Read { origin: String, message: String },
    #[error("exceptions {origin} is not valid {format}: {message}")]
    Syntax { origin: String, format: &'static str, message: String },
    #[error("exceptions {origin}: expected a top-level `exceptions` list")]
    Shape { origin: String },
    #[error("exceptions {origin}: entry {index} ({label}): {message}")]
    Entry { origin: String, index: usize, label: String, message: String },
}

/// An entry as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    account: String,
    user: String,
    reason: String,
    owner: String,
    /// The day the exception was approved; the expiry is capped from it
    /// (absent: from the day the document is loaded).
    #[serde(default)]
    approved: Option<RawDate>,
    expires: RawDate,
}

/// TOML has a date type; YAML gives a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDate {
    Text(String),
    Toml(toml::value::Datetime),
}

/// How a file is named in errors and logs.
pub(crate) fn file_origin(path: &Path) -> String {
    format!("file {}", path.display())
}

impl Exceptions {
    /// The exception that covers (account, user) at `now`, if any.
    pub fn matching(&self, account_id: &str, user_name: &str, now: OffsetDateTime) -> Option<&Exception> {
        self.entries.iter().find(|e| !e.is_expired(now) && e.matches(account_id, user_name))
    }

    /// Loads and validates a file.
    pub fn load(path: &Path) -> Result<Exceptions, ExceptionsError> {
        let origin = file_origin(path);
        let text = std::fs::read_to_string(path).map_err(|e| ExceptionsError::Read { origin: origin.clone(), message: e.to_string() })?;
        Exceptions::parse(&origin, &text, Format::of_name(&path.to_string_lossy()))
    }

    /// Parses and validates a document read from `origin` today, under the
    /// default [`Policy`].
    pub fn parse(origin: &str, text: &str, format: Format) -> Result<Exceptions, ExceptionsError> {
        Exceptions::parse_under(origin, text, format, &Policy::default(), OffsetDateTime::now_utc().date())
    }

    /// Parses and validates a document read from `origin` on `today`, under
    /// `policy`.
    pub fn parse_under(origin: &str, text: &str, format: Format, policy: &Policy, today: Date) -> Result<Exceptions, ExceptionsError> {
        let rules = Rules { policy, today };
        let entries = match format {
            Format::Toml => from_toml(origin, text, &rules)?,
            Format::Yaml => from_yaml(origin, text, &rules)?,
            // Both failing, the error of the syntax the text looks like.
            Format::Either => match from_yaml(origin, text, &rules) {
                Ok(entries) => entries,
                Err(yaml) => match from_toml(origin, text, &rules) {
                    Ok(entries) => entries,
                    Err(toml) if looks_like_toml(text) => return Err(toml),
                    Err(_) => return Err(yaml),
                },
            },
        };
        Ok(Exceptions { source: Some(origin.to_string()), entries })
    }
}

/// What validation holds an entry to.
struct Rules<'a> {
    policy: &'a Policy,
    today: Date,
}

fn looks_like_toml(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| l.starts_with("[[exceptions]]") || l.starts_with("exceptions ="))
}

fn from_yaml(origin: &str, text: &str, rules: &Rules) -> Result<Vec<Exception>, ExceptionsError> {
    let doc: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| ExceptionsError::Syntax {
        origin: origin.to_string(),
        format: "YAML",
        message: e.to_string(),
    })?;
    let list = match doc.get("exceptions") {
        Some(yaml_serde::Value::Sequence(list)) => list.clone(),
        Some(yaml_serde::Value::Null) => Vec::new(),
        _ if doc.is_null() => Vec::new(),
        _ => return Err(ExceptionsError::Shape { origin: origin.to_string() }),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let label = label_of(v.get("user").and_then(|u| u.as_str()), v.get("account").and_then(|a| a.as_str()));
            let raw = yaml_serde::from_value::<RawEntry>(v).map_err(|e| entry_error(origin, i, &label, e.to_string()))?;
            validate(origin, i, raw, rules)
        })
        .collect()
}

fn from_toml(origin: &str, text: &str, rules: &Rules) -> Result<Vec<Exception>, ExceptionsError> {
    let doc: toml::Table =
        toml::from_str(text).map_err(|e| ExceptionsError::Syntax { origin: origin.to_string(), format: "TOML", message: e.to_string() })?;
    let list = match doc.get("exceptions") {
        Some(toml::Value::Array(list)) => list.clone(),
        None => Vec::new(),
        Some(_) => return Err(ExceptionsError::Shape { origin: origin.to_string() }),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let label = label_of(v.get("user").and_then(|u| u.as_str()), v.get("account").and_then(|a| a.as_str()));
            let raw = v.try_into::<RawEntry>().map_err(|e| entry_error(origin, i, &label, e.to_string()))?;
            validate(origin, i, raw, rules)
        })
        .collect()
}

fn label_of(user: Option<&str>, account: Option<&str>) -> String {
    format!("account {}, user {}", account.unwrap_or("?"), user.unwrap_or("?"))
}

/// Entries are numbered from 1, as a person counts them in the file.
fn entry_error(origin: &str, index: usize, label: &str, message: String) -> ExceptionsError {
    ExceptionsError::Entry { origin: origin.to_string(), index: index + 1, label: label.to_string(), message: message.replace('\n', " ") }
}

fn validate(origin: &str, index: usize, raw: RawEntry, rules: &Rules) -> Result<Exception, ExceptionsError> {
    let label = label_of(Some(&raw.user), Some(&raw.account));
    let fail = |m: String| entry_error(origin, index, &label, m);
    if raw.account != "*" && !(raw.account.len() == 12 && raw.account.bytes().all(|b| b.is_ascii_digit())) {
        return Err(fail(format!("account {:?} is neither a 12-digit account id nor \"*\"", raw.account)));
    }
    for (field, value) in [("user", &raw.user), ("reason", &raw.reason), ("owner", &raw.owner)] {
        if value.trim().is_empty() {
            return Err(fail(format!("`{field}` must not be empty")));
        }
    }
    policy::check_owner(raw.owner.trim()).map_err(fail)?;
    policy::check_scope(&raw.account, &raw.user, rules.policy).map_err(fail)?;
    let expires = date_of("expires", &raw.expires).map_err(fail)?;
    let approved = raw.approved.as_ref().map(|d| date_of("approved", d)).transpose().map_err(fail)?;
    policy::check_expiry(expires, approved, rules.today, rules.policy).map_err(fail)?;
    Ok(Exception { account: raw.account, user: raw.user, reason: raw.reason, owner: raw.owner, expires })
}

fn date_of(field: &str, raw: &RawDate) -> Result<Date, String> {
    let text = match raw {
        RawDate::Text(s) => s.clone(),
        RawDate::Toml(d) => d.to_string(),
    };
    Date::parse(text.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("{field} {text:?} is not a date (YYYY-MM-DD)"))
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
