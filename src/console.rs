//! `process.terminal`: the init makes a pty inside the container (on its own devpts), sends the
//! master to `--console-socket` and makes the slave its controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;
use nix::unistd::{dup2, setsid};
use oci_spec::runtime::Box as ConsoleSize;

use crate::error::{Error, Result, SysContext};

/// Connects to the console socket in the host's mount namespace, before the fork.
pub fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| Error::io("connect to console socket", path, e))
}

/// In the init, after pivot_root: new pty, master to the socket, slave as stdio.
pub fn setup(socket: &UnixStream, size: Option<&ConsoleSize>) -> Result<()> {
    let master =
        posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).step("open /dev/ptmx")?;
    grantpt(&master).step("grantpt")?;
    unlockpt(&master).step("unlockpt")?;
    let slave_name = ptsname_r(&master).step("ptsname")?;
    if let Some(size) = size {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a valid winsize struct from the pointer.
        let _ = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let name = slave_name.as_bytes();
    let iov = [IoSlice::new(name)];
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .step("send pty master to console socket")?;
    drop(master);
    let slave: RawFd = open(
        slave_name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_step(|| format!("open {slave_name}"))?;
    setsid().step("setsid")?;
    // SAFETY: TIOCSCTTY takes an int argument; slave is an open tty fd.
    if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::sys(
            "make the pty the controlling terminal",
            nix::Error::last(),
        ));
    }
    for fd in 0..3 {
        dup2(slave, fd).step("dup pty onto stdio")?;
    }
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    Ok(())
}
