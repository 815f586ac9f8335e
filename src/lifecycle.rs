//! The verbs: create, start, state, kill, delete, run, list, pause, resume, spec. Each takes the
//! container's lock for as long as it changes anything, and never while waiting on a workload.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::SigmaskHow;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::bundle;
use crate::error::{Error, Result};
use crate::hooks::{self, Kind};
use crate::spawn::{self, SpawnRequest};
use crate::state::{self, ContainerState, OciState, StateDir, Status};
use crate::{cgroups, logging, sys};

/// Global options every verb needs.
pub struct Context {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
}

#[derive(Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub no_new_keyring: bool,
}

/// `create`: returns the init's pid once it waits on the exec fifo.
pub fn create(ctx: &Context, id: &str, opts: &CreateOptions) -> Result<i32> {
    state::validate_id(id)?;
    let bundle = logging::timed("create: load bundle", || bundle::load(&opts.bundle))?;
    create_from(ctx, id, opts, bundle)
}

fn create_from(
    ctx: &Context,
    id: &str,
    opts: &CreateOptions,
    mut bundle: bundle::Bundle,
) -> Result<i32> {
    if ctx.systemd_cgroup && !cgroups::systemd::booted() {
        // Before anything is made: never a silent fallback to cgroupfs.
        return Err(Error::Cgroup(
            "--systemd-cgroup needs systemd as init, and this host has none \
             (no /run/systemd/system)"
                .into(),
        ));
    }
    let mut record = intent(ctx, id, &bundle)?;
    let cgroup_existed = cgroups::exists(&record.cgroup_path);
    // From here the record names everything create will make.
    let dir = logging::timed("create: record the intent", || {
        StateDir::claim(&ctx.root, id, &record)
    })?;
    let result = with_runtime_env(&mut bundle.spec, &dir.dir)
        .and_then(|()| create_in(ctx, opts, &bundle, &dir, &mut record, cgroup_existed));
    if let Err(e) = result {
        // The record goes with the last thing it names: a cgroup the undo could not remove
        // keeps it (stopped once this create exits), for `delete` to try again.
        if !cgroup_existed && !record.systemd_cgroup && cgroups::exists(&record.cgroup_path) {
            logging::warn(&format!(
                "create {id}: its cgroup could not be removed; `delete --force {id}` retries"
            ));
        } else if let Err(e) = dir.remove() {
            logging::warn(&format!("cleanup after failed create: {e}"));
        }
        return Err(e);
    }
    result
}

/// The first record of a create, written before anything exists: status "creating", this
/// process as its creator, and the cgroup and host mounts it is about to make.
fn intent(ctx: &Context, id: &str, bundle: &bundle::Bundle) -> Result<ContainerState> {
    let linux = bundle.spec.linux().as_ref();
    let cgroup_path = cgroups::resolve_path(
        linux.and_then(|l| l.cgroups_path().as_deref()),
        id,
        ctx.systemd_cgroup,
    )?;
    let host_mount_ns = !linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount);
    let rootfs_mount_before = if host_mount_ns {
        Some(crate::rootfs::mount_id_of(&bundle.rootfs)?)
    } else {
        None
    };
    Ok(ContainerState {
        oci: OciState {
            oci_version: state::OCI_VERSION.to_string(),
            id: id.to_string(),
            pid: 0,
            status: Status::Creating,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: logging::rfc3339_now(),
            owner: String::new(),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        },
        creator: state::ProcId::current(),
        stage_pids: Vec::new(),
        init_start_time: 0,
        cgroup_created_depth: cgroups::first_missing_depth(&cgroup_path),
        cgroup_path,
        systemd_cgroup: ctx.systemd_cgroup,
        unit_started: ctx.systemd_cgroup.then_some(false),
        own_pid_ns: false,
        rootfs_mount_before,
        config: bundle.spec.clone(),
    })
}

/// What berth's own environment hands on to the container: socket-activation fds (counted in
/// LISTEN_FDS, as runc does) and an sd_notify socket of its own.
fn with_runtime_env(spec: &mut oci_spec::runtime::Spec, state_dir: &Path) -> Result<()> {
    let listen = crate::fds::socket_activation_fds();
    if listen > 0 {
        if let Some(mut p) = spec.process().clone() {
            let mut env = p.env().clone().unwrap_or_default();
            env.retain(|e| !e.starts_with("LISTEN_FDS="));
            env.push(format!("LISTEN_FDS={listen}"));
            p.set_env(Some(env));
            spec.set_process(Some(p));
        }
    }
    crate::notify::prepare(spec, state_dir)
}

