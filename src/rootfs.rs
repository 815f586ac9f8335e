//! The container's filesystem view, built inside its mount namespace: root propagation, the
//! rootfs bind, the config's mounts in order, devices, pivot_root, masked and read-only paths.
//! Destinations are resolved inside the rootfs: a symlink can never lead a mount out of it.

use std::collections::HashSet;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, SFlag};
use nix::unistd::{chdir, chroot, pivot_root, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Mount, Spec};

use crate::error::{Error, Result, SysContext};
use crate::lsm::Labels;
use crate::safepath::{fd_path, normalise, Root};
use crate::sys;

/// A mount's options split the way mount(2) and mount_setattr(2) want them.
#[derive(Debug, PartialEq)]
pub struct MountOpts {
    pub flags: MsFlags,
    /// Flags an option turned off (e.g. `rw`, `suid`), kept for bind remounts.
    pub cleared: MsFlags,
    pub propagation: MsFlags,
    pub bind: bool,
    pub recursive_set: u64,
    pub recursive_clr: u64,
    /// Options mount(2) does not know: passed to the filesystem as data.
    pub data: Vec<String>,
    /// `tmpcopyup`: the tmpfs starts with a copy of the directory it covers.
    pub copy_up: bool,
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: MsFlags::empty(),
            bind: false,
            recursive_set: 0,
            recursive_clr: 0,
            data: Vec::new(),
            copy_up: false,
        }
    }
}

/// Options that set or clear a mount(2) flag: the one table `mount_options` and `features`
/// both read.
const FLAG_OPTIONS: [(&str, MsFlags, MsFlags); 28] = {
    const NONE: MsFlags = MsFlags::empty();
    const LAZYTIME: MsFlags = MsFlags::from_bits_retain(libc::MS_LAZYTIME);
    const NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);
    [
        ("ro", MsFlags::MS_RDONLY, NONE),
        ("rw", NONE, MsFlags::MS_RDONLY),
        ("nosuid", MsFlags::MS_NOSUID, NONE),
        ("suid", NONE, MsFlags::MS_NOSUID),
        ("nodev", MsFlags::MS_NODEV, NONE),
        ("dev", NONE, MsFlags::MS_NODEV),
        ("noexec", MsFlags::MS_NOEXEC, NONE),
        ("exec", NONE, MsFlags::MS_NOEXEC),
        ("sync", MsFlags::MS_SYNCHRONOUS, NONE),
        ("async", NONE, MsFlags::MS_SYNCHRONOUS),
        ("dirsync", MsFlags::MS_DIRSYNC, NONE),
        ("remount", MsFlags::MS_REMOUNT, NONE),
        ("mand", MsFlags::MS_MANDLOCK, NONE),
        ("nomand", NONE, MsFlags::MS_MANDLOCK),
        ("atime", NONE, MsFlags::MS_NOATIME),
        ("noatime", MsFlags::MS_NOATIME, NONE),
        ("diratime", NONE, MsFlags::MS_NODIRATIME),
        ("nodiratime", MsFlags::MS_NODIRATIME, NONE),
        ("relatime", MsFlags::MS_RELATIME, NONE),
        ("norelatime", NONE, MsFlags::MS_RELATIME),
        ("strictatime", MsFlags::MS_STRICTATIME, NONE),
        ("nostrictatime", NONE, MsFlags::MS_STRICTATIME),
        ("lazytime", LAZYTIME, NONE),
        ("nolazytime", NONE, LAZYTIME),
        ("silent", MsFlags::MS_SILENT, NONE),
        ("loud", NONE, MsFlags::MS_SILENT),
        ("nosymfollow", NOSYMFOLLOW, NONE),
        ("symfollow", NONE, NOSYMFOLLOW),
    ]
};

/// `rro`, `rnosuid`, ...: the mount_setattr attribute after the `r` and whether the option sets
/// it.
const RECURSIVE_OPTIONS: [(&str, u64, bool); 17] = [
    ("ro", sys::MOUNT_ATTR_RDONLY, true),
    ("rw", sys::MOUNT_ATTR_RDONLY, false),
    ("nosuid", sys::MOUNT_ATTR_NOSUID, true),
    ("suid", sys::MOUNT_ATTR_NOSUID, false),
    ("nodev", sys::MOUNT_ATTR_NODEV, true),
    ("dev", sys::MOUNT_ATTR_NODEV, false),
    ("noexec", sys::MOUNT_ATTR_NOEXEC, true),
    ("exec", sys::MOUNT_ATTR_NOEXEC, false),
    ("nodiratime", sys::MOUNT_ATTR_NODIRATIME, true),
    ("diratime", sys::MOUNT_ATTR_NODIRATIME, false),
    ("noatime", sys::MOUNT_ATTR_NOATIME, true),
    ("strictatime", sys::MOUNT_ATTR_STRICTATIME, true),
    ("relatime", sys::MOUNT_ATTR_RELATIME, true),
    ("norelatime", sys::MOUNT_ATTR_RELATIME, true),
    ("atime", sys::MOUNT_ATTR_RELATIME, true),
    ("nosymfollow", sys::MOUNT_ATTR_NOSYMFOLLOW, true),
    ("symfollow", sys::MOUNT_ATTR_NOSYMFOLLOW, false),
];

