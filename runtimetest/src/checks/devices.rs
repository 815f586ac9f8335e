//! linux.devices plus the devices and links every container must have.

use crate::cfg;
use crate::parse;
use crate::report::Report;
use crate::sys;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

const DEFAULT_LINKS: [(&str, &str); 4] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

pub fn run(config: &Value, r: &mut Report) {
    check_config_devices(config, r);
    check_default_devices(r);
}

fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    }
}

fn check_config_devices(config: &Value, r: &mut Report) {
    for d in cfg::array_at(config, &["linux", "devices"]) {
        let Some(path) = cfg::str_at(d, &["path"]) else {
            continue;
        };
        let path = parse::normalize_path(path);
        let what = format!("device {path}");
        let md = match fs::metadata(&path) {
            Ok(md) => md,
            Err(e) => {
                r.fail(&what, "to exist", sys::errno_name(&e));
                continue;
            }
        };
        let want_kind = match cfg::str_at(d, &["type"]).unwrap_or("c") {
            "u" => "c",
            "b" => "b",
            "p" => "p",
            _ => "c",
        };
        let got_kind = kind_of(&md.file_type());
        r.check_eq(&format!("{what} type"), want_kind, got_kind);
        if want_kind != "p" {
            let rdev = md.rdev();
            let got = format!("{}:{}", sys::dev_major(rdev), sys::dev_minor(rdev));
            if let (Some(maj), Some(min)) = (cfg::u64_at(d, &["major"]), cfg::u64_at(d, &["minor"]))
            {
                r.check_eq(&format!("{what} major:minor"), format!("{maj}:{min}"), got);
            }
        }
        if let Some(mode) = cfg::u64_at(d, &["fileMode"]) {
            let want = mode & 0o7777;
            let got = u64::from(md.mode()) & 0o7777;
            r.check_that(
                &format!("{what} fileMode"),
                want == got,
                format!("{want:04o}"),
                format!("{got:04o}"),
            );
        }
        if let Some(uid) = cfg::u64_at(d, &["uid"]) {
            r.check_eq(&format!("{what} uid"), uid, u64::from(md.uid()));
        }
        if let Some(gid) = cfg::u64_at(d, &["gid"]) {
            r.check_eq(&format!("{what} gid"), gid, u64::from(md.gid()));
        }
    }
}

fn check_default_devices(r: &mut Report) {
    for (path, maj, min) in DEFAULT_DEVICES {
        let what = format!("default device {path}");
        match fs::metadata(path) {
            Ok(md) => {
                let rdev = md.rdev();
                let got = format!(
                    "{} {}:{}",
                    kind_of(&md.file_type()),
                    sys::dev_major(rdev),
                    sys::dev_minor(rdev)
                );
                r.check_eq(&what, format!("c {maj}:{min}"), got);
            }
            Err(e) => r.fail(&what, format!("c {maj}:{min}"), sys::errno_name(&e)),
        }
    }
    match fs::symlink_metadata("/dev/ptmx") {
        Ok(_) => r.ok("default device /dev/ptmx"),
        Err(e) => r.fail("default device /dev/ptmx", "to exist", sys::errno_name(&e)),
    }
    for (link, target) in DEFAULT_LINKS {
        let what = format!("default link {link}");
        match fs::read_link(link) {
            Ok(t) => r.check_eq(&what, target.to_string(), t.to_string_lossy().into_owned()),
            Err(e) => r.fail(&what, format!("-> {target}"), sys::errno_name(&e)),
        }
    }
}
