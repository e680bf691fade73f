//! `Exceptions::parse` on any text, read as YAML, TOML, or either (the
//! format a name without an extension, or an SSM parameter, gets) by the
//! first byte; what it loads is then matched and serialized as the findings
//! use it. Nothing here may panic, whatever the document holds.

#![no_main]

use keywatch::exceptions::{glob_match, Exceptions, Format};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

const FORMATS: [Format; 3] = [Format::Yaml, Format::Toml, Format::Either];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let format = FORMATS[usize::from(first) % FORMATS.len()];
    let text = String::from_utf8_lossy(rest);
    match Exceptions::parse("fuzz", &text, format) {
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