/// Propagation modes, as mount options and as `linux.rootfsPropagation`.
const PROPAGATION_OPTIONS: [(&str, MsFlags); 8] = [
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// Podman adds `tmpcopyup` to its tmpfs mounts: the tmpfs gets a copy of what it covers.
const COPY_UP: &str = "tmpcopyup";

/// Every option `mount_options` applies itself (the others go to the filesystem as data, or
/// are refused): what `features` reports as mountOptions.
pub fn known_mount_options() -> Vec<String> {
    let mut v: Vec<String> = FLAG_OPTIONS
        .iter()
        .map(|(n, _, _)| n.to_string())
        .chain(RECURSIVE_OPTIONS.iter().map(|(n, _, _)| format!("r{n}")))
        .chain(PROPAGATION_OPTIONS.iter().map(|(n, _)| n.to_string()))
        .chain(["bind", "rbind", COPY_UP].map(String::from))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Id-mapped mounts are not implemented: these options are refused.
pub const IDMAP_OPTIONS: [&str; 2] = ["idmap", "ridmap"];

fn flag_option(name: &str) -> Option<(MsFlags, MsFlags)> {
    FLAG_OPTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, set, clr)| (set, clr))
}

fn propagation(name: &str) -> Option<MsFlags> {
    PROPAGATION_OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, f)| f)
}

/// Parses mount options; an option that is known but cannot be honoured is an error.
pub fn mount_options(opts: &[String]) -> std::result::Result<MountOpts, String> {
    let mut m = MountOpts::default();
    for o in opts {
        let o = o.as_str();
        let (set, clr) = if let Some(sc) = flag_option(o) {
            sc
        } else if o == "bind" || o == "rbind" {
            m.bind = true;
            let rec = if o == "rbind" {
                MsFlags::MS_REC
            } else {
                MsFlags::empty()
            };
            (MsFlags::MS_BIND | rec, MsFlags::empty())
        } else if let Some(p) = propagation(o) {
            m.propagation = p;
            continue;
        } else if IDMAP_OPTIONS.contains(&o) {
            return Err(format!("{o:?}: id-mapped mounts are not supported yet"));
        } else if o == COPY_UP {
            m.copy_up = true;
            continue;
        } else if let Some((attr, on)) = o.strip_prefix('r').and_then(recursive_attr) {
            if on {
                m.recursive_set |= attr;
                m.recursive_clr &= !attr;
            } else {
                m.recursive_clr |= attr;
                m.recursive_set &= !attr;
            }
            if attr & sys::MOUNT_ATTR__ATIME != 0 || o == "rrelatime" || o == "rnorelatime" {
                m.recursive_clr |= sys::MOUNT_ATTR__ATIME;
            }
            continue;
        } else {
            m.data.push(o.to_string());
            continue;
        };
        m.flags |= set;
        m.flags &= !clr;
        m.cleared |= clr;
    }
    Ok(m)
}

fn recursive_attr(name: &str) -> Option<(u64, bool)> {
    RECURSIVE_OPTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, attr, on)| (attr, on))
}

fn mnt(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(source, target, fstype, flags, data).with_step(|| {
        format!(
            "mount {} on {} (type {}, data {:?})",
            source.map(|s| s.display().to_string()).unwrap_or_default(),
            target.display(),
            fstype.unwrap_or("none"),
            data.unwrap_or("")
        )
    })
}

pub fn propagation_flags(name: &str) -> Result<MsFlags> {
    propagation(name).ok_or_else(|| {
        Error::config(
            "linux.rootfsPropagation",
            format!("{name:?} is not a propagation mode"),
        )
    })
}

/// Step 1: root propagation and the rootfs bind, so later mounts never reach the host.
///
/// "/" becomes rslave (or rshared/rprivate when asked) for the setup; the configured mode is
/// applied to the new root after pivot_root (see `apply_root_propagation`), because an
/// unbindable "/" could not be bound and pivot_root refuses a shared new root.
pub fn prepare_root(spec: &Spec, rootfs: &Path, host_mount_ns: bool) -> Result<()> {
    if host_mount_ns {
        // No mount namespace of its own: the host's "/" keeps its propagation. Everything the
        // container mounts goes on a private bind of the rootfs, which delete detaches whole.
        bind_onto_itself(rootfs)?;
        return mnt(
            None,
            rootfs,
            None,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None,
        );
    }
    let mode = root_propagation(spec)?;
    let setup = if mode.contains(MsFlags::MS_PRIVATE) {
        MsFlags::MS_PRIVATE | MsFlags::MS_REC
    } else {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    };
    mnt(None, Path::new("/"), None, setup, None)?;
    bind_onto_itself(rootfs)
}

