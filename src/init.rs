//! The child side: the stage process (joins and creates namespaces, then clones the init) and
//! the container's init (builds the container up to the exec fifo, then execve).
//!
//! These functions never return: every path ends in `execve` or `_exit`. Errors go back to the
//! parent over the channel, naming the step.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{chdir, read, sethostname, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::channel::{Channel, Kind as MsgKind, Msg};
use crate::error::{in_step, ChildError, Error, Result, SysContext};
use crate::hooks::{self, Kind};
use crate::namespaces::NsPlan;
use crate::seccomp::Filter;
use crate::{console, procfs, rootfs, security, sys};

pub struct InitContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub chan: &'a Channel,
    pub fifo: &'a OwnedFd,
    /// The init's own write end of the fifo (see spawn): never written, closed by execve.
    pub fifo_writer: &'a OwnedFd,
    /// The state create records (pid 0): hooks get it with the init's pid from Go.
    pub state: &'a crate::state::OciState,
    pub console: Option<&'a UnixStream>,
    pub no_pivot: bool,
    /// No mount namespace in the config: the container shares the runtime's.
    pub host_mount_ns: bool,
    pub preserve_fds: u32,
    pub in_userns: bool,
    pub new_cgroup_ns: bool,
    pub lock_fd: i32,
    /// Name of the session keyring to create, unless --no-new-keyring.
    pub keyring: Option<&'a str>,
    /// The compiled `linux.seccomp` profile.
    pub seccomp: Option<&'a Filter>,
    /// AppArmor and SELinux labels the host applies.
    pub labels: &'a crate::lsm::Labels,
    /// Bind sources opened before a user namespace was entered (one per mount).
    pub bind_sources: &'a [Option<OwnedFd>],
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process without running the parent's atexit handlers or
    // destructors, which belong to the parent's copy of the program.
    unsafe { libc::_exit(code) }
}

/// Sends the error to the parent, with its step, field, call and errno kept apart, and exits.
fn report(chan: &Channel, process: &str, err: &Error) -> ! {
    let e = ChildError::from_error(process, "set-up", err);
    let _ = chan.send(&Msg::Error(Box::new(e)));
    exit_now(1)
}

fn set_pdeathsig() {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
}

fn set_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        let _ = nix::sys::prctl::set_name(&c);
    }
}

/// The stage process: needed when namespaces must be joined, a user namespace comes first, or
/// a pid/time namespace is entered, because those only apply to children.
pub fn run_stage(plan: &NsPlan, ctx: &InitContext) -> ! {
    // CVE-2019-5736: /proc/<pid>/exe of a berth process must stay closed (inherited from
    // selfexe::protect already; set again in case the caller did not).
    let _ = sys::set_dumpable(false);
    set_name("berth:[1:STAGE]");
    set_pdeathsig();
    let _ = nix::unistd::close(ctx.lock_fd);
    if let Err(e) = stage_steps(plan, ctx.chan) {
        report(ctx.chan, "stage", &e);
    }
    // SAFETY: single-threaded; the child ends in execve or _exit inside run().
    match unsafe { sys::clone_fork(libc::CLONE_PARENT as libc::c_ulong) } {
        Ok(0) => run(ctx),
        Ok(pid) => {
            let _ = ctx.chan.send(&Msg::InitPid { pid });
            exit_now(0)
        }
        Err(e) => report(
            ctx.chan,
            "stage",
            &Error::sys("clone the container's init", e),
        ),
    }
}

fn stage_steps(plan: &NsPlan, chan: &Channel) -> Result<()> {
    // A user namespace being joined comes first: it decides what the rest may do.
    in_step("join the user namespace", || {
        plan.join_all(|t| t == LinuxNamespaceType::User)
    })?;
    // Other joins happen with the host's privileges, before a new user namespace drops them.
    in_step("join namespaces", || {
        plan.join_all(|t| t != LinuxNamespaceType::User)
    })?;
    if plan.new_user {
        in_step("user namespace", || new_user_ns(chan))?;
    }
    let rest = plan.create & !CloneFlags::CLONE_NEWUSER;
    if !rest.is_empty() {
        in_step("create namespaces", || {
            unshare(rest).with_step(|| format!("create namespaces {rest:?}"))
        })?;
    }
    Ok(())
}

