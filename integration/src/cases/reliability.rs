//! Crash consistency and awkward container processes, black-box through the CLI.
//!
//! `reliability/sigkill_*`: a runtime command (or one of its children) is SIGKILLed at a random
//! point, a `delete --force` follows, and the leak checker (`crate::leak`) must find nothing
//! of the container: no state files, cgroup, process, host mount or `list` line. The RNG is
//! seeded from BERTH_IT_SEED or the clock, and the seed is printed so a failure replays.
//! BERTH_IT_KILLS sets the iterations of sigkill_create (default 300); sigkill_exec and
//! sigkill_delete do a third of that each.
//!
//! The other cases: a PID 1 that exits at once, one that ignores SIGTERM, one that leaves
//! zombies; `state`, `kill` and `delete --force` must be right and bounded.

use super::{Case, Ctx, Fail, R};
use crate::bundle::{base_config, Bundle};
use crate::leak::{self, tagged, Leaks, Target};
use crate::runtime::{Opts, Out, Running, Runtime};
use crate::{bail, ensure, host};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "reliability/sigkill_create",
            run: sigkill_create,
        },
        Case {
            name: "reliability/sigkill_exec",
            run: sigkill_exec,
        },
        Case {
            name: "reliability/sigkill_delete",
            run: sigkill_delete,
        },
        Case {
            name: "reliability/exits_at_once",
            run: exits_at_once,
        },
        Case {
            name: "reliability/ignores_sigterm",
            run: ignores_sigterm,
        },
        Case {
            name: "reliability/zombie_maker",
            run: zombie_maker,
        },
    ]
}

/// A bound on any single runtime call: past it, the call counts as a hang.
pub const BOUND: Duration = Duration::from_secs(30);
/// How long the leak checker looks again before calling something a leak.
pub const SETTLE: Duration = Duration::from_millis(300);

/// splitmix64: a few lines, deterministic from a printed seed, and no new dependency for the
/// harness (the `fastrand` crate would do the same; it is not needed for this).
pub struct Rng(u64);