/// The container's compiled seccomp program, kept beside its state for exec (which would
/// otherwise compile the profile again for every process). Best effort: without it exec
/// compiles.
fn keep_seccomp_program(bundle: &bundle::Bundle, dir: &Path) {
    let Some(bytes) = bundle.seccomp.as_ref().and_then(|f| f.to_bytes()) else {
        return;
    };
    let path = dir.join(state::SECCOMP_PROGRAM);
    if let Err(e) = state::write_private(&path, &bytes) {
        logging::debug(&format!(
            "keep the seccomp program at {}: {e}",
            path.display()
        ));
    }
}

fn create_in(
    ctx: &Context,
    opts: &CreateOptions,
    bundle: &bundle::Bundle,
    dir: &StateDir,
    record: &mut ContainerState,
    cgroup_existed: bool,
) -> Result<i32> {
    let id = record.oci.id.clone();
    let request = SpawnRequest {
        id: &id,
        bundle,
        state_dir: &dir.dir,
        cgroup_path: &record.cgroup_path.clone(),
        systemd_cgroup: ctx.systemd_cgroup,
        console_socket: opts.console_socket.as_deref(),
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds,
        lock_fd: dir.lock_fd(),
        no_new_keyring: opts.no_new_keyring,
        keyring_name: format!("_ses.{id}"),
        state: record.oci.clone(),
        cgroup_created_depth: record.cgroup_created_depth,
        cgroup_existed,
        rootfs_mount_before: record.rootfs_mount_before,
    };
    // Each process goes into the record the moment it exists.
    let mut note = |made: spawn::Made| {
        match made {
            spawn::Made::Stage(p) => record.stage_pids.push(p),
            spawn::Made::Init(p) => {
                record.oci.pid = p.pid;
                record.init_start_time = p.start_time;
            }
            spawn::Made::Unit => record.unit_started = Some(true),
        }
        dir.save(record)
    };
    let spawned = logging::timed("create: spawn", || spawn::spawn(&request, &mut note))?;
    logging::debug(&format!("create: init {} is ready", spawned.init.pid));
    record.oci.status = Status::Created;
    record.creator = None;
    record.own_pid_ns = spawned.own_pid_ns;
    record.config = bundle.spec.clone();
    let written = dir.save(record).and_then(|_| match &opts.pid_file {
        Some(p) => write_pid_file(p, spawned.init.pid),
        None => Ok(()),
    });
    keep_seccomp_program(bundle, &dir.dir);
    if let Err(e) = written {
        kill_and_wait(record);
        let _ = cgroups::remove(
            &record.cgroup_path,
            record.cgroup_created_depth,
            record.systemd_cgroup,
        );
        if let Err(e) = release_host_mounts(record) {
            logging::warn(&format!("cleanup after failed create: {e}"));
        }
        return Err(e);
    }
    Ok(spawned.init.pid)
}

/// Writes the pid file atomically (temp file + rename), as containerd reads it at any time.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("pid file", path, e))?
            .join(path)
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("write pid file", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| Error::io("write pid file", &path, e))
}

fn hook_state(st: &ContainerState, status: Status) -> String {
    state::hook_state(&st.oci, st.oci.pid, status)
}