fn new_user_ns(chan: &Channel) -> Result<()> {
    {
        // Asked before the unshare, after which we are nobody until mapped.
        let unprivileged = !nix::unistd::geteuid().is_root();
        unshare(CloneFlags::CLONE_NEWUSER).step("create user namespace")?;
        // The parent writes our id maps; until then we are nobody in the new namespace.
        // A parent that is not root can only open our /proc files while we are dumpable.
        if unprivileged {
            sys::set_dumpable(true).step("PR_SET_DUMPABLE 1 for the id maps")?;
        }
        chan.send(&Msg::MapIds)?;
        chan.expect(MsgKind::MapsDone)?;
        if unprivileged {
            sys::set_dumpable(false).step("PR_SET_DUMPABLE 0")?;
        }
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .step("become root in the user namespace (gid)")?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .step("become root in the user namespace (uid)")?;
    }
    Ok(())
}

/// True when prestart or createRuntime hooks exist: the init then asks the parent to run them.
pub fn wants_host_hooks(spec: &Spec) -> bool {
    spec.hooks()
        .as_ref()
        .is_some_and(|h| !Kind::Prestart.of(h).is_empty() || !Kind::CreateRuntime.of(h).is_empty())
}

/// The container's init.
pub fn run(ctx: &InitContext) -> ! {
    // Non-dumpable until execve resets it (see run_stage).
    let _ = sys::set_dumpable(false);
    set_name("berth:[2:INIT]");
    set_pdeathsig();
    let _ = nix::unistd::close(ctx.lock_fd);
    let program = match init_steps(ctx) {
        Ok(p) => p,
        Err(e) => report(ctx.chan, "init", &e),
    };
    wait_for_start(ctx);
    exec_process(ctx, &program)
}

struct Program<'a> {
    /// The state JSON startContainer hooks get on stdin.
    state: String,
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The seccomp filter still to load, right before execve.
    seccomp_late: Option<&'a Filter>,
}

