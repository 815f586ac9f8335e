//! Pure-logic tests: no root, no containers.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use berth::cgroups::resolve_path;
use berth::rootfs::{mount_options, v1_mount_data};
use berth::safepath::{normalise, walk, Root};
use berth::signals::parse_signal;
use berth::state::{parse_stat_start_time, validate_id};
use nix::mount::MsFlags;
use nix::sys::signal::Signal;
use std::os::fd::AsFd;

#[test]
fn signals_by_name_and_number() {
    assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL as i32);
    assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL as i32);
    assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM as i32);
    assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL as i32);
    assert_eq!(parse_signal("10").unwrap(), Signal::SIGUSR1 as i32);
    // 0 probes the process; real-time signals have numbers only.
    assert_eq!(parse_signal("0").unwrap(), 0);
    assert_eq!(parse_signal("34").unwrap(), 34);
    assert!(parse_signal("NOPE").is_err());
    assert!(parse_signal("-1").is_err());
    assert!(parse_signal("99").is_err());
}

#[test]
fn container_ids() {
    for ok in ["a", "abc-123", "x.y_z+1", &"a".repeat(255)] {
        assert!(validate_id(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "a b",
        "a\0b",
        &"a".repeat(256),
    ] {
        assert!(validate_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn stat_start_time_survives_odd_command_names() {
    let stat = "1234 (a) b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
    assert_eq!(parse_stat_start_time(stat), Some((98765, false)));
    let zombie = "1 (x) Z 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0";
    assert_eq!(parse_stat_start_time(zombie), Some((42, true)));
    assert_eq!(parse_stat_start_time("garbage"), None);
}

#[test]
fn mount_option_parsing() {
    let o = |v: &[&str]| mount_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let m = o(&["ro", "nosuid", "nodev", "mode=755", "size=64k"]).unwrap();
    assert!(m
        .flags
        .contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
    assert_eq!(m.data, vec!["mode=755", "size=64k"]);
    let m = o(&["rbind", "rprivate"]).unwrap();
    assert!(m.bind && m.flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
    assert_eq!(m.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    let m = o(&["bind", "shared"]).unwrap();
    assert_eq!(m.propagation, MsFlags::MS_SHARED);
    let m = o(&["ro", "rw"]).unwrap();
    assert!(!m.flags.contains(MsFlags::MS_RDONLY));
    let m = o(&["rro", "rnosuid"]).unwrap();
    assert_ne!(m.recursive_set, 0);
    assert!(o(&["idmap"]).is_err());
}

#[test]
fn cgroup_paths() {
    let p = |c: Option<&str>, sd| resolve_path(c.map(Path::new), "ct", sd);
    assert_eq!(p(None, false).unwrap(), PathBuf::from("/ct"));
    assert_eq!(p(Some("/a/b"), false).unwrap(), PathBuf::from("/a/b"));
    assert_eq!(p(Some("a/b"), false).unwrap(), PathBuf::from("/a/b"));
    assert!(p(Some("/a/../b"), false).is_err());
    assert_eq!(
        p(Some("system.slice:berth:ct"), true).unwrap(),
        PathBuf::from("/system.slice/berth-ct.scope")
    );
    assert_eq!(
        p(Some("a-b.slice:pre:x"), true).unwrap(),
        PathBuf::from("/a.slice/a-b.slice/pre-x.scope")
    );
    assert_eq!(
        p(None, true).unwrap(),
        PathBuf::from("/system.slice/berth-ct.scope")
    );
    assert!(p(Some("/not/systemd"), true).is_err());
}

/// Same (dev, ino) as the host path: what a resolved handle really is.
fn id_of_fd(fd: &impl std::os::fd::AsRawFd) -> (u64, u64) {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).unwrap();
    (st.st_dev, st.st_ino)
}

fn id_of(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.dev(), m.ino())
}

#[test]
fn paths_resolve_inside_root_with_openat2_and_the_walk() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("etc/x")).unwrap();
    std::fs::create_dir_all(root.join("a/c")).unwrap();
    std::fs::create_dir_all(root.join("x")).unwrap();
    symlink("/etc", root.join("abs")).unwrap();
    symlink("../../../../etc", root.join("rel")).unwrap();
    symlink("loop", root.join("loop")).unwrap();
    let r = Root::open(root).unwrap();
    let cases = [
        ("/abs/x", "etc/x"),
        ("rel/x", "etc/x"),
        ("/../../x", "x"),
        ("a/./c/../c", "a/c"),
    ];
    for (p, want) in cases {
        let via_kernel = r.resolve(Path::new(p)).unwrap();
        assert_eq!(
            id_of_fd(&via_kernel),
            id_of(&root.join(want)),
            "openat2 {p}"
        );
    }
    // The component-by-component walk (kernels without openat2) agrees.
    let dir = std::fs::File::open(root).unwrap();
    for (p, want) in &cases {
        let walked = walk(dir.as_fd(), Path::new(p), false).unwrap();
        assert_eq!(id_of_fd(&walked), id_of(&root.join(want)), "walk {p}");
    }
    assert!(r.resolve(Path::new("/loop/x")).is_err());
    assert!(walk(dir.as_fd(), Path::new("/loop/x"), false).is_err());
    assert!(r.resolve_no_symlinks(Path::new("/abs/x")).is_err());
    assert!(walk(dir.as_fd(), Path::new("/abs/x"), true).is_err());
    assert_eq!(
        normalise(Path::new("/dev/../etc/evil")),
        Path::new("/etc/evil")
    );
}

#[test]
fn timestamps_are_rfc3339() {
    assert_eq!(
        berth::logging::rfc3339(0, 0),
        "1970-01-01T00:00:00.000000000Z"
    );
    assert_eq!(
        berth::logging::rfc3339(1_700_000_000, 5),
        "2023-11-14T22:13:20.000000005Z"
    );
}

fn spec_from(json: &str) -> oci_spec::runtime::Spec {
    serde_json::from_str(json).unwrap()
}

const BASE: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
 "process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
 "linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#;

fn with(f: impl FnOnce(&mut serde_json::Value)) -> oci_spec::runtime::Spec {
    let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
    f(&mut v);
    spec_from(&v.to_string())
}

#[test]
fn validation_names_the_field() {
    let err = |s: oci_spec::runtime::Spec| berth::bundle::validate(&s).unwrap_err().to_string();
    assert!(berth::bundle::validate(&with(|_| {})).is_ok());
    assert!(err(with(
        |v| v["linux"]["namespaces"] = serde_json::json!([{"type":"mount"},{"type":"mount"}])
    ))
    .contains("linux.namespaces"));
    assert!(err(with(
        |v| v["linux"]["namespaces"] =
            serde_json::json!([{"type":"mount"},{"type":"network","path":"rel/x"}])
    ))
    .contains("not absolute"));
    // No mount namespace: the container shares the runtime's (allowed by the spec).
    assert!(berth::bundle::validate(&with(
        |v| v["linux"]["namespaces"] = serde_json::json!([{"type":"pid"}])
    ))
    .is_ok());
    // What berth cannot apply is refused by name.
    assert!(err(with(
        |v| v["linux"]["intelRdt"] = serde_json::json!({"closID": "x"})
    ))
    .contains("linux.intelRdt"));
    assert!(err(with(|v| v["process"]["rlimits"] = serde_json::json!([
        {"type":"RLIMIT_NOFILE","soft":1,"hard":1},{"type":"RLIMIT_NOFILE","soft":2,"hard":2}])))
    .contains("process.rlimits"));
    assert!(err(with(|v| v["hostname"] = serde_json::json!("h"))).contains("hostname"));
    assert!(err(with(|v| v["process"]["cwd"] = serde_json::json!("rel"))).contains("process.cwd"));
    assert!(err(with(
        |v| v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward":"1"})
    ))
    .contains("linux.sysctl"));
    assert!(err(with(
        |v| v["linux"]["sysctl"] = serde_json::json!({"vm.swappiness":"1"})
    ))
    .contains("host"));
    assert!(err(with(|v| v["linux"]["uidMappings"] =
        serde_json::json!([{"containerID":0,"hostID":1000,"size":1}])))
    .contains("user namespace"));
    assert!(err(with(|v| v["ociVersion"] = serde_json::json!("2.0.0"))).contains("ociVersion"));
}

#[test]
fn default_spec_is_valid() {
    for rootless in [false, true] {
        let v = berth::spec::default_spec(rootless);
        let s: oci_spec::runtime::Spec = serde_json::from_value(v).unwrap();
        berth::bundle::validate(&s).unwrap();
    }
}

#[test]
fn cgroup_v1_mount_data_names_the_hierarchy() {
    let proc_cgroups = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                        cpu\t1\t1\t1\ncpuacct\t2\t1\t1\nmemory\t4\t3\t1\nnet_cls\t5\t1\t1\n";
    assert_eq!(v1_mount_data("rw,memory", proc_cgroups), "memory");
    assert_eq!(v1_mount_data("rw,cpu,cpuacct", proc_cgroups), "cpu,cpuacct");
    assert_eq!(
        v1_mount_data("rw,xattr,name=systemd", proc_cgroups),
        "name=systemd"
    );
    assert_eq!(v1_mount_data("rw,relatime", proc_cgroups), "none");
}

/// The program create keeps for exec reads back exactly, and anything else is not taken for it
/// (exec then compiles the profile again).
#[test]
fn kept_seccomp_program_round_trip() {
    let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}]}"#,
    )
    .unwrap();
    let f = berth::seccomp::compile(&profile).unwrap();
    let bytes = f.to_bytes().unwrap();
    let back = berth::seccomp::Filter::from_bytes(&bytes).unwrap();
    assert_eq!(back.flags, f.flags);
    assert_eq!(back.program.len(), f.program.len());
    for (a, b) in back.program.iter().zip(&f.program) {
        assert_eq!((a.code, a.jt, a.jf, a.k), (b.code, b.jt, b.jf, b.k));
    }
    assert!(berth::seccomp::Filter::from_bytes(&bytes[..bytes.len() - 3]).is_none());
    assert!(berth::seccomp::Filter::from_bytes(b"{\"not\": \"a program\"}").is_none());
    let header_only = &bytes[..bytes.len() - f.program.len() * 8];
    assert!(berth::seccomp::Filter::from_bytes(header_only).is_none());
}
