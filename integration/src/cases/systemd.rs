//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is a transient scope
//! that systemd knows. The unit cases run only in systemd mode (`--systemd-cgroup` /
//! BERTH_IT_SYSTEMD=1, under systemd as init) and are skips, never passes, elsewhere.

use super::{leftovers, Case, Ctx, Fail, R};
use crate::runtime::Opts;
use crate::{bail, ensure, host};
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "systemd/scope_unit",
            run: scope_unit,
        },
        Case {
            name: "systemd/existing_unit_refused",
            run: existing_unit_refused,
        },
        Case {
            name: "systemd/no_systemd_refused",
            run: no_systemd_refused,
        },
    ]
}

fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn need_systemd_mode() -> R {
    if !host::systemd_mode() {
        return Err(Fail::Skip("systemd mode only (--systemd-cgroup)".into()));
    }
    if !booted() {
        bail!("systemd mode, but systemd is not the init here");
    }
    Ok(())
}

fn unit(id: &str) -> String {
    format!("berth-{id}.scope")
}

/// `systemctl show` of the unit's properties.
fn show(unit: &str, props: &[&str]) -> Result<HashMap<String, String>, Fail> {
    let out = Command::new("systemctl")
        .args(["show", unit, "-p", &props.join(",")])
        .output()
        .map_err(|e| Fail::Fail(format!("systemctl: {e}")))?;
    ensure!(
        out.status.success(),
        "systemctl show {unit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn expect(got: &HashMap<String, String>, want: &[(&str, &str)]) -> R {
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}={:?} (want {v:?})", got.get(*k)))
        .collect();
    ensure!(bad.is_empty(), "unit properties: {}", bad.join(", "));
    Ok(())
}

