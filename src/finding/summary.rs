//! Scan summary: what a scan found in one account, published once per
//! account beside the scan's findings (see the parent module for why it
//! lives here and not in the scan).

use serde::Serialize;

/// `DetailType` of the summary event a scan publishes per account.
pub(crate) const SUMMARY_DETAIL_TYPE: &str = "IAM Access Key Scan Summary";

/// What one account's scan found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanSummary {
    pub account_id: String,
    pub users_checked: usize,
    pub users_failing: usize,
    pub keys_active: usize,
    /// `AccountAccessKeysPresent`: the root user's access keys (CIS 1.4);
    /// `None` when the account summary could not be read (an error).
    pub root_access_keys: Option<u32>,
    pub findings_published: usize,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    pub duration_seconds: f64,
    /// Look-ups and publications that failed; the scan is complete only
    /// when this is 0.
    pub errors: usize,
    pub error_samples: Vec<String>,
}

impl ScanSummary {
    pub fn complete(&self) -> bool {
        self.errors == 0
    }
}