impl Rng {
    /// From BERTH_IT_SEED if set, else from the clock and pid. Returns the seed to print.
    pub fn from_env() -> (Rng, u64) {
        let seed = std::env::var("BERTH_IT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                t ^ ((std::process::id() as u64) << 32)
            });
        (Rng(seed), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability num/den.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// Iterations of sigkill_create (BERTH_IT_KILLS, default 300).
pub fn kills() -> usize {
    std::env::var("BERTH_IT_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

/// One shared busybox rootfs, and cheap bundles (a directory with a config.json whose
/// root.path is that rootfs) for many short-lived containers.
pub struct Lab {
    pub rootfs: PathBuf,
    n: usize,
}

/// A container of a Lab: its bundle exists, it is not created.
pub struct Unit {
    pub id: String,
    pub dir: PathBuf,
    pub cgroups_path: String,
    pub rootfs: PathBuf,
}

impl Lab {
    pub fn new(ctx: &mut Ctx) -> Result<Lab, Fail> {
        let b = Bundle::new(&ctx.tmp.join("lab"), &ctx.runtimetest, &["true"])?;
        Ok(Lab {
            rootfs: b.rootfs,
            n: 0,
        })
    }

    /// A new unit running `args`; `edit` may change its config.
    pub fn unit(
        &mut self,
        ctx: &mut Ctx,
        args: &[&str],
        edit: &dyn Fn(&mut Value),
    ) -> Result<Unit, Fail> {
        self.n += 1;
        let id = ctx.new_id();
        let dir = ctx.tmp.join(format!("u{}", self.n));
        fs::create_dir_all(&dir)?;
        let mut c = base_config(args);
        c["root"]["path"] = json!(self.rootfs);
        let cgroups_path = host::cgroups_path(&id);
        c["linux"]["cgroupsPath"] = json!(cgroups_path);
        edit(&mut c);
        fs::write(
            dir.join("config.json"),
            serde_json::to_string(&c).expect("serialize config"),
        )?;
        Ok(Unit {
            id,
            dir,
            cgroups_path,
            rootfs: self.rootfs.clone(),
        })
    }
}

impl Unit {
    pub fn target<'a>(&'a self, rt: &'a Runtime) -> Target<'a> {
        Target {
            rt,
            id: &self.id,
            cgroups_path: &self.cgroups_path,
            bundle: &self.dir,
            rootfs: &self.rootfs,
            tag: &self.id,
        }
    }

    pub fn opts(&self) -> Opts {
        let mut o = tagged(&self.id);
        o.timeout = Some(BOUND);
        o
    }

    pub fn create_args(&self) -> Vec<String> {
        vec![
            "create".into(),
            "--bundle".into(),
            self.dir.to_string_lossy().into_owned(),
            self.id.clone(),
        ]
    }

    /// Runs `args` (the id is not added) tagged and bounded.
    pub fn call(&self, rt: &Runtime, args: &[&str]) -> Out {
        rt.exec_opts(args, self.opts())
    }

    pub fn spawn(&self, rt: &Runtime, args: &[&str]) -> Result<Running, Fail> {
        rt.spawn(args, self.opts())
            .map_err(|o| Fail::Fail(format!("cannot run the runtime: {}", o.brief())))
    }

    pub fn create(&self, rt: &Runtime) -> Out {
        let a = self.create_args();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.call(rt, &a)
    }

    pub fn delete_force(&self, rt: &Runtime) -> Out {
        self.call(rt, &["delete", "--force", &self.id])
    }

    pub fn leaks(&self, rt: &Runtime) -> Leaks {
        leak::check(&self.target(rt), SETTLE)
    }

    /// `delete --force` (must exit 0), then nothing may be left.
    pub fn gone(&self, rt: &Runtime) -> R {
        let o = self.delete_force(rt);
        ensure!(o.success(), "delete --force failed: {}", o.brief());
        let l = self.leaks(rt);
        if !l.is_empty() {
            let d = l.describe();
            leak::scrub(&self.target(rt), &l);
            bail!("left after delete --force of {}: {d}", self.id);
        }
        Ok(())
    }
}

/// The runtime's descendants, through /proc/PID/task/*/children (all threads).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(rd) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in rd.flatten() {
            let text = fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in text
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                if !out.contains(&c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// Sleeps until `delay` after `since`.
/// SIGKILLs the running verb, or (with `kill_child`) one of its descendants picked at random;
/// says which, for the tally.
fn kill_one(run: &Running, rng: &mut Rng, kill_child: bool, verb: &str) -> String {
    if run.exited() {
        return format!("none ({verb} finished first)");
    }
    if !kill_child {
        run.kill9();
        return "parent".to_string();
    }
    let kids = descendants(run.pid());
    if kids.is_empty() {
        run.kill9();
        return "parent (no child yet)".to_string();
    }
    let k = kids[rng.below(kids.len() as u64) as usize];
    let name = leak::comm(k);
    host::kill9(k);
    format!("child {name}")
}

fn sleep_until(since: Instant, delay: Duration) {
    let at = since + delay;
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// A typical warm duration of a step from a few timed runs: the second fastest (the first
/// runs are cold and slow; the fastest may be luck).
fn typical(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(1.min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// A bound for the random kill delay: a tenth more than the step takes, so late points
/// (and "it finished first") are hit as well as early ones.
fn kill_bound(took: Duration) -> Duration {
    (took * 11 / 10).clamp(Duration::from_millis(1), Duration::from_millis(200))
}

#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, k: impl Into<String>) {
        *self.counts.entry(k.into()).or_default() += 1;
    }

    fn get(&self, k: &str) -> usize {
        self.counts.get(k).copied().unwrap_or(0)
    }

    fn line(&self, prefix: &str) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| format!("{}={v}", &k[prefix.len()..]))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }
}

/// Where a create stood, from its state directory: no directory, a directory without a
/// record, a record saying "creating", or a complete record.
fn phase(root: &Path, id: &str) -> &'static str {
    let d = root.join(id);
    if !d.exists() {
        return "before-record(no-dir)";
    }
    let Ok(text) = fs::read_to_string(d.join("state.json")) else {
        return "before-record(dir-only)";
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v) if v["status"] == "creating" => "creating",
        Ok(_) => "created",
        Err(_) => "torn-record",
    }
}

/// `state` of a container whose creator is gone: "does not exist", or JSON saying created or
/// stopped. Anything else is returned as an anomaly.
fn state_anomaly(u: &Unit, rt: &Runtime) -> Option<String> {
    let o = u.call(rt, &["state", &u.id]);
    if o.timed_out {
        return Some(format!("state hung: {}", o.brief()));
    }
    if !o.success() {
        return (!super::mentions_any(&o.stderr, &["not exist", "not found", "no such"]))
            .then(|| format!("state failed oddly: {}", o.brief()));
    }
    match serde_json::from_str::<Value>(&o.stdout) {
        Ok(v) if v["status"] == "created" || v["status"] == "stopped" => None,
        Ok(v) => Some(format!("state says {} after its creator died", v["status"])),
        Err(e) => Some(format!("state is not JSON ({e}): {:?}", o.stdout)),
    }
}

/// Records one iteration's leaks (and scrubs them so the next iteration starts clean).
fn record(t: &mut Tally, first: &mut Vec<String>, what: &str, u: &Unit, rt: &Runtime) {
    let l = u.leaks(rt);
    if l.is_empty() {
        return;
    }
    t.add("leaky-iterations");
    for k in l.kinds() {
        t.add(format!("leak:{k}"));
    }
    t.add(format!("leaky-after:{what}"));
    // One example per combination of kinds.
    let sig = format!("[{}]", l.kinds().join("+"));
    if first.len() < 8 && !first.iter().any(|f| f.starts_with(&sig)) {
        first.push(format!("{sig} {} ({what}): {}", u.id, l.describe()));
    }
    leak::scrub(&u.target(rt), &l);
}

fn report(name: &str, first: &[String]) {
    for line in first {
        println!("# {name}: e.g. {line}");
    }
}

/// Fails the case when the tally holds any failure kind.
fn verdict(t: &Tally) -> R {
    let bad: Vec<String> = ["leaky-iterations", "delete-failed", "state-anomaly", "hang"]
        .iter()
        .filter(|k| t.get(k) > 0)
        .map(|k| format!("{k}={}", t.get(k)))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} (leaks by kind: {}; leaky by phase: {})",
            bad.join(" "),
            t.line("leak:"),
            t.line("leaky-after:")
        )
    }
}

