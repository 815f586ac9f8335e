//! Hook cases (runtime-tools: hooks, hooks_stdin, prestart_fail,
//! poststart_fail, poststop_fail).

use super::{wait_file, Case, Ctx, R};
use crate::runtime::{one_line, read_lossy};
use crate::{ensure, host};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "hooks/hooks",
            run: hooks,
        },
        Case {
            name: "hooks/hooks_stdin",
            run: hooks_stdin,
        },
        Case {
            name: "hooks/prestart_fail",
            run: prestart_fail,
        },
        Case {
            name: "hooks/poststart_fail",
            run: poststart_fail,
        },
        Case {
            name: "hooks/poststop_fail",
            run: poststop_fail,
        },
        Case {
            name: "hooks/poststart_sees_the_process",
            run: poststart_sees_the_process,
        },
        Case {
            name: "hooks/create_container_cwd",
            run: create_container_cwd,
        },
    ]
}

/// Poststart hooks run after the container's process has started: the pid in their state is
/// already the program's (exec'd), not the runtime's init waiting to exec it.
fn poststart_sees_the_process(ctx: &mut Ctx) -> R {
    let log = ctx.tmp.join("poststart-comm");
    let mut ct = ctx.container(&["sleep", "30"])?;
    ct.b.add_hook(
        "poststart",
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!(
            "pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); cat /proc/$pid/comm > {}",
            log.display())]}),
    );
    ct.up()?;
    let comm = read_lossy(&log);
    ensure!(
        comm.trim() == "sleep",
        "poststart ran before the process started: the pid's comm was {comm:?}"
    );
    Ok(())
}

/// createContainer hooks run with the container's root as their working directory, as runc
/// runs them.
fn create_container_cwd(ctx: &mut Ctx) -> R {
    let log = ctx.tmp.join("cc-cwd");
    let mut ct = ctx.container(&["true"])?;
    ct.b.add_hook(
        "createContainer",
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("ls > {}", log.display())]}),
    );
    let o = ct.create();
    ensure!(o.success(), "create: {}", o.brief());
    let listing = read_lossy(&log);
    ensure!(
        listing.lines().any(|l| l == "runtimetest") && listing.lines().any(|l| l == "proc"),
        "createContainer hook's cwd is not the container's root: it listed {:?}",
        one_line(&listing, 200)
    );
    Ok(())
}

/// A host-side hook appending `name` to `log`.
fn append_hook(name: &str, log: &Path) -> Value {
    json!({"path": "/bin/sh",
           "args": ["sh", "-c", format!("echo {name} >> {}", log.display())]})
}

fn lines(p: &Path) -> Vec<String> {
    read_lossy(p)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

fn pos(v: &[String], name: &str) -> Option<usize> {
    v.iter().position(|l| l == name)
}

fn hooks(ctx: &mut Ctx) -> R {
    if Path::new("/shared").exists() {
        return Err(super::Fail::Skip(
            "/shared exists on the host; cannot tell where startContainer ran".into(),
        ));
    }
    let sh = ctx.shared();
    let log = sh.join("hooks.log");
    let mut ct = ctx.container(&["sh", "-c", "echo process >> /shared/hooks.log; sleep 1"])?;
    ct.b.add_shared(&sh);
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        ct.b.add_hook(kind, append_hook(kind, &log));
    }
    // startContainer runs inside the container: only /shared resolves there.
    ct.b.add_hook(
        "startContainer",
        json!({"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /shared/hooks.log"]}),
    );
    let o = ct.create();
    ensure!(o.success(), "create failed: {}", o.brief());
    let l = lines(&log);
    for k in ["prestart", "createRuntime", "createContainer"] {
        ensure!(
            pos(&l, k).is_some(),
            "{k} hook did not run during create (log {l:?})"
        );
    }
    ensure!(
        pos(&l, "createRuntime") < pos(&l, "createContainer")
            && pos(&l, "prestart") < pos(&l, "createContainer"),
        "create hooks out of order: {l:?}"
    );
    for k in ["startContainer", "poststart", "poststop", "process"] {
        ensure!(pos(&l, k).is_none(), "{k} ran before start (log {l:?})");
    }
    let o = ct.start();
    ensure!(o.success(), "start failed: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let l = lines(&log);
    for k in ["startContainer", "process", "poststart"] {
        ensure!(pos(&l, k).is_some(), "{k} missing after start (log {l:?})");
    }
    ensure!(
        pos(&l, "createContainer") < pos(&l, "startContainer")
            && pos(&l, "startContainer") < pos(&l, "process"),
        "startContainer not between createContainer and the process: {l:?}"
    );
    ensure!(
        pos(&l, "poststop").is_none(),
        "poststop ran before delete: {l:?}"
    );
    let o = ct.delete(false);
    ensure!(o.success(), "delete failed: {}", o.brief());
    let l = lines(&log);
    ensure!(
        l.last().map(|s| s.as_str()) == Some("poststop")
            && pos(&l, "poststop") > pos(&l, "poststart"),
        "poststop not last after delete: {l:?}"
    );
    ensure!(
        l.len() == 7,
        "hooks ran an unexpected number of times: {l:?}"
    );
    Ok(())
}

