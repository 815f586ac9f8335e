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
/// The container's compiled seccomp program, kept by create for exec.
pub const SECCOMP_PROGRAM: &str = "seccomp.bpf";
pub const EXEC_FIFO: &str = "exec.fifo";
/// create's first record, kept as it was (a hard link to the first state.json: later saves
/// replace state.json, not this): what delete falls back on if state.json is damaged.
const INTENT_FILE: &str = "intent.json";
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

/// A process as berth records it: the start time makes a recycled pid never look like it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcId {
    /// The calling process.
    pub fn current() -> Option<ProcId> {
        ProcId::of(std::process::id() as i32)
    }

    pub fn of(pid: i32) -> Option<ProcId> {
        proc_start_time(pid).map(|(start_time, _)| ProcId { pid, start_time })
    }

    pub fn alive(&self) -> bool {
        init_alive(self.pid, self.start_time)
    }
}

/// The whole record berth keeps per container. `create` writes it before it makes anything
/// (status "creating", naming the cgroup and the host mounts to come) and adds each process as
/// soon as it exists, so whatever happens to `create`, `delete` finds all it made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerState {
    #[serde(flatten)]
    pub oci: OciState,
    /// The `create` that is building the container, while the status is "creating": once it is
    /// gone, the container is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<ProcId>,
    /// create's stage processes (when namespaces are joined or a user namespace comes first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_pids: Vec<ProcId>,
    /// Start time of the init in clock ticks since boot, so a recycled pid never looks alive.
    pub init_start_time: u64,
    /// Cgroup path as given to the cgroup manager.
    pub cgroup_path: PathBuf,
    /// Depth of the first cgroup directory create made; delete removes up to there.
    #[serde(default)]
    pub cgroup_created_depth: usize,
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// With `systemd_cgroup`: whether create's systemd unit was started (false until it is, so
    /// a create killed before cannot make delete stop a unit of that name it never owned;
    /// absent in older records, which only exist for started units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_started: Option<bool>,
    /// True when the container has its own pid namespace (kill then needs only the init).
    #[serde(default)]
    pub own_pid_ns: bool,
    /// Without a mount namespace: the mount that was on top of the rootfs before create; delete
    /// detaches what the container stacked on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_mount_before: Option<u64>,
    /// The config as it was at create time: later edits of config.json change nothing. Last
    /// in the file, so that a record cut short still names the resources (see `salvage`).
    #[serde(default)]
    pub config: Spec,
}

impl ContainerState {
    /// True while the record is create's intent, not yet a finished container.
    pub fn half_made(&self) -> bool {
        self.oci.status == Status::Creating
    }

    pub fn status(&self, dir: &Path) -> Status {
        if self.half_made() {
            // Never "running": a create that died half-way left a stopped container.
            return if self.creator.is_some_and(|c| c.alive()) {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
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

/// The state hooks get on stdin: the one create records, with the init's pid and `status`
/// ("created" for create's hooks, as runc's and the runtime-tools suite expect).
pub fn hook_state(state: &OciState, pid: i32, status: Status) -> String {
    let mut st = state.clone();
    st.pid = pid;
    st.status = status;
    serde_json::to_string(&st).unwrap_or_default()
}

/// Checks a container id: non-empty, at most 255 bytes (it names a directory, and no file
/// system takes a longer name; runc's 1024 only fails later, at the mkdir), and only characters that are safe as a
/// single path component.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidId(id.into(), "it is empty"));
    }
    if id.len() > 255 {
        return Err(Error::InvalidId(
            id.into(),
            "it is too long: more than 255 bytes (it names a directory)",
        ));
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

/// Prefix of the directory a `create` fills before it becomes `<id>` (':' is not allowed in
/// ids, so these never collide with one).
const CLAIM_PREFIX: &str = ".claim:";

impl StateDir {
    /// Claims a new id with its first record already in it: the directory is filled under a
    /// private name, locked, and renamed to the id without replacing anything, so `<id>` never
    /// exists without its record, and the rename is what makes ids unique.
    pub fn claim(root: &Path, id: &str, record: &ContainerState) -> Result<StateDir> {
        validate_id(id)?;
        let dir = root.join(id);
        if dir.exists() {
            return Err(Error::Exists(id.into()));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(|e| Error::io("create state root", root, e))?;
        let tmp = root.join(format!("{CLAIM_PREFIX}{}", std::process::id()));
        // Left by a killed create whose pid we now have: nothing else can own it.
        let _ = fs::remove_dir_all(&tmp);
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&tmp)
            .map_err(|e| Error::io("create state dir", &tmp, e))?;
        let claimed = lock_dir(&tmp, lock_timeout()).and_then(|lock| {
            save_in(&tmp, record)?;
            fs::hard_link(tmp.join(STATE_FILE), tmp.join(INTENT_FILE))
                .map_err(|e| Error::io("keep the intent record", &tmp, e))?;
            crate::fault::point("state: claim the id")?;
            match crate::sys::rename_noreplace(&tmp, &dir) {
                Ok(()) => Ok(StateDir { dir, _lock: lock }),
                Err(e)
                    if e.raw_os_error() == Some(libc::EEXIST)
                        || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
                {
                    Err(Error::Exists(id.into()))
                }
                Err(e) => Err(Error::io("claim the container id", &dir, e)),
            }
        });
        if claimed.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        claimed
    }

    /// Opens and locks an existing container's directory (waiting at most the lock timeout).
    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        let dir = root.join(id);
        let lock = match lock_dir(&dir, lock_timeout()) {
            Ok(l) => l,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(Error::Busy { holder, waited, .. }) => {
                return Err(Error::Busy {
                    id: id.into(),
                    holder,
                    waited,
                })
            }
            Err(e) => return Err(e),
        };
        // A concurrent delete may have removed it while we waited for the lock.
        if !dir.exists() {
            return Err(Error::NotFound(id.into()));
        }
        Ok(StateDir { dir, _lock: lock })
    }

    pub fn load(&self) -> Result<ContainerState> {
        load_state(&self.dir)
    }

    /// Writes state.json atomically: temp file, rename. Only under the lock. No fsync: the
    /// record lives on /run (tmpfs), which a power loss empties anyway, and rename alone is
    /// atomic for every process that reads it; the fsync cost ~0.5 ms per save on a disk.
    pub fn save(&self, state: &ContainerState) -> Result<()> {
        crate::fault::point_with(|| format!("state: save ({})", state.oci.status))?;
        save_in(&self.dir, state)
    }

    /// The lock's fd: children must close it, or the lock would live as long as they do.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        crate::fault::point("state: remove the state dir")?;
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io("remove state dir", &self.dir, e))
    }
}

fn save_in(dir: &Path, state: &ContainerState) -> Result<()> {
    let tmp = dir.join(".state.json.tmp");
    let data = serde_json::to_vec(state).map_err(|e| Error::Other(e.to_string()))?;
    write_private(&tmp, &data).map_err(|e| Error::io("write state", &tmp, e))?;
    fs::rename(&tmp, dir.join(STATE_FILE)).map_err(|e| Error::io("write state", dir, e))
}

/// Writes a file only root may read (mode 0600), replacing what was there.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(data)
}

