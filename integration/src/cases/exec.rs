//! `exec` (what containerd's shim, conmon and `docker exec` send) and `kill`'s contract with the
//! managers. Every check looks from outside: the exec'd process's own view, /proc on the host,
//! `state`.

use super::{wait_file, Case, Ct, Ctx, R};
use crate::runtime::{Opts, Out};
use crate::{bail, ensure, host};
use serde_json::json;
use std::fs;
use std::time::Duration;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "exec/stdout_and_status",
            run: stdout_and_status,
        },
        Case {
            name: "exec/namespaces_and_cgroup",
            run: namespaces_and_cgroup,
        },
        Case {
            name: "exec/process_json",
            run: process_json,
        },
        Case {
            name: "exec/flags",
            run: flags,
        },
        Case {
            name: "exec/security_of_the_container",
            run: security,
        },
        Case {
            name: "exec/detach_pid_file",
            run: detach_pid_file,
        },
        Case {
            name: "exec/paused_and_stopped",
            run: paused_and_stopped,
        },
        Case {
            name: "exec/fds",
            run: fds,
        },
        Case {
            name: "exec/sub_cgroup",
            run: sub_cgroup,
        },
        Case {
            name: "exec/user_namespace",
            run: user_namespace,
        },
        Case {
            name: "config/no_mount_namespace",
            run: no_mount_namespace,
        },
        Case {
            name: "cli/sd_notify",
            run: sd_notify,
        },
        Case {
            name: "process/cwd_entered_once",
            run: cwd_entered_once,
        },
        Case {
            name: "process/terminal_owned_by_user",
            run: terminal_owned_by_user,
        },
        Case {
            name: "mounts/tmpcopyup",
            run: tmpcopyup,
        },
        Case {
            name: "seccomp/profile_refusing_close_range",
            run: profile_refusing_close_range,
        },
        Case {
            name: "exec/forwards_signals",
            run: forwards_signals,
        },
        Case {
            name: "cli/listen_fds",
            run: listen_fds,
        },
        Case {
            name: "process/no_signal_ignored",
            run: no_signal_ignored,
        },
        Case {
            name: "kill/contract",
            run: kill_contract,
        },
        Case {
            name: "kill/shared_pid_namespace",
            run: kill_shared_pid_ns,
        },
    ]
}

const SLEEPER: &[&str] = &["sleep", "600"];

