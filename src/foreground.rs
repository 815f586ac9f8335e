//! Foreground `run`: wait for the container's init, forward signals to it, and, when it has a
//! terminal and the caller gave no console socket, proxy the pty to berth's own stdio (with the
//! caller's terminal in raw mode), as `runc run` does.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{read, write, Pid};

use crate::error::{Error, Result, SysContext};

/// A console socket berth listens on itself, removed when dropped.
pub struct OwnConsole {
    pub path: PathBuf,
    listener: UnixListener,
}

impl OwnConsole {
    pub fn new(id: &str) -> Result<OwnConsole> {
        let path =
            std::env::temp_dir().join(format!("berth-console-{}-{id}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(|e| Error::io("console socket", &path, e))?;
        Ok(OwnConsole { path, listener })
    }

    /// Receives the pty master the init sent during create.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| Error::io("console socket", &self.path, e))?;
        let chan = crate::channel::Channel::from_fd(OwnedFd::from(stream));
        chan.recv_raw_fd()?
            .ok_or_else(|| Error::Other("the container sent no pty master".into()))
    }
}

impl Drop for OwnConsole {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Restores the caller's terminal settings when dropped.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_winsize(master: &OwnedFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we own; TIOCSWINSZ reads it.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The signals a foreground run forwards to the container (SIGCHLD tells it to reap).
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// Waits for `pid` (our child) and returns its exit status, 128+signal when killed. The
/// forwarded signals must already be blocked.
pub fn wait(pid: i32, master: Option<OwnedFd>) -> Result<i32> {
    let sigfd =
        SignalFd::with_flags(&forwarded_signals(), SfdFlags::SFD_CLOEXEC).step("signalfd")?;
    let _raw = master.as_ref().map(|m| {
        copy_winsize(m);
        RawMode::enter()
    });
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = [0u8; 8192];
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => {
                drain(master.as_ref(), master_open, &mut buf);
                return Ok(c);
            }
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) => {}
            Err(e) => return Err(Error::sys("wait for the container", e)),
        }
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = master.as_ref().filter(|_| master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(info)) = sigfd.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    match (sig, master.as_ref()) {
                        (Signal::SIGCHLD, _) => {}
                        (Signal::SIGWINCH, Some(m)) => copy_winsize(m),
                        _ => {
                            let _ = kill(Pid::from_raw(pid), sig);
                        }
                    }
                }
            }
        }
        let Some(m) = master.as_ref() else { continue };
        let mut i = 1;
        if master_open {
            if ready[i] {
                match read(m.as_raw_fd(), &mut buf) {
                    Ok(n) if n > 0 => write_all(1, &buf[..n]),
                    _ => master_open = false,
                }
            }
            i += 1;
        }
        if stdin_open && ready.get(i).copied().unwrap_or(false) {
            match read(0, &mut buf) {
                Ok(n) if n > 0 => write_all(m.as_raw_fd(), &buf[..n]),
                _ => stdin_open = false,
            }
        }
    }
}

fn drain(master: Option<&OwnedFd>, open: bool, buf: &mut [u8]) {
    let Some(m) = master.filter(|_| open) else {
        return;
    };
    let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
    while poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        match read(m.as_raw_fd(), buf) {
            Ok(n) if n > 0 => write_all(1, &buf[..n]),
            _ => break,
        }
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    // SAFETY: fd is open for the duration of the call.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match write(bfd, data) {
            Ok(n) if n > 0 => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            _ => return,
        }
    }
}
