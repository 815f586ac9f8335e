//! The state record and its lock, seen from outside: a damaged state.json, a lock held by
//! someone else, the init's wait for `start`, and errors that cross from the init.

use super::{Case, Ctx, R};
use crate::host;
use crate::runtime::Opts;
use crate::{bail, ensure};
use serde_json::json;
use std::fs;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "state/truncated_record",
            run: truncated_record,
        },
        Case {
            name: "state/empty_record",
            run: empty_record,
        },
        Case {
            name: "state/garbage_record",
            run: garbage_record,
        },
        Case {
            name: "state/lock_wait_bounded",
            run: lock_wait_bounded,
        },
        Case {
            name: "state/start_closed_without_write",
            run: start_closed_without_write,
        },
        Case {
            name: "errors/init_error_keeps_step_field_errno",
            run: init_error_typed,
        },
    ]
}

const SLEEPER: &[&str] = &["sleep", "600"];

/// A running container whose state.json is then replaced by `damage(original)`: `state` must
/// fail naming the file, `list` must not break, and `delete --force` must still leave nothing:
/// no process, no cgroup, no directory.
fn damaged(ctx: &mut Ctx, damage: fn(&str) -> String) -> R {
    let ct = ctx.container(SLEEPER)?;
    ct.up()?;
    let pid = ct.pid()?;
    let file = ctx.rt.root.join(&ct.id).join("state.json");
    let text = fs::read_to_string(&file)?;
    fs::write(&file, damage(&text))?;
    let o = ctx.rt.exec(&["state", &ct.id]);
    ensure!(
        !o.success(),
        "state of a damaged record succeeded: {}",
        o.stdout
    );
    ensure!(
        o.stderr.contains(&file.display().to_string()),
        "state's error does not name the file: {}",
        o.brief()
    );
    let l = ctx.rt.exec(&["list"]);
    ensure!(
        l.success(),
        "list failed with a damaged record: {}",
        l.brief()
    );
    let o = ct.delete(true);
    ensure!(o.success(), "delete --force failed: {}", o.brief());
    ensure!(
        !ctx.rt.root.join(&ct.id).exists(),
        "the state dir is still there"
    );
    // delete --force waits for the processes it kills.
    ensure!(
        !host::pid_alive(pid),
        "the init {pid} survived delete --force"
    );
    let left = host::cgroup_dirs(&ct.id);
    ensure!(left.is_empty(), "cgroups left: {left:?}");
    Ok(())
}

/// Cut inside the config (where a record is longest): pid and cgroup are still named.
fn truncated_record(ctx: &mut Ctx) -> R {
    damaged(ctx, |t| {
        let cut = t.find("\"config\":").map(|i| i + 40).unwrap_or(t.len() / 2);
        t[..cut.min(t.len())].to_string()
    })
}

fn empty_record(ctx: &mut Ctx) -> R {
    damaged(ctx, |_| String::new())
}

fn garbage_record(ctx: &mut Ctx) -> R {
    damaged(ctx, |_| "\u{1}not json at all".to_string())
}

/// Another process holds the container's lock: a verb waits a bounded time, then fails naming
/// the holder, instead of hanging.
fn lock_wait_bounded(ctx: &mut Ctx) -> R {
    let ct = ctx.container(SLEEPER)?;
    ct.up()?;
    let dir = fs::File::open(ctx.rt.root.join(&ct.id))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "could not take the lock: {}",
            std::io::Error::last_os_error()
        );
    }
    let started = Instant::now();
    let o = ctx.rt.exec_opts(
        &["kill", &ct.id, "KILL"],
        Opts {
            env: vec![("BERTH_LOCK_TIMEOUT".into(), "1".into())],
            timeout: Some(Duration::from_secs(15)),
            ..Default::default()
        },
    );
    let took = started.elapsed();
    ensure!(!o.timed_out, "kill hung on a held lock");
    ensure!(!o.success(), "kill succeeded while the lock was held");
    let me = std::process::id().to_string();
    ensure!(
        o.stderr.contains("busy") && o.stderr.contains(&me),
        "the error does not say busy and name the holder (pid {me}): {}",
        o.brief()
    );
    ensure!(
        ct.status()? == "running",
        "the container changed while locked"
    );
    drop(dir);
    let o = ct.kill("KILL");
    ensure!(
        o.success(),
        "kill after the lock was released: {}",
        o.brief()
    );
    println!("#   kill gave up after {took:?} (BERTH_LOCK_TIMEOUT=1)");
    Ok(())
}

/// Voluntary context switches of a process so far.
fn switches(pid: i64) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A `start` that opens the exec fifo and closes it without writing: the init must go on
/// waiting without spinning (a waiting process does not wake up), and a later `start` works.
fn start_closed_without_write(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sh", "-c", "echo started; sleep 600"])?;
    let o = ct.create();
    ensure!(o.success(), "create: {}", o.brief());
    let pid = ct.pid()?;
    let fifo = ctx.rt.root.join(&ct.id).join("exec.fifo");
    let f = fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblock()
        .open(&fifo)
        .map_err(|e| format!("open {}: {e}", fifo.display()))?;
    drop(f);
    let before = switches(pid).ok_or_else(|| "cannot read the init's switches".to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    let after = switches(pid).ok_or_else(|| "cannot read the init's switches".to_string())?;
    ensure!(
        after - before <= 2,
        "the init woke {} times in 300 ms after the fifo was closed unwritten (it spins)",
        after - before
    );
    ensure!(ct.status()? == "created", "status is not created");
    let o = ct.start();
    ensure!(o.success(), "start after an aborted one: {}", o.brief());
    let end = Instant::now() + Duration::from_secs(5);
    while !ct.stdout_text().contains("started") {
        if Instant::now() > end {
            bail!("the process did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// A failure deep in the init reads, on stderr and in the json log, as: the process, the
/// step, the config field, the failing call and its errno.
fn init_error_typed(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["true"])?;
    ct.b.add_mount(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}));
    let n = ct.b.config["mounts"].as_array().map_or(0, |m| m.len()) - 1;
    ct.b.write()?;
    let log = ctx.tmp.join("create.log");
    let o = ct.create_json_log(&log);
    ensure!(
        !o.success(),
        "create with an unknown filesystem type succeeded"
    );
    let field = format!("mounts[{n}] (/x)");
    for want in ["init: mounts: ", field.as_str(), "mount none", "ENODEV"] {
        ensure!(
            o.stderr.contains(want),
            "stderr lacks {want:?}: {}",
            o.stderr
        );
    }
    // The log's error record carries them as fields of their own.
    let text = fs::read_to_string(&log)?;
    let record: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|r| r["level"] == "error")
        .ok_or_else(|| format!("no error record in the log: {text}"))?;
    for (key, want) in [
        ("process", "init"),
        ("step", "mounts"),
        ("field", field.as_str()),
        ("errno", "ENODEV"),
    ] {
        ensure!(
            record[key] == want,
            "log record's {key} is {} (want {want:?}): {record}",
            record[key]
        );
    }
    ensure!(
        record["call"]
            .as_str()
            .is_some_and(|c| c.starts_with("mount none")),
        "log record's call does not name the mount: {record}"
    );
    Ok(())
}
