//! Resource control read back from the host's cgroup files (v1, hybrid and v2), and `update`.
//! The expected values follow from where the host keeps each controller; a knob the host lacks
//! is left out of the config (never skipped as a pass), and the refusals are cases of their own.

use super::exec::running;
use super::{leftovers, Case, Ct, Ctx, R};
use crate::runtime::{Opts, Out};
use crate::{bail, ensure, host};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "cgroups/resources_read_back",
            run: resources_read_back,
        },
        Case {
            name: "cgroups/swap_equal_to_limit",
            run: swap_equal_to_limit,
        },
        Case {
            name: "cgroups/blkio_weight",
            run: blkio_weight,
        },
        Case {
            name: "cgroups/unified",
            run: unified,
        },
        Case {
            name: "cgroups/unappliable_value_named",
            run: unappliable_value_named,
        },
        Case {
            name: "cgroups/kernel_memory_held_or_recorded",
            run: kernel_memory_held_or_recorded,
        },
        Case {
            name: "cgroups/frozen_cgroup_refused",
            run: frozen_cgroup_refused,
        },
        Case {
            name: "cgroups/non_empty_cgroup_warned",
            run: non_empty_cgroup_warned,
        },
        Case {
            name: "cgroups/init_born_in_its_v2_cgroup",
            run: init_born_in_its_v2_cgroup,
        },
        Case {
            name: "cgroups/delete_removes_cgroups_made_inside",
            run: delete_removes_cgroups_made_inside,
        },
        Case {
            name: "cgroups/oom_kill_exits_137",
            run: oom_kill_exits_137,
        },
        Case {
            name: "update/flags_enforced",
            run: update_flags_enforced,
        },
        Case {
            name: "update/resources_json",
            run: update_resources_json,
        },
        Case {
            name: "update/checked_before_written",
            run: update_checked_before_written,
        },
        Case {
            name: "update/device_rules",
            run: update_device_rules,
        },
        Case {
            name: "update/stopped_refused",
            run: update_stopped_refused,
        },
    ]
}

const ROOT: &str = "/sys/fs/cgroup";
const SLEEPER: &[&str] = &["sleep", "600"];

fn pure_v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The cgroup2 tree: the whole of /sys/fs/cgroup, or the hybrid `unified` mount.
fn v2_root() -> PathBuf {
    if pure_v2() {
        PathBuf::from(ROOT)
    } else {
        Path::new(ROOT).join("unified")
    }
}

/// Where the host keeps `ctrl`: Some(true) in a v1 hierarchy, Some(false) in the cgroup2 tree.
fn on_v1(ctrl: &str) -> Option<bool> {
    if !pure_v2() && Path::new(ROOT).join(ctrl).join("cgroup.procs").exists() {
        return Some(true);
    }
    let ctrls = fs::read_to_string(v2_root().join("cgroup.controllers")).unwrap_or_default();
    ctrls.split_whitespace().any(|c| c == ctrl).then_some(false)
}

/// The container's cgroup directory in the hierarchy of `ctrl`.
fn cg_dir(id: &str, ctrl: &str) -> Option<PathBuf> {
    let base = match on_v1(ctrl)? {
        true => Path::new(ROOT).join(ctrl),
        false => v2_root(),
    };
    Some(base.join(host::cgroup_rel(id)))
}

fn read(id: &str, ctrl: &str, file: &str) -> Result<String, String> {
    let dir = cg_dir(id, ctrl).ok_or_else(|| format!("host has no {ctrl} controller"))?;
    let p = dir.join(file);
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("read {}: {e}", p.display()))
}

/// Compares each (controller, file, wanted) with what the kernel holds; every mismatch listed.
fn expect_files(id: &str, want: &[(&str, String, String)]) -> R {
    let mut bad = Vec::new();
    for (ctrl, file, value) in want {
        match read(id, ctrl, file) {
            Ok(got) if got == *value => {}
            Ok(got) => bad.push(format!("{file} = {got:?}, want {value:?}")),
            Err(e) => bad.push(e),
        }
    }
    ensure!(bad.is_empty(), "{}", bad.join("; "));
    Ok(())
}

