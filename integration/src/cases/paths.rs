//! Attacks on how the runtime resolves paths inside a hostile rootfs: a mount destination whose
//! parent is swapped for a symlink while containers are created (CVE-2021-30465 /
//! CVE-2024-45310), /proc and /sys that are symlinks, and device paths that climb out of /dev.
//! Each checks what ends up where, from inside the container and from the host.

use super::{leftovers, Case, Ctx, R};
use crate::{bail, ensure};
use serde_json::json;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "escape/mount_destination_symlink_race",
            run: mount_destination_race,
        },
        Case {
            name: "escape/proc_is_a_symlink",
            run: proc_is_a_symlink,
        },
        Case {
            name: "escape/sys_is_a_symlink",
            run: sys_is_a_symlink,
        },
        Case {
            name: "escape/device_path_outside_dev",
            run: device_path_outside_dev,
        },
        Case {
            name: "escape/no_pivot_new_proc",
            run: no_pivot_new_proc,
        },
        Case {
            name: "config/dev_readonly",
            run: dev_readonly,
        },
        Case {
            name: "config/userns_bind_private_parent",
            run: userns_bind_private_parent,
        },
    ]
}

/// renameat2(RENAME_EXCHANGE): swaps two names atomically.
fn exchange(a: &Path, b: &Path) -> bool {
    let (Ok(ca), Ok(cb)) = (
        CString::new(a.as_os_str().as_bytes()),
        CString::new(b.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: two valid C strings; RENAME_EXCHANGE only swaps the two names.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        ) == 0
    }
}

/// The rootfs holds `flip`, swapped without pause between a directory and an absolute symlink
/// to the *host* path of the rootfs's `/victim`. A mount destination under /flip resolved once
/// and then mounted by path lands, when the swap falls in between, on /victim: the container
/// then finds the bind's marker there. Resolved and mounted through one fd, it never does.
fn mount_destination_race(ctx: &mut Ctx) -> R {
    const ROUNDS: usize = 100;
    let src = ctx.dir("race-src");
    fs::write(src.join("marker"), "bound")?;
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "if [ -e /victim/inner/marker ]; then echo ESCAPED; fi",
    ])?;
    let rootfs = ct.b.rootfs.clone();
    let victim = rootfs.join("victim");
    fs::create_dir_all(victim.join("inner"))?;
    let flip = rootfs.join("flip");
    let other = rootfs.join("flip-other");
    fs::create_dir_all(flip.join("inner"))?;
    symlink(&victim, &other)?;
    ct.b.add_mount(json!({
        "destination": "/flip/inner", "type": "bind",
        "source": src.to_string_lossy(), "options": ["bind"]
    }));
    ct.b.config["root"]["readonly"] = json!(false);
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let (flip, other) = (flip.clone(), other.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if exchange(&flip, &other) {
                    n += 1;
                }
            }
            n
        })
    };
    let mut escaped = 0;
    let mut failures = Vec::new();
    let mut failed = 0;
    let runs = ROUNDS;
    for i in 0..ROUNDS {
        let o = ct.run_fg();
        if o.stdout.contains("ESCAPED") {
            escaped += 1;
        }
        if !o.success() {
            failed += 1;
            if failures.len() < 3 {
                failures.push(format!("round {i}: {}", o.brief()));
            }
        }
        let _ = ct.delete(true);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = flipper.join().unwrap_or(0);
    // Put `flip` back as the directory, whichever way the last swap left it.
    if fs::symlink_metadata(&flip).is_ok_and(|m| m.file_type().is_symlink()) {
        exchange(&flip, &other);
    }
    ensure!(swaps > 0, "the flipper never swapped the paths");
    ensure!(
        escaped == 0,
        "{escaped} of {runs} containers found the bind mounted on /victim, outside its destination"
    );
    // A create that resolves /flip while it is the link fails (the link's target does not
    // exist inside the root): fine, but enough must get through for the race to have been run.
    ensure!(
        runs - failed >= 5,
        "{failed} of {runs} containers failed to run, too many for the race to mean anything: {}",
        failures.join("; ")
    );
    Ok(())
}

fn kernel_fs_symlink(ctx: &mut Ctx, dir: &str) -> R {
    let mut ct = ctx.container(&["true"])?;
    // `dir` is absolute: join its name, never the path itself (that would be the host's).
    let real = ct.b.rootfs.join(dir.trim_start_matches('/'));
    fs::remove_dir_all(&real)?;
    let decoy = ct.b.rootfs.join(format!("tmp/decoy{dir}"));
    fs::create_dir_all(&decoy)?;
    symlink(format!("/tmp/decoy{dir}"), &real)?;
    if dir == "/sys" {
        ct.b.add_mount(
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                              "options": ["nosuid", "noexec", "nodev", "ro"]}),
        );
    }
    let o = ct.create();
    if o.success() {
        let _ = ct.delete(true);
        bail!("create mounted {dir} through a symlink in the rootfs");
    }
    ensure!(
        o.stderr.contains("ordinary directory"),
        "the error does not say why: {}",
        o.stderr.trim()
    );
    let left = leftovers(ctx, &ct.id, &ct.b.dir);
    ensure!(left.is_empty(), "left behind {left:?}");
    Ok(())
}

