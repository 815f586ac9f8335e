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
    // Numbers are per ABI: i386 60 is umask, x86_64 60 is exit.
    assert_eq!(x64(&all, 60, [0; 6]), ALLOW);
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

#[test]
fn operators_at_word_boundaries_on_every_abi() {
    let rule = |op: &str, value: u64, two: u64| {
        filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 2, "value": value, "valueTwo": two, "op": op}]}]
        }))
    };
    let nr = libc::SYS_personality;
    let vals: [u64; 12] = [
        0,
        1,
        5,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x1_0000_0006,
        0x2_0000_0000,
        0x2_0000_0005,
        u64::MAX,
        u64::MAX - 1,
        0x8000_0000_0000_0000,
    ];
    for op in [
        "SCMP_CMP_EQ",
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_GT",
        "SCMP_CMP_GE",
        "SCMP_CMP_MASKED_EQ",
    ] {
        for &v in &vals {
            for &t in &vals {
                for &arg in &vals {
                    let f = rule(op, v, t);
                    let want = match op {
                        "SCMP_CMP_EQ" => arg == v,
                        "SCMP_CMP_NE" => arg != v,
                        "SCMP_CMP_LT" => arg < v,
                        "SCMP_CMP_LE" => arg <= v,
                        "SCMP_CMP_GT" => arg > v,
                        "SCMP_CMP_GE" => arg >= v,
                        _ => arg & v == t,
                    };
                    let got = x64(&f, nr, [0, 0, arg, 0, 0, 0]);
                    assert_eq!(got == errno(1), want, "{op} v={v:#x} t={t:#x} arg={arg:#x}");
                    let got32 = run(
                        &f.program,
                        &data(
                            AUDIT_ARCH_X86_64,
                            X32_SYSCALL_BIT | nr as u32,
                            [0, 0, arg, 0, 0, 0],
                        ),
                    );
                    assert_eq!(got32 == errno(1), want, "x32 {op}");
                    // i386: low words only.
                    let (a, vv, tt) = (arg as u32, v as u32, t as u32);
                    let want32 = match op {
                        "SCMP_CMP_EQ" => a == vv,
                        "SCMP_CMP_NE" => a != vv,
                        "SCMP_CMP_LT" => a < vv,
                        "SCMP_CMP_LE" => a <= vv,
                        "SCMP_CMP_GT" => a > vv,
                        "SCMP_CMP_GE" => a >= vv,
                        _ => a & vv == tt,
                    };
                    let g = run(
                        &f.program,
                        &data(AUDIT_ARCH_I386, 136, [0, 0, arg, 0, 0, 0]),
                    );
                    assert_eq!(g == errno(1), want32, "i386 {op}");
                }
            }
        }
    }
}

#[test]
fn runs_of_numbers_match_a_direct_lookup() {
    // Pseudo-random tables with three actions and gaps, against a direct lookup.
    let mut seed = 12345u64;
    for _ in 0..200 {
        let mut names = Vec::new();
        let mut kinds = std::collections::HashMap::new();
        for n in 0..460u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (seed >> 33) % 4;
            if k == 0 {
                continue;
            }
            if let Some(s) = syscalls::x86_64::Sysno::new(n as usize) {
                kinds.insert(n as u32, k);
                names.push((s.name().to_string(), k));
            }
        }
        let mk = |k: u64| -> Vec<String> {
            names
                .iter()
                .filter(|(_, kk)| *kk == k)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let f = filter(
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 99, "syscalls": [
            {"names": mk(1), "action": "SCMP_ACT_ALLOW"},
            {"names": mk(2), "action": "SCMP_ACT_LOG"},
            {"names": mk(3), "action": "SCMP_ACT_TRAP"}]}),
        );
        for nr in (0..1200u32).chain([0x3fff_ffff, u32::MAX]) {
            let want = match kinds.get(&nr) {
                Some(1) => ALLOW,
                Some(2) => LOG,
                Some(3) => TRAP,
                _ => errno(99),
            };
            let got = if nr >= X32_SYSCALL_BIT {
                KILL_PROCESS
            } else {
                want
            };
            assert_eq!(x64(&f, nr as i64, [0; 6]), got, "nr {nr}");
        }
    }
}

#[test]
fn an_unconditional_rule_decides_alone() {
    // libseccomp's precedence: the unconditional ERRNO absorbs the conditional ALLOW.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x7e02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]}));
    assert_eq!(x64(&f, libc::SYS_clone, [17, 0, 0, 0, 0, 0]), errno(1));
    assert_eq!(
        x64(&f, libc::SYS_clone, [0x1000_0000, 0, 0, 0, 0, 0]),
        errno(1)
    );
    // A rule repeating the default is dropped, so it cannot shadow the others.
    let g = filter(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x7e02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]}));
    assert_eq!(x64(&g, libc::SYS_clone, [17, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        x64(&g, libc::SYS_clone, [0x1000_0000, 0, 0, 0, 0, 0]),
        errno(1)
    );
}

#[test]
fn x32_only_variants_are_refused() {
    // ptrace, ioctl and execve have x32-only numbers (521, 514, 520): a deny list naming them
    // must not let them through the x32 ABI.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["ptrace", "ioctl", "execve"], "action": "SCMP_ACT_ERRNO"}]}));
    for nr in [521u32, 514, 520, 547] {
        let d = data(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | nr, [0; 6]);
        assert_eq!(run(&f.program, &d), KILL_PROCESS, "x32 {nr}");
    }
    // The shared numbers follow the rules.
    let d = data(
        AUDIT_ARCH_X86_64,
        X32_SYSCALL_BIT | libc::SYS_execve as u32,
        [0; 6],
    );
    assert_eq!(run(&f.program, &d), errno(1));
    let d = data(
        AUDIT_ARCH_X86_64,
        X32_SYSCALL_BIT | libc::SYS_getpid as u32,
        [0; 6],
    );
    assert_eq!(run(&f.program, &d), ALLOW);
}

#[test]
fn notify_is_refused_where_the_init_would_wait_on_itself() {
    let cfg: LinuxSeccomp = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]}))
    .unwrap();
    let e = compile(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("syscalls[0].names") && e.contains("sendmsg"),
        "{e}"
    );
}
