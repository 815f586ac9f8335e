//! `linux.seccomp` (runtime-tools linux_seccomp and beyond): every action, argument operators,
//! the i386/x32 entry points, both load points (before the user switch without no_new_privs,
//! before execve with it), invalid profiles, a seccomp agent on the notify protocol, and the
//! Docker-derived default profile Debian ships for Podman. runtimetest works out, from the
//! config alone, how each probe system call must end and checks it from inside.

use super::{leftovers, Case, Ctx, R};
use crate::bundle::Bundle;
use crate::moby_profile::{oci_from_moby, PODMAN_PROFILE};
use crate::{bail, ensure};
use serde_json::{json, Value};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "seccomp/actions",
            run: actions,
        },
        Case {
            name: "seccomp/allowlist",
            run: allowlist,
        },
        Case {
            name: "seccomp/abi_bypass",
            run: abi_bypass,
        },
        Case {
            name: "seccomp/without_no_new_privs",
            run: without_no_new_privs,
        },
        Case {
            name: "seccomp/invalid_profiles",
            run: invalid_profiles,
        },
        Case {
            name: "seccomp/notify_agent",
            run: notify_agent,
        },
        Case {
            name: "seccomp/notify_no_listener",
            run: notify_no_listener,
        },
        Case {
            name: "seccomp/podman_default_profile",
            run: podman_default_profile,
        },
        Case {
            name: "lsm/labels",
            run: lsm_labels,
        },
    ]
}

/// Busybox sees a filter, then runtimetest checks every probe under the same config.
fn check_both(ctx: &mut Ctx, profile: Value, setup: &dyn Fn(&mut Bundle)) -> R {
    let p = profile.clone();
    let with = move |b: &mut Bundle| -> R {
        b.config["linux"]["seccomp"] = p.clone();
        setup(b);
        Ok(())
    };
    ctx.inside(
        &with,
        &["grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status"],
        true,
    )
}

fn actions(ctx: &mut Ctx) -> R {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["umask"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["sched_yield"], "action": "SCMP_ACT_KILL"},
            {"names": ["getpriority"], "action": "SCMP_ACT_TRAP"},
            {"names": ["uname"], "action": "SCMP_ACT_LOG"},
            {"names": ["getpgrp"], "action": "SCMP_ACT_TRACE"},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]}
        ]
    });
    check_both(ctx, profile, &|_| {})
}

/// Every x86_64 system call allowed by name except the probes; the default refuses with ENOSYS,
/// and two rules use KILL_PROCESS and MASKED_EQ.
fn allowlist(ctx: &mut Ctx) -> R {
    let skip = ["getpgrp", "getppid", "sched_yield", "getpriority", "umask"];
    let names: Vec<&str> = (0..600)
        .filter_map(syscalls::x86_64::Sysno::new)
        .map(|s| s.name())
        .filter(|n| !skip.contains(n))
        .collect();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": names, "action": "SCMP_ACT_ALLOW"},
            {"names": ["umask"], "action": "SCMP_ACT_KILL_PROCESS",
             "args": [{"index": 0, "value": 0o777, "valueTwo": 0o22, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["getpgrp"], "action": "SCMP_ACT_KILL_PROCESS",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LT"}]}
        ]
    });
    check_both(ctx, profile, &|_| {})
}

/// A deny list that names only x86_64: the same call through int 0x80 or the x32 ABI must not
/// get past it (the filter kills), rather than run under another number.
fn abi_bypass(ctx: &mut Ctx) -> R {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    check_both(ctx, profile, &|_| {})
}

/// Without no_new_privs the filter must be loaded while berth still holds CAP_SYS_ADMIN, and
/// hold for a non-root process.
fn without_no_new_privs(ctx: &mut Ctx) -> R {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    });
    check_both(ctx, profile, &|b| {
        b.config["process"]["noNewPrivileges"] = json!(false);
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    })
}

