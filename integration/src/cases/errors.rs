//! Broken bundles: create must fail, name the problem on stderr, and leave
//! nothing behind (state dir, cgroups, mounts, processes).

use super::{leftovers, mentions_any, Case, Ct, Ctx, R};
use crate::runtime::Opts;
use crate::{ensure, host};
use serde_json::json;
use std::path::Path;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "errors/unparseable_config",
            run: unparseable_config,
        },
        Case {
            name: "errors/missing_config",
            run: missing_config,
        },
        Case {
            name: "errors/missing_rootfs",
            run: missing_rootfs,
        },
        Case {
            name: "errors/unknown_namespace_type",
            run: unknown_namespace_type,
        },
        Case {
            name: "errors/duplicate_namespace_type",
            run: duplicate_namespace_type,
        },
        Case {
            name: "errors/relative_namespace_path",
            run: relative_namespace_path,
        },
        Case {
            name: "errors/linux_ns_path_type",
            run: ns_path_wrong_type,
        },
        Case {
            name: "errors/process_rlimits_fail",
            run: invalid_rlimit,
        },
        Case {
            name: "errors/duplicate_rlimit",
            run: duplicate_rlimit,
        },
        Case {
            name: "errors/missing_program",
            run: missing_program,
        },
        Case {
            name: "errors/bind_source_missing",
            run: bind_source_missing,
        },
        Case {
            name: "errors/id_in_use",
            run: id_in_use,
        },
        Case {
            name: "errors/invalid_id",
            run: invalid_id,
        },
        Case {
            name: "errors/unsupported_settings_refused",
            run: unsupported_settings_refused,
        },
    ]
}

/// Settings berth cannot apply are an error naming the field, never dropped.
fn unsupported_settings_refused(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| {
            ct.b.config["linux"]["intelRdt"] = json!({"closID": "x", "l3CacheSchema": "L3:0=f"});
            Ok(ct.b.write()?)
        },
        &["linux.intelRdt"],
    )?;
    broken(
        ctx,
        |ct| {
            ct.b.config["linux"]["resources"]["rdma"] =
                json!({"mlx4_0": {"hcaHandles": 1, "hcaObjects": 100}});
            Ok(ct.b.write()?)
        },
        &["linux.resources.rdma"],
    )
}

/// Create `ct` (config already written as the case wants), require a
/// non-zero exit naming the problem, then require no leftovers.
fn expect_create_fails(ctx: &Ctx, ct: &Ct, words: &[&str]) -> R {
    let o = ct.create_raw(&[], Opts::default());
    ensure!(
        o.failed(),
        "create succeeded or did not exit cleanly: {} (want an error)",
        o.brief()
    );
    ensure!(
        mentions_any(&o.stderr, words),
        "error does not name the problem (want one of {words:?}): {}",
        o.brief()
    );
    let l = leftovers(ctx, &ct.id, &ct.b.dir);
    ensure!(l.is_empty(), "failed create left: {}", l.join("; "));
    Ok(())
}

fn broken(ctx: &mut Ctx, f: impl FnOnce(&mut Ct) -> R, words: &[&str]) -> R {
    let mut ct = ctx.container(&["sleep", "30"])?;
    ct.b.write()?;
    f(&mut ct)?;
    expect_create_fails(ctx, &ct, words)
}

fn unparseable_config(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| {
            Ok(std::fs::write(
                ct.b.dir.join("config.json"),
                "{\"ociVersion\": \"1.0.2\", ",
            )?)
        },
        &["json", "config", "parse", "unexpected", "eof"],
    )
}

fn missing_config(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| Ok(std::fs::remove_file(ct.b.dir.join("config.json"))?),
        &["config.json", "no such file"],
    )
}

fn missing_rootfs(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| {
            ct.b.config["root"]["path"] = json!("no-such-rootfs");
            Ok(ct.b.write()?)
        },
        &["no-such-rootfs", "rootfs", "root"],
    )
}

fn set_ns(ct: &mut Ct, extra: serde_json::Value) -> R {
    if let Some(a) = ct.b.config["linux"]["namespaces"].as_array_mut() {
        a.push(extra);
    }
    Ok(ct.b.write()?)
}

fn unknown_namespace_type(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| set_ns(ct, json!({"type": "bogusns"})),
        &["bogusns", "namespace"],
    )
}

fn duplicate_namespace_type(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| set_ns(ct, json!({"type": "pid"})),
        &["pid", "duplicate", "namespace"],
    )
}

fn relative_namespace_path(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| {
            ct.b.set_namespaces(&[
                ("pid", None),
                ("network", Some("proc/1/ns/net")),
                ("ipc", None),
                ("uts", None),
                ("mount", None),
            ]);
            Ok(ct.b.write()?)
        },
        &["proc/1/ns/net", "absolute", "relative", "namespace", "path"],
    )
}

