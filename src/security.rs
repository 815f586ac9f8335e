//! Process attributes applied by the init before execve: rlimits, oom_score_adj, user and groups,
//! capabilities, no_new_privs and umask.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability as Cap, CapsHashSet};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{Capabilities, PosixRlimit, PosixRlimitType, Process};

use crate::error::{Error, Result, SysContext};
use crate::{logging, sys};

pub fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads a valid, initialised rlimit struct.
        let rc = unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) };
        if rc != 0 {
            return Err(Error::sys(
                format!(
                    "process.rlimits: set {:?} to {}/{}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
                nix::Error::last(),
            ));
        }
    }
    Ok(())
}

pub fn set_oom_score_adj(value: i32) -> Result<()> {
    crate::procfs::write("self/oom_score_adj", value.to_string().as_bytes())
        .map_err(|e| Error::config("process.oomScoreAdj", e.to_string()))
}

/// Parses the config's capability names into the caps crate's type; names the kernel does not
/// know are dropped with a warning, as the spec asks.
fn cap_set(names: &Option<Capabilities>, available: &CapsHashSet) -> CapsHashSet {
    let mut out = HashSet::new();
    for c in names.iter().flatten() {
        let name = format!("CAP_{c}");
        match Cap::from_str(&name) {
            Ok(cap) if available.contains(&cap) => {
                out.insert(cap);
            }
            _ => logging::warn(&format!(
                "process.capabilities: {name} cannot be granted here (unknown to the kernel or \
                 outside berth's own permitted set); ignored"
            )),
        }
    }
    out
}

/// Switches to the process's user and leaves exactly the configured capabilities. Without a
/// `process.capabilities` object every set is empty, as in runc.
pub fn finalize_identity(process: &Process) -> Result<()> {
    let user = process.user();
    // What berth itself holds is all it can hand on (e.g. a VM without CAP_SYS_RESOURCE).
    let available = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let none = Capabilities::default();
    let wanted = process.capabilities().as_ref();
    let bounding = match wanted {
        Some(c) => cap_set(c.bounding(), &available),
        None => cap_set(&Some(none.clone()), &available),
    };
    drop_bounding_except(&bounding)?;
    nix::sys::prctl::set_keepcaps(true).step("keep capabilities across setuid")?;
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // Always asked of the kernel: a forged /proc/self/setgroups must not let berth's own
    // groups through. EPERM is what a user namespace with setgroups "deny" answers.
    match setgroups(&gids) {
        Ok(()) => {}
        Err(nix::Error::EPERM) if gids.is_empty() && setgroups_denied() => {}
        Err(nix::Error::EPERM) if setgroups_denied() => {
            return Err(Error::config(
                "process.user.additionalGids",
                "cannot set supplementary groups: setgroups is denied in this user namespace",
            ))
        }
        Err(e) => return Err(Error::sys("process.user.additionalGids: setgroups", e)),
    }
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    setresgid(gid, gid, gid).with_step(|| format!("process.user.gid: setresgid {gid}"))?;
    setresuid(uid, uid, uid).with_step(|| format!("process.user.uid: setresuid {uid}"))?;
    nix::sys::prctl::set_keepcaps(false).step("clear keep-capabilities")?;
    {
        let empty = Some(none);
        let pick = |f: fn(&oci_spec::runtime::LinuxCapabilities) -> &Option<Capabilities>| {
            wanted.map_or(&empty, f)
        };
        let set = |which: CapSet, names: &Option<Capabilities>| -> Result<()> {
            caps::set(None, which, &cap_set(names, &available))
                .map_err(|e| Error::Other(format!("process.capabilities: set {which:?}: {e}")))
        };
        // Shrink in an order the kernel accepts at each step: effective must stay within
        // permitted, and inheritable can only grow while the caps are still permitted.
        set(CapSet::Effective, pick(|c| c.effective()))?;
        set(CapSet::Inheritable, pick(|c| c.inheritable()))?;
        set(CapSet::Permitted, pick(|c| c.permitted()))?;
        // Ambient capabilities must also be permitted and inheritable; the kernel refuses others.
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| Error::Other(format!("clear ambient capabilities: {e}")))?;
        for cap in cap_set(pick(|c| c.ambient()), &available) {
            if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
                // The kernel only allows ambient caps that are permitted and inheritable.
                logging::debug(&format!("process.capabilities.ambient: {cap}: {e}"));
            }
        }
    }
    Ok(())
}

/// The user namespace says "deny" for setgroups (read through a verified procfs).
fn setgroups_denied() -> bool {
    crate::procfs::ProcRoot::open()
        .and_then(|p| p.read("thread-self/setgroups"))
        .is_ok_and(|s| s.trim() == "deny")
}

/// Drops from the bounding set every capability the kernel knows (0 to cap_last_cap) that is not
/// in `keep`, including ones berth itself may not hold (a cap in the bounding set but not
/// permitted would otherwise survive for a setuid or file-capability binary to pick up).
fn drop_bounding_except(keep: &CapsHashSet) -> Result<()> {
    let last = sys::cap_last_cap().step("find the kernel's last capability")?;
    let kept: HashSet<u32> = keep.iter().map(|c| c.index() as u32).collect();
    for n in 0..=last {
        if kept.contains(&n) {
            continue;
        }
        sys::capbset_drop(n).map_err(|e| {
            Error::sys(
                format!("process.capabilities.bounding: drop capability {n} from the bounding set"),
                e,
            )
        })?;
    }
    Ok(())
}

/// Gives stdio (a pty slave, the caller's pipes) to the process's user before it switches to
/// it, so a non-root process can reopen its terminal and write to /dev/stdout, as under runc.
/// /dev/null stays root's; a descriptor the kernel won't chown (e.g. a socket from another
/// user namespace) is left as it is.
pub fn own_stdio(user: &oci_spec::runtime::User) {
    let (uid, gid) = (user.uid(), user.gid());
    for fd in 0..3 {
        let Ok(st) = nix::sys::stat::fstat(fd) else {
            continue;
        };
        let is_null =
            st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
        if is_null || st.st_uid == uid {
            continue;
        }
        let _ = nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    }
}

pub fn set_umask(process: &Process) {
    if let Some(mask) = process.user().umask() {
        umask(Mode::from_bits_truncate(mask));
    }
}

pub fn set_no_new_privileges(process: &Process) -> Result<()> {
    if process.no_new_privileges().unwrap_or(false) {
        nix::sys::prctl::set_no_new_privs().step("process.noNewPrivileges")?;
    }
    Ok(())
}