fn invalid_profiles(ctx: &mut Ctx) -> R {
    let bad: &[(&str, Value)] = &[
        (
            "errnoRet",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}),
        ),
        (
            "defaultErrnoRet",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
        ),
        (
            "listenerPath",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        ),
        (
            "listenerMetadata",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}),
        ),
        (
            "index",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                                 "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
        ),
        ("SCMP_ACT_BOGUS", json!({"defaultAction": "SCMP_ACT_BOGUS"})),
        (
            "SCMP_CMP_BOGUS",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_BOGUS"}]}]}),
        ),
    ];
    for (field, profile) in bad {
        let mut ct = ctx.container(&["true"])?;
        ct.b.config["linux"]["seccomp"] = profile.clone();
        let o = ct.create();
        ensure!(
            !o.success(),
            "create accepted a profile with a bad {field}: {profile}"
        );
        let err = o.stderr.clone();
        ensure!(
            err.contains(field),
            "the error for a bad {field} does not name it: {}",
            err.trim()
        );
        let left = leftovers(ctx, &ct.id, &ct.b.dir);
        ensure!(left.is_empty(), "bad {field}: left behind {left:?}");
    }
    Ok(())
}

/// What the agent saw.
struct AgentReport {
    state: Value,
    notifications: Vec<i32>,
}

// struct seccomp_notif / seccomp_notif_resp and their ioctls (linux/seccomp.h).
#[repr(C)]
#[derive(Default)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}
#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}
#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}
const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;

/// Receives the state JSON and the listener fd the way runc's agents do.
fn recv_state_and_fd(sock: RawFd) -> Result<(Value, OwnedFd), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cbuf = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return Err(format!("recvmsg: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err("no SCM_RIGHTS with the state".into());
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd)
    };
    // SAFETY: the kernel installed this fd for us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let state = serde_json::from_slice(&buf[..n as usize])
        .map_err(|e| format!("state is not JSON: {e}"))?;
    Ok((state, fd))
}

/// A seccomp agent on `path`: answers every notified call with EROFS, for up to `secs`.
fn agent(listener: UnixListener, secs: u64) -> Result<AgentReport, String> {
    let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let (state, fd) = recv_state_and_fd(conn.as_raw_fd())?;
    let mut notifications = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 200) };
        if r <= 0 {
            continue;
        }
        if pfd.revents & libc::POLLHUP != 0 {
            break; // every filtered process is gone
        }
        let mut n = Notif::default();
        // SAFETY: NOTIF_RECV fills a zeroed seccomp_notif.
        if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut n) } != 0 {
            continue;
        }
        notifications.push(n.data.nr);
        let resp = NotifResp {
            id: n.id,
            val: 0,
            error: -libc::EROFS,
            flags: 0,
        };
        // SAFETY: NOTIF_SEND reads one seccomp_notif_resp.
        unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &resp) };
    }
    Ok(AgentReport {
        state,
        notifications,
    })
}

fn start_agent(
    path: &Path,
    secs: u64,
) -> Result<mpsc::Receiver<Result<AgentReport, String>>, String> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| format!("bind agent socket: {e}"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(agent(listener, secs));
    });
    Ok(rx)
}

fn notify_profile(path: &Path) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": path,
        "listenerMetadata": "berth-it-metadata",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    })
}

