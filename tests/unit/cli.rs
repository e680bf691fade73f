//! The command line: help for every option, one clear line for a missing or
//! invalid setting.

use std::process::Command;

fn keywatch(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keywatch")).args(args).env_clear().envs(env.iter().copied()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn run_help_explains_every_option_and_its_env_var() {
    let (code, out, _) = keywatch(&["run", "--help"], &[]);
    assert_eq!(code, 0);
    for env in [
        "KEYWATCH_QUEUE_URL",
        "KEYWATCH_FINDINGS_BUS",
        "KEYWATCH_METRICS_ADDR",
        "KEYWATCH_WAIT_SECS",
        "KEYWATCH_MAX_MESSAGES",
        "KEYWATCH_FINDING_SOURCE",
        "KEYWATCH_DRAIN_TIMEOUT_SECS",
        "KEYWATCH_LOG_FORMAT",
    ] {
        assert!(out.contains(env), "--help lacks {env}:\n{out}");
    }
    assert!(out.contains("[default: 127.0.0.1:9464]"));
    let (code, out, _) = keywatch(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("run") && out.contains("healthcheck") && out.contains("CIS"));
}

#[test]
fn a_missing_setting_is_one_line_naming_it() {
    let (code, _, err) = keywatch(&["run"], &[("KEYWATCH_FINDINGS_BUS", "findings")]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--queue-url") && err.contains("KEYWATCH_QUEUE_URL"), "{err}");
}

#[test]
fn an_invalid_setting_is_one_line_naming_it() {
    let (code, _, err) = keywatch(&["run"], &[("KEYWATCH_QUEUE_URL", "my-queue"), ("KEYWATCH_FINDINGS_BUS", "findings")]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("my-queue") && err.contains("queue"), "{err}");

    let (code, _, err) =
        keywatch(&["run"], &[("KEYWATCH_QUEUE_URL", "http://127.0.0.1:1/q"), ("KEYWATCH_FINDINGS_BUS", "f"), ("KEYWATCH_WAIT_SECS", "60")]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("60") && err.contains("KEYWATCH_WAIT_SECS"), "{err}");
}

#[test]
fn a_missing_region_stops_start_up_with_what_to_do() {
    let (code, _, err) = keywatch(
        &["run", "--metrics-addr", "127.0.0.1:0"],
        &[
            ("KEYWATCH_QUEUE_URL", "http://127.0.0.1:1/q"),
            ("KEYWATCH_FINDINGS_BUS", "f"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", "/nonexistent"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("AWS_REGION"), "{err}");
}

#[test]
fn the_findings_bus_is_required_only_with_the_eventbridge_sink() {
    // The default sink is eventbridge: no bus, one line naming both settings.
    let (code, _, err) =
        keywatch(&["run", "--metrics-addr", "127.0.0.1:0"], &[("KEYWATCH_QUEUE_URL", "http://127.0.0.1:1/q"), ("AWS_REGION", "us-east-1")]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("KEYWATCH_FINDINGS_BUS") && err.contains("KEYWATCH_SINKS"), "{err}");

    let (code, _, err) = keywatch(
        &["run", "--metrics-addr", "127.0.0.1:0", "--sink", "securityhub", "--sink", "eventbridge"],
        &[("KEYWATCH_QUEUE_URL", "http://127.0.0.1:1/q"), ("AWS_REGION", "us-east-1")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("KEYWATCH_FINDINGS_BUS"), "{err}");

    // Without eventbridge, no bus is needed: start-up goes on (and stops
    // later, at the missing region).
    let (code, _, err) = keywatch(
        &["run", "--metrics-addr", "127.0.0.1:0"],
        &[
            ("KEYWATCH_QUEUE_URL", "http://127.0.0.1:1/q"),
            ("KEYWATCH_SINKS", "stdout,securityhub"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", "/nonexistent"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("KEYWATCH_FINDINGS_BUS") && err.contains("AWS_REGION"), "{err}");
}

#[test]
fn an_unknown_sink_or_format_is_one_line_naming_it() {
    let (code, _, err) = keywatch(
        &["run"],
        &[("KEYWATCH_QUEUE_URL", "http://127.0.0.1:1/q"), ("KEYWATCH_FINDINGS_BUS", "f"), ("KEYWATCH_SINKS", "eventbridge,kafka")],
    );
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("kafka") && err.contains("KEYWATCH_SINKS"), "{err}");

    let (code, _, err) = keywatch(
        &["run"],
        &[("KEYWATCH_QUEUE_URL", "http://127.0.0.1:1/q"), ("KEYWATCH_FINDINGS_BUS", "f"), ("KEYWATCH_FINDING_FORMAT", "cef")],
    );
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cef") && err.contains("KEYWATCH_FINDING_FORMAT"), "{err}");
}

#[test]
fn run_help_explains_the_sinks_and_formats() {
    let (code, out, _) = keywatch(&["run", "--help"], &[]);
    assert_eq!(code, 0);
    for text in ["KEYWATCH_SINKS", "KEYWATCH_FINDING_FORMAT", "eventbridge", "securityhub", "stdout", "ocsf", "native"] {
        assert!(out.contains(text), "--help lacks {text}:\n{out}");
    }
}

#[test]
fn each_subcommand_s_errors_point_at_its_own_help() {
    let (code, _, err) = keywatch(&["run"], &[("KEYWATCH_FINDINGS_BUS", "findings")]);
    assert_eq!(code, 2);
    assert!(err.trim().ends_with("see `keywatch run --help`"), "{err}");
    let (code, _, err) = keywatch(&["scan"], &[("KEYWATCH_SCAN_USERS_IN_FLIGHT", "0")]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("KEYWATCH_SCAN_USERS_IN_FLIGHT") && err.trim().ends_with("see `keywatch scan --help`"), "{err}");
    let (code, _, err) = keywatch(&["--log-format", "json", "replay", "--no-such-flag"], &[]);
    assert_eq!(code, 2);
    assert!(err.trim().ends_with("see `keywatch replay --help`"), "{err}");
    let (code, _, err) = keywatch(&["healthcheck", "--metrics-addr", "nowhere"], &[]);
    assert_eq!(code, 2);
    assert!(err.trim().ends_with("see `keywatch healthcheck --help`"), "{err}");
    let (code, _, err) = keywatch(&["scna"], &[]);
    assert_eq!(code, 2);
    assert!(err.trim().ends_with("see `keywatch --help`"), "{err}");
}

#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    // A worker against a dead endpoint logs (its settings, the failed
    // receives) without AWS; its standard error is a pipe, not a terminal.
    let dead_port = crate::common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(["run", "--log-format", "text", "--metrics-addr", "127.0.0.1:0"])
        .env_clear()
        .envs(crate::common::dead_endpoint_env(dead_port))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.push(line);
            if lines.len() >= 2 {
                break;
            }
        }
        lines
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = reader.join().unwrap();
    let text = lines.join("\n");
    assert!(!lines.is_empty(), "no log line");
    assert!(text.contains("INFO") || text.contains("WARN") || text.contains("ERROR"), "{text}");
    assert!(!text.contains("\x1b["), "colour codes in piped logs: {text:?}");
}

#[test]
fn remediate_help_names_every_guard_setting_and_its_env_var() {
    let (code, out, _) = keywatch(&["remediate", "--help"], &[]);
    assert_eq!(code, 0);
    for env in [
        "KEYWATCH_REMEDIATE_PLAN",
        "KEYWATCH_REMEDIATE_APPLY",
        "KEYWATCH_REMEDIATE_FROM_PLAN",
        "KEYWATCH_REMEDIATE_UNDO",
        "KEYWATCH_REMEDIATE_USERS",
        "KEYWATCH_REMEDIATE_RECENT_USE",
        "KEYWATCH_REMEDIATE_FIRST",
        "KEYWATCH_REMEDIATE_FIRST_TAG",
        "KEYWATCH_REMEDIATE_BATCH_SIZE",
        "KEYWATCH_REMEDIATE_PAUSE",
        "KEYWATCH_REMEDIATE_MAX_ACTIONS",
        "KEYWATCH_REMEDIATE_MAX_FAILURES",
        "KEYWATCH_REMEDIATE_JOURNAL",
        "KEYWATCH_ACCOUNTS",
    ] {
        assert!(out.contains(env), "--help lacks {env}:\n{out}");
    }
    assert!(out.contains("[default: 7d]") && out.contains("[default: 10]"), "{out}");
}

#[test]
fn remediate_refuses_contradicting_or_malformed_settings_in_one_line() {
    for (args, names) in [
        (&["remediate", "--plan", "--apply"][..], "--apply"),
        (&["remediate", "--apply", "--undo", "j.jsonl"][..], "--undo"),
        (&["remediate", "--from-plan", "plan.jsonl"][..], "--apply"),
        (&["remediate", "--recent-use", "7w"][..], "7w"),
        (&["remediate", "--first-tag", "production"][..], "KEY=VALUE"),
        (&["remediate", "--max-actions", "0"][..], "KEYWATCH_REMEDIATE_MAX_ACTIONS"),
    ] {
        let (code, _, err) = keywatch(args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(names) && err.contains("keywatch remediate --help"), "{args:?}: {err}");
    }
}

#[test]
fn remediate_apply_without_a_bus_says_what_to_set() {
    let env =
        [("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x"), ("AWS_EC2_METADATA_DISABLED", "true")];
    let (code, _, err) = keywatch(&["remediate", "--apply"], &env);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("KEYWATCH_FINDINGS_BUS") && err.contains("--plan") && !err.contains("--dry-run"), "{err}");
}