/// A rootfs whose /proc is a symlink: procfs must not be mounted where the link points.
fn proc_is_a_symlink(ctx: &mut Ctx) -> R {
    kernel_fs_symlink(ctx, "/proc")
}

fn sys_is_a_symlink(ctx: &mut Ctx) -> R {
    kernel_fs_symlink(ctx, "/sys")
}

/// "/dev/../etc/evil" starts with "/dev" as text, but is not a device path.
fn device_path_outside_dev(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["true"])?;
    ct.b.config["linux"]["devices"] = json!([
        {"path": "/dev/../etc/evil", "type": "c", "major": 1, "minor": 3, "fileMode": 438}
    ]);
    let o = ct.create();
    let made = ct.b.rootfs.join("etc/evil").exists();
    if o.success() {
        let _ = ct.delete(true);
    }
    ensure!(
        !o.success(),
        "create accepted a device at /dev/../etc/evil (node made in /etc: {made})"
    );
    ensure!(!made, "a device node was made at /etc/evil");
    ensure!(
        o.stderr.contains("not under /dev"),
        "the error does not say why: {}",
        o.stderr.trim()
    );
    Ok(())
}

/// `--no-pivot`: the host's procfs must not stay in the container's mount namespace. If it does,
/// a process that makes its own user namespace is allowed a fresh, unmasked proc (the kernel
/// permits it while some fully visible procfs exists in the namespace): runc's test of the same.
fn no_pivot_new_proc(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "mkdir -p /tmp/p; \
         unshare -m -r -p -f sh -c 'echo IN-USERNS; mount -t proc none /tmp/p && echo MOUNTED-PROC' 2>&1; \
         unshare -m -r -f sh -c 'mount -t sysfs none /tmp/p && echo MOUNTED-SYSFS' 2>&1; true",
    ])?;
    std::os::unix::fs::symlink("busybox", ct.b.rootfs.join("bin/unshare"))?;
    // Mapping root in a new user namespace needs CAP_SETFCAP (Linux 5.12+).
    for set in ["bounding", "effective", "permitted"] {
        if let Some(a) = ct.b.config["process"]["capabilities"][set].as_array_mut() {
            a.push(json!("CAP_SETFCAP"));
        }
    }
    ct.b.config["root"]["readonly"] = json!(false);
    if let Err(e) = ct.b.write() {
        bail!("write config: {e}");
    }
    let b = ct.b.dir.to_string_lossy().into_owned();
    let o = ct.rt.exec_opts(
        &["run", "--no-pivot", "--bundle", &b, &ct.id],
        crate::runtime::Opts {
            stdout: Some(ct.out.clone()),
            stderr: Some(ct.err.clone()),
            ..Default::default()
        },
    );
    let out = ct.stdout_text();
    ensure!(o.success(), "run --no-pivot: {}; {}", o.brief(), out.trim());
    // The attack needs its own user namespace; without one it proves nothing.
    ensure!(
        out.contains("IN-USERNS"),
        "the container could not make a user namespace, so nothing was tried: {}",
        out.trim()
    );
    ensure!(
        !out.contains("MOUNTED"),
        "the container mounted a new kernel filesystem: {}",
        out.trim()
    );
    ensure!(
        out.to_lowercase().contains("permission denied") || out.contains("Operation not permitted"),
        "the mounts did not fail for lack of permission: {}",
        out.trim()
    );
    Ok(())
}

/// `/dev` mounted `ro`: the devices and links are there, and /dev is read-only in the end.
fn dev_readonly(ctx: &mut Ctx) -> R {
    ctx.inside(
        &|b: &mut crate::bundle::Bundle| {
            if let Some(m) = b.config["mounts"]
                .as_array_mut()
                .and_then(|ms| ms.iter_mut().find(|m| m["destination"] == "/dev"))
            {
                if let Some(o) = m["options"].as_array_mut() {
                    o.push(json!("ro"));
                }
            }
            Ok(())
        },
        &[
            "test -c /dev/null && test -c /dev/zero && test -L /dev/fd",
            "echo x > /dev/null",
            "! touch /dev/new-file 2>/dev/null",
            "grep -q ' /dev ro,' /proc/self/mountinfo",
        ],
        false,
    )
}

/// In a user namespace, a bind source under a 0700 host directory: opened on the host before
/// the namespace is entered, so the mount works (runc does the same).
fn userns_bind_private_parent(ctx: &mut Ctx) -> R {
    use std::os::unix::fs::PermissionsExt;
    let private = ctx.dir("private");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700))?;
    let data = private.join("data");
    fs::create_dir_all(&data)?;
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755))?;
    fs::write(data.join("file"), "private-data")?;
    fs::set_permissions(data.join("file"), fs::Permissions::from_mode(0o644))?;
    let data_s = data.to_string_lossy().into_owned();
    ctx.inside(
        &move |b: &mut crate::bundle::Bundle| {
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
            b.add_mount(json!({"destination": "/mnt/data", "type": "bind",
                               "source": data_s, "options": ["rbind", "ro"]}));
            b.write()?;
            b.chown_rootfs(100000, 100000)?;
            Ok(())
        },
        &["[ \"$(cat /mnt/data/file)\" = private-data ]"],
        false,
    )
}
