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

/// clone3(2)'s argument block (the kernel's struct clone_args, size version 2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Fork-like clone3 with `flags` whose child is born in the cgroup v2 directory `cgroup_fd`
/// (CLONE_INTO_CGROUP, Linux 5.7): no migration afterwards. Returns 0 in the child. ENOSYS,
/// E2BIG or EINVAL mean the kernel cannot: the caller falls back to clone_fork.
///
/// # Safety
/// As clone_fork.
pub unsafe fn clone_into_cgroup(flags: libc::c_ulong, cgroup_fd: RawFd) -> nix::Result<i32> {
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd as u64,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; a zero stack makes clone3 behave
    // like fork (the child continues on a copy of the caller's stack).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
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

/// mount_setattr(2): sets and clears mount attributes on what `dirfd` + `path` name.
fn mount_setattr(
    dirfd: RawFd,
    path: &std::ffi::CStr,
    flags: libc::c_uint,
    set: u64,
    clr: u64,
) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is a valid C string and attr a properly sized, initialised struct; both
    // outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// mount_setattr(2) on a path, recursively.
pub fn mount_setattr_recursive(path: &str, set: u64, clr: u64) -> nix::Result<()> {
    let cpath = CString::new(path).map_err(|_| Errno::EINVAL)?;
    mount_setattr(
        libc::AT_FDCWD,
        &cpath,
        libc::AT_RECURSIVE as libc::c_uint,
        set,
        clr,
    )
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
    let fds = open_fds_from(first)?;
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

/// This process's open fds from `first` up, listed from /proc/self/fd (for kernels without
/// close_range).
fn open_fds_from(first: u32) -> nix::Result<Vec<RawFd>> {
    Ok(std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd >= first as RawFd)
        .collect())
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
    let fds = open_fds_from(first)?;
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

/// The highest capability number the running kernel knows, asked of the kernel itself
/// (PR_CAPBSET_READ fails with EINVAL past it), not of a /proc file a bundle could cover.
pub fn cap_last_cap() -> nix::Result<u32> {
    let mut last = None;
    for n in 0..=255u32 {
        // SAFETY: PR_CAPBSET_READ takes a capability number and only reads this thread's set.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, n as libc::c_ulong, 0, 0, 0) };
        match Errno::result(r) {
            Ok(_) => last = Some(n),
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    last.ok_or(Errno::EINVAL)
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

/// Whether the kernel knows these seccomp(2) filter flags: with no program it fails with EFAULT
/// once the flags passed its check, and with EINVAL if they did not. Nothing is loaded.
pub fn seccomp_flags_known(flags: u32) -> bool {
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    // SAFETY: a null program pointer is never dereferenced by us; the kernel's copy fails.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    Errno::result(r).err() == Some(Errno::EFAULT)
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

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at `path` (recursive when
/// asked), as an fd that `move_mount` can attach anywhere, in any mount namespace.
pub fn open_tree_clone(
    path: &std::path::Path,
    recursive: bool,
) -> nix::Result<std::os::fd::OwnedFd> {
    let extra = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    open_tree(path, OPEN_TREE_CLONE | extra)
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

fn owned_fd(r: libc::c_long) -> nix::Result<std::os::fd::OwnedFd> {
    let fd = Errno::result(r)? as RawFd;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// PR_SET_DUMPABLE: a non-dumpable process's /proc/<pid> files (exe, mem, fd, ...) are only
/// open to holders of CAP_SYS_PTRACE. execve resets it to dumpable.
pub fn set_dumpable(dumpable: bool) -> nix::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer and changes only this process's mm flags.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            libc::c_ulong::from(dumpable),
            0,
            0,
            0,
        )
    };
    Errno::result(r).map(drop)
}

pub const OPEN_TREE_CLONE: libc::c_uint = 1;

/// open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount at `path` (rooted at it).
pub fn open_tree<P: AsRef<std::ffi::OsStr> + ?Sized>(
    path: &P,
    flags: libc::c_uint,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_ref().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: cpath is a valid C string that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            flags | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    owned_fd(r)
}

/// mount_setattr(2) on the mount an fd (e.g. from open_tree or fsmount) refers to.
pub fn mount_setattr_fd(fd: RawFd, set: u64, clr: u64) -> nix::Result<()> {
    mount_setattr(fd, c"", libc::AT_EMPTY_PATH as libc::c_uint, set, clr)
}

/// execveat(fd, "", argv, envp, AT_EMPTY_PATH): runs the file an fd refers to. Returns only on
/// failure.
pub fn execveat_fd(fd: RawFd, argv: &[CString], envp: &[CString]) -> Errno {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: both arrays are NULL-terminated and point at C strings that outlive the call;
    // on success the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            a.as_ptr(),
            e.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::last()
}

/// fstatfs(2) and fstatvfs(3): (filesystem magic, mount flags such as ST_RDONLY).
pub fn fstatfs(fd: RawFd) -> nix::Result<(i64, u64)> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: buf is a valid, writable statfs that outlives the call.
    let r = unsafe { libc::fstatfs(fd, &mut buf) };
    Errno::result(r)?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: vfs is a valid, writable statvfs that outlives the call.
    let r = unsafe { libc::fstatvfs(fd, &mut vfs) };
    Errno::result(r)?;
    Ok((buf.f_type as i64, vfs.f_flag as u64))
}

/// statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID | STATX_INO): (mount id, inode number).
pub fn mount_id_and_ino(fd: RawFd) -> nix::Result<(u64, u64)> {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the empty path is a valid C string and buf a writable statx; both outlive the
    // call.
    let r = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID | libc::STATX_INO,
            &mut buf,
        )
    };
    Errno::result(r)?;
    if buf.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(Errno::ENOSYS);
    }
    Ok((buf.stx_mnt_id, buf.stx_ino))
}

/// memfd_create(2) with MFD_CLOEXEC | MFD_ALLOW_SEALING.
pub fn memfd_sealable(name: &std::ffi::CStr) -> nix::Result<std::os::fd::OwnedFd> {
    // SAFETY: name is a valid C string that outlives the call.
    let r =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    owned_fd(r.into())
}

/// fcntl(F_ADD_SEALS).
pub fn add_seals(fd: RawFd, seals: libc::c_int) -> nix::Result<()> {
    // SAFETY: F_ADD_SEALS takes an int and only changes the file's seal set.
    let r = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) };
    Errno::result(r).map(drop)
}

