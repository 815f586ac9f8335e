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
