//! Escape attempts and privilege leftovers: capabilities when the config asks for none or for
//! a small bounding set, host descriptors leaked into `create`/`run` (CVE-2024-21626: the
//! container, its hooks, and `process.cwd` = `/proc/self/fd/N`), and the host's cgroup v1
//! hierarchy seen through a `cgroup` mount, and device nodes the device cgroup must refuse.

use super::{no_setup, sh_script, Case, Ctx, Fail, R};
use crate::bundle::Bundle;
use crate::runtime::{one_line, read_lossy, Opts};
use crate::{bail, ensure, host};
use serde_json::{json, Value};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "escapes/capabilities_absent",
            run: capabilities_absent,
        },
        Case {
            name: "escapes/capabilities_small_bounding",
            run: capabilities_small_bounding,
        },
        Case {
            name: "escapes/capabilities_bounding_beyond_permitted",
            run: capabilities_bounding_beyond_permitted,
        },
        Case {
            name: "escapes/leaked_fd_container",
            run: leaked_fd_container,
        },
        Case {
            name: "escapes/leaked_fd_hooks",
            run: leaked_fd_hooks,
        },
        Case {
            name: "escapes/cwd_leaked_fd",
            run: cwd_leaked_fd,
        },
        Case {
            name: "escapes/exec_leaked_fd",
            run: exec_leaked_fd,
        },
        Case {
            name: "escapes/cgroup_v1_cgroupns",
            run: cgroup_v1_cgroupns,
        },
        Case {
            name: "escapes/cgroup_v1_no_cgroupns",
            run: cgroup_v1_no_cgroupns,
        },
        Case {
            name: "escapes/devices_cgroup_mknod",
            run: devices_cgroup_mknod,
        },
    ]
}

/// CAP_MKNOD in the container, and a tmpfs at /tmp that allows device nodes.
fn with_mknod(b: &mut Bundle) {
    for set in ["bounding", "effective", "permitted"] {
        if let Some(a) = b.config["process"]["capabilities"][set].as_array_mut() {
            a.push(json!("CAP_MKNOD"));
        }
    }
    b.add_mount(
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "mode=1777"]}),
    );
}

/// The device cgroup holds with CAP_MKNOD (cgroup v1 and v2 alike): the default deny-all rule
/// lets the container make a node for /dev/kmsg (runc's defaults allow mknod of anything) but
/// not open it; the standard devices work; an allow rule for 1:11 opens it, and so does an
/// allow-all rule (a privileged container). The opens are write-only and write nothing.
fn devices_cgroup_mknod(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            with_mknod(b);
            Ok(())
        },
        &[
            "busybox mknod /tmp/kmsg c 1 11 2>/dev/null || [ ! -e /tmp/kmsg ]",
            // Opened write-only, so nothing reaches the log even if the open succeeds.
            "[ ! -e /tmp/kmsg ] || { (exec 3>/tmp/kmsg) 2>&1 | grep -q 'not permitted'; }",
            "echo data > /dev/null",
            "[ \"$(head -c 4 /dev/zero | wc -c)\" = 4 ]",
        ],
        false,
    )
    .map_err(|e| match e {
        Fail::Fail(m) => Fail::Fail(format!("deny-all: {m}")),
        skip => skip,
    })?;
    ctx.inside(
        &|b: &mut Bundle| {
            with_mknod(b);
            if let Some(a) = b.config["linux"]["resources"]["devices"].as_array_mut() {
                a.push(json!({"allow": true, "type": "c", "major": 1, "minor": 11,
                              "access": "rwm"}));
            }
            Ok(())
        },
        &[
            "busybox mknod /tmp/kmsg c 1 11",
            "(exec 3>/tmp/kmsg)",
            "echo data > /dev/null",
        ],
        false,
    )
    .map_err(|e| match e {
        Fail::Fail(m) => Fail::Fail(format!("with an allow for c 1:11: {m}")),
        skip => skip,
    })?;
    // A privileged container's rules (containerd's): deny-all, then allow-all, then the
    // defaults. On v2 the program must load (the verifier refuses unreachable code) and allow
    // what the allow-all allows.
    ctx.inside(
        &|b: &mut Bundle| {
            with_mknod(b);
            if let Some(a) = b.config["linux"]["resources"]["devices"].as_array_mut() {
                a.push(json!({"allow": true, "access": "rwm"}));
            }
            Ok(())
        },
        &["busybox mknod /tmp/kmsg c 1 11", "(exec 3>/tmp/kmsg)"],
        false,
    )
    .map_err(|e| match e {
        Fail::Fail(m) => Fail::Fail(format!("with an allow-all: {m}")),
        skip => skip,
    })
}

