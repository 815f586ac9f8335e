//! `linux.seccomp`: compiles the OCI profile into one classic-BPF program (in the parent, before
//! anything exists, so a bad profile fails `create` cleanly) and loads it in the init.
//!
//! Why berth emits the BPF itself instead of using seccompiler: a seccompiler filter has a single
//! match action, so an OCI profile (an action per rule) would become one stacked filter per
//! action, each run on every system call; it cannot express SCMP_ACT_NOTIFY, load flags, or more
//! than one architecture per program. The program here is small and checked by a BPF interpreter
//! in `tests/seccomp.rs`. Syscall numbers come from the `syscalls` crate.
//!
//! Layout of the program:
//! ```text
//!   ld arch
//!   arch == x86_64 ? -> X86_64 ; arch == i386 (if listed) ? -> I386 ; else ret KILL_PROCESS
//! X86_64: ld nr ; nr >= 0x40000000 (x32 ABI) ? -> X32 (if listed) or ret KILL_PROCESS
//!   binary search over the syscall numbers that have rules -> that syscall's rules, else default
//! X32: x32-only numbers (512+) ret KILL_PROCESS; the rest as x86_64 over (number | 0x40000000)
//! I386: the same over i386 numbers (arguments compared on their low 32 bits)
//! rules of a syscall: the first unconditional rule alone if there is one (libseccomp's
//!   precedence); else conditional rules in profile order, the first whose conditions all hold
//!   returns its action, none matching returns the default. Rules repeating the default are
//!   dropped, as runc does.
//! ```
//! Conditions of one rule are ANDed; when two conditions of a rule name the same argument, each
//! becomes a rule of its own (ORed), as runc does for Docker's profiles.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator as Op,
};

use crate::error::{Error, Result};
use crate::{logging, sys};

// Return values (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// Filter flags (linux/seccomp.h).
pub const FLAG_TSYNC: u32 = 1 << 0;
pub const FLAG_LOG: u32 = 1 << 1;
pub const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

// Audit architecture tokens (linux/audit.h).
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// System calls the init makes between loading a notifying filter and handing its listener to
/// the agent: notifying them would leave the init waiting on an agent that has no fd yet.
const NEVER_NOTIFY: [&str; 6] = ["sendmsg", "sendto", "brk", "mmap", "munmap", "mremap"];

/// The x32 ABI's own system calls (numbers 512 and up with bit 30): variants of ioctl, execve,
/// ptrace, readv... that no maintained table names. They are refused outright, so a deny list
/// cannot be walked around through them.
const X32_OWN_FIRST: u32 = X32_SYSCALL_BIT | 512;

/// The kernel's limit on one classic-BPF program.
const BPF_MAXINSNS: usize = 4096;

// struct seccomp_data offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: usize) -> u32 {
    16 + 8 * i as u32
}
const fn off_arg_hi(i: usize) -> u32 {
    20 + 8 * i as u32
}

// Classic BPF opcodes: class | operation | source.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JGT_K: u16 = 0x05 | 0x20;
const BPF_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

/// A compiled profile, ready to load.
#[derive(Debug, Clone)]
pub struct Filter {
    pub program: Vec<libc::sock_filter>,
    /// seccomp(2) flags, NEW_LISTENER included when a rule notifies.
    pub flags: u32,
    /// Where the listener fd goes (SCMP_ACT_NOTIFY).
    pub listener: Option<Listener>,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub path: PathBuf,
    pub metadata: String,
}

impl Filter {
    /// Loads the filter into the calling thread. Returns the listener fd when the profile
    /// notifies. Needs no_new_privs or CAP_SYS_ADMIN.
    pub fn load(&self) -> Result<Option<OwnedFd>> {
        sys::seccomp_set_filter(self.flags, &self.program).map_err(|e| {
            let why = if e == nix::Error::EINVAL && self.flags != 0 {
                " (the kernel may not support one of linux.seccomp.flags)"
            } else {
                ""
            };
            Error::sys(format!("linux.seccomp: load the filter{why}"), e)
        })
    }

    /// True when the listener fd must go to a seccomp agent during create.
    pub fn notifies(&self) -> bool {
        self.listener.is_some()
    }

