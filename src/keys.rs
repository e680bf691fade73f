//! The IAM access-key model every layer shares: a key's status, a key as
//! IAM lists it, and what IAM says of its last use.
//!
//! Plain data, no AWS types: the AWS adapters translate the SDK's shapes
//! into these, and the decision, the findings and the tests speak only
//! these.

use time::OffsetDateTime;

/// An access key's status as IAM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
    /// Anything else IAM (or an emulator) might say; never counted as active.
    Other(String),
}

impl KeyStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "Active" => Self::Active,
            "Inactive" => Self::Inactive,
            other => Self::Other(other.to_string()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
            Self::Other(s) => s,
        }
    }
}

/// An IAM user as `ListUsers` lists it: its name and its ARN (which has
/// the user's path and the partition in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub(crate) name: String,
    pub(crate) arn: String,
}

/// One access key of a user, as IAM lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub status: KeyStatus,
    pub created_at: Option<OffsetDateTime>,
}

impl AccessKey {
    pub fn is_active(&self) -> bool {
        self.status == KeyStatus::Active
    }
}

/// A user's keys as one `ListAccessKeys` (all pages) returned them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// IAM's own spelling of the user's name (IAM names are
    /// case-insensitive; events may spell them otherwise), when IAM said it.
    pub user_name: Option<String>,
    pub keys: Vec<AccessKey>,
    /// Wall-clock time the listing started: it shows every change made
    /// before then (IAM propagation aside), and none made after.
    pub observed_at: OffsetDateTime,
}

/// When and where a key was last used (`GetAccessKeyLastUsed`); all `None`
/// for a key never used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyUsage {
    pub last_used_at: Option<OffsetDateTime>,
    pub service: Option<String>,
    pub region: Option<String>,
}

/// What `GetAccessKeyLastUsed` says of a key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyLastUsed {
    /// The key's owner.
    pub user_name: Option<String>,
    pub usage: KeyUsage,
}