/// How long a verb waits for another berth process to release a container: long enough for
/// a create with slow hooks, short enough that a stuck holder is reported, not waited on
/// forever. `BERTH_LOCK_TIMEOUT` (seconds) overrides it.
fn lock_timeout() -> std::time::Duration {
    std::env::var("BERTH_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(std::time::Duration::from_secs_f64)
        .unwrap_or(std::time::Duration::from_secs(60))
}

fn lock_dir(dir: &Path, timeout: std::time::Duration) -> Result<File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| Error::io("open state dir", dir, e))?;
    match crate::sys::flock_exclusive(f.as_raw_fd(), timeout) {
        Ok(true) => Ok(f),
        Ok(false) => Err(Error::Busy {
            id: String::new(),
            holder: crate::sys::flock_holder(&f)
                .map(|pid| format!("pid {pid}: {}", crate::sys::cmdline(pid)))
                .unwrap_or_else(|| "another berth process".into()),
            waited: timeout,
        }),
        Err(e) => Err(Error::io("lock state dir", dir, e)),
    }
}

pub fn load_state(dir: &Path) -> Result<ContainerState> {
    let path = dir.join(STATE_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::CorruptState {
                path,
                reason: "it is missing".into(),
            })
        }
        Err(e) => return Err(Error::io("read state", &path, e)),
    };
    if data.is_empty() {
        return Err(Error::CorruptState {
            path,
            reason: "it is empty".into(),
        });
    }
    serde_json::from_slice(&data).map_err(|e| Error::CorruptState {
        path,
        reason: if e.is_eof() {
            format!("it is truncated ({e})")
        } else {
            format!("it is not a berth state record ({e})")
        },
    })
}

/// What can still be read from a damaged record, for `delete --force`: the fields that name
/// resources come before the (large) config, so a record cut short inside the config keeps
/// them; failing that, create's intent record names the cgroup and host mounts (the processes
/// are then found in the cgroup). No hooks run from a salvaged record.
pub fn salvage(dir: &Path) -> Option<ContainerState> {
    let cut_short = || -> Option<ContainerState> {
        let text = fs::read_to_string(dir.join(STATE_FILE)).ok()?;
        let cut = text.find(",\"config\":")?;
        serde_json::from_str(&format!("{}}}", &text[..cut])).ok()
    };
    let intent = || -> Option<ContainerState> {
        serde_json::from_slice(&fs::read(dir.join(INTENT_FILE)).ok()?).ok()
    };
    let mut st = cut_short().or_else(intent)?;
    st.config.set_hooks(None);
    Some(st)
}

/// Removes the claim directories of creates that died before their id existed.
pub fn sweep_dead_claims(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(pid) = name.strip_prefix(CLAIM_PREFIX) else {
            continue;
        };
        // A claim is named by its creator's pid, and is made before its record is written:
        // while that pid lives, the claim may be one still being filled in, never swept. (A
        // reused pid only delays the sweep; the new owner's own claim replaces it.)
        if pid
            .parse::<i32>()
            .is_ok_and(|p| p > 0 && Path::new("/proc").join(p.to_string()).exists())
        {
            continue;
        }
        let creator = load_state(&e.path()).ok().and_then(|s| s.creator);
        if !creator.is_some_and(|c| c.alive()) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Reads a state without taking the lock (for `state` and `list`, which change nothing; the
/// file is replaced by rename, so a reader never sees a half-written one).
pub fn read_unlocked(root: &Path, id: &str) -> Result<ContainerState> {
    validate_id(id)?;
    let dir = root.join(id);
    if !dir.is_dir() {
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
    if fifo_has_reader(fifo) {
        return Status::Created;
    }
    if crate::cgroups::is_frozen(cgroup_path) {
        return Status::Paused;
    }
    Status::Running
}

/// The init waits for `start` while it holds the fifo's read end: a write end opens without
/// blocking only then. A fifo left behind by a `start` killed after its write has no reader.
fn fifo_has_reader(fifo: &Path) -> bool {
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(fifo)
        .is_ok()
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
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| validate_id(name).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}
