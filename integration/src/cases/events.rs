//! `events`: runc's stats JSON read back against the config's limits, the `--interval` stream
//! and its end, and the `oom` event of a container that outgrows its memory limit.

use super::{Case, Ct, Ctx, R};
use crate::runtime::{one_line, Opts, Out};
use crate::{bail, ensure};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "events/stats",
            run: stats,
        },
        Case {
            name: "events/interval",
            run: interval,
        },
        Case {
            name: "events/oom",
            run: oom,
        },
    ]
}

const MEM_LIMIT: u64 = 64 << 20;
const PIDS_LIMIT: u64 = 32;

/// The lines of an events stream, each parsed and checked for the container's id.
/// `events --interval 200ms` on `ct` in a thread, returned once `lines` stats lines have
/// arrived (or after 20 s, generous for a slow, emulated machine).
fn stream_200ms(ctx: &Ctx, ct: &Ct, lines: usize) -> std::thread::JoinHandle<Out> {
    let rt = ctx.rt.clone();
    let id = ct.id.clone();
    let out = ctx.dir("events").join(format!("{}.stream", ct.id));
    let out2 = out.clone();
    let stream = std::thread::spawn(move || {
        let opts = Opts {
            stdout: Some(out2),
            timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        rt.exec_opts(&["events", "--interval", "200ms", &id], opts)
    });
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().filter(|l| l.contains("\"stats\"")).count() >= lines {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stream
}

fn parse_events(o: &Out, id: &str) -> Result<Vec<Value>, super::Fail> {
    let mut v = Vec::new();
    for line in o.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let ev: Value = serde_json::from_str(line).map_err(|e| {
            super::Fail::Fail(format!(
                "event line is not JSON ({e}): {}",
                one_line(line, 200)
            ))
        })?;
        ensure!(ev["id"] == json!(id), "event for another id: {ev}");
        v.push(ev);
    }
    Ok(v)
}

fn stats_once(ctx: &Ctx, id: &str) -> Result<Value, super::Fail> {
    let o = ctx.rt.exec(&["events", "--stats", id]);
    ensure!(o.success(), "events --stats: {}", o.brief());
    let evs = parse_events(&o, id)?;
    ensure!(
        evs.len() == 1,
        "events --stats printed {} objects: {}",
        evs.len(),
        one_line(&o.stdout, 300)
    );
    let ev = &evs[0];
    ensure!(ev["type"] == "stats", "event type: {ev}");
    Ok(ev["data"].clone())
}

fn stats(ctx: &mut Ctx) -> R {
    // A little CPU first, then idle.
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 600",
    ])?;
    ct.b.config["linux"]["resources"]["memory"] = json!({"limit": MEM_LIMIT});
    ct.b.config["linux"]["resources"]["pids"] = json!({"limit": PIDS_LIMIT});
    ct.up()?;
    ct.wait_status("running", 5)?;

    let end = Instant::now() + Duration::from_secs(15);
    let data = loop {
        let d = stats_once(ctx, &ct.id)?;
        if d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0 || Instant::now() >= end {
            break d;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for key in ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"] {
        ensure!(data.get(key).is_some(), "data has no {key:?}: {data}");
    }
    ensure!(
        data["memory"]["usage"]["limit"] == json!(MEM_LIMIT),
        "memory.usage.limit: {} (want {MEM_LIMIT})",
        data["memory"]["usage"]
    );
    ensure!(
        data["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "memory.usage.usage: {}",
        data["memory"]["usage"]
    );
    ensure!(
        data["pids"]["limit"] == json!(PIDS_LIMIT),
        "pids.limit: {} (want {PIDS_LIMIT})",
        data["pids"]
    );
    ensure!(
        data["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "pids.current: {}",
        data["pids"]
    );
    ensure!(
        data["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "cpu.usage.total after a busy loop: {}",
        data["cpu"]
    );
    // runc's key names, not the cgroup files' or libcontainer's.
    ensure!(
        data["memory"].get("swap_usage").is_none() && data["cpu"].get("cpu_usage").is_none(),
        "libcontainer key names in the output: {data}"
    );

    let o = ct.kill("KILL");
    ensure!(o.success(), "kill: {}", o.brief());
    ct.wait_status("stopped", 5)?;
    let o = ctx.rt.exec(&["events", "--stats", &ct.id]);
    ensure!(
        o.failed() && o.stderr.contains("is not running"),
        "events --stats on a stopped container: {} (want an error saying it is not running)",
        o.brief()
    );
    let o = ctx.rt.exec(&["events", "--stats", "no-such-container-ev"]);
    ensure!(
        o.failed() && super::mentions_any(&o.stderr, &["does not exist", "not exist", "not found"]),
        "events on an unknown id: {} (want does not exist)",
        o.brief()
    );
    Ok(())
}

fn interval(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "600"])?;
    ct.up()?;
    ct.wait_status("running", 5)?;

    let o = ctx.rt.exec(&["events", "--interval", "1x", &ct.id]);
    ensure!(o.failed(), "--interval 1x accepted: {}", o.brief());

    let started = Instant::now();
    let stream = stream_200ms(ctx, &ct, 2);
    let killed_at = started.elapsed();
    let k = ct.kill("KILL");
    let o = match stream.join() {
        Ok(o) => o,
        Err(_) => bail!("the events thread panicked"),
    };
    ensure!(k.success(), "kill: {}", k.brief());
    ensure!(
        !o.timed_out,
        "the stream did not end after the container was killed: {}",
        o.brief()
    );
    ensure!(o.success(), "events --interval 200ms: {}", o.brief());
    let evs = parse_events(&o, &ct.id)?;
    let n = evs.iter().filter(|e| e["type"] == "stats").count();
    ensure!(
        n >= 2,
        "{n} stats events in {killed_at:?} at 200ms: {}",
        one_line(&o.stdout, 300)
    );
    ensure!(
        evs.iter()
            .all(|e| e["type"] == "stats" && e["data"].is_object()),
        "unexpected events: {}",
        one_line(&o.stdout, 300)
    );
    // 200ms apart: never a burst of them.
    let most = killed_at.as_millis() / 200 + 2;
    ensure!(
        (n as u128) <= most,
        "{n} stats events in {killed_at:?} at 200ms (at most {most} expected)"
    );
    Ok(())
}

fn oom(ctx: &mut Ctx) -> R {
    let shared = ctx.shared();
    let go = shared.join("go");
    let _ = std::fs::remove_file(&go);
    // Waits for the stream to be watching, then doubles a string until the limit is hit.
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        "while [ ! -e /shared/go ]; do sleep 1; done; \
         x=0123456789abcdef; while :; do x=$x$x; done",
    ])?;
    ct.b.add_shared(&shared);
    let limit = 8u64 << 20;
    ct.b.config["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    ct.b.write()?;
    let rt = ctx.rt.clone();
    let bundle = ct.b.dir.to_string_lossy().into_owned();
    let id = ct.id.clone();
    let run = std::thread::spawn(move || {
        let opts = Opts {
            timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        rt.exec_opts(&["run", "--bundle", &bundle, &id], opts)
    });
    if let Err(e) = ct.wait_status("running", 10) {
        let _ = ct.kill("KILL");
        let _ = run.join();
        return Err(e);
    }
    // The first stats line shows the stream is up and watching; only then the container may
    // outgrow its limit.
    let stream = stream_200ms(ctx, &ct, 1);
    std::fs::write(&go, "")?;
    let (Ok(ev), Ok(ran)) = (stream.join(), run.join()) else {
        bail!("a harness thread panicked");
    };
    ensure!(
        ran.code == Some(137),
        "the container outgrowing its memory limit: {} (want exit 137, SIGKILL)",
        ran.brief()
    );
    ensure!(
        !ev.timed_out && ev.success(),
        "events did not end with the container: {}",
        ev.brief()
    );
    let evs = parse_events(&ev, &ct.id)?;
    ensure!(
        evs.iter()
            .any(|e| e["type"] == "oom" && e.get("data").is_none()),
        "no {{\"type\":\"oom\"}} event: {}",
        one_line(&ev.stdout, 300)
    );
    Ok(())
}
