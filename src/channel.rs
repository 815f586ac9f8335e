//! The sync protocol between `berth` (the parent, P), the stage process (S) and the container's
//! init (I). One SOCK_SEQPACKET socketpair per spawn: each message is one JSON-encoded `Msg`
//! in one packet, so boundaries survive; file descriptors ride along as SCM_RIGHTS.
//!
//! ```text
//! S -> P  MapIds                 S made a user namespace; P writes uid_map/gid_map
//! P -> S  MapsDone
//! S -> P  InitPid{pid}           S cloned I (as P's child) and is about to exit
//! P -> I  Go{pid}                I is in its cgroup; pid is its host pid (for hooks' state)
//! I -> P  HooksPlease            mounts done: P runs prestart and createRuntime hooks
//! P -> I  HooksDone
//! I -> P  SeccompFd + fd         I loaded a notifying seccomp filter: P hands the fd to the agent
//! P -> I  SeccompDone
//! I -> P  Ready                  everything but execve is done; I waits on the exec fifo
//! S|I -> P Error(ChildError)      a step failed (step, field, call, errno); the sender exits
//! ```
//! EOF on P's end before Ready means the child died; the socket is CLOEXEC, so after execve
//! it closes by itself. Messages are matched by their `Kind`, never by name strings, and every
//! send is a fault point (`sync: send <Kind>`).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::error::{ChildError, Error, Result};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Msg {
    MapIds,
    MapsDone,
    InitPid { pid: i32 },
    Go { pid: i32 },
    HooksPlease,
    HooksDone,
    SeccompFd,
    SeccompDone,
    Ready,
    Error(Box<ChildError>),
}

/// A message's kind, to say which one a step waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MapIds,
    MapsDone,
    InitPid,
    Go,
    HooksPlease,
    HooksDone,
    SeccompFd,
    SeccompDone,
    Ready,
    Error,
}

impl Msg {
    pub fn kind(&self) -> Kind {
        match self {
            Msg::MapIds => Kind::MapIds,
            Msg::MapsDone => Kind::MapsDone,
            Msg::InitPid { .. } => Kind::InitPid,
            Msg::Go { .. } => Kind::Go,
            Msg::HooksPlease => Kind::HooksPlease,
            Msg::HooksDone => Kind::HooksDone,
            Msg::SeccompFd => Kind::SeccompFd,
            Msg::SeccompDone => Kind::SeccompDone,
            Msg::Ready => Kind::Ready,
            Msg::Error(_) => Kind::Error,
        }
    }
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("create sync socketpair", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

/// Messages are small (the largest is an error with a path or two in it).
const MAX_MSG: usize = 64 << 10;

impl Channel {
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with_fds(msg, &[])
    }

    pub fn send_with_fds(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        crate::fault::point_with(|| format!("sync: send {:?}", msg.kind()))?;
        let data = serde_json::to_vec(msg).map_err(|e| Error::Protocol(e.to_string()))?;
        let iov = [IoSlice::new(&data)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
            .map_err(|e| Error::Protocol(format!("send {:?}: {e}", msg.kind())))?;
        Ok(())
    }

    /// Like `recv`, but also `None` once `process` (a pidfd) has exited with nothing left to
    /// read: for a peer whose end of the socket a process of its own also holds (the stage's
    /// init), so that the peer's death is not hidden behind that copy.
    pub fn recv_while_alive(&self, process: &OwnedFd) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let mut fds = [
                PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(process.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::Protocol(format!("wait for a message: {e}"))),
                Ok(_) => {}
            }
            let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            if ready(&fds[0]) {
                return self.recv();
            }
            if ready(&fds[1]) {
                return Ok(None);
            }
        }
    }

    /// Receives one message; `None` on EOF (the peer is gone).
    pub fn recv(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        // The packet's size first (MSG_PEEK|MSG_TRUNC waits for it and reports its whole
        // length): the buffer is then just that big, not MAX_MSG zeroed for a 20-byte Go.
        let size = loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(n) => break n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::Protocol(format!("receive: {e}"))),
            }
        };
        if size > MAX_MSG {
            return Err(Error::Protocol(format!(
                "a {size}-byte message: more than the {MAX_MSG} bytes allowed"
            )));
        }
        // One spare byte: a packet that still fills it grew between the peek and the read.
        let mut buf = vec![0u8; size.max(1) + 1];
        let mut cmsg_buf = nix::cmsg_space!([RawFd; 4]);
        let (len, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_buf),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                // SAFETY: the kernel just installed these fds for us.
                                fds.extend(
                                    raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }),
                                );
                            }
                        }
                    }
                    break (m.bytes, fds);
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::Protocol(format!("receive: {e}"))),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len])
            .map_err(|e| Error::Protocol(format!("bad message: {e}")))?;
        Ok(Some((msg, fds)))
    }

    /// Receives one packet of any content and returns the first fd it carried (the console
    /// socket protocol: a name plus the pty master).
    pub fn recv_raw_fd(&self) -> Result<Option<OwnedFd>> {
        let mut buf = [0u8; 4096];
        let mut cmsg_buf = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let m = recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::Protocol(format!("receive: {e}")))?;
        let mut fds = Vec::new();
        if let Ok(cmsgs) = m.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these fds for us.
                    fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                }
            }
        }
        Ok(fds.into_iter().next())
    }

    /// The error the peer sent, if one is waiting (without blocking): a child that failed
    /// while this side was busy says why here.
    pub fn child_error(&self) -> Option<Error> {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&self.fd),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
        match self.recv() {
            Ok(Some((Msg::Error(e), _))) => Some(Error::Child(e)),
            _ => None,
        }
    }

    /// Receives the message of kind `want`; a child's Error becomes this side's error, EOF
    /// means the child died.
    pub fn expect(&self, want: Kind) -> Result<Msg> {
        self.expect_one_of(&[want]).map(|(m, _)| m)
    }

    /// Like `expect`, for a step where any of `wants` may come; returns the fds it carried.
    pub fn expect_one_of(&self, wants: &[Kind]) -> Result<(Msg, Vec<OwnedFd>)> {
        match self.recv()? {
            None => Err(Error::ChildGone(format!(
                "container process exited before sending {wants:?}"
            ))),
            Some((Msg::Error(e), _)) => Err(Error::Child(e)),
            Some((m, fds)) if wants.contains(&m.kind()) => Ok((m, fds)),
            Some((m, _)) => Err(Error::Protocol(format!(
                "expected {wants:?}, received {:?}",
                m.kind()
            ))),
        }
    }
}
