//! berth's CRI test client (`make test-cri`, set up by integration/cri/run.sh): speaks to a
//! private containerd's CRI plugin as the kubelet does and runs every scenario once per runtime
//! handler, then prints one table: scenario | handler… Exits 1 when berth fails any scenario;
//! a failure of the reference handler (runc) is shown but fails nothing.

mod cri;
mod scenarios;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

pub struct Args {
    socket: PathBuf,
    /// The pods' cgroup parents go below it: a path, or with --systemd-cgroup a slice prefix.
    cgroup_parent: String,
    /// containerd's handlers use systemd's cgroup driver (SystemdCgroup = true).
    systemd: bool,
    pause_image: String,
    image: String,
    handlers: Vec<String>,
    /// handler=dir: the runtime's --root as the shim gives it, checked empty at the end.
    runtime_roots: Vec<(String, PathBuf)>,
    /// Every sandbox id made is appended here, for run.sh's cleanup by name.
    sandboxes: PathBuf,
    /// containerd's own root and state: no mount may remain beneath it.
    state_dir: PathBuf,
    filter: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        socket: PathBuf::new(),
        cgroup_parent: String::new(),
        systemd: false,
        pause_image: String::new(),
        image: String::new(),
        handlers: vec!["runc".into(), "berth".into()],
        runtime_roots: Vec::new(),
        sandboxes: PathBuf::from("/dev/null"),
        state_dir: PathBuf::new(),
        filter: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--socket" => a.socket = value()?.into(),
            "--cgroup-parent" => a.cgroup_parent = value()?,
            "--systemd-cgroup" => a.systemd = true,
            "--pause-image" => a.pause_image = value()?,
            "--image" => a.image = value()?,
            "--handlers" => a.handlers = value()?.split(',').map(String::from).collect(),
            "--runtime-root" => {
                let v = value()?;
                let (h, d) = v
                    .split_once('=')
                    .context("--runtime-root takes HANDLER=DIR")?;
                a.runtime_roots.push((h.into(), d.into()));
            }
            "--sandboxes" => a.sandboxes = value()?.into(),
            "--state-dir" => a.state_dir = value()?.into(),
            "--filter" => a.filter = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: cri-client --socket SOCK --cgroup-parent /P --pause-image REF --image REF\n\
                     \x20 [--systemd-cgroup (then --cgroup-parent is a slice prefix)] [--handlers runc,berth] [--runtime-root HANDLER=DIR]… [--sandboxes FILE]\n\
                     \x20 [--state-dir DIR] [--filter SUBSTRING,…]\n\
                     Normally started by integration/cri/run.sh (make test-cri)."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if a.socket.as_os_str().is_empty() || a.cgroup_parent.is_empty() || a.image.is_empty() {
        bail!("--socket, --cgroup-parent and --image are needed (see --help)");
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cri-client: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cri-client: tokio: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("cri-client: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Every scenario with every handler; true when berth passed all it ran.
async fn run(args: &Args) -> Result<bool> {
    let mut cri = cri::Cri::connect(&args.socket).await?;
    let v = cri.version().await?;
    println!(
        "# CRI {} of {} {}",
        v.runtime_api_version, v.runtime_name, v.runtime_version
    );
    let names: Vec<&str> = scenarios::NAMES
        .iter()
        .copied()
        .filter(|n| match &args.filter {
            Some(f) => f.split(',').any(|p| n.contains(p)),
            None => true,
        })
        .collect();
    // results[scenario][handler]
    let mut results: Vec<Vec<Option<String>>> = vec![vec![None; args.handlers.len()]; names.len()];
    for (h, handler) in args.handlers.iter().enumerate() {
        let mut ctx = scenarios::Ctx::new(args, handler, cri::Cri::connect(&args.socket).await?);
        for (s, name) in names.iter().enumerate() {
            let started = Instant::now();
            let outcome = scenarios::run(&mut ctx, name).await;
            // Whatever the scenario left, as the kubelet's pod cleanup would.
            let cleanup = ctx.remove_pods().await;
            let outcome = outcome.and(cleanup);
            let ms = started.elapsed().as_millis();
            match &outcome {
                Ok(()) => println!("ok   {handler:6} {name} ({ms} ms)"),
                Err(e) => println!("FAIL {handler:6} {name} ({ms} ms): {e:#}"),
            }
            let _ = std::io::stdout().flush();
            results[s][h] = outcome.err().map(|e| format!("{e:#}"));
        }
    }
    println!();
    print!("| scenario |");
    for h in &args.handlers {
        print!(" {h} |");
    }
    println!();
    print!("|---|");
    for _ in &args.handlers {
        print!("---|");
    }
    println!();
    let mut berth_ok = true;
    for (s, name) in names.iter().enumerate() {
        print!("| {name} |");
        for (h, handler) in args.handlers.iter().enumerate() {
            let cell = if results[s][h].is_some() {
                "FAIL"
            } else {
                "ok"
            };
            if handler == "berth" && results[s][h].is_some() {
                berth_ok = false;
            }
            print!(" {cell} |");
        }
        println!();
    }
    let ran = names.len() * args.handlers.len();
    let failed = results.iter().flatten().filter(|r| r.is_some()).count();
    println!("\n# {ran} runs, {} ok, {failed} FAIL", ran - failed);
    Ok(berth_ok)
}
