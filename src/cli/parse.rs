//! Parsing argv, and what happens when that fails: a usage error is an error like any other,
//! so it goes to stderr and, when the command line names one, to the `--log` file where
//! containerd and conmon read errors back.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use berth::logging;
use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use super::Cli;

/// The version text lives for the whole run, as clap wants a `'static` string.
static VERSION: OnceLock<String> = OnceLock::new();

/// Parses the command line. `Err` carries the exit status once help or version was printed
/// (0) or a usage error reported (1).
pub fn parse() -> Result<Cli, ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let version = VERSION.get_or_init(berth::version::text).as_str();
    let matched = Cli::command()
        .version(version)
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let err = match matched {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return Err(ExitCode::SUCCESS);
    }
    let (log, json) = log_flags(&args);
    logging::init(log.as_deref(), json, false);
    let rendered = err.render().to_string();
    logging::log_error_record(first_line(&rendered));
    // The rest of clap's text (usage, hints) helps a person at a terminal.
    let rest = rendered.lines().skip(1).collect::<Vec<_>>().join("\n");
    if !rest.trim().is_empty() {
        eprintln!("{}", rest.trim_end());
    }
    Err(ExitCode::FAILURE)
}

/// clap's first line without its `error: ` prefix (the log record has a level already).
fn first_line(rendered: &str) -> &str {
    let line = rendered.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line)
}

/// `--log FILE`/`--log=FILE` and `--log-format json`/`--log-format=json`, found by hand in a
/// command line clap refused. Anything after `--` is an argument, not a flag.
pub fn log_flags(args: &[OsString]) -> (Option<PathBuf>, bool) {
    let mut log = None;
    let mut json = false;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(a) = a.to_str() else { continue };
        match a {
            "--" => break,
            "--log" => log = it.next().map(PathBuf::from),
            "--log-format" => json = it.next().is_some_and(|v| v == "json"),
            _ => {
                if let Some(v) = a.strip_prefix("--log=") {
                    log = Some(PathBuf::from(v));
                } else if let Some(v) = a.strip_prefix("--log-format=") {
                    json = v == "json";
                }
            }
        }
    }
    (log, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn log_flags_in_both_spellings() {
        assert_eq!(
            log_flags(&args(&[
                "berth",
                "--log",
                "/l.json",
                "--log-format",
                "json",
                "bogus"
            ])),
            (Some(PathBuf::from("/l.json")), true)
        );
        assert_eq!(
            log_flags(&args(&[
                "berth",
                "--log-format=json",
                "--log=/x",
                "create",
                "--nope"
            ])),
            (Some(PathBuf::from("/x")), true)
        );
        assert_eq!(
            log_flags(&args(&["berth", "--log", "/t", "--log-format=text"])),
            (Some(PathBuf::from("/t")), false)
        );
        assert_eq!(
            log_flags(&args(&["berth", "run", "--", "--log", "/no"])),
            (None, false)
        );
        assert_eq!(log_flags(&args(&["berth", "--log"])), (None, false));
    }

    #[test]
    fn clap_error_keeps_its_first_line() {
        assert_eq!(
            first_line("error: unexpected argument\n\nUsage: x"),
            "unexpected argument"
        );
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().version("test").debug_assert();
    }
}
