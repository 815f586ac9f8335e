//! `features`: every claim is checked against behaviour. Each listed mount option, seccomp
//! action, operator, architecture and flag is accepted by `create` (and the container is
//! deleted again); values the spec defines but the report leaves out are refused.

use super::{leftovers, Case, Ctx, R};
use crate::runtime::one_line;
use crate::{bail, ensure};
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::net::UnixListener;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "features/document",
            run: document,
        },
        Case {
            name: "features/mount_options",
            run: mount_options,
        },
        Case {
            name: "features/seccomp",
            run: seccomp,
        },
    ]
}

/// The spec's seccomp values (config-linux.md), to find what the report leaves out.
const SPEC_ACTIONS: [&str; 9] = [
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];
const SPEC_OPERATORS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

fn features(ctx: &Ctx) -> Result<Value, String> {
    let o = ctx.rt.exec(&["features"]);
    if !o.success() {
        return Err(format!("features: {}", o.brief()));
    }
    serde_json::from_str(&o.stdout).map_err(|e| {
        format!(
            "features output is not JSON ({e}): {}",
            one_line(&o.stdout, 200)
        )
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn document(ctx: &mut Ctx) -> R {
    let f = features(ctx)?;
    for k in ["ociVersionMin", "ociVersionMax"] {
        ensure!(f[k].is_string(), "features lacks {k}: {f}");
    }
    let st_version = {
        let ct = ctx.container(&["true"])?;
        let o = ct.create();
        ensure!(o.success(), "create: {}", o.brief());
        let v = ct.state()?["ociVersion"].clone();
        let o = ct.delete(false);
        ensure!(o.success(), "delete: {}", o.brief());
        v
    };
    ensure!(
        f["ociVersionMax"] == st_version,
        "ociVersionMax {} is not the state's ociVersion {st_version}",
        f["ociVersionMax"]
    );
    let hooks = strings(&f["hooks"]);
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        ensure!(hooks.iter().any(|x| x == h), "hooks lack {h}: {hooks:?}");
    }
    let l = &f["linux"];
    let ns = strings(&l["namespaces"]);
    for n in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        ensure!(ns.iter().any(|x| x == n), "namespaces lack {n}: {ns:?}");
    }
    ensure!(
        strings(&l["capabilities"])
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN"),
        "capabilities lack CAP_SYS_ADMIN"
    );
    for k in ["v1", "v2", "systemd", "systemdUser", "rdma"] {
        ensure!(
            l["cgroup"][k].is_boolean(),
            "linux.cgroup.{k} is not a bool"
        );
    }
    for k in ["apparmor", "selinux", "intelRdt"] {
        ensure!(
            l[k]["enabled"].is_boolean(),
            "linux.{k}.enabled is not a bool"
        );
    }
    // No id-mapped mounts: the report must not claim them, and create must refuse them.
    if l["mountExtensions"]["idmap"]["enabled"] != json!(true) {
        let mut ct = ctx.container(&["true"])?;
        let src = ctx.dir("idmap-src");
        ct.b.add_mount(json!({"destination": "/idm", "type": "bind",
            "source": src.to_string_lossy(), "options": ["rbind", "idmap"]}));
        let o = ct.create();
        ensure!(
            o.failed(),
            "create took an idmap mount the features deny: {}",
            o.brief()
        );
    }
    Ok(())
}

/// A container whose only extra mount has `opts`; returns create's outcome after deleting it.
fn try_mount(ctx: &mut Ctx, m: Value) -> Result<Result<(), String>, super::Fail> {
    let mut ct = ctx.container(&["true"])?;
    ct.b.add_mount(m);
    let o = ct.create();
    if !o.success() {
        let left = leftovers(ctx, &ct.id, &ct.b.dir);
        ensure!(left.is_empty(), "failed create left {left:?}");
        return Ok(Err(o.brief()));
    }
    let d = ct.delete(false);
    ensure!(d.success(), "delete: {}", d.brief());
    let left = leftovers(ctx, &ct.id, &ct.b.dir);
    ensure!(left.is_empty(), "delete left {left:?}");
    Ok(Ok(()))
}

fn mount_options(ctx: &mut Ctx) -> R {
    let f = features(ctx)?;
    let opts = strings(&f["mountOptions"]);
    ensure!(!opts.is_empty(), "no mountOptions in features");
    let src = ctx.dir("bind-src");
    let mut refused = Vec::new();
    for o in &opts {
        // Bind options need a bind mount; the rest go on a tmpfs of their own. `remount`
        // changes an existing mount, so it goes with a bind.
        let m = if o.contains("bind") || o == "remount" {
            let bind = if o.contains("bind") {
                o.as_str()
            } else {
                "bind"
            };
            let mut options = vec![bind];
            if o == "remount" {
                options.push("remount");
            }
            json!({"destination": "/opt-test", "type": "bind",
                   "source": src.to_string_lossy(), "options": options})
        } else {
            json!({"destination": "/opt-test", "type": "tmpfs", "source": "tmpfs",
                   "options": [o]})
        };
        if let Err(e) = try_mount(ctx, m)? {
            refused.push(format!("{o}: {e}"));
        }
    }
    ensure!(
        refused.is_empty(),
        "listed mount options refused by create: {refused:?}"
    );
    // An option no table knows is not applied by the runtime: it reaches the filesystem,
    // which refuses it.
    let m = json!({"destination": "/opt-test", "type": "tmpfs", "source": "tmpfs",
                   "options": ["berth-no-such-option"]});
    if try_mount(ctx, m)?.is_ok() {
        bail!("an unlisted, made-up mount option was accepted");
    }
    Ok(())
}

/// A profile with one rule on getppid (which nothing calls before `start`).
fn profile(action: &str, op: Option<&str>, arch: Option<&str>, flag: Option<&str>) -> Value {
    let mut rule = json!({"names": ["getppid"], "action": action});
    if let Some(op) = op {
        rule["args"] = json!([{"index": 0, "value": 1, "valueTwo": 1, "op": op}]);
    }
    let mut p = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]});
    if let Some(a) = arch {
        p["architectures"] = json!([a]);
    }
    if let Some(fl) = flag {
        p["flags"] = json!([fl]);
    }
    p
}

