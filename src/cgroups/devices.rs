//! The device cgroup, enforced by berth itself: the config's `linux.resources.devices`, an allow
//! rule per `linux.devices` entry and runc's default list, as one ordered rule list. On v1 the
//! rules become devices.allow/deny writes; on v2 an eBPF `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! Semantics (both versions): the last rule that matches a request decides; an allow rule
//! matches when the requested access is a subset of its own, a deny rule when the two
//! intersect; a request no rule matches is refused.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxResources};

use crate::error::{Error, Result};
use crate::sys;

/// Access bits, as the kernel's `bpf_cgroup_dev_ctx` encodes them (BPF_DEVCG_ACC_*).
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
const ALL_ACCESS: u8 = MKNOD | READ | WRITE;

/// Device types, valued as BPF_DEVCG_DEV_* (`All` never reaches the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevType {
    All,
    Block,
    Char,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::All => 'a',
            DevType::Block => 'b',
            DevType::Char => 'c',
        }
    }

    fn bpf(self) -> i32 {
        match self {
            DevType::All => 0,
            DevType::Block => 1,
            DevType::Char => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub typ: DevType,
    /// None is the wildcard `*`.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// MKNOD | READ | WRITE bits.
    pub access: u8,
}

impl Rule {
    const fn allow(typ: DevType, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
        Rule {
            allow: true,
            typ,
            major,
            minor,
            access,
        }
    }

    fn access_string(&self) -> String {
        let mut s = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                s.push(c);
            }
        }
        s
    }

    fn is_reset(&self) -> bool {
        self.typ == DevType::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ALL_ACCESS
    }
}

impl std::fmt::Display for Rule {
    /// The devices.allow/deny line: `c 1:3 rwm`, `b 8:* m`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.typ.letter(),
            num(self.major),
            num(self.minor),
            self.access_string()
        )
    }
}

const C: DevType = DevType::Char;
const B: DevType = DevType::Block;

/// Allowed in every container after the config's own rules, as runc does (specconv's
/// AllowedDevices): mknod of anything, the standard character devices, ptys and tun.
const DEFAULT_ALLOWED: &[Rule] = &[
    Rule::allow(C, None, None, MKNOD),
    Rule::allow(B, None, None, MKNOD),
    Rule::allow(C, Some(1), Some(3), ALL_ACCESS), // null
    Rule::allow(C, Some(1), Some(8), ALL_ACCESS), // random
    Rule::allow(C, Some(1), Some(7), ALL_ACCESS), // full
    Rule::allow(C, Some(5), Some(0), ALL_ACCESS), // tty
    Rule::allow(C, Some(1), Some(5), ALL_ACCESS), // zero
    Rule::allow(C, Some(1), Some(9), ALL_ACCESS), // urandom
    Rule::allow(C, Some(136), None, ALL_ACCESS),  // pts/*
    Rule::allow(C, Some(5), Some(2), ALL_ACCESS), // ptmx
    Rule::allow(C, Some(10), Some(200), ALL_ACCESS), // net/tun
];

/// A device number from the config: absent or -1 (runc's wildcard) is `*`. The upper bound
/// keeps every number a BPF immediate (32-bit, sign-extended); real majors and minors are far
/// smaller (12 and 20 bits).
fn number(field: &str, n: Option<i64>) -> Result<Option<u32>> {
    match n {
        None | Some(-1) => Ok(None),
        Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(Error::config(field, format!("{n} is not a device number"))),
    }
}

fn parse_access(field: &str, access: Option<&str>) -> Result<u8> {
    // runc refuses an empty or missing access rather than guessing one.
    let access = access.unwrap_or_default();
    if access.is_empty() {
        return Err(Error::config(field, "must not be empty"));
    }
    let mut bits = 0;
    for c in access.chars() {
        bits |= match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => {
                return Err(Error::config(
                    field,
                    format!("{access:?}: only the letters r, w and m are allowed"),
                ))
            }
        };
    }
    Ok(bits)
}