/// The rootfs becomes a mount of its own (pivot_root needs one; a read-only root is a remount
/// of it).
fn bind_onto_itself(rootfs: &Path) -> Result<()> {
    mnt(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
}

fn root_propagation(spec: &Spec) -> Result<MsFlags> {
    let prop = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone());
    match prop.as_deref() {
        Some(p) if !p.is_empty() => Ok(propagation_flags(p)? | MsFlags::MS_REC),
        _ => Ok(MsFlags::empty()),
    }
}

/// After pivot_root: the configured rootfsPropagation for the container's "/".
pub fn apply_root_propagation(spec: &Spec) -> Result<()> {
    let mode = root_propagation(spec)?;
    if mode.is_empty() {
        return Ok(());
    }
    mnt(None, Path::new("/"), None, mode, None)
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Bind sources opened on the host, before a user namespace is entered: its root may not be
/// able to reach them by path (a 0700 parent directory), but can mount from the fd. One entry
/// per mount, `None` for the others.
pub fn open_bind_sources(spec: &Spec) -> Result<Vec<Option<OwnedFd>>> {
    let mut out = Vec::new();
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let opts = mount_options(m.options().as_deref().unwrap_or_default())
            .map_err(|r| Error::config(format!("mounts[{i}].options"), r))?;
        let bind = opts.bind || m.typ().as_deref() == Some("bind");
        // A detached copy of the source: a mount from another namespace cannot be bound, but
        // a detached one can be attached anywhere.
        let recursive = opts.flags.contains(MsFlags::MS_REC);
        let fd = match (bind, m.source()) {
            (true, Some(src)) => Some(
                sys::open_tree_clone(src, recursive)
                    .with_step(|| format!("mounts[{i}]: open bind source {}", src.display()))?,
            ),
            _ => None,
        };
        out.push(fd);
    }
    Ok(out)
}

/// Step 2: the config's mounts, in order.
///
/// `before_cgroup` runs once, before the first cgroup mount: the init only enters its cgroup
/// namespace once the parent has put it in its cgroup, and the mounts before that need neither.
pub fn mount_all(
    spec: &Spec,
    rootfs: &Path,
    in_userns: bool,
    labels: &Labels,
    bind_sources: &[Option<OwnedFd>],
    before_cgroup: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let root = Root::open(rootfs)?;
    // A cgroup mount comes after before_cgroup: the init is in the container's cgroup
    // namespace by then, if the config asks for one.
    let cgroup_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let src_fd = bind_sources.get(i).and_then(Option::as_ref);
        let field = || format!("mounts[{i}] ({})", m.destination().display());
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            before_cgroup()?;
        }
        crate::fault::point_with(field)
            .map_err(Error::from)
            .and_then(|()| mount_one(m, &root, in_userns, labels, src_fd, cgroup_ns))
            .map_err(|e| Error::InField {
                field: field(),
                source: Box::new(e),
            })?;
    }
    Ok(())
}

fn is_dev(dest: &Path) -> bool {
    normalise(dest) == Path::new("/dev")
}

/// The flags of a `/dev` mount (not a bind) the config wants read-only.
fn dev_readonly_flags(spec: &Spec) -> Option<MsFlags> {
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(|m| {
            let opts = mount_options(m.options().as_deref().unwrap_or_default()).ok()?;
            let ro = opts.flags.contains(MsFlags::MS_RDONLY);
            (is_dev(m.destination()) && m.typ().as_deref() != Some("bind") && !opts.bind && ro)
                .then_some(opts.flags)
        })
}

/// After the devices and /dev links exist: a read-only /dev becomes read-only now, as runc
/// does.
pub fn finish_dev(spec: &Spec, rootfs: &Path) -> Result<()> {
    let Some(flags) = dev_readonly_flags(spec) else {
        return Ok(());
    };
    let root = Root::open(rootfs)?;
    let dev = root
        .resolve(Path::new("/dev"))
        .map_err(|e| Error::sys("open /dev", e))?;
    let flags = (flags & !MsFlags::MS_BIND) | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mnt(None, Path::new(&fd_path(&dev)), None, flags, None)
}

