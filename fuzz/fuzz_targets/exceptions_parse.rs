//! `Exceptions::parse` on any text, the file named `.yaml`, `.toml` or
//! without an extension (both formats tried) by the first byte; what it
//! loads is then matched and serialized as the findings use it. Nothing
//! here may panic, whatever the file holds.

#![no_main]

use std::path::Path;

use keywatch::exceptions::{glob_match, Exceptions};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

const NAMES: [&str; 3] = ["exceptions.yaml", "exceptions.toml", "exceptions"];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let path = Path::new(NAMES[usize::from(first) % NAMES.len()]);
    let text = String::from_utf8_lossy(rest);
    match Exceptions::parse(path, &text) {
        Ok(exceptions) => {
            for e in &exceptions.entries {
                // A pattern matches its own text (`*` a run, `?` one char).
                assert!(glob_match(&e.user, &e.user), "{:?} does not match itself", e.user);
                let _ = e.matches("111122223333", "ci-deploy-prod");
                let _ = serde_json::to_string(e);
            }
            for now in [datetime!(2026-06-01 12:00 UTC), datetime!(-9999-01-01 0:00 UTC), datetime!(9999-12-31 23:59:59 UTC)] {
                let _ = exceptions.matching("111122223333", "ci-deploy-prod", now);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
