//! The seccomp compiler, run through a classic-BPF interpreter written here from the kernel's
//! documented semantics: no root, no kernel filter. What the kernel does with a loaded filter is
//! checked end to end by the integration suite.

use berth::seccomp::{compile, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
const KILL_THREAD: u32 = 0;
const TRAP: u32 = 0x0003_0000;
const LOG: u32 = 0x7ffc_0000;
const NOTIFY: u32 = 0x7fc0_0000;
fn errno(e: u32) -> u32 {
    0x0005_0000 | e
}

/// struct seccomp_data, as the filter sees it.
fn data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&nr.to_le_bytes());
    d.extend_from_slice(&arch.to_le_bytes());
    d.extend_from_slice(&0u64.to_le_bytes());
    for a in args {
        d.extend_from_slice(&a.to_le_bytes());
    }
    d
}

/// Runs a program the way the kernel's classic-BPF seccomp evaluator does (the subset berth
/// emits: ld abs, and k, ja, jeq/jgt/jge k, ret k).
fn run(prog: &[libc::sock_filter], d: &[u8]) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    for _ in 0..100_000 {
        let i = prog[pc];
        pc += 1;
        match i.code {
            0x20 => {
                let k = i.k as usize;
                a = u32::from_le_bytes(d[k..k + 4].try_into().unwrap());
            }
            0x54 => a &= i.k,
            0x05 => pc += i.k as usize,
            0x15 | 0x25 | 0x35 => {
                let t = match i.code {
                    0x15 => a == i.k,
                    0x25 => a > i.k,
                    _ => a >= i.k,
                };
                pc += if t { i.jt } else { i.jf } as usize;
            }
            0x06 => return i.k,
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
    panic!("program did not return");
}

fn filter(v: serde_json::Value) -> berth::seccomp::Filter {
    let cfg: LinuxSeccomp = serde_json::from_value(v).unwrap();
    compile(&cfg).unwrap()
}

fn x64(f: &berth::seccomp::Filter, nr: i64, args: [u64; 6]) -> u32 {
    run(&f.program, &data(AUDIT_ARCH_X86_64, nr as u32, args))
}

#[test]
fn default_and_plain_actions() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["umask"], "action": "SCMP_ACT_KILL"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["sched_yield"], "action": "SCMP_ACT_TRAP"},
            {"names": ["uname"], "action": "SCMP_ACT_LOG"},
            {"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["no_such_syscall"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    assert_eq!(x64(&f, libc::SYS_read, [0; 6]), ALLOW);
    assert_eq!(x64(&f, libc::SYS_write, [0; 6]), ALLOW);
    assert_eq!(x64(&f, libc::SYS_getcwd, [0; 6]), errno(13));
    assert_eq!(x64(&f, libc::SYS_umask, [0; 6]), KILL_THREAD);
    assert_eq!(x64(&f, libc::SYS_getppid, [0; 6]), KILL_PROCESS);
    assert_eq!(x64(&f, libc::SYS_sched_yield, [0; 6]), TRAP);
    assert_eq!(x64(&f, libc::SYS_uname, [0; 6]), LOG);
    assert_eq!(
        x64(&f, libc::SYS_getpgrp, [0; 6]),
        errno(libc::EPERM as u32)
    );
    assert_eq!(x64(&f, libc::SYS_openat, [0; 6]), errno(38));
    // Every number, listed or not, lands on a listed action or the default.
    for nr in 0..600 {
        let r = x64(&f, nr, [0; 6]);
        assert!(
            [
                ALLOW,
                errno(13),
                KILL_THREAD,
                KILL_PROCESS,
                TRAP,
                LOG,
                errno(1),
                errno(38)
            ]
            .contains(&r),
            "nr {nr}: {r:#x}"
        );
    }
}

#[test]
fn many_rules_binary_search() {
    // Docker-sized: every x86_64 syscall below 330 allowed one by one, except a few.
    let names: Vec<String> = (0..330)
        .filter_map(|n| syscalls::x86_64::Sysno::new(n).map(|s| s.name().to_string()))
        .filter(|n| n != "ptrace" && n != "mount")
        .collect();
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    }));
    for n in 0..330 {
        let Some(s) = syscalls::x86_64::Sysno::new(n) else {
            continue;
        };
        let want = if s.name() == "ptrace" || s.name() == "mount" {
            errno(1)
        } else {
            ALLOW
        };
        assert_eq!(x64(&f, n as i64, [0; 6]), want, "{}", s.name());
    }
    assert_eq!(x64(&f, 1000, [0; 6]), errno(1));
}

