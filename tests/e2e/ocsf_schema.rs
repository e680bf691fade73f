//! Every OCSF finding keywatch renders, validated against the OCSF 1.6.0
//! JSON Schema of its class (`tests/ocsf_check.py`, with the schemas and the
//! validator from the venv): a FAILED, a PASSED, a suppressed, a PASSED
//! for a deleted user and a root-key finding. The field-by-field mapping is
//! tested in process in `tests/unit/formats.rs`.

use crate::common::*;
use keywatch::format::ocsf;
use serde_json::Value;

trials! {
    sync every_ocsf_finding_validates_against_the_ocsf_1_6_0_schema,
}

fn every_ocsf_finding_validates_against_the_ocsf_1_6_0_schema() {
    let docs: Vec<Value> = [failed(), passed(), suppressed(), user_deleted(), root()].iter().map(ocsf::compliance_finding).collect();
    assert_valid_ocsf(&docs);
}