fn hooks_stdin(ctx: &mut Ctx) -> R {
    let sh = ctx.shared();
    let mut ct = ctx.container(&["sleep", "30"])?;
    for kind in ["createRuntime", "poststart", "poststop"] {
        let f = sh.join(format!("{kind}.json"));
        ct.b.add_hook(
            kind,
            json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", f.display())]}),
        );
    }
    ct.up()?;
    let pid = ct.pid()?;
    let o = ct.delete(true);
    ensure!(o.success(), "delete --force: {}", o.brief());
    let bundle = std::fs::canonicalize(&ct.b.dir)?;
    for kind in ["createRuntime", "poststart", "poststop"] {
        let f = sh.join(format!("{kind}.json"));
        wait_file(&f, 3)?;
        let text = read_lossy(&f);
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{kind} hook stdin is not JSON state ({e}): {}",
                one_line(&text, 200)
            )
        })?;
        ensure!(
            v["id"] == ct.id.as_str(),
            "{kind}: id {} (want {})",
            v["id"],
            ct.id
        );
        ensure!(
            v["ociVersion"].is_string(),
            "{kind}: ociVersion missing: {v}"
        );
        ensure!(v["status"].is_string(), "{kind}: status missing: {v}");
        ensure!(
            Path::new(v["bundle"].as_str().unwrap_or("")) == bundle,
            "{kind}: bundle {} (want {})",
            v["bundle"],
            bundle.display()
        );
        if kind != "poststop" {
            ensure!(
                v["pid"].as_i64() == Some(pid),
                "{kind}: pid {} (want {pid})",
                v["pid"]
            );
        }
    }
    Ok(())
}

fn prestart_fail(ctx: &mut Ctx) -> R {
    let sh = ctx.shared();
    let log = sh.join("hooks.log");
    let mut ct = ctx.container(&["sleep", "30"])?;
    ct.b.add_hook("prestart", json!({"path": "/bin/false", "args": ["false"]}));
    ct.b.add_hook("poststop", append_hook("poststop", &log));
    let o = ct.create();
    ensure!(
        o.failed(),
        "create with failing prestart hook: {} (want an error)",
        o.brief()
    );
    ensure!(
        ct.state().is_err() || ct.status()? == "stopped",
        "container not torn down: {:?}",
        ct.state()
    );
    let l = super::leftovers(ctx, &ct.id, &ct.b.dir);
    let l: Vec<String> = l
        .into_iter()
        .filter(|s| !s.starts_with("state dir"))
        .collect();
    ensure!(l.is_empty(), "failed create left: {}", l.join("; "));
    std::thread::sleep(Duration::from_millis(200));
    ensure!(
        lines(&log).contains(&"poststop".to_string()),
        "poststop hook did not run after prestart failure"
    );
    Ok(())
}

fn poststart_fail(ctx: &mut Ctx) -> R {
    let sh = ctx.shared();
    let log = sh.join("hooks.log");
    let mut ct = ctx.container(&["sleep", "30"])?;
    ct.b.add_hook(
        "poststart",
        json!({"path": "/bin/false", "args": ["false"]}),
    );
    ct.b.add_hook("poststop", append_hook("poststop", &log));
    let o = ct.create();
    ensure!(o.success(), "create failed: {}", o.brief());
    let pid = ct.pid()?;
    let o = ct.start();
    ensure!(
        o.failed(),
        "start with failing poststart hook: {} (want an error, like runc)",
        o.brief()
    );
    ensure!(
        super::wait_pid_gone(pid, 3),
        "container process {pid} still alive after poststart failure"
    );
    ensure!(
        ct.state().is_err() || ct.status()? == "stopped",
        "container not torn down: {:?}",
        ct.state()
    );
    ensure!(
        host::cgroup_dirs(&ct.id).is_empty() || ct.state().is_ok(),
        "cgroups left after teardown"
    );
    ensure!(
        lines(&log).contains(&"poststop".to_string()),
        "poststop hook did not run after poststart failure"
    );
    Ok(())
}

fn poststop_fail(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["true"])?;
    ct.b.add_hook("poststop", json!({"path": "/bin/false", "args": ["false"]}));
    ct.up()?;
    ct.wait_status("stopped", 5)?;
    let o = ct.delete(false);
    ensure!(
        o.success(),
        "delete with failing poststop hook: {} (want success)",
        o.brief()
    );
    ensure!(ct.state().is_err(), "state still works after delete");
    ensure!(
        !ctx.rt.root.join(&ct.id).exists(),
        "state dir remains after delete"
    );
    Ok(())
}
