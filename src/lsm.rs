//! Linux security modules: `process.apparmorProfile`, `process.selinuxLabel` and
//! `linux.mountLabel`.
//!
//! Both labels are exec labels: the init writes them into its own procfs attributes just before
//! the program runs, and the kernel applies them at execve. A host without the LSM cannot apply
//! them; as runc does, that is a debug record, not an error (`features` says which LSMs the host
//! has). Attribute files are opened without following links and checked to be procfs, so a
//! bundle that mounts something over /proc cannot redirect the write.

use std::path::Path;

use crate::error::{Error, Result};
use crate::logging;

/// AppArmor is enabled: the module is loaded and says so.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// The kernel has per-LSM attribute directories (/proc/<pid>/attr/apparmor/, Linux 5.1+).
fn apparmor_attr_dir() -> bool {
    crate::procfs::ProcRoot::open()
        .and_then(|p| p.open_dir("thread-self/attr/apparmor"))
        .is_ok()
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
    pub fn apply_exec(&self) -> Result<()> {
        if let Some(p) = &self.apparmor {
            // The LSM-specific file first (kernels with LSM stacking), then the shared one.
            let line = format!("exec {p}");
            // The LSM's own file where the kernel has it (LSM stacking), else the shared one.
            let attr = if apparmor_attr_dir() {
                "apparmor/exec"
            } else {
                "exec"
            };
            write_attr(attr, &line)
                .map_err(|e| Error::config("process.apparmorProfile", format!("{p:?}: {e}")))?;
        }
        if let Some(l) = &self.selinux {
            write_attr("exec", l)
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

/// Writes /proc/thread-self/attr/<name> through a verified procfs (see `procfs`): a bundle's
/// mount over /proc or any attr file cannot redirect or swallow the label.
fn write_attr(name: &str, value: &str) -> Result<()> {
    crate::procfs::write(&format!("thread-self/attr/{name}"), value.as_bytes())
}