/// Files under /proc a mount may cover: what LXCFS provides (runc's list). Anything else inside
/// a procfs (`/proc/1/fd`, `/proc/self/attr`, `/proc/sys/...`) would let a bundle redirect what
/// the runtime itself reads and writes there.
const PROC_MOUNT_ALLOWED: [&str; 10] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Refuses a destination that lies inside a procfs (decided on what the path resolves to,
/// not on its text), but for the allowed files and the procfs mount point itself.
fn check_not_inside_procfs(root: &Root, dest: &Path) -> Result<()> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    let Ok(fd) = root.resolve(dest) else {
        return Ok(()); // not there yet: it will be made inside the rootfs, not in a procfs
    };
    let (magic, _) =
        sys::fstatfs(fd.as_raw_fd()).with_step(|| format!("statfs {}", dest.display()))?;
    if magic != PROC_SUPER_MAGIC {
        return Ok(());
    }
    let (_, ino) =
        sys::mount_id_and_ino(fd.as_raw_fd()).with_step(|| format!("stat {}", dest.display()))?;
    let norm = normalise(dest);
    if ino == 1 || PROC_MOUNT_ALLOWED.iter().any(|a| Path::new(a) == norm) {
        return Ok(());
    }
    Err(Error::config(
        "mounts",
        format!(
            "{} lies inside procfs: only {} may be mounted over there",
            dest.display(),
            PROC_MOUNT_ALLOWED.join(", ")
        ),
    ))
}

/// The mount point for a procfs or sysfs mount: an ordinary directory reached without any
/// symlink, so the kernel's own files can never be mounted somewhere the bundle chose.
fn kernel_fs_mount_point(root: &Root, dest: &Path) -> Result<OwnedFd> {
    let refuse = || {
        Error::config(
            "mounts",
            format!(
                "{} must be mounted on an ordinary directory, not through a symlink",
                dest.display()
            ),
        )
    };
    match root.resolve_no_symlinks(dest) {
        Ok(fd) => Ok(fd),
        Err(nix::Error::ENOENT) => {
            root.mkdir_all(dest)?;
            root.resolve_no_symlinks(dest).map_err(|_| refuse())
        }
        Err(nix::Error::ELOOP) | Err(nix::Error::EXDEV) => Err(refuse()),
        Err(e) => Err(Error::sys(format!("open {}", root.display(dest)), e)),
    }
}

fn mount_one(
    m: &Mount,
    root: &Root,
    in_userns: bool,
    labels: &Labels,
    src_fd: Option<&OwnedFd>,
    cgroup_ns: bool,
) -> Result<()> {
    let opts = mount_options(m.options().as_deref().unwrap_or_default())
        .map_err(|r| Error::config("options", r))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = opts.bind || typ == "bind";
    let dest_rel = m.destination();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(root, dest_rel, typ, &opts, cgroup_ns);
    }
    let source = m.source().as_deref();
    check_not_inside_procfs(root, dest_rel)?;
    // Every mount below goes onto a resolved fd, never onto a path resolved again.
    let on = |fd: &OwnedFd| PathBuf::from(fd_path(fd));
    let reopen = || {
        root.resolve(dest_rel)
            .map_err(|e| Error::sys(format!("open {}", root.display(dest_rel)), e))
    };
    if is_bind {
        let src = source.ok_or_else(|| Error::config("source", "a bind mount needs a source"))?;
        let src_is_dir = match src_fd {
            Some(fd) => nix::sys::stat::fstat(fd.as_raw_fd())
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .with_step(|| format!("stat bind source {}", src.display()))?,
            None => fs::metadata(src)
                .map_err(|e| Error::io("bind mount source", src, e))?
                .is_dir(),
        };
        let point = if src_is_dir {
            root.mkdir_all(dest_rel)?
        } else {
            root.create_file(dest_rel)?
        };
        let mut flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        let src_id = match src_fd {
            Some(fd) => nix::sys::stat::fstat(fd.as_raw_fd()),
            None => nix::sys::stat::stat(src),
        }
        .map(|st| (st.st_dev, st.st_ino))
        .with_step(|| format!("stat bind source {}", src.display()))?;
        match src_fd {
            // Opened on the host before the user namespace (see `open_bind_sources`).
            Some(fd) => sys::move_mount_fds(fd.as_raw_fd(), point.as_raw_fd())
                .with_step(|| format!("attach bind source {}", src.display()))?,
            None => mnt(Some(src), &on(&point), None, flags, None)?,
        }
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() || !opts.cleared.is_empty() {
            // The remount acts on the new mount, reached through a fresh handle that must be
            // the bind's own root: if the path was swapped meanwhile, stop rather than
            // remount whatever it now names.
            let new_mount = reopen()?;
            let got = nix::sys::stat::fstat(new_mount.as_raw_fd())
                .map(|st| (st.st_dev, st.st_ino))
                .with_step(|| format!("stat {}", root.display(dest_rel)))?;
            if got != src_id {
                return Err(Error::Other(format!(
                    "{} changed while it was being mounted; refusing to remount what it now names",
                    root.display(dest_rel)
                )));
            }
            let target = on(&new_mount);
            flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra;
            if let Err(e) = mount(None::<&str>, &target, None::<&str>, flags, None::<&str>) {
                // Flags locked by a less privileged mount namespace must be kept.
                if !(in_userns || e == nix::Error::EPERM) {
                    return Err(Error::sys(format!("remount {}", root.display(dest_rel)), e));
                }
                let locked = locked_flags(&target);
                mnt(None, &target, None, flags | locked, None)?;
            }
        }
    } else {
        let point = if matches!(typ, "proc" | "sysfs") {
            kernel_fs_mount_point(root, dest_rel)?
        } else {
            root.mkdir_all(dest_rel)?
        };
        let mut data = opts.data.join(",");
        // linux.mountLabel: the filesystems that take an SELinux context option.
        if matches!(typ, "tmpfs" | "devpts" | "mqueue") {
            data = labels.mount_data(&data);
        }
        let fstype = if typ.is_empty() { None } else { Some(typ) };
        let mut flags = opts.flags & !MsFlags::MS_REMOUNT;
        let copy_up = opts.copy_up;
        if copy_up && typ != "tmpfs" {
            return Err(Error::config(
                "options",
                "tmpcopyup only applies to a tmpfs",
            ));
        }
        if is_dev(dest_rel) || copy_up {
            // Filled in first (devices later, in `finish_dev`; the copy just below): read-only
            // comes after.
            flags &= !MsFlags::MS_RDONLY;
        }
        mnt(
            source.or(Some(Path::new(typ))),
            &on(&point),
            fstype,
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )?;
        if copy_up {
            // `point` still names the directory under the new tmpfs.
            let tmpfs = reopen()?;
            crate::copyup::copy_tree(point.as_raw_fd(), tmpfs.as_raw_fd())?;
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                mnt(
                    None,
                    &on(&tmpfs),
                    None,
                    flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None,
                )?;
            }
        }
    }
    if !opts.propagation.is_empty() || opts.recursive_set != 0 || opts.recursive_clr != 0 {
        let new_mount = reopen()?;
        let target = on(&new_mount);
        if !opts.propagation.is_empty() {
            mnt(None, &target, None, opts.propagation, None)?;
        }
        if opts.recursive_set != 0 || opts.recursive_clr != 0 {
            sys::mount_setattr_recursive(
                &target.to_string_lossy(),
                opts.recursive_set,
                opts.recursive_clr,
            )
            .with_step(|| {
                format!(
                    "set recursive mount attributes on {}",
                    root.display(dest_rel)
                )
            })?;
        }
    }
    Ok(())
}

