//! The sync protocol between `berth` (the parent, P), the stage process (S) and the container's
//! init (I). One SOCK_SEQPACKET socketpair per spawn: each message is one JSON-encoded `Msg`
//! in one packet, so boundaries survive; file descriptors ride along as SCM_RIGHTS.
//!
//! ```text
//! S -> P  MapIds                 S made a user namespace; P writes uid_map/gid_map
//! P -> S  MapsDone
//! S -> P  InitPid{pid}           S cloned I (as P's child) and is about to exit
//! P -> I  Go{state}              I is in its cgroup; state is the JSON handed to hooks
//! I -> P  HooksPlease            mounts done: P runs prestart and createRuntime hooks
//! P -> I  HooksDone
//! I -> P  SeccompFd + fd         I loaded a notifying seccomp filter: P hands the fd to the agent
//! P -> I  SeccompDone
//! I -> P  Ready                  everything but execve is done; I waits on the exec fifo
//! S|I -> P Error{step, text}     a step failed; the sender exits
//! ```
//! EOF on P's end before Ready means the child died; the socket is CLOEXEC, so after execve
//! it closes by itself.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Msg {
    MapIds,
    MapsDone,
    InitPid { pid: i32 },
    Go { state: String },
    HooksPlease,
    HooksDone,
    SeccompFd,
    SeccompDone,
    Ready,
    Error { step: String, text: String },
}

impl Msg {
    fn name(&self) -> &'static str {
        match self {
            Msg::MapIds => "MapIds",
            Msg::MapsDone => "MapsDone",
            Msg::InitPid { .. } => "InitPid",
            Msg::Go { .. } => "Go",
            Msg::HooksPlease => "HooksPlease",
            Msg::HooksDone => "HooksDone",
            Msg::SeccompFd => "SeccompFd",
            Msg::SeccompDone => "SeccompDone",
            Msg::Ready => "Ready",
            Msg::Error { .. } => "Error",
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

const MAX_MSG: usize = 1 << 20;

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
        let data = serde_json::to_vec(msg).map_err(|e| Error::Protocol(e.to_string()))?;
        let iov = [IoSlice::new(&data)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
            .map_err(|e| Error::Protocol(format!("send {}: {e}", msg.name())))?;
        Ok(())
    }

    /// Receives one message; `None` on EOF (the peer is gone).
    pub fn recv(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MSG];
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

    /// Receives the message `want` names; a child's Error becomes this side's error, EOF means
    /// the child died.
    pub fn expect(&self, want: &'static str) -> Result<Msg> {
        self.expect_one_of(&[want]).map(|(m, _)| m)
    }

    /// Like `expect`, for a step where any of `wants` may come; returns the fds it carried.
    pub fn expect_one_of(&self, wants: &[&'static str]) -> Result<(Msg, Vec<OwnedFd>)> {
        match self.recv()? {
            None => Err(Error::Child(format!(
                "container process exited before sending {}",
                wants.join(" or ")
            ))),
            Some((Msg::Error { step, text }, _)) => Err(Error::Child(format!("{step}: {text}"))),
            Some((m, fds)) if wants.contains(&m.name()) => Ok((m, fds)),
            Some((m, _)) => Err(Error::Protocol(format!(
                "expected {}, received {}",
                wants.join(" or "),
                m.name()
            ))),
        }
    }
}