/// The container's device rules in the order they take effect (later ones win): the config's
/// `linux.resources.devices`, then an allow for each `linux.devices` entry, then the defaults.
pub fn effective_rules(
    resources: Option<&LinuxResources>,
    config_devices: &[LinuxDevice],
) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    let given = resources
        .and_then(|r| r.devices().as_deref())
        .unwrap_or_default();
    for (i, d) in given.iter().enumerate() {
        let field = |f: &str| format!("linux.resources.devices[{i}].{f}");
        let typ = match d.typ() {
            None | Some(LinuxDeviceType::A) => DevType::All,
            Some(LinuxDeviceType::C) => DevType::Char,
            Some(LinuxDeviceType::B) => DevType::Block,
            Some(t) => {
                return Err(Error::config(
                    field("type"),
                    format!("{:?}: a device rule's type is a, b or c", t.as_str()),
                ))
            }
        };
        rules.push(Rule {
            allow: d.allow(),
            typ,
            major: number(&field("major"), d.major())?,
            minor: number(&field("minor"), d.minor())?,
            access: parse_access(&field("access"), d.access().as_deref())?,
        });
    }
    for (i, d) in config_devices.iter().enumerate() {
        let typ = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => DevType::Char,
            LinuxDeviceType::B => DevType::Block,
            // The device cgroup only knows char and block devices; a fifo needs no rule.
            LinuxDeviceType::P => continue,
            LinuxDeviceType::A => {
                return Err(Error::config(
                    format!("linux.devices[{i}].type"),
                    "\"a\" is not a device type",
                ))
            }
        };
        let major = number(&format!("linux.devices[{i}].major"), Some(d.major()))?;
        let minor = number(&format!("linux.devices[{i}].minor"), Some(d.minor()))?;
        if major.is_none() || minor.is_none() {
            return Err(Error::config(
                format!("linux.devices[{i}]"),
                "a device needs its major and minor numbers",
            ));
        }
        rules.push(Rule::allow(typ, major, minor, ALL_ACCESS));
    }
    rules.extend_from_slice(DEFAULT_ALLOWED);
    Ok(rules)
}

/// The cgroup v1 writes for `rules`, in order: (file, line).
///
/// They start from deny-all (`a` resets the list), so whatever the cgroup held before —
/// inherited rules, or libcgroups' own default allows, which it writes in `apply` — has no
/// say. The kernel takes `a` as "reset" whatever follows it, so a narrower `a` rule is written
/// as its `c` and `b` halves. v1 cannot express a deny that narrows an earlier wildcard allow
/// (it only removes an exactly matching exception); v2 can.
pub fn v1_writes(rules: &[Rule]) -> Vec<(&'static str, String)> {
    let file = |r: &Rule| {
        if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        }
    };
    let mut out = Vec::new();
    if !rules.first().is_some_and(|r| !r.allow && r.is_reset()) {
        out.push(("devices.deny", "a *:* rwm".to_string()));
    }
    for r in rules {
        if r.typ == DevType::All && !r.is_reset() {
            for typ in [DevType::Char, DevType::Block] {
                let half = Rule { typ, ..*r };
                out.push((file(&half), half.to_string()));
            }
        } else {
            out.push((file(r), r.to_string()));
        }
    }
    out
}

// eBPF encoding: berth emits a handful of instruction kinds rather than build libcgroups'
// `cgroupsv2_devices` feature, which pulls in libbpf-sys (a C build) and links libelf
// dynamically into every start-up of the binary.
mod bpf {
    // Opcode parts (linux/bpf.h, linux/bpf_common.h); libc has the classic-BPF ones.
    const LDX_W_MEM: u8 = (libc::BPF_LDX | libc::BPF_W | libc::BPF_MEM) as u8;
    const ALU32_K: u8 = (libc::BPF_ALU | libc::BPF_K) as u8;
    const ALU32_X: u8 = (libc::BPF_ALU | libc::BPF_X) as u8;
    const JMP_K: u8 = (libc::BPF_JMP | libc::BPF_K) as u8;
    pub const AND: u8 = libc::BPF_AND as u8;
    pub const RSH: u8 = libc::BPF_RSH as u8;
    pub const MOV: u8 = 0xb0;
    pub const JEQ: u8 = libc::BPF_JEQ as u8;
    pub const JNE: u8 = 0x50;
    pub const EXIT: u8 = (libc::BPF_JMP as u8) | 0x90;

