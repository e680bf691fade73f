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
owner = "@secops"
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
    owner: "o@example.com"
    expires: 2027-01-01
  - account: "111122223333"
    user: "bob"
    reason: "r"
    expires: 2027-01-01
"#,
    );
    let err = Exceptions::load(&path).unwrap_err().to_string();
    assert!(err.contains("entry 2") && err.contains("bob") && err.contains("owner"), "{err}");

    let bad_date = file(".yaml", "exceptions:\n  - {account: \"111122223333\", user: u, reason: r, owner: o@example.com, expires: soon}\n");
    let err = Exceptions::load(&bad_date).unwrap_err().to_string();
    assert!(err.contains("entry 1") && err.contains("soon") && err.contains("YYYY-MM-DD"), "{err}");

    let bad_account = file(".yaml", "exceptions:\n  - {account: \"12\", user: u, reason: r, owner: o@example.com, expires: 2027-01-01}\n");
    let err = Exceptions::load(&bad_account).unwrap_err().to_string();
    assert!(err.contains("entry 1") && err.contains("12-digit"), "{err}");

    let unknown_field =
        file(".toml", "[[exceptions]]\naccount='111122223333'\nuser='u'\nreason='r'\nowner='@o'\nexpires=2027-01-01\nexpiry=1\n");
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
        "exceptions:\n  - {account: \"111122223333\", user: \"CI-Deploy-*\", reason: r, owner: \"@o\", expires: 2027-01-01}\n  - {account: \"*\", user: Alice, reason: r, owner: \"@o\", expires: 2027-01-01}\n",
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
    let yaml = "exceptions:\n  - {account: \"*\", user: u, reason: r, owner: \"@o\", expires: 2027-01-01}\n";
    let toml = "[[exceptions]]\naccount = '*'\nuser = 'u'\nreason = 'r'\nowner = '@o'\nexpires = 2027-01-01\n";
    assert_eq!(Exceptions::parse("ssm:/x", yaml, Format::Either).unwrap().entries.len(), 1);
    assert_eq!(Exceptions::parse("ssm:/x", toml, Format::Either).unwrap().entries.len(), 1);
    let err = Exceptions::parse("ssm:/x", "exceptions: [\n", Format::Either).unwrap_err().to_string();
    assert!(err.contains("ssm:/x") && err.contains("not valid YAML"), "{err}");
    let err = Exceptions::parse("ssm:/x", "[[exceptions]]\naccount = \n", Format::Either).unwrap_err().to_string();
    assert!(err.contains("not valid TOML"), "{err}");
}

mod policy {
    use keywatch::exceptions::{expiring, Exceptions, Format, Policy};
    use time::macros::date;

    const TODAY: time::Date = date!(2026 - 12 - 05);

    fn entry(account: &str, user: &str, owner: &str, dates: &str) -> String {
        format!("exceptions:\n  - {{account: \"{account}\", user: \"{user}\", reason: r, owner: \"{owner}\", {dates}}}\n")
    }

    fn check(doc: &str, policy: &Policy) -> Result<Exceptions, String> {
        Exceptions::parse_under("file x.yaml", doc, Format::Yaml, policy, TODAY).map_err(|e| e.to_string())
    }

    fn expiring_on(dates: &str, policy: &Policy) -> Result<Exceptions, String> {
        check(&entry("111122223333", "u", "@team", dates), policy)
    }

    #[test]
    fn an_expiry_is_at_most_the_cap_after_approval_or_after_today() {
        let default = Policy::default();
        assert_eq!(default.max_days, 180);
        // 2026-12-05 + 180 days = 2027-06-03.
        assert!(expiring_on("expires: 2027-06-03", &default).is_ok());
        for far in ["expires: 2027-06-04", "expires: 9999-12-31"] {
            let err = expiring_on(far, &default).unwrap_err();
            assert!(err.contains("entry 1") && err.contains("more than 180 days") && err.contains("KEYWATCH_EXCEPTIONS_MAX_DAYS"), "{err}");
        }
        // From the approval: 2026-12-01 + 180 days = 2027-05-30.
        assert!(expiring_on("approved: 2026-12-01, expires: 2027-05-30", &default).is_ok());
        let err = expiring_on("approved: 2026-12-01, expires: 2027-05-31", &default).unwrap_err();
        assert!(err.contains("after approved 2026-12-01"), "{err}");
        let err = expiring_on("approved: 2027-01-01, expires: 2027-02-01", &default).unwrap_err();
        assert!(err.contains("approved 2027-01-01 is in the future"), "{err}");
        let err = expiring_on("approved: 2026-12-01, expires: 2026-11-01", &default).unwrap_err();
        assert!(err.contains("before approved"), "{err}");
        let err = expiring_on("approved: someday, expires: 2026-12-31", &default).unwrap_err();
        assert!(err.contains("approved \"someday\" is not a date"), "{err}");
        // Already expired: accepted, it simply no longer applies.
        assert!(expiring_on("expires: 2020-01-01", &default).is_ok());
        let longer = Policy { max_days: 400, ..default };
        assert!(expiring_on("expires: 2027-06-04", &longer).is_ok());
        assert!(expiring_on("expires: 9999-12-31", &longer).is_err());
        // TOML's own dates are held to the same cap.
        let toml = "[[exceptions]]\naccount='*'\nuser='u'\nreason='r'\nowner='@t'\napproved=2026-12-01\nexpires=2099-01-01\n";
        assert!(Exceptions::parse_under("x", toml, Format::Toml, &default, TODAY).unwrap_err().to_string().contains("more than 180 days"));
    }