fn ns_path_wrong_type(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| {
            ct.b.set_namespaces(&[
                ("pid", None),
                ("network", None),
                ("ipc", None),
                ("uts", Some("/proc/1/ns/net")),
                ("mount", None),
            ]);
            Ok(ct.b.write()?)
        },
        &[
            "namespace",
            "uts",
            "/proc/1/ns/net",
            "invalid argument",
            "setns",
        ],
    )
}

fn invalid_rlimit(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| {
            ct.b.config["process"]["rlimits"] =
                json!([{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]);
            Ok(ct.b.write()?)
        },
        &["rlimit"],
    )
}

fn duplicate_rlimit(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| {
            ct.b.config["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                {"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}
            ]);
            Ok(ct.b.write()?)
        },
        &["rlimit", "duplicate"],
    )
}

fn missing_program(ctx: &mut Ctx) -> R {
    broken(
        ctx,
        |ct| {
            ct.b.set_args(&["/nonexistent"]);
            Ok(ct.b.write()?)
        },
        &["/nonexistent", "no such file", "not found"],
    )
}

fn bind_source_missing(ctx: &mut Ctx) -> R {
    let src = ctx.tmp.join("does-not-exist");
    broken(
        ctx,
        move |ct| {
            ct.b.add_mount(json!({
                "destination": "/mnt/bind", "type": "bind",
                "source": src.to_string_lossy(), "options": ["rbind", "ro"]
            }));
            Ok(ct.b.write()?)
        },
        &["does-not-exist", "mount", "no such file"],
    )
}

fn id_in_use(ctx: &mut Ctx) -> R {
    let first = ctx.container(&["sleep", "30"])?;
    first.up()?;
    let pid = first.pid()?;
    let mut second = ctx.container(&["sleep", "30"])?;
    ctx.ids.retain(|i| *i != second.id);
    second.id = first.id.clone();
    second.b.config["linux"]["cgroupsPath"] = first.b.config["linux"]["cgroupsPath"].clone();
    second.b.write()?;
    let o = second.create_raw(&[], Opts::default());
    ensure!(
        o.failed(),
        "second create with the same id: {} (want an error)",
        o.brief()
    );
    ensure!(
        mentions_any(&o.stderr, &["exist", "in use", "already"]),
        "error does not say the id is taken: {}",
        o.brief()
    );
    ensure!(
        first.status()? == "running",
        "existing container no longer running"
    );
    ensure!(
        first.pid()? == pid && host::pid_alive(pid),
        "existing container's process changed or died"
    );
    let st = first.state()?;
    let want = std::fs::canonicalize(&first.b.dir)?;
    ensure!(
        Path::new(st["bundle"].as_str().unwrap_or("")) == want,
        "existing container's bundle changed to {}",
        st["bundle"]
    );
    let b = second.b.dir.to_string_lossy().into_owned();
    let m = host::mountinfo_mentions(&b);
    ensure!(m.is_empty(), "mounts mention the second bundle: {m:?}");
    let p = host::procs_under(&second.b.dir);
    ensure!(p.is_empty(), "processes in the second bundle: {p:?}");
    Ok(())
}

fn invalid_id(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.b.write()?;
    let b = ct.b.dir.to_string_lossy().into_owned();
    let escaped = format!("../{}-escape", ctx.base_id);
    let slashed = format!("{}/sub", ctx.base_id);
    for bad in [escaped.as_str(), slashed.as_str(), "..", "."] {
        let o = ctx.rt.exec(&["create", "--bundle", &b, bad]);
        ensure!(
            o.failed(),
            "create with id {bad:?}: {} (want an error)",
            o.brief()
        );
        ensure!(
            mentions_any(&o.stderr, &["id", "invalid"]),
            "error for id {bad:?} does not name the problem: {}",
            o.brief()
        );
        ensure!(
            !ctx.rt.root.join(bad).exists() || bad == "." || bad == "..",
            "state dir created for id {bad:?}"
        );
    }
    let outside = ctx.tmp.join(format!("{}-escape", ctx.base_id));
    ensure!(
        !outside.exists(),
        "runtime created {} outside --root",
        outside.display()
    );
    ensure!(
        !ctx.rt.root.join(&ctx.base_id).exists(),
        "state dir created for the slashed id"
    );
    let esc = host::cgroup_dirs_matching("escape");
    ensure!(esc.is_empty(), "cgroup dirs created: {esc:?}");
    let m = host::mountinfo_mentions(&b);
    ensure!(m.is_empty(), "mounts mention the bundle: {m:?}");
    let p = host::procs_under(&ct.b.dir);
    ensure!(p.is_empty(), "processes in the bundle: {p:?}");
    Ok(())
}