    /// One `struct bpf_insn`, packed the way the kernel reads it on a little-endian host.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Insn {
        pub code: u8,
        pub dst: u8,
        pub src: u8,
        pub off: i16,
        pub imm: i32,
    }

    impl Insn {
        pub fn encode(self) -> u64 {
            let mut b = [0u8; 8];
            b[0] = self.code;
            b[1] = (self.src << 4) | (self.dst & 0xf);
            b[2..4].copy_from_slice(&self.off.to_ne_bytes());
            b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
            u64::from_ne_bytes(b)
        }
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// dst = *(u32 *)(src + off)
    pub fn load32(dst: u8, src: u8, off: i16) -> Insn {
        insn(LDX_W_MEM, dst, src, off, 0)
    }
    /// 32-bit `dst op= imm` (the upper half of dst is zeroed).
    pub fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
        insn(ALU32_K | op, dst, 0, 0, imm)
    }
    /// 32-bit dst = src.
    pub fn mov32_reg(dst: u8, src: u8) -> Insn {
        insn(ALU32_X | MOV, dst, src, 0, 0)
    }
    /// if (dst op imm) skip `off` instructions.
    pub fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        insn(JMP_K | op, dst, 0, off, imm)
    }
    pub fn exit() -> Insn {
        insn(EXIT, 0, 0, 0, 0)
    }
}

use bpf::Insn;

// Registers: r1 = ctx on entry, r2 = requested access, r3 = type, r4 = major, r5 = minor,
// r6 = scratch, r0 = verdict.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

/// The device program for `rules`: one block per rule, last rule first; the first block that
/// matches returns its verdict, and the end refuses. A rule that matches every request (a
/// privileged container's `a *:* rwm` allow) ends the program: the kernel's verifier refuses
/// a program with instructions no path reaches.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    use bpf::*;
    let mut prog = vec![
        load32(R2, R1, 0), // access_type = (access << 16) | type
        mov32_reg(R3, R2),
        alu32_imm(AND, R3, 0xffff),
        alu32_imm(RSH, R2, 16),
        load32(R4, R1, 4),
        load32(R5, R1, 8),
    ];
    for r in rules.iter().rev() {
        // Conditions jump to the next block when they do not hold; offsets are fixed once
        // the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        if r.typ != DevType::All {
            block.push(jmp_imm(JNE, R3, r.typ.bpf(), 0));
        }
        if let Some(major) = r.major {
            block.push(jmp_imm(JNE, R4, major as i32, 0));
        }
        if let Some(minor) = r.minor {
            block.push(jmp_imm(JNE, R5, minor as i32, 0));
        }
        if r.allow {
            // Subset: no requested bit outside the rule's (any unknown bit also fails).
            if r.access != ALL_ACCESS {
                block.push(mov32_reg(R6, R2));
                block.push(alu32_imm(AND, R6, !i32::from(r.access)));
                block.push(jmp_imm(JNE, R6, 0, 0));
            }
        } else {
            // Intersection: some requested bit is the rule's.
            block.push(mov32_reg(R6, R2));
            block.push(alu32_imm(AND, R6, i32::from(r.access)));
            block.push(jmp_imm(JEQ, R6, 0, 0));
        }
        let unconditional = block.is_empty();
        block.push(alu32_imm(MOV, R0, i32::from(r.allow)));
        block.push(exit());
        if unconditional {
            prog.extend(block);
            return prog;
        }
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.code & 0x07 == libc::BPF_JMP as u8 && insn.code != EXIT {
                insn.off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(alu32_imm(MOV, R0, 0));
    prog.push(exit());
    prog
}