/// Times a normal create (plus its delete) of a fresh unit.
fn time_create(ctx: &mut Ctx, lab: &mut Lab, args: &[&str]) -> Result<Duration, Fail> {
    let u = lab.unit(ctx, args, &|_| {})?;
    let t0 = Instant::now();
    let o = u.create(&ctx.rt);
    let took = t0.elapsed();
    ensure!(o.success(), "calibration create failed: {}", o.brief());
    u.gone(&ctx.rt)?;
    Ok(took)
}

fn sigkill_create(ctx: &mut Ctx) -> R {
    let (mut rng, seed) = Rng::from_env();
    let n = kills();
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let args = ["sleep", "1000"];
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(time_create(ctx, &mut lab, &args)?);
    }
    let took = typical(runs);
    let bound = kill_bound(took);
    println!(
        "# sigkill_create: seed={seed} (BERTH_IT_SEED) iterations={n} (BERTH_IT_KILLS); \
         create takes ~{}us, kills at 0..{}us",
        took.as_micros(),
        bound.as_micros()
    );
    let mut t = Tally::default();
    let mut first = Vec::new();
    for _ in 0..n {
        let u = lab.unit(ctx, &args, &|_| {})?;
        let kill_child = rng.chance(1, 3);
        let delay = Duration::from_micros(rng.below(bound.as_micros() as u64 + 1));
        let a = u.create_args();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let run = u.spawn(&rt, &a)?;
        sleep_until(run.started, delay);
        let target = kill_one(&run, &mut rng, kill_child, "create");
        t.add(format!("target:{target}"));
        let o = run.wait(Some(BOUND));
        if o.timed_out {
            t.add("hang");
            first.push(format!(
                "create hung after its child was killed: {}",
                o.brief()
            ));
        }
        t.add(format!("create:{}", o.status_text()));
        let ph = if target.starts_with("none") {
            "finished"
        } else {
            phase(&rt.root, &u.id)
        };
        t.add(format!("phase:{ph}"));
        if let Some(a) = state_anomaly(&u, &rt) {
            t.add("state-anomaly");
            if first.len() < 5 {
                first.push(format!("{}: {a}", u.id));
            }
        }
        let d = u.delete_force(&rt);
        if !d.success() {
            t.add("delete-failed");
            if first.len() < 5 {
                first.push(d.brief());
            }
        }
        record(&mut t, &mut first, ph, &u, &rt);
    }
    println!("# sigkill_create: killed: {}", t.line("target:"));
    println!("# sigkill_create: create ended: {}", t.line("create:"));
    println!(
        "# sigkill_create: phase (state dir once the creator was gone): {}",
        t.line("phase:")
    );
    println!(
        "# sigkill_create: delete --force failed {}, state anomalies {}, hangs {}",
        t.get("delete-failed"),
        t.get("state-anomaly"),
        t.get("hang")
    );
    println!(
        "# sigkill_create: leaky iterations {}/{n}; by kind: {}; by phase: {}",
        t.get("leaky-iterations"),
        t.line("leak:"),
        t.line("leaky-after:")
    );
    report("sigkill_create", &first);
    verdict(&t)
}

