//! `linux.seccomp`, seen from inside: /proc/self/status says a filter is on (or, with no
//! profile, that none is), and a set of harmless probe system calls, each made in a forked
//! child, end as the profile says: returned normally, failed with the rule's errno, or killed
//! the child with SIGSYS. Probes go through the x86_64, i386 (int 0x80) and x32 entry points,
//! so a filter that forgets the other ABIs is caught. The expected outcome is worked out here,
//! from the config, independently of the runtime.

use crate::cfg;
use crate::report::Report;
use serde_json::Value;

/// How a probe ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    /// Returned without an error (the value does not matter).
    Ran,
    Errno(i32),
    Signal(i32),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Outcome::Ran => write!(f, "ran"),
            Outcome::Errno(e) => write!(f, "errno {e}"),
            Outcome::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Abi {
    X86_64,
    I386,
    X32,
}

struct Probe {
    /// The system call's name in the profile.
    name: &'static str,
    abi: Abi,
    nr: i64,
    /// Arguments as the filter sees them (pointers are filled in at call time).
    args: [u64; 6],
    /// Argument slot to replace with a scratch buffer's address.
    buf_arg: Option<usize>,
}

const X32_BIT: i64 = 0x4000_0000;
const PERSONALITY_QUERY: u64 = 0xffff_ffff;

fn probes() -> Vec<Probe> {
    let p = |name, abi, nr, args, buf_arg| Probe {
        name,
        abi,
        nr,
        args,
        buf_arg,
    };
    vec![
        p(
            "getcwd",
            Abi::X86_64,
            libc::SYS_getcwd,
            [0, 256, 0, 0, 0, 0],
            Some(0),
        ),
        p(
            "umask",
            Abi::X86_64,
            libc::SYS_umask,
            [0o22, 0, 0, 0, 0, 0],
            None,
        ),
        p("getpgrp", Abi::X86_64, libc::SYS_getpgrp, [0; 6], None),
        p("getppid", Abi::X86_64, libc::SYS_getppid, [0; 6], None),
        p("uname", Abi::X86_64, libc::SYS_uname, [0; 6], Some(0)),
        p(
            "getpriority",
            Abi::X86_64,
            libc::SYS_getpriority,
            [0; 6],
            None,
        ),
        p(
            "sched_yield",
            Abi::X86_64,
            libc::SYS_sched_yield,
            [0; 6],
            None,
        ),
        p(
            "personality",
            Abi::X86_64,
            libc::SYS_personality,
            [PERSONALITY_QUERY, 0, 0, 0, 0, 0],
            None,
        ),
        p(
            "personality",
            Abi::X86_64,
            libc::SYS_personality,
            [0x1_0000_0000 | PERSONALITY_QUERY, 0, 0, 0, 0, 0],
            None,
        ),
        // umask is 60 on i386; x32 shares the x86_64 number with bit 30 set.
        p("umask", Abi::I386, 60, [0o22, 0, 0, 0, 0, 0], None),
        p(
            "umask",
            Abi::X32,
            X32_BIT | libc::SYS_umask,
            [0o22, 0, 0, 0, 0, 0],
            None,
        ),
    ]
}

fn describe(probe: &Probe) -> String {
    format!(
        "{} ({}, args {:#x})",
        probe.name,
        match probe.abi {
            Abi::X86_64 => "x86_64",
            Abi::I386 => "i386",
            Abi::X32 => "x32",
        },
        probe.args[0]
    )
}

/// For a container with no config to check (e.g. one a manager made): each probe and how it
/// ended, as `<probe>: <outcome>`.
pub fn print_probes() {
    for probe in probes() {
        let got = match call(&probe) {
            Ok(o) => o.to_string(),
            Err(e) => format!("not run: {e}"),
        };
        crate::report::out(&format!("{}: {got}", describe(&probe)));
    }
}

pub fn run(config: &Value, r: &mut Report) {
    let profile = cfg::get(config, &["linux", "seccomp"]);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "(absent)".into())
    };
    let mode = field("Seccomp:");
    let Some(profile) = profile else {
        // No profile: no filter. (Run outside any filtering parent, as the suite is.)
        r.check_eq("no linux.seccomp: Seccomp mode", "0", mode.as_str());
        return;
    };
    r.check_eq("linux.seccomp: Seccomp mode", "2", mode.as_str());
    let filters = field("Seccomp_filters:");
    r.check_that(
        "linux.seccomp: Seccomp_filters",
        filters.parse::<u32>().is_ok_and(|n| n >= 1),
        ">= 1",
        &filters,
    );
    let arches = cfg::strings_at(profile, &["architectures"]);
    for probe in probes() {
        let what = format!("linux.seccomp: {}", describe(&probe));
        let Some(want) = expected(profile, &arches, &probe) else {
            r.skip(
                &what,
                "the profile notifies an agent or is not decidable here",
            );
            continue;
        };
        match call(&probe) {
            Ok(got) if matches!(want, Outcome::Ran) && probe.abi == Abi::X32 => {
                // A kernel without the x32 ABI answers ENOSYS once the filter let it through.
                let ok = got == Outcome::Ran || got == Outcome::Errno(libc::ENOSYS);
                r.check_that(&what, ok, want, got)
            }
            Ok(got) => r.check_eq(&what, want, got),
            Err(e) => r.skip(&what, e),
        }
    }
}

