//! sd_notify from inside the container (`podman run --sdnotify=container`, systemd units that
//! run a container with Type=notify).
//!
//! When berth itself runs with `NOTIFY_SOCKET`, `create` gives the container a socket of its
//! own: the state dir's `notify/` is bound read-only at `/run/notify` and the process gets
//! `NOTIFY_SOCKET=/run/notify/notify.sock`. `start` binds that socket before letting the process
//! run, and waits until the process sends `READY=…` (relayed to the host's socket together with
//! `MAINPID=<init's host pid>`, so the manager watches the container's process) or until the
//! init exits. Other messages are not relayed, as with runc.

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{MountBuilder, Spec};

use crate::error::{Error, Result};

const DIR: &str = "notify";
const IN_CONTAINER_DIR: &str = "/run/notify";
const SOCKET: &str = "notify.sock";

/// The host's socket, if berth was asked to notify.
pub fn host_socket() -> Option<String> {
    std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// At create: adds the bind of `state_dir/notify` and the process's NOTIFY_SOCKET to the spec,
/// and makes the directory. Nothing when berth has no NOTIFY_SOCKET.
pub fn prepare(spec: &mut Spec, state_dir: &Path) -> Result<()> {
    if host_socket().is_none() {
        return Ok(());
    }
    let dir = state_dir.join(DIR);
    std::fs::create_dir(&dir).map_err(|e| Error::io("make the notify socket dir", &dir, e))?;
    // The process may not be root: it must be able to reach the socket.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("make the notify socket dir", &dir, e))?;
    let mount = MountBuilder::default()
        .destination(IN_CONTAINER_DIR)
        .typ("bind")
        .source(&dir)
        .options(
            ["bind", "nosuid", "noexec", "nodev", "ro"]
                .map(String::from)
                .to_vec(),
        )
        .build()
        .map_err(|e| Error::Other(format!("notify mount: {e}")))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    if let Some(mut process) = spec.process().clone() {
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(format!("NOTIFY_SOCKET={IN_CONTAINER_DIR}/{SOCKET}"));
        process.set_env(Some(env));
        spec.set_process(Some(process));
    }
    Ok(())
}

/// The container's socket, bound at start before the process runs.
pub struct Relay {
    socket: UnixDatagram,
    host: String,
}

/// At start: binds the container's socket, if create prepared one and berth still has a
/// NOTIFY_SOCKET to relay to.
pub fn bind(state_dir: &Path) -> Result<Option<Relay>> {
    let (Some(host), true) = (host_socket(), state_dir.join(DIR).is_dir()) else {
        return Ok(None);
    };
    let path: PathBuf = state_dir.join(DIR).join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let socket =
        UnixDatagram::bind(&path).map_err(|e| Error::io("bind the notify socket", &path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| Error::io("open the notify socket to the process", &path, e))?;
    Ok(Some(Relay { socket, host }))
}

impl Relay {
    /// Waits for READY from the container (relayed with MAINPID) or for the init to exit.
    pub fn wait_ready(&self, init_pidfd: &impl AsFd, init_pid: i32) -> Result<()> {
        let mut buf = vec![0u8; 4096];
        loop {
            let mut fds = [
                PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
                PollFd::new(init_pidfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::sys("wait for the container's READY", e)),
                Ok(_) => {}
            }
            let msg_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
            let exited = fds[1].revents().is_some_and(|r| !r.is_empty());
            if msg_ready {
                let n = self
                    .socket
                    .recv(&mut buf)
                    .map_err(|e| Error::io("read the notify socket", &self.host, e))?;
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = text.lines().find(|l| l.starts_with("READY=")) {
                    return self.send(&format!("{line}\nMAINPID={init_pid}\n"));
                }
            } else if exited {
                return Ok(());
            }
        }
    }

    fn send(&self, msg: &str) -> Result<()> {
        let out =
            UnixDatagram::unbound().map_err(|e| Error::io("notify the host", &self.host, e))?;
        let sent = match self.host.strip_prefix('@') {
            // An abstract socket, as systemd may hand out.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|a| out.send_to_addr(msg.as_bytes(), &a))
            }
            None => out.send_to(msg.as_bytes(), &self.host),
        };
        sent.map(drop)
            .map_err(|e| Error::io("notify the host", &self.host, e))
    }
}
