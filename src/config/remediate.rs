//! `keywatch remediate`: its arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::CommonArgs;

/// `keywatch remediate`: deactivate the least recently used key of each
/// failing user. Dry run unless --apply.
#[derive(Debug, Clone, Args)]
pub struct RemediateArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,

    /// Print the plan and change nothing (the default): one JSON line per
    /// failing user on standard output (the key to deactivate and why, or
    /// why the user is skipped, with the last use of each key), then a
    /// summary.
    #[arg(long, env = "KEYWATCH_REMEDIATE_PLAN", conflicts_with_all = ["apply", "undo"])]
    pub plan: bool,

    /// Carry the plan out: deactivate (never delete) each chosen key, after
    /// listing the user's keys again just before (a user whose keys changed
    /// since the plan is skipped as `changed`). Each action goes to the
    /// journal (--journal) and to the findings bus.
    #[arg(long, env = "KEYWATCH_REMEDIATE_APPLY", conflicts_with = "undo")]
    pub apply: bool,

    /// With --apply: carry out this plan (the JSON lines a --plan printed,
    /// reviewed) instead of planning afresh, in the plan's order. Only its
    /// `deactivate` lines are acted on, each after the same re-check.
    #[arg(long, env = "KEYWATCH_REMEDIATE_FROM_PLAN", value_name = "FILE", requires = "apply")]
    pub(crate) from_plan: Option<PathBuf>,

    /// Re-activate exactly the keys a run's journal says it deactivated; a
    /// key whose state changed since (deleted, re-activated, the user's keys
    /// different) is refused and named.
    #[arg(long, env = "KEYWATCH_REMEDIATE_UNDO", value_name = "JOURNAL")]
    pub undo: Option<PathBuf>,

    /// Take the failing users from the ledger's open violations
    /// (--ledger-table) instead of a scan of every user: a large account's
    /// plan then reads only the users keywatch has seen fail. Each user's
    /// keys are listed again before anything is planned.
    #[arg(long, env = "KEYWATCH_REMEDIATE_FROM_LEDGER", requires = "ledger_table", conflicts_with_all = ["undo", "from_plan"])]
    pub(crate) from_ledger: bool,

    /// Only these users (names separated by commas, any case); unset, every
    /// failing user.
    #[arg(long, env = "KEYWATCH_REMEDIATE_USERS", value_name = "NAMES", value_delimiter = ',')]
    pub(crate) users: Vec<String>,

    /// A key used within this long counts as in use: when more than one
    /// active key of a user was, the user is skipped as `needs_owner`.
    /// `30s`, `15m`, `12h`, `7d`; `0s` counts no use as recent.
    #[arg(long, env = "KEYWATCH_REMEDIATE_RECENT_USE", value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub(crate) recent_use: Duration,

    /// Accounts to remediate first (ids separated by commas), in this
    /// order; then those of --first-tag; then the rest.
    #[arg(long, env = "KEYWATCH_REMEDIATE_FIRST", value_name = "IDS", value_delimiter = ',')]
    pub(crate) first: Vec<String>,

    /// Accounts whose Organizations tag has this value go first (after
    /// --first): `KEY=VALUE`, e.g. `environment=production`. Reads each
    /// account's tags (organizations:ListTagsForResource).
    #[arg(long, env = "KEYWATCH_REMEDIATE_FIRST_TAG", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub(crate) first_tag: Option<(String, String)>,

    /// Deactivations per batch; between batches the run pauses (--pause) or,
    /// on a terminal, asks to go on.
    #[arg(long, env = "KEYWATCH_REMEDIATE_BATCH_SIZE", value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) batch_size: u64,

    /// Pause between batches instead of asking (`30s`, `5m`); unset, a
    /// terminal is asked and anything else goes on at once.
    #[arg(long, env = "KEYWATCH_REMEDIATE_PAUSE", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) pause: Option<Duration>,

    /// Circuit breaker: the run stops after this many deactivations (tried);
    /// run again for the next ones.
    #[arg(long, env = "KEYWATCH_REMEDIATE_MAX_ACTIONS", value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100000))]
    pub(crate) max_actions: u64,

    /// Circuit breaker: the run stops when this many deactivations in a row
    /// failed.
    #[arg(long, env = "KEYWATCH_REMEDIATE_MAX_FAILURES", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) max_failures: u64,

    /// Journal of an --apply run: one JSON line per action with the user's
    /// keys before and after, what --undo reads. Must not exist yet.
    /// Unset: keywatch-remediation-<UTC time>.jsonl in the current directory.
    #[arg(long, env = "KEYWATCH_REMEDIATE_JOURNAL", value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
}

impl RemediateArgs {
    /// Whether anything may be changed (`--apply` or `--undo`).
    pub fn acts(&self) -> bool {
        self.apply || self.undo.is_some()
    }
}

/// `90`, `90s`, `15m`, `12h`, `7d`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 15m, 12h, 7d)"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h or d)")),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(|| format!("{s:?} is too long"))
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE (e.g. environment=production)")),
    }
}
