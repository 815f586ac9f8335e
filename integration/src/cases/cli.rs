//! CLI behaviour beyond runtime-tools' lifecycle areas: run, list,
//! pause/resume, stdio, exit codes, logging, spec, fd inheritance.

use super::{Case, Ctx, Fail, R};
use crate::runtime::{one_line, Opts};
use crate::{bail, ensure};
use serde_json::Value;
use std::fs::File;
use std::time::Duration;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "cli/run_exit_status",
            run: run_exit_status,
        },
        Case {
            name: "cli/run_terminal",
            run: run_terminal,
        },
        Case {
            name: "cli/run_detach",
            run: run_detach,
        },
        Case {
            name: "cli/run_killed_by_signal",
            run: run_killed_by_signal,
        },
        Case {
            name: "cli/list",
            run: list,
        },
        Case {
            name: "cli/pause_resume",
            run: pause_resume,
        },
        Case {
            name: "cli/stdio",
            run: stdio,
        },
        Case {
            name: "cli/exit_codes",
            run: exit_codes,
        },
        Case {
            name: "cli/log_json",
            run: log_json,
        },
        Case {
            name: "cli/spec",
            run: spec,
        },
        Case {
            name: "cli/log_routing",
            run: log_routing,
        },
        Case {
            name: "cli/usage_error_logged",
            run: usage_error_logged,
        },
        Case {
            name: "cli/version",
            run: version,
        },
        Case {
            name: "cli/ps_json",
            run: ps_json,
        },
        Case {
            name: "cli/ps_table",
            run: ps_table,
        },
        Case {
            name: "process/fds",
            run: fds,
        },
        Case {
            name: "process/fds_preserve",
            run: fds_preserve,
        },
    ]
}

fn run_exit_status(ctx: &mut Ctx) -> R {
    for code in [0, 3, 42] {
        let ct = ctx.container(&["sh", "-c", &format!("exit {code}")])?;
        let o = ct.run_fg();
        ensure!(
            o.code == Some(code) && !o.timed_out,
            "run of `exit {code}`: {} (want exit {code})",
            o.brief()
        );
        ensure!(
            ct.status().ok().as_deref() != Some("running"),
            "container still running after run returned"
        );
    }
    Ok(())
}

/// `run` with process.terminal and no --console-socket: the runtime proxies a pty, so the
/// process sees a terminal on stdin and stdout and its output reaches the caller.
fn run_terminal(ctx: &mut Ctx) -> R {
    // /dev/console must be the process's own terminal (the pty's slave, bound over it).
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo tty-ok; \
         [ \"$(stat -c %t:%T /dev/console)\" = \"$(stat -Lc %t:%T /proc/self/fd/0)\" ] && echo console-ok; \
         exit 7",
    ])?;
    ct.b.config["process"]["terminal"] = serde_json::json!(true);
    let o = ct.run_fg();
    let out = std::fs::read_to_string(&ct.out).unwrap_or_default();
    ensure!(
        o.code == Some(7) && !o.timed_out,
        "run with a terminal: {} (want exit 7)",
        o.brief()
    );
    ensure!(
        out.contains("tty-ok") || o.stdout.contains("tty-ok"),
        "the process did not see a terminal or its output was lost: {out:?}"
    );
    ensure!(
        out.contains("console-ok") || o.stdout.contains("console-ok"),
        "/dev/console is not the container's terminal: {out:?}"
    );
    Ok(())
}

fn run_detach(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.b.write()?;
    let b = ct.b.dir.to_string_lossy().into_owned();
    let o = ct.rt.exec_opts(
        &["run", "--detach", "--bundle", &b, &ct.id],
        Opts {
            stdout: Some(ct.out.clone()),
            stderr: Some(ct.err.clone()),
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    ensure!(o.success(), "run --detach: {}", o.brief());
    ensure!(
        ct.status()? == "running",
        "status after run --detach is not running"
    );
    Ok(())
}

fn run_killed_by_signal(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.b.write()?;
    let rt = ct.rt.clone();
    let args: Vec<String> = vec![
        "run".into(),
        "--bundle".into(),
        ct.b.dir.to_string_lossy().into_owned(),
        ct.id.clone(),
    ];
    let (out, err) = (ct.out.clone(), ct.err.clone());
    let h = std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        rt.exec_opts(
            &a,
            Opts {
                stdout: Some(out),
                stderr: Some(err),
                timeout: Some(Duration::from_secs(15)),
                ..Default::default()
            },
        )
    });
    let waited = ct.wait_status("running", 5);
    let k = ct.kill("KILL");
    let o = h.join().map_err(|_| "run thread panicked".to_string())?;
    waited?;
    ensure!(k.success(), "kill KILL: {}", k.brief());
    ensure!(
        o.code == Some(137),
        "run of SIGKILLed container: {} (want exit 137)",
        o.brief()
    );
    Ok(())
}

