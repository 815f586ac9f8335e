//! `berth features`: what this build implements, in the OCI runtime spec's features.md shape.
//! Every list comes from the table the code itself applies (mount options from `rootfs`,
//! seccomp values from `seccomp`, namespaces, hooks, the capability names berth parses), so
//! the report cannot drift from the behaviour; host facts (LSMs, kernel seccomp flags) are
//! probed.

use std::collections::HashMap;

use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, Features, FeaturesBuilder, IDMapBuilder, IntelRdtBuilder,
    LinuxFeatureBuilder, MountExtensionsBuilder, SeccompBuilder, SelinuxBuilder,
};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::{hooks, lsm, namespaces, rootfs, seccomp, state, version};

/// The oldest spec version whose configs berth runs.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// The features of this build on this host.
pub fn features() -> Result<Features> {
    let err = |e: oci_spec::OciSpecError| Error::Other(format!("features: {e}"));
    let mut caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    caps.sort();
    let known_flags = seccomp::SPEC_FLAGS;
    let seccomp = SeccompBuilder::default()
        .enabled(true)
        .actions(seccomp::supported_actions())
        .operators(
            seccomp::SPEC_OPERATORS
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>(),
        )
        .archs(seccomp::APPLIED_ARCHES.to_vec())
        .known_flags(
            known_flags
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
        )
        .supported_flags(
            known_flags
                .iter()
                .filter(|f| seccomp::flag_supported(**f))
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(err)?;
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces::ALL.to_vec())
        .capabilities(caps)
        // Limits and device rules are berth's own cgroupfs writes (cgroups::limits, and
        // cgroups::devices: devices.allow/deny on v1, an eBPF program on v2). `--systemd-cgroup`
        // makes the cgroup a transient scope over D-Bus (cgroups::systemd), rootful only. rdma.max
        // is written where the host has the rdma controller, and refused naming the field where
        // it has not.
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(true)
                .systemd_user(false)
                .rdma(true)
                .build()
                .map_err(err)?,
        )
        .seccomp(seccomp)
        .apparmor(
            ApparmorBuilder::default()
                .enabled(lsm::apparmor_enabled())
                .build()
                .map_err(err)?,
        )
        .selinux(
            SelinuxBuilder::default()
                .enabled(lsm::selinux_enabled())
                .build()
                .map_err(err)?,
        )
        .intel_rdt(
            IntelRdtBuilder::default()
                .enabled(false)
                .build()
                .map_err(err)?,
        )
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(
                    IDMapBuilder::default()
                        .enabled(false)
                        .build()
                        .map_err(err)?,
                )
                .build()
                .map_err(err)?,
        )
        .build()
        .map_err(err)?;
    let annotations = HashMap::from([
        (
            "berth.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("berth.commit".to_string(), version::COMMIT.to_string()),
    ]);
    FeaturesBuilder::default()
        .oci_version_min(OCI_VERSION_MIN)
        .oci_version_max(state::OCI_VERSION)
        .hooks(
            hooks::Kind::ALL
                .iter()
                .map(|k| k.name().to_string())
                .collect::<Vec<_>>(),
        )
        .mount_options(rootfs::known_mount_options())
        .linux(linux)
        .annotations(annotations)
        .build()
        .map_err(err)
}

/// The features as JSON, without the fields berth has nothing to say about (null).
pub fn to_json(f: &Features) -> Result<Value> {
    let mut v = serde_json::to_value(f).map_err(|e| Error::Other(format!("features: {e}")))?;
    drop_nulls(&mut v);
    Ok(v)
}

fn drop_nulls(v: &mut Value) {
    if let Value::Object(map) = v {
        map.retain(|_, x| !x.is_null());
        map.values_mut().for_each(drop_nulls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_spec_shape() {
        let v = to_json(&features().unwrap()).unwrap();
        assert_eq!(v["ociVersionMax"], state::OCI_VERSION);
        assert!(v["mountOptions"]
            .as_array()
            .unwrap()
            .contains(&Value::from("rbind")));
        let l = &v["linux"];
        assert!(l["namespaces"]
            .as_array()
            .unwrap()
            .contains(&Value::from("network")));
        assert!(l["capabilities"]
            .as_array()
            .unwrap()
            .contains(&Value::from("CAP_SYS_ADMIN")));
        assert_eq!(l["seccomp"]["actions"].as_array().unwrap().len(), 9);
        assert!(l["seccomp"]["operators"]
            .as_array()
            .unwrap()
            .contains(&Value::from("SCMP_CMP_MASKED_EQ")));
        assert!(l["seccomp"]["archs"]
            .as_array()
            .unwrap()
            .contains(&Value::from("SCMP_ARCH_X86_64")));
        assert_eq!(l["mountExtensions"]["idmap"]["enabled"], false);
        assert!(l.get("memoryPolicy").is_none(), "nulls are dropped");
    }

    #[test]
    fn listed_mount_options_are_all_parsed_by_berth() {
        for o in rootfs::known_mount_options() {
            let m = rootfs::mount_options(std::slice::from_ref(&o)).unwrap();
            assert!(m.data.is_empty(), "{o} went to the filesystem as data");
        }
        for o in rootfs::IDMAP_OPTIONS {
            assert!(rootfs::mount_options(&[o.to_string()]).is_err());
        }
    }
}