/// `start`: lets a created container's init execve its process.
pub fn start(ctx: &Context, id: &str) -> Result<()> {
    let dir = StateDir::open(&ctx.root, id)?;
    let st = dir.load()?;
    let status = st.status(&dir.dir);
    if status != Status::Created {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            action: "only a created container can be started",
        });
    }
    let fifo = dir.dir.join(state::EXEC_FIFO);
    let relay = crate::notify::bind(&dir.dir)?;
    // Pinned before the start, so the wait for READY cannot watch a recycled pid.
    let init = match &relay {
        Some(_) => Some(sys::pidfd_open(st.oci.pid).map_err(|e| Error::sys("open init pidfd", e))?),
        None => None,
    };
    logging::timed("start: exec fifo", || {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .custom_flags_nonblock()
            .open(&fifo)
            .map_err(|e| Error::io("open exec fifo (is the container's init alive?)", &fifo, e))?;
        f.write_all(&[0])
            .map_err(|e| Error::io("signal start", &fifo, e))?;
        // After the write: a start killed before it leaves a container that can still start.
        let _ = fs::remove_file(&fifo);
        // Poststart hooks run once the process has started: the init's read end is
        // close-on-exec, so the fifo loses its last reader at the execve (or if the init dies
        // first). Without such hooks nothing waits on the execve (nor does runc's start): the
        // program was found at create, and the state no longer says created.
        if st
            .config
            .hooks()
            .as_ref()
            .is_some_and(|h| !Kind::Poststart.of(h).is_empty())
        {
            wait_no_readers(&f);
        }
        Ok::<(), Error>(())
    })?;
    let hooks = st.config.hooks().as_ref();
    let poststart = logging::timed("start: poststart hooks", || {
        hooks::run_all(Kind::Poststart, hooks, &hook_state(&st, Status::Running))
    });
    if let Err(e) = poststart {
        // Spec 1.3.0: a failing poststart hook stops the container and tears it down.
        kill_and_wait(&st);
        if let Err(d) = destroy(dir, &st) {
            logging::warn(&format!("after the poststart hook failed: {d}"));
        }
        return Err(e);
    }
    if let (Some(relay), Some(init)) = (relay, init) {
        // Not under the lock: the container may be killed while we wait.
        drop(dir);
        logging::timed("start: wait for READY on the notify socket", || {
            relay.wait_ready(&init, st.oci.pid)
        })?;
    }
    Ok(())
}

/// Blocks until the fifo `f` (a write end) has no reader left: poll reports POLLERR then, even
/// when no event is asked for.
fn wait_no_readers(f: &fs::File) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            _ => return,
        }
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
}

/// `state`: the OCI state as JSON.
pub fn state(ctx: &Context, id: &str) -> Result<OciState> {
    let st = state::read_unlocked(&ctx.root, id)?;
    Ok(st.current(&ctx.root.join(id)))
}

/// `kill`: signals the init; with `all`, every process in the container's cgroup. A SIGKILL
/// reaches every process of a container without its own pid namespace (the kernel only kills
/// the rest along with an init that is its namespace's pid 1). The container stopping because
/// of the signal is not an error.
pub fn kill(ctx: &Context, id: &str, sig: i32, all: bool) -> Result<()> {
    let dir = StateDir::open(&ctx.root, id)?;
    let st = dir.load()?;
    let status = st.status(&dir.dir);
    if all {
        // As runc: whatever is left in the cgroup of a stopped container is signalled too.
        logging::time(&format!("kill: {sig} to the cgroup"), || {
            signal_cgroup(&st, sig)
        });
        return Ok(());
    }
    if status == Status::Stopped {
        return Err(not_running(&st));
    }
    logging::timed(&format!("kill: {sig} to the init"), || {
        signal_init(&st, sig)
    })?;
    if sig == libc::SIGKILL && !st.own_pid_ns {
        logging::time("kill: SIGKILL to the cgroup (no pid namespace)", || {
            signal_cgroup(&st, sig)
        });
    }
    Ok(())
}

/// containerd matches "container not running" to treat a kill as already done.
fn not_running(st: &ContainerState) -> Error {
    Error::WrongState {
        id: st.oci.id.clone(),
        status: Status::Stopped.to_string(),
        action: "container not running",
    }
}

fn signal_init(st: &ContainerState, sig: i32) -> Result<()> {
    // A pidfd pins the process, so after the start-time check the signal cannot reach a
    // recycled pid.
    let pidfd = sys::pidfd_open(st.oci.pid).map_err(|_| not_running(st))?;
    if !state::init_alive(st.oci.pid, st.init_start_time) {
        return Err(not_running(st));
    }
    use std::os::fd::AsRawFd;
    match sys::pidfd_send_signal(pidfd.as_raw_fd(), sig) {
        Ok(()) => Ok(()),
        // Exited between the check and the signal.
        Err(nix::Error::ESRCH) => Err(not_running(st)),
        Err(e) => Err(Error::sys(format!("send signal {sig} to the init"), e)),
    }
}

