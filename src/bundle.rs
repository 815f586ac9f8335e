//! Loading a bundle: parse config.json, check the spec's MUST rules that can be checked before
//! anything exists, and resolve paths. Everything here fails before a process or file is made.

use std::collections::HashSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};
use crate::{lsm, namespaces, seccomp};

pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// Absolute rootfs directory.
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// `linux.seccomp`, compiled: a bad profile fails here, before anything exists.
    pub seccomp: Option<seccomp::Filter>,
    /// The LSM labels this host applies.
    pub labels: lsm::Labels,
}

pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = fs::canonicalize(dir).map_err(|e| Error::io("bundle", dir, e))?;
    // The state and the hooks' state JSON carry the path as a string; refused here, before
    // anything exists, rather than when the state is written.
    if dir.to_str().is_none() {
        return Err(Error::config(
            "bundle",
            format!(
                "{} is not valid UTF-8, and the state records the path as a JSON string",
                dir.display()
            ),
        ));
    }
    let config_path = dir.join("config.json");
    let data =
        fs::read(&config_path).map_err(|e| Error::io("read bundle config", &config_path, e))?;
    let spec = parse_spec(&data)
        .map_err(|e| Error::config(config_path.display().to_string(), e.to_string()))?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::config("root", "missing"))?;
    let given = lexical(&dir.join(root.path()));
    let rootfs = fs::canonicalize(&given)
        .map_err(|e| Error::config("root.path", format!("{}: {e}", given.display())))?;
    // As runc: a link in the path could be re-pointed between this check and the mount, so a
    // rootfs is named by its real path or refused. (`dir` is already resolved.)
    if rootfs != given {
        return Err(Error::config(
            "root.path",
            format!(
                "{} goes through a symlink (to {}): give the real path",
                given.display(),
                rootfs.display()
            ),
        ));
    }
    if !rootfs.is_dir() {
        return Err(Error::config(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    validate(&spec)?;
    let started = std::time::Instant::now();
    let seccomp = compile_seccomp(&spec)?;
    if let Some(f) = &seccomp {
        crate::logging::debug(&format!(
            "linux.seccomp: compiled to {} BPF instructions: done in {}µs",
            f.program.len(),
            started.elapsed().as_micros()
        ));
    }
    let process = spec.process().as_ref();
    let labels = lsm::plan(
        process.and_then(|p| p.apparmor_profile().as_deref()),
        process.and_then(|p| p.selinux_label().as_deref()),
        spec.linux()
            .as_ref()
            .and_then(|l| l.mount_label().as_deref()),
    );
    Ok(Bundle {
        dir,
        rootfs,
        spec,
        seccomp,
        labels,
    })
}

/// `p` with `.` and `..` resolved as text, not through the filesystem (as runc's Clean): only
/// a symlink makes the real path differ from it.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// config.json's bytes as a spec: JSON syntax and types only (the error is serde's, with line
/// and column; `load` prefixes the file's path).
pub fn parse_spec(data: &[u8]) -> std::result::Result<Spec, serde_json::Error> {
    serde_json::from_slice(data)
}

/// What `load` checks of config.json apart from the bundle directory: parse, the MUST rules
/// (`validate`, which still looks at namespace files and bind sources on the host) and the
/// seccomp profile (`compile_seccomp`). The fuzz target runs this.
pub fn parse_config(data: &[u8]) -> Result<(Spec, Option<seccomp::Filter>)> {
    let spec = parse_spec(data).map_err(|e| Error::config("config.json", e.to_string()))?;
    validate(&spec)?;
    let filter = compile_seccomp(&spec)?;
    Ok((spec, filter))
}

/// `linux.seccomp` compiled, if the spec has one.
pub fn compile_seccomp(spec: &Spec) -> Result<Option<seccomp::Filter>> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(seccomp::compile)
        .transpose()
}

/// The MUST rules of config.md / config-linux.md that berth can check up front.
pub fn validate(spec: &Spec) -> Result<()> {
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(Error::config(
            "ociVersion",
            format!("{version:?} is not a supported version (1.x)"),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::config("process", "missing: there is nothing to run"))?;
    // Settings berth cannot apply are refused, never dropped (`features` says the same).
    if let Some(linux) = spec.linux() {
        if linux.intel_rdt().is_some() {
            return Err(Error::config(
                "linux.intelRdt",
                "not supported by berth (no resctrl support)",
            ));
        }
    }
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::config("process.args", "must name a program"));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::config(
            "process.cwd",
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    if let Some(rlimits) = process.rlimits() {
        let mut seen = HashSet::new();
        for r in rlimits {
            if !seen.insert(format!("{:?}", r.typ())) {
                return Err(Error::config(
                    "process.rlimits",
                    format!("duplicate type {:?}", r.typ()),
                ));
            }
            if r.soft() > r.hard() {
                return Err(Error::config(
                    "process.rlimits",
                    format!("{:?}: soft limit is above the hard limit", r.typ()),
                ));
            }
        }
    }
    if let Some(env) = process.env() {
        if let Some(bad) = env.iter().find(|e| !e.contains('=')) {
            return Err(Error::config(
                "process.env",
                format!("{bad:?} is not of the form KEY=VALUE"),
            ));
        }
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::config("linux", "missing"))?;
    let nss = linux.namespaces().as_deref().unwrap_or_default();
    let mut seen = HashSet::new();
    for ns in nss {
        if !seen.insert(ns.typ()) {
            return Err(Error::config(
                "linux.namespaces",
                format!("duplicate namespace type {}", namespaces::name(ns.typ())),
            ));
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(Error::config(
                    "linux.namespaces",
                    format!(
                        "{} path {} is not absolute",
                        namespaces::name(ns.typ()),
                        path.display()
                    ),
                ));
            }
            check_ns_path(ns.typ(), path)?;
        }
    }
    let has = |t| nss.iter().any(|n| n.typ() == t);
    let new_userns = nss
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_userns && !has_maps {
        return Err(Error::config(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if has_maps && !has(LinuxNamespaceType::User) {
        return Err(Error::config(
            "linux.uidMappings",
            "id mappings need a user namespace",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::config(
            "hostname",
            "setting the hostname needs a private uts namespace",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::config(
            "domainname",
            "setting the domainname needs a private uts namespace",
        ));
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            check_sysctl(key, &has)?;
        }
    }
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        crate::rootfs::mount_options(m.options().as_deref().unwrap_or_default())
            .map_err(|reason| Error::config(format!("mounts[{i}].options"), reason))?;
        if m.typ().as_deref() == Some("bind")
            || m.options()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| o == "bind" || o == "rbind")
        {
            let src = m.source().as_ref().ok_or_else(|| {
                Error::config(format!("mounts[{i}].source"), "a bind mount needs a source")
            })?;
            if fs::symlink_metadata(src).is_err() {
                return Err(Error::config(
                    format!("mounts[{i}].source"),
                    format!("{} does not exist", src.display()),
                ));
            }
        }
    }
    Ok(())
}

/// A namespace file must be a namespace of the type it is listed as.
fn check_ns_path(typ: LinuxNamespaceType, path: &Path) -> Result<()> {
    let not_ns = |why: String| {
        Error::config(
            "linux.namespaces",
            format!("{} is not a namespace file: {why}", path.display()),
        )
    };
    // Namespace files (nsfs) are regular files. Opening anything else could block (a FIFO
    // with no writer hangs `create`) or act on a device, so those are refused unopened;
    // O_NONBLOCK covers a FIFO swapped in after the check.
    let md = fs::metadata(path)
        .map_err(|e| Error::config("linux.namespaces", format!("{}: {e}", path.display())))?;
    if !md.is_file() {
        return Err(not_ns(format!("it is a {}", file_kind(&md))));
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::config("linux.namespaces", format!("{}: {e}", path.display())))?;
    let actual = namespaces::ns_type_of_fd(file.as_raw_fd()).map_err(|e| not_ns(e.to_string()))?;
    if actual != namespaces::clone_flag(typ) {
        return Err(Error::config(
            "linux.namespaces",
            format!(
                "{} is not a {} namespace",
                path.display(),
                namespaces::name(typ)
            ),
        ));
    }
    Ok(())
}

fn file_kind(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else {
        "special file"
    }
}

/// Sysctls are namespaced; setting one the container does not own would change the host.
fn check_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    let field = || format!("linux.sysctl.{key}");
    if key.contains('/') || key.split('.').any(|p| p.is_empty() || p == "..") {
        return Err(Error::config(field(), "is not a valid sysctl name"));
    }
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        if !has(LinuxNamespaceType::Ipc) {
            return Err(Error::config(field(), "needs a private ipc namespace"));
        }
        return Ok(());
    }
    if key.starts_with("net.") {
        if !has(LinuxNamespaceType::Network) {
            return Err(Error::config(field(), "needs a private network namespace"));
        }
        return Ok(());
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        if !has(LinuxNamespaceType::Uts) {
            return Err(Error::config(field(), "needs a private uts namespace"));
        }
        return Ok(());
    }
    Err(Error::config(
        field(),
        "is not namespaced: setting it would change the host",
    ))
}
