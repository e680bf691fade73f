//! Approved exceptions: loading (YAML and TOML), validation that names the
//! broken entry, glob matching, expiry.

use std::io::Write;

use keywatch::exceptions::{glob_match, Exceptions};
use time::macros::datetime;

fn file(ext: &str, text: &str) -> tempfile::TempPath {
    let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.into_temp_path()
}

const YAML: &str = r#"
exceptions:
  - account: "111122223333"
    user: "ci-deploy-*"
    reason: "CI deployer key rotation, CHG-1234"
    owner: "platform@example.com"
    expires: 2027-01-31
  - account: "*"
    user: "vendor-?"
    reason: "vendor integration"
    owner: "security@example.com"
    expires: "2026-06-30"
"#;

#[test]
fn yaml_exceptions_match_by_account_glob_and_expiry() {
    let path = file(".yaml", YAML);
    let ex = Exceptions::load(&path).unwrap();
    assert_eq!(ex.entries.len(), 2);
    let now = datetime!(2026-11-28 12:00 UTC);
    let hit = ex.matching("111122223333", "ci-deploy-prod", now).expect("matches");
    assert_eq!(hit.owner, "platform@example.com");
    assert!(ex.matching("444455556666", "ci-deploy-prod", now).is_none(), "other account");
    assert!(ex.matching("111122223333", "ci-deplo", now).is_none());
    // Expired on 2026-06-30: no longer applies.
    assert!(ex.matching("444455556666", "vendor-a", now).is_none());
    assert!(ex.matching("444455556666", "vendor-a", datetime!(2026-06-30 23:59 UTC)).is_some(), "inclusive last day");
    assert!(ex.matching("444455556666", "vendor-ab", datetime!(2026-06-01 0:00 UTC)).is_none());
    // The last day of the first entry is still in force, the next is not.
    assert!(ex.matching("111122223333", "ci-deploy-x", datetime!(2027-01-31 23:00 UTC)).is_some());
    assert!(ex.matching("111122223333", "ci-deploy-x", datetime!(2027-02-01 0:00 UTC)).is_none());
}

#[test]
fn toml_exceptions_load_with_native_dates() {
    let path = file(
        ".toml",
        r#"
[[exceptions]]
account = "111122223333"
user = "alice"
reason = "break-glass"
owner = "secops"
expires = 2027-03-01
"#,
    );
    let ex = Exceptions::load(&path).unwrap();
    assert_eq!(ex.entries.len(), 1);
    assert!(ex.matching("111122223333", "alice", datetime!(2027-03-01 10:00 UTC)).is_some());
    let doc = serde_json::to_value(&ex.entries[0]).unwrap();
    assert_eq!(doc["expires"], "2027-03-01");
}

#[test]
fn a_malformed_entry_is_named() {
    let path = file(
        ".yaml",
        r#"
exceptions:
  - account: "111122223333"
    user: "ok"
    reason: "r"
    owner: "o"
    expires: 2027-01-01
  - account: "111122223333"
    user: "bob"
    reason: "r"
    expires: 2027-01-01
"#,
    );
    let err = Exceptions::load(&path).unwrap_err().to_string();
    assert!(err.contains("entry 2") && err.contains("bob") && err.contains("owner"), "{err}");

    let bad_date = file(".yaml", "exceptions:\n  - {account: \"111122223333\", user: u, reason: r, owner: o, expires: soon}\n");
    let err = Exceptions::load(&bad_date).unwrap_err().to_string();
    assert!(err.contains("entry 1") && err.contains("soon") && err.contains("YYYY-MM-DD"), "{err}");

    let bad_account = file(".yaml", "exceptions:\n  - {account: \"12\", user: u, reason: r, owner: o, expires: 2027-01-01}\n");
    let err = Exceptions::load(&bad_account).unwrap_err().to_string();
    assert!(err.contains("entry 1") && err.contains("12-digit"), "{err}");

    let unknown_field =
        file(".toml", "[[exceptions]]\naccount='111122223333'\nuser='u'\nreason='r'\nowner='o'\nexpires=2027-01-01\nexpiry=1\n");
    let err = Exceptions::load(&unknown_field).unwrap_err().to_string();
    assert!(err.contains("entry 1") && err.contains("expiry"), "{err}");

    let not_yaml = file(".yml", "exceptions: [\n");
    assert!(Exceptions::load(&not_yaml).unwrap_err().to_string().contains("not valid YAML"));
    let wrong_shape = file(".yaml", "exceptions: {a: 1}\n");
    assert!(Exceptions::load(&wrong_shape).unwrap_err().to_string().contains("exceptions` list"));
    assert!(Exceptions::load(std::path::Path::new("/nonexistent/x.yaml")).unwrap_err().to_string().contains("cannot read"));
}