/// Which action the profile gives this probe, or None when it cannot be predicted here.
fn expected(profile: &Value, arches: &[String], probe: &Probe) -> Option<Outcome> {
    let listed = |a: &str| arches.iter().any(|x| x == a);
    match probe.abi {
        Abi::X86_64 => {}
        // An ABI the profile does not list is refused outright, as libseccomp does.
        Abi::I386 if !listed("SCMP_ARCH_X86") => return Some(Outcome::Signal(libc::SIGSYS)),
        Abi::X32 if !listed("SCMP_ARCH_X32") => return Some(Outcome::Signal(libc::SIGSYS)),
        // berth refuses x32's own numbers (512 and up) whatever the profile says.
        Abi::X32 if (probe.nr & 0xffff) >= 512 => return Some(Outcome::Signal(libc::SIGSYS)),
        _ => {}
    }
    let default_action = profile["defaultAction"].as_str();
    let default_errno = profile["defaultErrnoRet"].as_i64();
    let rules: Vec<&Value> = cfg::array_at(profile, &["syscalls"])
        .iter()
        .filter(|r| {
            cfg::strings_at(r, &["names"])
                .iter()
                .any(|n| n == probe.name)
        })
        // A rule repeating the default changes nothing.
        .filter(|r| {
            r["action"].as_str() != default_action || r["errnoRet"].as_i64() != default_errno
        })
        .collect();
    // libseccomp: an unconditional rule decides the syscall alone.
    if let Some(rule) = rules
        .iter()
        .find(|r| cfg::array_at(r, &["args"]).is_empty())
    {
        return outcome(rule, "action", "errnoRet");
    }
    for rule in rules {
        let conds = cfg::array_at(rule, &["args"]);
        let hold = |c: &Value| cond_holds(c, &probe.args, probe.abi == Abi::I386);
        let mut indexes: Vec<u64> = conds.iter().filter_map(|c| c["index"].as_u64()).collect();
        indexes.sort();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        let matched = if repeated {
            conds.iter().any(hold)
        } else {
            conds.iter().all(hold)
        };
        if matched {
            return outcome(rule, "action", "errnoRet");
        }
    }
    outcome(profile, "defaultAction", "defaultErrnoRet")
}

fn cond_holds(c: &Value, args: &[u64; 6], narrow: bool) -> bool {
    let i = c["index"].as_u64().unwrap_or(0) as usize;
    let mut a = args.get(i).copied().unwrap_or(0);
    let mut v = c["value"].as_u64().unwrap_or(0);
    let mut two = c["valueTwo"].as_u64().unwrap_or(0);
    if narrow {
        (a, v, two) = (a & 0xffff_ffff, v & 0xffff_ffff, two & 0xffff_ffff);
    }
    match c["op"].as_str().unwrap_or("") {
        "SCMP_CMP_EQ" => a == v,
        "SCMP_CMP_NE" => a != v,
        "SCMP_CMP_LT" => a < v,
        "SCMP_CMP_LE" => a <= v,
        "SCMP_CMP_GT" => a > v,
        "SCMP_CMP_GE" => a >= v,
        "SCMP_CMP_MASKED_EQ" => a & v == two,
        _ => false,
    }
}

fn outcome(v: &Value, action_key: &str, errno_key: &str) -> Option<Outcome> {
    let errno = v[errno_key].as_i64().map(|e| e as i32);
    Some(match v[action_key].as_str()? {
        "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG" => Outcome::Ran,
        "SCMP_ACT_ERRNO" => Outcome::Errno(errno.unwrap_or(libc::EPERM)),
        // With no tracer attached the kernel fails the call with ENOSYS.
        "SCMP_ACT_TRACE" => Outcome::Errno(libc::ENOSYS),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" | "SCMP_ACT_KILL_PROCESS" | "SCMP_ACT_TRAP" => {
            Outcome::Signal(libc::SIGSYS)
        }
        _ => return None,
    })
}

/// Makes the call in a forked child: a kill must not take the checker with it.
fn call(probe: &Probe) -> Result<Outcome, String> {
    // SAFETY: runtimetest is single-threaded; the child only makes raw system calls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let r = raw_call(probe);
        let code = if r < 0 && r > -250 { -r } else { 0 };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code as i32) }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    Ok(if libc::WIFSIGNALED(status) {
        Outcome::Signal(libc::WTERMSIG(status))
    } else {
        match libc::WEXITSTATUS(status) {
            0 => Outcome::Ran,
            e => Outcome::Errno(e),
        }
    })
}

/// The raw call: returns the kernel's value (negative errno on failure).
fn raw_call(probe: &Probe) -> i64 {
    // 32-bit-addressable scratch space for i386 pointers is not needed: the i386 probes take
    // no pointers.
    let mut buf = [0u8; 512];
    let mut args = probe.args;
    if let Some(i) = probe.buf_arg {
        args[i] = buf.as_mut_ptr() as u64;
    }
    match probe.abi {
        Abi::X86_64 | Abi::X32 => {
            let r: i64;
            // SAFETY: the probes are harmless calls whose pointer arguments point at `buf`.
            unsafe {
                std::arch::asm!(
                    "syscall",
                    inlateout("rax") probe.nr => r,
                    in("rdi") args[0], in("rsi") args[1], in("rdx") args[2],
                    in("r10") args[3], in("r8") args[4], in("r9") args[5],
                    lateout("rcx") _, lateout("r11") _,
                    options(nostack)
                );
            }
            r
        }
        Abi::I386 => {
            let r: i32;
            // SAFETY: the i386 entry point with a pointer-free call (umask); the kernel saves
            // and restores every register int 0x80 does not return in.
            unsafe {
                std::arch::asm!(
                    "push rbx",
                    "mov ebx, {a0:e}",
                    "int 0x80",
                    "pop rbx",
                    a0 = in(reg) args[0] as u32,
                    inlateout("eax") probe.nr as i32 => r,
                    in("ecx") args[1] as u32, in("edx") args[2] as u32,
                );
            }
            r as i64
        }
    }
}