/// `create` with a seccomp profile; NOTIFY gets a throwaway agent that takes the fd.
fn try_profile(ctx: &mut Ctx, mut p: Value) -> Result<Result<(), String>, super::Fail> {
    let notifies = p.to_string().contains("SCMP_ACT_NOTIFY");
    let mut agent = None;
    if notifies {
        let sock = ctx.dir("agent").join(format!("a{}.sock", ctx.ids.len()));
        let l = UnixListener::bind(&sock)?;
        p["listenerPath"] = json!(sock.to_string_lossy());
        agent = Some(std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
            }
        }));
    }
    let mut ct = ctx.container(&["true"])?;
    ct.b.config["linux"]["seccomp"] = p;
    let o = ct.create();
    let res = if o.success() {
        let d = ct.delete(false);
        ensure!(d.success(), "delete: {}", d.brief());
        Ok(())
    } else {
        Err(o.brief())
    };
    let left = leftovers(ctx, &ct.id, &ct.b.dir);
    ensure!(left.is_empty(), "left {left:?}");
    if let (Some(a), Ok(())) = (agent, &res) {
        let _ = a.join();
    }
    Ok(res)
}

fn seccomp(ctx: &mut Ctx) -> R {
    let f = features(ctx)?;
    let s = &f["linux"]["seccomp"];
    ensure!(s["enabled"] == json!(true), "seccomp not enabled: {s}");
    let actions = strings(&s["actions"]);
    let operators = strings(&s["operators"]);
    let mut bad = Vec::new();
    for a in SPEC_ACTIONS {
        let listed = actions.iter().any(|x| x == a);
        let r = try_profile(ctx, profile(a, None, None, None))?;
        if listed != r.is_ok() {
            bad.push(format!("action {a}: listed {listed}, create {r:?}"));
        }
    }
    for op in SPEC_OPERATORS {
        let listed = operators.iter().any(|x| x == op);
        let r = try_profile(ctx, profile("SCMP_ACT_ERRNO", Some(op), None, None))?;
        if listed != r.is_ok() {
            bad.push(format!("operator {op}: listed {listed}, create {r:?}"));
        }
    }
    // Architectures the report lists must work; others are ignored as the kernel cannot
    // report them on this machine (not claimed, not refused).
    for a in strings(&s["archs"]) {
        if let Err(e) = try_profile(ctx, profile("SCMP_ACT_ERRNO", None, Some(&a), None))? {
            bad.push(format!("arch {a}: {e}"));
        }
    }
    let known = strings(&s["knownFlags"]);
    for fl in strings(&s["supportedFlags"]) {
        ensure!(
            known.contains(&fl),
            "supported flag {fl} is not a known flag"
        );
        // WAIT_KILLABLE_RECV only means something with a listener.
        let action = if fl.contains("WAIT_KILLABLE") {
            "SCMP_ACT_NOTIFY"
        } else {
            "SCMP_ACT_ERRNO"
        };
        if let Err(e) = try_profile(ctx, profile(action, None, None, Some(&fl)))? {
            bad.push(format!("flag {fl}: {e}"));
        }
    }
    ensure!(bad.is_empty(), "features and behaviour disagree: {bad:?}");
    Ok(())
}
