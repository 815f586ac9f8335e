//! `tmpcopyup` (Podman adds it to its tmpfs mounts): the directory's content is copied into the
//! tmpfs mounted over it, so the container starts with what the image had there.
//!
//! Everything goes through directory fds with `O_NOFOLLOW`: the source is the directory as it
//! was before the tmpfs covered it (an fd opened before the mount), and no symlink in the
//! image can lead the copy outside either tree.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::dir::{Dir, Type};
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};

use crate::error::{Error, Result, SysContext};

/// Copies the tree under `from` into `to` (both directories), keeping modes, owners, links,
/// device nodes and fifos.
pub fn copy_tree(from: RawFd, to: RawFd) -> Result<()> {
    // The callers hold O_PATH handles: reopen them for reading and changing. "." does not
    // cross the tmpfs now mounted over `from`.
    let from = open_dir(from, c".")?;
    let to = open_dir(to, c".")?;
    let (from, to) = (from.as_raw_fd(), to.as_raw_fd());
    let st = nix::sys::stat::fstat(from).step("tmpcopyup: stat the directory")?;
    copy_dir(from, to, 0)?;
    // The tmpfs root takes the directory's own owner and mode.
    fchown(
        to,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .step("tmpcopyup: chown the tmpfs root")?;
    fchmod(to, Mode::from_bits_truncate(st.st_mode)).step("tmpcopyup: chmod the tmpfs root")
}

fn open_dir(parent: RawFd, name: &std::ffi::CStr) -> Result<OwnedFd> {
    let fd = openat(
        Some(parent),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_step(|| format!("tmpcopyup: open {name:?}"))?;
    // SAFETY: openat just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The owner of `name` in `dir`, itself (a link is not followed).
fn chown_entry(dir: RawFd, name: &std::ffi::CStr, owner: (Uid, Gid)) -> Result<()> {
    fchownat(
        Some(dir),
        name,
        Some(owner.0),
        Some(owner.1),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .with_step(|| format!("tmpcopyup: chown {name:?}"))
}

fn copy_dir(from: RawFd, to: RawFd, depth: usize) -> Result<()> {
    if depth > 256 {
        return Err(Error::Other("tmpcopyup: directory tree too deep".into()));
    }
    let dup = nix::unistd::dup(from).step("tmpcopyup: dup")?;
    let mut dir = Dir::from_fd(dup).step("tmpcopyup: read directory")?;
    for entry in dir.iter() {
        let entry = entry.step("tmpcopyup: read directory")?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let st = fstatat(Some(from), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .with_step(|| format!("tmpcopyup: stat {name:?}"))?;
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
        let owner = (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid));
        match entry.file_type() {
            Some(Type::Directory) => {
                mkdirat(Some(to), name, Mode::from_bits_truncate(0o700))
                    .with_step(|| format!("tmpcopyup: mkdir {name:?}"))?;
                let src = open_dir(from, name)?;
                let dst = open_dir(to, name)?;
                copy_dir(src.as_raw_fd(), dst.as_raw_fd(), depth + 1)?;
                fchown(dst.as_raw_fd(), Some(owner.0), Some(owner.1))
                    .with_step(|| format!("tmpcopyup: chown {name:?}"))?;
                fchmod(dst.as_raw_fd(), perm).with_step(|| format!("tmpcopyup: chmod {name:?}"))?;
            }
            Some(Type::File) => {
                let src = openat(
                    Some(from),
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .with_step(|| format!("tmpcopyup: open {name:?}"))?;
                let dst = openat(
                    Some(to),
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .with_step(|| format!("tmpcopyup: create {name:?}"))?;
                // SAFETY: both fds were just opened here and are owned by these Files alone.
                let (mut src, mut dst) =
                    unsafe { (File::from_raw_fd(src), File::from_raw_fd(dst)) };
                std::io::copy(&mut src, &mut dst)
                    .map_err(|e| Error::Other(format!("tmpcopyup: copy {name:?}: {e}")))?;
                fchown(dst.as_raw_fd(), Some(owner.0), Some(owner.1))
                    .with_step(|| format!("tmpcopyup: chown {name:?}"))?;
                fchmod(dst.as_raw_fd(), perm).with_step(|| format!("tmpcopyup: chmod {name:?}"))?;
            }
            Some(Type::Symlink) => {
                let target = readlinkat(Some(from), name)
                    .with_step(|| format!("tmpcopyup: readlink {name:?}"))?;
                symlinkat(target.as_os_str(), Some(to), name)
                    .with_step(|| format!("tmpcopyup: symlink {name:?}"))?;
                chown_entry(to, name, owner)?;
            }
            // A socket is only a name without its listener: nothing to copy.
            Some(Type::Socket) => {}
            _ => {
                mknodat(Some(to), name, kind, perm, st.st_rdev)
                    .with_step(|| format!("tmpcopyup: mknod {name:?}"))?;
                chown_entry(to, name, owner)?;
                fchmodat(Some(to), name, perm, FchmodatFlags::FollowSymlink)
                    .with_step(|| format!("tmpcopyup: chmod {name:?}"))?;
            }
        }
    }
    Ok(())
}
