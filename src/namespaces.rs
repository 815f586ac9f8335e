//! OCI namespace types to clone flags, and the plan of which namespaces to join by path and
//! which to create.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{Error, Result, SysContext};

/// Every namespace type berth creates or joins (each has its clone flag below).
pub const ALL: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Time,
];

pub fn name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME shares its value with CSIGNAL's bit 7.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The namespace type of an nsfs file, by the NS_GET_NSTYPE ioctl.
pub fn ns_type_of_fd(fd: RawFd) -> nix::Result<CloneFlags> {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns an int; fd is a valid open fd.
    let r = unsafe { libc::ioctl(fd, NS_GET_NSTYPE as _) };
    if r < 0 {
        return Err(nix::Error::last());
    }
    Ok(CloneFlags::from_bits_retain(r))
}

/// What the stage process does with namespaces: join these files, then create those flags.
pub struct NsPlan {
    /// Namespaces to join, opened in the parent (so paths resolve in the host's mount namespace),
    /// in the order they must be joined.
    pub join: Vec<(LinuxNamespaceType, File)>,
    /// Namespaces to create, except cgroup (unshared by the init once it sits in its cgroup).
    pub create: CloneFlags,
    pub new_user: bool,
    pub new_cgroup: bool,
    pub new_pid: bool,
    pub join_user: bool,
    pub join_pid_or_time: bool,
}

/// The join order: user first (it decides the privileges for the rest), mount last (after it
/// paths no longer resolve on the host; all files are opened up front anyway).
const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

impl NsPlan {
    pub fn new(nss: &[LinuxNamespace]) -> Result<NsPlan> {
        let mut join = Vec::new();
        let mut create = CloneFlags::empty();
        for t in JOIN_ORDER {
            let Some(ns) = nss.iter().find(|n| n.typ() == t) else {
                continue;
            };
            match ns.path() {
                Some(path) => {
                    let f = File::open(path)
                        .map_err(|e| Error::io("open namespace", PathBuf::from(path), e))?;
                    join.push((t, f));
                }
                None if t == LinuxNamespaceType::Cgroup => {}
                None => create |= clone_flag(t),
            }
        }
        let has_new = |t| nss.iter().any(|n| n.typ() == t && n.path().is_none());
        let has_join = |t| nss.iter().any(|n| n.typ() == t && n.path().is_some());
        Ok(NsPlan {
            new_user: has_new(LinuxNamespaceType::User),
            new_cgroup: has_new(LinuxNamespaceType::Cgroup),
            new_pid: has_new(LinuxNamespaceType::Pid),
            join_user: has_join(LinuxNamespaceType::User),
            join_pid_or_time: has_join(LinuxNamespaceType::Pid)
                || has_join(LinuxNamespaceType::Time)
                || has_new(LinuxNamespaceType::Time),
            join,
            create,
        })
    }

    /// True when the init can be cloned straight from the parent with every flag at once.
    pub fn single_clone(&self) -> bool {
        self.join.is_empty() && !self.new_user && !self.join_pid_or_time
    }

    /// One line for the debug log: what is joined, what is created, and how.
    pub fn describe(&self) -> String {
        let joined: Vec<&str> = self.join.iter().map(|(t, _)| name(*t)).collect();
        let created: Vec<&str> = ALL
            .iter()
            .filter(|t| {
                self.create.contains(clone_flag(**t))
                    || (**t == LinuxNamespaceType::Cgroup && self.new_cgroup)
            })
            .map(|t| name(*t))
            .collect();
        let how = if self.single_clone() {
            "one clone"
        } else {
            "a stage process"
        };
        format!("join {joined:?}, create {created:?}, through {how}")
    }

    pub fn join_all(&self, which: impl Fn(LinuxNamespaceType) -> bool) -> Result<()> {
        for (t, f) in &self.join {
            if which(*t) {
                setns(f.as_fd(), clone_flag(*t))
                    .with_step(|| format!("join {} namespace (fd {})", name(*t), f.as_raw_fd()))?;
            }
        }
        Ok(())
    }
}
