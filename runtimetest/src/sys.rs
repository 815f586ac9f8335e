//! Thin wrappers over libc calls. Every function here returns owned data
//! or an Option/Result; nothing panics on kernel errors.

use std::ffi::CStr;
use std::io;
use std::os::unix::fs::MetadataExt;

pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

pub fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// (real uid, effective uid)
pub fn uids() -> (u32, u32) {
    // SAFETY: getuid/geteuid have no preconditions and cannot fail.
    unsafe { (libc::getuid(), libc::geteuid()) }
}

/// (real gid, effective gid)
pub fn gids() -> (u32, u32) {
    // SAFETY: getgid/getegid have no preconditions and cannot fail.
    unsafe { (libc::getgid(), libc::getegid()) }
}

/// Supplementary group list.
pub fn groups() -> io::Result<Vec<u32>> {
    // SAFETY: a zero size with a null pointer only asks for the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf: Vec<libc::gid_t> = vec![0; usize::try_from(n).unwrap_or(0) + 1];
    let len = libc::c_int::try_from(buf.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: buf has room for `len` gid_t values and outlives the call.
    let got = unsafe { libc::getgroups(len, buf.as_mut_ptr()) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(usize::try_from(got).unwrap_or(0));
    Ok(buf)
}

/// Current umask, read by setting it twice (the second call restores it).
pub fn umask() -> u32 {
    // SAFETY: umask cannot fail; we immediately restore the old value.
    let old = unsafe { libc::umask(0o022) };
    // SAFETY: as above; this puts the original mask back.
    unsafe { libc::umask(old) };
    old
}

/// (soft, hard) for a resource number; RLIM_INFINITY is u64::MAX.
pub fn getrlimit(resource: u32) -> io::Result<(u64, u64)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a valid, writable rlimit struct; an unknown resource
    // number only makes the call fail with EINVAL.
    let rc = unsafe { libc::getrlimit(resource as _, &mut rl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((rl.rlim_cur, rl.rlim_max))
}

/// (nodename, domainname) from uname(2).
pub fn uname() -> io::Result<(String, String)> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname struct.
    let rc = unsafe { libc::uname(&mut u) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((field_str(&u.nodename), field_str(&u.domainname)))
}

fn field_str(f: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = f
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether `fd` is currently an open descriptor.
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; a closed fd gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Open descriptors of this process, without the one used to list them.
pub fn open_fds() -> Vec<i32> {
    let mut fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect(),
        Err(_) => return Vec::new(),
    };
    // The ReadDir is dropped now, so its descriptor is closed again.
    fds.retain(|fd| fd_is_open(*fd));
    fds.sort_unstable();
    fds
}

pub fn dev_major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

pub fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(4096)
}

/// Inode of a namespace link such as /proc/self/ns/net.
pub fn ns_inode(name: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/self/ns/{name}"))
        .ok()
        .map(|m| m.ino())
}

/// Symbolic errno name for messages.
pub fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EROFS) => "EROFS".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EEXIST) => "EEXIST".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::EBUSY) => "EBUSY".into(),
        Some(n) => {
            // SAFETY: strerror returns a pointer to a static or thread-local
            // NUL-terminated string; we copy it out immediately.
            let p = unsafe { libc::strerror(n) };
            if p.is_null() {
                format!("errno {n}")
            } else {
                // SAFETY: p is non-null and NUL-terminated (see above).
                let s = unsafe { CStr::from_ptr(p) };
                format!("errno {n} ({})", s.to_string_lossy())
            }
        }
        None => e.to_string(),
    }
}