const CAP_SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

/// Shell checks that each of the five capability sets of the shell reads `hex` (16 digits).
fn cap_checks(want: &[(&str, &str)]) -> Vec<String> {
    want.iter()
        .map(|(set, hex)| {
            format!(
                "grep -q '^{set}:[[:space:]]*{hex}$' /proc/self/status || \
                 {{ grep '^{set}:' /proc/self/status; false; }}"
            )
        })
        .collect()
}

/// No `process.capabilities` at all: every set is empty, as with runc.
fn capabilities_absent(ctx: &mut Ctx) -> R {
    let setup = |b: &mut Bundle| -> R {
        if let Some(p) = b.config["process"].as_object_mut() {
            p.remove("capabilities");
        }
        Ok(())
    };
    let want: Vec<(&str, &str)> = CAP_SETS.iter().map(|s| (*s, "0000000000000000")).collect();
    let checks = cap_checks(&want);
    let refs: Vec<&str> = checks.iter().map(String::as_str).collect();
    ctx.inside(&setup, &refs, true)
}

/// A bounding set smaller than the other sets: after execve as root only what the bounding
/// set allows (plus inheritable) is permitted and effective.
fn capabilities_small_bounding(ctx: &mut Ctx) -> R {
    let setup = |b: &mut Bundle| -> R {
        let wide = json!(["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
        b.config["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL"],
            "effective": wide,
            "permitted": wide,
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"],
        });
        Ok(())
    };
    // CAP_KILL is capability 5.
    let kill = "0000000000000020";
    let want: Vec<(&str, &str)> = CAP_SETS.iter().map(|s| (*s, kill)).collect();
    let checks = cap_checks(&want);
    let refs: Vec<&str> = checks.iter().map(String::as_str).collect();
    ctx.inside(&setup, &refs, true)
}

/// The runtime is started through setpriv(1) so that CAP_SYS_TIME is in its bounding set but
/// not in its permitted set (SECBIT_NOROOT plus ambient caps): a drop loop that only walks the
/// runtime's own permitted set leaves CAP_SYS_TIME in the container's bounding set.
fn capabilities_bounding_beyond_permitted(ctx: &mut Ctx) -> R {
    let list = match std::process::Command::new("setpriv")
        .arg("--list-caps")
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return Err(Fail::Skip("setpriv (util-linux) is not available".into())),
    };
    // `--list-caps` prints the names in capability-number order.
    let names: Vec<&str> = list.lines().map(str::trim).collect();
    let Some(prm) = host::own_cap_prm().and_then(|h| u64::from_str_radix(&h, 16).ok()) else {
        bail!("cannot read the harness's CapPrm");
    };
    if prm & (1 << 25) == 0 {
        return Err(Fail::Skip("CAP_SYS_TIME is not permitted here".into()));
    }
    let mut drops: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && prm & (1u64 << i) == 0)
        .map(|(_, n)| format!("-{n}"))
        .collect();
    drops.push("-sys_time".into());
    let set = format!("+all,{}", drops.join(","));
    let wrapper = ctx.tmp.join("runtime-without-sys-time");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --securebits +noroot --inh-caps={set} --ambient-caps={set} \
             -- '{}' \"$@\"\n",
            ctx.rt.path.display()
        ),
    )?;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
    let check = std::process::Command::new(&wrapper)
        .arg("--version")
        .output();
    if !check.as_ref().is_ok_and(|o| o.status.success()) {
        bail!("the setpriv wrapper does not run: {check:?}");
    }
    ctx.rt.path = wrapper;
    // No capabilities object: everything empty, bounding included.
    capabilities_absent(ctx).map_err(|e| match e {
        Fail::Fail(m) => Fail::Fail(format!("without process.capabilities: {m}")),
        skip => skip,
    })?;
    capabilities_small_bounding(ctx).map_err(|e| match e {
        Fail::Fail(m) => Fail::Fail(format!("bounding [CAP_KILL]: {m}")),
        skip => skip,
    })
}

