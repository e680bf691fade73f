//! Shared argument groups: the settings that more than one subcommand
//! flattens in (where findings go, the accounts and IAM limits, how an event
//! is checked), so that `run`, `scan` and `replay` spell them alike.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::exceptions_source::Location;
use crate::format::FindingFormat;

/// A finding sink (`--sink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum SinkKind {
    /// PutEvents to the findings bus.
    #[value(name = "eventbridge")]
    EventBridge,
    /// BatchImportFindings (ASFF) into the worker's own account.
    #[value(name = "securityhub")]
    SecurityHub,
    /// JSON lines on standard output.
    Stdout,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::EventBridge => "eventbridge",
            SinkKind::SecurityHub => "securityhub",
            SinkKind::Stdout => "stdout",
        }
    }
}

/// Settings every command that acts on IAM shares: where findings go, the
/// accounts keywatch may act in and how, IAM's limits, the exceptions.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// EventBridge bus (name or ARN) that findings are published to.
    /// Required when the `eventbridge` sink is selected (the default),
    /// unless --dry-run.
    #[arg(long, env = "KEYWATCH_FINDINGS_BUS", value_name = "BUS", value_parser = parse_non_empty)]
    pub findings_bus: Option<String>,

    /// Where findings go; repeat the flag, or separate with commas in the
    /// variable (`eventbridge,securityhub`). `eventbridge`: PutEvents to
    /// --findings-bus. `securityhub`: BatchImportFindings in ASFF, into the
    /// worker's own account and region (Security Hub enabled there).
    /// `stdout`: one JSON line per finding. A message is acknowledged only
    /// when every sink accepted its finding.
    #[arg(long = "sink", env = "KEYWATCH_SINKS", value_name = "SINK", value_enum, value_delimiter = ',', default_value = "eventbridge")]
    sinks: Vec<SinkKind>,

    /// Document the `eventbridge` and `stdout` sinks publish: `native`
    /// (keywatch's finding) or `ocsf` (an OCSF 1.6.0 Compliance Finding).
    /// Security Hub always gets ASFF.
    #[arg(long, env = "KEYWATCH_FINDING_FORMAT", value_name = "FORMAT", value_enum, default_value_t = FindingFormat::Native)]
    pub(crate) finding_format: FindingFormat,

    /// `Source` of the published finding events. Rules on the findings bus
    /// match on it.
    #[arg(long, env = "KEYWATCH_FINDING_SOURCE", value_name = "SOURCE", default_value = "keywatch", value_parser = parse_non_empty)]
    pub(crate) finding_source: String,

    /// IAM requests per second per account (token bucket, also the burst);
    /// halved on throttling, recovered on success. 0 turns limiting off.
    #[arg(long, env = "KEYWATCH_IAM_RATE_PER_ACCOUNT", value_name = "RPS", default_value_t = 20.0)]
    pub(crate) iam_rate_per_account: f64,

    /// Attempts per IAM call (throttling, 5xx and timeouts are retried with
    /// exponential backoff and full jitter).
    #[arg(long, env = "KEYWATCH_IAM_MAX_ATTEMPTS", value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) iam_max_attempts: u32,

    /// Approved exceptions: a file path, `ssm:<parameter name>` (SSM
    /// Parameter Store) or `s3://<bucket>/<key>`, holding YAML or TOML
    /// entries with account, user (glob, any case), reason, owner and expiry
    /// date (see docs/configuration.md). A matching unexpired exception marks
    /// a FAILED finding `suppressed`; it is still published. Reloaded when it
    /// changes (see --exceptions-poll-secs) and on SIGHUP; a broken version
    /// keeps the previous exceptions.
    #[arg(long = "exceptions", env = "KEYWATCH_EXCEPTIONS_FILE", value_name = "FILE|ssm:NAME|s3://BUCKET/KEY", value_parser = Location::parse)]
    pub(crate) exceptions: Option<Location>,

    /// How often to look for a new version of the exceptions, in seconds (a
    /// file's content, the SSM parameter's version, the S3 object's ETag); 0
    /// looks only on SIGHUP.
    #[arg(long, env = "KEYWATCH_EXCEPTIONS_POLL_SECS", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86400))]
    exceptions_poll_secs: u64,

    /// The latest an exception may expire, in days after its `approved`
    /// date (or, without one, after the day the exceptions are loaded); an
    /// entry that expires later is refused (1–3650).
    #[arg(long, env = "KEYWATCH_EXCEPTIONS_MAX_DAYS", value_name = "DAYS", default_value_t = crate::exceptions::DEFAULT_MAX_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    exceptions_max_days: u32,

    /// How many days before it lapses an exception is logged (once a day)
    /// and counted in keywatch_expiring_exceptions (0–365).
    #[arg(long, env = "KEYWATCH_EXCEPTIONS_WARN_DAYS", value_name = "DAYS", default_value_t = crate::exceptions::DEFAULT_WARN_DAYS, value_parser = clap::value_parser!(u32).range(0..=365))]
    exceptions_warn_days: u32,

    /// Accept an exception with account "*" and user "*", which suppresses
    /// every finding (refused otherwise).
    #[arg(long, env = "KEYWATCH_EXCEPTIONS_ALLOW_MATCH_ALL")]
    exceptions_allow_match_all: bool,

    /// Account that must own the bucket of an `s3://` exceptions source
    /// (sent as ExpectedBucketOwner, so a bucket of the same name in
    /// another account is never read). Unset: the worker's own account.
    #[arg(long, env = "KEYWATCH_EXCEPTIONS_BUCKET_OWNER", value_name = "ACCOUNT_ID", value_parser = parse_account_id)]
    pub(crate) exceptions_bucket_owner: Option<String>,

    /// Accounts keywatch may act in besides its own: account ids separated by
    /// commas, or `organization` (the organisation's ACTIVE accounts, from
    /// Organizations ListAccounts). An event for any other account is
    /// acknowledged and counted (outcome foreign_account); no role is
    /// assumed there. Unset: only the worker's own account.
    #[arg(long, env = "KEYWATCH_ACCOUNTS", value_name = "IDS|organization")]
    pub(crate) accounts: Option<crate::accounts::Scope>,

    /// Role name to assume in member accounts: IAM calls for an account
    /// other than the worker's own go to arn:<partition>:iam::<account>:role/<NAME>,
    /// the partition that of the worker's region (aws-cn for cn-*, aws-us-gov
    /// for us-gov-*, aws for the commercial regions).
    /// Needs KEYWATCH_ACCOUNTS. Unset, every call uses the worker's own
    /// credentials.
    #[arg(long, env = "KEYWATCH_MEMBER_ROLE", value_name = "NAME", value_parser = parse_non_empty)]
    pub(crate) member_role: Option<String>,

    /// External id that the member role's trust policy requires.
    #[arg(long, env = "KEYWATCH_MEMBER_ROLE_EXTERNAL_ID", value_name = "ID", requires = "member_role")]
    pub(crate) member_role_external_id: Option<String>,

    /// DynamoDB table of the ledger of findings (the central stack's output
    /// LedgerTableName): one item per finding, shared by every replica, so
    /// that an older IAM answer never overwrites a newer one across replicas
    /// and restarts, scans close the open violations no longer failing, and
    /// `keywatch findings` can say who fails now. Unset: the last word is
    /// kept per process, and only what events and scans publish closes a
    /// violation.
    #[arg(long, env = "KEYWATCH_LEDGER_TABLE", value_name = "TABLE", value_parser = parse_non_empty)]
    pub ledger_table: Option<String>,

    /// Region to sign IAM requests with (IAM is global; us-east-1 in the
    /// aws partition).
    #[arg(long, env = "KEYWATCH_IAM_REGION", value_name = "REGION", default_value = "us-east-1")]
    pub(crate) iam_region: String,
}

