//! The parent side of create: clone the container's processes, write id maps, join the cgroup,
//! run the host-side hooks and wait until the init is ready. On any failure everything made so
//! far is killed and removed before the error is returned.
//!
//! The parent is single-threaded throughout, so fork-like clones are safe.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{mkfifo, Pid};
use oci_spec::runtime::Spec;

use crate::bundle::Bundle;
use crate::channel::{self, Channel, Kind as MsgKind, Msg};
use crate::error::{Error, Result, SysContext};
use crate::hooks::{self, Kind};
use crate::init::{self, InitContext};
use crate::namespaces::NsPlan;
use crate::state::{self, OciState, ProcId, Status};
use crate::{cgroups, console, logging, procfs, seccomp, sys};

pub struct SpawnRequest<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub state_dir: &'a Path,
    pub cgroup_path: &'a Path,
    /// `--systemd-cgroup`: the cgroup is a systemd unit berth starts.
    pub systemd_cgroup: bool,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub no_new_keyring: bool,
    pub keyring_name: String,
    /// The state dir's lock, which the children must not keep.
    pub lock_fd: i32,
    /// The state as hooks will see it (pid filled in here).
    pub state: OciState,
    /// Depth of the first cgroup directory this create makes (already in the record).
    pub cgroup_created_depth: usize,
    /// Whether the cgroup was there before create: only then can it be frozen or hold
    /// processes already (checked before the init is placed in it).
    pub cgroup_existed: bool,
    /// Without a mount namespace: the id of the mount on top of the rootfs before create
    /// (already in the record), down to which a failure detaches.
    pub rootfs_mount_before: Option<u64>,
}

/// A process create made, reported to the caller as soon as it exists so that the state
/// record names it before anything else happens.
pub enum Made {
    Stage(ProcId),
    Init(ProcId),
    /// The systemd unit holding the cgroup (`--systemd-cgroup`).
    Unit,
}

pub struct Spawned {
    pub init: ProcId,
    pub own_pid_ns: bool,
}

/// Everything that must be undone if create fails half-way.
struct Undo<'a> {
    pids: Vec<i32>,
    /// Path, created depth, and whether it is a unit berth started.
    cgroup: Option<(&'a Path, usize, bool)>,
    /// Poststop hooks and the state they get: a failed create still ends at step 12.
    poststop: Option<(&'a Spec, String)>,
    /// Mounts made on the host's own table (no mount namespace): rootfs and the mount before.
    host_mounts: Option<(&'a Path, u64)>,
}

impl Undo<'_> {
    fn run(self) {
        for pid in &self.pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        for pid in &self.pids {
            let _ = waitpid(Pid::from_raw(*pid), None);
        }
        if let Some((rootfs, before)) = self.host_mounts {
            if let Err(e) = crate::rootfs::detach_host_mounts(rootfs, before) {
                logging::warn(&format!("cleanup after failed create: {e}"));
            }
        }
        if let Some((path, depth, systemd)) = self.cgroup {
            if let Err(e) = cgroups::remove(path, depth, systemd) {
                logging::warn(&format!("cleanup after failed create: {e}"));
            }
        }
        if let Some((spec, state)) = self.poststop {
            if let Err(e) = hooks::run_all(Kind::Poststop, spec.hooks().as_ref(), &state) {
                logging::warn(&e.to_string());
            }
        }
    }
}

/// Builds the container. `record` is called with each process the moment it exists; an error
/// from it aborts the create like any other.
pub fn spawn(req: &SpawnRequest, record: &mut dyn FnMut(Made) -> Result<()>) -> Result<Spawned> {
    let spec = &req.bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::config("process", "missing"))?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::config("linux", "missing"))?;
    let plan = NsPlan::new(linux.namespaces().as_deref().unwrap_or_default())?;
    // Checked before anything is made: a bad device rule is a config error.
    let device_rules = cgroups::devices::effective_rules(
        linux.resources().as_ref(),
        linux.devices().as_deref().unwrap_or_default(),
    )?;
    if logging::debug_enabled() {
        logging::debug(&format!("create: namespaces: {}", plan.describe()));
    }
    let terminal = process.terminal().unwrap_or(false);
    let console = match (terminal, req.console_socket) {
        (true, Some(path)) => Some(console::connect(path)?),
        (true, None) => {
            return Err(Error::config(
                "process.terminal",
                "a terminal needs --console-socket to hand the pty to",
            ))
        }
        (false, _) => None,
    };
    let fifo_path = req.state_dir.join(state::EXEC_FIFO);
    mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
        .with_step(|| format!("create exec fifo {}", fifo_path.display()))?;
    let open_fifo = |flags: OFlag, step: &str| -> Result<OwnedFd> {
        open(
            &fifo_path,
            flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(|fd| {
            // SAFETY: open just returned this fd and nothing else owns it.
            unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
        })
        .step(step)
    };
    let fifo = open_fifo(OFlag::O_RDONLY, "open exec fifo")?;
    // The init keeps a write end of its own until execve: a `start` that opens the fifo and
    // closes it without writing then leaves the init waiting, not reading EOF in a loop.
    let fifo_writer = open_fifo(OFlag::O_WRONLY, "open exec fifo (init's write end)")?;
    let mut undo = Undo {
        pids: Vec::new(),
        cgroup: None,
        poststop: None,
        host_mounts: req
            .rootfs_mount_before
            .map(|b| (req.bundle.rootfs.as_path(), b)),
    };
    let fifo = (fifo, fifo_writer);
    let result = spawn_inner(
        req,
        spec,
        &plan,
        console,
        fifo,
        &mut undo,
        record,
        &device_rules,
    );
    match result {
        Ok(init) => Ok(Spawned {
            init,
            own_pid_ns: plan.new_pid,
        }),
        Err(e) => {
            undo.run();
            Err(e)
        }
    }
}

