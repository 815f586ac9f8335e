//! Two to eight runtime invocations on one container (or one root) at once. Every invocation
//! must end within `reliability::BOUND` (a hang fails the case), each must either succeed or
//! fail cleanly (an exit code, not a signal), and once all are done a final `delete --force`
//! must leave nothing (the leak checker of `crate::leak`).

use super::reliability::{Lab, Rng, Unit, BOUND};
use super::{mentions_any, Case, Ctx, Fail, R};
use crate::runtime::{Out, Running, Runtime};
use crate::{bail, ensure};
use serde_json::Value;
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "races/start_twice",
            run: start_twice,
        },
        Case {
            name: "races/kill_during_delete",
            run: kill_during_delete,
        },
        Case {
            name: "races/state_during_create",
            run: state_during_create,
        },
        Case {
            name: "races/pause_during_exec",
            run: pause_during_exec,
        },
        Case {
            name: "races/delete_during_create",
            run: delete_during_create,
        },
        Case {
            name: "races/create_same_id",
            run: create_same_id,
        },
        Case {
            name: "races/create_many",
            run: create_many,
        },
        Case {
            name: "races/parallel_runs",
            run: parallel_runs,
        },
    ]
}

const SLEEPER: &[&str] = &["sleep", "100000"];

/// Waits for every invocation; any that hung or died of a signal fails the case.
fn wait_all(runs: Vec<Running>) -> Result<Vec<Out>, Fail> {
    let outs: Vec<Out> = runs.into_iter().map(|r| r.wait(Some(BOUND))).collect();
    for o in &outs {
        ensure!(
            !o.timed_out,
            "an invocation did not end within {}s: {}",
            BOUND.as_secs(),
            o.brief()
        );
        ensure!(
            o.code.is_some(),
            "an invocation ended without an exit code: {}",
            o.brief()
        );
    }
    Ok(outs)
}

fn up(u: &Unit, rt: &Runtime) -> R {
    let o = u.create(rt);
    ensure!(o.success(), "create failed: {}", o.brief());
    let o = u.call(rt, &["start", &u.id]);
    ensure!(o.success(), "start failed: {}", o.brief());
    Ok(())
}

fn status(u: &Unit, rt: &Runtime) -> Result<Value, Fail> {
    let o = u.call(rt, &["state", &u.id]);
    ensure!(o.success(), "state failed: {}", o.brief());
    serde_json::from_str(&o.stdout)
        .map_err(|e| Fail::Fail(format!("state is not JSON ({e}): {:?}", o.stdout)))
}

fn seed_line(case: &str, seed: u64) {
    println!("# {case}: seed={seed} (BERTH_IT_SEED)");
}

fn start_twice(ctx: &mut Ctx) -> R {
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    for _ in 0..5 {
        let u = lab.unit(ctx, SLEEPER, &|_| {})?;
        let o = u.create(&rt);
        ensure!(o.success(), "create failed: {}", o.brief());
        let runs = vec![
            u.spawn(&rt, &["start", &u.id])?,
            u.spawn(&rt, &["start", &u.id])?,
        ];
        let outs = wait_all(runs)?;
        let ok = outs.iter().filter(|o| o.success()).count();
        ensure!(
            ok == 1,
            "{ok} of 2 concurrent starts succeeded (want exactly 1): {}",
            outs.iter().map(Out::brief).collect::<Vec<_>>().join(" / ")
        );
        let v = status(&u, &rt)?;
        ensure!(
            v["status"] == "running",
            "after the starts: status {}",
            v["status"]
        );
        u.gone(&rt)?;
    }
    Ok(())
}

