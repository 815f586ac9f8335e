//! CVE-2019-5736: the container must never get a writable handle on the host's berth binary.
//!
//! berth does not re-exec itself to build a container: the stage and the init are clones of
//! the `berth create` process, so until the init execs the container's program its
//! `/proc/<pid>/exe` is berth's binary, and a container entrypoint `#!/proc/self/exe` runs it.
//! Two defences, applied by [`protect`] at the start of every verb that spawns container
//! processes (`create`, `run`):
//!
//! 1. `PR_SET_DUMPABLE 0`, inherited by the stage and the init: their `/proc/<pid>/exe` (and
//!    `mem`, `fd`, ...) are then closed to anyone without CAP_SYS_PTRACE. execve resets it.
//! 2. berth re-executes itself once from a *detached, read-only clone mount* of its own
//!    binary (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_RDONLY)` +
//!    `execveat`). Every later process whose exe is berth (the init, an entrypoint
//!    `#!/proc/self/exe`) then has its exe on that mount: a write-open through any handle on it
//!    fails with EROFS, and nobody can make the mount writable again because it is attached
//!    nowhere. It needs no copy of the binary and nothing to clean up: the mount goes away with
//!    the last process that uses it.
//!
//! Where open_tree is not allowed (no CAP_SYS_ADMIN, old kernel), berth falls back to a sealed
//! memfd copy of itself (write, grow, shrink and seal seals), executed the same way.
//!
//! The re-exec is marked by an environment variable that is removed at once. The marker only
//! says "do not re-exec again": the protection is then verified on `/proc/self/exe` itself, and
//! a marker without the protection is an error, so a spoofed marker cannot skip the defence.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use crate::error::{Error, Result, SysContext};
use crate::{logging, sys};

/// Set only on berth's own re-exec; removed from the environment on sight.
const MARKER: &str = "_BERTH_SELFEXE_REEXEC";

/// Seals on the memfd copy: no write, grow or shrink, and no way to remove a seal.
const MEMFD_SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// How `/proc/self/exe` is protected.
#[derive(Debug, PartialEq, Eq)]
pub enum Protection {
    /// On a read-only mount that is attached to no mount table.
    DetachedReadOnlyMount,
    /// A sealed memfd copy.
    SealedMemfd,
}

/// Makes this process non-dumpable and, unless already done, re-executes berth from a
/// read-only detached mount of its binary (or a sealed memfd copy). Returns only once
/// `/proc/self/exe` is protected; a failed re-exec is an error. With the protection comes
/// how long the re-exec took (from the first process's call to the check in the second),
/// for the debug log and `make bench`.
pub fn protect() -> Result<(Protection, Option<std::time::Duration>)> {
    sys::set_dumpable(false).step("PR_SET_DUMPABLE 0")?;
    let marker = std::env::var(MARKER).ok();
    let marked = marker.is_some();
    if marked {
        // Single-threaded: nothing reads the environment concurrently.
        std::env::remove_var(MARKER);
    }
    // The marker carries CLOCK_MONOTONIC (ns) at the first call; the clock is system-wide.
    let started = marker.and_then(|m| m.parse::<u128>().ok());
    let took = || {
        let now = monotonic_ns()?;
        let ns = now.checked_sub(started?)?;
        Some(std::time::Duration::from_nanos(u64::try_from(ns).ok()?))
    };
    match check() {
        Ok(p) => return Ok((p, took())),
        Err(why) if marked => {
            return Err(Error::Other(format!(
                "re-executed berth, but /proc/self/exe is still not protected ({why}); refusing \
                 to create a container that could overwrite the berth binary"
            )))
        }
        Err(why) => logging::debug(&format!("re-exec through a protected binary: {why}")),
    }
    let argv = cstrings(std::env::args_os())?;
    let mut envp = cstrings(std::env::vars_os().map(|(k, v)| {
        let mut kv = k;
        kv.push("=");
        kv.push(v);
        kv
    }))?;
    let stamp = monotonic_ns().unwrap_or_default();
    envp.push(CString::new(format!("{MARKER}={stamp}")).map_err(|e| Error::Other(e.to_string()))?);
    let mount_err = match readonly_clone() {
        Ok(fd) => sys::execveat_fd(fd.as_raw_fd(), &argv, &envp),
        Err(e) => e,
    };
    logging::debug(&format!(
        "read-only clone mount of the berth binary unavailable ({mount_err}); using a sealed \
         memfd copy"
    ));
    let memfd = sealed_copy()?;
    let err = sys::execveat_fd(memfd.as_raw_fd(), &argv, &envp);
    Err(Error::sys(
        format!("re-exec berth from a sealed copy (read-only mount: {mount_err})"),
        err,
    ))
}

fn monotonic_ns() -> Option<u128> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(u128::try_from(t.tv_sec()).ok()? * 1_000_000_000 + u128::try_from(t.tv_nsec()).ok()?)
}

fn cstrings(it: impl Iterator<Item = OsString>) -> Result<Vec<CString>> {
    it.map(|s| {
        CString::new(s.into_vec())
            .map_err(|_| Error::Other("argument or environment has a NUL byte".into()))
    })
    .collect()
}

/// A detached clone of the mount holding berth's binary, rooted at the binary, read-only.
fn readonly_clone() -> std::result::Result<OwnedFd, nix::Error> {
    let fd = sys::open_tree("/proc/self/exe", sys::OPEN_TREE_CLONE)?;
    sys::mount_setattr_fd(
        fd.as_raw_fd(),
        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
        0,
    )?;
    Ok(fd)
}

fn sealed_copy() -> Result<OwnedFd> {
    let memfd = sys::memfd_sealable(c"berth").step("memfd_create for a copy of berth")?;
    let mut src = File::open("/proc/self/exe")
        .map_err(|e| Error::io("open own binary", "/proc/self/exe", e))?;
    let mut dst = File::from(memfd);
    std::io::copy(&mut src, &mut dst).map_err(|e| Error::io("copy own binary", "memfd", e))?;
    let memfd = OwnedFd::from(dst);
    sys::add_seals(memfd.as_raw_fd(), MEMFD_SEALS).step("seal the copy of berth")?;
    Ok(memfd)
}

/// Is `/proc/self/exe` on a read-only mount attached nowhere, or a sealed memfd?
pub fn check() -> std::result::Result<Protection, String> {
    let exe = File::open("/proc/self/exe").map_err(|e| format!("open /proc/self/exe: {e}"))?;
    if let Ok(seals) = sys::get_seals(exe.as_raw_fd()) {
        if seals & MEMFD_SEALS == MEMFD_SEALS {
            return Ok(Protection::SealedMemfd);
        }
        return Err(format!("exe is a memfd with seals {seals:#x} only"));
    }
    let (_, flags) = sys::fstatfs(exe.as_raw_fd()).map_err(|e| format!("fstatfs: {e}"))?;
    if flags & libc::ST_RDONLY == 0 {
        return Err("exe is on a writable mount".into());
    }
    let (mnt_id, _) =
        sys::mount_id_and_ino(exe.as_raw_fd()).map_err(|e| format!("statx mount id: {e}"))?;
    // A read-only mount that is in our mount table could be remounted read-write by the host;
    // only a detached clone is out of everybody's reach.
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    let attached = info
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
        .any(|id| id == mnt_id);
    if attached {
        return Err(format!(
            "exe is on read-only mount {mnt_id}, which is attached in this mount namespace"
        ));
    }
    Ok(Protection::DetachedReadOnlyMount)
}