fn list(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.up()?;
    let o = ctx.rt.exec(&["list", "-q"]);
    ensure!(o.success(), "list -q: {}", o.brief());
    ensure!(
        o.stdout.lines().any(|l| l.trim() == ct.id),
        "list -q does not show {}: {:?}",
        ct.id,
        o.stdout
    );
    let o = ctx.rt.exec(&["list", "--format", "json"]);
    ensure!(o.success(), "list --format json: {}", o.brief());
    let v: Value = serde_json::from_str(&o.stdout).map_err(|e| {
        format!(
            "list --format json is not JSON ({e}): {}",
            one_line(&o.stdout, 200)
        )
    })?;
    let arr = v
        .as_array()
        .ok_or_else(|| format!("list json is not an array: {v}"))?;
    let e = arr
        .iter()
        .find(|e| e["id"] == ct.id.as_str())
        .ok_or_else(|| format!("list json has no entry for {}", ct.id))?;
    ensure!(
        e["status"] == "running",
        "list json status is {} (want running)",
        e["status"]
    );
    ensure!(
        e["pid"].as_i64().unwrap_or(0) > 0,
        "list json pid is {}",
        e["pid"]
    );
    Ok(())
}

fn pause_resume(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.up()?;
    let o = ctx.rt.exec(&["pause", &ct.id]);
    ensure!(o.success(), "pause: {}", o.brief());
    ensure!(
        ct.status()? == "paused",
        "status after pause is {:?}",
        ct.status()
    );
    let o = ctx.rt.exec(&["resume", &ct.id]);
    ensure!(o.success(), "resume: {}", o.brief());
    ensure!(
        ct.status()? == "running",
        "status after resume is {:?}",
        ct.status()
    );
    let o = ctx.rt.exec(&["resume", &ct.id]);
    ensure!(
        o.failed(),
        "resume of a running container: {} (want an error)",
        o.brief()
    );
    Ok(())
}

fn stdio(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sh", "-c", "cat; echo out-msg; echo err-msg >&2"])?;
    ct.b.write()?;
    let inp = ctx.tmp.join("stdin.txt");
    std::fs::write(&inp, "hello-stdin\n")?;
    let o = ct.create_raw(
        &[],
        Opts {
            stdin: Some(inp),
            stdout: Some(ct.out.clone()),
            stderr: Some(ct.err.clone()),
            ..Default::default()
        },
    );
    ensure!(o.success(), "create failed: {}", o.brief());
    let o = ct.start();
    ensure!(o.success(), "start failed: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let out = ct.stdout_text();
    let err = ct.stderr_text();
    ensure!(
        out.contains("hello-stdin"),
        "stdin did not reach the container (stdout {out:?})"
    );
    ensure!(
        out.contains("out-msg"),
        "container stdout missing (got {out:?})"
    );
    ensure!(
        err.contains("err-msg"),
        "container stderr missing (got {err:?})"
    );
    ensure!(!out.contains("err-msg"), "stderr went to stdout");
    Ok(())
}

fn exit_codes(ctx: &mut Ctx) -> R {
    let o = ctx.rt.exec(&["no-such-command"]);
    ensure!(o.failed(), "unknown command: {} (want non-zero)", o.brief());
    let unknown = format!("{}-unknown", ctx.base_id);
    for cmd in ["state", "start", "kill", "delete", "pause", "resume"] {
        let o = ctx.rt.exec(&[cmd, &unknown]);
        ensure!(
            o.failed(),
            "{cmd} of unknown id: {} (want non-zero)",
            o.brief()
        );
        let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        ensure!(
            lines.len() == 1,
            "{cmd} of unknown id: want a one-line reason on stderr, got {:?}",
            o.stderr
        );
    }
    Ok(())
}

fn log_json(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["true"])?;
    ct.b.config["root"]["path"] = "no-such-rootfs".into();
    ct.b.write()?;
    let log = ctx.tmp.join("runtime.log");
    let o = ct.create_json_log(&log);
    ensure!(
        o.failed(),
        "create with missing rootfs: {} (want an error)",
        o.brief()
    );
    ensure!(!o.stderr.trim().is_empty(), "no error on stderr");
    let text = std::fs::read_to_string(&log).map_err(|e| format!("log file not written: {e}"))?;
    let mut n = 0;
    let mut err_level = false;
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(l).map_err(|e| format!("log line is not JSON ({e}): {l}"))?;
        for k in ["level", "msg", "time"] {
            ensure!(v[k].is_string(), "log line lacks string {k:?}: {l}");
        }
        err_level |= v["level"] == "error" || v["level"] == "fatal";
        n += 1;
    }
    ensure!(n > 0, "log file is empty");
    ensure!(
        err_level,
        "no error-level line in log: {}",
        one_line(&text, 300)
    );
    Ok(())
}