/// A host directory outside every rootfs, holding a marker file, for leaked-fd cases.
fn host_dir(ctx: &Ctx) -> Result<(PathBuf, &'static str), Fail> {
    let d = ctx.dir("host-secret");
    let marker = "HOST-SECRET-MARKER";
    fs::write(d.join(marker), "host data\n")?;
    Ok((d, marker))
}

fn parse_fds(s: &str) -> Vec<i32> {
    let mut v: Vec<i32> = s
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    v.sort();
    v
}

/// The harness opens a host directory without close-on-exec and hands it to `create` as fd 4,
/// after one file kept with `--preserve-fds 1` (fd 3). The container must see 0-3 only.
fn leaked_fd_container(ctx: &mut Ctx) -> R {
    let (dir, _) = host_dir(ctx)?;
    let mut argvs: Vec<Vec<&str>> = vec![vec!["sh", "-c", "ls /proc/$$/fd; true"]];
    if ctx.runtimetest.is_file() {
        argvs.push(vec!["/runtimetest", "fds"]);
    }
    let with_rt = argvs.len() == 2;
    for argv in argvs {
        let ct = ctx.container(&argv)?;
        ct.b.write()?;
        let kept = File::create(ctx.tmp.join("kept-fd"))?;
        let leaked = File::open(&dir)?;
        let o = ct.create_raw(
            &["--preserve-fds", "1"],
            Opts {
                stdout: Some(ct.out.clone()),
                stderr: Some(ct.err.clone()),
                extra_fds: vec![kept, leaked],
                ..Default::default()
            },
        );
        ensure!(o.success(), "create failed: {}", o.brief());
        let o = ct.start();
        ensure!(o.success(), "start failed: {}", o.brief());
        ct.wait_status("stopped", 5)?;
        let seen = parse_fds(&ct.stdout_text());
        ensure!(
            seen == vec![0, 1, 2, 3],
            "`{}` saw fds {seen:?}; want [0, 1, 2, 3] (fd 4, a leaked host directory, must not \
             reach the container)",
            argv.join(" ")
        );
    }
    if !with_rt {
        bail!(
            "busybox check passed; runtimetest missing ({})",
            ctx.runtimetest.display()
        );
    }
    Ok(())
}

/// A hook that records in `out` the fds it was started with: the shell only sets up the
/// redirection and execs `runtimetest fds`, which lists its table before opening anything.
fn fd_hook(sh: &str, runtimetest: &str, out: &str) -> Value {
    json!({"path": sh, "args": ["sh", "-c", format!("exec {runtimetest} fds > {out}")]})
}

/// Every hook, host-side and in the container, gets only stdin (the state), stdout and stderr,
/// even when `create` and `start` were given extra fds (one preserved, one leaked).
fn leaked_fd_hooks(ctx: &mut Ctx) -> R {
    if Path::new("/shared").exists() {
        return Err(Fail::Skip(
            "/shared exists on the host; cannot tell where startContainer ran".into(),
        ));
    }
    ctx.need_runtimetest()?;
    let (dir, _) = host_dir(ctx)?;
    let sh = ctx.shared();
    let rt_host = ctx.runtimetest.to_string_lossy().into_owned();
    let mut ct = ctx.container(&["sh", "-c", "true"])?;
    ct.b.add_shared(&sh);
    let host_kinds = ["prestart", "createRuntime", "poststart", "poststop"];
    for kind in host_kinds {
        let out = sh.join(format!("{kind}.fds"));
        ct.b.add_hook(kind, fd_hook("/bin/sh", &rt_host, &out.to_string_lossy()));
    }
    // These two run in the container's mount namespace; startContainer after pivot_root,
    // where the host's `sh` dir is /shared.
    for kind in ["createContainer", "startContainer"] {
        let (rt, out) = if kind == "startContainer" {
            ("/runtimetest".to_string(), format!("/shared/{kind}.fds"))
        } else {
            // createContainer runs before pivot_root: paths are the host's.
            let out = sh.join(format!("{kind}.fds"));
            (rt_host.clone(), out.to_string_lossy().into_owned())
        };
        ct.b.add_hook(kind, fd_hook("/bin/sh", &rt, &out));
    }
    ct.b.write()?;
    let extra = || -> Result<Vec<File>, Fail> {
        Ok(vec![
            File::create(ctx.tmp.join("kept-fd"))?,
            File::open(&dir)?,
        ])
    };
    let o = ct.create_raw(
        &["--preserve-fds", "1"],
        Opts {
            stdout: Some(ct.out.clone()),
            stderr: Some(ct.err.clone()),
            extra_fds: extra()?,
            ..Default::default()
        },
    );
    ensure!(o.success(), "create failed: {}", o.brief());
    let o = ct.rt.exec_opts(
        &["start", &ct.id],
        Opts {
            extra_fds: extra()?,
            ..Default::default()
        },
    );
    ensure!(o.success(), "start failed: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let o = ct.delete(false);
    ensure!(o.success(), "delete failed: {}", o.brief());
    let mut bad = Vec::new();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let p = sh.join(format!("{kind}.fds"));
        if !p.exists() {
            bad.push(format!("{kind}: did not run (no {})", p.display()));
            continue;
        }
        let seen = parse_fds(&read_lossy(&p));
        if seen != vec![0, 1, 2] {
            bad.push(format!("{kind}: fds {seen:?}"));
        }
    }
    ensure!(
        bad.is_empty(),
        "hooks must hold only fds [0, 1, 2]: {}",
        bad.join("; ")
    );
    Ok(())
}

