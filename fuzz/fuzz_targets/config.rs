//! config.json as `create` reads it: parse, the up-front MUST checks, and the seccomp compile.
//! Any input must give Ok or Err; a panic, an abort or a hang is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = berth::bundle::parse_config(data) {
        // Formatting is part of the rejection path: the message goes to stderr.
        let _ = e.to_string();
    }
});
