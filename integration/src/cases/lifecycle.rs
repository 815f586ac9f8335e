//! Lifecycle and state cases (runtime-tools: create, start, state, kill,
//! kill_no_effect, killsig, delete, delete_resources,
//! delete_only_create_resources, config_updates_without_affect, pidfile).

use super::{wait_file, wait_pid_gone, Case, Ctx, R};
use crate::runtime::Opts;
use crate::{bail, ensure, host};
use serde_json::json;
use std::time::Duration;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "lifecycle/create",
            run: create,
        },
        Case {
            name: "lifecycle/start",
            run: start,
        },
        Case {
            name: "lifecycle/state",
            run: state,
        },
        Case {
            name: "lifecycle/kill",
            run: kill,
        },
        Case {
            name: "lifecycle/kill_no_effect",
            run: kill_no_effect,
        },
        Case {
            name: "lifecycle/killsig",
            run: killsig,
        },
        Case {
            name: "lifecycle/delete",
            run: delete,
        },
        Case {
            name: "lifecycle/delete_resources",
            run: delete_resources,
        },
        Case {
            name: "lifecycle/delete_only_create_resources",
            run: delete_only_create_resources,
        },
        Case {
            name: "lifecycle/config_updates_without_affect",
            run: config_updates_without_affect,
        },
        Case {
            name: "lifecycle/pidfile",
            run: pidfile,
        },
    ]
}

const LOOP: &str = "while :; do sleep 0.1; done";

fn create(ctx: &mut Ctx) -> R {
    let sh = ctx.shared();
    let mut ct = ctx.container(&["sh", "-c", "touch /shared/ran; exec sleep 30"])?;
    ct.b.add_shared(&sh);
    let o = ct.create();
    ensure!(o.success(), "create failed: {}", o.brief());
    let st = ct.state()?;
    ensure!(
        st["status"] == "created",
        "status after create is {} (want created)",
        st["status"]
    );
    let pid = st["pid"].as_i64().unwrap_or(0);
    ensure!(
        pid > 0,
        "state pid after create is {} (want > 0)",
        st["pid"]
    );
    ensure!(
        host::pid_alive(pid),
        "init pid {pid} from state does not exist"
    );
    std::thread::sleep(Duration::from_millis(300));
    ensure!(!sh.join("ran").exists(), "user program ran before start");
    let o = ct.start();
    ensure!(o.success(), "start failed: {}", o.brief());
    wait_file(&sh.join("ran"), 5).map_err(|e| format!("program did not run after start: {e:?}"))?;
    ct.wait_status("running", 3)
}

fn start(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    let o = ct.create();
    ensure!(o.success(), "create failed: {}", o.brief());
    let o = ct.start();
    ensure!(o.success(), "start failed: {}", o.brief());
    ct.wait_status("running", 3)?;
    let pid = ct.pid()?;
    let o = ct.start();
    ensure!(
        o.failed(),
        "second start on a running container: {} (want an error)",
        o.brief()
    );
    ensure!(
        ct.status()? == "running",
        "status changed after second start"
    );
    ensure!(ct.pid()? == pid, "pid changed after second start");
    ensure!(host::pid_alive(pid), "process died after second start");
    let o = ctx.rt.exec(&["start", &format!("{}-unknown", ctx.base_id)]);
    ensure!(
        o.failed(),
        "start of unknown id: {} (want an error)",
        o.brief()
    );
    Ok(())
}

fn state(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["sleep", "30"])?;
    ct.b.config["annotations"] = json!({"org.berth.test": "yes", "com.example.k": "v"});
    let o = ct.create();
    ensure!(o.success(), "create failed: {}", o.brief());
    let st = ct.state()?;
    ensure!(
        st["ociVersion"].as_str().is_some_and(|s| !s.is_empty()),
        "ociVersion missing: {st}"
    );
    ensure!(
        st["id"] == ct.id.as_str(),
        "id is {} (want {})",
        st["id"],
        ct.id
    );
    ensure!(
        st["status"] == "created",
        "status is {} (want created)",
        st["status"]
    );
    ensure!(st["pid"].as_i64().unwrap_or(0) > 0, "pid is {}", st["pid"]);
    let bundle = std::fs::canonicalize(&ct.b.dir)?;
    let got = st["bundle"].as_str().unwrap_or("");
    ensure!(
        got.starts_with('/') && std::path::Path::new(got) == bundle,
        "bundle is {:?} (want {:?})",
        st["bundle"],
        bundle
    );
    ensure!(st["created"].is_string(), "created field missing: {st}");
    ensure!(st["rootfs"].is_string(), "rootfs field missing: {st}");
    ensure!(
        st["annotations"]["org.berth.test"] == "yes" && st["annotations"]["com.example.k"] == "v",
        "annotations not reported: {}",
        st["annotations"]
    );
    let o = ctx.rt.exec(&["state"]);
    ensure!(
        o.failed(),
        "state without id: {} (want an error)",
        o.brief()
    );
    let o = ctx.rt.exec(&["state", &format!("{}-unknown", ctx.base_id)]);
    ensure!(
        o.failed(),
        "state of unknown id: {} (want an error)",
        o.brief()
    );
    Ok(())
}

