//! Fault injection, walked point by point. Needs berth built with its `fault-injection` feature
//! (`make test-faults` builds and runs it): berth then fails, or SIGKILLs itself, at a named
//! point given in `BERTH_FAULT`, and lists every point it reaches in `BERTH_FAULT_TRACE`.
//!
//! The points are not listed here: each case first runs a whole lifecycle with a trace, then
//! walks every point of it twice (an error there, and a SIGKILL there). A step added to berth
//! becomes a new point and is walked without any change here. After each injected failure the
//! host must hold nothing of the container: no state dir or fifo, no cgroup, no process, no
//! mount, no entry in `list` — at once after a failed `create`, and after `delete --force`
//! otherwise.

use super::{Case, Ctx, Fail, R};
use crate::runtime::Out;
use crate::{bail, ensure};
use crate::{host, leak};
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "faults/create_plain",
            run: create_plain,
        },
        Case {
            name: "faults/create_userns_hooks",
            run: create_userns_hooks,
        },
        Case {
            name: "faults/start_exec_kill_delete",
            run: later_verbs,
        },
        Case {
            name: "faults/exec_userns",
            run: exec_userns,
        },
    ]
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Verb {
    Create,
    Start,
    Exec,
    Kill,
    Delete,
}

const LIFECYCLE: [Verb; 5] = [
    Verb::Create,
    Verb::Start,
    Verb::Exec,
    Verb::Kill,
    Verb::Delete,
];

/// One bundle whose config is rewritten per container (each id gets its own cgroup).
struct Walk {
    dir: PathBuf,
    config: Value,
}

impl Walk {
    fn new(ctx: &mut Ctx, setup: &dyn Fn(&mut crate::bundle::Bundle) -> R) -> Result<Walk, Fail> {
        let mut ct = ctx.container(&["sleep", "1000"])?;
        ct.b.config["linux"]["resources"] =
            json!({"memory": {"limit": 134217728}, "pids": {"limit": 200}});
        setup(&mut ct.b)?;
        ct.b.write()?;
        Ok(Walk {
            dir: ct.b.dir.clone(),
            config: ct.b.config.clone(),
        })
    }

    fn write_for(&self, id: &str) -> R {
        let mut c = self.config.clone();
        c["linux"]["cgroupsPath"] = json!(host::cgroups_path(id));
        fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec(&c).map_err(|e| e.to_string())?,
        )?;
        Ok(())
    }

    /// Runs `verb` on `id`, tagged with the id (the leak checker finds its processes by it).
    fn run(&self, ctx: &Ctx, verb: Verb, id: &str, mut env: Vec<(String, String)>) -> Out {
        let bundle = self.dir.to_string_lossy().into_owned();
        let args: Vec<&str> = match verb {
            Verb::Create => vec!["create", "--bundle", &bundle, id],
            Verb::Start => vec!["start", id],
            Verb::Exec => vec!["exec", id, "true"],
            Verb::Kill => vec!["kill", id, "KILL"],
            Verb::Delete => vec!["delete", "--force", id],
        };
        let mut opts = leak::tagged(id);
        opts.env.append(&mut env);
        ctx.rt.exec_opts(&args, opts)
    }
}

/// Everything of container `id` still on the host (the shared leak checker, plus a claim
/// directory of create's left under the root).
fn leftovers(ctx: &Ctx, walk: &Walk, id: &str) -> Vec<String> {
    let cgroups_path = host::cgroups_path(id);
    let rootfs = walk.dir.join("rootfs");
    let target = leak::Target {
        rt: &ctx.rt,
        id,
        cgroups_path: &cgroups_path,
        bundle: &walk.dir,
        rootfs: &rootfs,
        tag: id,
    };
    let leaks = leak::check(&target, Duration::ZERO);
    let mut left = Vec::new();
    if !leaks.is_empty() {
        left.push(leaks.describe());
    }
    if let Ok(rd) = fs::read_dir(&ctx.rt.root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                left.push(format!("{name} under the root"));
            }
        }
    }
    left
}

/// Points a berth built with fault injection reached, per verb, in order (name, hit), and the
/// id they were traced with (names may contain it: paths under the state dir and cgroup).
fn trace(ctx: &mut Ctx, walk: &Walk) -> Result<(String, Vec<(Verb, String)>), Fail> {
    let id = ctx.new_id();
    walk.write_for(&id)?;
    let mut points = Vec::new();
    for verb in LIFECYCLE {
        let file = ctx.tmp.join(format!("trace-{verb:?}"));
        let _ = fs::remove_file(&file);
        let env = vec![(
            "BERTH_FAULT_TRACE".to_string(),
            file.to_string_lossy().into_owned(),
        )];
        let o = walk.run(ctx, verb, &id, env);
        ensure!(o.success(), "traced {verb:?} failed: {}", o.brief());
        let text = fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines() {
            let p = (verb, line.to_string());
            if !points.contains(&p) {
                points.push(p);
            }
        }
    }
    if points.iter().all(|(v, _)| *v != Verb::Create) {
        // A release build has no points: the trace stays empty.
        if std::env::var("BERTH_IT_FAULTS").is_ok_and(|v| v == "1") {
            bail!("the runtime reached no fault point: not built with --features fault-injection");
        }
        return Err(Fail::Skip(
            "runtime built without fault injection (make test-faults)".into(),
        ));
    }
    Ok((id, points))
}