/// The flags of the mount at `path` that an unprivileged remount must keep.
fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs_flag, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs_flag) {
            out |= ms;
        }
    }
    out
}

/// cgroup mounts: on a unified host a cgroup2 mount; on v1 and hybrid hosts a tmpfs holding, for
/// every hierarchy the host mounts under /sys/fs/cgroup (the cgroup2 `unified` one included),
/// only the container's own cgroup — never the host's whole tree (escape class 6). With a cgroup
/// namespace each hierarchy is mounted afresh, which the kernel roots at the namespace's root
/// (the container's cgroup: the init was placed there before it unshared). Without one, the
/// container's cgroup directory is bound from the host's mount.
fn mount_cgroup(
    root: &Root,
    dest_rel: &Path,
    typ: &str,
    opts: &MountOpts,
    cgroup_ns: bool,
) -> Result<()> {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let point = root.mkdir_all(dest_rel)?;
    let dest = PathBuf::from(fd_path(&point));
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let base_flags = opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let unified = crate::cgroups::is_unified();
    if unified && !cgroup_ns {
        // As on v1: without a cgroup namespace a fresh cgroup2 mount would show the host's
        // whole tree, so the container's own cgroup directory is bound instead.
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| Error::io("read own cgroups", "/proc/self/cgroup", e))?;
        let own_path = own_cgroup(&own, "cgroup2", "")
            .ok_or_else(|| Error::Other("no cgroup2 line in /proc/self/cgroup".to_string()))?;
        let src = Path::new("/sys/fs/cgroup").join(own_path.trim_start_matches('/'));
        mnt(Some(&src), &dest, None, MsFlags::MS_BIND, None)?;
        let bound = root
            .resolve(dest_rel)
            .map_err(|e| Error::sys(format!("open {}", root.display(dest_rel)), e))?;
        let mut flags = base_flags;
        if ro {
            flags |= MsFlags::MS_RDONLY;
        }
        return mnt(
            None,
            Path::new(&fd_path(&bound)),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None,
        );
    }
    if typ == "cgroup2" || unified {
        return mnt(
            Some(Path::new("cgroup2")),
            &dest,
            Some("cgroup2"),
            opts.flags & !MsFlags::MS_REMOUNT,
            None,
        );
    }
    mnt(
        Some(Path::new("tmpfs")),
        &dest,
        Some("tmpfs"),
        base_flags,
        Some("mode=755"),
    )?;
    // The tmpfs just mounted, reached again and checked: everything below is made through it.
    let tmpfs = root
        .resolve(dest_rel)
        .map_err(|e| Error::sys(format!("open {}", root.display(dest_rel)), e))?;
    let (magic, _) = sys::fstatfs(tmpfs.as_raw_fd()).step("statfs the cgroup tmpfs")?;
    if magic != TMPFS_MAGIC {
        return Err(Error::Other(format!(
            "{} changed while it was being mounted",
            root.display(dest_rel)
        )));
    }
    let sub = |name: &std::ffi::OsStr| -> Result<OwnedFd> {
        match nix::sys::stat::mkdirat(
            Some(tmpfs.as_raw_fd()),
            name,
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("create cgroup mount point {name:?}"), e)),
        }
        sys::openat_owned(
            Some(tmpfs.as_raw_fd()),
            &name.to_string_lossy(),
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW,
        )
        .with_step(|| format!("open cgroup mount point {name:?}"))
    };
    let own = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::io("read own cgroups", "/proc/self/cgroup", e))?;
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read mountinfo", "/proc/self/mountinfo", e))?;
    let subsystems = fs::read_to_string("/proc/cgroups")
        .map_err(|e| Error::io("read cgroup controllers", "/proc/cgroups", e))?;
    let mut done = HashSet::new();
    for h in host_cgroup_mounts(&info) {
        let Some(name) = h.mount_point.file_name().map(|n| n.to_owned()) else {
            continue;
        };
        // A hierarchy mounted twice is shown once.
        if !done.insert(name.clone()) {
            continue;
        }
        let mut flags = base_flags;
        if ro {
            flags |= MsFlags::MS_RDONLY;
        }
        if cgroup_ns {
            let at = sub(&name)?;
            let target = PathBuf::from(fd_path(&at));
            if h.fstype == "cgroup2" {
                mnt(
                    Some(Path::new("cgroup2")),
                    &target,
                    Some("cgroup2"),
                    flags,
                    None,
                )?;
            } else {
                let data = v1_mount_data(&h.super_opts, &subsystems);
                mnt(
                    Some(Path::new("cgroup")),
                    &target,
                    Some("cgroup"),
                    flags,
                    Some(data.as_str()),
                )?;
            }
            continue;
        }
        let Some(own_path) = own_cgroup(&own, h.fstype, &h.super_opts) else {
            continue;
        };
        // Our cgroup relative to what this mount shows (its root is usually the hierarchy's).
        let Ok(rel) = Path::new(&own_path).strip_prefix(&h.root) else {
            continue;
        };
        let src = h.mount_point.join(rel);
        let at = sub(&name)?;
        mnt(
            Some(&src),
            Path::new(&fd_path(&at)),
            None,
            MsFlags::MS_BIND,
            None,
        )?;
        // Opened again from the tmpfs: now the bind's root, which the remount must reach.
        let bound = sub(&name)?;
        mnt(
            None,
            Path::new(&fd_path(&bound)),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None,
        )?;
    }
    if ro {
        mnt(
            None,
            Path::new(&fd_path(&tmpfs)),
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base_flags,
            Some("mode=755"),
        )?;
    }
    Ok(())
}

