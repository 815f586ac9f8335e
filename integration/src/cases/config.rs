//! In-container property checks (runtime-tools: default, hostname, process*,
//! mounts, root_readonly_true, linux_*, misc_props). Each runs a busybox
//! script in the container and then /runtimetest under the same config.

use super::{no_setup, Case, Ctx, Fail, R};
use crate::bundle::Bundle;
use crate::{bail, ensure, host};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "config/default",
            run: default,
        },
        Case {
            name: "config/hostname",
            run: hostname,
        },
        Case {
            name: "config/process",
            run: process,
        },
        Case {
            name: "config/linux_cgroups_limits",
            run: cgroups_limits,
        },
        Case {
            name: "config/process_user",
            run: process_user,
        },
        Case {
            name: "config/process_rlimits",
            run: process_rlimits,
        },
        Case {
            name: "config/process_oom_score_adj",
            run: process_oom_score_adj,
        },
        Case {
            name: "config/mounts",
            run: mounts,
        },
        Case {
            name: "config/root_readonly_true",
            run: root_readonly_true,
        },
        Case {
            name: "config/root_readonly_false",
            run: root_readonly_false,
        },
        Case {
            name: "config/linux_masked_paths",
            run: linux_masked_paths,
        },
        Case {
            name: "config/masked_dirs_share_one_tmpfs",
            run: masked_dirs_share_one_tmpfs,
        },
        Case {
            name: "config/linux_readonly_paths",
            run: linux_readonly_paths,
        },
        Case {
            name: "config/linux_devices",
            run: linux_devices,
        },
        Case {
            name: "config/linux_sysctl",
            run: linux_sysctl,
        },
        Case {
            name: "config/linux_ns_path",
            run: linux_ns_path,
        },
        Case {
            name: "config/linux_ns_nopath",
            run: linux_ns_nopath,
        },
        Case {
            name: "config/linux_ns_itype",
            run: linux_ns_itype,
        },
        Case {
            name: "config/linux_uid_mappings",
            run: linux_uid_mappings,
        },
        Case {
            name: "config/linux_rootfs_propagation_shared",
            run: prop_shared,
        },
        Case {
            name: "config/linux_rootfs_propagation_slave",
            run: prop_slave,
        },
        Case {
            name: "config/linux_rootfs_propagation_private",
            run: prop_private,
        },
        Case {
            name: "config/linux_rootfs_propagation_unbindable",
            run: prop_unbindable,
        },
        Case {
            name: "config/misc_props",
            run: misc_props,
        },
    ]
}

fn default(ctx: &mut Ctx) -> R {
    ctx.inside(
        &no_setup,
        &[
            "[ $$ = 1 ]",
            "[ \"$(id -u)\" = 0 ] && [ \"$(id -g)\" = 0 ]",
            "[ \"$(hostname)\" = berth-it ]",
            "! touch /rootfs-is-writable 2>/dev/null",
            "[ -c /dev/null ] && [ -c /dev/zero ] && [ -c /dev/urandom ]",
            "grep -q 'NoNewPrivs:[[:space:]]*1' /proc/self/status",
            "grep -q ' /proc proc ' /proc/mounts",
            "grep -q ' /sys sysfs ro' /proc/mounts",
            "grep -q ' /dev/pts devpts ' /proc/mounts",
            "[ \"$(pwd)\" = / ]",
            "[ \"$(ulimit -n)\" = 1024 ]",
        ],
        true,
    )
}

fn hostname(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["hostname"] = json!("berth-hostname-case");
            Ok(())
        },
        &["[ \"$(hostname)\" = berth-hostname-case ]"],
        true,
    )
}

fn process(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.push_env("BERTH_FOO=bar baz");
            b.config["process"]["cwd"] = json!("/home");
            Ok(())
        },
        &[
            "[ \"$BERTH_FOO\" = \"bar baz\" ]",
            "[ \"$TERM\" = xterm ]",
            "[ \"$(pwd)\" = /home ]",
            "grep -q 'NoNewPrivs:[[:space:]]*1' /proc/self/status",
            "grep -q 'CapEff:[[:space:]]*0000000020000420' /proc/self/status",
        ],
        true,
    )
}