fn spec(ctx: &mut Ctx) -> R {
    let dir = ctx.dir("specdir");
    let d = dir.to_string_lossy().into_owned();
    let o = ctx.rt.exec(&["spec", "--bundle", &d]);
    ensure!(o.success(), "spec --bundle: {}", o.brief());
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("config.json not written: {e}"))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("spec output does not parse: {e}"))?;
    for k in ["ociVersion", "process", "root", "mounts", "linux"] {
        ensure!(!v[k].is_null(), "spec config lacks {k}");
    }
    ensure!(
        v["root"]["path"] == "rootfs",
        "spec root.path is {}",
        v["root"]["path"]
    );
    // runc's defaults, which scripts edit with jq.
    ensure!(v["process"]["terminal"] == true, "terminal is not true");
    ensure!(
        v["process"]["args"] == serde_json::json!(["sh"]),
        "args are not [sh]"
    );
    ensure!(
        v["process"]["noNewPrivileges"] == true,
        "noNewPrivileges is not true"
    );
    ensure!(v["root"]["readonly"] == true, "root is not read-only");
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for n in ["pid", "network", "ipc", "uts", "mount", "cgroup"] {
        ensure!(ns.contains(&n), "namespaces lack {n}: {ns:?}");
    }
    let rl = ctx.dir("specdir-rootless");
    let r = rl.to_string_lossy().into_owned();
    let o = ctx.rt.exec(&["spec", "--rootless", "--bundle", &r]);
    ensure!(o.success(), "spec --rootless: {}", o.brief());
    let text = std::fs::read_to_string(rl.join("config.json"))?;
    let rv: Value = serde_json::from_str(&text).map_err(|e| format!("rootless spec: {e}"))?;
    ensure!(
        rv["linux"]["uidMappings"].is_array() && text.contains("\"user\""),
        "rootless spec has no user namespace and mappings"
    );
    std::fs::write(&p, "{\"sentinel\": true}")?;
    let o = ctx.rt.exec(&["spec", "--bundle", &d]);
    ensure!(
        o.failed(),
        "spec over an existing config.json: {} (want an error, like runc)",
        o.brief()
    );
    ensure!(
        std::fs::read_to_string(&p)?.contains("sentinel"),
        "spec overwrote an existing config.json"
    );
    Ok(())
}

fn parse_fds(s: &str) -> Vec<i32> {
    let mut v: Vec<i32> = s
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    v.sort();
    v
}

/// Run a container, optionally with preserved fds, and return the fds seen
/// by `sh` itself plus (if available) by `/runtimetest fds`.
fn seen_fds(ctx: &mut Ctx, preserve: usize) -> Result<Vec<(String, Vec<i32>)>, Fail> {
    let mut res = Vec::new();
    let mut argvs: Vec<Vec<&str>> = vec![vec!["sh", "-c", "ls /proc/$$/fd; true"]];
    // A child `ls` lists the shell's fd table without adding its own dir fd.
    if ctx.runtimetest.is_file() {
        argvs.push(vec!["/runtimetest", "fds"]);
    }
    for argv in argvs {
        let ct = ctx.container(&argv)?;
        ct.b.write()?;
        let mut extra = Vec::new();
        for i in 0..preserve {
            let p = ctx.tmp.join(format!("extra-fd-{i}"));
            extra.push(File::create(p)?);
        }
        let n = preserve.to_string();
        let args: Vec<&str> = if preserve > 0 {
            vec!["--preserve-fds", &n]
        } else {
            vec![]
        };
        let o = ct.create_raw(
            &args,
            Opts {
                stdout: Some(ct.out.clone()),
                stderr: Some(ct.err.clone()),
                extra_fds: extra,
                ..Default::default()
            },
        );
        ensure!(o.success(), "create failed: {}", o.brief());
        let o = ct.start();
        ensure!(o.success(), "start failed: {}", o.brief());
        ct.wait_status("stopped", 5)?;
        let out = ct.stdout_text();
        res.push((argv.join(" "), parse_fds(&out)));
    }
    Ok(res)
}

