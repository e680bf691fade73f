//! Exceptions sources: the port the approved exceptions come in through,
//! and the one loop that keeps them current.
//!
//! An [`ExceptionsSource`] hands out its document when it changed since the
//! version last seen, each adapter with its own notion of a version: a file
//! ([`FileSource`]) the SHA-256 of its content, an SSM parameter
//! ([`crate::aws::ssm`]) its `Version`, an S3 object ([`crate::aws::s3`])
//! its `ETag`. [`Watch`] remembers the version in force and loads a changed
//! one; a version that cannot be used is reported once and the previous
//! exceptions stay. [`keep_current`] looks every few seconds and on SIGHUP.
//!
//! Reading a file through its path on every look also follows the symlink
//! swap by which the kubelet updates a ConfigMap volume (`..data` replaced
//! atomically), which a watch on the file itself would miss.

use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::exceptions::{file_origin, report_expiring, Exceptions, ExceptionsError, Format, Policy};
use crate::telemetry;

/// Where the exceptions come from, as `--exceptions` names it: a file path,
/// `ssm:<parameter name or ARN>` or `s3://<bucket>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Ssm(String),
    S3 { bucket: String, key: String },
}

impl Location {
    /// Parses the value of `--exceptions` / `KEYWATCH_EXCEPTIONS_FILE`.
    pub fn parse(s: &str) -> Result<Location, String> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix("ssm:") {
            if name.is_empty() || name.starts_with("//") {
                return Err(format!("{s:?}: expected ssm:<parameter name>, e.g. ssm:/keywatch/exceptions"));
            }
            return Ok(Location::Ssm(name.to_string()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(Location::S3 { bucket: bucket.to_string(), key: key.to_string() })
                }
                _ => Err(format!("{s:?}: expected s3://<bucket>/<key>, e.g. s3://my-bucket/keywatch/exceptions.yaml")),
            };
        }
        if s.starts_with("s3:") {
            return Err(format!("{s:?}: expected s3://<bucket>/<key>"));
        }
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Location::File(PathBuf::from(s)))
    }

    /// The syntax the name says (by extension), else YAML then TOML.
    pub fn format(&self) -> Format {
        match self {
            Location::File(path) => Format::of_name(&path.to_string_lossy()),
            Location::Ssm(name) => Format::of_name(name),
            Location::S3 { key, .. } => Format::of_name(key),
        }
    }
}

impl fmt::Display for Location {
    /// `file /etc/keywatch/exceptions.yaml`, `ssm:/keywatch/exceptions`,
    /// `s3://bucket/key`: how errors and logs name the source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => f.write_str(&file_origin(path)),
            Location::Ssm(name) => write!(f, "ssm:{name}"),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// One version of the exceptions document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Opaque; equal versions hold equal text.
    pub(crate) version: String,
    pub(crate) text: String,
}

/// What a look at the source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Still the version the caller knows.
    Unchanged,
    Changed(Document),
}

/// Where the exceptions document is kept.
pub trait ExceptionsSource: Send + Sync + 'static {
    /// Where, for errors and logs (see [`Location`]'s `Display`).
    fn origin(&self) -> String;

    /// The syntax of the document.
    fn format(&self) -> Format;

    /// The document, unless its version is still `known`. With `known`
    /// `None` the document is always returned. A failure is
    /// [`ExceptionsError::Read`].
    fn fetch<'a>(&'a self, known: Option<&'a str>) -> BoxFuture<'a, Result<Fetched, ExceptionsError>>;
}

/// A file, read through its path on every look.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    settle: Duration,
}

impl FileSource {
    /// A file that changed is read twice, this long apart, and loaded only
    /// when both reads agree: an editor writing it in place is not caught
    /// half-way (which could read as an empty list).
    const SETTLE: Duration = Duration::from_millis(200);

    pub fn new(path: PathBuf) -> FileSource {
        FileSource { path, settle: FileSource::SETTLE }
    }