#[test]
fn globs() {
    assert!(glob_match("*", ""));
    assert!(glob_match("*", "anything"));
    assert!(glob_match("ci-*", "ci-"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxbyy"));
    assert!(glob_match("?", "x"));
    assert!(!glob_match("?", ""));
    assert!(!glob_match("alice", "alice2"));
    assert!(glob_match("*@example.com", "svc@example.com"));
}

#[test]
fn the_fixture_files_say_the_same_in_yaml_and_toml() {
    // tests/fixtures/exceptions.{yaml,toml} also seed the exceptions fuzz
    // target (fuzz/seed.sh).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let yaml = Exceptions::load(&dir.join("exceptions.yaml")).unwrap();
    let toml = Exceptions::load(&dir.join("exceptions.toml")).unwrap();
    assert_eq!(yaml.entries.len(), 2);
    assert_eq!(yaml.entries, toml.entries);
}

#[test]
fn user_names_match_in_any_case_as_in_iam() {
    let path = file(
        ".yaml",
        "exceptions:\n  - {account: \"111122223333\", user: \"CI-Deploy-*\", reason: r, owner: o, expires: 2999-01-01}\n  - {account: \"*\", user: Alice, reason: r, owner: o, expires: 2999-01-01}\n",
    );
    let ex = Exceptions::load(&path).unwrap();
    let now = datetime!(2026-11-28 12:00 UTC);
    assert!(ex.matching("111122223333", "ci-deploy-prod", now).is_some());
    assert!(ex.matching("111122223333", "CI-DEPLOY-PROD", now).is_some());
    assert!(ex.matching("444455556666", "alice", now).is_some());
    assert!(ex.matching("444455556666", "ALICE", now).is_some());
    assert!(ex.matching("444455556666", "alice2", now).is_none());
}

#[test]
fn a_source_is_a_file_an_ssm_parameter_or_an_s3_object() {
    use keywatch::exceptions::Format;
    use keywatch::exceptions_source::Location;
    let file = Location::parse("/etc/keywatch/exceptions.yaml").unwrap();
    assert_eq!(file, Location::File("/etc/keywatch/exceptions.yaml".into()));
    assert_eq!(file.to_string(), "file /etc/keywatch/exceptions.yaml");
    assert_eq!(file.format(), Format::Yaml);
    let ssm = Location::parse("ssm:/keywatch/exceptions").unwrap();
    assert_eq!(ssm, Location::Ssm("/keywatch/exceptions".into()));
    assert_eq!(ssm.to_string(), "ssm:/keywatch/exceptions");
    assert_eq!(ssm.format(), Format::Either);
    let s3 = Location::parse("s3://my-bucket/keywatch/exceptions.toml").unwrap();
    assert_eq!(s3, Location::S3 { bucket: "my-bucket".into(), key: "keywatch/exceptions.toml".into() });
    assert_eq!(s3.to_string(), "s3://my-bucket/keywatch/exceptions.toml");
    assert_eq!(s3.format(), Format::Toml);
    for bad in ["ssm:", "ssm://x", "s3://bucket", "s3://bucket/", "s3:///key", "s3:bucket/key", ""] {
        assert!(Location::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn a_document_without_extension_is_read_as_yaml_or_toml_and_its_error_names_the_syntax_it_looks_like() {
    use keywatch::exceptions::Format;
    let yaml = "exceptions:\n  - {account: \"*\", user: u, reason: r, owner: o, expires: 2027-01-01}\n";
    let toml = "[[exceptions]]\naccount = '*'\nuser = 'u'\nreason = 'r'\nowner = 'o'\nexpires = 2027-01-01\n";
    assert_eq!(Exceptions::parse("ssm:/x", yaml, Format::Either).unwrap().entries.len(), 1);
    assert_eq!(Exceptions::parse("ssm:/x", toml, Format::Either).unwrap().entries.len(), 1);
    let err = Exceptions::parse("ssm:/x", "exceptions: [\n", Format::Either).unwrap_err().to_string();
    assert!(err.contains("ssm:/x") && err.contains("not valid YAML"), "{err}");
    let err = Exceptions::parse("ssm:/x", "[[exceptions]]\naccount = \n", Format::Either).unwrap_err().to_string();
    assert!(err.contains("not valid TOML"), "{err}");
}