/// `run` of `ct` exec'd by a shell (so the shell's pid, traps and redirections are the
/// runtime's): `sh -c "BEFORE exec RUNTIME ... run ... ID AFTER"`.
fn run_from_shell(ct: &Ct, before: &str, after: &str) -> std::io::Result<std::process::Output> {
    let script = format!(
        "{before} exec {} --root {} run --bundle {} {} {after}",
        ct.rt.path.display(),
        ct.rt.root.display(),
        ct.b.dir.display(),
        ct.id
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .output()
}

/// Takes namespace `kind` out of the container's config: it then shares berth's.
fn without_namespace(ct: &mut Ct, kind: &str) -> R {
    let keep: Vec<serde_json::Value> = ct.b.config["linux"]["namespaces"]
        .as_array()
        .ok_or_else(|| "the config has no namespace list".to_string())?
        .iter()
        .filter(|n| n["type"] != kind)
        .cloned()
        .collect();
    ct.b.config["linux"]["namespaces"] = json!(keep);
    Ok(())
}

fn exec(ct: &Ct, args: &[&str]) -> Out {
    let mut a = vec!["exec"];
    a.extend_from_slice(args);
    ct.rt.exec(&a)
}

/// `exec ID args...` with the id in place.
fn exec_in(ct: &Ct, flags: &[&str], argv: &[&str]) -> Out {
    let mut a: Vec<&str> = flags.to_vec();
    a.push(&ct.id);
    a.extend_from_slice(argv);
    exec(ct, &a)
}

/// A container running `sleep 600`, set up by `setup` first.
pub(super) fn running(ctx: &mut Ctx, setup: impl FnOnce(&mut Ct)) -> Result<Ct, super::Fail> {
    let mut ct = ctx.container(SLEEPER)?;
    setup(&mut ct);
    ct.up()?;
    ct.wait_status("running", 5)?;
    Ok(ct)
}

fn stdout_and_status(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let o = exec_in(&ct, &[], &["sh", "-c", "echo out-$((6*7))"]);
    ensure!(o.success(), "exec echo: {}", o.brief());
    ensure!(o.stdout.trim() == "out-42", "exec stdout: {:?}", o.stdout);
    let o = exec_in(&ct, &[], &["sh", "-c", "exit 7"]);
    ensure!(o.code == Some(7), "exec exit 7: {} (want 7)", o.brief());
    // Killed by a signal: 128+n, as a shell reports it.
    let o = exec_in(&ct, &[], &["sh", "-c", "kill -9 $$"]);
    ensure!(
        o.code == Some(137),
        "exec killed by 9: {} (want 137)",
        o.brief()
    );
    let o = exec_in(&ct, &[], &["/no/such/program"]);
    ensure!(
        o.failed(),
        "exec of a missing program: {} (want an error)",
        o.brief()
    );
    ensure!(
        ct.status()? == "running",
        "the container stopped after execs"
    );
    Ok(())
}

fn ns_link(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The exec'd process is in every namespace of the init, the pid namespace included (it must
/// be forked after joining), and in the init's cgroups.
fn namespaces_and_cgroup(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let init = ct.pid()?.to_string();
    let script =
        "for n in pid mnt net ipc uts cgroup; do echo $n=$(readlink /proc/self/ns/$n); done; \
                  echo ppid=$PPID; echo self=$$";
    let o = exec_in(&ct, &[], &["sh", "-c", script]);
    ensure!(o.success(), "exec: {}", o.brief());
    for n in ["pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        let want = format!("{n}={}", ns_link(&init, n));
        ensure!(
            o.stdout.lines().any(|l| l == want),
            "exec'd process not in the init's {n} namespace: want {want}, got {:?}",
            o.stdout
        );
    }
    // Detached, so its host pid can be inspected.
    let pidfile = ctx.tmp.join("exec-ns.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    let o = exec_in(&ct, &["--detach", "--pid-file", &pf], SLEEPER);
    ensure!(o.success(), "exec --detach: {}", o.brief());
    let pid = fs::read_to_string(&pidfile)?.trim().to_string();
    let cg = |p: &str| fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
    ensure!(
        !cg(&pid).is_empty() && cg(&pid) == cg(&init),
        "exec'd process's cgroups differ from the init's:\n{}\nvs\n{}",
        cg(&pid),
        cg(&init)
    );
    ensure!(
        ns_link(&pid, "pid") == ns_link(&init, "pid"),
        "detached exec is not in the container's pid namespace"
    );
    Ok(())
}

/// containerd and conmon send `--process FILE`: its user, groups, env, cwd and args rule.
fn process_json(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let p = json!({
        "args": ["sh", "-c", "id; pwd; echo X=$X; umask"],
        "cwd": "/tmp",
        "env": ["X=from-json", "PATH=/bin"],
        "user": {"uid": 1000, "gid": 1001, "additionalGids": [1002], "umask": 23},
        "terminal": false,
    });
    let file = ctx.tmp.join("process.json");
    fs::write(&file, p.to_string())?;
    let o = exec_in(&ct, &["--process", &file.to_string_lossy()], &[]);
    ensure!(o.success(), "exec --process: {}", o.brief());
    for want in [
        "uid=1000",
        "gid=1001",
        "groups=1002",
        "/tmp",
        "X=from-json",
        "0027",
    ] {
        ensure!(
            o.stdout.contains(want),
            "exec --process output lacks {want:?}: {:?}",
            o.stdout
        );
    }
    Ok(())
}

/// runc's flags: -u, -g, --cwd, -e (added to and overriding the container's env), --cap.
fn flags(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |ct| ct.b.push_env("FROM_CONFIG=1"))?;
    let o = exec_in(
        &ct,
        &[
            "-u",
            "1000:1001",
            "-g",
            "1005",
            "--cwd",
            "/tmp",
            "-e",
            "A=b",
            "-e",
            "FROM_CONFIG=2",
        ],
        &["sh", "-c", "id; pwd; echo A=$A FROM_CONFIG=$FROM_CONFIG"],
    );
    ensure!(o.success(), "exec with flags: {}", o.brief());
    for want in [
        "uid=1000",
        "gid=1001",
        "groups=1005",
        "/tmp",
        "A=b FROM_CONFIG=2",
    ] {
        ensure!(
            o.stdout.contains(want),
            "exec output lacks {want:?}: {:?}",
            o.stdout
        );
    }
    // --cap adds to the container's capabilities (CAP_SYS_ADMIN is bit 21).
    let o = exec_in(
        &ct,
        &["--cap", "CAP_SYS_ADMIN"],
        &["sh", "-c", "grep CapEff /proc/self/status"],
    );
    ensure!(o.success(), "exec --cap: {}", o.brief());
    let eff = o
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    ensure!(
        eff & (1 << 21) != 0,
        "--cap CAP_SYS_ADMIN not effective: {:?}",
        o.stdout
    );
    Ok(())
}

/// The container's seccomp filter, no_new_privs, capabilities and rlimits hold for an exec'd
/// process too.
fn security(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |ct| {
        let c = &mut ct.b.config;
        c["process"]["noNewPrivileges"] = json!(true);
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1234, "soft": 1234}]);
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]
        });
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    })?;
    let o = exec_in(
        &ct,
        &[],
        &["sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; ulimit -n; mkdir /tmp/made && echo mkdir-worked"],
    );
    let out = &o.stdout;
    for want in [
        "CapEff:\t0000000000000020",
        "CapBnd:\t0000000000000020",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "1234",
    ] {
        ensure!(out.contains(want), "exec'd process lacks {want:?}: {out:?}");
    }
    ensure!(
        !out.contains("mkdir-worked"),
        "the container's seccomp filter did not stop mkdir in an exec'd process"
    );
    Ok(())
}

