//! Pure parsers for kernel-provided text (/proc files) and for names used in
//! the OCI config. Nothing here touches the system, so all of it is unit
//! tested.

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u64,
    pub parent_id: u64,
    pub major: u32,
    pub minor: u32,
    pub root: String,
    pub mount_point: String,
    pub options: Vec<String>,
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// Whether the per-mount options (not the superblock options) contain `opt`.
    pub fn has_option(&self, opt: &str) -> bool {
        self.options.iter().any(|o| o == opt)
    }

    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("shared:"))
    }

    pub fn is_slave(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("master:"))
    }

    pub fn is_unbindable(&self) -> bool {
        self.optional.iter().any(|f| f == "unbindable")
    }

    /// Short description of the propagation state, for messages.
    pub fn propagation(&self) -> String {
        if self.optional.is_empty() {
            "private".to_string()
        } else {
            self.optional.join(",")
        }
    }
}

/// Undo the kernel's octal escaping (`\040` for space, `\011`, `\012`, `\134`).
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = (u32::from(digits[0] - b'0') << 6)
                    | (u32::from(digits[1] - b'0') << 3)
                    | u32::from(digits[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse one mountinfo line; `None` if it is malformed.
pub fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let mut fields = line.split_whitespace();
    let mount_id = fields.next()?.parse().ok()?;
    let parent_id = fields.next()?.parse().ok()?;
    let (maj, min) = fields.next()?.split_once(':')?;
    let major = maj.parse().ok()?;
    let minor = min.parse().ok()?;
    let root = unescape_octal(fields.next()?);
    let mount_point = unescape_octal(fields.next()?);
    let options = split_opts(fields.next()?);
    let mut optional = Vec::new();
    loop {
        let f = fields.next()?;
        if f == "-" {
            break;
        }
        optional.push(f.to_string());
    }
    let fstype = unescape_octal(fields.next()?);
    let source = unescape_octal(fields.next().unwrap_or(""));
    let super_options = fields.next().map(split_opts).unwrap_or_default();
    Some(MountInfo {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        options,
        optional,
        fstype,
        source,
        super_options,
    })
}

fn split_opts(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parse a whole mountinfo file, skipping malformed lines.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// The topmost mount whose mount point is exactly `path`.
pub fn mount_at<'a>(mounts: &'a [MountInfo], path: &str) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// The topmost mount that contains `path` (longest mount point prefix).
pub fn mount_containing<'a>(mounts: &'a [MountInfo], path: &str) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        if path_has_prefix(path, &m.mount_point)
            && best.is_none_or(|b| m.mount_point.len() >= b.mount_point.len())
        {
            best = Some(m);
        }
    }
    best
}

/// Component-wise prefix test on normalised absolute paths.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Lexically normalise a path, resolving it against "/" when relative.
pub fn normalize_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut out = String::from("/");
    out.push_str(&parts.join("/"));
    out
}

/// Capability sets as read from /proc/<pid>/status. A field is `None` when
/// the kernel did not print it (CapAmb is missing before Linux 4.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub inheritable: Option<u64>,
    pub permitted: Option<u64>,
    pub effective: Option<u64>,
    pub bounding: Option<u64>,
    pub ambient: Option<u64>,
}

/// Value of a `Key:\tvalue` line in a /proc status file, trimmed.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

pub fn parse_status_caps(status: &str) -> CapSets {
    let hex = |k: &str| status_field(status, k).and_then(|v| u64::from_str_radix(v, 16).ok());
    CapSets {
        inheritable: hex("CapInh"),
        permitted: hex("CapPrm"),
        effective: hex("CapEff"),
        bounding: hex("CapBnd"),
        ambient: hex("CapAmb"),
    }
}

/// Capability names indexed by bit number.
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Bit number of a capability name (`CAP_` prefix optional, any case).
pub fn cap_bit(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAP_NAMES
        .iter()
        .position(|n| *n == full)
        .and_then(|i| u32::try_from(i).ok())
}

/// Mask with bits 0..=last_cap set.
/// A capability mask written in hex, with or without a 0x prefix.
pub fn parse_hex_mask(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    u64::from_str_radix(t, 16).ok()
}