fn fds(ctx: &mut Ctx) -> R {
    let seen = seen_fds(ctx, 0)?;
    for (what, v) in &seen {
        ensure!(
            *v == vec![0, 1, 2],
            "`{what}` saw fds {v:?} (want [0, 1, 2])"
        );
    }
    if !ctx.runtimetest.is_file() {
        bail!(
            "busybox check passed; runtimetest missing ({})",
            ctx.runtimetest.display()
        );
    }
    Ok(())
}

fn fds_preserve(ctx: &mut Ctx) -> R {
    let seen = seen_fds(ctx, 2)?;
    for (what, v) in &seen {
        ensure!(
            *v == vec![0, 1, 2, 3, 4],
            "`{what}` with --preserve-fds 2 saw fds {v:?} (want 0-4)"
        );
    }
    if !ctx.runtimetest.is_file() {
        bail!(
            "busybox check passed; runtimetest missing ({})",
            ctx.runtimetest.display()
        );
    }
    Ok(())
}

/// With --log, debug records go to the file only: the shim gives create the container's own
/// stdio, so anything on stderr would end up in the container's log.
fn log_routing(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.b.write()?;
    let log = ctx.tmp.join("debug.log");
    let b = ct.b.dir.to_string_lossy().into_owned();
    let global = vec![
        "--debug".to_string(),
        "--log".into(),
        log.to_string_lossy().into_owned(),
    ];
    let o = ct.rt.exec_opts(
        &["create", "--bundle", &b, &ct.id],
        Opts {
            global: global.clone(),
            stderr: Some(ct.err.clone()),
            stdout: Some(ct.out.clone()),
            ..Default::default()
        },
    );
    ensure!(o.success(), "create --debug: {}", o.brief());
    for (verb, args) in [
        ("start", vec!["start", ct.id.as_str()]),
        ("kill", vec!["kill", ct.id.as_str(), "9"]),
    ] {
        let o = ct.rt.exec_opts(
            &args,
            Opts {
                global: global.clone(),
                ..Default::default()
            },
        );
        ensure!(o.success(), "{verb}: {}", o.brief());
        ensure!(
            o.stderr.trim().is_empty(),
            "{verb} --debug --log wrote to stderr: {}",
            one_line(&o.stderr, 200)
        );
    }
    ensure!(
        ct.stderr_text().trim().is_empty(),
        "create --debug --log wrote to the container's stderr: {}",
        one_line(&ct.stderr_text(), 300)
    );
    let text = std::fs::read_to_string(&log).map_err(|e| format!("no log file: {e}"))?;
    let debug: Vec<&str> = text.lines().filter(|l| l.contains("level=debug")).collect();
    ensure!(
        !debug.is_empty(),
        "no debug records: {}",
        one_line(&text, 300)
    );
    for l in text.lines() {
        ensure!(
            l.starts_with("time=\"") && l.contains(" level=") && l.contains(" msg="),
            "record not in logrus text shape: {l}"
        );
    }
    Ok(())
}

