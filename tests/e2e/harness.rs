//! The harness of the end-to-end test binary (libtest-mimic: the same
//! command line and output as Rust's own test harness). It exists for one
//! reason: whether these tests can run is known only at run time (is the
//! venv there? is `prometheus` on the PATH?), and Rust's own harness can
//! mark a test ignored only when it is compiled. A test that cannot run is
//! reported as ignored, never as passed.

use std::future::Future;
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Trial};

/// Set by `scripts/test.sh`: a missing tool fails the run instead of
/// skipping the tests.
const REQUIRE: &str = "KEYWATCH_REQUIRE_E2E";

/// A test on tokio's multi-threaded runtime with two workers (what
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` gives).
pub fn multi<F: Future<Output = ()> + 'static>(module: &str, name: &str, test: fn() -> F) -> Trial {
    trial(module, name, move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(test())
    })
}

/// A test on tokio's current-thread runtime (what `#[tokio::test]` gives).
pub fn current<F: Future<Output = ()> + 'static>(module: &str, name: &str, test: fn() -> F) -> Trial {
    trial(module, name, move || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(test()))
}

/// A synchronous test.
pub fn sync(module: &str, name: &str, test: fn()) -> Trial {
    trial(module, name, test)
}

fn trial(module: &str, name: &str, test: impl FnOnce() + Send + 'static) -> Trial {
    // `e2e::scan` → `scan::name`, as Rust's harness names a test.
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    Trial::test(format!("{module}::{name}"), move || {
        test();
        Ok(())
    })
}

/// What these tests need that Cargo does not build, each with what to do
/// when it is missing.
fn missing_tools() -> Vec<String> {
    let mut missing = Vec::new();
    let moto = crate::common::moto_server_path();
    if !moto.exists() {
        missing.push(format!("the emulator ({}: run scripts/python-env.sh)", moto.display()));
    }
    let prometheus = std::env::var_os("KEYWATCH_PROMETHEUS").map(PathBuf::from).unwrap_or_else(|| "prometheus".into());
    if !on_path(&prometheus) {
        missing.push(format!("{} (apt-get install prometheus, or set KEYWATCH_PROMETHEUS)", prometheus.display()));
    }
    if !on_path(Path::new("python3")) {
        missing.push("python3".into());
    }
    missing
}

fn on_path(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Runs the trials, or reports them all as ignored (with what is missing)
/// when a tool is missing and the run does not require them.
pub fn run(mut trials: Vec<Trial>) -> ! {
    let args = Arguments::from_args();
    let missing = missing_tools();
    if !missing.is_empty() {
        let what = missing.join("; ");
        if std::env::var_os(REQUIRE).is_some_and(|v| v != "0") {
            eprintln!("error: the end-to-end tests need: {what}");
            std::process::exit(2);
        }
        eprintln!(
            "note: {} end-to-end tests are reported as ignored: missing {what}. scripts/test.sh installs everything and runs them.",
            trials.len()
        );
        trials = trials.into_iter().map(|t| t.with_ignored_flag(true)).collect();
    }
    libtest_mimic::run(&args, trials).exit()
}