/// `process.cwd` = `/proc/self/fd/3`, fd 3 being a host directory handed to `create`, either
/// leaked (not counted in `--preserve-fds`) or preserved on purpose: create must fail, or the
/// process must start inside its root. Also with a missing directory below it, which must not
/// be created on the host.
fn cwd_leaked_fd(ctx: &mut Ctx) -> R {
    let (dir, marker) = host_dir(ctx)?;
    let script = sh_script(&["pwd", "ls", "ls ..", "ls ../.."]);
    for preserve in [false, true] {
        for (cwd, made) in [
            ("/proc/self/fd/3", None),
            ("/proc/self/fd/3/berth-made-this", Some("berth-made-this")),
        ] {
            let how = if preserve { "preserved" } else { "leaked" };
            let what = format!("cwd {cwd} ({how} fd 3)");
            let mut ct = ctx.container(&["sh", "-c", &script])?;
            ct.b.config["process"]["cwd"] = json!(cwd);
            ct.b.write()?;
            let extra: &[&str] = if preserve {
                &["--preserve-fds", "1"]
            } else {
                &[]
            };
            let o = ct.create_raw(
                extra,
                Opts {
                    stdout: Some(ct.out.clone()),
                    stderr: Some(ct.err.clone()),
                    extra_fds: vec![File::open(&dir)?],
                    ..Default::default()
                },
            );
            if let Some(m) = made {
                ensure!(
                    !dir.join(m).exists(),
                    "{what}: the runtime created {} on the host",
                    dir.join(m).display()
                );
            }
            if !o.success() {
                // Refused: the right outcome; nothing may be left behind.
                let left = super::leftovers(ctx, &ct.id, &ct.b.dir);
                ensure!(left.is_empty(), "{what}: create failed but left {left:?}");
                continue;
            }
            let o = ct.start();
            ensure!(o.success(), "{what}: start failed: {}", o.brief());
            ct.wait_status("stopped", 5)?;
            let out = ct.stdout_text();
            ensure!(
                !out.contains(marker) && !out.contains("unreachable"),
                "{what}: the container started in a host directory: {}",
                one_line(&out, 300)
            );
            let pwd = out.lines().next().unwrap_or("");
            ensure!(
                pwd.starts_with('/'),
                "{what}: pwd in the container is {pwd:?}"
            );
        }
    }
    Ok(())
}