/// A block device of this host as (major, minor), for the throttle lists: a disk if there is
/// one, else a loop or ram device (a guest on 9p has no disk).
fn block_device() -> Option<(u64, u64)> {
    let mut devs: Vec<_> = fs::read_dir("/sys/block").ok()?.flatten().collect();
    devs.sort_by_key(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        (name.starts_with("loop") || name.starts_with("ram"), name)
    });
    devs.iter().find_map(|e| {
        let dev = fs::read_to_string(e.path().join("dev")).ok()?;
        let (a, b) = dev.trim().split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    })
}

fn swap_accounted() -> bool {
    match on_v1("memory") {
        Some(true) => Path::new(ROOT)
            .join("memory/memory.memsw.limit_in_bytes")
            .exists(),
        Some(false) => has_v2_file("memory.swap.max"),
        None => false,
    }
}

/// Whether cgroups in the v2 tree have `file` (it shows only below the root).
fn has_v2_file(file: &str) -> bool {
    child_has(&v2_root(), file)
}

/// Whether the container's cgroup would have `file`: at the hierarchy's root or, for knobs
/// that show only below the root, in one of its children.
fn file_in_hierarchy(ctrl: &str, file: &str) -> bool {
    match on_v1(ctrl) {
        Some(true) => {
            let base = Path::new(ROOT).join(ctrl);
            base.join(file).exists() || child_has(&base, file)
        }
        Some(false) => has_v2_file(file),
        None => false,
    }
}

fn child_has(dir: &Path, file: &str) -> bool {
    fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.path().is_dir())
                .any(|e| e.path().join(file).exists())
        })
        .unwrap_or(false)
}

