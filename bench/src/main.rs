//! `make bench`: berth and every installed peer runtime (runc, crun, youki), side by side in
//! one run on the same bundles, plus `floor` (the kernel's floor: namespaces, mounts,
//! pivot_root, exec, no runtime). Medians from hyperfine, ratios to berth, and how the cost of
//! mounts, masked paths, seccomp rules and hooks grows with their number. It only reports: it
//! fails when a command fails or hangs, never on a timing. It cleans up after itself on every
//! way out, SIGINT and SIGTERM included, and at its start after an earlier run that was killed.

mod bundle;
mod cleanup;
mod hf;
#[path = "../../integration/src/moby_profile.rs"]
mod moby_profile;
mod proc;
mod report;
mod rt;

use cleanup::PARALLEL_PREFIX;
use proc::{failed, join, Fail, Scratch};
use report::{Cell, Family, Report, Row};
use rt::Runtime;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Everything the benchmark makes on the host lives here (state roots, bundles, scratch).
const BASE: &str = "/run/berth-bench";
const USAGE: &str = "usage: bench [--quick] [--berth PATH] [--floor PATH] [--crun-shim PATH] \
                     [--seccomp-profile PATH] [--out DIR] [--runtimes berth,runc,crun,youki]";

struct Opts {
    quick: bool,
    berth: PathBuf,
    floor: PathBuf,
    crun_shim: Option<PathBuf>,
    seccomp_profile: PathBuf,
    out: PathBuf,
    /// The peers to run (berth always runs); None: every one installed.
    only: Option<Vec<String>>,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        return p;
    }
    std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
}

fn parse_opts() -> Result<Opts, String> {
    let floor_beside_me = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("floor")))
        .unwrap_or_else(|| target_dir().join("release/floor"));
    let mut o = Opts {
        quick: false,
        berth: target_dir().join("release/berth"),
        floor: floor_beside_me,
        crun_shim: None,
        seccomp_profile: PathBuf::from(moby_profile::PODMAN_PROFILE),
        out: target_dir().join("bench"),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .map(PathBuf::from)
                .ok_or(format!("{a} needs a value"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--berth" => o.berth = value()?,
            "--floor" => o.floor = value()?,
            "--crun-shim" => o.crun_shim = Some(value()?),
            "--seccomp-profile" => o.seccomp_profile = value()?,
            "--out" => o.out = value()?,
            "--runtimes" => {
                let list = value()?;
                let names: Vec<String> = list
                    .to_string_lossy()
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect();
                if let Some(bad) = names.iter().find(|n| !rt::KEYS.contains(&n.as_str())) {
                    return Err(format!("--runtimes: unknown runtime {bad:?}\n{USAGE}"));
                }
                o.only = Some(names);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    o.berth = absolute(o.berth);
    o.floor = absolute(o.floor);
    o.crun_shim = o.crun_shim.map(absolute);
    o.seccomp_profile = absolute(o.seccomp_profile);
    o.out = absolute(o.out);
    Ok(o)
}

/// How much to do: the full run, or `--quick` (CI's proof that the benchmark works).
struct Plan {
    runs: u32,
    warmup: u32,
    mounts: usize,
    masked: usize,
    rules: usize,
    hooks: usize,
    seq: usize,
    seq_runs: u32,
    par: usize,
    par_batches: usize,
    rss: usize,
    debug: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                runs: 3,
                warmup: 1,
                mounts: 20,
                masked: 20,
                rules: 20,
                hooks: 5,
                seq: 20,
                seq_runs: 3,
                par: 20,
                par_batches: 3,
                rss: 3,
                debug: 15,
            }
        } else {
            Plan {
                runs: 15,
                warmup: 3,
                mounts: 100,
                masked: 100,
                rules: 100,
                hooks: 10,
                seq: 100,
                seq_runs: 3,
                par: 50,
                par_batches: 5,
                rss: 5,
                debug: 15,
            }
        }
    }
}

/// One `run` row beyond the plain one: a bundle and, for the N-item variants, the index of
/// its family in the report.
struct Variant {
    key: String,
    name: String,
    dir: PathBuf,
    family: Option<usize>,
}

struct Bundles {
    rootfs: PathBuf,
    plain: PathBuf,
    sleep: PathBuf,
    seccomp: Option<PathBuf>,
    variants: Vec<Variant>,
}

struct Bench {
    opts: Opts,
    plan: Plan,
    scratch: Scratch,
    report: Report,
}