    /// The program as create keeps it beside the state, so that exec loads it instead of
    /// compiling the profile again: a header, the flags, then each instruction (code, jt, jf,
    /// k) little-endian. None for a notifying profile (its listener needs the config).
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        if self.notifies() {
            return None;
        }
        let mut out = Vec::with_capacity(CACHE_MAGIC.len() + 4 + self.program.len() * 8);
        out.extend_from_slice(CACHE_MAGIC);
        out.extend_from_slice(&self.flags.to_le_bytes());
        for i in &self.program {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
        Some(out)
    }

    /// Reads back what `to_bytes` wrote; None if it is not that.
    pub fn from_bytes(data: &[u8]) -> Option<Filter> {
        let rest = data.strip_prefix(CACHE_MAGIC)?;
        let (flags, insns) = rest.split_first_chunk::<4>()?;
        if insns.is_empty() || insns.len() % 8 != 0 || insns.len() / 8 > MAX_INSNS {
            return None;
        }
        let program = insns
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(Filter {
            program,
            flags: u32::from_le_bytes(*flags),
            listener: None,
        })
    }
}

/// Marks a compiled program kept by create (its layout's version is in it).
const CACHE_MAGIC: &[u8] = b"berth-seccomp-bpf-1\n";
/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// The architectures a program checks for: the native one always (libseccomp's rule), i386 and
/// x32 only when listed. Other tokens cannot reach an x86_64 kernel's filter.
#[derive(Debug, Default, Clone, Copy)]
struct Arches {
    i386: bool,
    x32: bool,
}

/// The architectures whose system calls a program can filter on this (x86_64) machine: the
/// native ABI, i386 and x32. `arches` and `features` both read it.
pub const APPLIED_ARCHES: [Arch; 4] = [
    Arch::ScmpArchNative,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX86,
    Arch::ScmpArchX32,
];

fn arches(cfg: &LinuxSeccomp) -> Arches {
    let mut a = Arches::default();
    for arch in cfg.architectures().iter().flatten() {
        match arch {
            Arch::ScmpArchX86 => a.i386 = true,
            Arch::ScmpArchX32 => a.x32 = true,
            other if APPLIED_ARCHES.contains(other) => {}
            other => logging::debug(&format!(
                "linux.seccomp.architectures: {other:?} cannot occur on this machine; no rules for it"
            )),
        }
    }
    a
}

/// The spec's actions, operators and flags (oci-spec's enums have no iterator). `features`
/// reports the actions `action_value` accepts; every operator has its code in `emit_cond` and
/// every flag its arm in `compile`, whose matches are exhaustive.
pub const SPEC_ACTIONS: [Action; 9] = [
    Action::ScmpActKill,
    Action::ScmpActKillThread,
    Action::ScmpActKillProcess,
    Action::ScmpActTrap,
    Action::ScmpActErrno,
    Action::ScmpActNotify,
    Action::ScmpActTrace,
    Action::ScmpActLog,
    Action::ScmpActAllow,
];
pub const SPEC_OPERATORS: [Op; 7] = [
    Op::ScmpCmpNe,
    Op::ScmpCmpLt,
    Op::ScmpCmpLe,
    Op::ScmpCmpEq,
    Op::ScmpCmpGe,
    Op::ScmpCmpGt,
    Op::ScmpCmpMaskedEq,
];
pub const SPEC_FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// Actions a rule may use (the default action cannot be SCMP_ACT_NOTIFY).
pub fn supported_actions() -> Vec<Action> {
    SPEC_ACTIONS
        .into_iter()
        .filter(|a| action_value(*a, None, "").is_ok())
        .collect()
}

/// Whether this kernel takes a flag berth knows. TSYNC is never passed (the init has one
/// thread, so it holds anyway) but is reported as the kernel knows it, as other runtimes do.
pub fn flag_supported(flag: LinuxSeccompFilterFlag) -> bool {
    let bits = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
        // The kernel takes it only together with a listener.
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            FLAG_WAIT_KILLABLE_RECV | FLAG_NEW_LISTENER
        }
    };
    sys::seccomp_flags_known(bits)
}