/// The process just cloned, with its start time (0 if it is already gone: never alive then).
fn proc_id(pid: i32) -> ProcId {
    ProcId::of(pid).unwrap_or(ProcId { pid, start_time: 0 })
}

#[allow(clippy::too_many_arguments)]
fn spawn_inner<'a>(
    req: &'a SpawnRequest,
    spec: &'a Spec,
    plan: &NsPlan,
    console: Option<UnixStream>,
    fifo: (OwnedFd, OwnedFd),
    undo: &mut Undo<'a>,
    record: &mut dyn FnMut(Made) -> Result<()>,
    device_rules: &[cgroups::devices::Rule],
) -> Result<ProcId> {
    let (parent_chan, child_chan) = channel::pair()?;
    let in_userns = plan.new_user || plan.join_user;
    let bind_sources = if in_userns {
        crate::rootfs::open_bind_sources(spec)?
    } else {
        Vec::new()
    };
    let ctx = InitContext {
        spec,
        rootfs: &req.bundle.rootfs,
        chan: &child_chan,
        fifo: &fifo.0,
        fifo_writer: &fifo.1,
        state: &req.state,
        console: console.as_ref(),
        no_pivot: req.no_pivot,
        host_mount_ns: undo.host_mounts.is_some(),
        preserve_fds: req.preserve_fds,
        in_userns,
        lock_fd: req.lock_fd,
        keyring: (!req.no_new_keyring).then_some(req.keyring_name.as_str()),
        new_cgroup_ns: plan.new_cgroup,
        seccomp: req.bundle.seccomp.as_ref(),
        labels: &req.bundle.labels,
        bind_sources: &bind_sources,
    };
    let v2_dir = if plan.single_clone() && !req.systemd_cgroup {
        // Armed before anything of the cgroup is made (a systemd unit's is armed once it
        // started: one that failed is not berth's to stop).
        undo.cgroup = Some((req.cgroup_path, req.cgroup_created_depth, false));
        logging::timed("create: make the cgroup v2 directory to clone into", || {
            cgroups::prepare_v2(req.cgroup_path, req.cgroup_existed)
        })?
    } else {
        None
    };
    let mut born_in_v2 = false;
    let init = if plan.single_clone() {
        let flags = plan.create.bits() as libc::c_ulong;
        // SAFETY: berth is single-threaded here and the child never returns: init::run ends
        // in execve or _exit.
        // Not a fault point (no `.step`): both processes return from the clone, and only the
        // parent may take an error path.
        let into = v2_dir
            .as_ref()
            .map(|fd| unsafe { sys::clone_into_cgroup(flags, fd.as_raw_fd()) });
        let pid = match into {
            Some(Ok(pid)) => {
                born_in_v2 = true;
                Ok(pid)
            }
            Some(Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL)) => {
                // SAFETY: as above.
                unsafe { sys::clone_fork(flags) }
            }
            Some(Err(e)) => Err(e),
            // SAFETY: as above.
            None => unsafe { sys::clone_fork(flags) },
        }
        .map_err(|e| Error::sys("clone container init", e))?;
        if pid == 0 {
            drop(parent_chan);
            init::run(&ctx);
        }
        drop(child_chan);
        undo.pids.push(pid);
        let init = proc_id(pid);
        record(Made::Init(init))?;
        init
    } else {
        // SAFETY: as above; the stage child ends in _exit.
        let stage =
            unsafe { sys::clone_fork(0) }.map_err(|e| Error::sys("fork stage process", e))?;
        if stage == 0 {
            drop(parent_chan);
            init::run_stage(plan, &ctx);
        }
        // Only the children may hold their end: a stage that dies then reads as EOF here.
        drop(child_chan);
        undo.pids.push(stage);
        record(Made::Stage(proc_id(stage)))?;
        let pid = serve_stage(&parent_chan, stage, spec)?;
        undo.pids.push(pid);
        let init = proc_id(pid);
        record(Made::Init(init))?;
        reap_stage(stage)?;
        undo.pids.retain(|p| *p != stage);
        init
    };
    let init_pid = init.pid;
    if born_in_v2 {
        logging::debug(&format!(
            "create: cloned init {init_pid} into its cgroup v2 directory (CLONE_INTO_CGROUP)"
        ));
    } else {
        logging::debug(&format!("create: cloned init {init_pid}"));
    }
    drop(v2_dir);
    drop(bind_sources);
    drop(fifo);
    drop(console);

    // The init sets up its mounts meanwhile; if it failed (and said why), its error is the
    // one to report, not what placing a dead process then ran into.
    let placed = place_init(req, spec, undo, record, device_rules, init_pid, born_in_v2)
        .and_then(|()| parent_chan.send(&Msg::Go { pid: init_pid }));
    if let Err(e) = placed {
        return Err(parent_chan.child_error().unwrap_or(e));
    }
    let state_json = state::hook_state(&req.state, init_pid, Status::Created);

    if init::wants_host_hooks(spec) {
        parent_chan.expect(MsgKind::HooksPlease)?;
        logging::timed("create: prestart and createRuntime hooks", || {
            hooks::run_all(Kind::Prestart, spec.hooks().as_ref(), &state_json)?;
            hooks::run_all(Kind::CreateRuntime, spec.hooks().as_ref(), &state_json)
        })?;
        parent_chan.send(&Msg::HooksDone)?;
    }
    logging::timed("create: wait for the init to be ready", || -> Result<()> {
        while let (Msg::SeccompFd, fds) =
            parent_chan.expect_one_of(&[MsgKind::SeccompFd, MsgKind::Ready])?
        {
            hand_to_agent(req, init_pid, fds)?;
            parent_chan.send(&Msg::SeccompDone)?;
        }
        Ok(())
    })?;
    Ok(init)
}