/// `process.args[0]` = `/proc/self/fd/3/busybox`, fd 3 being the host's directory of busybox
/// leaked into `create`: the container must not run a host binary (its /proc/self/exe would
/// then be a host file it can reopen).
fn exec_leaked_fd(ctx: &mut Ctx) -> R {
    let host_bin = Path::new(crate::bundle::BUSYBOX)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let ct = ctx.container(&[
        "/proc/self/fd/3/busybox",
        "sh",
        "-c",
        "echo HOST-BINARY-RAN; readlink /proc/self/exe",
    ])?;
    ct.b.write()?;
    let o = ct.create_raw(
        &[],
        Opts {
            stdout: Some(ct.out.clone()),
            stderr: Some(ct.err.clone()),
            extra_fds: vec![File::open(&host_bin)?],
            ..Default::default()
        },
    );
    if !o.success() {
        let left = super::leftovers(ctx, &ct.id, &ct.b.dir);
        ensure!(left.is_empty(), "create failed but left {left:?}");
        return Ok(());
    }
    let o = ct.start();
    ensure!(o.success(), "start failed: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let out = ct.stdout_text();
    ensure!(
        !out.contains("HOST-BINARY-RAN"),
        "the container ran a host binary through a leaked fd: {}",
        one_line(&out, 300)
    );
    Ok(())
}

/// The host's memory hierarchy (cgroup v1), or a skip on a unified host.
fn v1_memory() -> Result<PathBuf, Fail> {
    let p = v1_memory_path();
    if !p.join("cgroup.procs").is_file() || !p.join("memory.limit_in_bytes").exists() {
        return Err(Fail::Skip(
            "no cgroup v1 memory hierarchy on this host".into(),
        ));
    }
    Ok(p)
}

/// A marker cgroup at the root of every host hierarchy (v1 controllers, named ones and the
/// hybrid cgroup2 tree), removed at the end of the case.
fn marker_cgroup(ctx: &mut Ctx) -> Result<String, Fail> {
    v1_memory()?;
    let name = format!("berth-it-marker-{}", std::process::id());
    let mut made = Vec::new();
    for h in host::hierarchies() {
        if !h.join("cgroup.procs").is_file() {
            continue;
        }
        let p = h.join(&name);
        if !p.exists() {
            fs::create_dir(&p)?;
        }
        made.push(p);
    }
    ensure!(
        made.iter().any(|p| p.starts_with(v1_memory_path())),
        "marker cgroup was not created in the memory hierarchy ({made:?})"
    );
    ctx.on_cleanup(move || {
        for p in made {
            let _ = fs::remove_dir(&p);
        }
    });
    Ok(name)
}

fn v1_memory_path() -> PathBuf {
    Path::new(host::CGROUP_ROOT).join("memory")
}

/// Checks shared by both cgroup cases: the container's memory cgroup is mounted, holds the
/// container's pid 1, and shows no sibling of the host's (the marker) nor any other cgroup.
fn cgroup_checks(marker: &str) -> Vec<String> {
    let mut v = vec![
        "[ -f /sys/fs/cgroup/memory/cgroup.procs ]".to_string(),
        "grep -qx 1 /sys/fs/cgroup/memory/cgroup.procs".to_string(),
        format!("! ls /sys/fs/cgroup/* | grep {marker}"),
        // The container's own cgroup has no child cgroups: any directory is the host's.
        "for d in /sys/fs/cgroup/*/*; do [ -d \"$d\" ] && { echo \"host cgroup visible: $d\"; \
         exit 1; }; done; true"
            .to_string(),
    ];
    if Path::new(host::CGROUP_ROOT)
        .join("unified/cgroup.procs")
        .is_file()
    {
        v.push("grep -qx 1 /sys/fs/cgroup/unified/cgroup.procs".to_string());
    }
    v
}

/// With a cgroup namespace: /sys/fs/cgroup shows only the container's cgroups and
/// /proc/self/cgroup paths are all "/".
fn cgroup_v1_cgroupns(ctx: &mut Ctx) -> R {
    let marker = marker_cgroup(ctx)?;
    let setup = |b: &mut Bundle| -> R {
        if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
            ns.push(json!({"type": "cgroup"}));
        }
        Ok(())
    };
    let mut checks = cgroup_checks(&marker);
    checks.push("! grep -v ':/$' /proc/self/cgroup".to_string());
    let refs: Vec<&str> = checks.iter().map(String::as_str).collect();
    ctx.inside(&setup, &refs, false)
}

/// Without a cgroup namespace: the container's own cgroup directory is bound in, never the
/// host's hierarchy.
fn cgroup_v1_no_cgroupns(ctx: &mut Ctx) -> R {
    let marker = marker_cgroup(ctx)?;
    let checks = cgroup_checks(&marker);
    let refs: Vec<&str> = checks.iter().map(String::as_str).collect();
    ctx.inside(&no_setup, &refs, false)
}