/// Every resource this host can hold, set at create and read back from the host; then the same
/// config under runtimetest, which reads the container's own view.
fn resources_read_back(ctx: &mut Ctx) -> R {
    let mut res = json!({
        "memory": {"limit": 67108864, "reservation": 33554432},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 50},
    });
    let v1 = |c: &str| on_v1(c) == Some(true);
    let mut want: Vec<(&str, String, String)> = Vec::new();
    let w = |c: &'static str, f: &str, v: &str| (c, f.to_string(), v.to_string());
    if v1("memory") {
        want.push(w("memory", "memory.limit_in_bytes", "67108864"));
        want.push(w("memory", "memory.soft_limit_in_bytes", "33554432"));
        res["memory"]["swappiness"] = json!(10);
        want.push(w("memory", "memory.swappiness", "10"));
        if file_in_hierarchy("memory", "memory.kmem.tcp.limit_in_bytes") {
            res["memory"]["kernelTCP"] = json!(16777216);
            want.push(w("memory", "memory.kmem.tcp.limit_in_bytes", "16777216"));
        }
    } else {
        want.push(w("memory", "memory.max", "67108864"));
        want.push(w("memory", "memory.low", "33554432"));
    }
    if swap_accounted() {
        res["memory"]["swap"] = json!(134217728);
        if v1("memory") {
            want.push(w("memory", "memory.memsw.limit_in_bytes", "134217728"));
        } else {
            want.push(w("memory", "memory.swap.max", "67108864"));
        }
    }
    if v1("cpu") {
        want.push(w("cpu", "cpu.shares", "512"));
        want.push(w("cpu", "cpu.cfs_quota_us", "50000"));
        want.push(w("cpu", "cpu.cfs_period_us", "100000"));
    } else {
        // runc's mapping of shares onto cpu.weight.
        want.push(w(
            "cpu",
            "cpu.weight",
            &(1 + ((512 - 2) * 9999) / 262142).to_string(),
        ));
        want.push(w("cpu", "cpu.max", "50000 100000"));
    }
    let burst_file = if v1("cpu") {
        "cpu.cfs_burst_us"
    } else {
        "cpu.max.burst"
    };
    if file_in_hierarchy("cpu", burst_file) {
        res["cpu"]["burst"] = json!(1000);
        want.push(w("cpu", burst_file, "1000"));
    }
    if file_in_hierarchy("cpu", "cpu.idle") {
        res["cpu"]["idle"] = json!(0);
        want.push(w("cpu", "cpu.idle", "0"));
    }
    want.push(w("cpuset", "cpuset.cpus", "0"));
    want.push(w("cpuset", "cpuset.mems", "0"));
    want.push(w("pids", "pids.max", "50"));
    if let Some(hv1) = on_v1("hugetlb") {
        if Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
            res["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
            let f = if hv1 {
                "hugetlb.2MB.limit_in_bytes"
            } else {
                "hugetlb.2MB.max"
            };
            want.push(w("hugetlb", f, "4194304"));
        }
    }
    let io = if on_v1("blkio") == Some(true) {
        Some(true)
    } else {
        on_v1("io").map(|_| false)
    };
    if let (Some(io_v1), Some((maj, min))) = (io, block_device()) {
        res["blockIO"] =
            json!({"throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}]});
        if io_v1 {
            want.push(w(
                "blkio",
                "blkio.throttle.read_bps_device",
                &format!("{maj}:{min} 1048576"),
            ));
        } else {
            want.push(w(
                "io",
                "io.max",
                &format!("{maj}:{min} rbps=1048576 wbps=max riops=max wiops=max"),
            ));
        }
    }
    let res2 = res.clone();
    let ct = running(ctx, move |ct| {
        ct.b.config["linux"]["resources"] = merged_with_devices(&ct.b.config, res2)
    })?;
    expect_files(&ct.id, &want)?;
    let res3 = res.clone();
    ctx.runtimetest_run(
        &move |b| {
            b.config["linux"]["resources"] = merged_with_devices(&b.config, res3.clone());
            Ok(())
        },
        &[],
    )
}

/// The bundle's device rules (deny-all) kept beside the case's resources.
fn merged_with_devices(config: &Value, mut res: Value) -> Value {
    if let Some(d) = config["linux"]["resources"].get("devices") {
        res["devices"] = d.clone();
    }
    res
}

fn set_resources(ct: &mut Ct, res: Value) {
    let merged = merged_with_devices(&ct.b.config, res);
    ct.b.config["linux"]["resources"] = merged;
}

/// swap == limit means "no swap": v2's memory.swap.max must be 0 (it was left at max).
fn swap_equal_to_limit(ctx: &mut Ctx) -> R {
    if !swap_accounted() {
        // The host does not account swap: then the field has nothing to enforce and create
        // must still succeed.
        let ct = running(ctx, |ct| {
            set_resources(ct, json!({"memory": {"limit": 33554432, "swap": 33554432}}))
        })?;
        return expect_files(&ct.id, &[memory_limit_file("33554432")]);
    }
    let ct = running(ctx, |ct| {
        set_resources(ct, json!({"memory": {"limit": 33554432, "swap": 33554432}}))
    })?;
    let swap = if on_v1("memory") == Some(true) {
        (
            "memory",
            "memory.memsw.limit_in_bytes".to_string(),
            "33554432".to_string(),
        )
    } else {
        ("memory", "memory.swap.max".to_string(), "0".to_string())
    };
    expect_files(&ct.id, &[memory_limit_file("33554432"), swap])
}

fn memory_limit_file(v: &str) -> (&'static str, String, String) {
    let f = if on_v1("memory") == Some(true) {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    ("memory", f.to_string(), v.to_string())
}

/// Create must fail naming `words`, and leave nothing behind.
fn refused(ctx: &mut Ctx, res: Value, words: &[&str]) -> R {
    let mut ct = ctx.container(SLEEPER)?;
    set_resources(&mut ct, res);
    let o = ct.create();
    ensure!(
        o.failed(),
        "create succeeded; want an error naming {words:?}"
    );
    let msg = format!("{} {}", o.stderr, ct.stderr_text());
    ensure!(
        words.iter().all(|w| msg.contains(w)),
        "error does not name {words:?}: {}",
        crate::runtime::one_line(&msg, 300)
    );
    let _ = ct.delete(true);
    let left = leftovers(ctx, &ct.id, &ct.b.dir);
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// `unified`: an error on a v1 or hybrid host; on v2 the key is written, and an unknown
/// controller or file is refused by name.
fn unified(ctx: &mut Ctx) -> R {
    if !pure_v2() {
        return refused(
            ctx,
            json!({"unified": {"pids.max": "42"}}),
            &["linux.resources.unified"],
        );
    }
    let ct = running(ctx, |ct| {
        set_resources(ct, json!({"unified": {"pids.max": "42"}}))
    })?;
    expect_files(&ct.id, &[("pids", "pids.max".into(), "42".into())])?;
    refused(
        ctx,
        json!({"unified": {"nosuch.max": "1"}}),
        &["linux.resources.unified.nosuch.max"],
    )?;
    refused(
        ctx,
        json!({"unified": {"pids.nosuchfile": "1"}}),
        &["linux.resources.unified.pids.nosuchfile"],
    )
}

/// Values the host cannot apply are errors naming the field, with nothing half-made.
fn unappliable_value_named(ctx: &mut Ctx) -> R {
    refused(
        ctx,
        json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1048576}]}),
        &["linux.resources.hugepageLimits[0]"],
    )?;
    refused(
        ctx,
        json!({"memory": {"limit": 67108864, "swap": 33554432}}),
        &["linux.resources.memory.swap"],
    )?;
    if pure_v2() {
        refused(
            ctx,
            json!({"cpu": {"realtimeRuntime": 1000}}),
            &["linux.resources.cpu.realtimeRuntime"],
        )?;
        refused(
            ctx,
            json!({"memory": {"swappiness": 10}}),
            &["linux.resources.memory.swappiness"],
        )?;
    }
    Ok(())
}