/// Gives the seccomp listener fd to the agent named by listenerPath, as runc does: the state
/// says "creating", since the container process has not finished being set up.
fn hand_to_agent(req: &SpawnRequest, init_pid: i32, fds: Vec<OwnedFd>) -> Result<()> {
    let fd = fds
        .into_iter()
        .next()
        .ok_or_else(|| Error::Protocol("SeccompFd came without a file descriptor".into()))?;
    let listener = req
        .bundle
        .seccomp
        .as_ref()
        .and_then(|f| f.listener.as_ref())
        .ok_or_else(|| Error::Protocol("SeccompFd without a listenerPath".into()))?;
    let mut state = req.state.clone();
    state.pid = init_pid;
    state.status = Status::Creating;
    let json = serde_json::to_string(&state).map_err(|e| Error::Other(e.to_string()))?;
    seccomp::send_to_agent(listener, &fd, init_pid, &json)
}

/// Puts the cloned init in its cgroup (or the systemd unit) with the limits, device rules and
/// oom_score_adj; arms the undo for the cgroup and poststop hooks.
#[allow(clippy::too_many_arguments)]
fn place_init<'a>(
    req: &'a SpawnRequest,
    spec: &'a Spec,
    undo: &mut Undo<'a>,
    record: &mut dyn FnMut(Made) -> Result<()>,
    device_rules: &[cgroups::devices::Rule],
    init_pid: i32,
    born_in_v2: bool,
) -> Result<()> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    if req.systemd_cgroup {
        // Before the undo is armed: a unit that failed to start is not berth's to stop (start
        // cleans up after itself).
        let all = resources.cloned().unwrap_or_default();
        logging::timed("create: start the systemd unit", || {
            cgroups::systemd::start(req.cgroup_path, init_pid, &all, req.id)
        })?;
        undo.cgroup = Some((
            req.cgroup_path,
            req.cgroup_created_depth,
            req.systemd_cgroup,
        ));
        record(Made::Unit)?;
    }
    undo.cgroup = Some((
        req.cgroup_path,
        req.cgroup_created_depth,
        req.systemd_cgroup,
    ));
    logging::timed("create: join cgroup and apply limits", || {
        cgroups::join_and_apply(
            req.cgroup_path,
            init_pid,
            resources,
            device_rules,
            req.systemd_cgroup,
            born_in_v2,
            req.cgroup_existed && !born_in_v2,
        )
    })?;
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        procfs::write(
            &format!("{init_pid}/oom_score_adj"),
            adj.to_string().as_bytes(),
        )
        .map_err(|e| Error::config("process.oomScoreAdj", e.to_string()))?;
    }

    undo.poststop = Some((
        spec,
        state::hook_state(&req.state, init_pid, Status::Stopped),
    ));

    Ok(())
}