fn detach_pid_file(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let pidfile = ctx.tmp.join("sub/exec.pid");
    fs::create_dir_all(pidfile.parent().unwrap_or(&ctx.tmp))?;
    let pf = pidfile.to_string_lossy().into_owned();
    let o = exec_in(
        &ct,
        &["-d", "--pid-file", &pf],
        &["sh", "-c", "echo started > /dev/null; sleep 600"],
    );
    ensure!(o.success(), "exec -d: {}", o.brief());
    let pid: i64 = fs::read_to_string(&pidfile)?
        .trim()
        .parse()
        .map_err(|e| format!("pid file is not a pid: {e}"))?;
    ensure!(
        host::pid_alive(pid),
        "the detached process {pid} is not alive"
    );
    ensure!(
        fs::read_to_string(format!("/proc/{pid}/cmdline"))?.contains("sleep"),
        "pid file names another process"
    );
    // The container's SIGKILL reaches it: it is in the container.
    let o = ct.kill("KILL");
    ensure!(o.success(), "kill: {}", o.brief());
    ensure!(
        super::wait_pid_gone(pid, 5),
        "the exec'd process outlived its container"
    );
    Ok(())
}

fn paused_and_stopped(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let o = ct.rt.exec(&["pause", &ct.id]);
    ensure!(o.success(), "pause: {}", o.brief());
    let o = exec_in(&ct, &[], &["true"]);
    ensure!(
        o.failed() && o.stderr.contains("cannot exec in a paused container"),
        "exec into a paused container: {} (want \"cannot exec in a paused container\")",
        o.brief()
    );
    let o = ct.rt.exec(&["resume", &ct.id]);
    ensure!(o.success(), "resume: {}", o.brief());
    let o = exec_in(&ct, &[], &["true"]);
    ensure!(o.success(), "exec after resume: {}", o.brief());
    let o = ct.kill("KILL");
    ensure!(o.success(), "kill: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let o = exec_in(&ct, &[], &["true"]);
    ensure!(
        o.failed(),
        "exec into a stopped container: {} (want an error)",
        o.brief()
    );
    Ok(())
}

/// Only stdio and --preserve-fds reach the exec'd process, and its cwd is inside the container
/// even when the caller's is not.
fn fds(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let secret = ctx.tmp.join("secret");
    fs::write(&secret, "host secret")?;
    let list =
        "ls /proc/self/fd | tr '\\n' ' '; echo; cat /proc/self/fd/3 2>/dev/null || echo no-fd3";
    let opts = || Opts {
        extra_fds: vec![fs::File::open(&secret).expect("secret")],
        ..Default::default()
    };
    let o = ct.rt.exec_opts(&["exec", &ct.id, "sh", "-c", list], opts());
    ensure!(o.success(), "exec: {}", o.brief());
    ensure!(
        o.stdout.contains("no-fd3") && !o.stdout.contains("host secret"),
        "an fd the caller did not preserve reached the exec'd process: {:?}",
        o.stdout
    );
    let o = ct.rt.exec_opts(
        &["exec", "--preserve-fds", "1", &ct.id, "sh", "-c", list],
        opts(),
    );
    ensure!(o.success(), "exec --preserve-fds 1: {}", o.brief());
    ensure!(
        o.stdout.contains("host secret"),
        "--preserve-fds 1 did not pass fd 3: {:?}",
        o.stdout
    );
    let o = exec_in(&ct, &["--cwd", "/proc/self/cwd/.."], &["pwd"]);
    ensure!(
        o.failed() || o.stdout.trim().starts_with('/'),
        "exec --cwd through a magic link: {}",
        o.brief()
    );
    Ok(())
}

/// `--cgroup sub` runs the process in an existing sub-cgroup of the container's.
fn sub_cgroup(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let init = ct.pid()?;
    let cg = fs::read_to_string(format!("/proc/{init}/cgroup"))?;
    let mut made = Vec::new();
    for dir in host::cgroup_dirs(&ct.id) {
        let sub = dir.join("sub");
        if fs::create_dir(&sub).is_ok() {
            // A v1 cpuset cgroup takes no process until it has cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(dir.join(f)) {
                    let _ = fs::write(sub.join(f), v.trim());
                }
            }
            made.push(sub);
        }
    }
    ensure!(!made.is_empty(), "no cgroup of the container found: {cg}");
    let pidfile = ctx.tmp.join("sub.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    let o = exec_in(&ct, &["-d", "--pid-file", &pf, "--cgroup", "sub"], SLEEPER);
    let result = (|| -> R {
        ensure!(o.success(), "exec --cgroup sub: {}", o.brief());
        let pid = fs::read_to_string(&pidfile)?.trim().to_string();
        let mine = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        ensure!(
            mine.lines()
                .filter(|l| l.contains(&ct.id))
                .all(|l| l.ends_with("/sub")),
            "not in the sub-cgroups: {mine}"
        );
        Ok(())
    })();
    let _ = ct.kill("KILL");
    let _ = ct.wait_status("stopped", 5);
    for m in made.iter().rev() {
        let _ = fs::remove_dir(m);
    }
    result
}