/// Makes the container's cgroup `id` exist beforehand in the hierarchy of `ctrl`; removed at
/// cleanup (after thawing).
fn precreate(ctx: &mut Ctx, id: &str, ctrl: &str) -> Result<PathBuf, super::Fail> {
    let Some(dir) = cg_dir(id, ctrl) else {
        bail!("host has no {ctrl} controller");
    };
    fs::create_dir_all(&dir)?;
    let d = dir.clone();
    ctx.on_cleanup(move || {
        let _ = fs::write(d.join("freezer.state"), "THAWED");
        let _ = fs::write(d.join("cgroup.freeze"), "0");
        let _ = fs::remove_dir(&d);
    });
    Ok(dir)
}

/// Where the host has a cgroup v2 tree (pure v2, or hybrid's `unified`), berth clones the
/// init straight into its cgroup there (clone3 CLONE_INTO_CGROUP, said in the debug log)
/// rather than moving it after the clone; the init is in the container's cgroup either way.
/// `create` with the debug log in a file of its own; returns the outcome and the log's path.
fn create_with_debug_log(ctx: &mut Ctx, ct: &Ct) -> (Out, PathBuf) {
    let log = ctx.dir("logs").join(format!("{}.log", ct.id));
    let o = ct.create_raw(
        &[],
        Opts {
            global: vec!["--debug".into(), "--log".into(), log.display().to_string()],
            ..Default::default()
        },
    );
    (o, log)
}