pub fn cap_all(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// Bitmask for a list of names, limited to caps the host knows. Unknown
/// names are returned separately.
pub fn cap_mask<S: AsRef<str>>(names: &[S], last_cap: u32) -> (u64, Vec<String>) {
    let mut mask = 0u64;
    let mut unknown = Vec::new();
    for n in names {
        match cap_bit(n.as_ref()) {
            Some(b) if b <= last_cap && b < 64 => mask |= 1u64 << b,
            Some(_) => {}
            None => unknown.push(n.as_ref().to_string()),
        }
    }
    (mask, unknown)
}

/// Names of the bits set in `mask`, for readable messages.
pub fn cap_names_of(mask: u64) -> String {
    let mut v = Vec::new();
    for bit in 0..64u32 {
        if mask & (1u64 << bit) != 0 {
            match CAP_NAMES.get(bit as usize) {
                Some(n) => v.push((*n).to_string()),
                None => v.push(format!("cap{bit}")),
            }
        }
    }
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(",")
    }
}

/// Predict the capability sets seen after execve(2) of a plain binary (no
/// file capabilities, not setuid) from the sets a runtime was asked to
/// install. `want` holds the config's sets (None = not given), `root` is
/// whether the process runs as uid 0, `actual_bounding` the bounding set
/// the kernel reports (used when the config gives none) and `all` the mask
/// of caps the kernel knows. Only sets the config gives are predicted;
/// bounding and inheritable pass through execve unchanged.
///
/// The kernel rules: ambient caps survive only while also permitted and
/// inheritable; a uid 0 process gains inheritable|bounding (plus ambient)
/// as permitted and effective; anyone else keeps just the ambient set.
pub fn caps_after_exec(
    want: &CapSets,
    root: bool,
    actual_bounding: Option<u64>,
    all: u64,
) -> CapSets {
    let ambient = want
        .ambient
        .map(|a| a & want.permitted.unwrap_or(all) & want.inheritable.unwrap_or(0));
    let gained = if root {
        want.bounding
            .or(actual_bounding)
            .map(|b| b | want.inheritable.unwrap_or(0) | ambient.unwrap_or(0))
    } else {
        Some(ambient.unwrap_or(0))
    };
    CapSets {
        inheritable: want.inheritable,
        bounding: want.bounding,
        ambient,
        permitted: want.permitted.and(gained),
        effective: want.effective.and(gained),
    }
}

/// One uid_map/gid_map entry: (id inside, id outside, count).
pub type IdMap = (u64, u64, u64);

pub fn parse_id_map(text: &str) -> Vec<IdMap> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let a = it.next()?.parse().ok()?;
            let b = it.next()?.parse().ok()?;
            let c = it.next()?.parse().ok()?;
            Some((a, b, c))
        })
        .collect()
}

/// One line of /proc/self/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub hierarchy: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_cgroup_line(line: &str) -> Option<CgroupLine> {
    let mut it = line.splitn(3, ':');
    let hierarchy = it.next()?.parse().ok()?;
    let ctrl = it.next()?;
    let path = it.next()?.to_string();
    Some(CgroupLine {
        hierarchy,
        controllers: ctrl
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        path,
    })
}

pub fn parse_cgroup(text: &str) -> Vec<CgroupLine> {
    text.lines().filter_map(parse_cgroup_line).collect()
}

/// Linux resource number for an OCI rlimit type name such as "RLIMIT_NOFILE".
pub fn rlimit_resource(name: &str) -> Option<u32> {
    let n = match name.trim().to_ascii_uppercase().as_str() {
        "RLIMIT_CPU" => 0,
        "RLIMIT_FSIZE" => 1,
        "RLIMIT_DATA" => 2,
        "RLIMIT_STACK" => 3,
        "RLIMIT_CORE" => 4,
        "RLIMIT_RSS" => 5,
        "RLIMIT_NPROC" => 6,
        "RLIMIT_NOFILE" => 7,
        "RLIMIT_MEMLOCK" => 8,
        "RLIMIT_AS" => 9,
        "RLIMIT_LOCKS" => 10,
        "RLIMIT_SIGPENDING" => 11,
        "RLIMIT_MSGQUEUE" => 12,
        "RLIMIT_NICE" => 13,
        "RLIMIT_RTPRIO" => 14,
        "RLIMIT_RTTIME" => 15,
        _ => return None,
    };
    Some(n)
}