/// A container with its own user namespace: the exec'd process is in it, as the mapped user.
fn user_namespace(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(SLEEPER)?;
    ct.b.config["linux"]["namespaces"]
        .as_array_mut()
        .ok_or_else(|| "namespaces".to_string())?
        .push(json!({"type": "user"}));
    ct.b.config["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    ct.b.config["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    ct.b.chown_rootfs(100000, 100000)?;
    ct.up()?;
    ct.wait_status("running", 5)?;
    let init = ct.pid()?.to_string();
    let o = exec_in(
        &ct,
        &["-u", "1000:1000"],
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/user; cat /proc/self/uid_map; id -u",
        ],
    );
    ensure!(o.success(), "exec in a user namespace: {}", o.brief());
    ensure!(
        o.stdout.contains(&ns_link(&init, "user")),
        "exec'd process not in the container's user namespace: {:?}",
        o.stdout
    );
    ensure!(
        o.stdout.lines().last() == Some("1000"),
        "exec'd process is not uid 1000 in the namespace: {:?}",
        o.stdout
    );
    Ok(())
}

/// What containerd relies on: `kill --all ID 9` on a stopped container succeeds, a kill of a
/// stopped container fails with "container not running", and signal 0 probes.
fn kill_contract(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let o = ct.kill("0");
    ensure!(
        o.success(),
        "kill ID 0 on a running container: {}",
        o.brief()
    );
    let o = ct.kill("KILL");
    ensure!(o.success(), "kill 9: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let o = ct.kill("9");
    ensure!(
        o.failed() && o.stderr.contains("container not running"),
        "kill of a stopped container: {} (want an error containing \"container not running\")",
        o.brief()
    );
    let o = ct.rt.exec(&["kill", "--all", &ct.id, "9"]);
    ensure!(
        o.success(),
        "kill --all 9 on a stopped container: {}",
        o.brief()
    );
    Ok(())
}

/// Without its own pid namespace, SIGTERM goes to the init only; SIGKILL reaches every process
/// of the cgroup; neither is an error because the container stopped of it.
fn kill_shared_pid_ns(ctx: &mut Ctx) -> R {
    let sh = ctx.shared();
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "(trap 'touch /shared/child-got-term' TERM; while :; do sleep 0.1; done) & \
         echo $! > /shared/child; trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ])?;
    ct.b.add_shared(&sh);
    without_namespace(&mut ct, "pid")?;
    ct.up()?;
    wait_file(&sh.join("child"), 5)?;
    std::thread::sleep(Duration::from_millis(300));
    let o = ct.kill("TERM");
    ensure!(o.success(), "kill TERM: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        !sh.join("child-got-term").exists(),
        "SIGTERM reached a process other than the init"
    );
    let left = host::procs_in_cgroup(&ct.id);
    if left.is_empty() {
        bail!("the child left the cgroup before SIGKILL (nothing to test)");
    }
    let o = ct.rt.exec(&["kill", "--all", &ct.id, "9"]);
    ensure!(o.success(), "kill --all 9: {}", o.brief());
    for _ in 0..50 {
        if host::procs_in_cgroup(&ct.id).is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "processes left in the cgroup after kill --all 9: {:?}",
        host::procs_in_cgroup(&ct.id)
    )
}

/// Without a mount namespace the container shares the runtime's (runtime-tools linux_ns_itype):
/// it runs in its own root with its mounts, exec reaches that root, and after delete nothing it
/// mounted is left on the host.
fn no_mount_namespace(ctx: &mut Ctx) -> R {
    let host_mnt = ns_link("self", "mnt");
    let mut ct = ctx.container(SLEEPER)?;
    without_namespace(&mut ct, "mount")?;
    ct.up()?;
    ct.wait_status("running", 5)?;
    let init = ct.pid()?.to_string();
    ensure!(
        ns_link(&init, "mnt") == host_mnt,
        "the container has a mount namespace of its own"
    );
    let o = exec_in(
        &ct,
        &[],
        &[
            "sh",
            "-c",
            "test -x /runtimetest && grep -c ' /proc ' /proc/self/mountinfo",
        ],
    );
    ensure!(
        o.success(),
        "exec does not see the container's root and /proc: {}",
        o.brief()
    );
    let o = ct.kill("KILL");
    ensure!(o.success(), "kill: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let o = ct.delete(false);
    ensure!(o.success(), "delete: {}", o.brief());
    let left = host::mounts_under(&ct.b.dir);
    ensure!(
        left.is_empty(),
        "mounts left on the host after delete: {left:?}"
    );
    Ok(())
}

/// With NOTIFY_SOCKET, the process gets a socket of its own and `start` relays its READY (with
/// MAINPID, the init's host pid) to the caller's socket, returning only then.
fn sd_notify(ctx: &mut Ctx) -> R {
    let host_sock = ctx.tmp.join("host-notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&host_sock)?;
    let sh = ctx.shared();
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "echo \"$NOTIFY_SOCKET\" > /shared/notify-env; sleep 0.5; /runtimetest notify READY=1; sleep 600",
    ])?;
    ct.b.add_shared(&sh);
    let env = vec![(
        "NOTIFY_SOCKET".to_string(),
        host_sock.to_string_lossy().into_owned(),
    )];
    ct.b.write()?;
    let o = ct.create_raw(
        &[],
        Opts {
            env: env.clone(),
            ..Default::default()
        },
    );
    ensure!(o.success(), "create with NOTIFY_SOCKET: {}", o.brief());
    let o = ct.rt.exec_opts(
        &["start", &ct.id],
        Opts {
            env,
            ..Default::default()
        },
    );
    ensure!(o.success(), "start with NOTIFY_SOCKET: {}", o.brief());
    listener.set_nonblocking(true)?;
    let mut buf = [0u8; 512];
    // start returned, so READY must already be here.
    let n = listener
        .recv(&mut buf)
        .map_err(|e| format!("start returned before READY reached the host socket: {e}"))?;
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    let pid = ct.pid()?;
    ensure!(
        msg.contains("READY=1") && msg.contains(&format!("MAINPID={pid}")),
        "relayed message {msg:?} (want READY=1 and MAINPID={pid})"
    );
    let seen = fs::read_to_string(sh.join("notify-env")).unwrap_or_default();
    ensure!(
        seen.trim() == "/run/notify/notify.sock",
        "the process's NOTIFY_SOCKET was {seen:?}"
    );
    Ok(())
}

/// `process.cwd` that root may enter but the process's user may not (0700, root's): entered
/// once, before the user switch, as runc does; not entered again (which would fail).
fn cwd_entered_once(ctx: &mut Ctx) -> R {
    use std::os::unix::fs::PermissionsExt;
    let mut ct = ctx.container(&["pwd"])?;
    let secret = ct.b.rootfs.join("secret");
    fs::create_dir_all(&secret)?;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o700))?;
    ct.b.config["process"]["cwd"] = json!("/secret");
    ct.b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let o = ct.run_fg();
    ensure!(
        o.success(),
        "run with a 0700 cwd as uid 1000: {}",
        o.brief()
    );
    ensure!(
        ct.stdout_text().trim() == "/secret",
        "cwd: {:?}",
        ct.stdout_text()
    );
    Ok(())
}

