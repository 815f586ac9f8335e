//! `integration`: end-to-end test driver for an OCI runtime, driven only
//! through the runtime's CLI (like containerd does).

mod bundle;
mod cases;
mod host;
mod leak;
mod moby_profile;
mod runtime;
mod soak;

use cases::{Case, Ctx, Fail};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: integration [--runtime PATH] [--runtimetest PATH] [--compare PATH] [--filter SUBSTR[,SUBSTR...]] [--systemd-cgroup] [--list] [--soak CYCLES [--parallel P]]";

struct Args {
    runtime: PathBuf,
    runtimetest: PathBuf,
    compare: Option<PathBuf>,
    filter: Option<String>,
    list: bool,
    soak: Option<usize>,
    parallel: usize,
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        runtime: std::env::var_os("RUNTIME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "target/x86_64-unknown-linux-gnu/release/berth".into()),
        runtimetest: std::env::var_os("RUNTIMETEST")
            .map(PathBuf::from)
            .unwrap_or_else(|| "target/x86_64-unknown-linux-gnu/release/runtimetest".into()),
        compare: None,
        filter: None,
        list: false,
        soak: None,
        parallel: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--runtime" => a.runtime = value("--runtime")?.into(),
            "--runtimetest" => a.runtimetest = value("--runtimetest")?.into(),
            "--compare" => a.compare = Some(value("--compare")?.into()),
            "--filter" => a.filter = Some(value("--filter")?),
            "--list" => a.list = true,
            "--soak" => {
                let v = value("--soak")?;
                a.soak = Some(
                    v.parse()
                        .map_err(|_| format!("--soak {v:?}: not a count"))?,
                );
            }
            "--parallel" => {
                let v = value("--parallel")?;
                a.parallel = v
                    .parse()
                    .map_err(|_| format!("--parallel {v:?}: not a count"))?;
            }
            "--systemd-cgroup" => host::set_systemd_mode(true),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    a.runtime = absolute(a.runtime);
    a.runtimetest = absolute(a.runtimetest);
    a.compare = a.compare.map(absolute);
    Ok(a)
}

#[derive(Debug)]
enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

impl Outcome {
    fn text(&self) -> String {
        match self {
            Outcome::Pass => "ok".into(),
            Outcome::Fail(r) => format!("not ok: {r}"),
            Outcome::Skip(r) => format!("skipped: {r}"),
        }
    }
}

/// Run one case against one runtime, always cleaning up afterwards.
fn run_case(case: &Case, runtime: &Path, runtimetest: &Path, serial: usize) -> Outcome {
    let base_id = format!("berth-it-{}-{serial}", std::process::id());
    let budget = cases::timeout_for(case.name);
    let deadline = Instant::now() + budget;
    let mut ctx = match Ctx::new(runtime, runtimetest, &base_id, deadline) {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(format!("harness: cannot create temp dirs: {e}")),
    };
    let res = catch_unwind(AssertUnwindSafe(|| (case.run)(&mut ctx)));
    let mut outcome = match res {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(Fail::Fail(r))) => Outcome::Fail(r),
        Ok(Err(Fail::Skip(r))) => Outcome::Skip(r),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Outcome::Fail(format!("harness panic: {msg}"))
        }
    };
    if Instant::now() >= deadline {
        let prev = outcome.text();
        outcome = Outcome::Fail(format!(
            "case exceeded {}s timeout ({prev})",
            budget.as_secs()
        ));
    }
    let leaks = cleanup(ctx);
    if !leaks.is_empty() {
        let leak = format!("leaked: {}", leaks.join("; "));
        outcome = match outcome {
            Outcome::Fail(r) => Outcome::Fail(format!("{r}; {leak}")),
            _ => Outcome::Fail(leak),
        };
    }
    outcome
}