fn process_user(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["process"]["user"] =
                json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 100], "umask": 63});
            Ok(())
        },
        &[
            "[ \"$(id -u)\" = 1000 ]",
            "[ \"$(id -g)\" = 1000 ]",
            "id -G | grep -qw 5",
            "id -G | grep -qw 100",
            "[ \"$(umask)\" = 0077 ]",
        ],
        true,
    )
}

fn process_rlimits(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "hard": 456, "soft": 123},
                {"type": "RLIMIT_CORE", "hard": 4096, "soft": 1024}
            ]);
            Ok(())
        },
        &[
            "[ \"$(ulimit -Sn)\" = 123 ]",
            "[ \"$(ulimit -Hn)\" = 456 ]",
            "grep -q 'Max core file size *1024 *4096' /proc/self/limits",
        ],
        true,
    )
}

fn process_oom_score_adj(ctx: &mut Ctx) -> R {
    for v in [0, 500] {
        let check = format!("[ \"$(cat /proc/self/oom_score_adj)\" = {v} ]");
        ctx.inside(
            &move |b: &mut Bundle| {
                b.config["process"]["oomScoreAdj"] = json!(v);
                Ok(())
            },
            &[&check],
            true,
        )?;
    }
    Ok(())
}

/// memory, pids and cpu limits reach the container's cgroup (runtime-tools linux_cgroups_*),
/// read back through the container's own /sys/fs/cgroup on v1 or v2.
fn cgroups_limits(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["linux"]["resources"]["memory"] = json!({"limit": 67108864});
            b.config["linux"]["resources"]["pids"] = json!({"limit": 100});
            b.config["linux"]["resources"]["cpu"] =
                json!({"shares": 512, "quota": 50000, "period": 100000});
            Ok(())
        },
        &[
            "c=/sys/fs/cgroup; if [ -d $c/memory ]; then [ \"$(cat $c/memory/memory.limit_in_bytes)\" = 67108864 ]; else [ \"$(cat $c/memory.max)\" = 67108864 ]; fi",
            "c=/sys/fs/cgroup; if [ -d $c/pids ]; then [ \"$(cat $c/pids/pids.max)\" = 100 ]; else [ \"$(cat $c/pids.max)\" = 100 ]; fi",
            "c=/sys/fs/cgroup; if [ -d $c/cpu ]; then [ \"$(cat $c/cpu/cpu.shares)\" = 512 ] && [ \"$(cat $c/cpu/cpu.cfs_quota_us)\" = 50000 ]; else [ \"$(cat $c/cpu.max)\" = '50000 100000' ]; fi",
        ],
        true,
    )
}

fn mounts(ctx: &mut Ctx) -> R {
    let ro = ctx.dir("ro-src");
    std::fs::write(ro.join("hello"), "hi")?;
    let rel = ctx.dir("rel-src");
    std::fs::write(rel.join("relfile"), "x")?;
    ctx.inside(
        &move |b: &mut Bundle| {
            b.add_mount(
                json!({"destination": "/mnt/tmpfs", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "size=1m", "mode=755"]}),
            );
            b.add_mount(json!({"destination": "/data-ro", "type": "bind",
                "source": ro.to_string_lossy(), "options": ["rbind", "ro"]}));
            b.add_mount(json!({"destination": "data-rel", "type": "bind",
                "source": rel.to_string_lossy(), "options": ["rbind", "rw"]}));
            Ok(())
        },
        &[
            "grep -q ' /mnt/tmpfs tmpfs rw,nosuid,nodev.*size=1024k' /proc/mounts",
            "grep ' /mnt/tmpfs ' /proc/mounts | grep -q mode=755",
            "touch /mnt/tmpfs/x",
            "[ \"$(cat /data-ro/hello)\" = hi ]",
            "grep -q ' /data-ro [^ ]* ro,' /proc/mounts",
            "! touch /data-ro/x 2>/dev/null",
            "[ -f /data-rel/relfile ]",
        ],
        true,
    )
}

fn root_readonly_true(ctx: &mut Ctx) -> R {
    ctx.inside(
        &no_setup,
        &[
            "! touch /rootfs-write 2>/dev/null",
            "! mkdir /newdir 2>/dev/null",
            "grep -q '^[^ ]* / [^ ]* ro[, ]' /proc/mounts",
        ],
        true,
    )
}