fn action_value(action: Action, errno_ret: Option<u32>, field: &str) -> Result<u32> {
    let data = |default: u32| -> Result<u32> {
        let v = errno_ret.unwrap_or(default);
        if v > 0xffff {
            return Err(Error::config(
                field,
                format!("errnoRet {v} does not fit the 16 bits seccomp returns"),
            ));
        }
        Ok(v)
    };
    let plain = |ret: u32| -> Result<u32> {
        match errno_ret {
            None => Ok(ret),
            Some(_) => Err(Error::config(
                field,
                format!(
                    "errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {action}"
                ),
            )),
        }
    };
    match action {
        Action::ScmpActAllow => plain(RET_ALLOW),
        Action::ScmpActErrno => Ok(RET_ERRNO | data(libc::EPERM as u32)?),
        Action::ScmpActTrace => Ok(RET_TRACE | data(libc::EPERM as u32)?),
        Action::ScmpActKill | Action::ScmpActKillThread => plain(RET_KILL_THREAD),
        Action::ScmpActKillProcess => plain(RET_KILL_PROCESS),
        Action::ScmpActTrap => plain(RET_TRAP),
        Action::ScmpActLog => plain(RET_LOG),
        Action::ScmpActNotify => plain(RET_USER_NOTIF),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    conds: Vec<LinuxSeccompArg>,
    ret: u32,
}

/// Rules per syscall number for one architecture.
type Table = BTreeMap<u32, Vec<Rule>>;

/// Compiles the profile. Every error names the field.
pub fn compile(cfg: &LinuxSeccomp) -> Result<Filter> {
    let default = action_value(
        cfg.default_action(),
        cfg.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if cfg.default_action() == Action::ScmpActNotify {
        return Err(Error::config(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action (berth's own system calls would wait on the agent)",
        ));
    }
    let arches = arches(cfg);
    let default_action = cfg.default_action();
    let mut x86_64 = Table::new();
    let mut i386 = Table::new();
    let mut x32 = Table::new();
    let mut notifies = false;
    for (i, sc) in cfg.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let ret = action_value(sc.action(), sc.errno_ret(), &format!("{field}.errnoRet"))?;
        if sc.action() == Action::ScmpActNotify {
            if let Some(n) = sc
                .names()
                .iter()
                .find(|n| NEVER_NOTIFY.contains(&n.as_str()))
            {
                return Err(Error::config(
                    format!("{field}.names"),
                    format!(
                        "SCMP_ACT_NOTIFY on {n:?}: berth needs it to hand the listener to the agent, \
                         which would then wait on itself"
                    ),
                ));
            }
            notifies = true;
        }
        // A rule that repeats the default changes nothing (runc drops these too, and with
        // libseccomp's precedence it would only shadow the syscall's other rules).
        if sc.action() == default_action && sc.errno_ret() == cfg.default_errno_ret() {
            continue;
        }
        let args = sc.args().as_deref().unwrap_or_default();
        let mut per_index = [0usize; 6];
        for (j, a) in args.iter().enumerate() {
            if a.index() > 5 {
                return Err(Error::config(
                    format!("{field}.args[{j}].index"),
                    format!("{} is not an argument index (0 to 5)", a.index()),
                ));
            }
            per_index[a.index()] += 1;
        }
        // Two conditions on one argument: each its own rule (OR), as runc does.
        let rules: Vec<Rule> = if per_index.iter().any(|&n| n > 1) {
            args.iter()
                .map(|a| Rule {
                    conds: vec![*a],
                    ret,
                })
                .collect()
        } else {
            vec![Rule {
                conds: args.to_vec(),
                ret,
            }]
        };
        for name in sc.names() {
            let mut known = false;
            if let Ok(n) = syscalls::x86_64::Sysno::from_str(name) {
                known = true;
                let nr = n.id() as u32;
                x86_64.entry(nr).or_default().extend(rules.iter().cloned());
                // x32 shares the x86_64 numbers below 512 (the rest are x32-only variants
                // that no table here names: they get the default action).
                if arches.x32 && nr < 512 {
                    x32.entry(nr | X32_SYSCALL_BIT)
                        .or_default()
                        .extend(rules.iter().cloned());
                }
            }
            if arches.i386 {
                if let Ok(n) = syscalls::x86::Sysno::from_str(name) {
                    known = true;
                    i386.entry(n.id() as u32)
                        .or_default()
                        .extend(rules.iter().cloned());
                }
            }
            if !known {
                logging::debug(&format!(
                    "{field}: system call {name:?} is unknown on this architecture; rule skipped"
                ));
            }
        }
    }
    let mut flags = 0;
    for f in cfg.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags |= FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags |= FLAG_SPEC_ALLOW,
            // The init is single-threaded: there are no other threads to synchronise.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {}
            // Only meaningful with a listener (the kernel refuses it otherwise).
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if notifies => {
                flags |= FLAG_WAIT_KILLABLE_RECV
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => logging::debug(
                "linux.seccomp.flags: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV without SCMP_ACT_NOTIFY has no effect",
            ),
        }
    }
    let listener = match (cfg.listener_path(), notifies) {
        (Some(path), true) => {
            flags |= FLAG_NEW_LISTENER;
            Some(Listener {
                path: path.clone(),
                metadata: cfg.listener_metadata().clone().unwrap_or_default(),
            })
        }
        (None, true) => {
            return Err(Error::config(
                "linux.seccomp.listenerPath",
                "required when a rule uses SCMP_ACT_NOTIFY",
            ))
        }
        (_, false) => None,
    };
    if cfg.listener_metadata().is_some() && cfg.listener_path().is_none() {
        return Err(Error::config(
            "linux.seccomp.listenerMetadata",
            "given without listenerPath",
        ));
    }
    let program = assemble(default, arches, &x86_64, &i386, &x32)?;
    Ok(Filter {
        program,
        flags,
        listener,
    })
}

/// Instructions with symbolic jump targets, resolved by `link`.
#[derive(Debug, Clone, Copy)]
enum Ins {
    Stmt(u16, u32),
    /// Conditional jump that skips the next instruction when the test is `skip_if`.
    Skip {
        code: u16,
        k: u32,
        skip_if: bool,
    },
    Ja(usize),
    Label(usize),
}

#[derive(Default)]
struct Asm {
    code: Vec<Ins>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn bind(&mut self, l: usize) {
        self.code.push(Ins::Label(l));
    }
    fn ld(&mut self, off: u32) {
        self.code.push(Ins::Stmt(BPF_LD_W_ABS, off));
    }
    fn and(&mut self, k: u32) {
        self.code.push(Ins::Stmt(BPF_ALU_AND_K, k));
    }
    fn ret(&mut self, k: u32) {
        self.code.push(Ins::Stmt(BPF_RET_K, k));
    }
    /// Jumps to `to` when `A <code> k` holds.
    fn jump_if(&mut self, code: u16, k: u32, to: usize) {
        self.code.push(Ins::Skip {
            code,
            k,
            skip_if: false,
        });
        self.code.push(Ins::Ja(to));
    }
    /// Jumps to `to` when `A <code> k` does not hold.
    fn jump_unless(&mut self, code: u16, k: u32, to: usize) {
        self.code.push(Ins::Skip {
            code,
            k,
            skip_if: true,
        });
        self.code.push(Ins::Ja(to));
    }

    fn link(self) -> Result<Vec<libc::sock_filter>> {
        let mut at = vec![0usize; self.labels];
        let mut pc = 0;
        for ins in &self.code {
            match ins {
                Ins::Label(l) => at[*l] = pc,
                _ => pc += 1,
            }
        }
        if pc > BPF_MAXINSNS {
            return Err(Error::config(
                "linux.seccomp",
                format!("the profile needs {pc} BPF instructions, more than the kernel's {BPF_MAXINSNS}"),
            ));
        }
        let mut out = Vec::with_capacity(pc);
        for ins in &self.code {
            let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
            match *ins {
                Ins::Label(_) => continue,
                Ins::Stmt(code, k) => out.push(f(code, 0, 0, k)),
                Ins::Skip { code, k, skip_if } => {
                    let (jt, jf) = if skip_if { (1, 0) } else { (0, 1) };
                    out.push(f(code, jt, jf, k))
                }
                Ins::Ja(l) => {
                    // Every target lies ahead: the layout above only jumps forward.
                    let off = at[l].checked_sub(out.len() + 1).ok_or_else(|| {
                        Error::Other("seccomp: internal error: backward jump".into())
                    })?;
                    out.push(f(BPF_JMP_JA, 0, 0, off as u32));
                }
            }
        }
        Ok(out)
    }
}

fn assemble(
    default: u32,
    arches: Arches,
    x86_64: &Table,
    i386: &Table,
    x32: &Table,
) -> Result<Vec<libc::sock_filter>> {
    let mut a = Asm::default();
    let l_x86_64 = a.label();
    let l_i386 = a.label();
    let l_x32 = a.label();
    a.ld(OFF_ARCH);
    a.jump_if(BPF_JEQ_K, AUDIT_ARCH_X86_64, l_x86_64);
    if arches.i386 {
        a.jump_if(BPF_JEQ_K, AUDIT_ARCH_I386, l_i386);
    }
    // Any other ABI is one the profile did not allow.
    a.ret(RET_KILL_PROCESS);

    a.bind(l_x86_64);
    a.ld(OFF_NR);
    if arches.x32 {
        a.jump_if(BPF_JGE_K, X32_SYSCALL_BIT, l_x32);
    } else {
        let native = a.label();
        a.jump_unless(BPF_JGE_K, X32_SYSCALL_BIT, native);
        a.ret(RET_KILL_PROCESS);
        a.bind(native);
    }
    dispatch(&mut a, x86_64, default, true);
    if arches.x32 {
        a.bind(l_x32);
        let shared = a.label();
        a.jump_unless(BPF_JGE_K, X32_OWN_FIRST, shared);
        a.ret(RET_KILL_PROCESS);
        a.bind(shared);
        dispatch(&mut a, x32, default, true);
    }
    if arches.i386 {
        a.bind(l_i386);
        a.ld(OFF_NR);
        dispatch(&mut a, i386, default, false);
    }
    a.link()
}

/// With the syscall number in A: a binary search over runs of numbers that share the same
/// rules (an allow-list is mostly long runs), each run ending in that rule list's code, which is
/// emitted once however many runs use it. This keeps Docker's profile for three ABIs far below
/// the kernel's instruction limit.
fn dispatch(a: &mut Asm, table: &Table, default: u32, wide_args: bool) {
    let mut blocks: Vec<&Vec<Rule>> = Vec::new();
    // (first number, Some(block) or None for the default action)
    let mut runs: Vec<(u32, Option<usize>)> = Vec::new();
    let mut next = 0u32;
    for (&nr, rules) in table {
        if nr > next && runs.last().is_some_and(|r| r.1.is_some()) {
            runs.push((next, None));
        } else if nr > next && runs.is_empty() {
            runs.push((0, None));
        }
        let b = match blocks.iter().position(|b| *b == rules) {
            Some(i) => i,
            None => {
                blocks.push(rules);
                blocks.len() - 1
            }
        };
        if !(nr == next && runs.last().is_some_and(|r| r.1 == Some(b))) {
            runs.push((nr, Some(b)));
        }
        next = nr + 1;
    }
    runs.push((next, None));
    let labels: Vec<usize> = blocks.iter().map(|_| a.label()).collect();
    search(a, &runs, &labels, default);
    for (rules, l) in blocks.iter().zip(labels) {
        a.bind(l);
        emit_rules(a, rules, default, wide_args);
    }
}

fn search(a: &mut Asm, runs: &[(u32, Option<usize>)], labels: &[usize], default: u32) {
    if let [(_, block)] = runs {
        match block {
            Some(b) => a.code.push(Ins::Ja(labels[*b])),
            None => a.ret(default),
        }
        return;
    }
    let mid = runs.len() / 2;
    let right = a.label();
    a.jump_if(BPF_JGE_K, runs[mid].0, right);
    search(a, &runs[..mid], labels, default);
    a.bind(right);
    search(a, &runs[mid..], labels, default);
}

fn emit_rules(a: &mut Asm, rules: &[Rule], default: u32, wide_args: bool) {
    // An unconditional rule decides the syscall alone, whatever else names it (libseccomp's
    // rule: it absorbs the syscall's conditional rules).
    if let Some(r) = rules.iter().find(|r| r.conds.is_empty()) {
        a.ret(r.ret);
        return;
    }
    let conditional = rules.iter();
    for r in conditional {
        let next = a.label();
        for c in &r.conds {
            emit_cond(a, c, next, wide_args);
        }
        a.ret(r.ret);
        a.bind(next);
    }
    a.ret(default);
}

/// Falls through when the condition holds, jumps to `fail` otherwise. Comparisons are unsigned
/// and 64-bit (high word first); i386 arguments are 32-bit, so only the low word counts there.
fn emit_cond(a: &mut Asm, c: &LinuxSeccompArg, fail: usize, wide: bool) {
    let i = c.index();
    let (v_hi, v_lo) = ((c.value() >> 32) as u32, c.value() as u32);
    let two = c.value_two().unwrap_or(0);
    let (t_hi, t_lo) = ((two >> 32) as u32, two as u32);
    let ok = a.label();
    match c.op() {
        Op::ScmpCmpEq => {
            if wide {
                a.ld(off_arg_hi(i));
                a.jump_unless(BPF_JEQ_K, v_hi, fail);
            }
            a.ld(off_arg_lo(i));
            a.jump_unless(BPF_JEQ_K, v_lo, fail);
        }
        Op::ScmpCmpNe => {
            if wide {
                a.ld(off_arg_hi(i));
                a.jump_unless(BPF_JEQ_K, v_hi, ok);
            }
            a.ld(off_arg_lo(i));
            a.jump_if(BPF_JEQ_K, v_lo, fail);
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            let low = if c.op() == Op::ScmpCmpGt {
                BPF_JGT_K
            } else {
                BPF_JGE_K
            };
            if wide {
                a.ld(off_arg_hi(i));
                a.jump_if(BPF_JGT_K, v_hi, ok);
                a.jump_unless(BPF_JEQ_K, v_hi, fail);
            }
            a.ld(off_arg_lo(i));
            a.jump_unless(low, v_lo, fail);
        }
        // a < v  is  !(a >= v);  a <= v  is  !(a > v).
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            let low = if c.op() == Op::ScmpCmpLt {
                BPF_JGE_K
            } else {
                BPF_JGT_K
            };
            if wide {
                a.ld(off_arg_hi(i));
                a.jump_if(BPF_JGT_K, v_hi, fail);
                a.jump_unless(BPF_JEQ_K, v_hi, ok);
            }
            a.ld(off_arg_lo(i));
            a.jump_if(low, v_lo, fail);
        }
        // (arg & value) == valueTwo
        Op::ScmpCmpMaskedEq => {
            if wide {
                a.ld(off_arg_hi(i));
                a.and(v_hi);
                a.jump_unless(BPF_JEQ_K, t_hi, fail);
            }
            a.ld(off_arg_lo(i));
            a.and(v_lo);
            a.jump_unless(BPF_JEQ_K, t_lo, fail);
        }
    }
    a.bind(ok);
}