/// Signals every process in the container's cgroup. SIGKILL goes through `cgroup.kill` where the
/// kernel has it (v2, or the hybrid unified tree), which leaves no window for a fork; otherwise
/// the cgroup is frozen while its pids are listed and signalled, then thawed (unless it was
/// paused and the signal is not SIGKILL, which frozen processes only act on once thawed).
fn signal_cgroup(st: &ContainerState, sig: i32) {
    if sig == libc::SIGKILL && cgroups::kill_all(&st.cgroup_path) {
        // A v1 freezer holds even killed processes until thawed.
        if cgroups::is_frozen(&st.cgroup_path) {
            let _ = cgroups::freeze(&st.cgroup_path, false);
        }
        return;
    }
    let was_frozen = cgroups::is_frozen(&st.cgroup_path);
    let froze = !was_frozen && cgroups::freeze(&st.cgroup_path, true).is_ok();
    if let Ok(pids) = cgroups::pids(&st.cgroup_path) {
        for pid in pids {
            let _ = sys::kill(pid, sig);
        }
    }
    if froze || (was_frozen && sig == libc::SIGKILL) {
        let _ = cgroups::freeze(&st.cgroup_path, false);
    }
}

/// Kills every process of the container (the init, create's stage processes if it died
/// half-way, everything in the cgroup) and waits, on pidfds, until they are gone; at most 10 s.
fn kill_and_wait(st: &ContainerState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    signal_cgroup(st, libc::SIGKILL);
    let recorded = st
        .stage_pids
        .iter()
        .copied()
        .chain((st.oci.pid > 0).then_some(state::ProcId {
            pid: st.oci.pid,
            start_time: st.init_start_time,
        }));
    let mut pinned = Vec::new();
    for p in recorded {
        // Pinned first, checked second: the signal cannot reach a recycled pid.
        if let Ok(fd) = sys::pidfd_open(p.pid) {
            if p.alive() {
                use std::os::fd::AsRawFd;
                let _ = sys::pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
                pinned.push(fd);
            }
        }
    }
    sys::wait_pidfds(&pinned, deadline);
    // Reap the init if it is our child (a foreground run); otherwise its parent does.
    if st.oci.pid > 0 {
        let _ = waitpid(Pid::from_raw(st.oci.pid), Some(WaitPidFlag::WNOHANG));
    }
    // What else the cgroup holds (a container without its own pid namespace, or processes
    // that forked while the first signal went out).
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let pids = cgroups::pids(&st.cgroup_path).unwrap_or_default();
        if pids.is_empty() || pids == last {
            break;
        }
        signal_cgroup(st, libc::SIGKILL);
        let fds: Vec<_> = pids
            .iter()
            .filter_map(|p| sys::pidfd_open(*p).ok())
            .collect();
        sys::wait_pidfds(&fds, deadline);
        last = pids;
    }
}

/// A container without its own mount namespace mounted on the host's table: detach it.
fn release_host_mounts(st: &ContainerState) -> Result<()> {
    match st.rootfs_mount_before {
        Some(before) => crate::rootfs::detach_host_mounts(&st.oci.rootfs, before),
        None => Ok(()),
    }
}

/// Undoes create: host mounts, cgroup, poststop hooks (failures are warnings), state dir.
/// A create that died half-way gets no poststop hooks: its container never existed. If the
/// mounts or the cgroup cannot be removed, the record stays (it is all that names them) and
/// the error is returned: `delete` can be run again.
fn destroy(dir: StateDir, st: &ContainerState) -> Result<()> {
    logging::timed("delete: release host mounts", || release_host_mounts(st))?;
    logging::timed("delete: remove cgroup", || {
        // A unit create never started is not berth's to stop (it may be someone else's).
        let unit = st.systemd_cgroup && st.unit_started != Some(false);
        if st.systemd_cgroup && !unit {
            return Ok(());
        }
        cgroups::remove(&st.cgroup_path, st.cgroup_created_depth, unit)
    })?;
    let poststop = logging::timed("delete: poststop hooks", || {
        if st.half_made() {
            return Ok(());
        }
        hooks::run_all(
            Kind::Poststop,
            st.config.hooks().as_ref(),
            &hook_state(st, Status::Stopped),
        )
    });
    if let Err(e) = poststop {
        logging::warn(&e.to_string());
    }
    dir.remove()
}

