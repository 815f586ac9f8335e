//! Container state under `--root/<id>/`: id validation, the per-container lock, atomic saves,
//! and the status, which is derived from the live system rather than trusted from disk.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
pub const OCI_VERSION: &str = "1.3.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What `state` prints, per the OCI runtime spec plus runc's extra fields.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// The whole record berth keeps per container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerState {
    #[serde(flatten)]
    pub oci: OciState,
    /// Start time of the init in clock ticks since boot, so a recycled pid never looks alive.
    pub init_start_time: u64,
    /// Cgroup path as given to the cgroup manager.
    pub cgroup_path: PathBuf,
    /// Depth of the first cgroup directory create made; delete removes up to there.
    #[serde(default)]
    pub cgroup_created_depth: usize,
    pub systemd_cgroup: bool,
    /// True when the container has its own pid namespace (kill then needs only the init).
    pub own_pid_ns: bool,
    /// Without a mount namespace: the mount that was on top of the rootfs before create; delete
    /// detaches what the container stacked on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_mount_before: Option<u64>,
    /// The config as it was at create time: later edits of config.json change nothing.
    pub config: Spec,
}

impl ContainerState {
    pub fn status(&self, dir: &Path) -> Status {
        derive_status(
            self.oci.pid,
            self.init_start_time,
            &dir.join(EXEC_FIFO),
            &self.cgroup_path,
        )
    }

    /// The OCI state with the status computed now.
    pub fn current(&self, dir: &Path) -> OciState {
        let mut oci = self.oci.clone();
        oci.status = self.status(dir);
        if oci.status == Status::Stopped {
            oci.pid = 0;
        }
        oci
    }
}

/// Checks a container id: non-empty, at most 1024 bytes, and only characters that are safe as a
/// single path component.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidId(id.into(), "it is empty"));
    }
    if id.len() > 1024 {
        return Err(Error::InvalidId(id.into(), "it is longer than 1024 bytes"));
    }
    if id == "." || id == ".." {
        return Err(Error::InvalidId(id.into(), "it is a relative path"));
    }
    let ok = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if !ok {
        return Err(Error::InvalidId(
            id.into(),
            "only letters, digits, '_', '+', '-' and '.' are allowed",
        ));
    }
    Ok(())
}

/// The state directory of one container, locked for as long as this value lives.
pub struct StateDir {
    pub dir: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Claims a new id: the mkdir is what makes ids unique.
    pub fn claim(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(|e| Error::io("create state root", root, e))?;
        let dir = root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.into()))
            }
            Err(e) => return Err(Error::io("create state dir", &dir, e)),
        }
        let lock = lock_dir(&dir)?;
        Ok(StateDir { dir, _lock: lock })
    }

    /// Opens and locks an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        let dir = root.join(id);
        let lock = match lock_dir(&dir) {
            Ok(l) => l,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(e),
        };
        // A concurrent delete may have removed it while we waited for the lock.
        if !dir.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.into()));
        }
        Ok(StateDir { dir, _lock: lock })
    }

    pub fn load(&self) -> Result<ContainerState> {
        load_state(&self.dir)
    }

    /// Writes state.json atomically: temp file, fsync, rename.
    pub fn save(&self, state: &ContainerState) -> Result<()> {
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec(state).map_err(|e| Error::Other(e.to_string()))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("write state", &tmp, e))?;
        f.write_all(&data)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io("write state", &tmp, e))?;
        fs::rename(&tmp, self.dir.join(STATE_FILE))
            .map_err(|e| Error::io("write state", &self.dir, e))
    }

    /// The lock's fd: children must close it, or the lock would live as long as they do.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io("remove state dir", &self.dir, e))
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| Error::io("open state dir", dir, e))?;
    // SAFETY: flock on an fd we own; blocking until the lock is free is the intent.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::io(
            "lock state dir",
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(f)
}

pub fn load_state(dir: &Path) -> Result<ContainerState> {
    let path = dir.join(STATE_FILE);
    let data = fs::read(&path).map_err(|e| Error::io("read state", &path, e))?;
    serde_json::from_slice(&data)
        .map_err(|e| Error::Other(format!("{}: corrupt state: {e}", path.display())))
}

/// Reads a state without taking the lock (for `state` and `list`, which change nothing; the
/// file is replaced by rename, so a reader never sees a half-written one).
pub fn read_unlocked(root: &Path, id: &str) -> Result<ContainerState> {
    validate_id(id)?;
    let dir = root.join(id);
    if !dir.is_dir() {
        return Err(Error::NotFound(id.into()));
    }
    if !dir.join(STATE_FILE).exists() {
        return Err(Error::NotFound(id.into()));
    }
    load_state(&dir)
}

/// The process start time (field 22 of /proc/<pid>/stat) and whether it is a zombie.
pub fn proc_start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_start_time(&stat)
}

/// Parses /proc/<pid>/stat: the command may contain spaces and parentheses, so fields are
/// counted from the last ')'.
pub fn parse_stat_start_time(stat: &str) -> Option<(u64, bool)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3), so field 22 is fields[19].
    let state = *fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// Whether the recorded init still exists (same pid and start time, not a zombie).
pub fn init_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    matches!(proc_start_time(pid), Some((t, false)) if t == start_time)
}

pub fn derive_status(pid: i32, start_time: u64, fifo: &Path, cgroup_path: &Path) -> Status {
    if !init_alive(pid, start_time) {
        return Status::Stopped;
    }
    if fifo.exists() {
        return Status::Created;
    }
    if crate::cgroups::is_frozen(cgroup_path) {
        return Status::Paused;
    }
    Status::Running
}

/// Ids of every container under root, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list containers", root, e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}
