//! `floor`: the kernel's floor for running a program in a container. It does only what every
//! runtime must do at the least, with no runtime around it: one clone(2) into five new
//! namespaces (pid, net, ipc, uts, mount), then in the child: `/` made recursively private, the
//! rootfs bound onto itself, proc mounted in it, pivot_root into it (`pivot_root(".", ".")` and
//! a lazy unmount of the old root), and execve. The parent waits and exits with the child's
//! status. No config, no state, no hooks, no seccomp, no capabilities.
//!
//! With `--cgroup NAME`, before the clone it makes NAME at the top of every cgroup hierarchy
//! mounted under /sys/fs/cgroup — the v1 controllers, the named `systemd` one and the cgroup2
//! `unified` one, as the runtimes do on this kind of host for a container without cgroupsPath —
//! and moves itself there, so the child starts inside; afterwards it moves back to where it was
//! and removes them.
//!
//! usage: floor <rootfs> [--cgroup NAME] -- PROGRAM [ARG...]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: floor <rootfs> [--cgroup NAME] -- PROGRAM [ARG...]";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

struct Args {
    rootfs: PathBuf,
    cgroup: Option<String>,
    argv: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut rootfs = None;
    let mut cgroup = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => break,
            "--cgroup" => cgroup = Some(it.next().ok_or("--cgroup needs a NAME")?),
            "-h" | "--help" => return Err(USAGE.into()),
            _ if rootfs.is_none() && !a.starts_with('-') => rootfs = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
        }
    }
    let argv: Vec<String> = it.collect();
    let rootfs = rootfs.ok_or(USAGE)?;
    if argv.is_empty() {
        return Err(USAGE.into());
    }
    if let Some(name) = &cgroup {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(format!("--cgroup {name:?}: one plain directory name"));
        }
    }
    Ok(Args {
        rootfs,
        cgroup,
        argv,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::from(125)
        }
    }
}

fn run() -> Result<u8, String> {
    let args = parse_args()?;
    let rootfs = std::fs::canonicalize(&args.rootfs)
        .map_err(|e| format!("rootfs {}: {e}", args.rootfs.display()))?;
    let child = Child::prepare(&rootfs, &args.argv)?;
    let cgroups = match &args.cgroup {
        Some(name) => Some(Cgroups::enter(name)?),
        None => None,
    };
    let status = child.spawn_and_wait();
    // Leave and remove the cgroups whatever became of the child.
    let left = cgroups.map(Cgroups::leave).unwrap_or(Ok(()));
    let code = status?;
    left?;
    Ok(code)
}

fn cstring(s: impl AsRef<[u8]>) -> Result<CString, String> {
    CString::new(s.as_ref()).map_err(|_| "a NUL byte in an argument".to_string())
}

/// Everything the child needs, made before the clone: after it the child only makes system
/// calls (no allocation, no locks).
struct Child {
    rootfs: CString,
    proc_dir: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Child {
    fn prepare(rootfs: &Path, argv: &[String]) -> Result<Child, String> {
        Ok(Child {
            rootfs: cstring(rootfs.as_os_str().as_bytes())?,
            proc_dir: cstring(rootfs.join("proc").as_os_str().as_bytes())?,
            argv: argv.iter().map(cstring).collect::<Result<_, _>>()?,
            envp: vec![cstring("PATH=/bin:/usr/bin:/sbin:/usr/sbin")?],
        })
    }

    /// Clones into the new namespaces, runs the child's part there and returns the exit code
    /// to pass on (128 + the signal for a child killed by one).
    fn spawn_and_wait(&self) -> Result<u8, String> {
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let flags = libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWNS
            | libc::SIGCHLD;
        // SAFETY: the raw clone system call with no new stack behaves as fork(2): the child
        // runs on a copy-on-write copy of this stack. This program has one thread, and the
        // child only makes system calls on memory prepared before the clone (no allocation,
        // no locks taken) until it execs or _exits.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_int>(),
                std::ptr::null_mut::<libc::c_int>(),
                0 as libc::c_ulong,
            )
        };
        if pid < 0 {
            return Err(format!(
                "clone into new namespaces: {}",
                io::Error::last_os_error()
            ));
        }
        if pid == 0 {
            self.in_child(&argv, &envp);
        }
        let pid = pid as libc::pid_t;
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("waitpid: {e}"));
            }
        }
        if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status) as u8)
        } else if libc::WIFSIGNALED(status) {
            Ok(128u8.saturating_add(libc::WTERMSIG(status) as u8))
        } else {
            Err(format!("child ended with wait status {status:#x}"))
        }
    }

    /// The child: set up the mount namespace, pivot into the rootfs and exec. Never returns.
    fn in_child(&self, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> ! {
        let none = std::ptr::null::<libc::c_char>();
        let data = std::ptr::null::<libc::c_void>();
        let dot = c".".as_ptr();
        // SAFETY (this block): plain system calls on NUL-terminated strings that live in
        // `self` or are literals; `argv` and `envp` are NULL-terminated arrays of such
        // pointers. Nothing here allocates or touches state shared with the parent.
        unsafe {
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                data,
            ) != 0
            {
                die(b"make / recursively private");
            }
            let root = self.rootfs.as_ptr();
            if libc::mount(root, root, none, libc::MS_BIND | libc::MS_REC, data) != 0 {
                die(b"bind the rootfs onto itself");
            }
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            let proc_ = c"proc".as_ptr();
            if libc::mount(proc_, self.proc_dir.as_ptr(), proc_, flags, data) != 0 {
                die(b"mount proc");
            }
            if libc::chdir(root) != 0 {
                die(b"chdir to the rootfs");
            }
            if libc::syscall(libc::SYS_pivot_root, dot, dot) != 0 {
                die(b"pivot_root");
            }
            if libc::umount2(dot, libc::MNT_DETACH) != 0 {
                die(b"detach the old root");
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                die(b"chdir /");
            }
            libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
            die(b"execve");
        }
    }
}