/// create makes an active scope with Delegate=yes and the limits, holding the init; update
/// reaches both the kernel and the unit; delete stops the unit and its cgroup goes.
fn scope_unit(ctx: &mut Ctx) -> R {
    need_systemd_mode()?;
    let mut ct = ctx.container(&["sleep", "600"])?;
    ct.b.config["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    ct.b.config["linux"]["resources"]["pids"] = json!({"limit": 50});
    ct.b.write()?;
    let o = ct.create();
    ensure!(o.success(), "create: {}", o.brief());
    let u = unit(&ct.id);
    let rel = host::cgroup_rel(&ct.id);
    let cg = Path::new(host::CGROUP_ROOT).join(&rel);
    let props = [
        "ActiveState",
        "Delegate",
        "MemoryMax",
        "TasksMax",
        "ControlGroup",
        "Slice",
    ];
    let control_group = format!("/{}", rel.display());
    expect(
        &show(&u, &props)?,
        &[
            ("ActiveState", "active"),
            ("Delegate", "yes"),
            ("MemoryMax", "67108864"),
            ("TasksMax", "50"),
            ("ControlGroup", &control_group),
            ("Slice", host::SYSTEMD_SLICE),
        ],
    )?;
    let pid = ct.pid()?;
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    ensure!(
        own.trim() == format!("0::{control_group}"),
        "the init's cgroup is {:?}, not the scope {control_group}",
        own.trim()
    );
    for (file, want) in [("memory.max", "67108864"), ("pids.max", "50")] {
        let got = fs::read_to_string(cg.join(file)).unwrap_or_default();
        ensure!(got.trim() == want, "{file} = {:?}, want {want}", got.trim());
    }
    // A daemon-reload makes systemd apply the unit's properties again: the limits must stay.
    let reload = Command::new("systemctl").arg("daemon-reload").status()?;
    ensure!(reload.success(), "systemctl daemon-reload failed");
    for (file, want) in [("memory.max", "67108864"), ("pids.max", "50")] {
        let got = fs::read_to_string(cg.join(file)).unwrap_or_default();
        ensure!(
            got.trim() == want,
            "{file} = {:?} after daemon-reload, want {want}",
            got.trim()
        );
    }
    // exec joins the scope too.
    let o = ct.rt.exec(&["exec", "--detach", &ct.id, "sleep", "60"]);
    ensure!(o.success(), "exec --detach: {}", o.brief());
    let procs = host::procs_in_cgroup(&ct.id);
    ensure!(
        procs.len() >= 2,
        "the scope holds {procs:?} after exec, want the init and the exec'd process"
    );
    let o = ct.rt.exec(&["update", "--pids-limit", "7", &ct.id]);
    ensure!(o.success(), "update --pids-limit 7: {}", o.brief());
    let got = fs::read_to_string(cg.join("pids.max")).unwrap_or_default();
    ensure!(
        got.trim() == "7",
        "pids.max after update = {:?}",
        got.trim()
    );
    expect(&show(&u, &["TasksMax"])?, &[("TasksMax", "7")])?;
    let o = ct.delete(true);
    ensure!(o.success(), "delete --force: {}", o.brief());
    let after = show(&u, &["LoadState", "ActiveState"])?;
    ensure!(
        after.get("LoadState").map(String::as_str) == Some("not-found")
            && after.get("ActiveState").map(String::as_str) == Some("inactive"),
        "the unit is still there after delete: {after:?}"
    );
    ensure!(!cg.exists(), "{} still exists after delete", cg.display());
    Ok(())
}

/// A unit of the same name that berth did not start (here: another container's, given the
/// same cgroupsPath) is refused, and left running.
fn existing_unit_refused(ctx: &mut Ctx) -> R {
    need_systemd_mode()?;
    let first = ctx.container(&["sleep", "600"])?;
    first.b.write()?;
    let o = first.create();
    ensure!(o.success(), "create: {}", o.brief());
    let mut second = ctx.container(&["sleep", "600"])?;
    second.b.config["linux"]["cgroupsPath"] = json!(host::cgroups_path(&first.id));
    second.b.write()?;
    let o = second.create_raw(&[], Opts::default());
    ensure!(o.failed(), "create into another container's unit succeeded");
    ensure!(
        o.stderr.contains("already exists"),
        "error does not say the unit exists: {}",
        o.brief()
    );
    let u = unit(&first.id);
    expect(&show(&u, &["ActiveState"])?, &[("ActiveState", "active")])?;
    ensure!(
        host::pid_alive(first.pid()?),
        "the first container's init died"
    );
    let left = leftovers(ctx, &second.id, &second.b.dir);
    ensure!(
        left.is_empty(),
        "after the refused create: {}",
        left.join("; ")
    );
    Ok(())
}

/// Without systemd as init, `--systemd-cgroup` is an error naming systemd, and nothing is left.
fn no_systemd_refused(ctx: &mut Ctx) -> R {
    if booted() {
        return Err(Fail::Skip("systemd is the init here".into()));
    }
    let mut ct = ctx.container(&["sleep", "600"])?;
    ct.b.config["linux"]["cgroupsPath"] = json!(format!("{}:berth:{}", host::SYSTEMD_SLICE, ct.id));
    ct.b.write()?;
    let o = ct.create_raw(
        &[],
        Opts {
            global: if host::systemd_mode() {
                Vec::new()
            } else {
                vec!["--systemd-cgroup".into()]
            },
            timeout: Some(Duration::from_secs(20)),
            ..Default::default()
        },
    );
    ensure!(
        o.failed(),
        "create with --systemd-cgroup and no systemd succeeded"
    );
    ensure!(
        o.stderr.contains("systemd"),
        "error does not name systemd: {}",
        o.brief()
    );
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end && ct.state().is_ok() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = leftovers(ctx, &ct.id, &ct.b.dir);
    ensure!(
        left.is_empty(),
        "after the refused create: {}",
        left.join("; ")
    );
    let slice = Path::new(host::CGROUP_ROOT).join(host::SYSTEMD_SLICE);
    ensure!(
        !slice.exists(),
        "{} was made without systemd",
        slice.display()
    );
    Ok(())
}