fn root_readonly_false(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["root"]["readonly"] = json!(false);
            Ok(())
        },
        &["touch /rootfs-write", "mkdir /newdir"],
        true,
    )
}

fn linux_masked_paths(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            std::fs::create_dir_all(b.rootfs.join("etc/masked-dir"))?;
            std::fs::write(b.rootfs.join("etc/masked-dir/secret"), "secret")?;
            std::fs::write(b.rootfs.join("etc/masked-file"), "secret")?;
            if let Some(a) = b.config["linux"]["maskedPaths"].as_array_mut() {
                a.push(json!("/etc/masked-dir"));
                a.push(json!("/etc/masked-file"));
            }
            Ok(())
        },
        &[
            "[ -d /etc/masked-dir ] && [ -z \"$(ls -A /etc/masked-dir)\" ]",
            "[ -e /etc/masked-file ] && [ -z \"$(cat /etc/masked-file)\" ]",
            "[ -c /proc/kcore ] || [ ! -e /proc/kcore ]",
            "[ -z \"$(ls -A /sys/firmware 2>/dev/null)\" ]",
        ],
        true,
    )
}

/// berth covers every masked directory with clones of one read-only tmpfs (runc mounts one
/// tmpfs per directory): each stays empty and read-only, and they share one device.
fn masked_dirs_share_one_tmpfs(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["root"]["readonly"] = json!(false);
            for d in ["a", "b", "c"] {
                std::fs::create_dir_all(b.rootfs.join(format!("masked/{d}")))?;
                std::fs::write(b.rootfs.join(format!("masked/{d}/secret")), "secret")?;
            }
            if let Some(a) = b.config["linux"]["maskedPaths"].as_array_mut() {
                for d in ["a", "b", "c"] {
                    a.push(json!(format!("/masked/{d}")));
                }
            }
            Ok(())
        },
        &[
            "for d in a b c; do [ -z \"$(ls -A /masked/$d)\" ] || exit 1; done",
            "for d in a b c; do ! touch /masked/$d/x 2>/dev/null || exit 1; done",
            "[ \"$(stat -c %d /masked/a)\" = \"$(stat -c %d /masked/b)\" ]",
            "[ \"$(stat -c %d /masked/b)\" = \"$(stat -c %d /masked/c)\" ]",
            "[ \"$(stat -c %d /masked/a)\" != \"$(stat -c %d /)\" ]",
        ],
        true,
    )
}

fn linux_readonly_paths(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["root"]["readonly"] = json!(false);
            std::fs::create_dir_all(b.rootfs.join("etc/ro-dir"))?;
            if let Some(a) = b.config["linux"]["readonlyPaths"].as_array_mut() {
                a.push(json!("/etc/ro-dir"));
            }
            Ok(())
        },
        &[
            "! touch /etc/ro-dir/x 2>/dev/null",
            "touch /root/writable",
            "grep -q ' /proc/sys [^ ]* ro[, ]' /proc/mounts",
            "grep -q ' /etc/ro-dir [^ ]* ro[, ]' /proc/mounts",
        ],
        true,
    )
}

fn linux_devices(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["linux"]["devices"] = json!([
                {"path": "/dev/berth-null", "type": "c", "major": 1, "minor": 3,
                 "fileMode": 438, "uid": 0, "gid": 0},
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                 "fileMode": 384, "uid": 1000, "gid": 1000}
            ]);
            if let Some(a) = b.config["linux"]["resources"]["devices"].as_array_mut() {
                a.push(json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
            }
            Ok(())
        },
        &[
            "[ \"$(stat -c %F:%t:%T:%a:%u:%g /dev/berth-null)\" = 'character special file:1:3:666:0:0' ]",
            "[ \"$(stat -c %F:%t:%T:%a:%u:%g /dev/fuse)\" = 'character special file:a:e5:600:1000:1000' ]",
            "echo data > /dev/berth-null",
        ],
        true,
    )
}

