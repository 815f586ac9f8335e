//! Filesystem checks: root.readonly, mounts, maskedPaths, readonlyPaths.

use crate::cfg;
use crate::parse::{self, MountInfo};
use crate::report::Report;
use crate::sys;
use serde_json::Value;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

pub fn read_mountinfo() -> Option<Vec<MountInfo>> {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .map(|t| parse::parse_mountinfo(&t))
}

pub fn run(config: &Value, r: &mut Report) {
    let Some(mounts) = read_mountinfo() else {
        r.fail("mountinfo", "/proc/self/mountinfo readable", "unreadable");
        return;
    };
    let masked: Vec<String> = cfg::strings_at(config, &["linux", "maskedPaths"])
        .iter()
        .map(|p| parse::normalize_path(p))
        .collect();
    check_root_readonly(config, &mounts, r);
    check_mounts(config, &mounts, &masked, r);
    check_masked_paths(&masked, &mounts, r);
    check_readonly_paths(config, &mounts, r);
}

/// Try creating (then removing) a file inside `dir`.
fn probe_create(dir: &str) -> io::Result<()> {
    let name = format!(
        "{}/.runtimetest-probe-{}",
        dir.trim_end_matches('/'),
        sys::getpid()
    );
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&name)
        .map(|_| {
            let _ = fs::remove_file(&name);
        })
}

/// Open an existing file for writing without creating or truncating it.
fn probe_open_write(path: &str) -> io::Result<()> {
    OpenOptions::new().write(true).open(path).map(|_| ())
}

/// Judge a write probe: EROFS always passes; EACCES/EPERM also pass for
/// non-root users, who may be refused before the read-only check.
fn judge_write(r: &mut Report, what: &str, res: io::Result<()>) {
    let (_, euid) = sys::uids();
    match res {
        Ok(()) => r.fail(what, "EROFS", "write succeeded"),
        Err(e) => {
            let code = e.raw_os_error();
            let ok = code == Some(libc::EROFS)
                || (euid != 0 && matches!(code, Some(libc::EACCES) | Some(libc::EPERM)));
            r.check_that(what, ok, "EROFS", sys::errno_name(&e));
        }
    }
}

fn check_root_readonly(config: &Value, mounts: &[MountInfo], r: &mut Report) {
    let ro = cfg::bool_at(config, &["root", "readonly"]).unwrap_or(false);
    let root = parse::mount_at(mounts, "/");
    if ro {
        judge_write(r, "root.readonly write to /", probe_create("/"));
        match root {
            Some(m) => r.check_that(
                "root.readonly mount flag",
                m.has_option("ro"),
                "ro",
                m.options.join(","),
            ),
            None => r.fail("root.readonly mount flag", "a mount at /", "none"),
        }
    } else {
        match root {
            Some(m) => r.check_that(
                "root not read-only",
                !m.has_option("ro"),
                "rw",
                m.options.join(","),
            ),
            None => r.fail("root not read-only", "a mount at /", "none"),
        }
    }
}

/// Filesystem types a config mount type may show up as.
fn expected_fstypes(t: &str) -> Option<&'static [&'static str]> {
    Some(match t {
        "proc" => &["proc"],
        "sysfs" => &["sysfs"],
        "tmpfs" => &["tmpfs"],
        "devpts" => &["devpts"],
        "mqueue" => &["mqueue"],
        // cgroup v1 is a tmpfs with per-controller mounts below it.
        "cgroup" => &["cgroup", "cgroup2", "tmpfs"],
        "cgroup2" => &["cgroup2"],
        _ => return None,
    })
}