fn init_born_in_its_v2_cgroup(ctx: &mut Ctx) -> R {
    if host::systemd_mode() {
        return Err(super::Fail::Skip("the systemd unit places the init".into()));
    }
    if !v2_root().join("cgroup.procs").exists() {
        return Err(super::Fail::Skip("this host has no cgroup v2 tree".into()));
    }
    let ct = ctx.container(SLEEPER)?;
    ct.b.write()?;
    let (o, log) = create_with_debug_log(ctx, &ct);
    ensure!(o.success(), "create: {}", o.brief());
    let pid = ct.pid()?;
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let want = format!("0::/{}", host::cgroup_rel(&ct.id).display());
    ensure!(
        cg.lines().any(|l| l == want),
        "the init's cgroup v2 is not {want}: {cg:?}"
    );
    let text = fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        text.contains("CLONE_INTO_CGROUP"),
        "the debug log does not say the init was cloned into its cgroup"
    );
    let _ = ct.delete(true);
    Ok(())
}

/// Cgroups made inside the container's own (by the container, or an operator) are removed
/// with it, deepest first, in every hierarchy.
fn delete_removes_cgroups_made_inside(ctx: &mut Ctx) -> R {
    if host::systemd_mode() {
        return Err(super::Fail::Skip("cgroupfs driver only".into()));
    }
    let ct = running(ctx, |_| {})?;
    let dirs = host::cgroup_dirs(&ct.id);
    ensure!(!dirs.is_empty(), "the container has no cgroup");
    for d in &dirs {
        fs::create_dir_all(d.join("sub/deeper"))?;
    }
    let o = ct.delete(true);
    ensure!(o.success(), "delete --force: {}", o.brief());
    let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
    ensure!(left.is_empty(), "cgroups left after delete: {left:?}");
    Ok(())
}

/// A cgroup frozen before create: runc refuses it; berth must too, instead of hanging.
fn frozen_cgroup_refused(ctx: &mut Ctx) -> R {
    if host::systemd_mode() {
        // A directory made by hand under a slice is no unit: systemd makes the scope itself
        // (systemd/existing_unit_refused covers a unit that is there already).
        return Err(super::Fail::Skip("cgroupfs driver only".into()));
    }
    let ct = ctx.container(SLEEPER)?;
    let (ctrl, file, value) = if pure_v2() {
        ("memory", "cgroup.freeze", "1")
    } else {
        ("freezer", "freezer.state", "FROZEN")
    };
    let dir = precreate(ctx, &ct.id, ctrl)?;
    fs::write(dir.join(file), value)?;
    ct.b.write()?;
    let o = ct.create_raw(
        &[],
        Opts {
            timeout: Some(std::time::Duration::from_secs(20)),
            stderr: Some(ct.err.clone()),
            ..Default::default()
        },
    );
    ensure!(!o.timed_out, "create hung on a frozen cgroup");
    ensure!(o.failed(), "create into a frozen cgroup succeeded");
    let msg = format!("{} {}", o.stderr, ct.stderr_text());
    ensure!(
        msg.contains("frozen"),
        "error does not say frozen: {}",
        crate::runtime::one_line(&msg, 300)
    );
    let _ = fs::write(dir.join(file), if pure_v2() { "0" } else { "THAWED" });
    let _ = ct.delete(true);
    Ok(())
}

/// A cgroup that already holds a process: create goes on, with runc's warning in the log.
fn non_empty_cgroup_warned(ctx: &mut Ctx) -> R {
    if host::systemd_mode() {
        // A directory made by hand under a slice is no unit: systemd makes the scope itself
        // (systemd/existing_unit_refused covers a unit that is there already).
        return Err(super::Fail::Skip("cgroupfs driver only".into()));
    }
    let ct = ctx.container(SLEEPER)?;
    let dir = precreate(ctx, &ct.id, "pids")?;
    let mut child = std::process::Command::new("sleep").arg("60").spawn()?;
    let pid = child.id();
    ctx.on_cleanup(move || {
        let _ = child.kill();
        let _ = child.wait();
    });
    fs::write(dir.join("cgroup.procs"), pid.to_string())?;
    ct.b.write()?;
    let log = ctx.dir("logs").join(format!("{}.log", ct.id));
    let o = ct.create_raw(
        &[],
        Opts {
            global: vec!["--log".into(), log.display().to_string()],
            ..Default::default()
        },
    );
    ensure!(
        o.success(),
        "create into a non-empty cgroup failed: {}",
        o.brief()
    );
    let text = fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        text.contains("not empty"),
        "no 'cgroup is not empty' warning in the log: {}",
        crate::runtime::one_line(&text, 300)
    );
    let _ = ct.delete(true);
    Ok(())
}