/// fcntl(F_GET_SEALS).
pub fn get_seals(fd: RawFd) -> nix::Result<libc::c_int> {
    // SAFETY: F_GET_SEALS takes no argument and returns an int.
    let r = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    Errno::result(r)
}

/// A new, detached procfs instance (fsopen + fsmount), optionally with `subset=pid`.
pub fn fsmount_proc(subset_pid: bool) -> nix::Result<std::os::fd::OwnedFd> {
    let subset: &[(&std::ffi::CStr, &std::ffi::CStr)] = if subset_pid {
        &[(c"subset", c"pid")]
    } else {
        &[]
    };
    fsmount_new(
        c"proc",
        subset,
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    )
}

/// A new, detached mount of `fstype` with string options and mount attributes (fsopen,
/// fsconfig, fsmount): attach it with `move_mount_fds`, no path involved.
pub fn fsmount_new(
    fstype: &std::ffi::CStr,
    options: &[(&std::ffi::CStr, &std::ffi::CStr)],
    attrs: u64,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: the name is a valid C string that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    let fsfd = owned_fd(r)?;
    for (key, value) in options {
        // SAFETY: key and value are valid C strings that outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fsfd.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        Errno::result(r)?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fsfd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(r)?;
    // SAFETY: fsmount takes the configured fs context fd and two flag words.
    let r = unsafe { libc::syscall(libc::SYS_fsmount, fsfd.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    owned_fd(r)
}

/// open_tree(fd, "", OPEN_TREE_CLONE | AT_EMPTY_PATH): a detached bind of exactly what `fd`
/// refers to (a file or directory), without any path lookup.
pub fn open_tree_clone_fd(fd: RawFd) -> nix::Result<std::os::fd::OwnedFd> {
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: the empty path is a valid C string; fd is owned by the caller.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) };
    owned_fd(r)
}

/// openat2(2) with the given flags and RESOLVE_* bits; ENOSYS on kernels before 5.6.
pub fn openat2<P: AsRef<std::ffi::OsStr> + ?Sized>(
    dirfd: RawFd,
    path: &P,
    flags: libc::c_int,
    resolve: u64,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_ref().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open_how is plain old data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: cpath and how are valid and outlive the call; the size matches the struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            cpath.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    owned_fd(r)
}

/// openat(2) returning an owned fd (`None`: relative to the cwd). O_CLOEXEC is always added.
pub fn openat_owned(
    dirfd: Option<RawFd>,
    path: &str,
    flags: nix::fcntl::OFlag,
) -> nix::Result<std::os::fd::OwnedFd> {
    let fd = nix::fcntl::openat(
        dirfd,
        path,
        flags | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat just returned this fd and nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// kill(2) with any signal number, real-time ones included (nix's `Signal` has no names for
/// those).
pub fn kill(pid: i32, sig: i32) -> nix::Result<()> {
    // SAFETY: kill only sends a signal; both arguments are plain integers.
    Errno::result(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Every catchable signal back to SIG_DFL, for a child that will execve: an ignored signal
/// stays ignored across execve. Through the raw system call, because the C library refuses the
/// real-time signals it reserves for itself (32 and 33), which a caller may still have ignored.
pub fn reset_signal_dispositions() -> nix::Result<()> {
    /// The kernel's struct sigaction on x86_64.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads one KernelSigaction that outlives the call and writes
        // nothing (null old action); SIG_DFL installs no handler.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                0usize,
                8usize,
            )
        };
        Errno::result(r)?;
    }
    Ok(())
}

// bpf(2) for cgroup v2 device programs. libc has the classic-BPF opcode constants but not the
// eBPF syscall's commands and attribute layouts, so the few used are spelled out here.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
pub const BPF_CGROUP_DEVICE: u32 = 6;
pub const BPF_F_ALLOW_MULTI: u32 = 2;

/// The prefix of `union bpf_attr` for BPF_PROG_LOAD that berth fills in; the kernel takes the
/// size passed and treats the rest as zero.
#[repr(C)]
#[derive(Default)]
struct BpfProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct BpfAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct BpfQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct BpfGetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with one attribute struct.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> nix::Result<libc::c_long> {
    // SAFETY: attr is a properly initialised #[repr(C)] prefix of union bpf_attr that outlives
    // the call, and its size is passed with it; any pointers inside it are the callers' and
    // point at live buffers of the lengths given alongside them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    Errno::result(r)
}

/// The fd the kernel just returned from a bpf command, owned.
fn owned_bpf_fd(r: libc::c_long) -> std::os::fd::OwnedFd {
    // SAFETY: bpf returned a fresh fd that nothing else owns.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(r as RawFd) }
}

/// BPF_PROG_LOAD of `insns` (encoded `struct bpf_insn`s, 8 bytes each). On failure, the
/// verifier's log (when `log` is given) is left in it.
pub fn bpf_prog_load(
    prog_type: u32,
    insns: &[u64],
    license: &std::ffi::CStr,
    log: Option<&mut [u8]>,
) -> nix::Result<std::os::fd::OwnedFd> {
    let mut attr = BpfProgLoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).map_err(|_| Errno::E2BIG)?;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    bpf(BPF_PROG_LOAD, &mut attr).map(owned_bpf_fd)
}

/// BPF_PROG_ATTACH of `prog` to the cgroup `target`.
pub fn bpf_prog_attach(
    target: RawFd,
    prog: RawFd,
    attach_type: u32,
    flags: u32,
) -> nix::Result<()> {
    let mut attr = BpfAttachAttr {
        target_fd: target as u32,
        attach_bpf_fd: prog as u32,
        attach_type,
        attach_flags: flags,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// BPF_PROG_DETACH of `prog` from the cgroup `target`.
pub fn bpf_prog_detach(target: RawFd, prog: RawFd, attach_type: u32) -> nix::Result<()> {
    let mut attr = BpfAttachAttr {
        target_fd: target as u32,
        attach_bpf_fd: prog as u32,
        attach_type,
        attach_flags: 0,
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

/// BPF_PROG_QUERY: the ids of the programs attached directly to the cgroup `target`, and the
/// flags they were attached with.
pub fn bpf_prog_query(target: RawFd, attach_type: u32) -> nix::Result<(Vec<u32>, u32)> {
    let mut cap = 64usize;
    loop {
        let mut ids = vec![0u32; cap];
        let mut attr = BpfQueryAttr {
            target_fd: target as u32,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: cap as u32,
            ..Default::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate((attr.prog_cnt as usize).min(cap));
                return Ok((ids, attr.attach_flags));
            }
            // More programs than room: the kernel said how many there are.
            Err(Errno::ENOSPC) if (attr.prog_cnt as usize) > cap => cap = attr.prog_cnt as usize,
            Err(e) => return Err(e),
        }
    }
}

/// BPF_PROG_GET_FD_BY_ID.
pub fn bpf_prog_get_fd_by_id(id: u32) -> nix::Result<std::os::fd::OwnedFd> {
    let mut attr = BpfGetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map(owned_bpf_fd)
}

/// rename(2) that fails with EEXIST instead of replacing `to` (renameat2 RENAME_NOREPLACE);
/// where the filesystem lacks the flag, a plain rename, which still refuses a directory that
/// is not empty.
pub fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &std::path::Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both pointers are NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        return std::fs::rename(from, to);
    }
    Err(e)
}

/// Takes an exclusive flock on `fd`, waiting at most `timeout`: Ok(false) when it timed out.
///
/// flock cannot be polled, so the wait is bounded by an interval timer whose SIGALRM (with a
/// handler that does nothing and no SA_RESTART) interrupts the call; the timer repeats, so a
/// tick that lands just before the call is entered only delays the error by one period.
/// berth is single-threaded here.
pub fn flock_exclusive(fd: RawFd, timeout: std::time::Duration) -> std::io::Result<bool> {
    // SAFETY: flock on an fd the caller owns.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(e);
    }
    extern "C" fn on_alarm(_: libc::c_int) {}
    let deadline = std::time::Instant::now() + timeout;
    let period = timeout.min(std::time::Duration::from_secs(1));
    let tv = libc::timeval {
        tv_sec: period.as_secs() as libc::time_t,
        tv_usec: period.subsec_micros().max(1) as libc::suseconds_t,
    };
    let timer = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: zeroed sigaction/itimerval are valid "empty" values for the kernel to fill.
    let mut old_action: libc::sigaction = unsafe { std::mem::zeroed() };
    let mut old_timer: libc::itimerval = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the handler does nothing, which is async-signal-safe.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_alarm as *const () as usize;
    // SAFETY: installing a handler and a timer with valid structs; both are restored below.
    unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGALRM, &action, &mut old_action);
        libc::setitimer(libc::ITIMER_REAL, &timer, &mut old_timer);
    }
    let result = loop {
        // SAFETY: flock on an fd the caller owns.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
            break Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            break Err(e);
        }
        if std::time::Instant::now() >= deadline {
            break Ok(false);
        }
    };
    // SAFETY: restoring what was there before, from the structs the kernel filled.
    unsafe {
        libc::setitimer(libc::ITIMER_REAL, &old_timer, std::ptr::null_mut());
        libc::sigaction(libc::SIGALRM, &old_action, std::ptr::null_mut());
    }
    result
}

/// The pid holding a flock on `file`, from /proc/locks (for a "busy" error that names it).
pub fn flock_holder(file: &std::fs::File) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().ok()?;
    let dev = m.dev();
    let want = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        m.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"; waiters have "->" in field 2.
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// A process's command line, spaces between the arguments (for messages).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Waits until every pidfd in `fds` reports its process gone (POLLIN), or until `deadline`.
pub fn wait_pidfds(fds: &[std::os::fd::OwnedFd], deadline: std::time::Instant) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut pending: Vec<&std::os::fd::OwnedFd> = fds.iter().collect();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        let mut pfds: Vec<PollFd> = pending
            .iter()
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(
            &mut pfds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Err(Errno::EINTR) => continue,
            Err(_) | Ok(0) => return,
            Ok(_) => {}
        }
        let done: Vec<bool> = pfds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        pending = pending
            .into_iter()
            .zip(done)
            .filter(|(_, d)| !d)
            .map(|(f, _)| f)
            .collect();
    }
}
