//! OCSF documents checked against the OCSF 1.6.0 JSON Schema of their class
//! by `tests/ocsf_check.py` (ocsf-json-schema and jsonschema, from the venv
//! that `scripts/python-env.sh` makes).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The venv's Python, beside the emulator.
pub fn venv_python() -> PathBuf {
    let p = super::moto_server_path().with_file_name("python");
    assert!(p.exists(), "the venv's python not found: run scripts/python-env.sh (or scripts/test.sh) first");
    p
}

/// Panics with the checker's report unless every document is a valid OCSF
/// event of its class, version and profiles.
pub fn assert_valid_ocsf(docs: &[Value]) {
    assert!(!docs.is_empty(), "no OCSF document to check");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf_check.py");
    let mut child = Command::new(venv_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/ocsf_check.py");
    {
        let mut stdin = child.stdin.take().unwrap();
        for d in docs {
            writeln!(stdin, "{d}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "OCSF validation failed:\n{report}\ndocuments:\n{}",
        docs.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
    );
    assert!(report.contains(&format!("{} documents valid, 0 invalid", docs.len())), "{report}");
}