    async fn read(&self) -> Result<(String, String), ExceptionsError> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| ExceptionsError::Read { origin: file_origin(&self.path), message: e.to_string() })?;
        let version = Sha256::digest(&bytes).iter().fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        });
        Ok((version, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl ExceptionsSource for FileSource {
    fn origin(&self) -> String {
        file_origin(&self.path)
    }

    fn format(&self) -> Format {
        Format::of_name(&self.path.to_string_lossy())
    }

    fn fetch<'a>(&'a self, known: Option<&'a str>) -> BoxFuture<'a, Result<Fetched, ExceptionsError>> {
        async move {
            let (version, text) = self.read().await?;
            let Some(known) = known else { return Ok(Fetched::Changed(Document { version, text })) };
            if version == known {
                return Ok(Fetched::Unchanged);
            }
            tokio::time::sleep(self.settle).await;
            let (again, _) = self.read().await?;
            if again != version {
                // Still being written: the next look takes it.
                return Ok(Fetched::Unchanged);
            }
            Ok(Fetched::Changed(Document { version, text }))
        }
        .boxed()
    }
}

/// What [`Watch::refresh`] did.
#[derive(Debug, Clone)]
pub enum Refresh {
    /// The version in force is still the source's.
    Unchanged,
    /// A new version was loaded.
    Reloaded(Exceptions),
    /// The source could not be read, or its new version is not valid: the
    /// previous exceptions stay.
    Kept(ExceptionsError),
}

/// A source and the version of it in force.
pub struct Watch {
    source: Arc<dyn ExceptionsSource>,
    policy: Policy,
    /// The last version seen, loaded or not: a broken version is reported
    /// once, not on every look.
    version: Option<String>,
    /// The set in force and the day its lapsing entries were last reported.
    in_force: Option<(Exceptions, time::Date)>,
}

impl Watch {
    /// A source held to the default [`Policy`].
    pub fn new(source: Arc<dyn ExceptionsSource>) -> Watch {
        Watch { source, policy: Policy::default(), version: None, in_force: None }
    }

    /// Holds the documents to `policy`.
    pub fn with_policy(mut self, policy: Policy) -> Watch {
        self.policy = policy;
        self
    }

    fn parse(&self, text: &str) -> Result<Exceptions, ExceptionsError> {
        Exceptions::parse_under(&self.origin(), text, self.source.format(), &self.policy, today())
    }

    /// Takes `exceptions` as the set in force: counts it and reports the
    /// entries that lapse soon.
    fn put_in_force(&mut self, exceptions: &Exceptions) {
        telemetry::exceptions_loaded(exceptions.entries.len());
        report_expiring(exceptions, today(), self.policy.warn_days);
        self.in_force = Some((exceptions.clone(), today()));
    }

    /// Reports the entries of the set in force that lapse soon, once a day.
    pub fn report_daily(&mut self) {
        if let Some((exceptions, reported)) = &mut self.in_force {
            if *reported != today() {
                *reported = today();
                report_expiring(exceptions, *reported, self.policy.warn_days);
            }
        }
    }

    fn origin(&self) -> String {
        self.source.origin()
    }

    /// The first load, at start-up: any failure is returned.
    pub async fn load(&mut self) -> Result<Exceptions, ExceptionsError> {
        let doc = match self.source.fetch(None).await? {
            Fetched::Changed(doc) => doc,
            Fetched::Unchanged => {
                return Err(ExceptionsError::Read { origin: self.origin(), message: "the source returned no document".into() })
            }
        };
        let exceptions = self.parse(&doc.text)?;
        self.version = Some(doc.version);
        self.put_in_force(&exceptions);
        Ok(exceptions)
    }

    /// Looks at the source and loads a version not seen yet; `force` reads
    /// and loads it whatever its version (SIGHUP). Logs and counts the
    /// outcome.
    pub async fn refresh(&mut self, force: bool) -> Refresh {
        let known = if force { None } else { self.version.as_deref() };
        let doc = match self.source.fetch(known).await {
            Ok(Fetched::Unchanged) => return Refresh::Unchanged,
            Ok(Fetched::Changed(doc)) => doc,
            Err(e) => {
                warn!(error = %e, "exceptions not reloaded; keeping the previous ones");
                telemetry::exceptions_reload_failed(telemetry::ReloadFailure::Unreadable);
                return Refresh::Kept(e);
            }
        };
        let parsed = self.parse(&doc.text);
        self.version = Some(doc.version.clone());
        match parsed {
            Ok(exceptions) => {
                info!(count = exceptions.entries.len(), source = %self.origin(), version = %doc.version, "exceptions reloaded");
                self.put_in_force(&exceptions);
                Refresh::Reloaded(exceptions)
            }
            Err(e) => {
                error!(error = %e, version = %doc.version, "exceptions not reloaded; keeping the previous ones");
                telemetry::exceptions_reload_failed(telemetry::ReloadFailure::Invalid);
                Refresh::Kept(e)
            }
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// The day it is (UTC), for expiries.
fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// Keeps the exceptions current until `stop`: looks at the source every
/// `poll` (none: never) and, with `on_hangup`, whenever SIGHUP arrives
/// (then the document is loaded even if its version did not change), and
/// hands each newly loaded set to `apply`; once a day it reports again the
/// entries that lapse soon.
pub async fn keep_current<F>(mut watch: Watch, poll: Option<Duration>, on_hangup: bool, apply: F, stop: CancellationToken)
where
    F: Fn(Exceptions) + Send,
{
    let mut hangup = if on_hangup {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; exceptions are reloaded only when they change");
                None
            }
        }
    } else {
        None
    };
    let mut ticks = poll.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    // Lapsing entries are reported again each day, whatever the source does.
    let mut hourly = tokio::time::interval_at(tokio::time::Instant::now() + HOUR, HOUR);
    hourly.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            _ = stop.cancelled() => return,
            _ = hourly.tick() => {
                watch.report_daily();
                continue;
            }
            got = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if got.is_none() {
                    hangup = None;
                    continue;
                }
                true
            }
            _ = async {
                match ticks.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => false,
        };
        if let Refresh::Reloaded(exceptions) = watch.refresh(force).await {
            apply(exceptions);
        }
    }
}