/// The process's terminal belongs to its user, so it can reopen it.
fn terminal_owned_by_user(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["sh", "-c", "stat -c owner=%u -L /proc/self/fd/0"])?;
    ct.b.config["process"]["terminal"] = json!(true);
    ct.b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let o = ct.run_fg();
    let out = format!("{}{}", ct.stdout_text(), o.stdout);
    ensure!(
        o.success(),
        "run with a terminal as uid 1000: {}",
        o.brief()
    );
    ensure!(
        out.contains("owner=1000"),
        "the terminal is not owned by the process's user: {out:?}"
    );
    Ok(())
}

/// `tmpcopyup` (Podman's tmpfs mounts): the tmpfs starts with a copy of the directory it covers
/// (files, modes, owners, links), and writes go to the tmpfs, not the image.
fn tmpcopyup(ctx: &mut Ctx) -> R {
    use std::os::unix::fs::{chown, symlink, PermissionsExt};
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "cat /data/f && stat -c '%u %a' /data/f /data/sub && readlink /data/link && \
         cat /data/sub/g && echo new > /data/new && mount | grep -q ' /data type tmpfs'",
    ])?;
    let data = ct.b.rootfs.join("data");
    fs::create_dir_all(data.join("sub"))?;
    fs::write(data.join("f"), "image-content\n")?;
    fs::write(data.join("sub/g"), "deeper\n")?;
    fs::set_permissions(data.join("f"), fs::Permissions::from_mode(0o664))?;
    fs::set_permissions(data.join("sub"), fs::Permissions::from_mode(0o755))?;
    chown(data.join("f"), Some(1000), Some(1000))?;
    chown(data.join("sub"), Some(1000), Some(1000))?;
    symlink("/etc/passwd", data.join("link"))?;
    ct.b.add_mount(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "tmpcopyup"]}),
    );
    let o = ct.run_fg();
    let out = ct.stdout_text();
    ensure!(o.success(), "run: {}; output {out:?}", o.brief());
    for want in [
        "image-content",
        "1000 664",
        "1000 755",
        "/etc/passwd",
        "deeper",
    ] {
        ensure!(
            out.contains(want),
            "tmpfs lacks the copy ({want:?}): {out:?}"
        );
    }
    ensure!(
        !data.join("new").exists(),
        "the write reached the image instead of the tmpfs"
    );
    Ok(())
}

