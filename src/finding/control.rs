//! Control numbering: the two controls keywatch judges, and where each sits
//! in every CIS AWS Foundations version. The benchmark renumbers its
//! controls between versions while keywatch's `control_id` (and so every
//! `finding_id`) stays put; a new version is one more line in each table.

use serde::Serialize;

/// CIS AWS Foundations "Ensure there is only one active access key available
/// for any single IAM user" (1.13 in v1.4.0–v4.0.1, 1.12 in v5.0.0, 2.12 in
/// v6.0.0: see [`CIS_ONE_ACTIVE_KEY`]).
pub const CONTROL_ID: &str = "CIS-AWS-1.13";
pub(crate) const CONTROL_TITLE: &str = "Ensure there is only one active access key available for any single IAM user";
/// CIS AWS Foundations "Ensure no 'root' user account access key exists"
/// (1.4 in v1.4.0–v4.0.1, 1.3 in v5.0.0, 2.3 in v6.0.0: see
/// [`CIS_NO_ROOT_KEY`]): a root key event is judged against this, never
/// against 1.13.
pub const ROOT_CONTROL_ID: &str = "CIS-AWS-1.4";
pub(crate) const ROOT_CONTROL_TITLE: &str = "Ensure no 'root' user account access key exists";
/// The benchmark's name in `compliance[].standard`.
const CIS_STANDARD: &str = "CIS AWS Foundations Benchmark";

/// Where a control sits in one version of a standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ControlRef {
    /// The standard's name, e.g. `CIS AWS Foundations Benchmark`.
    standard: &'static str,
    /// The standard's version, e.g. `1.4.0`.
    pub version: &'static str,
    /// The control's number in that version, e.g. `1.13`.
    pub control: &'static str,
}

impl ControlRef {
    /// `CIS AWS Foundations Benchmark v1.4.0/1.13`: the form Security Hub
    /// uses in `Compliance.RelatedRequirements`.
    pub(crate) fn requirement(&self) -> String {
        format!("{} v{}/{}", self.standard, self.version, self.control)
    }
    /// `CIS AWS Foundations Benchmark v1.4.0`.
    pub(crate) fn standard_version(&self) -> String {
        format!("{} v{}", self.standard, self.version)
    }
}

const fn cis(version: &'static str, control: &'static str) -> ControlRef {
    ControlRef { standard: CIS_STANDARD, version, control }
}

/// "Ensure there is only one active access key (available) for any single
/// IAM user" in each CIS AWS Foundations version that has it (numbering as
/// in the benchmark versions' requirement lists).
pub const CIS_ONE_ACTIVE_KEY: &[ControlRef] = &[
    cis("1.4.0", "1.13"),
    cis("1.5.0", "1.13"),
    cis("2.0.0", "1.13"),
    cis("3.0.0", "1.13"),
    cis("4.0.1", "1.13"),
    cis("5.0.0", "1.12"),
    cis("6.0.0", "2.12"),
];

/// "Ensure no 'root' user account access key exists" in each version.
pub const CIS_NO_ROOT_KEY: &[ControlRef] = &[
    cis("1.4.0", "1.4"),
    cis("1.5.0", "1.4"),
    cis("2.0.0", "1.4"),
    cis("3.0.0", "1.4"),
    cis("4.0.1", "1.4"),
    cis("5.0.0", "1.3"),
    cis("6.0.0", "2.3"),
];

/// The control's place in every CIS version, by keywatch's `control_id`.
pub(crate) fn compliance_of(control_id: &str) -> &'static [ControlRef] {
    match control_id {
        ROOT_CONTROL_ID => CIS_NO_ROOT_KEY,
        _ => CIS_ONE_ACTIVE_KEY,
    }
}