fn check_mounts(config: &Value, mounts: &[MountInfo], masked: &[String], r: &mut Report) {
    for m in cfg::array_at(config, &["mounts"]) {
        let Some(dest) = cfg::str_at(m, &["destination"]) else {
            continue;
        };
        let dest = parse::normalize_path(dest);
        if masked.contains(&dest) {
            continue;
        }
        let what = format!("mount {dest}");
        let Some(mi) = parse::mount_at(mounts, &dest) else {
            r.fail(&what, "a mount point", "none in mountinfo");
            continue;
        };
        r.ok(&what);
        let typ = cfg::str_at(m, &["type"]).unwrap_or("");
        let opts = cfg::strings_at(m, &["options"]);
        let is_bind = typ == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            continue;
        }
        if let Some(types) = expected_fstypes(typ) {
            r.check_that(
                &format!("{what} type"),
                types.contains(&mi.fstype.as_str()),
                typ,
                &mi.fstype,
            );
        }
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            if opts.iter().any(|o| o == flag) {
                r.check_that(
                    &format!("{what} {flag}"),
                    mi.has_option(flag),
                    flag,
                    mi.options.join(","),
                );
            }
        }
    }
}

fn check_masked_paths(masked: &[String], mounts: &[MountInfo], r: &mut Report) {
    for p in masked {
        let what = format!("maskedPaths {p}");
        let md = match fs::metadata(p) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                r.skip(&what, format!("stat failed: {}", sys::errno_name(&e)));
                continue;
            }
        };
        if md.is_dir() {
            match parse::mount_at(mounts, p) {
                Some(mi) => r.check_that(
                    &what,
                    mi.fstype == "tmpfs" && mi.has_option("ro"),
                    "read-only tmpfs",
                    format!("{} {}", mi.fstype, mi.options.join(",")),
                ),
                None => r.fail(&what, "read-only tmpfs", "no mount"),
            }
            match fs::read_dir(p) {
                Ok(rd) => {
                    let n = rd.count();
                    r.check_eq(&format!("{what} empty"), 0, n);
                }
                Err(e) => r.fail(&format!("{what} empty"), "readable", sys::errno_name(&e)),
            }
        } else {
            let rdev = md.rdev();
            let (maj, min) = (sys::dev_major(rdev), sys::dev_minor(rdev));
            let is_null = md.file_type().is_char_device() && maj == 1 && min == 3;
            r.check_that(
                &what,
                is_null,
                "char device 1:3",
                format!("{:?} {maj}:{min}", md.file_type()),
            );
            let what = format!("{what} reads empty");
            let mut buf = [0u8; 64];
            match fs::File::open(p).and_then(|mut f| f.read(&mut buf)) {
                Ok(n) => r.check_eq(&what, 0, n),
                Err(e) => r.fail(&what, "0 bytes", sys::errno_name(&e)),
            }
        }
    }
}

fn check_readonly_paths(config: &Value, mounts: &[MountInfo], r: &mut Report) {
    for p in cfg::strings_at(config, &["linux", "readonlyPaths"]) {
        let p = parse::normalize_path(&p);
        let what = format!("readonlyPaths {p}");
        let md = match fs::metadata(&p) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                r.skip(&what, format!("stat failed: {}", sys::errno_name(&e)));
                continue;
            }
        };
        let mut res = if md.is_dir() {
            probe_create(&p)
        } else {
            probe_open_write(&p)
        };
        // Some filesystems refuse the probe before looking at the mount
        // flags (procfs answers ENOENT to file creation in /proc/sys).
        // Then ask again with a chmod to the current mode, which checks
        // for a read-only mount first and changes nothing otherwise.
        if matches!(&res, Err(e) if e.raw_os_error() != Some(libc::EROFS)) {
            if let Err(e) = fs::set_permissions(&p, md.permissions()) {
                if e.raw_os_error() == Some(libc::EROFS) {
                    res = Err(e);
                }
            }
        }
        judge_write(r, &format!("{what} write"), res);
        match parse::mount_containing(mounts, &p) {
            Some(mi) => r.check_that(
                &format!("{what} mount ro"),
                mi.has_option("ro"),
                "ro",
                format!("{} on {}", mi.options.join(","), mi.mount_point),
            ),
            None => r.fail(&format!("{what} mount ro"), "ro", "no mount"),
        }
    }
}