/// A command line that does not parse still leaves its error in --log (both spellings), and
/// exits 1.
fn usage_error_logged(ctx: &mut Ctx) -> R {
    let l1 = ctx.tmp.join("usage1.json");
    let l2 = ctx.tmp.join("usage2.json");
    let cases = [
        vec![
            "--log".to_string(),
            l1.to_string_lossy().into_owned(),
            "--log-format".into(),
            "json".into(),
        ],
        vec![
            "--log-format=json".to_string(),
            format!("--log={}", l2.to_string_lossy()),
        ],
    ];
    for (global, log) in cases.into_iter().zip([&l1, &l2]) {
        let o = ctx.rt.exec_opts(
            &["create", "--no-such-flag", "x"],
            Opts {
                global,
                ..Default::default()
            },
        );
        ensure!(o.code == Some(1), "bad flag: {} (want exit 1)", o.brief());
        ensure!(!o.stderr.trim().is_empty(), "no error on stderr");
        let text =
            std::fs::read_to_string(log).map_err(|e| format!("usage error not logged: {e}"))?;
        let rec: Value = serde_json::from_str(text.lines().next().unwrap_or_default())
            .map_err(|e| format!("log record is not JSON ({e}): {text}"))?;
        ensure!(rec["level"] == "error", "log record is not an error: {rec}");
        ensure!(
            rec["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "empty error: {rec}"
        );
    }
    let o = ctx.rt.exec(&["--help"]);
    ensure!(o.success(), "--help: {}", o.brief());
    Ok(())
}

/// `-v` in runc's layout: `<name> version X`, `commit: …`, `spec: …` (Docker and Podman parse it).
fn version(ctx: &mut Ctx) -> R {
    for flag in ["-v", "--version"] {
        let o = ctx.rt.exec(&[flag]);
        ensure!(o.success(), "{flag}: {}", o.brief());
        let lines: Vec<&str> = o.stdout.lines().collect();
        ensure!(
            lines.first().is_some_and(|l| l.contains(" version ")),
            "{flag}: first line is not `<name> version X`: {:?}",
            o.stdout
        );
        for p in ["commit: ", "spec: "] {
            ensure!(
                lines.iter().any(|l| l.starts_with(p)),
                "{flag}: no {p:?} line: {:?}",
                o.stdout
            );
        }
    }
    Ok(())
}

fn ps_json(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sh", "-c", "sleep 30 & exec sleep 31"])?;
    ct.up()?;
    let init = ct.pid()?;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let pids = loop {
        let o = ct.rt.exec(&["ps", "--format", "json", &ct.id]);
        ensure!(o.success(), "ps --format json: {}", o.brief());
        let v: Value = serde_json::from_str(o.stdout.trim())
            .map_err(|e| format!("ps json is not JSON ({e}): {}", o.stdout))?;
        let pids: Vec<i64> = v
            .as_array()
            .ok_or_else(|| format!("ps json is not an array: {v}"))?
            .iter()
            .filter_map(|p| p.as_i64())
            .collect();
        if pids.len() >= 2 || std::time::Instant::now() >= end {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(
        pids.contains(&init),
        "ps json {pids:?} lacks the init {init}"
    );
    ensure!(
        pids.len() == 2,
        "ps json {pids:?}: want the init and its sleep"
    );
    let o = ct.kill("KILL");
    ensure!(o.success(), "kill: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let o = ct.rt.exec(&["ps", "--format", "json", &ct.id]);
    ensure!(
        o.failed(),
        "ps of a stopped container: {} (want an error)",
        o.brief()
    );
    let o = ct.delete(false);
    ensure!(o.success(), "delete: {}", o.brief());
    let o = ct.rt.exec(&["ps", "--format", "json", &ct.id]);
    ensure!(
        o.failed(),
        "ps of a deleted container: {} (want an error)",
        o.brief()
    );
    ensure!(
        o.stderr.contains("does not exist"),
        "ps of a deleted container: {:?}",
        o.stderr
    );
    Ok(())
}

fn ps_table(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.up()?;
    let init = ct.pid()?.to_string();
    let o = ct.rt.exec(&["ps", &ct.id]);
    ensure!(o.success(), "ps: {}", o.brief());
    let mut lines = o.stdout.lines();
    let header = lines.next().unwrap_or_default();
    let col = header.split_whitespace().position(|h| h == "PID");
    let Some(col) = col else {
        bail!("ps table has no PID column: {:?}", o.stdout)
    };
    let rows: Vec<&str> = lines.collect();
    ensure!(
        rows.len() == 1 && rows[0].split_whitespace().nth(col) == Some(init.as_str()),
        "ps rows {rows:?}: want only the init {init}"
    );
    // Trailing ps options, hyphens and all.
    let o = ct.rt.exec(&["ps", &ct.id, "-o", "pid,comm"]);
    ensure!(o.success(), "ps ID -o pid,comm: {}", o.brief());
    let lines: Vec<&str> = o.stdout.lines().collect();
    ensure!(
        lines.len() == 2
            && lines[0].split_whitespace().next() == Some("PID")
            && lines[1].split_whitespace().next() == Some(init.as_str())
            && lines[1].contains("sleep"),
        "ps ID -o pid,comm: {:?}",
        o.stdout
    );
    Ok(())
}