/// Collapse runs of whitespace and trim, for comparing sysctl values.
pub fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// cgroup v1 cpu.shares to cgroup v2 cpu.weight, the conversion used by
/// OCI runtimes: shares 2..=262144 map linearly onto weight 1..=10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
25 1 8:1 / / ro,relatime master:1 shared:2 - ext4 /dev/sda1 rw,errors=remount-ro
30 25 0:26 /some\\040dir /mnt/with\\040space rw - tmpfs tmpfs rw,size=64k
31 25 0:27 / /sys ro,nosuid,nodev,noexec - sysfs sysfs ro
bogus line
";

    #[test]
    fn mountinfo_basic() {
        let m = parse_mountinfo(MI);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].mount_id, 22);
        assert_eq!(m[0].parent_id, 1);
        assert_eq!((m[0].major, m[0].minor), (0, 21));
        assert_eq!(m[0].mount_point, "/proc");
        assert_eq!(m[0].fstype, "proc");
        assert!(m[0].has_option("nosuid"));
        assert!(m[0].has_option("noexec"));
        assert!(!m[0].has_option("ro"));
        assert!(m[0].is_shared());
        assert!(!m[0].is_slave());
    }

    #[test]
    fn mountinfo_optional_and_escape() {
        let m = parse_mountinfo(MI);
        assert_eq!(m[1].optional, vec!["master:1", "shared:2"]);
        assert!(m[1].is_slave() && m[1].is_shared());
        assert_eq!(m[1].source, "/dev/sda1");
        assert_eq!(m[1].super_options, vec!["rw", "errors=remount-ro"]);
        assert_eq!(m[2].mount_point, "/mnt/with space");
        assert_eq!(m[2].root, "/some dir");
        assert_eq!(m[2].propagation(), "private");
        assert!(m[3].has_option("ro"));
    }

    #[test]
    fn mountinfo_lookup() {
        let m = parse_mountinfo(MI);
        assert_eq!(mount_at(&m, "/sys").map(|x| x.mount_id), Some(31));
        assert!(mount_at(&m, "/nope").is_none());
        assert_eq!(
            mount_containing(&m, "/sys/kernel").map(|x| x.mount_id),
            Some(31)
        );
        assert_eq!(
            mount_containing(&m, "/system").map(|x| x.mount_id),
            Some(25)
        );
        assert_eq!(mount_containing(&m, "/").map(|x| x.mount_id), Some(25));
    }

    #[test]
    fn mountinfo_truncated_lines() {
        assert!(parse_mountinfo_line("").is_none());
        assert!(parse_mountinfo_line("1 2 0:3 / /x rw shared:1").is_none());
        assert!(parse_mountinfo_line("1 2 03 / /x rw - tmpfs t rw").is_none());
        let m = parse_mountinfo_line("1 2 0:3 / /x rw - tmpfs").map(|m| m.source);
        assert_eq!(m.as_deref(), Some(""));
    }

    #[test]
    fn unescape() {
        assert_eq!(unescape_octal("a\\040b"), "a b");
        assert_eq!(unescape_octal("a\\134b"), "a\\b");
        assert_eq!(unescape_octal("trail\\04"), "trail\\04");
        assert_eq!(unescape_octal("x\\999"), "x\\999");
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path("dev/shm/"), "/dev/shm");
        assert_eq!(normalize_path("/a/./b/../c"), "/a/c");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path(""), "/");
        assert!(path_has_prefix("/a/b", "/a"));
        assert!(!path_has_prefix("/ab", "/a"));
        assert!(path_has_prefix("/a", "/"));
    }

    const STATUS: &str = "Name:\tcat\nNoNewPrivs:\t1\nCapInh:\t0000000000000000\n\
CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t000001ffffffffff\n\
CapAmb:\t0000000000000000\n";

    #[test]
    fn status_caps() {
        let c = parse_status_caps(STATUS);
        assert_eq!(c.inheritable, Some(0));
        assert_eq!(c.permitted, Some(0xa80425fb));
        assert_eq!(c.effective, Some(0xa80425fb));
        assert_eq!(c.bounding, Some(0x1ff_ffff_ffff));
        assert_eq!(c.ambient, Some(0));
        assert_eq!(status_field(STATUS, "NoNewPrivs"), Some("1"));
        let old = parse_status_caps("CapEff:\tzz\n");
        assert_eq!(old.effective, None);
        assert_eq!(old.ambient, None);
    }

    #[test]
    fn cap_names() {
        assert_eq!(cap_bit("CAP_CHOWN"), Some(0));
        assert_eq!(cap_bit("CAP_KILL"), Some(5));
        assert_eq!(cap_bit("cap_sys_admin"), Some(21));
        assert_eq!(cap_bit("NET_RAW"), Some(13));
        assert_eq!(cap_bit("CAP_AUDIT_READ"), Some(37));
        assert_eq!(cap_bit("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(cap_bit("CAP_BOGUS"), None);
        // Docker's default set.
        let docker = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ];
        assert_eq!(cap_mask(&docker, 40), (0xa80425fb, vec![]));
        let (m, unk) = cap_mask(&["CAP_BPF", "CAP_X"], 38);
        assert_eq!(m, 0);
        assert_eq!(unk, vec!["CAP_X"]);
        assert_eq!(cap_all(40), 0x1ff_ffff_ffff);
        assert_eq!(cap_all(63), u64::MAX);
        assert_eq!(cap_names_of(0b11), "CAP_CHOWN,CAP_DAC_OVERRIDE");
        assert_eq!(cap_names_of(0), "(none)");
    }

    #[test]
    fn caps_exec_model() {
        let all = cap_all(40);
        let set = |b, i, p, e, a| CapSets {
            bounding: b,
            inheritable: i,
            permitted: p,
            effective: e,
            ambient: a,
        };
        // Root with identical sets keeps them.
        let w = set(Some(0b111), None, Some(0b111), Some(0b111), None);
        let got = caps_after_exec(&w, true, Some(all), all);
        assert_eq!(got, w);
        // Root gains bounding|inheritable even with a smaller permitted set.
        let w = set(Some(0b011), Some(0b100), Some(0b001), Some(0b001), None);
        let got = caps_after_exec(&w, true, Some(all), all);
        assert_eq!(got.permitted, Some(0b111));
        assert_eq!(got.effective, Some(0b111));
        // No bounding in the config: use what the kernel reports.
        let w = set(None, None, Some(1), Some(1), None);
        assert_eq!(
            caps_after_exec(&w, true, Some(0b11), all).permitted,
            Some(0b11)
        );
        assert_eq!(caps_after_exec(&w, true, None, all).permitted, None);
        // Non-root keeps only ambient caps that are permitted and inheritable.
        let w = set(
            Some(0b111),
            Some(0b010),
            Some(0b011),
            Some(0b011),
            Some(0b110),
        );
        let got = caps_after_exec(&w, false, Some(all), all);
        assert_eq!(got.ambient, Some(0b010));
        assert_eq!(got.permitted, Some(0b010));
        assert_eq!(got.effective, Some(0b010));
        // Non-root without ambient ends with nothing.
        let w = set(Some(0b111), None, Some(0b111), Some(0b111), None);
        let got = caps_after_exec(&w, false, Some(all), all);
        assert_eq!((got.permitted, got.effective), (Some(0), Some(0)));
        assert_eq!(got.ambient, None);
    }

    #[test]
    fn id_map() {
        let t = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(parse_id_map(t), vec![(0, 1000, 1), (1, 100000, 65536)]);
        assert_eq!(parse_id_map("garbage\n0 4294967295"), vec![]);
    }

    #[test]
    fn cgroup_lines() {
        let c = parse_cgroup("12:memory:/berth/a\n0::/x:y\n3:cpu,cpuacct:/\n");
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].controllers, vec!["memory"]);
        assert_eq!(c[1].hierarchy, 0);
        assert!(c[1].controllers.is_empty());
        assert_eq!(c[1].path, "/x:y");
        assert_eq!(c[2].controllers, vec!["cpu", "cpuacct"]);
    }

    #[test]
    fn misc() {
        assert_eq!(rlimit_resource("RLIMIT_NOFILE"), Some(7));
        assert_eq!(rlimit_resource("RLIMIT_BOGUS"), None);
        assert_eq!(
            normalize_ws(" 4096\t87380  6291456\n"),
            "4096 87380 6291456"
        );
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn hex_mask() {
        assert_eq!(parse_hex_mask("000001fffeffffff"), Some(0x1fffeffffff));
        assert_eq!(parse_hex_mask("0x10\n"), Some(16));
        assert_eq!(parse_hex_mask("zz"), None);
    }
}