/// One cgroup or cgroup2 mount of the host's under /sys/fs/cgroup, from mountinfo.
struct HostCgroupMount {
    fstype: &'static str,
    root: PathBuf,
    mount_point: PathBuf,
    super_opts: String,
}

fn host_cgroup_mounts(info: &str) -> Vec<HostCgroupMount> {
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let post: Vec<&str> = post.split(' ').collect();
        let fstype = match post.first().copied() {
            Some("cgroup") => "cgroup",
            Some("cgroup2") => "cgroup2",
            _ => continue,
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let (Some(root), Some(mp)) = (pre.get(3), pre.get(4)) else {
            continue;
        };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        if !mp.starts_with("/sys/fs/cgroup") || mp == Path::new("/sys/fs/cgroup") {
            continue;
        }
        out.push(HostCgroupMount {
            fstype,
            root: PathBuf::from(unescape_mountinfo(root)),
            mount_point: mp,
            super_opts: post.get(2).copied().unwrap_or("").to_string(),
        });
    }
    out
}

/// Our cgroup path in the hierarchy with these super options, from /proc/self/cgroup.
fn own_cgroup(own: &str, fstype: &str, super_opts: &str) -> Option<String> {
    own.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let matches = if fstype == "cgroup2" {
            ctrls.is_empty()
        } else {
            !ctrls.is_empty()
                && ctrls
                    .split(',')
                    .all(|c| super_opts.split(',').any(|o| o == c))
        };
        matches.then(|| path.to_string())
    })
}

