//! Linux security modules: `process.apparmorProfile`, `process.selinuxLabel` and
//! `linux.mountLabel`.
//!
//! Both labels are exec labels: the init writes them into its own procfs attributes just before
//! the program runs, and the kernel applies them at execve. A host without the LSM cannot apply
//! them; as runc does, that is a debug record, not an error (`features` says which LSMs the host
//! has). Attribute files are written through `procfs` (a verified procfs root, no symlink
//! followed, no mount crossed), so a bundle that mounts something over them cannot redirect
//! the write.

use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::{logging, procfs};

/// AppArmor is enabled: the module is loaded and says so.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// SELinux is enabled: its filesystem is mounted.
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Checks what the host can do with the config's labels before anything is made: a label for
/// an LSM the host lacks is logged and left out (runc's behaviour).
pub fn plan(apparmor: Option<&str>, selinux: Option<&str>, mount_label: Option<&str>) -> Labels {
    let aa = apparmor.filter(|p| !p.is_empty()).map(str::to_string);
    let se = selinux.filter(|p| !p.is_empty()).map(str::to_string);
    let ml = mount_label.filter(|p| !p.is_empty()).map(str::to_string);
    let aa_on = apparmor_enabled();
    let se_on = selinux_enabled();
    if aa.is_some() && !aa_on {
        logging::debug(
            "process.apparmorProfile: AppArmor is not enabled on this host; not applied",
        );
    }
    if !se_on {
        if se.is_some() {
            logging::debug(
                "process.selinuxLabel: SELinux is not enabled on this host; not applied",
            );
        }
        if ml.is_some() {
            logging::debug("linux.mountLabel: SELinux is not enabled on this host; not applied");
        }
    }
    Labels {
        apparmor: aa.filter(|_| aa_on),
        selinux: se.filter(|_| se_on),
        mount: ml.filter(|_| se_on),
    }
}

/// The labels this host will apply.
#[derive(Debug, Default, Clone)]
pub struct Labels {
    pub apparmor: Option<String>,
    pub selinux: Option<String>,
    pub mount: Option<String>,
}

impl Labels {
    /// Sets the exec labels; call in the init, after pivot_root, before the user switch.
    /// The attributes are written through [`procfs`], so a bundle mount over them (or over a
    /// directory on the way) makes this fail instead of taking the write and leaving the
    /// process unlabelled.
    pub fn apply_exec(&self) -> Result<()> {
        if self.apparmor.is_none() && self.selinux.is_none() {
            return Ok(());
        }
        let proc = procfs::ProcRoot::open()?;
        if let Some(p) = &self.apparmor {
            let refuse = |e: &dyn std::fmt::Display| {
                Error::config("process.apparmorProfile", format!("{p:?}: {e}"))
            };
            // The LSM-specific file (kernels since 5.8), else the shared one.
            let mut f = match proc.open_write("thread-self/attr/apparmor/exec") {
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                    proc.open_write("thread-self/attr/exec")
                }
                other => other,
            }
            .map_err(|e| refuse(&e))?;
            f.write_all(format!("exec {p}").as_bytes())
                .map_err(|e| match e.kind() {
                    ErrorKind::NotFound => refuse(&"no AppArmor profile of that name is loaded"),
                    _ => refuse(&e),
                })?;
        }
        if let Some(l) = &self.selinux {
            proc.write("thread-self/attr/exec", l.as_bytes())
                .map_err(|e| Error::config("process.selinuxLabel", format!("{l:?}: {e}")))?;
        }
        Ok(())
    }

    /// The mount data with the SELinux mount label added (`context="…"`).
    pub fn mount_data(&self, data: &str) -> String {
        match &self.mount {
            Some(l) if data.is_empty() => format!("context=\"{l}\""),
            Some(l) => format!("{data},context=\"{l}\""),
            None => data.to_string(),
        }
    }
}
