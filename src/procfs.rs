//! Writes to `/proc` that cannot be redirected (CVE-2019-16884, CVE-2025-52881).
//!
//! A hostile bundle can mount a tmpfs, or bind a host file or directory, over `/proc`,
//! `/proc/sys` or any file under it; a plain `write("/proc/sys/...")` would then land there.
//! Every `/proc` write berth makes (sysctl, oom_score_adj, uid/gid maps, setgroups, LSM
//! attributes) goes through this module instead:
//!
//! 1. The procfs root is a *private* procfs instance (`fsopen("proc")` + `fsmount`), attached
//!    nowhere, so nothing can be mounted over anything in it. Where that is refused (no
//!    CAP_SYS_ADMIN, a user namespace where a new procfs would be "too revealing"), the `/proc`
//!    mount is used instead, opened with `O_PATH|O_NOFOLLOW` and accepted only if it is the
//!    root of a procfs (`fstatfs` says PROC_SUPER_MAGIC and it is inode 1).
//! 2. The target is opened relative to that root with `openat2` and `RESOLVE_BENEATH |
//!    RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`: no symlink is followed and
//!    no mount point is crossed, so an over-mount makes the open fail (EXDEV) instead of
//!    redirecting it. Without openat2 each component is opened with `O_NOFOLLOW` and must stay
//!    on the root's mount. A leading `self` or `thread-self` is resolved by reading those
//!    symlinks of the verified procfs itself.
//! 3. The opened file must itself be on procfs (`fstatfs`) before anything is written.
//!
//! Errors name the file and say why it was refused.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::error::{Error, Result};
use crate::sys;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const PROC_ROOT_INO: u64 = 1;

/// A verified handle on the root of a procfs.
pub struct ProcRoot {
    fd: OwnedFd,
    /// The mount every opened file must be on (only checked without openat2).
    mnt_id: u64,
    /// True for a private instance made by fsmount.
    pub private: bool,
}

fn err(rel: &str, source: std::io::Error) -> Error {
    Error::io("procfs", PathBuf::from("/proc").join(rel), source)
}

fn refused(rel: &str, why: String) -> Error {
    err(rel, std::io::Error::other(why))
}

fn is_proc(fd: &OwnedFd) -> nix::Result<bool> {
    Ok(sys::fstatfs(fd.as_raw_fd())?.0 == PROC_SUPER_MAGIC)
}

impl ProcRoot {
    /// A private procfs instance where the kernel allows one, else the verified `/proc`.
    pub fn open() -> Result<ProcRoot> {
        if let Ok(fd) = sys::fsmount_proc(false) {
            if is_proc(&fd).unwrap_or(false) {
                let (mnt_id, _) = sys::mount_id_and_ino(fd.as_raw_fd()).unwrap_or((0, 0));
                return Ok(ProcRoot {
                    fd,
                    mnt_id,
                    private: true,
                });
            }
        }
        Self::open_mounted()
    }

    /// The `/proc` mount of the current mount namespace, accepted only if it is the root of a
    /// procfs. Writes through it refuse to cross any mount below it. [`ProcRoot::open`] uses
    /// it when a private instance cannot be made.
    pub fn open_mounted() -> Result<ProcRoot> {
        let fd = sys::openat_owned(
            None,
            "/proc",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        )
        .map_err(|e| err("", e.into()))?;
        let (magic, _) = sys::fstatfs(fd.as_raw_fd()).map_err(|e| err("", e.into()))?;
        if magic != PROC_SUPER_MAGIC {
            return Err(refused(
                "",
                format!("/proc is not a procfs (filesystem magic {magic:#x}); refusing to write"),
            ));
        }
        let (mnt_id, ino) = sys::mount_id_and_ino(fd.as_raw_fd()).map_err(|e| err("", e.into()))?;
        if ino != PROC_ROOT_INO {
            return Err(refused(
                "",
                format!("/proc is a procfs, but not its root (inode {ino}); refusing to write"),
            ));
        }
        Ok(ProcRoot {
            fd,
            mnt_id,
            private: false,
        })
    }