/// Processes of the container other than its init (zombies are not processes any more).
fn extras(u: &Unit, init: i32) -> Vec<leak::Proc> {
    leak::procs_of(&leak::cgroup_rel_of(&u.cgroups_path), &u.id)
        .into_iter()
        .filter(|p| p.pid != init)
        .collect()
}

fn sigkill_exec(ctx: &mut Ctx) -> R {
    let (mut rng, seed) = Rng::from_env();
    let n = (kills() / 3).max(1);
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let u = lab.unit(ctx, &["sleep", "100000"], &|_| {})?;
    let o = u.create(&rt);
    ensure!(o.success(), "create failed: {}", o.brief());
    let o = u.call(&rt, &["start", &u.id]);
    ensure!(o.success(), "start failed: {}", o.brief());
    let st = running_state(&u, &rt)?;
    let init = st["pid"].as_i64().unwrap_or(0) as i32;
    let exec = ["exec", u.id.as_str(), "true"];
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let o = u.call(&rt, &exec);
        ensure!(o.success(), "calibration exec failed: {}", o.brief());
        runs.push(t0.elapsed());
    }
    let took = typical(runs);
    let bound = kill_bound(took);
    println!(
        "# sigkill_exec: seed={seed} iterations={n}; exec takes ~{}us, kills at 0..{}us",
        took.as_micros(),
        bound.as_micros()
    );
    let mut t = Tally::default();
    let mut first: Vec<String> = Vec::new();
    for _ in 0..n {
        let kill_child = rng.chance(1, 3);
        let delay = Duration::from_micros(rng.below(bound.as_micros() as u64 + 1));
        let run = u.spawn(&rt, &exec)?;
        sleep_until(run.started, delay);
        let target = kill_one(&run, &mut rng, kill_child, "exec");
        t.add(format!("target:{target}"));
        let o = run.wait(Some(BOUND));
        if o.timed_out {
            t.add("hang");
            first.push(format!("exec hung: {}", o.brief()));
        }
        t.add(format!("exec:{}", o.status_text()));
        // `true` ends by itself: whatever else stays is left over.
        let end = Instant::now() + SETTLE;
        let mut left = extras(&u, init);
        while !left.is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
            left = extras(&u, init);
        }
        if !left.is_empty() {
            t.add("leaky-iterations");
            t.add("leak:process");
            t.add(format!("leaky-after:{target}"));
            if first.len() < 5 {
                first.push(format!("after exec killed ({target}): {left:?}"));
            }
            for p in left {
                host::kill9(p.pid);
            }
        }
        match u.call(&rt, &["state", &u.id]) {
            o if o.success()
                && serde_json::from_str::<Value>(&o.stdout)
                    .is_ok_and(|v| v["status"] == "running" && v["pid"] == init) => {}
            o => {
                t.add("state-anomaly");
                if first.len() < 5 {
                    first.push(format!(
                        "state after a killed exec: {} {}",
                        o.brief(),
                        o.stdout.trim()
                    ));
                }
            }
        }
    }
    println!("# sigkill_exec: killed: {}", t.line("target:"));
    println!("# sigkill_exec: exec ended: {}", t.line("exec:"));
    println!(
        "# sigkill_exec: iterations leaving a process {}/{n}; state anomalies {}; hangs {}",
        t.get("leaky-iterations"),
        t.get("state-anomaly"),
        t.get("hang")
    );
    report("sigkill_exec", &first);
    let end = u.gone(&rt);
    verdict(&t)?;
    end
}

fn running_state(u: &Unit, rt: &Runtime) -> Result<Value, Fail> {
    let o = u.call(rt, &["state", &u.id]);
    ensure!(o.success(), "state failed: {}", o.brief());
    let v: Value = serde_json::from_str(&o.stdout)
        .map_err(|e| Fail::Fail(format!("state is not JSON ({e}): {}", o.stdout)))?;
    ensure!(
        v["status"] == "running",
        "status is {} (want running)",
        v["status"]
    );
    Ok(v)
}