fn kill_during_delete(ctx: &mut Ctx) -> R {
    let (mut rng, seed) = Rng::from_env();
    seed_line("kill_during_delete", seed);
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let (mut kill_ok, mut kill_refused) = (0, 0);
    for _ in 0..6 {
        let u = lab.unit(ctx, SLEEPER, &|_| {})?;
        up(&u, &rt)?;
        let sig = if rng.chance(1, 2) { "KILL" } else { "TERM" };
        let kill_first = rng.chance(1, 2);
        let d = ["delete", "--force", u.id.as_str()];
        let k = ["kill", u.id.as_str(), sig];
        let (a, b) = if kill_first { (&k, &d) } else { (&d, &k) };
        let ra = u.spawn(&rt, a)?;
        let rb = u.spawn(&rt, b)?;
        let outs = wait_all(vec![ra, rb])?;
        let (ko, dout) = if kill_first {
            (&outs[0], &outs[1])
        } else {
            (&outs[1], &outs[0])
        };
        ensure!(
            dout.success(),
            "delete --force racing kill {sig} failed: {}",
            dout.brief()
        );
        if ko.success() {
            kill_ok += 1;
        } else {
            kill_refused += 1;
        }
        u.gone(&rt)?;
    }
    println!("# kill_during_delete: kill succeeded {kill_ok}, refused cleanly {kill_refused}");
    Ok(())
}

fn state_during_create(ctx: &mut Ctx) -> R {
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let (mut absent, mut creating, mut created, mut calls) = (0, 0, 0, 0);
    for _ in 0..10 {
        let u = lab.unit(ctx, SLEEPER, &|_| {})?;
        let a = u.create_args();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let create = u.spawn(&rt, &a)?;
        let mut last = false;
        loop {
            // One more look after create has returned.
            let done = create.exited();
            let o = u.call(&rt, &["state", &u.id]);
            calls += 1;
            ensure!(!o.timed_out, "state hung during create: {}", o.brief());
            if o.success() {
                let v: Value = serde_json::from_str(&o.stdout).map_err(|e| {
                    Fail::Fail(format!(
                        "state during create is not JSON ({e}): {:?}",
                        o.stdout
                    ))
                })?;
                match v["status"].as_str() {
                    Some("creating") => creating += 1,
                    Some("created") => created += 1,
                    other => bail!("state during create says {other:?}: {}", o.stdout.trim()),
                }
            } else {
                ensure!(
                    o.code.is_some()
                        && mentions_any(&o.stderr, &["not exist", "not found", "no such"]),
                    "state during create failed, and not with \"does not exist\": {}",
                    o.brief()
                );
                absent += 1;
            }
            if last {
                break;
            }
            last = done;
        }
        let o = create.wait(Some(BOUND));
        ensure!(o.success(), "create failed: {}", o.brief());
        u.gone(&rt)?;
    }
    println!(
        "# state_during_create: {calls} states: does-not-exist {absent}, creating {creating}, created {created}"
    );
    Ok(())
}

