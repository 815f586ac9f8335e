//! runtimetest: runs inside an OCI container and checks, from the inside,
//! that the runtime applied the config.json it was given.

mod attack;
mod cfg;
mod checks;
mod facts;
mod parse;
mod report;
mod sys;

use report::{out, Report};
use serde_json::Value;
use std::process::ExitCode;

const USAGE: &str = "\
usage: runtimetest [--config PATH] [check|facts|fds|probes|notify TEXT|attack-exe [--secs N] [--trace-exec]]
  check   (default) verify the config from inside the container
  facts   print a JSON object describing this process
  fds     print the open file descriptor numbers on one line
  probes  make the seccomp probe system calls and print how each ended, one per line
  notify  send TEXT (e.g. READY=1) as one datagram to $NOTIFY_SOCKET (sd_notify)
  attack-exe  for N seconds (default 5) try to get a writable handle on the exe of every
          other process in the pid namespace (CVE-2019-5736); never writes. --trace-exec
          (needs CAP_SYS_PTRACE) ptrace-seizes them to catch whatever they exec
options:
  --config PATH   config to check (default /config.json)";

enum Cmd {
    Check,
    Facts,
    Fds,
    Probes,
    Notify(String),
    AttackExe { secs: u64, trace_exec: bool },
}

struct Cli {
    cmd: Cmd,
    config: String,
}

fn parse_cli(args: &[String]) -> Result<Cli, String> {
    let mut cmd = None;
    let mut config = "/config.json".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => {
                config = it.next().ok_or("--config needs a path")?.clone();
            }
            s if s.starts_with("--config=") => {
                config = s["--config=".len()..].to_string();
            }
            "-h" | "--help" | "help" => return Err(String::new()),
            "check" | "runtimetest" if cmd.is_none() => cmd = Some(Cmd::Check),
            "facts" if cmd.is_none() => cmd = Some(Cmd::Facts),
            "fds" if cmd.is_none() => cmd = Some(Cmd::Fds),
            "probes" if cmd.is_none() => cmd = Some(Cmd::Probes),
            "notify" if cmd.is_none() => {
                cmd = Some(Cmd::Notify(
                    it.next().ok_or("notify needs the text to send")?.clone(),
                ))
            }
            "attack-exe" if cmd.is_none() => {
                cmd = Some(Cmd::AttackExe {
                    secs: 5,
                    trace_exec: false,
                })
            }
            "--trace-exec" => match cmd {
                Some(Cmd::AttackExe {
                    ref mut trace_exec, ..
                }) => *trace_exec = true,
                _ => return Err("--trace-exec only goes with attack-exe".into()),
            },
            "--secs" => match cmd {
                Some(Cmd::AttackExe { ref mut secs, .. }) => {
                    *secs = it
                        .next()
                        .and_then(|s| s.parse().ok())
                        .filter(|s| *s <= 600)
                        .ok_or("--secs needs a number of seconds (at most 600)")?;
                }
                _ => return Err("--secs only goes with attack-exe".into()),
            },
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Cli {
        cmd: cmd.unwrap_or(Cmd::Check),
        config,
    })
}

fn load_config(path: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("cannot parse {path}: {e}"))?;
    if !v.is_object() {
        return Err(format!("{path}: top level is not a JSON object"));
    }
    Ok(v)
}

fn main() -> ExitCode {
    // Take the fd list before anything else can open a descriptor.
    let fds = sys::open_fds();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cli = match parse_cli(&args) {
        Ok(c) => c,
        Err(msg) => {
            if msg.is_empty() {
                out(USAGE);
                return ExitCode::SUCCESS;
            }
            eprintln!("runtimetest: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cli.cmd {
        Cmd::AttackExe { secs, trace_exec } => {
            attack::run(secs, trace_exec);
            ExitCode::SUCCESS
        }
        Cmd::Probes => {
            checks::seccomp::print_probes();
            ExitCode::SUCCESS
        }
        Cmd::Notify(text) => {
            let sent = std::env::var("NOTIFY_SOCKET")
                .map_err(|_| "NOTIFY_SOCKET is not set".to_string())
                .and_then(|path| {
                    std::os::unix::net::UnixDatagram::unbound()
                        .and_then(|s| s.send_to(text.as_bytes(), &path))
                        .map_err(|e| format!("send to {path}: {e}"))
                });
            match sent {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    out(&format!("notify: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Fds => {
            let line: Vec<String> = fds.iter().map(i32::to_string).collect();
            out(&line.join(" "));
            ExitCode::SUCCESS
        }
        Cmd::Facts => {
            let v = facts::collect(&fds);
            match serde_json::to_string_pretty(&v) {
                Ok(s) => {
                    out(&s);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("runtimetest: cannot encode facts: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Check => {
            let config = match load_config(&cli.config) {
                Ok(v) => v,
                Err(msg) => {
                    eprintln!("runtimetest: {msg}");
                    return ExitCode::from(2);
                }
            };
            let mut r = Report::default();
            checks::run_all(&config, &mut r);
            r.summary();
            if r.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn cli() {
        let c = parse_cli(&argv(&[]))
            .ok()
            .map(|c| (matches!(c.cmd, Cmd::Check), c.config));
        assert_eq!(c, Some((true, "/config.json".to_string())));
        let c = parse_cli(&argv(&["--config", "/x.json", "facts"])).ok();
        assert!(c.as_ref().is_some_and(|c| matches!(c.cmd, Cmd::Facts)));
        assert_eq!(c.map(|c| c.config).as_deref(), Some("/x.json"));
        let c = parse_cli(&argv(&["fds", "--config=/y"])).ok();
        assert!(c.as_ref().is_some_and(|c| matches!(c.cmd, Cmd::Fds)));
        assert!(parse_cli(&argv(&["--config"])).is_err());
        assert!(parse_cli(&argv(&["bogus"])).is_err());
        assert!(parse_cli(&argv(&["facts", "fds"])).is_err());
        let c = parse_cli(&argv(&["attack-exe", "--secs", "3", "--trace-exec"])).ok();
        assert!(c.is_some_and(|c| matches!(
            c.cmd,
            Cmd::AttackExe {
                secs: 3,
                trace_exec: true
            }
        )));
        assert!(parse_cli(&argv(&["attack-exe", "--secs", "many"])).is_err());
        assert!(parse_cli(&argv(&["fds", "--trace-exec"])).is_err());
    }
}