    #[test]
    fn every_account_and_every_user_at_once_is_refused_unless_allowed() {
        let default = Policy::default();
        for user in ["*", "**"] {
            let err = check(&entry("*", user, "@team", "expires: 2026-12-31"), &default).unwrap_err();
            assert!(err.contains("suppress every finding") && err.contains("KEYWATCH_EXCEPTIONS_ALLOW_MATCH_ALL"), "{err}");
        }
        assert!(check(&entry("*", "svc-*", "@team", "expires: 2026-12-31"), &default).is_ok(), "every account, some users");
        assert!(check(&entry("111122223333", "*", "@team", "expires: 2026-12-31"), &default).is_ok(), "one account, every user");
        let allowed = Policy { allow_match_all: true, ..default };
        assert!(check(&entry("*", "*", "@team", "expires: 2026-12-31"), &allowed).is_ok());
    }

    #[test]
    fn an_owner_is_an_address_or_a_team_handle() {
        let default = Policy::default();
        for good in ["team@example.com", "first.last+keys@sub.example.co.uk", "@platform-team", "@example-org/platform_team"] {
            assert!(check(&entry("*", "u", good, "expires: 2026-12-31"), &default).is_ok(), "{good}");
        }
        for bad in ["o", "platform", "a@b", "@", "@org/", "@org/team/x", "x y@example.com", "team@example..com", "@team@example.com"] {
            let err = check(&entry("*", "u", bad, "expires: 2026-12-31"), &default).unwrap_err();
            assert!(err.contains("neither an e-mail address") && err.contains("team handle"), "{bad}: {err}");
        }
    }

    #[test]
    fn exceptions_that_lapse_within_the_warning_days_are_listed() {
        let doc = "exceptions:\n  - {account: \"*\", user: a, reason: r, owner: \"@t\", expires: 2026-12-05}\n  - {account: \"*\", user: b, reason: r, owner: \"@t\", expires: 2026-12-19}\n  - {account: \"*\", user: c, reason: r, owner: \"@t\", expires: 2026-12-20}\n  - {account: \"*\", user: d, reason: r, owner: \"@t\", expires: 2026-12-04}\n";
        let ex = check(doc, &Policy::default()).unwrap();
        let soon: Vec<&str> = expiring(&ex, TODAY, 14).iter().map(|e| e.user.as_str()).collect();
        assert_eq!(soon, ["a", "b"], "today's last day and 14 days on; not 15 days on, not lapsed");
    }

    #[test]
    fn the_policy_comes_from_flags() {
        use keywatch::config::RunArgs;
        let defaults = RunArgs::from_flags("http://queue", "bus", &[]).unwrap();
        assert_eq!(defaults.common.exceptions_policy(), Policy::default());
        let set = RunArgs::from_flags(
            "http://queue",
            "bus",
            &["--exceptions-max-days", "90", "--exceptions-warn-days", "7", "--exceptions-allow-match-all"],
        )
        .unwrap();
        assert_eq!(set.common.exceptions_policy(), Policy { max_days: 90, allow_match_all: true, warn_days: 7 });
        assert!(RunArgs::from_flags("http://queue", "bus", &["--exceptions-max-days", "0"]).is_err());
        assert!(RunArgs::from_flags("http://queue", "bus", &["--exceptions-bucket-owner", "12"]).is_err());
    }
}

/// The emulator ignores ExpectedBucketOwner, so the requests themselves are
/// looked at: both S3 calls name the account that must own the bucket.
#[tokio::test]
async fn the_s3_source_names_the_bucket_owner_it_expects() {
    use aws_sdk_s3::operation::{get_object::GetObjectOutput, head_object::HeadObjectOutput};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use keywatch::aws::s3::S3Object;
    use keywatch::exceptions_source::{ExceptionsSource, Fetched};
    const OWNER: &str = "111122223333";
    let head = mock!(aws_sdk_s3::Client::head_object)
        .match_requests(|r| r.expected_bucket_owner() == Some(OWNER))
        .then_output(|| HeadObjectOutput::builder().e_tag("\"v2\"").build());
    let get = mock!(aws_sdk_s3::Client::get_object).match_requests(|r| r.expected_bucket_owner() == Some(OWNER)).then_output(|| {
        GetObjectOutput::builder().e_tag("\"v2\"").body(aws_sdk_s3::primitives::ByteStream::from_static(b"exceptions: []\n")).build()
    });
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&head, &get]);
    let source = S3Object::new(client, "bucket".into(), "exceptions.yaml".into(), OWNER.into());
    let fetched = source.fetch(Some("\"v1\"")).await.expect("both calls name the owner");
    assert!(matches!(fetched, Fetched::Changed(_)));
    assert_eq!((head.num_calls(), get.num_calls()), (1, 1));
}
