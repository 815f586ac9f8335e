//! Bundle builder: a busybox rootfs plus a config.json derived from a base
//! template modelled on `runc spec`.

use serde_json::{json, Value};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

pub const BUSYBOX: &str = "/bin/busybox";

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "true", "false", "hostname", "id", "mount", "ps", "grep",
    "test", "touch", "mkdir", "env", "pwd", "kill", "stat", "readlink", "wc", "head",
];

const DIRS: &[&str] = &[
    "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "shared", "mnt",
];

pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub config: Value,
}

pub fn base_config(args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth-it",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

impl Bundle {
    /// Build `dir/rootfs` and an in-memory config (not yet written).
    pub fn new(dir: &Path, runtimetest: &Path, args: &[&str]) -> io::Result<Bundle> {
        let rootfs = dir.join("rootfs");
        for d in DIRS {
            fs::create_dir_all(rootfs.join(d))?;
        }
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
        fs::copy(BUSYBOX, rootfs.join("bin/busybox"))?;
        for a in APPLETS {
            symlink("busybox", rootfs.join("bin").join(a))?;
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:1000:1000:nobody:/home:/bin/sh\n",
        )?;
        fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\ntty:x:5:\nusers:x:100:\nnobody:x:1000:\n",
        )?;
        if runtimetest.is_file() {
            fs::copy(runtimetest, rootfs.join("runtimetest"))?;
            fs::set_permissions(
                rootfs.join("runtimetest"),
                fs::Permissions::from_mode(0o755),
            )?;
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            rootfs,
            config: base_config(args),
        })
    }

    /// Write config.json into the bundle and a copy as /config.json in the rootfs.
    pub fn write(&self) -> io::Result<()> {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        fs::write(self.dir.join("config.json"), &text)?;
        fs::write(self.rootfs.join("config.json"), &text)?;
        Ok(())
    }

    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
    }

    pub fn push_env(&mut self, kv: &str) {
        if let Some(a) = self.config["process"]["env"].as_array_mut() {
            a.push(json!(kv));
        }
    }

    pub fn add_mount(&mut self, m: Value) {
        if let Some(a) = self.config["mounts"].as_array_mut() {
            a.push(m);
        }
    }

    /// Bind-mount a host directory read-write at /shared in the container.
    pub fn add_shared(&mut self, host: &Path) {
        self.add_mount(json!({
            "destination": "/shared", "type": "bind",
            "source": host.to_string_lossy(), "options": ["rbind", "rw"]
        }));
    }

    /// Replace the namespace list: (type, optional path).
    pub fn set_namespaces(&mut self, list: &[(&str, Option<&str>)]) {
        let v: Vec<Value> = list
            .iter()
            .map(|(t, p)| match p {
                Some(p) => json!({"type": t, "path": p}),
                None => json!({"type": t}),
            })
            .collect();
        self.config["linux"]["namespaces"] = Value::Array(v);
    }

    pub fn add_hook(&mut self, kind: &str, hook: Value) {
        let hooks = &mut self.config["hooks"];
        if !hooks.is_object() {
            *hooks = json!({});
        }
        let list = &mut hooks[kind];
        if !list.is_array() {
            *list = json!([]);
        }
        list.as_array_mut().unwrap().push(hook);
    }

    /// Recursively lchown the rootfs (for user-namespace cases).
    pub fn chown_rootfs(&self, uid: u32, gid: u32) -> io::Result<()> {
        chown_tree(&self.rootfs, uid, gid)
    }
}

fn chown_tree(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
    let md = fs::symlink_metadata(p)?;
    if md.is_dir() {
        for e in fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}