/// Loads the program for `rules` and makes it the only device program on the cgroup at `dir`.
fn attach_v2(dir: &Path, rules: &[Rule]) -> Result<()> {
    let insns: Vec<u64> = program(rules).into_iter().map(Insn::encode).collect();
    let license = c"Apache-2.0";
    let prog = match sys::bpf_prog_load(sys::BPF_PROG_TYPE_CGROUP_DEVICE, &insns, license, None) {
        Ok(fd) => fd,
        Err(e) => {
            // Again with the verifier's log, for the error message.
            let mut log = vec![0u8; 64 * 1024];
            let _ = sys::bpf_prog_load(
                sys::BPF_PROG_TYPE_CGROUP_DEVICE,
                &insns,
                license,
                Some(&mut log),
            );
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            return Err(Error::Cgroup(format!(
                "load the device program: {e}{}{}",
                if log.is_empty() { "" } else { ": " },
                log.trim()
            )));
        }
    };
    let cg = std::fs::File::open(dir)
        .map_err(|e| Error::Cgroup(format!("open {}: {e}", dir.display())))?;
    let err = |step: &str, e: nix::Error| Error::Cgroup(format!("{step} {}: {e}", dir.display()));
    let (old, flags) = sys::bpf_prog_query(cg.as_raw_fd(), sys::BPF_CGROUP_DEVICE)
        .map_err(|e| err("list the device programs of", e))?;
    if !old.is_empty() && flags & sys::BPF_F_ALLOW_MULTI == 0 {
        // Someone attached a single program: attaching another in the same mode replaces it.
        return sys::bpf_prog_attach(
            cg.as_raw_fd(),
            prog.as_raw_fd(),
            sys::BPF_CGROUP_DEVICE,
            flags,
        )
        .map_err(|e| err("attach the device program to", e));
    }
    sys::bpf_prog_attach(
        cg.as_raw_fd(),
        prog.as_raw_fd(),
        sys::BPF_CGROUP_DEVICE,
        sys::BPF_F_ALLOW_MULTI,
    )
    .map_err(|e| err("attach the device program to", e))?;
    // Every attached program must allow a request, so the old rules would still narrow the new
    // ones: ours is in place first, then the earlier ones go.
    for id in old {
        let old_prog = match sys::bpf_prog_get_fd_by_id(id) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => continue,
            Err(e) => return Err(err(&format!("open device program {id} of"), e)),
        };
        match sys::bpf_prog_detach(cg.as_raw_fd(), old_prog.as_raw_fd(), sys::BPF_CGROUP_DEVICE) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(err(&format!("detach device program {id} from"), e)),
        }
    }
    Ok(())
}

/// The devices hierarchy of a v1 host (its mount may be shared with other controllers).
fn v1_hierarchy() -> Result<PathBuf> {
    super::hierarchies()
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == "devices"))
        })
        .ok_or_else(|| Error::Cgroup("no cgroup v1 devices hierarchy is mounted".into()))
}