/// Tear down everything a case may have created; report what leaked.
fn cleanup(mut ctx: Ctx) -> Vec<String> {
    let mut leaks = Vec::new();
    while let Some(f) = ctx.cleanups.pop() {
        f();
    }
    let mut rt = ctx.rt.clone();
    rt.deadline = Instant::now() + Duration::from_secs(30);
    for id in &ctx.ids {
        let _ = rt.exec_opts(
            &["delete", "--force", id],
            runtime::Opts {
                timeout: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        );
    }
    // Processes still in a case cgroup or inside the temp dir.
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let mut procs: Vec<i32> = host::procs_under(&ctx.tmp);
        for id in &ctx.ids {
            procs.extend(host::procs_in_cgroup(id));
        }
        procs.sort();
        procs.dedup();
        if procs.is_empty() {
            break;
        }
        if Instant::now() >= end {
            leaks.push(format!("processes after delete --force: {procs:?}"));
            for p in procs {
                host::kill9(p);
            }
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mounts = host::mounts_under(&ctx.tmp);
    if !mounts.is_empty() {
        leaks.push(format!("host mounts under the case dir: {mounts:?}"));
        for m in &mounts {
            host::umount_detach(m);
        }
    }
    for id in &ctx.ids {
        let dirs = host::cgroup_dirs(id);
        if !dirs.is_empty() {
            leaks.push(format!("cgroup dirs {dirs:?}"));
            for d in dirs {
                if let Err(e) = host::remove_cgroup_tree(&d) {
                    leaks.push(format!("could not rmdir {}: {e}", d.display()));
                }
            }
        }
    }
    if host::mounts_under(&ctx.tmp).is_empty() {
        let _ = std::fs::remove_dir_all(&ctx.tmp);
    } else {
        leaks.push(format!(
            "mounts remain under {}; not removing it",
            ctx.tmp.display()
        ));
    }
    leaks
}

/// Orphans of the cases (a detached `exec`'s process once the runtime has exited, as under a
/// containerd shim) must be reaped by someone, or a container whose pid namespace they are in
/// can never finish stopping: this machine's pid 1 does not reap. So the suite runs in a child
/// of a process that is a child subreaper and reaps everything until that child is done, as a
/// shim would.
fn become_reaped() {
    // SAFETY: called first thing in main, while single-threaded; the parent only waits and exits.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return;
        }
        let child = libc::fork();
        if child <= 0 {
            // The child (or a failed fork: run unreaped, as before).
            return;
        }
        loop {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == child {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                libc::_exit(code);
            }
            if pid < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(1);
            }
        }
    }
}

fn main() {
    become_reaped();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("integration: {e}");
            std::process::exit(2);
        }
    };
    if let Some(cycles) = args.soak {
        std::process::exit(soak::run(
            &args.runtime,
            &args.runtimetest,
            cycles,
            args.parallel,
        ));
    }
    let cases: Vec<Case> = cases::all()
        .into_iter()
        .filter(|c| {
            args.filter
                .as_ref()
                .is_none_or(|f| f.split(',').any(|one| c.name.contains(one)))
        })
        .collect();
    if args.list {
        for c in &cases {
            println!("{}", c.name);
        }
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("integration: must run as root");
    }
    let mut serial = 0usize;
    let reference: Vec<Option<Outcome>> = match &args.compare {
        Some(r) => {
            println!("# reference runtime: {}", r.display());
            cases
                .iter()
                .map(|c| {
                    serial += 1;
                    let o = run_case(c, r, &args.runtimetest, serial);
                    println!("# reference {}: {}", c.name, o.text());
                    Some(o)
                })
                .collect()
        }
        None => cases.iter().map(|_| None).collect(),
    };
    println!("# runtime under test: {}", args.runtime.display());
    if host::systemd_mode() {
        println!(
            "# systemd mode: --systemd-cgroup, cgroupsPath {}:berth:<id>",
            host::SYSTEMD_SLICE
        );
    }
    if !args.runtime.exists() {
        println!("# warning: {} does not exist", args.runtime.display());
    }
    if !args.runtimetest.is_file() {
        println!(
            "# warning: runtimetest {} missing; cases needing it will fail",
            args.runtimetest.display()
        );
    }
    println!("1..{}", cases.len());
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (i, (c, refo)) in cases.iter().zip(reference).enumerate() {
        serial += 1;
        let n = i + 1;
        let o = run_case(c, &args.runtime, &args.runtimetest, serial);
        match (refo, o) {
            (None, Outcome::Pass) => {
                passed += 1;
                println!("ok {n} - {}", c.name);
            }
            (None, Outcome::Fail(r)) => {
                failed += 1;
                println!("not ok {n} - {}: {r}", c.name);
            }
            (_, Outcome::Skip(r)) => {
                skipped += 1;
                println!("ok {n} - {} # SKIP {r}", c.name);
            }
            (Some(Outcome::Pass), Outcome::Fail(r)) => {
                failed += 1;
                println!("not ok {n} - {}: {r} (reference: ok)", c.name);
            }
            (Some(Outcome::Fail(rr)), Outcome::Fail(r)) => {
                skipped += 1;
                println!(
                    "ok {n} - {} # SKIP fails on the reference too (reference: {rr}; tested: {r})",
                    c.name
                );
            }
            (Some(Outcome::Skip(rr)), Outcome::Fail(r)) => {
                failed += 1;
                println!("not ok {n} - {}: {r} (reference: skipped: {rr})", c.name);
            }
            (Some(refo), Outcome::Pass) => {
                passed += 1;
                match refo {
                    Outcome::Pass => println!("ok {n} - {} (reference: ok)", c.name),
                    other => println!("ok {n} - {} (reference: {})", c.name, other.text()),
                }
            }
        }
    }
    host::remove_cgroup_parents();
    if skipped > 0 {
        println!("integration: {passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("integration: {passed} passed, {failed} failed");
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
