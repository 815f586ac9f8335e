//! `--log`, `--log-format` and `--debug`: records go to the log file (text or JSON lines that
//! containerd parses) and errors and warnings also to stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

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
/// and logging continues there.
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
    if let Some(mut file) = logger.file.as_ref() {
        let line = if logger.json {
            let record = serde_json::json!({
                "level": level.as_str(),
                "msg": msg,
                "time": rfc3339_now(),
            });
            format!("{record}\n")
        } else {
            format!("{} {}: {msg}\n", rfc3339_now(), level.as_str())
        };
        // One write call per record so concurrent writers (parent and child) don't interleave.
        let _ = file.write_all(line.as_bytes());
    }
    if level >= Level::Warn || (logger.debug && logger.file.is_none()) {
        eprintln!("berth: {}: {msg}", level.as_str());
    }
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

/// The one record a failed command leaves: on stderr always, and in the log file if any.
pub fn log_error_record(msg: &str) {
    match LOGGER.get() {
        Some(logger) if logger.file.is_some() => {
            log(Level::Error, msg);
        }
        _ => eprintln!("berth: error: {msg}"),
    }
}