/// The init's steps, in the spec's order. Each is named (its errors say which step failed,
/// and each is a fault point for the reliability suite).
fn init_steps<'a>(ctx: &InitContext<'a>) -> Result<Program<'a>> {
    let spec = ctx.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::config("process", "missing"))?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::config("linux", "missing"))?;
    if let Some(name) = ctx.keyring {
        in_step("session keyring", || join_session_keyring(name))?;
    }
    // The parent joins the cgroup meanwhile (on cgroup v1, ten migrations): the mounts and
    // devices go ahead and only the cgroup namespace and cgroup mounts wait for it. Nothing of
    // the container's own runs before Go.
    let mut pid = None;
    let mut enter_cgroup = || -> Result<()> {
        if pid.is_some() {
            return Ok(());
        }
        let p = in_step("wait for the cgroup (Go)", || {
            match ctx.chan.expect(MsgKind::Go)? {
                Msg::Go { pid } => Ok(pid),
                _ => unreachable_msg(),
            }
        })?;
        if ctx.new_cgroup_ns {
            in_step("cgroup namespace", || {
                unshare(CloneFlags::CLONE_NEWCGROUP).step("create cgroup namespace")
            })?;
        }
        pid = Some(p);
        Ok(())
    };
    in_step("prepare the root", || {
        rootfs::prepare_root(spec, ctx.rootfs, ctx.host_mount_ns)
    })?;
    in_step("mounts", || {
        rootfs::mount_all(
            spec,
            ctx.rootfs,
            ctx.in_userns,
            ctx.labels,
            ctx.bind_sources,
            &mut enter_cgroup,
        )
    })?;
    in_step("devices", || {
        rootfs::setup_devices(spec, ctx.rootfs, ctx.in_userns)?;
        rootfs::finish_dev(spec, ctx.rootfs)
    })?;
    // Without a cgroup mount, after the devices.
    in_step("enter the cgroup", &mut enter_cgroup)?;
    let pid = pid.unwrap_or_default();
    let state = crate::state::hook_state(ctx.state, pid, crate::state::Status::Created);
    if wants_host_hooks(spec) {
        in_step("prestart and createRuntime hooks", || {
            ctx.chan.send(&Msg::HooksPlease)?;
            ctx.chan.expect(MsgKind::HooksDone).map(|_| ())
        })?;
    }
    // createContainer hooks: resolved here, before pivot_root, but in the container's
    // namespaces, with the container's root as their cwd (as runc runs them).
    if spec
        .hooks()
        .as_ref()
        .is_some_and(|h| !Kind::CreateContainer.of(h).is_empty())
    {
        in_step("createContainer hooks", || {
            chdir(ctx.rootfs).with_step(|| format!("chdir {}", ctx.rootfs.display()))?;
            hooks::run_all(Kind::CreateContainer, spec.hooks().as_ref(), &state)
        })?;
    }
    in_step("pivot_root", || {
        rootfs::pivot(ctx.rootfs, ctx.no_pivot, ctx.host_mount_ns)
    })?;
    in_step("hostname and domainname", || set_names(spec))?;
    if let Some(sysctl) = linux.sysctl().as_ref().filter(|s| !s.is_empty()) {
        in_step("sysctl", || {
            // Through a verified procfs: a bundle's mount over /proc/sys cannot redirect these.
            let proc = procfs::ProcRoot::open()
                .map_err(|e| Error::config("linux.sysctl", format!("open procfs: {e}")))?;
            for (k, v) in sysctl {
                let rel = format!("sys/{}", k.replace('.', "/"));
                proc.write(&rel, v.as_bytes())
                    .map_err(|e| Error::config(format!("linux.sysctl {k}"), e.to_string()))?;
            }
            Ok(())
        })?;
    }
    in_step("masked and readonly paths", || {
        rootfs::mask_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
        rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default())
    })?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        in_step("read-only root", || {
            rootfs::remount_readonly(Path::new("/"))
        })?;
    }
    // Last of the mount work: an unbindable "/" would refuse the binds above.
    in_step("root propagation", || rootfs::apply_root_propagation(spec))?;
    let setup = ProcessSetup {
        process,
        chan: ctx.chan,
        console: ctx.console,
        bind_console: true,
        seccomp: ctx.seccomp,
        labels: ctx.labels,
        preserve_fds: ctx.preserve_fds,
    };
    let mut program = in_step("process", || prepare_process(&setup))?;
    // startContainer hooks run once the process is about to run: they see it as running.
    program.state = crate::state::hook_state(ctx.state, pid, crate::state::Status::Running);
    let _ = nix::sys::prctl::set_pdeathsig(None);
    install_exit_handlers();
    in_step("ready", || ctx.chan.send(&Msg::Ready))?;
    Ok(program)
}

fn set_names(spec: &Spec) -> Result<()> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sethostname(h).step("hostname: sethostname")?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        // SAFETY: the pointer and length describe a live byte slice.
        let rc = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        if rc != 0 {
            return Err(Error::sys("domainname: setdomainname", nix::Error::last()));
        }
    }
    Ok(())
}

/// What every container process gets from its `process` object, whether it is the init or an
/// exec'd process: terminal, rlimits, cwd, LSM labels, seccomp, user and capabilities, umask and
/// no_new_privs.
pub struct ProcessSetup<'a> {
    pub process: &'a Process,
    pub chan: &'a Channel,
    pub console: Option<&'a UnixStream>,
    /// The init binds its pty on /dev/console; an exec'd process only gets it as stdio.
    pub bind_console: bool,
    pub seccomp: Option<&'a Filter>,
    pub labels: &'a crate::lsm::Labels,
    /// fds from 3 up that go on to the process (socket activation and --preserve-fds).
    pub preserve_fds: u32,
}