/// Over its memory limit (no swap) the container's process is OOM-killed: 137.
fn oom_kill_exits_137(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["sh", "-c", "a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done"])?;
    let mut mem = json!({"limit": 16777216});
    if swap_accounted() {
        mem["swap"] = json!(16777216);
    }
    set_resources(&mut ct, json!({"memory": mem}));
    let o = ct.run_fg();
    ensure!(
        o.code == Some(137),
        "run over the memory limit: {} (want 137)",
        o.brief()
    );
    Ok(())
}

fn update(ct: &Ct, args: &[&str]) -> Out {
    let mut a = vec!["update"];
    a.extend_from_slice(args);
    a.push(&ct.id);
    ct.rt.exec(&a)
}

fn exec_sh(ct: &Ct, script: &str) -> Out {
    ct.rt.exec(&["exec", &ct.id, "sh", "-c", script])
}

/// After `update --pids-limit 3` a fourth task cannot be forked; after raising it again it can.
/// --memory and --cpu-quota reach the kernel; the period given at create stays.
fn update_flags_enforced(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |ct| {
        set_resources(
            ct,
            json!({"pids": {"limit": 100}, "cpu": {"quota": 50000, "period": 100000}}),
        )
    })?;
    // sleep (1) + the exec'd sh (2) + three children: the third fork is over a limit of 4.
    let forks = "n=0; for i in 1 2 3; do sleep 30 & n=$((n+1)); done; kill $(jobs -p) 2>/dev/null; echo spawned";
    let o = exec_sh(&ct, forks);
    ensure!(
        o.success() && !o.stderr.contains("fork"),
        "forks under a limit of 100 failed: {}",
        o.brief()
    );
    let o = update(&ct, &["--pids-limit", "4"]);
    ensure!(o.success(), "update --pids-limit: {}", o.brief());
    expect_files(&ct.id, &[("pids", "pids.max".into(), "4".into())])?;
    let o = exec_sh(&ct, forks);
    ensure!(
        o.stderr.contains("fork") || o.failed(),
        "forks over the updated limit of 4 all succeeded: {}",
        o.brief()
    );
    let o = update(
        &ct,
        &[
            "--pids-limit",
            "100",
            "--memory",
            "128m",
            "--cpu-quota",
            "20000",
        ],
    );
    ensure!(
        o.success(),
        "update --pids-limit --memory --cpu-quota: {}",
        o.brief()
    );
    let o = exec_sh(&ct, forks);
    ensure!(
        o.success() && !o.stderr.contains("fork"),
        "forks after raising the limit failed: {}",
        o.brief()
    );
    let mut want = vec![
        memory_limit_file("134217728"),
        ("pids", "pids.max".into(), "100".into()),
    ];
    if on_v1("cpu") == Some(true) {
        want.push(("cpu", "cpu.cfs_quota_us".into(), "20000".into()));
        want.push(("cpu", "cpu.cfs_period_us".into(), "100000".into()));
    } else {
        want.push(("cpu", "cpu.max".into(), "20000 100000".into()));
    }
    expect_files(&ct.id, &want)
}