fn sigkill_delete(ctx: &mut Ctx) -> R {
    let (mut rng, seed) = Rng::from_env();
    let n = (kills() / 3).max(1);
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let args = ["sleep", "1000"];
    let mut runs = Vec::new();
    for _ in 0..5 {
        let u = lab.unit(ctx, &args, &|_| {})?;
        let o = u.create(&rt);
        ensure!(o.success(), "calibration create failed: {}", o.brief());
        let t0 = Instant::now();
        let d = u.delete_force(&rt);
        runs.push(t0.elapsed());
        ensure!(
            d.success(),
            "calibration delete --force failed: {}",
            d.brief()
        );
        u.gone(&rt)?;
    }
    let took = typical(runs);
    let bound = kill_bound(took);
    println!(
        "# sigkill_delete: seed={seed} iterations={n}; delete --force takes ~{}us, kills at 0..{}us",
        took.as_micros(),
        bound.as_micros()
    );
    let mut t = Tally::default();
    let mut first: Vec<String> = Vec::new();
    for _ in 0..n {
        let u = lab.unit(ctx, &args, &|_| {})?;
        let o = u.create(&rt);
        if !o.success() {
            t.add("create-failed");
            if first.len() < 5 {
                first.push(o.brief());
            }
            let _ = u.delete_force(&rt);
            record(&mut t, &mut first, "create failed", &u, &rt);
            continue;
        }
        let started = rng.chance(1, 2);
        if started {
            let o = u.call(&rt, &["start", &u.id]);
            if !o.success() {
                t.add("start-failed");
            }
        }
        let delay = Duration::from_micros(rng.below(bound.as_micros() as u64 + 1));
        let run = u.spawn(&rt, &["delete", "--force", &u.id])?;
        sleep_until(run.started, delay);
        let finished = run.exited();
        if !finished {
            run.kill9();
        }
        let o = run.wait(Some(BOUND));
        if o.timed_out {
            t.add("hang");
        }
        let what = match (started, finished) {
            (_, true) => "finished first",
            (true, false) => "killed (running)",
            (false, false) => "killed (created)",
        };
        t.add(format!("target:{what}"));
        let d = u.delete_force(&rt);
        if !d.success() {
            t.add("delete-failed");
            if first.len() < 5 {
                first.push(format!("second delete --force: {}", d.brief()));
            }
        }
        record(&mut t, &mut first, what, &u, &rt);
    }
    println!("# sigkill_delete: first delete: {}", t.line("target:"));
    println!(
        "# sigkill_delete: second delete --force failed {}, hangs {}, create failed {}",
        t.get("delete-failed"),
        t.get("hang"),
        t.get("create-failed")
    );
    println!(
        "# sigkill_delete: leaky iterations {}/{n}; by kind: {}; by first delete: {}",
        t.get("leaky-iterations"),
        t.line("leak:"),
        t.line("leaky-after:")
    );
    report("sigkill_delete", &first);
    verdict(&t)
}

/// `delete --force` bounded at `secs`: a slower one is a failure.
fn prompt_delete(u: &Unit, rt: &Runtime, secs: u64) -> R {
    let mut o = u.opts();
    o.timeout = Some(Duration::from_secs(secs));
    let t0 = Instant::now();
    let d = rt.exec_opts(&["delete", "--force", &u.id], o);
    ensure!(
        !d.timed_out,
        "delete --force did not finish within {secs}s: {}",
        d.brief()
    );
    ensure!(d.success(), "delete --force failed: {}", d.brief());
    let l = u.leaks(rt);
    if !l.is_empty() {
        let desc = l.describe();
        leak::scrub(&u.target(rt), &l);
        bail!(
            "left after delete --force ({}ms): {desc}",
            t0.elapsed().as_millis()
        );
    }
    Ok(())
}