/// Applies `process` up to, not including, execve, in the container's root and namespaces.
fn prepare_process<'a>(p: &ProcessSetup<'a>) -> Result<Program<'a>> {
    let process = p.process;
    // Only stdio and the preserved fds may reach the process. Marked now, before any seccomp
    // filter exists: a profile may refuse close_range (and the /proc walk's calls). Whatever
    // berth opens from here on is close-on-exec already.
    sys::cloexec_from(3 + p.preserve_fds)
        .with_step(|| format!("mark fds from {} up close-on-exec", 3 + p.preserve_fds))?;
    // Likewise before the filter: the process starts with no signal ignored, neither berth's
    // own SIGPIPE (Rust ignores it) nor what berth's caller ignored. Handlers installed after
    // this (the init's exit handlers) are reset by execve itself.
    sys::reset_signal_dispositions().step("reset signal dispositions")?;
    if let Some(sock) = p.console {
        console::setup(sock, process.console_size().as_ref(), p.bind_console)?;
    }
    if let Some(rl) = process.rlimits() {
        security::set_rlimits(rl)?;
    }
    let cwd = process.cwd();
    // Entered (and checked) before the seccomp filter exists, so a profile that refuses getcwd
    // cannot break the check; entered again after the user switch only if root could not.
    let entered = enter_cwd(cwd)?;
    let mut program = resolve_program(process)?;
    // Seccomp as late as possible, so berth's own remaining calls are not filtered. Without
    // no_new_privs only a CAP_SYS_ADMIN holder may load a filter: before the user switch. With
    // it: just before execve, unless an agent must get the listener fd now.
    let nnp = process.no_new_privileges().unwrap_or(false);
    let (seccomp_now, seccomp_late) = match p.seccomp {
        Some(f) if nnp && !f.notifies() => (None, Some(f)),
        other => (other, None),
    };
    // Exec labels: the kernel switches to them at execve.
    p.labels.apply_exec()?;
    if let Some(f) = seccomp_now.filter(|_| !nnp) {
        load_seccomp(p.chan, f)?;
    }
    // stdio (the pty included) belongs to the process's user, as runc leaves it.
    security::own_stdio(process.user());
    security::finalize_identity(process)?;
    if !entered {
        chdir(cwd)
            .with_step(|| format!("process.cwd: chdir {} as the process user", cwd.display()))?;
        check_cwd_inside_root(cwd)?;
    }
    security::set_umask(process);
    security::set_no_new_privileges(process)?;
    if let Some(f) = seccomp_now.filter(|_| nnp) {
        load_seccomp(p.chan, f)?;
    }
    program.seccomp_late = seccomp_late;
    Ok(program)
}

/// An exec'd process: everything it needs in its child.
pub struct ExecContext<'a> {
    pub setup: ProcessSetup<'a>,
    /// The container's init, pinned: `setns` on a pidfd joins all its namespaces at once.
    pub init: &'a OwnedFd,
    /// The namespaces the init is in and berth is not (the pid namespace already applies to
    /// this child: the parent set it for its children before the clone).
    pub join: CloneFlags,
    /// The init's root when the container has no mount namespace of its own (a chroot in the
    /// host's table): entered by fd.
    pub chroot: Option<&'a std::fs::File>,
}

/// The child of `berth exec`: joins the container, waits until the parent has put it in the
/// container's cgroup, becomes the process and execs it. Never returns.
pub fn run_exec(ctx: &ExecContext) -> ! {
    // Non-dumpable until execve resets it: /proc/<pid>/exe of a berth process stays closed
    // (CVE-2019-5736).
    let _ = sys::set_dumpable(false);
    set_name("berth:[EXEC]");
    set_pdeathsig();
    let program = match exec_steps(ctx) {
        Ok(p) => p,
        Err(e) => report(ctx.setup.chan, "exec", &e),
    };
    // A detached exec's parent exits as soon as this execve succeeds.
    let _ = nix::sys::prctl::set_pdeathsig(None);
    exec_program(&program)
}

