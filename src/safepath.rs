//! Paths inside the container's root, handled through file descriptors.
//!
//! A mount destination, a device node or a masked path is resolved once, inside the root
//! (`openat2` with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: `..` and absolute symlinks stop at
//! the root, /proc magic links are refused), missing parts are created one component at a time
//! relative to an already-resolved directory fd, and the mount goes onto the resolved fd through
//! `/proc/self/fd/N`. Nothing is resolved by path a second time, so a symlink swapped in
//! meanwhile (CVE-2021-30465, CVE-2024-45310) cannot send a mount or a write out of the root.
//! Kernels without openat2 (before 5.6) get the same walk done one component at a time.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, mknodat, Mode, SFlag};

use crate::error::{Error, Result};
use crate::sys;

/// Symlinks followed in one resolution at most (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// An O_PATH handle on a directory that stands for `/` of the paths given to it.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// The path through which the kernel reaches exactly what `fd` refers to.
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass an fd the kernel just returned, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn o_path(dir: BorrowedFd, name: &OsStr, extra: OFlag) -> nix::Result<OwnedFd> {
    openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra,
        Mode::empty(),
    )
    .map(owned)
}

fn io_err(step: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(step, path, std::io::Error::from_raw_os_error(e as i32))
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(owned)
        .map_err(|e| io_err("open container root", path, e))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// `p` as a host path, for messages.
    pub fn display(&self, p: &Path) -> String {
        self.path
            .join(p.strip_prefix("/").unwrap_or(p))
            .display()
            .to_string()
    }

    /// Opens `p` (O_PATH) inside the root, following symlinks only inside it.
    pub fn resolve(&self, p: &Path) -> nix::Result<OwnedFd> {
        self.resolve_with(p, false)
    }

    /// Like `resolve`, but a symlink anywhere on the way is an error (ELOOP).
    pub fn resolve_no_symlinks(&self, p: &Path) -> nix::Result<OwnedFd> {
        self.resolve_with(p, true)
    }

    fn resolve_with(&self, p: &Path, no_symlinks: bool) -> nix::Result<OwnedFd> {
        let rel = relative(p);
        let resolve = sys::RESOLVE_IN_ROOT
            | sys::RESOLVE_NO_MAGICLINKS
            | if no_symlinks {
                sys::RESOLVE_NO_SYMLINKS
            } else {
                0
            };
        // EAGAIN: a rename or mount somewhere raced a walk through `..`; try again.
        for _ in 0..16 {
            match sys::openat2(self.fd.as_raw_fd(), &rel, libc::O_PATH, resolve) {
                Err(Errno::EAGAIN) => continue,
                Err(Errno::ENOSYS) => return walk(self.fd.as_fd(), &rel, no_symlinks),
                other => return other,
            }
        }
        Err(Errno::EAGAIN)
    }

    /// Creates every missing directory of `p` (mode 0755) and returns the last one.
    pub fn mkdir_all(&self, p: &Path) -> Result<OwnedFd> {
        let rel = relative(p);
        let mut done = PathBuf::new();
        let mut cur = self
            .resolve(Path::new("."))
            .map_err(|e| io_err("open container root", &self.path, e))?;
        for c in rel.components() {
            let Component::Normal(name) = c else {
                // `..` and `.`: the kernel resolves them inside the root.
                done.push(c);
                cur = self
                    .resolve(&done)
                    .map_err(|e| io_err("open directory", Path::new(&self.display(&done)), e))?;
                continue;
            };
            done.push(name);
            match mkdirat(Some(cur.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(io_err(
                        "create directory",
                        Path::new(&self.display(&done)),
                        e,
                    ))
                }
            }
            // Re-resolved from the root, so a symlink that exists (or was swapped in) is
            // followed inside the root only.
            cur = self
                .resolve(&done)
                .map_err(|e| io_err("open directory", Path::new(&self.display(&done)), e))?;
            if !is_dir(&cur) {
                return Err(Error::config(
                    "mounts",
                    format!("{} is not a directory", self.display(&done)),
                ));
            }
        }
        Ok(cur)
    }

    /// The parent directory of `p` (created as needed) and `p`'s last component.
    fn parent_of<'p>(&self, p: &'p Path) -> Result<(OwnedFd, &'p OsStr)> {
        let name = p
            .file_name()
            .ok_or_else(|| Error::config("mounts", format!("{} names no file", p.display())))?;
        let parent = self.mkdir_all(p.parent().unwrap_or(Path::new("/")))?;
        Ok((parent, name))
    }

    /// Opens `p`, creating it as an empty file when missing (a mount point for a file bind).
    pub fn create_file(&self, p: &Path) -> Result<OwnedFd> {
        let (parent, name) = self.parent_of(p)?;
        match openat(
            Some(parent.as_raw_fd()),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => drop(owned(fd)),
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(io_err("create mount point", Path::new(&self.display(p)), e)),
        }
        self.resolve(p)
            .map_err(|e| io_err("open mount point", Path::new(&self.display(p)), e))
    }

    /// Makes a device node (or fifo) at `p`; an existing node is returned for the caller to
    /// check. The last component is never followed.
    pub fn mknod(&self, p: &Path, kind: SFlag, mode: u32, dev: libc::dev_t) -> Result<OwnedFd> {
        let (parent, name) = self.parent_of(p)?;
        match mknodat(
            Some(parent.as_raw_fd()),
            name,
            kind,
            Mode::from_bits_truncate(mode & 0o7777),
            dev,
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("mknod {}", p.display()), e)),
        }
        o_path(parent.as_fd(), name, OFlag::empty())
            .map_err(|e| io_err("open device node", Path::new(&self.display(p)), e))
    }
}

fn is_dir(fd: &OwnedFd) -> bool {
    fstat(fd.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// `p` relative to the root: "/a/b" -> "a/b", "/" -> ".".
fn relative(p: &Path) -> PathBuf {
    let r: PathBuf = p
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    if r.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        r
    }
}

/// Resolution inside `root` one component at a time, for kernels without openat2: each step
/// opens one name with O_NOFOLLOW relative to the directory already reached; a symlink's
/// target is spliced into the remaining path, and an absolute one restarts at the root.
pub fn walk(root: BorrowedFd, p: &Path, no_symlinks: bool) -> nix::Result<OwnedFd> {
    let root_dup = || -> nix::Result<OwnedFd> { o_path(root, OsStr::new("."), OFlag::empty()) };
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut cur = root_dup()?;
    let mut pending: Vec<Vec<u8>> = components_rev(p.as_os_str().as_bytes());
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_slice() {
            b"" | b"." => continue,
            b".." => {
                // `..` at the root stays at the root.
                cur = match stack.pop() {
                    Some(fd) => fd,
                    None => root_dup()?,
                };
                continue;
            }
            _ => {}
        }
        let next = o_path(cur.as_fd(), OsStr::from_bytes(&c), OFlag::empty())?;
        let st = fstat(next.as_raw_fd())?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            if no_symlinks {
                return Err(Errno::ELOOP);
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::ELOOP);
            }
            let target = readlinkat(Some(next.as_raw_fd()), "")?;
            let t = target.as_bytes();
            if t.starts_with(b"/") {
                stack.clear();
                cur = root_dup()?;
            }
            pending.extend(components_rev(t));
            continue;
        }
        stack.push(std::mem::replace(&mut cur, next));
    }
    Ok(cur)
}

fn components_rev(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|&b| b == b'/').rev().map(<[u8]>::to_vec).collect()
}

/// `p` with `.` and `..` resolved lexically ("/dev/../etc" -> "/etc"), so prefix checks such as
/// "is this under /dev" see where the path really points.
pub fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}
