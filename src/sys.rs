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
/// execve.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags of this process's descriptors.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    // Older kernels: walk /proc/self/fd.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|_| Errno::last())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd >= first as RawFd)
        .collect();
    for fd in fds {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    Ok(())
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