fn kill(ctx: &mut Ctx) -> R {
    // Created (not started) container can be killed.
    let ct = ctx.container(&["sleep", "30"])?;
    let o = ct.create();
    ensure!(o.success(), "create failed: {}", o.brief());
    let o = ct.kill("KILL");
    ensure!(o.success(), "kill of created container: {}", o.brief());
    ct.wait_status("stopped", 5)?;

    // Default signal is SIGTERM.
    let sh = ctx.shared();
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        &format!("trap 'echo TERM > /shared/term; exit 0' TERM; {LOOP}"),
    ])?;
    ct.b.add_shared(&sh);
    ct.up()?;
    ct.wait_status("running", 3)?;
    std::thread::sleep(Duration::from_millis(200));
    let o = ctx.rt.exec(&["kill", &ct.id]);
    ensure!(o.success(), "kill without signal: {}", o.brief());
    wait_file(&sh.join("term"), 5)
        .map_err(|_| "default kill signal was not SIGTERM".to_string())?;
    ct.wait_status("stopped", 5)?;

    for sig in ["KILL", "SIGKILL", "9"] {
        let ct = ctx.container(&["sleep", "30"])?;
        ct.up()?;
        let o = ct.kill(sig);
        ensure!(o.success(), "kill {sig}: {}", o.brief());
        ct.wait_status("stopped", 5)
            .map_err(|e| format!("after kill {sig}: {e:?}"))?;
    }
    Ok(())
}

fn kill_no_effect(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["true"])?;
    ct.up()?;
    ct.wait_status("stopped", 5)?;
    let o = ct.kill("KILL");
    ensure!(
        o.failed(),
        "kill on stopped container: {} (want an error)",
        o.brief()
    );
    ensure!(
        ct.status()? == "stopped",
        "state changed after kill of stopped container"
    );
    Ok(())
}

fn killsig(ctx: &mut Ctx) -> R {
    let sh = ctx.shared();
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        &format!("trap 'touch /shared/got-usr1' USR1; trap 'touch /shared/got-hup' HUP; {LOOP}"),
    ])?;
    ct.b.add_shared(&sh);
    ct.up()?;
    std::thread::sleep(Duration::from_millis(300));
    let o = ct.kill("USR1");
    ensure!(o.success(), "kill USR1: {}", o.brief());
    wait_file(&sh.join("got-usr1"), 5).map_err(|_| "USR1 not delivered".to_string())?;
    let o = ct.kill("SIGHUP");
    ensure!(o.success(), "kill SIGHUP: {}", o.brief());
    wait_file(&sh.join("got-hup"), 5).map_err(|_| "HUP not delivered".to_string())?;
    ensure!(
        ct.status()? == "running",
        "container not running after trapped signals"
    );
    Ok(())
}