    /// Resolves a leading `self` or `thread-self` through this procfs's own symlinks.
    fn resolve(&self, rel: &str) -> Result<String> {
        let rel = rel.trim_start_matches('/');
        let (first, rest) = rel.split_once('/').unwrap_or((rel, ""));
        if rel.is_empty()
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(refused(rel, "not a plain relative path".into()));
        }
        if first != "self" && first != "thread-self" {
            return Ok(rel.to_string());
        }
        let target = nix::fcntl::readlinkat(Some(self.fd.as_raw_fd()), first)
            .map_err(|e| err(rel, e.into()))?;
        let target = target
            .into_string()
            .map_err(|_| refused(rel, format!("/proc/{first} is not valid UTF-8")))?;
        if target.starts_with('/') || target.split('/').any(|c| c == "..") {
            return Err(refused(rel, format!("/proc/{first} points to {target:?}")));
        }
        Ok(if rest.is_empty() {
            target
        } else {
            format!("{target}/{rest}")
        })
    }

    /// Opens `rel` (relative to the procfs root, e.g. `sys/kernel/shmmax`,
    /// `thread-self/attr/apparmor/exec`, `1234/uid_map`) for writing, without following any
    /// symlink or crossing any mount, and checks the result is a procfs file.
    pub fn open_write(&self, rel: &str) -> Result<File> {
        self.open_flags(rel, libc::O_WRONLY | libc::O_NOCTTY)
    }

    /// Opens the directory `rel` (O_PATH) the same way: to learn whether it exists.
    pub fn open_dir(&self, rel: &str) -> Result<File> {
        self.open_flags(rel, libc::O_PATH | libc::O_DIRECTORY)
    }

    /// Reads `rel` the same way.
    pub fn read(&self, rel: &str) -> Result<String> {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut self.open_flags(rel, libc::O_RDONLY)?, &mut s)
            .map_err(|e| err(rel, e))?;
        Ok(s)
    }

    fn open_flags(&self, rel: &str, flags: libc::c_int) -> Result<File> {
        let path = self.resolve(rel)?;
        let resolve = libc::RESOLVE_BENEATH
            | libc::RESOLVE_NO_SYMLINKS
            | libc::RESOLVE_NO_MAGICLINKS
            | libc::RESOLVE_NO_XDEV;
        let fd = match sys::openat2(self.fd.as_raw_fd(), &path, flags, resolve) {
            Ok(fd) => fd,
            Err(Errno::ENOSYS) => self.walk(&path, flags)?,
            Err(Errno::EXDEV) => {
                return Err(refused(
                    rel,
                    "a mount covers this procfs path (EXDEV); refusing to write through it".into(),
                ))
            }
            Err(Errno::ELOOP) => {
                return Err(refused(
                    rel,
                    "a symlink is in this procfs path (ELOOP); refusing to follow it".into(),
                ))
            }
            Err(e) => return Err(err(rel, e.into())),
        };
        let (magic, _) = sys::fstatfs(fd.as_raw_fd()).map_err(|e| err(rel, e.into()))?;
        if magic != PROC_SUPER_MAGIC {
            return Err(refused(
                rel,
                format!(
                    "opened a file that is not on procfs (magic {magic:#x}); refusing to write"
                ),
            ));
        }
        Ok(File::from(fd))
    }

    /// openat2's guarantees by hand: each component opened with O_NOFOLLOW and checked to be
    /// on the root's mount.
    fn walk(&self, path: &str, flags: libc::c_int) -> Result<OwnedFd> {
        let comps: Vec<&str> = path.split('/').collect();
        let mut cur: Option<OwnedFd> = None;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let dir = cur.as_ref().unwrap_or(&self.fd).as_raw_fd();
            let oflag = if last {
                OFlag::from_bits_truncate(flags) | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
            } else {
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
            };
            let fd = sys::openat_owned(Some(dir), c, oflag).map_err(|e| err(path, e.into()))?;
            let (mnt, _) =
                sys::mount_id_and_ino(fd.as_raw_fd()).map_err(|e| err(path, e.into()))?;
            if mnt != self.mnt_id {
                return Err(refused(
                    path,
                    "a mount covers this procfs path; refusing to write through it".into(),
                ));
            }
            cur = Some(fd);
        }
        cur.ok_or_else(|| refused(path, "empty path".into()))
    }

    /// Writes `data` to `rel` in one write(2), as procfs files expect.
    pub fn write(&self, rel: &str, data: &[u8]) -> Result<()> {
        let mut f = self.open_write(rel)?;
        f.write_all(data).map_err(|e| err(rel, e))
    }
}

/// Opens a procfs file for writing through a fresh verified procfs root (see the module docs),
/// e.g. `open_write("thread-self/attr/apparmor/exec")`.
pub fn open_write(rel: &str) -> Result<File> {
    ProcRoot::open()?.open_write(rel)
}

/// Writes `data` to a procfs file through a fresh verified procfs root, e.g.
/// `write("self/oom_score_adj", b"100")`.
pub fn write(rel: &str, data: &[u8]) -> Result<()> {
    ProcRoot::open()?.write(rel, data)
}