impl CommonArgs {
    pub(crate) fn exceptions_poll(&self) -> Option<Duration> {
        (self.exceptions_poll_secs > 0).then(|| Duration::from_secs(self.exceptions_poll_secs))
    }

    /// What the exceptions documents are held to.
    pub fn exceptions_policy(&self) -> crate::exceptions::Policy {
        crate::exceptions::Policy {
            max_days: self.exceptions_max_days,
            allow_match_all: self.exceptions_allow_match_all,
            warn_days: self.exceptions_warn_days,
        }
    }

    /// The selected sinks, each once, in the order first named.
    pub fn sinks(&self) -> Vec<SinkKind> {
        let mut out = Vec::new();
        for s in &self.sinks {
            if !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }
}

/// How an event is checked against IAM (`run` and `replay`).
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// IAM propagation window, in seconds. For an event younger than this, a
    /// listing that does not show the event's change yet is re-read and,
    /// failing that, the event's own key state is counted (the finding says
    /// so, and is re-checked once the window has passed). For an older
    /// event, the listing is the truth.
    #[arg(long, env = "KEYWATCH_CONSISTENCY_WINDOW_SECS", value_name = "SECS", default_value_t = 120)]
    pub(crate) consistency_window_secs: u64,

    /// Total time, in milliseconds, spent re-reading a listing that does not
    /// show a fresh event's change yet (doubling pauses from 100 ms).
    #[arg(long, env = "KEYWATCH_RELIST_BUDGET_MS", value_name = "MS", default_value_t = 2000)]
    pub(crate) relist_budget_ms: u64,