fn delete(ctx: &mut Ctx) -> R {
    // Running, without --force: error and keeps running.
    let ct = ctx.container(&["sleep", "30"])?;
    ct.up()?;
    let pid = ct.pid()?;
    let o = ct.delete(false);
    ensure!(
        o.failed(),
        "delete of running container without --force: {} (want an error)",
        o.brief()
    );
    ensure!(
        ct.status()? == "running" && host::pid_alive(pid),
        "container not running after refused delete"
    );
    // Stopped: delete works, state errors afterwards.
    let o = ct.kill("KILL");
    ensure!(o.success(), "kill: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let o = ct.delete(false);
    ensure!(o.success(), "delete of stopped container: {}", o.brief());
    ensure!(ct.state().is_err(), "state still works after delete");
    // Running, --force.
    let ct = ctx.container(&["sleep", "30"])?;
    ct.up()?;
    let pid = ct.pid()?;
    let o = ct.delete(true);
    ensure!(
        o.success(),
        "delete --force of running container: {}",
        o.brief()
    );
    ensure!(
        ct.state().is_err(),
        "state still works after delete --force"
    );
    ensure!(
        wait_pid_gone(pid, 3),
        "init pid {pid} still alive after delete --force"
    );
    // Unknown id with --force exits 0.
    let o = ctx
        .rt
        .exec(&["delete", "--force", &format!("{}-unknown", ctx.base_id)]);
    ensure!(
        o.success(),
        "delete --force of unknown id: {} (want exit 0)",
        o.brief()
    );
    // Created container: delete succeeds.
    let ct = ctx.container(&["sleep", "30"])?;
    let o = ct.create();
    ensure!(o.success(), "create failed: {}", o.brief());
    let pid = ct.pid()?;
    let o = ct.delete(false);
    ensure!(o.success(), "delete of created container: {}", o.brief());
    ensure!(
        ct.state().is_err(),
        "state still works after deleting created container"
    );
    ensure!(
        wait_pid_gone(pid, 3),
        "init pid {pid} still alive after delete"
    );
    Ok(())
}

fn delete_resources(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.up()?;
    let pid = ct.pid()?;
    let sd = ctx.rt.root.join(&ct.id);
    ensure!(
        sd.is_dir(),
        "no state dir {} under --root while running",
        sd.display()
    );
    let cg = host::cgroup_dirs(&ct.id);
    ensure!(
        !cg.is_empty(),
        "no cgroup dir for cgroupsPath /berth-it/{} in any hierarchy",
        ct.id
    );
    let o = ct.delete(true);
    ensure!(o.success(), "delete --force: {}", o.brief());
    ensure!(
        !sd.exists(),
        "state dir {} still exists after delete",
        sd.display()
    );
    let cg = host::cgroup_dirs(&ct.id);
    ensure!(cg.is_empty(), "cgroup dirs remain after delete: {cg:?}");
    ensure!(
        wait_pid_gone(pid, 3),
        "init pid {pid} still alive after delete"
    );
    Ok(())
}

fn delete_only_create_resources(ctx: &mut Ctx) -> R {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(ip) = ip else {
        return Err(super::Fail::Skip(
            "no `ip` binary to create a named netns".into(),
        ));
    };
    let name = format!("{}-ns", ctx.base_id);
    let st = std::process::Command::new(ip)
        .args(["netns", "add", &name])
        .status()?;
    ensure!(st.success(), "harness: `ip netns add {name}` failed");
    let (ip2, name2) = (ip.to_string(), name.clone());
    ctx.on_cleanup(move || {
        let _ = std::process::Command::new(ip2)
            .args(["netns", "del", &name2])
            .status();
    });
    let nspath = format!("/run/netns/{name}");
    let want = std::fs::metadata(&nspath).map(|m| std::os::unix::fs::MetadataExt::ino(&m))?;
    let mut ct = ctx.container(&["sleep", "30"])?;
    ct.b.set_namespaces(&[
        ("pid", None),
        ("network", Some(&nspath)),
        ("ipc", None),
        ("uts", None),
        ("mount", None),
    ]);
    ct.up()?;
    let pid = ct.pid()?;
    let got = host::ns_inode(&pid.to_string(), "net");
    ensure!(
        got == Some(want),
        "container net ns {got:?} is not the given netns {want}"
    );
    let o = ct.delete(true);
    ensure!(o.success(), "delete --force: {}", o.brief());
    ensure!(
        std::path::Path::new(&nspath).exists() && !host::mountinfo_mentions(&nspath).is_empty(),
        "pre-existing netns {nspath} did not survive delete"
    );
    let st = std::process::Command::new(ip)
        .args(["netns", "exec", &name, "true"])
        .status()?;
    ensure!(
        st.success(),
        "pre-existing netns {name} unusable after delete"
    );
    Ok(())
}

fn config_updates_without_affect(ctx: &mut Ctx) -> R {
    let sh = ctx.shared();
    let mut ct = ctx.container(&["sh", "-c", "echo original > /shared/out"])?;
    ct.b.add_shared(&sh);
    let o = ct.create();
    ensure!(o.success(), "create failed: {}", o.brief());
    ct.b.set_args(&["sh", "-c", "echo changed > /shared/out"]);
    ct.b.config["hostname"] = json!("changed");
    ct.b.write()?;
    let o = ct.start();
    ensure!(o.success(), "start failed: {}", o.brief());
    wait_file(&sh.join("out"), 5)?;
    ct.wait_status("stopped", 5)?;
    let got = std::fs::read_to_string(sh.join("out"))?;
    ensure!(
        got.trim() == "original",
        "container ran the edited config (output {:?})",
        got.trim()
    );
    Ok(())
}

fn pidfile(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.b.write()?;
    let pf = ctx.tmp.join("init.pid");
    let pfs = pf.to_string_lossy().into_owned();
    let o = ct.create_raw(
        &["--pid-file", &pfs],
        Opts {
            stdout: Some(ct.out.clone()),
            stderr: Some(ct.err.clone()),
            ..Default::default()
        },
    );
    ensure!(o.success(), "create --pid-file failed: {}", o.brief());
    let text = std::fs::read_to_string(&pf).map_err(|e| format!("pid file not written: {e}"))?;
    let Ok(filepid) = text.trim().parse::<i64>() else {
        bail!("pid file content {text:?} is not a pid");
    };
    let pid = ct.pid()?;
    ensure!(filepid == pid, "pid file says {filepid}, state says {pid}");
    ensure!(host::pid_alive(pid), "pid {pid} not alive");
    Ok(())
}