fn write_v1(dir: &Path, rules: &[Rule]) -> Result<()> {
    for (file, line) in v1_writes(rules) {
        let path = dir.join(file);
        std::fs::write(&path, &line)
            .map_err(|e| Error::Cgroup(format!("write {line:?} to {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Puts `rules` in force for the container's cgroup (`cgroup_path` as berth resolves it), in
/// place of whatever device rules it had.
pub fn apply(cgroup_path: &Path, rules: &[Rule]) -> Result<()> {
    let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    if super::is_unified() {
        attach_v2(&Path::new(super::CGROUP_ROOT).join(rel), rules)
    } else {
        write_v1(&v1_hierarchy()?.join(rel), rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceCgroupBuilder};

    fn resources(rules: serde_json::Value) -> LinuxResources {
        serde_json::from_value(serde_json::json!({ "devices": rules })).expect("resources")
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Config { field, .. } => field,
            e => panic!("not a config error: {e}"),
        }
    }

    #[test]
    fn access_other_than_rwm_is_refused_naming_the_index() {
        let res = resources(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwa"},
        ]));
        let e = effective_rules(Some(&res), &[]).expect_err("rwa");
        assert_eq!(field_of(e), "linux.resources.devices[1].access");
    }

    #[test]
    fn empty_or_missing_access_is_refused() {
        for rule in [
            serde_json::json!({"allow": true, "access": ""}),
            serde_json::json!({"allow": true}),
        ] {
            let res = resources(serde_json::json!([rule]));
            let e = effective_rules(Some(&res), &[]).expect_err("no access");
            assert_eq!(field_of(e), "linux.resources.devices[0].access");
        }
    }

    #[test]
    fn bad_type_and_numbers_are_refused() {
        let res = resources(serde_json::json!([{"allow": true, "type": "p", "access": "r"}]));
        assert_eq!(
            field_of(effective_rules(Some(&res), &[]).expect_err("p")),
            "linux.resources.devices[0].type"
        );
        let res = resources(serde_json::json!([{"allow": true, "major": -5, "access": "r"}]));
        assert_eq!(
            field_of(effective_rules(Some(&res), &[]).expect_err("-5")),
            "linux.resources.devices[0].major"
        );
    }

    #[test]
    fn valid_forms_and_order() {
        let res = resources(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": -1, "access": "mwr"},
            {"allow": true, "type": "b", "major": 8, "access": "r"},
            {"allow": false, "type": "c", "minor": 3, "access": "w"},
        ]));
        let devs = [
            LinuxDeviceBuilder::default()
                .path("/dev/fuse")
                .typ(LinuxDeviceType::U)
                .major(10)
                .minor(229)
                .build()
                .expect("device"),
            LinuxDeviceBuilder::default()
                .path("/dev/fifo")
                .typ(LinuxDeviceType::P)
                .major(0)
                .minor(0)
                .build()
                .expect("device"),
        ];
        let rules = effective_rules(Some(&res), &devs).expect("valid");
        let lines: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            lines[..5],
            [
                "a *:* rwm",
                "c 1:* rwm",
                "b 8:* r",
                "c *:3 w",
                "c 10:229 rwm"
            ]
        );
        assert!(!rules[0].allow && !rules[3].allow && rules[4].allow);
        assert_eq!(rules[5..], *DEFAULT_ALLOWED);
        // No resources at all: just the defaults.
        assert_eq!(effective_rules(None, &[]).expect("none"), DEFAULT_ALLOWED);
        // oci-spec's own builder type round-trips through the same path.
        let mut r = LinuxResources::default();
        r.set_devices(Some(vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(11)
            .access("w")
            .build()
            .expect("rule")]));
        assert_eq!(
            effective_rules(Some(&r), &[]).expect("rule")[0].to_string(),
            "c 1:11 w"
        );
    }

    #[test]
    fn v1_lines_start_from_deny_all_and_split_partial_a_rules() {
        let deny_all = Rule {
            allow: false,
            typ: DevType::All,
            major: None,
            minor: None,
            access: ALL_ACCESS,
        };
        let a_read = Rule {
            allow: false,
            typ: DevType::All,
            major: Some(1),
            minor: Some(11),
            access: READ,
        };
        let null = DEFAULT_ALLOWED[2];
        assert_eq!(
            v1_writes(&[deny_all, null]),
            [
                ("devices.deny", "a *:* rwm".to_string()),
                ("devices.allow", "c 1:3 rwm".to_string())
            ]
        );
        assert_eq!(
            v1_writes(&[null, a_read]),
            [
                ("devices.deny", "a *:* rwm".to_string()),
                ("devices.allow", "c 1:3 rwm".to_string()),
                ("devices.deny", "c 1:11 r".to_string()),
                ("devices.deny", "b 1:11 r".to_string()),
            ]
        );
    }

    /// Runs `prog` as the kernel would for one request, over just the instructions berth
    /// emits; anything else fails the test.
    fn run(prog: &[Insn], typ: DevType, major: u32, minor: u32, access: u8) -> u64 {
        let ctx = [(u32::from(access) << 16) | typ.bpf() as u32, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = prog[pc];
            pc += 1;
            let (dst, src) = (usize::from(i.dst), usize::from(i.src));
            let imm64 = i64::from(i.imm) as u64;
            match i.code {
                0x61 => {
                    assert_eq!(src, 1, "loads only from ctx");
                    reg[dst] = u64::from(ctx[usize::try_from(i.off).expect("off") / 4]);
                }
                0xbc => reg[dst] = reg[src] & 0xffff_ffff,
                0xb4 => reg[dst] = u64::from(i.imm as u32),
                0x54 => reg[dst] = (reg[dst] as u32 & i.imm as u32) as u64,
                0x74 => reg[dst] = ((reg[dst] as u32) >> i.imm) as u64,
                0x55 | 0x15 => {
                    let equal = reg[dst] == imm64;
                    if equal == (i.code == 0x15) {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                0x95 => return reg[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("no exit");
    }

    fn rule(allow: bool, typ: DevType, major: Option<u32>, minor: Option<u32>, a: u8) -> Rule {
        Rule {
            allow,
            typ,
            major,
            minor,
            access: a,
        }
    }

    #[test]
    fn program_decisions() {
        use DevType::{All, Block, Char};
        let deny_all = rule(false, All, None, None, ALL_ACCESS);
        let kmsg_rw = rule(true, Char, Some(1), Some(11), READ | WRITE);
        let kmsg_deny_w = rule(false, Char, Some(1), Some(11), WRITE);
        let char1 = rule(true, Char, Some(1), None, ALL_ACCESS);
        let mut defaults = vec![deny_all];
        defaults.extend_from_slice(DEFAULT_ALLOWED);
        // (rules, request type, major, minor, access, allowed?)
        let table: Vec<(Vec<Rule>, DevType, u32, u32, u8, bool)> = vec![
            (vec![], Char, 1, 3, READ, false),
            (defaults.clone(), Char, 1, 3, READ | WRITE, true),
            (defaults.clone(), Char, 1, 5, READ, true),
            (defaults.clone(), Char, 1, 11, WRITE, false),
            (defaults.clone(), Char, 1, 11, MKNOD, true),
            (defaults.clone(), Block, 8, 0, MKNOD, true),
            (defaults.clone(), Block, 8, 0, READ, false),
            (defaults.clone(), Char, 136, 4, READ | WRITE, true),
            (defaults.clone(), Block, 1, 3, READ, false),
            (defaults.clone(), Char, 10, 200, READ, true),
            (defaults.clone(), Char, 10, 201, READ, false),
            // Allow: the request must be within the rule's access.
            (vec![kmsg_rw], Char, 1, 11, READ, true),
            (vec![kmsg_rw], Char, 1, 11, READ | WRITE, true),
            (vec![kmsg_rw], Char, 1, 11, READ | MKNOD, false),
            // Deny after allow: the deny wins where it intersects.
            (vec![kmsg_rw, kmsg_deny_w], Char, 1, 11, WRITE, false),
            (vec![kmsg_rw, kmsg_deny_w], Char, 1, 11, READ | WRITE, false),
            (vec![kmsg_rw, kmsg_deny_w], Char, 1, 11, READ, true),
            (vec![char1, kmsg_deny_w], Char, 1, 3, WRITE, true),
            (vec![char1, kmsg_deny_w], Char, 1, 11, WRITE, false),
            // Allow after deny: the later allow wins.
            (vec![kmsg_deny_w, kmsg_rw], Char, 1, 11, WRITE, true),
            (vec![deny_all, char1], Char, 1, 11, WRITE, true),
            (vec![char1, deny_all], Char, 1, 11, READ, false),
            // Type `a` matches both kinds; wildcards match any number.
            (
                vec![rule(true, All, None, Some(7), READ)],
                Block,
                99,
                7,
                READ,
                true,
            ),
            (
                vec![rule(true, All, None, Some(7), READ)],
                Char,
                99,
                8,
                READ,
                false,
            ),
            // Large numbers stay exact (no sign-extension surprises).
            (
                vec![rule(true, Char, Some(4095), Some(1 << 20), READ)],
                Char,
                4095,
                1 << 20,
                READ,
                true,
            ),
        ];
        for (i, (rules, typ, major, minor, access, want)) in table.into_iter().enumerate() {
            let got = run(&program(&rules), typ, major, minor, access);
            assert_eq!(
                got,
                u64::from(want),
                "case {i}: {typ:?} {major}:{minor} {access}"
            );
        }
    }

    /// Every instruction is on some path from the first: the kernel's verifier refuses a
    /// program with unreachable code ("unreachable insn N"), as it did a privileged
    /// container's under containerd's CRI (allow-all, then the host's devices and defaults).
    #[test]
    fn program_has_no_unreachable_instructions() {
        use DevType::{All, Char};
        let deny_all = rule(false, All, None, None, ALL_ACCESS);
        let allow_all = rule(true, All, None, None, ALL_ACCESS);
        let kmsg = rule(true, Char, Some(1), Some(11), ALL_ACCESS);
        let mut privileged = vec![deny_all, allow_all, kmsg];
        privileged.extend_from_slice(DEFAULT_ALLOWED);
        let mut plain = vec![deny_all];
        plain.extend_from_slice(DEFAULT_ALLOWED);
        let sets = [
            privileged.clone(),
            plain,
            vec![],
            vec![allow_all],
            vec![kmsg, allow_all],
            vec![allow_all, deny_all],
        ];
        for (n, rules) in sets.iter().enumerate() {
            let prog = program(rules);
            let mut seen = vec![false; prog.len()];
            let mut todo = vec![0usize];
            while let Some(pc) = todo.pop() {
                if pc >= prog.len() || seen[pc] {
                    continue;
                }
                seen[pc] = true;
                let i = prog[pc];
                match i.code {
                    0x95 => {}
                    0x55 | 0x15 => {
                        todo.extend([pc + 1, (pc as i64 + 1 + i64::from(i.off)) as usize])
                    }
                    _ => todo.push(pc + 1),
                }
            }
            let dead: Vec<usize> = (0..prog.len()).filter(|&i| !seen[i]).collect();
            assert!(
                dead.is_empty(),
                "set {n}: unreachable instructions {dead:?}"
            );
        }
        // And it still decides as before: allow-all wins over what came before it.
        assert_eq!(run(&program(&privileged), Char, 4, 64, READ | WRITE), 1);
        assert_eq!(run(&program(&[allow_all, deny_all]), Char, 1, 3, READ), 0);
    }

    #[test]
    fn insn_encoding() {
        // mov32 r0, 1 = b4 00 00 00 01 00 00 00; ldxw r2, [r1+4] = 61 12 04 00 00 00 00 00
        let enc = |i: Insn| i.encode().to_ne_bytes();
        assert_eq!(
            enc(bpf::alu32_imm(bpf::MOV, R0, 1)),
            [0xb4, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(enc(bpf::load32(R2, R1, 4)), [0x61, 0x12, 4, 0, 0, 0, 0, 0]);
        assert_eq!(enc(bpf::exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            enc(bpf::jmp_imm(bpf::JNE, R4, 136, 3)),
            [0x55, 4, 3, 0, 136, 0, 0, 0]
        );
    }
}