fn exec_steps<'a>(ctx: &ExecContext<'a>) -> Result<Program<'a>> {
    if !ctx.join.is_empty() {
        // One call, so the kernel enters them in a valid order (the user namespace first) and
        // all or none; the mount namespace's root becomes our root and cwd.
        nix::sched::setns(ctx.init, ctx.join)
            .with_step(|| format!("join the container's namespaces {:?}", ctx.join))?;
    }
    if let Some(root) = ctx.chroot {
        nix::unistd::fchdir(root.as_raw_fd()).step("enter the container's root")?;
        nix::unistd::chroot(".").step("chroot into the container's root")?;
    }
    in_step("wait for the cgroup (Go)", || {
        ctx.setup.chan.expect(MsgKind::Go)
    })?;
    in_step("process", || prepare_process(&ctx.setup))
}

/// Loads the filter; a listener fd goes to the parent, which hands it to the seccomp agent.
fn load_seccomp(chan: &Channel, filter: &Filter) -> Result<()> {
    if let Some(fd) = filter.load()? {
        chan.send_with_fds(&Msg::SeccompFd, &[fd.as_raw_fd()])?;
        chan.expect(MsgKind::SeccompDone)?;
    }
    Ok(())
}

/// Enters `process.cwd`, creating it if missing, and refuses a directory outside the container's
/// root (e.g. `/proc/self/fd/N` naming a descriptor inherited from the host, CVE-2024-21626).
/// Returns false when root may not enter it (a user namespace's root facing a directory only
/// the process's user may search): the caller retries after the user switch.
fn enter_cwd(cwd: &Path) -> Result<bool> {
    if !cwd.exists() {
        // Missing parts are only created below an existing ancestor that is inside the root, so
        // a path through a magic link cannot create directories on the host.
        let mut base = cwd;
        while !base.exists() {
            base = base.parent().unwrap_or(Path::new("/"));
        }
        chdir(base).with_step(|| format!("process.cwd: chdir {}", base.display()))?;
        check_cwd_inside_root(cwd)?;
        // Made one component at a time inside the root, never through a magic link.
        crate::safepath::Root::open(Path::new("/"))?.mkdir_all(cwd)?;
    }
    match chdir(cwd) {
        Err(nix::Error::EACCES) => return Ok(false),
        r => r.with_step(|| format!("process.cwd: chdir {}", cwd.display()))?,
    }
    check_cwd_inside_root(cwd)?;
    Ok(true)
}

/// Fails unless the current directory lies inside the process's root.
///
/// Why getcwd(2): the kernel builds its answer by walking the dentry of the directory we really
/// are in up to this process's root (the container's, after pivot_root or chroot). A directory
/// that walk cannot reach, however we got there (e.g. a magic link such as `/proc/self/fd/N` to
/// a host directory fd), is reported as "(unreachable)/..." instead of an absolute path; string
/// checks on the configured path cannot see through such links. It checks the directory we hold, not a path re-resolved later, so there is no
/// window between the check and its use. We call the syscall directly: libc versions differ in
/// whether they return that text or fail with ENOENT.
fn check_cwd_inside_root(cwd: &Path) -> Result<()> {
    let got =
        sys::getcwd_raw().with_step(|| format!("process.cwd: getcwd in {}", cwd.display()))?;
    if got.first() == Some(&b'/') {
        return Ok(());
    }
    Err(Error::config(
        "process.cwd",
        format!(
            "{} is outside the container's root (the kernel reports {:?})",
            cwd.display(),
            String::from_utf8_lossy(&got)
        ),
    ))
}

