//! `process.terminal`: the init makes a pty inside the container (on its own devpts), sends the
//! master to `--console-socket` and makes the slave its controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::{dup2, setsid};
use oci_spec::runtime::Box as ConsoleSize;

use crate::error::{Error, Result, SysContext};

/// Connects to the console socket in the host's mount namespace, before the fork.
pub fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| Error::io("connect to console socket", path, e))
}

/// /dev/console becomes the pty's slave, bound from the fd onto a handle resolved inside the
/// root.
fn bind_console(slave: RawFd) -> Result<()> {
    let root = crate::safepath::Root::open(Path::new("/"))?;
    let point = root.create_file(Path::new("/dev/console"))?;
    // A detached bind of the slave, attached onto the resolved file: no path is looked up.
    let pty = crate::sys::open_tree_clone_fd(slave).step("clone the pty for /dev/console")?;
    crate::sys::move_mount_fds(pty.as_raw_fd(), point.as_raw_fd())
        .step("bind the pty on /dev/console")
}

/// In the container, after pivot_root: new pty, master to the socket, slave as stdio (and, for
/// the init, on /dev/console).
pub fn setup(socket: &UnixStream, size: Option<&ConsoleSize>, on_dev_console: bool) -> Result<()> {
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
    // The peer comes from the master itself, never by name: a /dev/pts entry the container
    // replaced with a link cannot stand in for it (CVE-2025-52565).
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd for the pty's slave.
    let slave: RawFd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Error::sys(
            "open the pty's slave (TIOCGPTPEER)",
            nix::Error::last(),
        ));
    }
    drop(master);
    if on_dev_console {
        bind_console(slave)?;
    }
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