fn pause_during_exec(ctx: &mut Ctx) -> R {
    let (mut rng, seed) = Rng::from_env();
    seed_line("pause_during_exec", seed);
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let u = lab.unit(ctx, SLEEPER, &|_| {})?;
    up(&u, &rt)?;
    let init = status(&u, &rt)?["pid"].clone();
    let (mut exec_ok, mut exec_refused) = (0, 0);
    for _ in 0..8 {
        let exec = u.spawn(&rt, &["exec", &u.id, "sh", "-c", "sleep 0.02"])?;
        std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        let p = u.call(&rt, &["pause", &u.id]);
        ensure!(!p.timed_out, "pause hung: {}", p.brief());
        ensure!(
            p.success(),
            "pause of a running container failed: {}",
            p.brief()
        );
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        let r = u.call(&rt, &["resume", &u.id]);
        ensure!(r.success(), "resume failed: {}", r.brief());
        let o = wait_all(vec![exec])?.remove(0);
        if o.success() {
            exec_ok += 1;
        } else {
            exec_refused += 1;
        }
        let v = status(&u, &rt)?;
        ensure!(
            v["status"] == "running" && v["pid"] == init,
            "after pause/resume during exec: status {} pid {} (init {init})",
            v["status"],
            v["pid"]
        );
        // The exec'd sh ends by itself: only the init may stay.
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let extra: Vec<_> =
                crate::leak::procs_of(&crate::leak::cgroup_rel_of(&u.cgroups_path), &u.id)
                    .into_iter()
                    .filter(|p| serde_json::json!(p.pid) != init)
                    .collect();
            if extra.is_empty() {
                break;
            }
            ensure!(
                Instant::now() < end,
                "processes besides the init stay after the exec ended: {extra:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    println!("# pause_during_exec: exec succeeded {exec_ok}, refused cleanly {exec_refused}");
    u.gone(&rt)
}

fn delete_during_create(ctx: &mut Ctx) -> R {
    let (mut rng, seed) = Rng::from_env();
    seed_line("delete_during_create", seed);
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let (mut create_won, mut delete_won) = (0, 0);
    for _ in 0..12 {
        let u = lab.unit(ctx, SLEEPER, &|_| {})?;
        let a = u.create_args();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let create = u.spawn(&rt, &a)?;
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        let del = u.spawn(&rt, &["delete", "--force", &u.id])?;
        let outs = wait_all(vec![create, del])?;
        if outs[0].success() && rt.root.join(&u.id).join("state.json").exists() {
            create_won += 1;
        } else {
            delete_won += 1;
        }
        u.gone(&rt)?;
    }
    println!(
        "# delete_during_create: container there after both {create_won}, not there {delete_won}"
    );
    Ok(())
}

fn create_same_id(ctx: &mut Ctx) -> R {
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    for _ in 0..3 {
        let u = lab.unit(ctx, SLEEPER, &|_| {})?;
        let a = u.create_args();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut runs = Vec::new();
        for _ in 0..8 {
            runs.push(u.spawn(&rt, &a)?);
        }
        let outs = wait_all(runs)?;
        let ok = outs.iter().filter(|o| o.success()).count();
        ensure!(
            ok == 1,
            "{ok} of 8 creates of one id succeeded (want exactly 1)"
        );
        for o in outs.iter().filter(|o| !o.success()) {
            ensure!(
                mentions_any(&o.stderr, &["already exists", "exists"]),
                "a losing create did not say \"already exists\": {}",
                o.brief()
            );
        }
        let v = status(&u, &rt)?;
        ensure!(
            v["status"] == "created",
            "after the creates: status {}",
            v["status"]
        );
        u.gone(&rt)?;
    }
    Ok(())
}

fn create_many(ctx: &mut Ctx) -> R {
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let mut units = Vec::new();
    for _ in 0..8 {
        units.push(lab.unit(ctx, SLEEPER, &|_| {})?);
    }
    let mut runs = Vec::new();
    for u in &units {
        let a = u.create_args();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        runs.push(u.spawn(&rt, &a)?);
    }
    for (u, o) in units.iter().zip(wait_all(runs)?) {
        ensure!(o.success(), "create of {} failed: {}", u.id, o.brief());
        let v = status(u, &rt)?;
        ensure!(v["status"] == "created", "{}: status {}", u.id, v["status"]);
    }
    let mut runs = Vec::new();
    for u in &units {
        runs.push(u.spawn(&rt, &["delete", "--force", &u.id])?);
    }
    for (u, o) in units.iter().zip(wait_all(runs)?) {
        ensure!(
            o.success(),
            "delete --force of {} failed: {}",
            u.id,
            o.brief()
        );
    }
    for u in &units {
        u.gone(&rt)?;
    }
    Ok(())
}

/// Four rounds of 24 `run`s at once, each creating, running /bin/true and deleting its container:
/// every one must succeed. A create's claim directory exists before its record is written, and
/// the delete of another run must not take it for a dead create's and sweep it away (found by
/// `make bench`: 8 of 60 parallel runs failed with "write state: .claim:<pid>: No such file").
fn parallel_runs(ctx: &mut Ctx) -> R {
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    for _round in 0..4 {
        let mut units = Vec::new();
        for _ in 0..24 {
            units.push(lab.unit(ctx, &["true"], &|_| {})?);
        }
        let mut runs = Vec::new();
        for u in &units {
            let b = u.dir.to_string_lossy().into_owned();
            runs.push(u.spawn(&rt, &["run", "--bundle", &b, &u.id])?);
        }
        for (u, o) in units.iter().zip(wait_all(runs)?) {
            ensure!(o.success(), "run of {} failed: {}", u.id, o.brief());
        }
        for u in &units {
            u.gone(&rt)?;
        }
    }
    Ok(())
}
