//! berth: an OCI runtime. The binary's `main` parses the CLI and calls `lifecycle`; everything
//! that touches the kernel lives in the modules below.

pub mod bundle;
pub mod cgroups;
pub mod channel;
pub mod console;
pub mod copyup;
pub mod error;
pub mod events;
pub mod exec;
pub mod fault;
pub mod fds;
pub mod features;
pub mod foreground;
pub mod hooks;
pub mod init;
pub mod lifecycle;
pub mod logging;
pub mod lsm;
pub mod namespaces;
pub mod notify;
pub mod procfs;
pub mod ps;
pub mod rootfs;
pub mod safepath;
pub mod seccomp;
pub mod security;
pub mod selfexe;
pub mod signals;
pub mod spawn;
pub mod spec;
pub mod state;
pub mod sys;
pub mod update;
pub mod version;