/// `--resources -` (containerd) and `--resources=FILE` (Podman): LinuxResources JSON.
fn update_resources_json(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let stdin = ctx.dir("update").join(format!("{}.stdin.json", ct.id));
    fs::write(
        &stdin,
        r#"{"memory":{"limit":100663296},"pids":{"limit":33}}"#,
    )?;
    let o = ct.rt.exec_opts(
        &["update", "--resources", "-", &ct.id],
        Opts {
            stdin: Some(stdin),
            ..Default::default()
        },
    );
    ensure!(o.success(), "update --resources -: {}", o.brief());
    expect_files(
        &ct.id,
        &[
            memory_limit_file("100663296"),
            ("pids", "pids.max".into(), "33".into()),
        ],
    )?;
    let file = ctx.dir("update").join(format!("{}.json", ct.id));
    fs::write(&file, r#"{"pids":{"limit":44}}"#)?;
    let arg = format!("--resources={}", file.display());
    let o = update(&ct, &[&arg]);
    ensure!(o.success(), "update --resources=FILE: {}", o.brief());
    // The memory limit given before stays.
    expect_files(
        &ct.id,
        &[
            memory_limit_file("100663296"),
            ("pids", "pids.max".into(), "44".into()),
        ],
    )?;
    let o = update(&ct, &["--resources", "/nonexistent/resources.json"]);
    ensure!(o.failed(), "update with a missing file succeeded");
    Ok(())
}

/// An update with one bad value changes nothing, and names the field.
fn update_checked_before_written(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |ct| set_resources(ct, json!({"pids": {"limit": 20}})))?;
    let file = ctx.dir("update").join(format!("{}-bad.json", ct.id));
    fs::write(
        &file,
        r#"{"pids":{"limit":7},"hugepageLimits":[{"pageSize":"3MB","limit":1048576}]}"#,
    )?;
    let o = update(&ct, &["-r", &file.display().to_string()]);
    ensure!(o.failed(), "update with pageSize 3MB succeeded");
    ensure!(
        o.stderr.contains("hugepageLimits[0]"),
        "error does not name hugepageLimits[0]: {}",
        o.brief()
    );
    expect_files(&ct.id, &[("pids", "pids.max".into(), "20".into())])?;
    let o = update(&ct, &["--l3-cache-schema", "L3:0=f"]);
    ensure!(
        o.failed() && o.stderr.contains("l3-cache-schema"),
        "--l3-cache-schema: {}",
        o.brief()
    );
    let o = update(&ct, &["--memory", "lots"]);
    ensure!(o.failed(), "--memory lots was accepted");
    // checkBeforeUpdate: a limit below what the container uses now is refused, not enforced
    // by reclaim or the OOM killer.
    fs::write(
        &file,
        r#"{"memory":{"limit":4096,"checkBeforeUpdate":true}}"#,
    )?;
    let o = update(&ct, &["-r", &file.display().to_string()]);
    ensure!(
        o.failed() && o.stderr.contains("checkBeforeUpdate"),
        "a 4 KiB limit with checkBeforeUpdate: {}",
        o.brief()
    );
    ensure!(
        ct.status().as_deref() == Ok("running"),
        "the container stopped"
    );
    Ok(())
}

fn update_stopped_refused(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["true"])?;
    set_resources(&mut ct, json!({"pids": {"limit": 20}}));
    ct.up()?;
    ct.wait_status("stopped", 5)?;
    let o = update(&ct, &["--pids-limit", "5"]);
    ensure!(o.failed(), "update of a stopped container succeeded");
    Ok(())
}

/// blockIO.weight lands in the knob the kernel has (CFQ's or BFQ's on v1; BFQ's, else
/// io.weight converted from 500 to 4950 on v2), judged from the container's own cgroup; with no
/// knob at all it is refused by name, at create and at update.
fn blkio_weight(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |_| {})?;
    let (ctrl, v1) = match on_v1("blkio") {
        Some(true) => ("blkio", true),
        _ => ("io", false),
    };
    let Some(dir) = cg_dir(&ct.id, ctrl) else {
        return refused(
            ctx,
            json!({"blockIO": {"weight": 500}}),
            &["linux.resources.blockIO.weight"],
        );
    };
    let knob: Option<(&str, &str)> = if v1 {
        ["blkio.weight", "blkio.bfq.weight"]
            .into_iter()
            .find(|f| dir.join(f).exists())
            .map(|f| (f, "500"))
    } else if dir.join("io.bfq.weight").exists() {
        Some(("io.bfq.weight", "default 500"))
    } else if dir.join("io.weight").exists() {
        Some(("io.weight", "default 4950"))
    } else {
        None
    };
    let o = update(&ct, &["--blkio-weight", "500"]);
    match knob {
        Some((file, want)) => {
            ensure!(o.success(), "update --blkio-weight 500: {}", o.brief());
            expect_files(&ct.id, &[(ctrl, file.to_string(), want.to_string())])
        }
        None => {
            ensure!(
                o.failed() && o.stderr.contains("linux.resources.blockIO.weight"),
                "no weight knob in {}, yet update --blkio-weight: {}",
                dir.display(),
                o.brief()
            );
            refused(
                ctx,
                json!({"blockIO": {"weight": 500}}),
                &["linux.resources.blockIO.weight"],
            )
        }
    }
}

