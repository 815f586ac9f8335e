//! `--log`, `--log-format` and `--debug`, in the record shape logrus gives runc's logs, which
//! containerd, Podman and operators parse:
//! text `time="…" level=debug msg="…"`, JSON `{"level":"debug","msg":"…","time":"…"}`.
//!
//! Where records go: with `--log`, only to that file, because the shim hands `create` the
//! container's own stdio and anything on stderr would land in the container's log. Without
//! `--log`, to stderr. A failed command's error goes to both: one line on stderr for the caller,
//! and a record in the log, where containerd reads it back from.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    file: Option<File>,
    json: bool,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging once, early in main. A log file that cannot be opened is reported on stderr
/// and records go to stderr instead.
pub fn init(path: Option<&Path>, json: bool, debug: bool) {
    let file = path.and_then(
        |p| match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("berth: cannot open log file {}: {e}", p.display());
                None
            }
        },
    );
    let _ = LOGGER.set(Logger { file, json, debug });
}

/// True when debug records are kept: callers can skip building costly messages.
pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.debug)
}

pub fn log(level: Level, msg: &str) {
    let Some(logger) = LOGGER.get() else {
        if level >= Level::Warn {
            eprintln!("berth: {}: {msg}", level.as_str());
        }
        return;
    };
    if level == Level::Debug && !logger.debug {
        return;
    }
    let line = format_record(level, msg, &rfc3339_now(), logger.json);
    match logger.file.as_ref() {
        // One write call per record so concurrent writers (parent and child) don't interleave.
        Some(mut file) => {
            let _ = file.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// One record, newline included.
pub fn format_record(level: Level, msg: &str, time: &str, json: bool) -> String {
    format_record_with(level, msg, time, json, &[])
}

/// A record with extra fields (an error's step, field, call and errno), as logrus writes
/// `WithFields`: keys in order in JSON, `key=value` after the message in text.
pub fn format_record_with(
    level: Level,
    msg: &str,
    time: &str,
    json: bool,
    fields: &[(&str, String)],
) -> String {
    if json {
        // serde_json's map is ordered by key, as logrus's JSON formatter orders them.
        let mut record = serde_json::json!({
            "level": level.as_str(),
            "msg": msg,
            "time": time,
        });
        for (k, v) in fields {
            record[*k] = serde_json::Value::String(v.clone());
        }
        format!("{record}\n")
    } else {
        let mut line = format!(
            "time={} level={} msg={}",
            logfmt_value(time),
            level.as_str(),
            logfmt_value(msg)
        );
        for (k, v) in fields {
            line.push_str(&format!(" {k}={}", logfmt_value(v)));
        }
        line + "\n"
    }
}

/// A value as logrus's text formatter writes it: bare when it is only letters, digits and
/// `-._/@^+`, otherwise double-quoted with Go's escapes (so one record is always one line).
fn logfmt_value(v: &str) -> String {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

pub fn warn(msg: &str) {
    log(Level::Warn, msg);
}

pub fn error(msg: &str) {
    log(Level::Error, msg);
}

/// Runs one step of a verb and, with `--debug`, records how long it took, so a failed
/// container can be diagnosed from the log alone: `create: spawn: done in 3.2ms` or
/// `create: spawn: failed after 1.1ms`. Each step is also a fault point (see `fault`).
pub fn timed<T, E: From<crate::error::Error>>(
    step: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    crate::fault::point(step).map_err(crate::error::Error::from)?;
    if !debug_enabled() {
        return f();
    }
    let start = Instant::now();
    let r = f();
    let took = took(start.elapsed());
    match &r {
        Ok(_) => debug(&format!("{step}: done in {took}")),
        Err(_) => debug(&format!("{step}: failed after {took}")),
    }
    r
}

/// `timed` for a step that cannot fail.
/// Its fault point can only kill (there is no error to return).
pub fn time<T>(step: &str, f: impl FnOnce() -> T) -> T {
    let _ = crate::fault::point(step);
    if !debug_enabled() {
        return f();
    }
    let start = Instant::now();
    let r = f();
    debug(&format!("{step}: done in {}", took(start.elapsed())));
    r
}

/// A duration as a short human reading: `850µs`, `3.2ms`, `1.25s`.
fn took(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// RFC 3339 UTC timestamp with nanoseconds, without pulling in a date crate.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The one record a failed command leaves: one line on stderr always, and a record in the log
/// file if there is one (containerd reads the error from there).
pub fn log_error_record(msg: &str) {
    log_error_record_with(msg, &[]);
}

/// The final error, with the fields a manager can match on without parsing the message.
pub fn log_error_record_with(msg: &str, fields: &[(&str, String)]) {
    eprintln!("berth: error: {msg}");
    if let Some(logger) = LOGGER.get() {
        if let Some(mut file) = logger.file.as_ref() {
            let line = format_record_with(Level::Error, msg, &rfc3339_now(), logger.json, fields);
            let _ = file.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_records_quote_as_logrus_does() {
        assert_eq!(
            format_record(Level::Debug, "create: spawned init 1234 in 3.2ms", "2026-12-03T06:12:00.123456789Z", false),
            "time=\"2026-12-03T06:12:00.123456789Z\" level=debug msg=\"create: spawned init 1234 in 3.2ms\"\n"
        );
        assert_eq!(
            format_record(Level::Warn, "plain", "t", false),
            "time=t level=warning msg=plain\n"
        );
        assert_eq!(
            logfmt_value("a \"b\"\\\n\u{1}"),
            "\"a \\\"b\\\"\\\\\\n\\x01\""
        );
        assert_eq!(logfmt_value(""), "\"\"");
    }

    #[test]
    fn json_records_have_logrus_keys_in_order() {
        assert_eq!(
            format_record(Level::Error, "x \"y\"", "t", true),
            "{\"level\":\"error\",\"msg\":\"x \\\"y\\\"\",\"time\":\"t\"}\n"
        );
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(took(Duration::from_micros(850)), "850µs");
        assert_eq!(took(Duration::from_micros(3210)), "3.2ms");
        assert_eq!(took(Duration::from_millis(1250)), "1.25s");
    }
}