/// The message a seccomp agent receives with the listener fd (runc's ContainerProcessState), so
/// agents written for runc work unchanged.
#[derive(serde::Serialize)]
pub struct ProcessState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub fds: [&'a str; 1],
    pub pid: i32,
    pub metadata: &'a str,
    pub state: serde_json::Value,
}

/// Hands the listener fd to the agent at `listener.path`, with the container's state.
pub fn send_to_agent(listener: &Listener, fd: &OwnedFd, pid: i32, state_json: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let state = serde_json::from_str(state_json)
        .map_err(|e| Error::Other(format!("container state for the seccomp agent: {e}")))?;
    let msg = ProcessState {
        oci_version: crate::state::OCI_VERSION,
        fds: ["seccompFd"],
        pid,
        metadata: &listener.metadata,
        state,
    };
    let data = serde_json::to_vec(&msg).map_err(|e| Error::Other(e.to_string()))?;
    let sock = std::os::unix::net::UnixStream::connect(&listener.path).map_err(|e| {
        Error::io(
            "linux.seccomp.listenerPath: connect to the seccomp agent",
            &listener.path,
            e,
        )
    })?;
    let iov = [std::io::IoSlice::new(&data)];
    let fds = [fd.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| {
        Error::sys(
            "linux.seccomp.listenerPath: send the listener fd to the agent",
            e,
        )
    })?;
    Ok(())
}