#[test]
fn argument_operators_are_unsigned_64_bit() {
    let rule = |op: &str, value: u64| {
        filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 1, "value": value, "op": op}]}]
        }))
    };
    let nr = libc::SYS_personality;
    let big = 0x1_0000_0005u64;
    let cases: &[(&str, u64, u64, bool)] = &[
        ("SCMP_CMP_EQ", big, big, true),
        ("SCMP_CMP_EQ", big, 5, false),
        ("SCMP_CMP_NE", big, 5, true),
        ("SCMP_CMP_NE", big, big, false),
        ("SCMP_CMP_GT", big, big + 1, true),
        ("SCMP_CMP_GT", big, big, false),
        ("SCMP_CMP_GT", big, 0x2_0000_0000, true),
        ("SCMP_CMP_GT", big, 0xffff_ffff, false),
        ("SCMP_CMP_GE", big, big, true),
        ("SCMP_CMP_GE", big, big - 1, false),
        ("SCMP_CMP_LT", big, big - 1, true),
        ("SCMP_CMP_LT", big, 7, true),
        ("SCMP_CMP_LT", big, big, false),
        ("SCMP_CMP_LT", big, u64::MAX, false),
        ("SCMP_CMP_LE", big, big, true),
        ("SCMP_CMP_LE", big, big + 1, false),
    ];
    for &(op, value, arg, denied) in cases {
        let f = rule(op, value);
        let got = x64(&f, nr, [0, arg, 0, 0, 0, 0]);
        let want = if denied { errno(1) } else { ALLOW };
        assert_eq!(got, want, "{op} value {value:#x} arg {arg:#x}");
    }
}

#[test]
fn masked_eq_and_same_argument_rules_are_ored() {
    // Docker's clone rule: allowed unless a namespace flag is set.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    let clone = libc::SYS_clone;
    assert_eq!(x64(&f, clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        x64(&f, clone, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]),
        errno(1)
    );
    assert_eq!(
        x64(&f, clone, [libc::CLONE_NEWNS as u64 | 17, 0, 0, 0, 0, 0]),
        errno(1)
    );
    let p = libc::SYS_personality;
    assert_eq!(x64(&f, p, [0; 6]), ALLOW);
    assert_eq!(x64(&f, p, [8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x64(&f, p, [9, 0, 0, 0, 0, 0]), errno(1));
    // Different arguments: ANDed.
    let s = libc::SYS_socket;
    assert_eq!(x64(&f, s, [1, 2, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x64(&f, s, [1, 3, 0, 0, 0, 0]), errno(1));
    assert_eq!(x64(&f, s, [2, 2, 0, 0, 0, 0]), errno(1));
}

#[test]
fn other_abis_cannot_bypass() {
    // A deny list: the classic bypass is to call the denied syscall through the x32 or i386
    // entry points, whose numbers differ.
    let deny = |arches: serde_json::Value| {
        filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": arches,
            "syscalls": [{"names": ["umask"], "action": "SCMP_ACT_ERRNO"}]
        }))
    };
    let x32_umask = X32_SYSCALL_BIT | libc::SYS_umask as u32;
    let i386_umask = 60; // umask on i386
    let only64 = deny(json!(["SCMP_ARCH_X86_64"]));
    assert_eq!(x64(&only64, libc::SYS_umask, [0; 6]), errno(1));
    assert_eq!(
        run(&only64.program, &data(AUDIT_ARCH_X86_64, x32_umask, [0; 6])),
        KILL_PROCESS
    );
    assert_eq!(
        run(&only64.program, &data(AUDIT_ARCH_I386, i386_umask, [0; 6])),
        KILL_PROCESS
    );
    let all = deny(json!([
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32"
    ]));
    assert_eq!(
        run(&all.program, &data(AUDIT_ARCH_X86_64, x32_umask, [0; 6])),
        errno(1)
    );
    assert_eq!(
        run(&all.program, &data(AUDIT_ARCH_I386, i386_umask, [0; 6])),
        errno(1)
    );
    // i386 getpid (20) is write on x86_64 (1)? No: plain numbers must not be confused.
    assert_eq!(run(&all.program, &data(AUDIT_ARCH_I386, 20, [0; 6])), ALLOW);
    assert_eq!(
        run(&all.program, &data(0xc000_00b7, 60, [0; 6])),
        KILL_PROCESS
    );
}

#[test]
fn notify_needs_a_listener_and_sets_the_flag() {
    let cfg = |v| serde_json::from_value::<LinuxSeccomp>(v).unwrap();
    let no_path = cfg(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
    let e = compile(&no_path).unwrap_err().to_string();
    assert!(e.contains("listenerPath"), "{e}");
    let meta_only = cfg(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}));
    let e = compile(&meta_only).unwrap_err().to_string();
    assert!(e.contains("listenerMetadata"), "{e}");
    let default_notify = cfg(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}));
    let e = compile(&default_notify).unwrap_err().to_string();
    assert!(e.contains("defaultAction"), "{e}");
    let ok = filter(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
        "listenerMetadata": "meta",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    assert_eq!(ok.flags, (1 << 1) | (1 << 3) | (1 << 5));
    assert_eq!(x64(&ok, libc::SYS_mkdir, [0; 6]), NOTIFY);
    assert_eq!(ok.listener.as_ref().unwrap().metadata, "meta");
}

#[test]
fn invalid_profiles_name_the_field() {
    let bad = |v: serde_json::Value, field: &str| {
        let cfg: LinuxSeccomp = serde_json::from_value(v).unwrap();
        let e = compile(&cfg).unwrap_err().to_string();
        assert!(e.contains(field), "{e} should name {field}");
    };
    bad(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
        "defaultErrnoRet",
    );
    bad(
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["read"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}),
        "syscalls[0].errnoRet",
    );
    bad(
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
        "syscalls[0].errnoRet",
    );
    bad(
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                             "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
        "syscalls[0].args[0].index",
    );
    // Unknown actions and operators are refused by the config parser itself.
    assert!(
        serde_json::from_value::<LinuxSeccomp>(json!({"defaultAction": "SCMP_ACT_NOPE"})).is_err()
    );
}