/// A profile that refuses close_range, without noNewPrivileges (so the filter is loaded before
/// the runtime's last steps), as runtime-tools' default config has it: the runtime must still
/// start the process, and an exec'd one too.
fn profile_refusing_close_range(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |ct| {
        ct.b.config["process"]["noNewPrivileges"] = json!(false);
        ct.b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    })?;
    let o = exec_in(&ct, &[], &["sh", "-c", "echo exec-ran"]);
    ensure!(
        o.success() && o.stdout.contains("exec-ran"),
        "exec under a profile refusing close_range: {}",
        o.brief()
    );
    Ok(())
}

/// A foreground exec passes the signals it gets on to the process and exits with its status.
fn forwards_signals(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let mut child = std::process::Command::new(&ct.rt.path)
        .arg("--root")
        .arg(&ct.rt.root)
        .args([
            "exec",
            &ct.id,
            "sh",
            "-c",
            "trap 'exit 42' TERM; while :; do sleep 0.1; done",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("exec did not end after SIGTERM: the signal was not forwarded");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(
        status.code() == Some(42),
        "exec after SIGTERM: {status:?} (want 42: the process's trap ran)"
    );
    Ok(())
}

/// Socket activation: fds systemd passed to the runtime (LISTEN_FDS, LISTEN_PID naming it)
/// reach the process as fds 3 and up, counted in its LISTEN_FDS.
fn listen_fds(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sh", "-c", "echo fds=$LISTEN_FDS; cat <&3"])?;
    ct.b.write()?;
    let passed = ctx.tmp.join("activation");
    fs::write(&passed, "from-systemd\n")?;
    // `exec` keeps the shell's pid, so LISTEN_PID=$$ names the runtime, as systemd would.
    let out = run_from_shell(
        &ct,
        "LISTEN_PID=$$ LISTEN_FDS=1",
        &format!("3<{}", passed.display()),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("fds=1") && text.contains("from-systemd"),
        "socket-activation fd did not reach the process: {:?}, stdout {text:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Signals the runtime's caller ignored (and the runtime's own SIGPIPE) are not ignored in the
/// container, even under a profile that refuses rt_sigaction, loaded before the last steps.
fn no_signal_ignored(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["grep", "SigIgn", "/proc/self/status"])?;
    ct.b.config["process"]["noNewPrivileges"] = json!(false);
    ct.b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["rt_sigaction"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    ct.b.write()?;
    let out = run_from_shell(&ct, "trap '' PIPE USR1 HUP;", "")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // 32 and 33 aside (the C library's own; see runtimetest's check).
    let ignored = text
        .trim()
        .strip_prefix("SigIgn:")
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .map(|m| m & !((1u64 << 31) | (1u64 << 32)));
    ensure!(
        out.status.success() && ignored == Some(0),
        "signals ignored in the container: {text:?} ({:?}, stderr {:?})",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