/// Walks every traced point of `verbs`, with an error and with a SIGKILL.
fn walk_points(ctx: &mut Ctx, walk: &Walk, verbs: &[Verb]) -> R {
    let (traced_id, points) = trace(ctx, walk)?;
    let mut walked = 0;
    for (verb, point) in points.iter().filter(|(v, _)| verbs.contains(v)) {
        for action in ["error", "kill"] {
            let id = ctx.new_id();
            walk.write_for(&id)?;
            let point = point.replace(&traced_id, &id);
            let reached = ctx.tmp.join("reached");
            let _ = fs::remove_file(&reached);
            let fault = vec![
                ("BERTH_FAULT".to_string(), point.clone()),
                ("BERTH_FAULT_ACTION".to_string(), action.to_string()),
                (
                    "BERTH_FAULT_TRACE".to_string(),
                    reached.to_string_lossy().into_owned(),
                ),
            ];
            let what = format!("{verb:?} with {action} at {:?}", point.replace('\t', "#"));
            let mut before_exec = Vec::new();
            for v in LIFECYCLE {
                if v == Verb::Exec {
                    before_exec = host::procs_in_cgroup(&id);
                }
                if v != *verb {
                    let o = walk.run(ctx, v, &id, Vec::new());
                    ensure!(o.success(), "{what}: {v:?} before it failed: {}", o.brief());
                    continue;
                }
                let o = walk.run(ctx, v, &id, fault);
                ensure!(!o.timed_out, "{what}: hung: {}", o.brief());
                let seen = fs::read_to_string(&reached).unwrap_or_default();
                ensure!(
                    seen.lines().any(|l| l == point),
                    "{what}: the point was not reached this time ({})",
                    o.brief()
                );
                if action == "kill" {
                    ensure!(!o.success(), "{what}: survived its SIGKILL: {}", o.brief());
                }
                if action == "error" && v == Verb::Create && !o.success() {
                    // A failed create cleans up after itself.
                    let left = leftovers(ctx, walk, &id);
                    ensure!(left.is_empty(), "{what}: create left {left:?}");
                }
                if action == "error" && v == Verb::Exec && !o.success() {
                    let mut now = host::procs_in_cgroup(&id);
                    now.sort();
                    before_exec.sort();
                    ensure!(
                        now == before_exec,
                        "{what}: a failed exec left processes {now:?} (before: {before_exec:?})"
                    );
                }
                break;
            }
            let o = walk.run(ctx, Verb::Delete, &id, Vec::new());
            ensure!(o.success(), "{what}: delete --force then: {}", o.brief());
            let left = leftovers(ctx, walk, &id);
            ensure!(left.is_empty(), "{what}: delete --force left {left:?}");
            walked += 1;
        }
    }
    ensure!(walked > 0, "no fault point of {verbs:?} was reached");
    println!(
        "#   walked {walked} faults ({} points x error, kill)",
        walked / 2
    );
    Ok(())
}

fn plain(_: &mut crate::bundle::Bundle) -> R {
    Ok(())
}

/// A user namespace (berth's stage process path) and hooks of every host-side kind.
fn userns_hooks(b: &mut crate::bundle::Bundle) -> R {
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .ok_or_else(|| "namespaces".to_string())?
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.chown_rootfs(100000, 100000)?;
    for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
        b.add_hook(kind, json!({"path": "/bin/true"}));
    }
    Ok(())
}

fn create_plain(ctx: &mut Ctx) -> R {
    let walk = Walk::new(ctx, &plain)?;
    walk_points(ctx, &walk, &[Verb::Create])
}

fn create_userns_hooks(ctx: &mut Ctx) -> R {
    let walk = Walk::new(ctx, &userns_hooks)?;
    walk_points(ctx, &walk, &[Verb::Create])
}

fn later_verbs(ctx: &mut Ctx) -> R {
    let walk = Walk::new(ctx, &userns_hooks)?;
    walk_points(ctx, &walk, &[Verb::Start, Verb::Kill, Verb::Delete])
}

fn exec_userns(ctx: &mut Ctx) -> R {
    let walk = Walk::new(ctx, &userns_hooks)?;
    walk_points(ctx, &walk, &[Verb::Exec])
}