/// New device rules through `update -r`: a node the container could not open becomes usable.
/// On v2 this also proves the new eBPF program replaces the old one (stacked programs must all
/// allow, so the old deny-all would still refuse).
fn update_device_rules(ctx: &mut Ctx) -> R {
    let ct = running(ctx, |ct| {
        let caps = [
            "CAP_MKNOD",
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_SETUID",
            "CAP_SETGID",
        ];
        for set in ["bounding", "effective", "permitted"] {
            ct.b.config["process"]["capabilities"][set] = json!(caps);
        }
        ct.b.add_mount(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    })?;
    let open = "mknod /tmp/kmsg c 1 11 2>/dev/null; exec 3>/tmp/kmsg && echo opened";
    let o = exec_sh(&ct, open);
    ensure!(
        !o.stdout.contains("opened"),
        "c 1:11 opened under the default deny-all: {}",
        o.brief()
    );
    let mut devices = ct.b.config["linux"]["resources"]["devices"].clone();
    if let Some(list) = devices.as_array_mut() {
        list.push(json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwm"}));
    }
    let file = ctx.dir("update").join(format!("{}-devices.json", ct.id));
    fs::write(&file, json!({"devices": devices}).to_string())?;
    let o = update(&ct, &["-r", &file.display().to_string()]);
    ensure!(o.success(), "update -r with devices: {}", o.brief());
    let o = exec_sh(&ct, open);
    ensure!(
        o.stdout.contains("opened"),
        "c 1:11 still refused after the update: {}",
        o.brief()
    );
    let o = exec_sh(&ct, "exec 3>/dev/null && echo null-ok");
    ensure!(
        o.stdout.contains("null-ok"),
        "/dev/null refused after the update: {}",
        o.brief()
    );
    fs::write(&file, r#"{"devices":[{"allow":true,"access":"rwa"}]}"#)?;
    let o = update(&ct, &["-r", &file.display().to_string()]);
    ensure!(
        o.failed() && o.stderr.contains("devices[0].access"),
        "access rwa: {}",
        o.brief()
    );
    Ok(())
}

/// memory.kernel: where the kernel still holds a v1 kernel memory limit, it is applied; where
/// it does not (v2; v1 since Linux 5.16, which accepts the write and ignores it) create goes on,
/// as runc's does, with a debug record naming the field.
fn kernel_memory_held_or_recorded(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(SLEEPER)?;
    set_resources(
        &mut ct,
        json!({"memory": {"limit": 67108864, "kernel": 16777216}}),
    );
    ct.b.write()?;
    let (o, log) = create_with_debug_log(ctx, &ct);
    ensure!(o.success(), "create with memory.kernel: {}", o.brief());
    let held = read(&ct.id, "memory", "memory.kmem.limit_in_bytes");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let _ = ct.delete(true);
    if held.as_deref() == Ok("16777216") {
        return Ok(());
    }
    ensure!(
        text.contains("linux.resources.memory.kernel"),
        "the kernel holds memory.kmem.limit_in_bytes = {held:?}, and no debug record names \
         linux.resources.memory.kernel"
    );
    Ok(())
}