fn linux_sysctl(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["linux"]["sysctl"] =
                json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"});
            Ok(())
        },
        &[
            "[ \"$(cat /proc/sys/net/ipv4/ip_forward)\" = 1 ]",
            "[ \"$(cat /proc/sys/kernel/shmmax)\" = 123456789 ]",
        ],
        true,
    )
}

/// Start a helper process holding fresh namespaces; killed at cleanup.
fn helper(ctx: &mut Ctx, args: &[&str], watch: &[&str]) -> Result<u32, Fail> {
    let child: Child = Command::new("unshare")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Fail::Skip(format!("cannot run unshare: {e}")))?;
    let pid = child.id();
    let mut child = Some(child);
    ctx.on_cleanup(move || {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    });
    let end = Instant::now() + Duration::from_secs(3);
    let me = pid.to_string();
    // pid_for_children reads as missing until the new namespace has its init (the fork after
    // the unshare), so "missing" is not "unshared" yet.
    while watch.iter().any(|ns| {
        let theirs = host::ns_inode(&me, ns);
        theirs.is_none() || theirs == host::ns_inode("self", ns)
    }) {
        ensure!(
            Instant::now() < end,
            "helper `unshare {}` did not unshare",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(pid)
}

fn ns_check(ns: &str, ino: Option<u64>, same: bool) -> String {
    let label = if ns == "net" { "net" } else { ns };
    let op = if same { "=" } else { "!=" };
    format!(
        "[ \"$(readlink /proc/self/ns/{ns})\" {op} '{label}:[{}]' ]",
        ino.unwrap_or(0)
    )
}

fn linux_ns_path(ctx: &mut Ctx) -> R {
    let a = helper(
        ctx,
        &["-n", "-u", "-i", "sleep", "60"],
        &["net", "uts", "ipc"],
    )?;
    let p = helper(
        ctx,
        &["--fork", "--pid", "--mount-proc", "sleep", "60"],
        &["pid_for_children"],
    )?;
    let (a, p) = (a.to_string(), p.to_string());
    let mut checks = Vec::new();
    for ns in ["net", "uts", "ipc"] {
        checks.push(ns_check(ns, host::ns_inode(&a, ns), true));
    }
    checks.push(ns_check(
        "pid",
        host::ns_inode(&p, "pid_for_children"),
        true,
    ));
    let refs: Vec<&str> = checks.iter().map(|s| s.as_str()).collect();
    let (a2, p2) = (a.clone(), p.clone());
    ctx.inside(
        &move |b: &mut Bundle| {
            b.set_namespaces(&[
                ("pid", Some(&format!("/proc/{p2}/ns/pid_for_children"))),
                ("network", Some(&format!("/proc/{a2}/ns/net"))),
                ("ipc", Some(&format!("/proc/{a2}/ns/ipc"))),
                ("uts", Some(&format!("/proc/{a2}/ns/uts"))),
                ("mount", None),
            ]);
            Ok(())
        },
        &refs,
        true,
    )
}

fn linux_ns_nopath(ctx: &mut Ctx) -> R {
    let mut checks = Vec::new();
    for ns in ["net", "uts", "ipc", "cgroup", "user"] {
        checks.push(ns_check(ns, host::ns_inode("self", ns), true));
    }
    for ns in ["pid", "mnt"] {
        checks.push(ns_check(ns, host::ns_inode("self", ns), false));
    }
    let refs: Vec<&str> = checks.iter().map(|s| s.as_str()).collect();
    ctx.inside(
        &|b: &mut Bundle| {
            b.set_namespaces(&[("pid", None), ("mount", None)]);
            if let Some(o) = b.config.as_object_mut() {
                o.remove("hostname");
            }
            Ok(())
        },
        &refs,
        true,
    )
}

fn linux_ns_itype(ctx: &mut Ctx) -> R {
    let kinds = [
        ("pid", "pid"),
        ("network", "net"),
        ("ipc", "ipc"),
        ("uts", "uts"),
        ("cgroup", "cgroup"),
    ];
    // Busybox checks for every type first, then runtimetest for every type,
    // so a missing/failing runtimetest does not hide namespace bugs.
    for with_rt in [false, true] {
        for (typ, ns) in kinds {
            let mut checks = vec![ns_check(ns, host::ns_inode("self", ns), false)];
            checks.push(ns_check("mnt", host::ns_inode("self", "mnt"), false));
            for (_, other) in kinds.iter().filter(|(t, _)| *t != typ) {
                checks.push(ns_check(other, host::ns_inode("self", other), true));
            }
            let refs: Vec<&str> = checks.iter().map(|s| s.as_str()).collect();
            let setup = move |b: &mut Bundle| {
                b.set_namespaces(&[(typ, None), ("mount", None)]);
                if typ != "uts" {
                    if let Some(o) = b.config.as_object_mut() {
                        o.remove("hostname");
                    }
                }
                Ok(())
            };
            let res = if with_rt {
                ctx.runtimetest_run(&setup, &[])
            } else {
                ctx.inside(&setup, &refs, false)
            };
            res.map_err(|e| match e {
                Fail::Fail(r) if with_rt => Fail::Fail(format!(
                    "busybox checks passed for all types; namespace {typ}: {r}"
                )),
                Fail::Fail(r) => Fail::Fail(format!("namespace {typ}: {r}")),
                s => s,
            })?;
        }
    }
    Ok(())
}

fn linux_uid_mappings(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            let mut ns = b.config["linux"]["namespaces"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ns.push(json!({"type": "user"}));
            b.config["linux"]["namespaces"] = json!(ns);
            b.config["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            b.config["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            b.write()?;
            b.chown_rootfs(100000, 100000)?;
            Ok(())
        },
        &[
            "read a b c < /proc/self/uid_map && [ \"$a $b $c\" = '0 100000 65536' ]",
            "read a b c < /proc/self/gid_map && [ \"$a $b $c\" = '0 100000 65536' ]",
            "[ \"$(id -u)\" = 0 ]",
            "[ \"$(stat -c %u /bin/busybox)\" = 0 ]",
        ],
        true,
    )
}

/// Optional fields of the mountinfo line for "/" (last one wins).
const ROOT_PROP: &str =
    "p=; while read i pa mm r mp rest; do [ \"$mp\" = / ] && p=\"$rest\"; done < /proc/self/mountinfo; echo \"root: $p\"";

fn propagation(ctx: &mut Ctx, mode: &'static str, check: &str) -> R {
    let script = format!("{ROOT_PROP}; case \"$p\" in {check}) exit 0;; esac; exit 1");
    ctx.inside(
        &move |b: &mut Bundle| {
            b.config["linux"]["rootfsPropagation"] = json!(mode);
            Ok(())
        },
        &[&script],
        true,
    )
}

fn prop_shared(ctx: &mut Ctx) -> R {
    propagation(ctx, "shared", "*shared:*")
}

/// A slave "/" has a master only if the host's mount holding the rootfs is shared, as on a
/// systemd host. This host's "/" is private, so the case makes the bundle's directory a shared
/// mount first (and undoes it at cleanup).
fn prop_slave(ctx: &mut Ctx) -> R {
    let dir = ctx.dir("");
    let d = dir.to_string_lossy().into_owned();
    let sh = |args: &[&str]| {
        std::process::Command::new("mount")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !(sh(&["--bind", &d, &d]) && sh(&["--make-shared", &d])) {
        bail!("could not make {d} a shared mount");
    }
    ctx.on_cleanup(move || {
        let _ = std::process::Command::new("umount")
            .args(["-l", &d])
            .status();
    });
    propagation(ctx, "slave", "*master:*")
}

fn prop_private(ctx: &mut Ctx) -> R {
    propagation(
        ctx,
        "private",
        "*shared:*|*master:*|*unbindable*) exit 1;; *",
    )
}

fn prop_unbindable(ctx: &mut Ctx) -> R {
    propagation(ctx, "unbindable", "*unbindable*")
}

fn misc_props(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut Bundle| {
            b.config["annotations"] = json!({"org.opencontainers.test": "misc"});
            b.config["process"]["cwd"] = json!("/tmp");
            b.config["root"]["readonly"] = json!(false);
            b.push_env("MISC=1");
            Ok(())
        },
        &[
            "[ \"$(pwd)\" = /tmp ]",
            "[ \"$MISC\" = 1 ]",
            "touch /tmp/misc",
        ],
        true,
    )
}