/// runc's seccomp-agent protocol: the agent gets the container-process state and the listener
/// fd, and its answer is what the container's mkdir returns.
fn notify_agent(ctx: &mut Ctx) -> R {
    let sock = ctx.dir("agent").join("agent.sock");
    let rx = start_agent(&sock, 20)?;
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "mkdir /dev/shm/notified 2>/dev/shm/err; cat /dev/shm/err; test ! -e /dev/shm/notified",
    ])?;
    ct.b.config["linux"]["seccomp"] = notify_profile(&sock);
    let o = ct.run_fg();
    let report = rx
        .recv_timeout(Duration::from_secs(25))
        .map_err(|_| "the agent never finished".to_string())??;
    ensure!(o.success(), "container: {}; {}", o.brief(), o.stdout.trim());
    ensure!(
        o.stdout.contains("Read-only file system"),
        "mkdir did not get the agent's EROFS: {:?}",
        o.stdout.trim()
    );
    let s = &report.state;
    ensure!(s["ociVersion"].is_string(), "state lacks ociVersion: {s}");
    ensure!(s["fds"] == json!(["seccompFd"]), "fds: {s}");
    ensure!(s["pid"].as_i64().unwrap_or(0) > 0, "pid: {s}");
    ensure!(s["metadata"] == json!("berth-it-metadata"), "metadata: {s}");
    ensure!(s["state"]["id"] == json!(ct.id), "state.id: {s}");
    ensure!(
        s["state"]["status"] == json!("creating"),
        "state.status: {s}"
    );
    let mkdirs = [libc::SYS_mkdir as i32, libc::SYS_mkdirat as i32];
    ensure!(
        report.notifications.iter().any(|n| mkdirs.contains(n)),
        "the agent saw no mkdir: {:?}",
        report.notifications
    );
    Ok(())
}

/// A listenerPath nobody listens on: create fails and leaves nothing.
fn notify_no_listener(ctx: &mut Ctx) -> R {
    let sock: PathBuf = ctx.dir("agent").join("nobody.sock");
    let mut ct = ctx.container(&["true"])?;
    ct.b.config["linux"]["seccomp"] = notify_profile(&sock);
    let o = ct.create();
    ensure!(!o.success(), "create succeeded without a seccomp agent");
    ensure!(
        o.stderr.contains("listenerPath"),
        "the error does not name listenerPath: {}",
        o.stderr.trim()
    );
    let left = leftovers(ctx, &ct.id, &ct.b.dir);
    ensure!(left.is_empty(), "left behind {left:?}");
    Ok(())
}

fn podman_default_profile(ctx: &mut Ctx) -> R {
    let path = std::env::current_dir()
        .map(|d| d.join(PODMAN_PROFILE))
        .unwrap_or_else(|_| PODMAN_PROFILE.into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => bail!("{}: {e} (run `make deps`)", path.display()),
    };
    let moby: Value = serde_json::from_str(&text).map_err(|e| format!("{PODMAN_PROFILE}: {e}"))?;
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let profile = oci_from_moby(&moby, &caps);
    let names: usize = profile["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["names"].as_array().map_or(0, |n| n.len()))
        .sum();
    ensure!(
        names > 300,
        "the converted profile names {names} system calls: too few to be Podman's"
    );
    // Busybox sees the filter and is refused a namespace (Docker's clone/unshare rules).
    check_both(ctx, profile, &|_| {})
}

/// AppArmor and SELinux labels. This host has neither LSM: as runc does, create applies what
/// the host can and says in the debug log what it could not; on a host with the LSM,
/// runtimetest checks the label from inside.
pub fn lsm_labels(ctx: &mut Ctx) -> R {
    let log = ctx.tmp.join("lsm-debug.log");
    let mut ct = ctx.container(&["true"])?;
    ct.b.config["process"]["apparmorProfile"] = json!("berth-it-profile");
    ct.b.config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
    ct.b.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    if let Err(e) = ct.b.write() {
        bail!("write config: {e}");
    }
    let b = ct.b.dir.to_string_lossy().into_owned();
    let o = ct.rt.exec_opts(
        &["run", "--bundle", &b, &ct.id],
        crate::runtime::Opts {
            global: vec!["--debug".into(), "--log".into(), log.display().to_string()],
            ..Default::default()
        },
    );
    let aa = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if aa {
        // No such profile is loaded: a clear error, never an unconfined container.
        ensure!(
            !o.success() && o.stderr.contains("apparmorProfile"),
            "run with an AppArmor profile that is not loaded: {}",
            o.brief()
        );
    } else {
        ensure!(
            o.success(),
            "run with labels on a host without LSMs: {}",
            o.brief()
        );
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        ensure!(
            text.contains("apparmorProfile") && text.contains("selinuxLabel"),
            "the debug log does not say the labels were not applied: {}",
            text.trim()
        );
    }
    Ok(())
}
