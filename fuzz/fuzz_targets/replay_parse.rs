//! `replay::parse` on any bytes: the first byte says whether the rest is
//! gzip-compressed (as a `.gz` name would), the rest is the file. Every
//! message it makes is then parsed as the processor would parse it.
//! Nothing here may panic, whatever the file holds.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, raw)) = data.split_first() else { return };
    let gzip = first & 1 == 1;
    match keywatch::replay::parse(raw, gzip) {
        Ok((records, messages)) => {
            assert!(messages.len() <= records, "{} key events out of {records} records", messages.len());
            for message in &messages {
                let _ = keywatch::decide::triage(keywatch::event::parse(&message.body));
            }
        }
        Err(e) => {
            let _ = e.len();
        }
    }
});
