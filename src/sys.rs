//! Raw system calls that nix does not wrap, each in one small audited function.

use std::ffi::CString;
use std::os::fd::RawFd;

use nix::errno::Errno;

/// Fork-like clone with the given flags (no new stack): returns 0 in the child.
///
/// # Safety
/// The caller must be single-threaded, and the child must end in `_exit` or `execve` without
/// returning into frames that expect to run once.
pub unsafe fn clone_fork(flags: libc::c_ulong) -> nix::Result<i32> {
    // SAFETY: with a null stack, clone behaves like fork: the child continues on a copy of the
    // caller's stack. Arguments after the stack (ptid, ctid, tls) are unused without the
    // corresponding flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    Errno::result(r).map(|r| r as i32)
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on a path, recursively.
pub fn mount_setattr_recursive(path: &str, set: u64, clr: u64) -> nix::Result<()> {
    let cpath = CString::new(path).map_err(|_| Errno::EINVAL)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: cpath is a valid C string and attr a properly sized, initialised struct that
    // outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Marks every fd from `first` up close-on-exec, so only what the process should get survives
/// execve. Any failure is returned: a descriptor left inheritable could leak into the container.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags of this process's descriptors.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    let err = Errno::last();
    if err != Errno::ENOSYS && err != Errno::EINVAL {
        return Err(err);
    }
    // Kernels before 5.11: walk /proc/self/fd.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd >= first as RawFd)
        .collect();
    for fd in fds {
        match nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        ) {
            // The directory walk's own descriptor, closed by now.
            Ok(_) | Err(Errno::EBADF) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Closes every fd from `first` up. Only for start-up, before this process has opened anything
/// of its own there: a descriptor something in the process still used would be pulled from under
/// it.
pub fn close_inherited_from(first: u32) -> nix::Result<()> {
    // SAFETY: close_range only closes this process's descriptors; the caller owns none of them
    // (they were inherited and nothing in this process refers to them).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0 as libc::c_uint) };
    if r == 0 {
        return Ok(());
    }
    let err = Errno::last();
    if err != Errno::ENOSYS {
        return Err(err);
    }
    // Kernels before 5.9: walk /proc/self/fd.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd >= first as RawFd)
        .collect();
    for fd in fds {
        match nix::unistd::close(fd) {
            // The directory walk's own descriptor, closed by now.
            Ok(()) | Err(Errno::EBADF) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes `cmd`'s child close every descriptor but 0, 1 and 2 when it execs, whatever this process
/// holds (e.g. fds kept for `--preserve-fds` in the container's init): hooks get no caller fds.
pub fn only_stdio_on_exec(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes one raw syscall
    // (no allocation, no locks), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            let r = libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
            if r == 0 {
                return Ok(());
            }
            // Kernels before 5.11: flag each possible descriptor (bounded, and still without
            // allocating); EBADF just means the number is not open.
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let top = lim.rlim_cur.min(1 << 20) as libc::c_int;
            for fd in 3..top {
                if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0
                    && *libc::__errno_location() != libc::EBADF
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The highest capability number the running kernel knows.
pub fn cap_last_cap() -> std::io::Result<u32> {
    let s = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
    s.trim()
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, s.trim().to_string()))
}

/// Removes capability number `cap` from the bounding set (PR_CAPBSET_DROP).
pub fn capbset_drop(cap: u32) -> nix::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number and changes only this thread's set.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    Errno::result(r).map(drop)
}

/// The working directory as the kernel's getcwd(2) reports it, without libc's rewriting: a
/// directory not reachable from the process's root comes back as "(unreachable)/...".
pub fn getcwd_raw() -> nix::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: the kernel writes at most buf.len() bytes into the live buffer.
    let r = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    let n = Errno::result(r)? as usize;
    // The returned length counts the terminating NUL.
    buf.truncate(n.saturating_sub(1));
    Ok(buf)
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> nix::Result<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = Errno::result(r)? as RawFd;
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> nix::Result<()> {
    // SAFETY: a null siginfo means the kernel fills in a default one.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): loads a classic-BPF filter into the calling
/// thread. With SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns the notification fd.
pub fn seccomp_set_filter(
    flags: u32,
    program: &[libc::sock_filter],
) -> nix::Result<Option<std::os::fd::OwnedFd>> {
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    const NEW_LISTENER: u32 = 1 << 3;
    let len = u16::try_from(program.len()).map_err(|_| Errno::E2BIG)?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prog points at `len` initialised instructions that outlive the call; the kernel
    // copies the program and never writes through the pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    let r = Errno::result(r)?;
    if flags & NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER the return value is a fresh fd that nothing else owns.
        Ok(Some(unsafe {
            std::os::fd::FromRawFd::from_raw_fd(r as RawFd)
        }))
    } else {
        Ok(None)
    }
}

pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): opens `path` relative to `dirfd` under the `resolve` restrictions.
pub fn openat2(
    dirfd: std::os::fd::BorrowedFd,
    path: &std::path::Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    // SAFETY: cpath and how are valid for the call; the kernel reads size_of::<OpenHow>() bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd.as_raw_fd(),
            cpath.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = Errno::result(r)? as RawFd;
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

pub const OPEN_TREE_CLONE: u32 = 1;

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at `path` (recursive when
/// asked), as an fd that `move_mount` can attach anywhere, in any mount namespace.
pub fn open_tree_clone(
    path: &std::path::Path,
    recursive: bool,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: cpath is a valid C string for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cpath.as_ptr(), flags) };
    let fd = Errno::result(r)? as RawFd;
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// move_mount(2) from a detached mount fd onto the object `to` refers to.
pub fn move_mount_fds(from: RawFd, to: RawFd) -> nix::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    let empty = c"";
    // SAFETY: both paths are the empty C string; the fds are owned by the caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            empty.as_ptr(),
            to,
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}