    /// Messages checked at once across all receive loops (bounds IAM calls
    /// in flight).
    #[arg(long, env = "KEYWATCH_MAX_CONCURRENT_CHECKS", value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) max_concurrent_checks: u64,

    /// How long a key's last-use answer (GetAccessKeyLastUsed) is reused, in
    /// seconds; 0 asks every time.
    #[arg(long, env = "KEYWATCH_LAST_USED_CACHE_SECS", value_name = "SECS", default_value_t = 600)]
    pub(crate) last_used_cache_secs: u64,

    /// How long a user's key listing may serve events that happened before
    /// it started, in seconds; 0 lists for every event. From a backlog, a
    /// user's events then share one ListAccessKeys: the listing already shows
    /// their changes, and a change after it has its own event, which always
    /// lists again.
    #[arg(long, env = "KEYWATCH_LISTING_REUSE_SECS", value_name = "SECS", default_value_t = 300)]
    pub(crate) listing_reuse_secs: u64,

    /// Rotation grace (e.g. `15m`, `10d`; at most 90d): a second key that
    /// its own user created (or a --rotation-principals principal), younger
    /// than this (IAM's CreateDate), is a rotation under way: its FAILED is
    /// LOW with rotation_in_progress, and a re-check on the queue when the
    /// grace ends raises it to the normal severity if two keys are still
    /// active. A key created by anyone else gets no grace. Unset: off.
    #[arg(long, env = "KEYWATCH_ROTATION_GRACE", value_name = "DURATION", value_parser = parse_grace)]
    pub(crate) rotation_grace: Option<Duration>,

    /// Principals whose second keys also get the rotation grace (a rotation
    /// pipeline's role), and are never quarantined: ARNs, `*` and `?` as
    /// wildcards, separated by commas (e.g.
    /// `arn:aws:sts::*:assumed-role/key-rotator/*`).
    #[arg(long, env = "KEYWATCH_ROTATION_PRINCIPALS", value_name = "ARN", value_delimiter = ',', value_parser = parse_principal)]
    pub(crate) rotation_principals: Vec<String>,

    /// Within the rotation grace, publish nothing rather than a LOW finding
    /// (counted as outcome rotation_in_progress); the re-check when the
    /// grace ends still raises it. Needs --rotation-grace.
    #[arg(long, env = "KEYWATCH_ROTATION_GRACE_QUIET", requires = "rotation_grace")]
    pub(crate) rotation_grace_quiet: bool,
}

impl CheckArgs {
    /// The rotation grace's settings; `None` when it is off.
    pub(crate) fn rotation(&self) -> Option<crate::decide::Rotation> {
        Some(crate::decide::Rotation {
            grace: self.rotation_grace?,
            principals: self.rotation_principals.clone(),
            quiet: self.rotation_grace_quiet,
        })
    }
}

/// The longest rotation grace: longer is no rotation.
const MAX_ROTATION_GRACE: Duration = Duration::from_secs(90 * 86400);

fn parse_grace(s: &str) -> Result<Duration, String> {
    match super::remediate::parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than 0 (leave it unset to turn the grace off)".into()),
        d if d > MAX_ROTATION_GRACE => Err(format!("{s:?} is longer than 90d")),
        d => Ok(d),
    }
}

fn parse_principal(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with("arn:") {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an ARN (arn:...; * and ? as wildcards)"))
    }
}

pub(super) fn parse_account_id(s: &str) -> Result<String, String> {
    let s = s.trim();
    if crate::event::is_account_id(s) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a 12-digit account id"))
    }
}

pub(super) fn parse_non_empty(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}