/// Writes `floor: <what>: errno N` to stderr and exits 127, without allocating.
fn die(what: &[u8]) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut digits = [0u8; 12];
    let mut i = digits.len();
    let mut n = errno.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for part in [
        b"floor: ".as_slice(),
        what,
        b": errno ",
        &digits[i..],
        b"\n",
    ] {
        // SAFETY: writes a valid byte slice to fd 2; a failed write changes nothing here.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // SAFETY: ends the child at once, without running the parent's exit handlers.
    unsafe { libc::_exit(127) }
}

/// One hierarchy under /sys/fs/cgroup: where it is mounted and where this process was in it.
struct Hierarchy {
    mount: PathBuf,
    was: PathBuf,
}

/// The cgroups made by `--cgroup NAME`, one per hierarchy, with this process inside.
struct Cgroups {
    name: String,
    joined: Vec<Hierarchy>,
}

impl Cgroups {
    fn enter(name: &str) -> Result<Cgroups, String> {
        let mut cg = Cgroups {
            name: name.to_string(),
            joined: Vec::new(),
        };
        let pid = std::process::id().to_string();
        for h in hierarchies()? {
            let dir = h.mount.join(name);
            let made = std::fs::create_dir(&dir)
                .map_err(|e| format!("mkdir {}: {e}", dir.display()))
                .and_then(|()| {
                    // A new v1 cpuset starts with no cpus and no mems (unless the parent has
                    // cgroup.clone_children): copy the parent's, or no task may join.
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let parent = h.mount.join(f);
                        if parent.exists() {
                            let v = std::fs::read_to_string(&parent)
                                .map_err(|e| format!("{}: {e}", parent.display()))?;
                            write(&dir.join(f), v.trim())?;
                        }
                    }
                    write(&dir.join("cgroup.procs"), &pid)
                });
            match made {
                Ok(()) => cg.joined.push(h),
                Err(e) => {
                    let _ = std::fs::remove_dir(&dir);
                    let _ = cg.leave();
                    return Err(e);
                }
            }
        }
        Ok(cg)
    }

    /// Moves this process back and removes the cgroups; reports the first failure after
    /// trying them all.
    fn leave(self) -> Result<(), String> {
        let pid = std::process::id().to_string();
        let mut first = None;
        for h in &self.joined {
            let back = write(&h.mount.join(&h.was).join("cgroup.procs"), &pid);
            let dir = h.mount.join(&self.name);
            let removed = back.and_then(|()| rmdir(&dir));
            if let Err(e) = removed {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {value} to {}: {e}", path.display()))
}

/// rmdir, retried briefly while the kernel still counts the child's exit as a member.
fn rmdir(dir: &Path) -> Result<(), String> {
    for _ in 0..200 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => return Err(format!("rmdir {}: {e}", dir.display())),
        }
    }
    Err(format!("rmdir {}: still busy", dir.display()))
}

/// The cgroup hierarchies mounted directly under /sys/fs/cgroup, each with the path of this
/// process in it (from /proc/self/cgroup).
fn hierarchies() -> Result<Vec<Hierarchy>, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let superopts = r.nth(1).unwrap_or("");
        let mount = Path::new(mount);
        if mount.parent() != Some(Path::new(CGROUP_ROOT)) {
            continue;
        }
        // The line of /proc/self/cgroup for this hierarchy: `0::PATH` for cgroup2, else the
        // one whose controller list (or name=) is the mount's.
        let was = match fstype {
            "cgroup2" => own.lines().find_map(|l| l.strip_prefix("0::")),
            "cgroup" => {
                // Each controller (or name=) belongs to one hierarchy only.
                let opts: Vec<&str> = superopts.split(',').collect();
                own.lines().find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                    let mine = !ctrls.is_empty() && ctrls.split(',').all(|c| opts.contains(&c));
                    mine.then_some(path)
                })
            }
            _ => continue,
        };
        let was = was.ok_or_else(|| {
            format!(
                "{}: not found in /proc/self/cgroup ({superopts})",
                mount.display()
            )
        })?;
        out.push(Hierarchy {
            mount: mount.to_path_buf(),
            was: PathBuf::from(was.trim_start_matches('/')),
        });
    }
    if out.is_empty() {
        return Err(format!("no cgroup hierarchy mounted under {CGROUP_ROOT}"));
    }
    Ok(out)
}