/// The options that name a v1 hierarchy (its controllers and `name=`), from a mount's super
/// options: mounting with exactly these attaches to the existing hierarchy.
pub fn v1_mount_data(super_opts: &str, proc_cgroups: &str) -> String {
    let known: HashSet<&str> = proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let picked: Vec<&str> = super_opts
        .split(',')
        .filter(|o| o.starts_with("name=") || known.contains(o))
        .collect();
    if picked.is_empty() {
        "none".to_string()
    } else {
        picked.join(",")
    }
}

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Step 3: default devices, the config's devices, and the /dev symlinks.
pub fn setup_devices(spec: &Spec, rootfs: &Path, in_userns: bool) -> Result<()> {
    let root = Root::open(rootfs)?;
    let dev_is_bind = spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| {
            m.destination() == Path::new("/dev")
                && (m.typ().as_deref() == Some("bind")
                    || m.options()
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|o| o == "bind" || o == "rbind"))
        });
    let configured = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    if !dev_is_bind {
        for (path, major, minor) in DEFAULT_DEVICES {
            if configured.iter().any(|d| d.path() == Path::new(path)) {
                continue;
            }
            create_device(
                &root,
                Path::new(path),
                SFlag::S_IFCHR,
                major,
                minor,
                0o666,
                None,
                None,
                in_userns,
            )?;
        }
    }
    for d in &configured {
        create_config_device(&root, d, in_userns)?;
    }
    if !dev_is_bind {
        let dev = root.mkdir_all(Path::new("/dev"))?;
        let dev_fd = Some(dev.as_raw_fd());
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            match nix::unistd::symlinkat(target, dev_fd, link) {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(e) => return Err(Error::sys(format!("create /dev/{link}"), e)),
            }
        }
        // /dev/ptmx points at the container's own devpts instance when it has one.
        if root.resolve(Path::new("/dev/pts/ptmx")).is_ok() {
            let _ = nix::unistd::unlinkat(dev_fd, "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
            nix::unistd::symlinkat("pts/ptmx", dev_fd, "ptmx").step("create /dev/ptmx")?;
        }
    }
    Ok(())
}

fn create_config_device(root: &Root, d: &LinuxDevice, in_userns: bool) -> Result<()> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::config(
                "linux.devices",
                format!(
                    "{}: type \"a\" is only valid in cgroup rules",
                    d.path().display()
                ),
            ))
        }
    };
    // Normalised first: "/dev/../etc/passwd" is not under /dev.
    let path = normalise(d.path());
    if !path.starts_with("/dev") || path == Path::new("/dev") {
        return Err(Error::config(
            "linux.devices",
            format!("{} is not under /dev", d.path().display()),
        ));
    }
    create_device(
        root,
        &path,
        kind,
        d.major() as u64,
        d.minor() as u64,
        d.file_mode().unwrap_or(0o666),
        d.uid(),
        d.gid(),
        in_userns,
    )
}