/// Serves the stage process until it reports the init's pid. The init it clones holds a copy
/// of the stage's socket end, so a stage that dies is seen by its pidfd, not by EOF.
fn serve_stage(chan: &Channel, stage: i32, spec: &Spec) -> Result<i32> {
    let pidfd = sys::pidfd_open(stage).step("open the stage process's pidfd")?;
    loop {
        match chan.recv_while_alive(&pidfd)? {
            None => {
                return Err(Error::ChildGone(
                    "stage process exited before cloning the init".into(),
                ))
            }
            Some((Msg::MapIds, _)) => {
                write_id_maps(stage, spec)?;
                chan.send(&Msg::MapsDone)?;
            }
            Some((Msg::InitPid { pid }, _)) => return Ok(pid),
            Some((Msg::Error(e), _)) => return Err(Error::Child(e)),
            Some((m, _)) => {
                return Err(Error::Protocol(format!(
                    "unexpected message {m:?} from the stage process"
                )))
            }
        }
    }
}

fn reap_stage(stage: i32) -> Result<()> {
    match waitpid(Pid::from_raw(stage), None).step("wait for stage process")? {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(Error::ChildGone(format!(
            "stage process ended badly: {other:?}"
        ))),
    }
}

/// Writes uid_map and gid_map of a process that just created a user namespace.
fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    let format = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    // Through a verified procfs, like every /proc write.
    let proc = procfs::ProcRoot::open()?;
    if !nix::unistd::geteuid().is_root() {
        proc.write(&format!("{pid}/setgroups"), b"deny")
            .map_err(|e| Error::config("linux.uidMappings: write setgroups", e.to_string()))?;
    }
    proc.write(
        &format!("{pid}/gid_map"),
        format(linux.gid_mappings()).as_bytes(),
    )
    .map_err(|e| Error::config("linux.gidMappings: write gid_map", e.to_string()))?;
    proc.write(
        &format!("{pid}/uid_map"),
        format(linux.uid_mappings()).as_bytes(),
    )
    .map_err(|e| Error::config("linux.uidMappings: write uid_map", e.to_string()))
}
