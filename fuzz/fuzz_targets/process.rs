//! `exec --process process.json`: parse and check. Any input must give Ok or Err.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = berth::exec::parse_process(data) {
        let _ = e.to_string();
    }
});