fn wait_status(u: &Unit, rt: &Runtime, want: &str, secs: u64) -> R {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let o = u.call(rt, &["state", &u.id]);
        let v = serde_json::from_str::<Value>(&o.stdout).ok();
        let s = v.as_ref().map(|v| v["status"].clone());
        if o.success() && s.as_ref().is_some_and(|s| s == want) {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!(
                "status did not become {want} within {secs}s (last: {} {})",
                o.brief(),
                o.stdout.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exits_at_once(ctx: &mut Ctx) -> R {
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    for round in 0..5 {
        let u = lab.unit(ctx, &["true"], &|_| {})?;
        let o = u.create(&rt);
        ensure!(o.success(), "create failed: {}", o.brief());
        let o = u.call(&rt, &["start", &u.id]);
        ensure!(
            o.success(),
            "start of a process that exits at once failed: {}",
            o.brief()
        );
        wait_status(&u, &rt, "stopped", 10)?;
        let v: Value = serde_json::from_str(&u.call(&rt, &["state", &u.id]).stdout)
            .map_err(|e| Fail::Fail(format!("state: {e}")))?;
        ensure!(
            v["pid"] == 0 || v["pid"].is_null(),
            "a stopped container reports pid {}",
            v["pid"]
        );
        let k = u.call(&rt, &["kill", &u.id, "KILL"]);
        ensure!(
            !k.timed_out && k.signal.is_none(),
            "kill of a stopped container: {}",
            k.brief()
        );
        if round % 2 == 0 {
            // A stopped container needs no --force.
            let d = u.call(&rt, &["delete", &u.id]);
            ensure!(
                d.success(),
                "delete of a stopped container failed: {}",
                d.brief()
            );
        }
        u.gone(&rt)?;
    }
    Ok(())
}

fn ignores_sigterm(ctx: &mut Ctx) -> R {
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    let u = lab.unit(
        ctx,
        &["sh", "-c", "trap '' TERM; while :; do sleep 1000; done"],
        &|_| {},
    )?;
    let o = u.create(&rt);
    ensure!(o.success(), "create failed: {}", o.brief());
    let o = u.call(&rt, &["start", &u.id]);
    ensure!(o.success(), "start failed: {}", o.brief());
    let pid = running_state(&u, &rt)?["pid"].clone();
    let k = u.call(&rt, &["kill", &u.id, "TERM"]);
    ensure!(k.success(), "kill TERM failed: {}", k.brief());
    // It ignores TERM: still running, same pid.
    std::thread::sleep(Duration::from_millis(100));
    let v = running_state(&u, &rt)?;
    ensure!(v["pid"] == pid, "pid changed from {pid} to {}", v["pid"]);
    prompt_delete(&u, &rt, 10)?;
    let o = u.call(&rt, &["state", &u.id]);
    ensure!(
        o.failed(),
        "state of a deleted container: {} {}",
        o.brief(),
        o.stdout
    );
    Ok(())
}

/// Zombie children of `pid`.
fn zombies_of(pid: i32) -> usize {
    host::all_pids()
        .into_iter()
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rfind(')').is_some_and(|i| {
                    let f: Vec<&str> = s[i + 2..].split(' ').collect();
                    f.first() == Some(&"Z") && f.get(1) == Some(&pid.to_string().as_str())
                })
            })
        })
        .count()
}

fn zombie_maker(ctx: &mut Ctx) -> R {
    let rt = ctx.rt.clone();
    let mut lab = Lab::new(ctx)?;
    // The children exit at once; sh then becomes sleep, which never reaps them.
    let u = lab.unit(
        ctx,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do sh -c 'exit 0' & done; exec sleep 100000",
        ],
        &|_| {},
    )?;
    let o = u.create(&rt);
    ensure!(o.success(), "create failed: {}", o.brief());
    let o = u.call(&rt, &["start", &u.id]);
    ensure!(o.success(), "start failed: {}", o.brief());
    let pid = running_state(&u, &rt)?["pid"].as_i64().unwrap_or(0) as i32;
    let end = Instant::now() + Duration::from_secs(10);
    while zombies_of(pid) < 8 {
        if Instant::now() >= end {
            bail!(
                "setup: the init {pid} did not get its 8 zombies within 10s ({})",
                zombies_of(pid)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = running_state(&u, &rt)?;
    ensure!(v["pid"] == pid, "state pid {} (init is {pid})", v["pid"]);
    let ps = u.call(&rt, &["ps", &u.id]);
    ensure!(!ps.timed_out, "ps hung: {}", ps.brief());
    // TERM to a PID 1 without a handler does nothing; KILL stops it, zombies and all.
    let k = u.call(&rt, &["kill", &u.id, "TERM"]);
    ensure!(k.success(), "kill TERM failed: {}", k.brief());
    let k = u.call(&rt, &["kill", &u.id, "KILL"]);
    ensure!(k.success(), "kill KILL failed: {}", k.brief());
    wait_status(&u, &rt, "stopped", 10)?;
    prompt_delete(&u, &rt, 10)
}
