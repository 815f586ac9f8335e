//! Lifecycle hooks: each gets the container state on stdin, its own args and env, and an
//! optional timeout. Output is collected so a failure message can show it.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    /// Every kind, in the order they run; `features` lists them.
    pub const ALL: [Kind; 6] = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    pub fn of(self, hooks: &oci_spec::runtime::Hooks) -> Vec<Hook> {
        #[allow(deprecated)]
        let list = match self {
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        list.clone().unwrap_or_default()
    }
}

/// Runs every hook of `kind` in order; the first failure stops the rest, except for poststop
/// hooks, whose failures are warnings.
pub fn run_all(kind: Kind, hooks: Option<&oci_spec::runtime::Hooks>, state: &str) -> Result<()> {
    let Some(hooks) = hooks else { return Ok(()) };
    for (i, hook) in kind.of(hooks).into_iter().enumerate() {
        let ran = crate::fault::point_with(|| format!("hook: {}[{i}]", kind.name()))
            .map_err(Error::from)
            .and_then(|()| run(kind, &hook, state));
        match ran {
            Ok(()) => {}
            // A failing poststop hook is a warning; the remaining ones still run.
            Err(e) if matches!(kind, Kind::Poststop) => crate::logging::warn(&e.to_string()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn run(kind: Kind, hook: &Hook, state: &str) -> Result<()> {
    let fail = |reason: String| Error::Hook {
        kind: kind.name(),
        path: hook.path().clone(),
        reason,
    };
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    cmd.env_clear();
    // The hook gets the state on stdin and our stdout/stderr pipe, nothing else we hold.
    crate::sys::only_stdio_on_exec(&mut cmd);
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let (mut reader, writer) = std::io::pipe().map_err(|e| fail(format!("pipe: {e}")))?;
    let writer2 = writer.try_clone().map_err(|e| fail(format!("pipe: {e}")))?;
    cmd.stdin(Stdio::piped()).stdout(writer).stderr(writer2);
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run: {e}")))?;
    // Release our copies of the write end so EOF arrives when the hook exits.
    drop(cmd);
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that ignores stdin may exit before reading: EPIPE is not its failure.
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    set_nonblocking(&reader);
    // Waits in poll on the hook's pidfd and its output, never in a sleep loop.
    let pidfd =
        crate::sys::pidfd_open(child.id() as i32).map_err(|e| fail(format!("pidfd_open: {e}")))?;
    let mut output = Vec::new();
    let mut reader_open = true;
    let status = loop {
        if reader_open {
            reader_open = drain(&mut reader, &mut output);
        }
        if let Some(status) = child.try_wait().map_err(|e| fail(format!("wait: {e}")))? {
            if reader_open {
                drain(&mut reader, &mut output);
            }
            break status;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or_default()
            )));
        }
        wait_readable(&pidfd, reader_open.then_some(&reader), left);
    };
    if status.success() {
        return Ok(());
    }
    let out = String::from_utf8_lossy(&output);
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".to_string(),
    };
    Err(fail(if out.trim().is_empty() {
        how
    } else {
        format!("{how}: {}", out.trim())
    }))
}

/// Reads what the hook has written so far (up to 64 KiB is kept); false once it is at EOF.
fn drain(reader: &mut impl Read, output: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) if output.len() < 64 * 1024 => output.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Blocks until the hook exits (its pidfd), writes output, or `timeout` passes.
fn wait_readable(
    pidfd: &std::os::fd::OwnedFd,
    output: Option<&impl std::os::fd::AsFd>,
    timeout: Option<Duration>,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    if let Some(o) = output {
        fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
    }
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t.as_millis().clamp(1, i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    let _ = poll(&mut fds, timeout);
}

fn set_nonblocking(fd: &impl std::os::fd::AsFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let raw = fd.as_fd().as_raw_fd();
    if let Ok(flags) = fcntl(raw, FcntlArg::F_GETFL) {
        let _ = fcntl(
            raw,
            FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
        );
    }
}
