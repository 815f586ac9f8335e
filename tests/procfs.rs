//! procfs writes: relative to a verified procfs root, never through a symlink or `..`.
//! Needs only an ordinary process (no root): it writes the test thread's own comm.

use berth::procfs::{self, ProcRoot};

#[test]
fn writes_own_comm_through_thread_self() {
    let proc = ProcRoot::open().expect("open a procfs root");
    proc.write("thread-self/comm", b"berth-procfs")
        .expect("write thread-self/comm");
    let comm = std::fs::read_to_string("/proc/thread-self/comm").expect("read comm");
    assert_eq!(comm.trim(), "berth-procfs");
    procfs::write("thread-self/comm", b"berth-procfs2").expect("module-level write");
    let comm = std::fs::read_to_string("/proc/thread-self/comm").expect("read comm");
    assert_eq!(comm.trim(), "berth-procfs2");
}

#[test]
fn refuses_paths_that_are_not_plain() {
    let proc = ProcRoot::open().expect("open a procfs root");
    for bad in [
        "",
        "../etc/passwd",
        "sys/../../etc/passwd",
        "sys//kernel/shmmax",
        "./sys/kernel/shmmax",
    ] {
        assert!(proc.open_write(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn refuses_symlinks_inside_procfs() {
    let proc = ProcRoot::open().expect("open a procfs root");
    // /proc/<pid>/cwd is a magic link: never followed.
    let pid = std::process::id();
    let err = proc
        .open_write(&format!("{pid}/cwd/x"))
        .expect_err("followed a magic link");
    assert!(err.to_string().contains("/proc/"), "{err}");
    // /proc/mounts is a plain symlink (to self/mounts): not followed either.
    assert!(proc.open_write("mounts").is_err());
}

/// As root: in a child with its own mount namespace, a tmpfs over /proc/sys/kernel must make
/// a write through the mounted /proc fail (EXDEV), and a private instance must reach the
/// real file. Skipped for other users.
#[test]
fn overmount_is_refused_or_bypassed() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    // SAFETY: the child only makes system calls and leaves with _exit.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let code = (|| -> Result<(), String> {
                use nix::mount::{mount, MsFlags};
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(|e| format!("unshare: {e}"))?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(|e| format!("make / private: {e}"))?;
                mount(
                    Some("tmpfs"),
                    "/proc/sys/kernel",
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(|e| format!("mount tmpfs: {e}"))?;
                let mounted = ProcRoot::open_mounted().map_err(|e| e.to_string())?;
                // Opened, never written: the real file is the host's.
                let err = mounted
                    .open_write("sys/kernel/shmmax")
                    .err()
                    .ok_or("wrote through a tmpfs over /proc/sys/kernel")?;
                if !err.to_string().contains("mount") {
                    return Err(format!("unexpected error: {err}"));
                }
                let private = ProcRoot::open().map_err(|e| e.to_string())?;
                if private.private {
                    private
                        .open_write("sys/kernel/shmmax")
                        .map_err(|e| format!("private instance: {e}"))?;
                }
                Ok(())
            })();
            if let Err(e) = &code {
                eprintln!("{e}");
            }
            // SAFETY: _exit ends the forked child without running the test harness's code.
            unsafe { libc::_exit(i32::from(code.is_err())) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let st = nix::sys::wait::waitpid(child, None).expect("waitpid");
            assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
        }
    }
}