/// `delete`: a stopped container, a created one (as runc does), or with `force` any.
pub fn delete(ctx: &Context, id: &str, force: bool) -> Result<()> {
    if force {
        state::sweep_dead_claims(&ctx.root);
    }
    let dir = match StateDir::open(&ctx.root, id) {
        Ok(d) => d,
        Err(Error::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let st = match dir.load() {
        Ok(st) => st,
        Err(e @ Error::CorruptState { .. }) if force => match state::salvage(&dir.dir) {
            // Cut short inside the config: the resources are still named; no hooks run.
            Some(st) => {
                logging::warn(&format!(
                    "delete {id}: {e}: cleaning up what it still names"
                ));
                kill_and_wait(&st);
                return destroy(dir, &st);
            }
            None => {
                logging::warn(&format!("delete {id}: {e}: removing the state directory"));
                return dir.remove();
            }
        },
        Err(e) => return Err(e),
    };
    match st.status(&dir.dir) {
        // Whatever a create that died half-way left alive, by the record.
        Status::Stopped if st.half_made() => {
            logging::time("delete: kill what create left", || kill_and_wait(&st))
        }
        Status::Stopped => {}
        Status::Created => logging::time("delete: kill", || kill_and_wait(&st)),
        s if force => {
            let _ = s;
            logging::time("delete: kill", || kill_and_wait(&st))
        }
        s => {
            return Err(Error::WrongState {
                id: id.into(),
                status: s.to_string(),
                action: "cannot delete a container that is not stopped (use --force)",
            })
        }
    }
    destroy(dir, &st)
}

pub fn pause(ctx: &Context, id: &str, frozen: bool) -> Result<()> {
    let dir = StateDir::open(&ctx.root, id)?;
    let st = dir.load()?;
    let status = st.status(&dir.dir);
    let ok = if frozen {
        status == Status::Running || status == Status::Created
    } else {
        status == Status::Paused
    };
    if !ok {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            action: if frozen {
                "only a running container can be paused"
            } else {
                "only a paused container can be resumed"
            },
        });
    }
    cgroups::freeze(&st.cgroup_path, frozen)
}

pub fn list(ctx: &Context) -> Result<Vec<OciState>> {
    let mut out = Vec::new();
    for id in state::list_ids(&ctx.root)? {
        match state::read_unlocked(&ctx.root, &id) {
            Ok(st) => out.push(st.current(&ctx.root.join(&id))),
            // Said on stderr, so the operator learns of it; the list itself stays parseable.
            Err(e @ Error::CorruptState { .. }) => logging::warn(&format!("list: {id}: {e}")),
            // Removed by a delete while we listed.
            Err(_) => {}
        }
    }
    Ok(out)
}

/// `run`: create and start; unless `detach`, wait for the container, forwarding signals, and
/// return its exit status (128+signal when killed), then delete it unless `keep`.
pub fn run(ctx: &Context, id: &str, opts: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    state::validate_id(id)?;
    let bundle = bundle::load(&opts.bundle)?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // A foreground run with a terminal and no console socket proxies the pty itself.
    let own_console = if terminal && opts.console_socket.is_none() && !detach {
        Some(crate::foreground::OwnConsole::new(id)?)
    } else {
        None
    };
    let mut opts_here = opts.clone();
    if let Some(c) = &own_console {
        opts_here.console_socket = Some(c.path.clone());
    }
    // Block the forwarded signals first, so none is lost between start and the wait.
    let forwarded = crate::foreground::forwarded_signals();
    if !detach {
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
            .map_err(|e| Error::sys("block signals", e))?;
    }
    let pid = create_from(ctx, id, &opts_here, bundle)?;
    let master = match own_console.as_ref().map(|c| c.receive_master()).transpose() {
        Ok(m) => m,
        Err(e) => {
            let _ = delete(ctx, id, true);
            return Err(e);
        }
    };
    drop(own_console);
    if let Err(e) = start(ctx, id) {
        let _ = delete(ctx, id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = crate::foreground::wait(pid, master)?;
    if !keep {
        delete(ctx, id, true)?;
    }
    Ok(code)
}

/// `spec`: writes a default config.json, refusing to overwrite one.
pub fn write_spec(bundle: &Path, rootless: bool) -> Result<PathBuf> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::Other(format!(
            "{} exists: remove it first",
            path.display()
        )));
    }
    let text = serde_json::to_string_pretty(&crate::spec::default_spec(rootless))
        .map_err(|e| Error::Other(e.to_string()))?;
    fs::write(&path, text + "\n").map_err(|e| Error::io("write spec", &path, e))?;
    Ok(path)
}
