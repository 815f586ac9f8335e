//! The bundles every runtime runs: one busybox rootfs shared by all of them (config.json names
//! it by absolute path), and one directory per variant holding only its config.json.

use crate::moby_profile::oci_from_moby;
use crate::proc::{failed, Fail, Scratch};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BUSYBOX: &str = "/bin/busybox";

fn io(what: &Path) -> impl Fn(std::io::Error) -> Fail + '_ {
    move |e| failed(format!("{}: {e}", what.display()))
}

/// The busybox rootfs, with the mount points and masked paths the variants need (up to
/// `items` of each): /mnt/mI, and /masked/dI (even I: a directory) or /masked/fI (odd I: a
/// file).
pub fn make_rootfs(rootfs: &Path, items: usize) -> Result<(), Fail> {
    for d in ["bin", "proc", "dev", "sys", "tmp", "mnt", "masked"] {
        let p = rootfs.join(d);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    let bb = rootfs.join("bin/busybox");
    std::fs::copy(BUSYBOX, &bb)
        .map_err(|e| failed(format!("copy {BUSYBOX} (the busybox-static package): {e}")))?;
    for applet in ["true", "sh", "sleep"] {
        let p = rootfs.join("bin").join(applet);
        std::os::unix::fs::symlink("busybox", &p).map_err(io(&p))?;
    }
    for i in 0..items {
        let m = rootfs.join(format!("mnt/m{i}"));
        std::fs::create_dir(&m).map_err(io(&m))?;
        let k = masked_path(i);
        let p = rootfs.join(k.trim_start_matches('/'));
        if i.is_multiple_of(2) {
            std::fs::create_dir(&p).map_err(io(&p))?;
        } else {
            std::fs::write(&p, "").map_err(io(&p))?;
        }
    }
    Ok(())
}

fn masked_path(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("/masked/d{i}")
    } else {
        format!("/masked/f{i}")
    }
}

/// `berth spec` run in `dir`, edited into the plain bundle's config: /bin/true, no terminal,
/// the shared rootfs, and ociVersion 1.0.2 (crun 1.8 refuses versions it does not know).
pub fn base_config(
    berth: &Path,
    dir: &Path,
    rootfs: &Path,
    scratch: &mut Scratch,
) -> Result<Value, Fail> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut spec = Command::new(berth);
    spec.arg("spec").current_dir(dir);
    crate::proc::run_ok(&mut spec, scratch, Duration::from_secs(30))?;
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let mut c: Value =
        serde_json::from_str(&text).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    c["ociVersion"] = json!("1.0.2");
    c["process"]["args"] = json!(["/bin/true"]);
    c["process"]["terminal"] = json!(false);
    c["root"]["path"] = json!(rootfs.to_string_lossy());
    Ok(c)
}

/// Writes `config` as DIR/config.json and returns DIR.
pub fn write(dir: &Path, config: &Value) -> Result<PathBuf, Fail> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(config)
        .map_err(|e| failed(format!("{}: {e}", path.display())))?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(dir.to_path_buf())
}

pub fn with_args(base: &Value, args: &[&str]) -> Value {
    let mut c = base.clone();
    c["process"]["args"] = json!(args);
    c
}

/// Docker's default profile (Debian's copy for Podman), converted as a manager would for a
/// container holding the spec's bounding capabilities.
pub fn with_docker_seccomp(base: &Value, profile: &Path) -> Result<Value, Fail> {
    let text = std::fs::read_to_string(profile).map_err(|e| {
        failed(format!(
            "{}: {e} (`make deps` downloads it)",
            profile.display()
        ))
    })?;
    let moby: Value =
        serde_json::from_str(&text).map_err(|e| failed(format!("{}: {e}", profile.display())))?;
    let caps: Vec<&str> = base["process"]["capabilities"]["bounding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut c = base.clone();
    c["linux"]["seccomp"] = oci_from_moby(&moby, &caps);
    Ok(c)
}

/// N more tmpfs mounts, at /mnt/m0 .. /mnt/m{N-1}.
pub fn with_mounts(base: &Value, n: usize) -> Value {
    let mut c = base.clone();
    if let Some(mounts) = c["mounts"].as_array_mut() {
        for i in 0..n {
            mounts.push(json!({
                "destination": format!("/mnt/m{i}"),
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "size=64k"],
            }));
        }
    }
    c
}

/// N more entries in linux.maskedPaths, half directories, half files.
pub fn with_masked(base: &Value, n: usize) -> Value {
    let mut c = base.clone();
    if c["linux"]["maskedPaths"].is_null() {
        c["linux"]["maskedPaths"] = json!([]);
    }
    if let Some(paths) = c["linux"]["maskedPaths"].as_array_mut() {
        paths.extend((0..n).map(|i| json!(masked_path(i))));
    }
    c
}

/// A profile allowing everything but N distinct rules: personality(2) with argument 0x1000+I
/// is refused with an errno. Nothing in the container calls it.
pub fn with_rules(base: &Value, n: usize) -> Value {
    let rules: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 0x1000 + i, "op": "SCMP_CMP_EQ"}],
            })
        })
        .collect();
    let mut c = base.clone();
    c["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    });
    c
}

/// N createRuntime hooks, each the host's dd reading the state from its stdin to /dev/null.
/// Not /bin/true: crun 1.8 fails a hook that exits before crun has written the state to it
/// (EPIPE), which /bin/true now and then does; a hook that reads its stdin is the usual kind.
pub fn with_hooks(base: &Value, n: usize) -> Value {
    let hook = json!({"path": "/bin/dd", "args": ["dd", "of=/dev/null", "status=none"]});
    let mut c = base.clone();
    c["hooks"]["createRuntime"] = json!(vec![hook; n]);
    c
}