/// A quoted `sh -c SCRIPT` line.
fn sh(script: &str) -> String {
    join(&["sh", "-c", script])
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// How long a batch of parallel runs may take before it counts as a hang.
const PARALLEL_LIMIT: Duration = Duration::from_secs(60);

impl Bench {
    /// Files a measurement's outcome in `row` under `col`. Only an interrupt stops the run; a
    /// failed or hung command is a FAIL cell, and the run exits non-zero at the end.
    fn put(&mut self, row: &mut Row, col: &'static str, r: Result<f64, Fail>) -> Result<(), Fail> {
        let cell = match r {
            Ok(v) => {
                eprintln!(
                    "  {:<40} {:<6} {} {}",
                    row.name,
                    col,
                    report::fmt(v, row.unit),
                    row.unit
                );
                Cell::Val(v)
            }
            Err(Fail::Interrupted) => return Err(Fail::Interrupted),
            // A command killed by the terminal's SIGINT fails before the flag is seen.
            Err(_) if proc::interrupted() => return Err(Fail::Interrupted),
            Err(e) => {
                eprintln!("  {:<40} {:<6} FAILED: {e}", row.name, col);
                self.report.fail(col, format!("{} / {col}: {e}", row.name));
                Cell::Fail(e.to_string())
            }
        };
        row.set(col, cell);
        Ok(())
    }

    /// The outcome of an untimed step after a row's measurements (deleting its container):
    /// a failure is listed, it has no cell of its own.
    fn after(&mut self, rt: &Runtime, r: Result<(), Fail>) -> Result<(), Fail> {
        match r {
            Ok(()) => Ok(()),
            Err(Fail::Interrupted) => Err(Fail::Interrupted),
            Err(_) if proc::interrupted() => Err(Fail::Interrupted),
            Err(e) => {
                eprintln!("  {}: FAILED: {e}", rt.key);
                self.report.fail(rt.key, format!("{}: {e}", rt.key));
                Ok(())
            }
        }
    }

    /// Runs a hyperfine job; returns its median in ms and keeps hyperfine's record.
    fn hyperfine(&mut self, row: &str, col: &str, job: hf::Job) -> Result<f64, Fail> {
        let stats = hf::hyperfine(&job, &mut self.scratch)?;
        self.report.raw.push(json!({
            "row": row, "column": col, "command": job.command, "prepare": job.prepare,
            "result": stats.raw,
        }));
        Ok(stats.median * 1000.0)
    }

    /// The default hyperfine job of a row: the plan's runs and warmups.
    fn timed(
        &mut self,
        row: &str,
        rt: &Runtime,
        command: String,
        prepare: Option<String>,
    ) -> Result<f64, Fail> {
        let job = hf::Job {
            command,
            prepare,
            runs: self.plan.runs,
            warmup: self.plan.warmup,
            env: &rt.env,
            stuck: hf::STUCK,
            timeout: hf::deadline(self.plan.runs + self.plan.warmup, hf::STUCK),
        };
        self.hyperfine(row, rt.key, job)
    }

    fn start_row(rts: &[Runtime], key: &str, name: &str, unit: &'static str) -> Row {
        let mut row = Row::new(key, name, unit);
        for rt in rts.iter().filter(|r| !r.installed()) {
            row.set(rt.key, Cell::Absent);
        }
        row
    }

    fn prepare_bundles(&mut self, berth: &Path) -> Result<Bundles, Fail> {
        let base = Path::new(BASE).join("bundles");
        let rootfs = base.join("rootfs");
        let p = &self.plan;
        let items = [p.mounts, p.masked].iter().max().copied().unwrap_or(0) * 2;
        bundle::make_rootfs(&rootfs, items)?;
        let plain_dir = base.join("plain");
        let cfg = bundle::base_config(berth, &plain_dir, &rootfs, &mut self.scratch)?;
        let plain = bundle::write(&plain_dir, &cfg)?;
        let sleep = bundle::write(
            &base.join("sleep"),
            &bundle::with_args(&cfg, &["/bin/sleep", "1000"]),
        )?;
        let mut variants = Vec::new();
        let seccomp = match bundle::with_docker_seccomp(&cfg, &self.opts.seccomp_profile) {
            Ok(c) => {
                let dir = bundle::write(&base.join("seccomp"), &c)?;
                variants.push(Variant {
                    key: "run:seccomp".into(),
                    name: "run (seccomp: Docker's default)".into(),
                    dir: dir.clone(),
                    family: None,
                });
                Some(dir)
            }
            Err(e) => {
                eprintln!("bench: no seccomp variant: {e}");
                self.report.fail("", format!("seccomp variant: {e}"));
                None
            }
        };
        type Make = fn(&Value, usize) -> Value;
        let families: [(&str, &str, usize, Make); 4] = [
            ("mounts", "tmpfs mounts", p.mounts, bundle::with_mounts),
            ("masked", "masked paths", p.masked, bundle::with_masked),
            ("rules", "seccomp rules", p.rules, bundle::with_rules),
            ("hooks", "createRuntime hooks", p.hooks, bundle::with_hooks),
        ];
        for (short, what, n, make) in families {
            let mut rows = Vec::new();
            for k in [n, 2 * n] {
                let key = format!("run:{short}-{k}");
                let dir = bundle::write(&base.join(format!("{short}-{k}")), &make(&cfg, k))?;
                variants.push(Variant {
                    key: key.clone(),
                    name: format!("run ({short}-{k}: {k} {what})"),
                    dir,
                    family: Some(self.report.families.len()),
                });
                rows.push((k, key));
            }
            let rows: [(usize, String); 2] = [rows[0].clone(), rows[1].clone()];
            self.report.families.push(Family {
                name: what.to_string(),
                rows,
                base: Vec::new(),
            });
        }
        Ok(Bundles {
            rootfs,
            plain,
            sleep,
            seccomp,
            variants,
        })
    }

    /// `RT run` of one bundle, for every runtime.
    fn row_run(&mut self, rts: &[Runtime], key: &str, name: &str, dir: &Path) -> Result<Row, Fail> {
        let mut row = Self::start_row(rts, key, name, "ms");
        let b = dir.to_string_lossy();
        for rt in rts.iter().filter(|r| r.installed()) {
            let r = rt.delete("bench-run", &mut self.scratch).and_then(|()| {
                let cmd = rt.line(&["run", "--bundle", &b, "bench-run"]);
                self.timed(key, rt, cmd, None)
            });
            self.put(&mut row, rt.key, r)?;
        }
        Ok(row)
    }

    /// One family of N-item variants (N and 2N), each runtime in turn timing the plain run
    /// (the family's own baseline, so the per-item cost compares figures taken together), then
    /// N, then 2N.
    fn rows_family(
        &mut self,
        rts: &[Runtime],
        family: usize,
        plain: &Path,
        variants: &[&Variant],
    ) -> Result<Vec<Row>, Fail> {
        let mut rows: Vec<Row> = variants
            .iter()
            .map(|v| Self::start_row(rts, &v.key, &v.name, "ms"))
            .collect();
        let plain = plain.to_string_lossy();
        for rt in rts.iter().filter(|r| r.installed()) {
            let key = format!(
                "{}:baseline",
                variants.first().map_or("", |v| v.key.as_str())
            );
            let base = rt.delete("bench-run", &mut self.scratch).and_then(|()| {
                let cmd = rt.line(&["run", "--bundle", &plain, "bench-run"]);
                self.timed(&key, rt, cmd, None)
            });
            match base {
                Ok(ms) => self.report.families[family].base.push((rt.key, ms)),
                Err(Fail::Interrupted) => return Err(Fail::Interrupted),
                Err(e) => {
                    eprintln!("  {key} {}: FAILED: {e}", rt.key);
                    let f = format!("plain run before {} / {}: {e}", variants[0].name, rt.key);
                    self.report.fail(rt.key, f);
                }
            }
            for (row, v) in rows.iter_mut().zip(variants) {
                let b = v.dir.to_string_lossy();
                let r = rt.delete("bench-run", &mut self.scratch).and_then(|()| {
                    let cmd = rt.line(&["run", "--bundle", &b, "bench-run"]);
                    self.timed(&v.key, rt, cmd, None)
                });
                self.put(row, rt.key, r)?;
            }
        }
        Ok(rows)
    }

    /// create, start and delete timed one at a time, each with the others as its untimed
    /// preparation.
    fn rows_lifecycle(&mut self, rts: &[Runtime], plain: &Path) -> Result<Vec<Row>, Fail> {
        let b = plain.to_string_lossy();
        let mut rows = [
            Self::start_row(rts, "create", "create", "ms"),
            Self::start_row(rts, "start", "start", "ms"),
            Self::start_row(rts, "delete", "delete (stopped container)", "ms"),
        ];
        for rt in rts.iter().filter(|r| r.installed()) {
            let del = quiet_delete(rt, "bench-c");
            let create = rt.line(&["create", "--bundle", &b, "bench-c"]);
            let start = rt.line(&["start", "bench-c"]);
            let state = rt.line(&["state", "bench-c"]);
            let stopped = format!(
                "n=0; until {state} 2>/dev/null | grep -q '\"stopped\"'; do \
                 n=$((n+1)); [ $n -lt 2000 ] || {{ echo 'never stopped' >&2; exit 1; }}; \
                 sleep 0.005; done"
            );
            let jobs = [
                ("create", create.clone(), sh(&format!("{del}; true"))),
                ("start", start.clone(), sh(&format!("{del}; {create}"))),
                (
                    "delete",
                    rt.line(&["delete", "--force", "bench-c"]),
                    sh(&format!("{del}; {create} && {start} && {stopped}")),
                ),
            ];
            for (row, (key, cmd, prep)) in rows.iter_mut().zip(jobs) {
                let r = self.timed(key, rt, cmd, Some(prep));
                self.put(row, rt.key, r)?;
            }
            let r = rt.delete("bench-c", &mut self.scratch);
            self.after(rt, r)?;
        }
        Ok(rows.into())
    }

    /// `create` alone of one bundle (the preparation deletes the container), to set beside
    /// the plain create: what a variant adds to create itself.
    fn row_create(
        &mut self,
        rts: &[Runtime],
        key: &str,
        name: &str,
        dir: &Path,
    ) -> Result<Row, Fail> {
        let b = dir.to_string_lossy();
        let mut row = Self::start_row(rts, key, name, "ms");
        for rt in rts.iter().filter(|r| r.installed()) {
            let del = quiet_delete(rt, "bench-c");
            let create = rt.line(&["create", "--bundle", &b, "bench-c"]);
            let r = self.timed(key, rt, create, Some(sh(&format!("{del}; true"))));
            self.put(&mut row, rt.key, r)?;
            let r = rt.delete("bench-c", &mut self.scratch);
            self.after(rt, r)?;
        }
        Ok(row)
    }

    /// exec, state, list and exec's peak RSS against one running container.
    fn rows_running(&mut self, rts: &[Runtime], sleep: &Path) -> Result<Vec<Row>, Fail> {
        let b = sleep.to_string_lossy();
        let mut rows = [
            Self::start_row(rts, "exec", "exec /bin/true", "ms"),
            Self::start_row(rts, "state", "state", "ms"),
            Self::start_row(rts, "list", "list (1 container)", "ms"),
            Self::start_row(rts, "rss:exec", "peak RSS: exec", "MiB"),
        ];
        for rt in rts.iter().filter(|r| r.installed()) {
            let t = Duration::from_secs(60);
            let up = rt.delete("bench-x", &mut self.scratch).and_then(|()| {
                proc::run_ok(
                    &mut rt.command(&["create", "--bundle", &b, "bench-x"]),
                    &mut self.scratch,
                    t,
                )?;
                proc::run_ok(&mut rt.command(&["start", "bench-x"]), &mut self.scratch, t)
            });
            if let Err(e) = up {
                let msg = format!("could not start the container: {e}");
                for row in rows.iter_mut() {
                    let r = match &e {
                        Fail::Interrupted => Err(Fail::Interrupted),
                        _ => Err(failed(msg.clone())),
                    };
                    self.put(row, rt.key, r)?;
                }
                continue;
            }
            let jobs = [
                ("exec", rt.line(&["exec", "bench-x", "/bin/true"])),
                ("state", rt.line(&["state", "bench-x"])),
                ("list", rt.line(&["list"])),
            ];
            for (row, (key, cmd)) in rows.iter_mut().zip(jobs) {
                let r = self.timed(key, rt, cmd, None);
                self.put(row, rt.key, r)?;
            }
            let r = self.rss(rt, &["exec", "bench-x", "/bin/true"], None);
            self.put(&mut rows[3], rt.key, r)?;
            let r = rt.delete("bench-x", &mut self.scratch);
            self.after(rt, r)?;
        }
        Ok(rows.into())
    }

    /// One hyperfine timing (a few runs) of a shell loop of N sequential `run`s; ms per run.
    fn row_sequential(&mut self, rts: &[Runtime], plain: &Path) -> Result<Row, Fail> {
        let n = self.plan.seq;
        let name = format!("{n} sequential runs, per run");
        let mut row = Self::start_row(rts, "sequential", &name, "ms");
        let b = plain.to_string_lossy();
        for rt in rts.iter().filter(|r| r.installed()) {
            let run = rt.line(&["run", "--bundle", &b, "bench-seq"]);
            let script = format!("i=0; while [ $i -lt {n} ]; do {run} || exit 1; i=$((i+1)); done");
            let runs = self.plan.seq_runs;
            // The loop's shell lives through all its runs; each run is checked on its own.
            let timeout = hf::deadline(runs * n as u32, Duration::from_secs(5));
            let r = rt.delete("bench-seq", &mut self.scratch).and_then(|()| {
                let job = hf::Job {
                    command: sh(&script),
                    prepare: None,
                    runs,
                    warmup: 0,
                    env: &rt.env,
                    stuck: hf::STUCK,
                    timeout,
                };
                self.hyperfine("sequential", rt.key, job)
            });
            self.put(&mut row, rt.key, r.map(|ms| ms / n as f64))?;
        }
        Ok(row)
    }

    /// N `run`s with distinct ids started at once, a few batches: the median wall time (first
    /// start to last exit) and the number that failed. A batch still running after
    /// `PARALLEL_LIMIT` is a hang.
    fn rows_parallel(&mut self, rts: &[Runtime], plain: &Path) -> Result<Vec<Row>, Fail> {
        let n = self.plan.par;
        let mut wall = Self::start_row(rts, "parallel", &format!("{n} parallel runs, wall"), "ms");
        let mut errs = Self::start_row(
            rts,
            "parallel:errors",
            &format!("{n} parallel runs, errors"),
            "count",
        );
        errs.ratios = false;
        for rt in rts.iter().filter(|r| r.installed()) {
            let mut walls = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            let mut hang = None;
            // One batch of warmup, untimed.
            for batch in 0..=self.plan.par_batches {
                match self.parallel_batch(rt, plain, n) {
                    Ok((ms, bad, why)) => {
                        if batch > 0 {
                            walls.push(ms);
                        }
                        errors += bad;
                        if first_error.is_none() {
                            first_error = why;
                        }
                    }
                    Err(Fail::Interrupted) => return Err(Fail::Interrupted),
                    Err(e) => {
                        hang = Some(e);
                        break;
                    }
                }
                // A failed run may have left its container.
                if errors > 0 {
                    for i in 1..=n {
                        rt.delete(&format!("{PARALLEL_PREFIX}{i}"), &mut self.scratch)?;
                    }
                }
            }
            if let Some(e) = hang {
                let msg = e.to_string();
                self.put(&mut wall, rt.key, Err(e))?;
                self.put(&mut errs, rt.key, Err(failed(msg)))?;
                continue;
            }
            let m = median(walls).ok_or_else(|| failed("no batch ran"));
            self.put(&mut wall, rt.key, m)?;
            errs.set(rt.key, Cell::Val(errors as f64));
            eprintln!("  {:<40} {:<6} {errors}", errs.name, rt.key);
            if errors > 0 {
                let why = first_error.unwrap_or_default();
                self.report.fail(
                    rt.key,
                    format!(
                        "{} / {}: {errors} runs failed; first: {why}",
                        errs.name, rt.key
                    ),
                );
            }
        }
        Ok(vec![wall, errs])
    }

    /// Starts `n` runs at once; returns the wall time in ms, how many failed and why the first
    /// did.
    fn parallel_batch(
        &mut self,
        rt: &Runtime,
        plain: &Path,
        n: usize,
    ) -> Result<(f64, usize, Option<String>), Fail> {
        let b = plain.to_string_lossy();
        let mut children = Vec::new();
        let t0 = Instant::now();
        let deadline = t0 + PARALLEL_LIMIT;
        let mut spawn_error = None;
        for i in 1..=n {
            let id = format!("{PARALLEL_PREFIX}{i}");
            let err = self.scratch.file(&format!("{id}.stderr"));
            let mut cmd = rt.command(&["run", "--bundle", &b, &id]);
            let file = std::fs::File::create(&err).map_err(|e| failed(format!("scratch: {e}")));
            let spawned = file.and_then(|f| {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(f))
                    .spawn()
                    .map_err(|e| failed(format!("{}: {e}", proc::show(&cmd))))
            });
            match spawned {
                Ok(c) => children.push((c, err, None)),
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        let mut last_exit = t0;
        let outcome = loop {
            let mut running = 0;
            for (child, _, status) in children.iter_mut() {
                if status.is_some() {
                    continue;
                }
                match child.try_wait() {
                    Ok(Some(s)) => {
                        *status = Some(s);
                        last_exit = Instant::now();
                    }
                    Ok(None) => running += 1,
                    Err(e) => break_on(&mut spawn_error, e),
                }
            }
            if running == 0 {
                break Ok(());
            }
            if proc::interrupted() {
                break Err(Fail::Interrupted);
            }
            if Instant::now() >= deadline {
                break Err(Fail::Hang(format!(
                    "{running} of {n} parallel runs still running after {} s",
                    PARALLEL_LIMIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if outcome.is_err() {
            let mut left: Vec<&mut std::process::Child> = children
                .iter_mut()
                .filter(|(_, _, status)| status.is_none())
                .map(|(child, _, _)| child)
                .collect();
            proc::stop_all(&mut left, matches!(outcome, Err(Fail::Interrupted)));
        }
        let mut bad = 0;
        let mut why = None;
        for (_, err, status) in &children {
            if !status.is_some_and(|s| s.success()) {
                bad += 1;
                if why.is_none() {
                    let text = std::fs::read_to_string(err).unwrap_or_default();
                    why = Some(text.trim().lines().last().unwrap_or("").to_string());
                }
            }
            let _ = std::fs::remove_file(err);
        }
        outcome?;
        if let Some(e) = spawn_error {
            return Err(e);
        }
        Ok((
            last_exit.duration_since(t0).as_secs_f64() * 1000.0,
            bad,
            why,
        ))
    }

    /// Peak RSS (MiB) of one runtime command, from /usr/bin/time's %M; median of the plan's
    /// count. `then` runs (untimed) after each.
    fn rss(&mut self, rt: &Runtime, args: &[&str], then: Option<&str>) -> Result<f64, Fail> {
        let mut kib = Vec::new();
        for _ in 0..self.plan.rss {
            if let Some(id) = then {
                rt.delete(id, &mut self.scratch)?;
            }
            let out = self.scratch.file("time");
            let mut c = Command::new("/usr/bin/time");
            c.arg("-o").arg(&out).args(["-f", "%M"]);
            c.arg(rt.program()).arg("--root").arg(&rt.root).args(args);
            c.envs(rt.env.iter().map(|(k, v)| (k, v)));
            let done = proc::run_ok(&mut c, &mut self.scratch, Duration::from_secs(60));
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let _ = std::fs::remove_file(&out);
            done?;
            let v: f64 = text
                .trim()
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .ok_or_else(|| failed(format!("/usr/bin/time wrote {text:?}")))?;
            kib.push(v);
        }
        if let Some(id) = then {
            rt.delete(id, &mut self.scratch)?;
        }
        median(kib)
            .map(|k| k / 1024.0)
            .ok_or_else(|| failed("no measurement"))
    }

    fn rows_rss(&mut self, rts: &[Runtime], plain: &Path) -> Result<Vec<Row>, Fail> {
        let b = plain.to_string_lossy();
        let mut create = Self::start_row(rts, "rss:create", "peak RSS: create", "MiB");
        let mut run = Self::start_row(rts, "rss:run", "peak RSS: run", "MiB");
        for rt in rts.iter().filter(|r| r.installed()) {
            let r = self.rss(
                rt,
                &["create", "--bundle", &b, "bench-rss"],
                Some("bench-rss"),
            );
            self.put(&mut create, rt.key, r)?;
            let r = self.rss(rt, &["run", "--bundle", &b, "bench-rss"], Some("bench-rss"));
            self.put(&mut run, rt.key, r)?;
        }
        Ok(vec![create, run])
    }

    fn row_sizes(&mut self, rts: &[Runtime]) -> Result<Row, Fail> {
        let mut row = Self::start_row(rts, "size", "binary size", "MiB");
        for rt in rts.iter().filter(|r| r.installed()) {
            if let Some(p) = &rt.path {
                let r = std::fs::metadata(p)
                    .map(|m| m.len() as f64 / MIB)
                    .map_err(|e| failed(format!("{}: {e}", p.display())));
                self.put(&mut row, rt.key, r)?;
            }
        }
        Ok(row)
    }

    /// The floor, without and with cgroups: only the floor column.
    fn rows_floor(&mut self, rootfs: &Path) -> Result<Vec<Row>, Fail> {
        let floor = self.opts.floor.to_string_lossy().into_owned();
        let root = rootfs.to_string_lossy().into_owned();
        let mut out = Vec::new();
        for (key, name, words) in [
            (
                "floor",
                "floor: namespaces, mounts, pivot_root, exec",
                vec![floor.as_str(), &root, "--", "/bin/true"],
            ),
            (
                "floor:cgroup",
                "floor + a cgroup in each hierarchy",
                vec![
                    floor.as_str(),
                    "--cgroup",
                    "bench-floor",
                    &root,
                    "--",
                    "/bin/true",
                ],
            ),
        ] {
            let mut row = Row::new(key, name, "ms");
            row.ratios = false;
            let job = hf::Job {
                command: join(&words),
                prepare: None,
                runs: self.plan.runs,
                warmup: self.plan.warmup,
                env: &[],
                stuck: hf::STUCK,
                timeout: hf::deadline(self.plan.runs + self.plan.warmup, hf::STUCK),
            };
            let r = self.hyperfine(key, "floor", job);
            self.put(&mut row, "floor", r)?;
            out.push(row);
        }
        Ok(out)
    }

    /// berth alone: its debug log's own timings of the CVE-2019-5736 defence and of any step
    /// that compiles seccomp, over the plan's count of creates.
    fn rows_berth_debug(
        &mut self,
        berth: &Runtime,
        bundles: &[(&str, &Path)],
    ) -> Result<Vec<Row>, Fail> {
        let mut out = Vec::new();
        if !berth.installed() {
            return Ok(out);
        }
        for (variant, dir) in bundles {
            let b = dir.to_string_lossy();
            let mut protected = Vec::new();
            let mut steps: Vec<(String, Vec<f64>)> = Vec::new();
            let mut error = None;
            for _ in 0..self.plan.debug {
                let log = self.scratch.file("berth-debug.json");
                let logs = log.to_string_lossy();
                let args = [
                    "--debug",
                    "--log",
                    &logs,
                    "--log-format",
                    "json",
                    "create",
                    "--bundle",
                    &b,
                    "bench-dbg",
                ];
                let r = berth.delete("bench-dbg", &mut self.scratch).and_then(|()| {
                    proc::run_ok(
                        &mut berth.command(&args),
                        &mut self.scratch,
                        Duration::from_secs(60),
                    )
                });
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = std::fs::remove_file(&log);
                if let Err(e) = r {
                    error = Some(e);
                    break;
                }
                let (p, s) = parse_debug_log(&text);
                protected.extend(p);
                for (name, us) in s {
                    match steps.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, v)) => v.push(us),
                        None => steps.push((name, vec![us])),
                    }
                }
            }
            let del = berth.delete("bench-dbg", &mut self.scratch);
            let mut row = Row::new(
                format!("berth:protected:{variant}"),
                format!("berth only: binary protected ({variant})"),
                "µs",
            );
            row.ratios = false;
            if let Some(e) = error.or(del.err()) {
                self.put(&mut row, "berth", Err(e))?;
                out.push(row);
                continue;
            }
            match median(protected) {
                Some(v) => self.put(&mut row, "berth", Ok(v))?,
                None => row.set("berth", Cell::NotAvailable),
            }
            out.push(row);
            if steps.is_empty() {
                let mut row = Row::new(
                    format!("berth:seccomp:{variant}"),
                    format!("berth only: seccomp compile ({variant})"),
                    "µs",
                );
                row.ratios = false;
                row.set("berth", Cell::NotAvailable);
                out.push(row);
            }
            for (name, v) in steps {
                let mut row = Row::new(
                    format!("berth:step:{name}:{variant}"),
                    format!("berth only: {name} ({variant})"),
                    "µs",
                );
                row.ratios = false;
                let m = median(v).ok_or_else(|| failed("no record"));
                self.put(&mut row, "berth", m)?;
                out.push(row);
            }
        }
        Ok(out)
    }
}

fn break_on(slot: &mut Option<Fail>, e: std::io::Error) {
    if slot.is_none() {
        *slot = Some(failed(format!("wait: {e}")));
    }
}

/// A duration as berth logs it (`850µs`, `3.2ms`, `1.25s`), in µs.
fn parse_duration(s: &str) -> Option<f64> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let v: f64 = num.parse().ok()?;
    let unit = unit.split_whitespace().next().unwrap_or("");
    let unit = unit.trim_end_matches(|c: char| !c.is_alphanumeric() && c != 'µ');
    match unit {
        "µs" | "us" => Some(v),
        "ms" => Some(v * 1000.0),
        "s" => Some(v * 1_000_000.0),
        "ns" => Some(v / 1000.0),
        _ => None,
    }
}

/// From one JSON debug log: the "berth binary protected: ... in X" figures, and every
/// "STEP: done in X" whose step mentions seccomp (all in µs).
/// A shell command deleting container `id` with `rt`, whatever state it is in (or none).
fn quiet_delete(rt: &Runtime, id: &str) -> String {
    format!("{} >/dev/null 2>&1", rt.line(&["delete", "--force", id]))
}

fn parse_debug_log(text: &str) -> (Vec<f64>, Vec<(String, f64)>) {
    let mut protected = Vec::new();
    let mut steps = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(msg) = v["msg"].as_str() else {
            continue;
        };
        if msg.starts_with("berth binary protected") {
            if let Some(us) = msg.rsplit_once(" in ").and_then(|(_, d)| parse_duration(d)) {
                protected.push(us);
            }
        } else if let Some((step, d)) = msg.rsplit_once(": done in ") {
            if step.to_ascii_lowercase().contains("seccomp") {
                if let Some(us) = parse_duration(d) {
                    steps.push((step.to_string(), us));
                }
            }
        }
    }
    (protected, steps)
}

fn machine_info(rts: &[Runtime], opts: &Opts, plan: &Plan) -> Vec<(String, String)> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mut m = vec![
        ("date".to_string(), date),
        ("kernel".to_string(), read("/proc/sys/kernel/osrelease")),
        ("cpus (nproc)".to_string(), format!("{cpus} ({cpu_model})")),
        ("load average at start".to_string(), read("/proc/loadavg")),
        (
            "mode".to_string(),
            format!(
                "{} — {} runs + {} warmups per figure (hyperfine -N, medians)",
                if opts.quick { "quick" } else { "full" },
                plan.runs,
                plan.warmup
            ),
        ),
    ];
    for rt in rts {
        let v = match &rt.path {
            Some(p) if rt.installed() => format!("{} ({})", rt.version, p.display()),
            _ => rt.absent.clone(),
        };
        m.push((rt.key.to_string(), v));
    }
    let shim = if !rts.iter().any(|r| r.key == "crun" && r.installed()) {
        "—".to_string()
    } else if rts.iter().any(|r| r.label.contains("shimmed")) {
        format!(
            "yes: the host is hybrid with controllers in its cgroup2 tree; LD_PRELOAD={}",
            opts.crun_shim
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    } else {
        "no".to_string()
    };
    m.push(("crun shimmed".to_string(), shim));
    m
}

fn footnotes(plan: &Plan) -> Vec<String> {
    vec![
        format!(
            "Times are hyperfine medians (-N: no shell) of {} runs after {} warmups, in ms; a \
             ratio above 1 means berth is slower. Every runtime runs the same bundles (busybox \
             rootfs, `berth spec` with ociVersion 1.0.2).",
            plan.runs, plan.warmup
        ),
        "create: the untimed preparation deletes the container; start: it creates it; delete: \
         it creates and starts it and waits until /bin/true has exited (status stopped), then \
         `delete --force` is timed."
            .into(),
        "exec, state, list and exec's RSS: against one running container (/bin/sleep 1000), \
         created and started by the driver beforehand."
            .into(),
        "Variants: seccomp = Docker's default profile (Debian's copy for Podman) converted to \
         OCI for the spec's bounding capabilities; mounts-N = N more tmpfs mounts at /mnt/mI; \
         masked-N = N more linux.maskedPaths (half directories, half files); rules-N = a \
         profile allowing all but N personality(2) rules, each on its own argument value, \
         returning an errno; hooks-N = N createRuntime hooks, each the host's \
         `dd of=/dev/null status=none` reading the state (not /bin/true: crun 1.8 fails a hook \
         that exits before crun wrote the state to it)."
            .into(),
        format!(
            "Sequential: one hyperfine timing ({} runs) of a sh loop of {} `run`s, divided by {}. \
             Parallel: {} `run`s with distinct ids spawned at once by the driver, wall time from \
             the first spawn to the last exit, median of {} batches after one warmup batch; \
             errors are non-zero exits over all batches ({} s per batch, then a hang).",
            plan.seq_runs,
            plan.seq,
            plan.seq,
            plan.par,
            plan.par_batches,
            PARALLEL_LIMIT.as_secs()
        ),
        format!(
            "Peak RSS: /usr/bin/time %M of the runtime's command (the largest of it and the \
             children it waited for), median of {}. Binary size: the file's size.",
            plan.rss
        ),
        "floor: `floor ROOTFS -- /bin/true` (clone into 5 namespaces, / private, rootfs bound \
         onto itself, proc, pivot_root, exec), and with `--cgroup` a cgroup made, joined and \
         removed in every hierarchy under /sys/fs/cgroup (v1 controllers, name=systemd and the \
         cgroup2 `unified` tree, as the runtimes do here). The floor column of `run (plain)` is \
         the floor with cgroups."
            .into(),
        format!(
            "berth only: from `berth --debug --log-format json create`, median over {} creates; \
             n/a when berth writes no such record.",
            plan.debug
        ),
        "Rows marked FAIL are listed under Failures; — is a runtime not installed (or skipped)."
            .into(),
    ]
}

/// The whole benchmark. An error here (other than in one measurement) ends it.
fn run_all(b: &mut Bench, rts: &[Runtime]) -> Result<(), Fail> {
    let berth = rts
        .iter()
        .find(|r| r.key == "berth")
        .ok_or_else(|| failed("no berth"))?;
    let berth_path = berth
        .path
        .clone()
        .ok_or_else(|| failed(format!("berth: {}", berth.absent)))?;
    let bundles = b.prepare_bundles(&berth_path)?;
    let mut rows = Vec::new();
    eprintln!("bench: measuring");
    let mut plain = b.row_run(rts, "run:plain", "run (plain)", &bundles.plain)?;
    let floor = b.rows_floor(&bundles.rootfs)?;
    if let Some(Cell::Val(v)) = floor.get(1).and_then(|r| r.get("floor")) {
        plain.set("floor", Cell::Val(*v));
    }
    rows.push(plain);
    rows.extend(b.rows_lifecycle(rts, &bundles.plain)?);
    rows.extend(b.rows_running(rts, &bundles.sleep)?);
    for v in bundles.variants.iter().filter(|v| v.family.is_none()) {
        rows.push(b.row_run(rts, &v.key, &v.name, &v.dir)?);
        if v.key == "run:seccomp" {
            let name = v.name.replacen("run", "create", 1);
            rows.push(b.row_create(rts, "create:seccomp", &name, &v.dir)?);
        }
    }
    for f in 0..b.report.families.len() {
        let pair: Vec<&Variant> = bundles
            .variants
            .iter()
            .filter(|v| v.family == Some(f))
            .collect();
        rows.extend(b.rows_family(rts, f, &bundles.plain, &pair)?);
    }
    rows.push(b.row_sequential(rts, &bundles.plain)?);
    rows.extend(b.rows_parallel(rts, &bundles.plain)?);
    rows.extend(b.rows_rss(rts, &bundles.plain)?);
    let exec_rss = rows.iter().position(|r| r.key == "rss:exec");
    if let Some(i) = exec_rss {
        let r = rows.remove(i);
        rows.push(r);
    }
    rows.push(b.row_sizes(rts)?);
    rows.extend(floor);
    let mut dbg: Vec<(&str, &Path)> = vec![("plain", &bundles.plain)];
    if let Some(s) = &bundles.seccomp {
        dbg.push(("seccomp", s));
    }
    rows.extend(b.rows_berth_debug(berth, &dbg)?);
    b.report.rows = rows;
    Ok(())
}

fn main() -> ExitCode {
    proc::install_signal_handlers();
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = Plan::new(opts.quick);
    let base = Path::new(BASE);
    let roots = base.join("roots");

    // Versions are read before the start-up cleanup, which removes the benchmark's directory.
    let probe_dir = std::env::temp_dir().join(format!("berth-bench-probe-{}", std::process::id()));
    let rts = match Scratch::new(&probe_dir) {
        Ok(mut s) => rt::discover(
            &opts.berth,
            opts.crun_shim.as_deref(),
            opts.only.as_deref(),
            &roots,
            &mut s,
        ),
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = std::fs::remove_dir_all(&probe_dir);

    proc::cleaning(true);
    let (notes, ok) = cleanup::cleanup(base, &rts);
    proc::cleaning(false);
    for n in &notes {
        eprintln!("bench: from an earlier run: {n}");
    }
    if !ok {
        eprintln!("bench: could not clean up what an earlier run left; stopping");
        return ExitCode::from(1);
    }

    let mut report = Report {
        machine: machine_info(&rts, &opts, &plan),
        labels: rts.iter().map(|r| (r.key, r.label.clone())).collect(),
        footnotes: footnotes(&plan),
        ..Report::default()
    };
    report.labels.push(("floor", "floor".into()));
    for (k, v) in &report.machine {
        eprintln!("bench: {k}: {v}");
    }
    let scratch = Scratch::new(&base.join("tmp"));
    let (outcome, report) = match scratch {
        Ok(scratch) => {
            let mut b = Bench {
                opts,
                plan,
                scratch,
                report,
            };
            let outcome = run_all(&mut b, &rts);
            b.report.failures.extend(
                outcome
                    .as_ref()
                    .err()
                    .filter(|e| !matches!(e, Fail::Interrupted))
                    .map(|e| format!("stopped: {e}")),
            );
            (outcome, Some((b.report, b.opts.out)))
        }
        Err(e) => {
            eprintln!("bench: {e}");
            (Err(e), None)
        }
    };

    proc::cleaning(true);
    let (notes, clean) = cleanup::cleanup(base, &rts);
    for n in &notes {
        eprintln!("bench: cleanup: {n}");
    }
    if !clean {
        eprintln!("bench: cleanup left something behind (see above)");
    }

    if proc::was_interrupted() {
        eprintln!(
            "bench: interrupted (signal {}); cleaned up, no results written",
            proc::signal()
        );
        return ExitCode::from(130);
    }
    let Some((mut report, out)) = report else {
        return ExitCode::from(1);
    };
    report.cleanup = notes;
    let md = report.markdown();
    print!("{md}");
    let written = std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(out.join("results.md"), &md))
        .and_then(|()| {
            let j = serde_json::to_string_pretty(&report.json()).unwrap_or_default();
            std::fs::write(out.join("results.json"), j)
        });
    match written {
        Ok(()) => eprintln!(
            "bench: wrote {} and results.json",
            out.join("results.md").display()
        ),
        Err(e) => {
            eprintln!("bench: {}: {e}", out.display());
            return ExitCode::from(1);
        }
    }
    if outcome.is_err() || report.own_failures > 0 || !clean {
        eprintln!(
            "bench: FAILED: {} failure(s) of berth or the benchmark",
            report.own_failures
        );
        return ExitCode::from(1);
    }
    if !report.failures.is_empty() {
        eprintln!(
            "bench: {} failure(s) of peers, listed under Failures",
            report.failures.len()
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_berth_writes_them() {
        assert_eq!(parse_duration("412µs"), Some(412.0));
        assert_eq!(parse_duration("1.2ms"), Some(1200.0));
        assert_eq!(parse_duration("1.25s"), Some(1_250_000.0));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn debug_log_records() {
        let log = concat!(
            r#"{"level":"debug","msg":"berth binary protected: DetachedReadOnlyMount in 412µs","time":"t"}"#,
            "\n",
            r#"{"level":"debug","msg":"berth binary protected: DetachedReadOnlyMount","time":"t"}"#,
            "\n",
            r#"{"level":"debug","msg":"create: compile the seccomp profile: done in 1.2ms","time":"t"}"#,
            "\n",
            r#"{"level":"debug","msg":"create: spawn: done in 3.2ms","time":"t"}"#,
            "\nnot json\n"
        );
        let (p, s) = parse_debug_log(log);
        assert_eq!(p, vec![412.0]);
        assert_eq!(
            s,
            vec![("create: compile the seccomp profile".to_string(), 1200.0)]
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn bench_ids_only() {
        assert!(cleanup::is_bench_id("bench-p12"));
        assert!(cleanup::is_bench_id("bench-floor"));
        assert!(!cleanup::is_bench_id("bench-p"));
        assert!(!cleanup::is_bench_id("bench-px"));
        assert!(!cleanup::is_bench_id("docker"));
    }

    #[test]
    fn gist_of_errors() {
        let bt = "Error: failed to create container\n   0: backtrace\n   1: _start\n";
        assert_eq!(proc::gist(bt), "Error: failed to create container");
        assert_eq!(proc::gist("a\nb\nc\nd\n"), "b / c / d");
        assert_eq!(proc::gist(""), "");
    }

    #[test]
    fn quoting() {
        assert_eq!(proc::quote("/a/b-c"), "/a/b-c");
        assert_eq!(proc::quote("a b"), "'a b'");
        assert_eq!(proc::quote("it's"), r"'it'\''s'");
    }
}