/// A fresh session keyring, so the container cannot see the caller's keys.
fn join_session_keyring(name: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let cname = CString::new(name).map_err(|_| Error::Other("keyring name has a NUL".into()))?;
    // SAFETY: the keyctl operation reads one C string that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            cname.as_ptr(),
        )
    };
    if r < 0 {
        let err = nix::Error::last();
        // Kernels without keyrings, or policies that forbid them, are not the container's fault.
        if err != nix::Error::ENOSYS && err != nix::Error::EACCES && err != nix::Error::EPERM {
            return Err(Error::sys("create session keyring", err));
        }
    }
    Ok(())
}

fn unreachable_msg<T>() -> Result<T> {
    Err(Error::Protocol("unexpected message".into()))
}

/// While waiting for `start` the init is PID 1 of its namespace, which ignores signals without
/// a handler: these make `kill` work on a created container. execve resets them.
fn install_exit_handlers() {
    extern "C" fn on_signal(sig: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) }
    }
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: the handler only calls _exit, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Blocks until `start` writes a byte into the exec fifo. The init holds a write end itself,
/// so the fifo never reads EOF: a `start` that closes without writing leaves it waiting (no
/// spinning), and the next `start` goes ahead.
fn wait_for_start(ctx: &InitContext) {
    let fd = ctx.fifo.as_raw_fd();
    let _keep = ctx.fifo_writer;
    loop {
        let mut fds = [PollFd::new(
            // SAFETY: fd stays open for the whole loop.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => exit_now(1),
        }
        let mut byte = [0u8; 1];
        match read(fd, &mut byte) {
            Ok(1) => return,
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
            // EOF cannot happen while we hold a writer; anything else is fatal, not a retry.
            _ => exit_now(1),
        }
    }
}

fn exec_process(ctx: &InitContext, program: &Program) -> ! {
    if let Err(e) = hooks::run_all(
        Kind::StartContainer,
        ctx.spec.hooks().as_ref(),
        &program.state,
    ) {
        eprintln!("berth: {e}");
        exit_now(1);
    }
    exec_program(program)
}

/// The last steps of every container process: signals unblocked and at their defaults, the
/// late seccomp filter, execve.
fn exec_program(program: &Program) -> ! {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
    if let Some(f) = program.seccomp_late {
        if let Err(e) = f.load() {
            eprintln!("berth: {e}");
            exit_now(127);
        }
    }
    let err = nix::unistd::execve(&program.path, &program.argv, &program.envp)
        .err()
        .unwrap_or(nix::Error::UnknownErrno);
    eprintln!("berth: exec {}: {err}", program.path.to_string_lossy());
    exit_now(127)
}

/// Finds the program through the container's PATH and checks it can be executed, so a missing
/// binary fails `create`, not the container after `start`.
fn resolve_program(process: &oci_spec::runtime::Process) -> Result<Program<'static>> {
    let args = process.args().as_deref().unwrap_or_default();
    let name = args
        .first()
        .ok_or_else(|| Error::config("process.args", "empty"))?;
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let found = if name.contains('/') {
        let p = PathBuf::from(name);
        is_executable(&p).then_some(p)
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .find(|p| is_executable(p))
    };
    let path = found.ok_or_else(|| {
        Error::config(
            "process.args[0]",
            format!("{name:?}: executable file not found in the container (PATH={path_var})"),
        )
    })?;
    let cstr =
        |s: &[u8]| CString::new(s).map_err(|_| Error::config("process", "contains a NUL byte"));
    Ok(Program {
        state: String::new(),
        path: cstr(path.as_os_str().as_bytes())?,
        argv: args
            .iter()
            .map(|a| cstr(a.as_bytes()))
            .collect::<Result<_>>()?,
        envp: env
            .iter()
            .map(|e| cstr(e.as_bytes()))
            .collect::<Result<_>>()?,
        seccomp_late: None,
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