#[allow(clippy::too_many_arguments)]
fn create_device(
    root: &Root,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    in_userns: bool,
) -> Result<()> {
    if in_userns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        let point = root.create_file(path)?;
        return mnt(
            Some(path),
            Path::new(&fd_path(&point)),
            None,
            MsFlags::MS_BIND,
            None,
        );
    }
    let dev = makedev(major, minor);
    // Made without following the last component; from here on only the fd is used.
    let node = root.mknod(path, kind, mode, dev)?;
    let st =
        nix::sys::stat::fstat(node.as_raw_fd()).with_step(|| format!("stat {}", path.display()))?;
    let same_kind = st.st_mode & libc::S_IFMT == kind.bits();
    if !same_kind || (kind != SFlag::S_IFIFO && st.st_rdev != dev) {
        return Err(Error::config(
            "linux.devices",
            format!(
                "{} exists in the rootfs and is not device {major}:{minor}",
                path.display()
            ),
        ));
    }
    // chmod through the fd's /proc link reaches this very node; fchmod refuses O_PATH fds.
    let link = fd_path(&node);
    fs::set_permissions(&link, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| Error::io("chmod device", path, e))?;
    if uid.is_some() || gid.is_some() {
        nix::unistd::fchownat(
            Some(node.as_raw_fd()),
            "",
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        )
        .with_step(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// Step 4: make the rootfs `/`. The old root is detached after making it a slave, so the
/// unmount never propagates to the host.
pub fn pivot(rootfs: &Path, no_pivot: bool, host_mount_ns: bool) -> Result<()> {
    chdir(rootfs).with_step(|| format!("chdir {}", rootfs.display()))?;
    if host_mount_ns {
        // The host's mount table is shared: pivot_root or a move would change the host's.
        chroot(".").step("chroot into rootfs")?;
        return chdir("/").step("chdir /");
    }
    if no_pivot {
        hide_host_kernel_fs(rootfs)?;
        mnt(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)?;
        chroot(".").step("chroot into rootfs")?;
        return chdir("/").step("chdir /");
    }
    pivot_root(".", ".").step("pivot_root")?;
    mnt(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    umount2(".", MntFlags::MNT_DETACH).step("detach old root")?;
    chdir("/").step("chdir /")
}

/// Without pivot_root the host's mounts stay in the container's mount namespace under the
/// moved rootfs. A whole, unmasked procfs or sysfs among them is what lets the kernel allow a
/// fresh proc or sysfs mount in a user namespace (and would be reachable by a chroot escape):
/// detach each one outside the rootfs, or cover it with a tmpfs where detaching is refused.
fn hide_host_kernel_fs(rootfs: &Path) -> Result<()> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read mountinfo", "/proc/self/mountinfo", e))?;
    let mut targets = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = post.split(' ').next().unwrap_or("");
        let pre: Vec<&str> = pre.split(' ').collect();
        let (Some(root), Some(mp)) = (pre.get(3), pre.get(4)) else {
            continue;
        };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        if matches!(fstype, "proc" | "sysfs") && *root == "/" && !mp.starts_with(rootfs) {
            targets.push(mp);
        }
    }
    // Deepest first: /proc/sys/fs/binfmt_misc before /proc.
    for mp in targets.iter().rev() {
        match umount2(mp, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::EPERM) => mnt(
                Some(Path::new("tmpfs")),
                mp,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )?,
            Err(e) => {
                return Err(Error::sys(
                    format!("--no-pivot: detach {}", mp.display()),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// Step 5 (after pivot): masked paths get /dev/null or an empty read-only tmpfs.
///
/// /dev/null is taken from a handle checked to be the null device (a bundle may have replaced
/// it with a link to a file worth exposing), and each path is opened once, inside the root,
/// and masked through that handle.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let root = Root::open(Path::new("/"))?;
    let null = root
        .resolve_no_symlinks(Path::new("/dev/null"))
        .map_err(|e| Error::sys("open /dev/null", e))?;
    let st = nix::sys::stat::fstat(null.as_raw_fd()).step("stat /dev/null")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != makedev(1, 3) {
        return Err(Error::Other(
            "/dev/null in the container is not the null device: refusing to mask with it".into(),
        ));
    }
    // One read-only tmpfs for every masked directory: the first is a new mount, the others
    // clones of it (a tmpfs per directory cost a superblock each; clones keep it read-only).
    let mut dir_cover: Option<std::os::fd::OwnedFd> = None;
    for p in paths {
        let path = Path::new(p);
        let target = match root.resolve(path) {
            Err(nix::Error::ENOENT) => continue,
            Err(e) => return Err(Error::sys(format!("linux.maskedPaths: open {p}"), e)),
            Ok(fd) => fd,
        };
        let is_dir = nix::sys::stat::fstat(target.as_raw_fd())
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        // Made detached and attached onto the fd: no path (and no /proc the bundle may have
        // mounted things into) is looked up after the target was opened.
        let cover = match (is_dir, &dir_cover) {
            (true, Some(first)) => sys::open_tree_clone_fd(first.as_raw_fd()),
            (true, None) => sys::fsmount_new(
                c"tmpfs",
                &[],
                sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
            ),
            (false, _) => sys::open_tree_clone_fd(null.as_raw_fd()),
        }
        .with_step(|| format!("linux.maskedPaths: make the cover for {p}"))?;
        sys::move_mount_fds(cover.as_raw_fd(), target.as_raw_fd())
            .with_step(|| format!("linux.maskedPaths: mask {p}"))?;
        if is_dir && dir_cover.is_none() {
            // Attached now: a clone of it is allowed on every kernel with the mount API.
            dir_cover = Some(cover);
        }
    }
    Ok(())
}

/// Step 6: read-only paths are bound onto themselves and remounted read-only.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        if let Err(e) = fs::symlink_metadata(path) {
            if e.kind() == std::io::ErrorKind::NotFound {
                continue;
            }
            return Err(Error::io("read-only path", path, e));
        }
        mnt(
            Some(path),
            path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        remount_readonly(path)?;
    }
    Ok(())
}

pub fn remount_readonly(path: &Path) -> Result<()> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if mount(None::<&str>, path, None::<&str>, flags, None::<&str>).is_err() {
        mnt(None, path, None, flags | locked_flags(path), None)?;
    }
    Ok(())
}

/// The id of the mount `path` is on (its top mount when it is a mount point).
pub fn mount_id_of(path: &Path) -> Result<u64> {
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_step(|| format!("open {}", path.display()))?;
    let r = crate::sys::mount_id_and_ino(fd).map(|(id, _)| id);
    let _ = nix::unistd::close(fd);
    r.with_step(|| format!("mount id of {}", path.display()))
}

/// Undoes what a container without its own mount namespace mounted on the host: detaches the
/// mounts stacked on `rootfs` until the one that was there before create (`before`) is on top.
pub fn detach_host_mounts(rootfs: &Path, before: u64) -> Result<()> {
    for _ in 0..16 {
        if mount_id_of(rootfs)? == before {
            return Ok(());
        }
        umount2(rootfs, MntFlags::MNT_DETACH)
            .with_step(|| format!("detach the container's mounts on {}", rootfs.display()))?;
    }
    Err(Error::Other(format!(
        "{}: mounts still stacked after 16 detaches",
        rootfs.display()
    )))
}
