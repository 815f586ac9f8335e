mod cli;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use berth::lifecycle::{self, Context, CreateOptions};
use berth::{fds, features, logging, ps, selfexe, signals};

use cli::{Cli, Command, CreateArgs, ListFormat, LogFormat};

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // Before anything else: no fd berth inherited may reach a container or hook.
    let preserve = match &cli.command {
        Command::Create(a) => a.preserve_fds,
        Command::Run(a) => a.create.preserve_fds,
        Command::Exec(a) => a.preserve_fds,
        _ => 0,
    };
    let sealed = fds::seal_inherited(preserve);
    // After the seal, which would close the fault trace's fd.
    berth::fault::init();
    logging::init(
        cli.log.as_deref(),
        cli.log_format == LogFormat::Json,
        cli.debug,
    );
    if let Err(e) = sealed {
        logging::log_error_record(&format!("{e}"));
        return ExitCode::FAILURE;
    }
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = format!("{e:#}");
            logging::log_error_record_with(&msg, &error_fields(&e));
            ExitCode::FAILURE
        }
    }
}

/// The failing step, config field, call and errno of berth's error, for the log record.
fn error_fields(e: &anyhow::Error) -> Vec<(&'static str, String)> {
    let Some(err) = e
        .chain()
        .find_map(|c| c.downcast_ref::<berth::error::Error>())
    else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    if let berth::error::Error::Child(c) = err {
        fields.push(("process", c.process.clone()));
    }
    if let Some(s) = err.step_name() {
        fields.push(("step", s.to_string()));
    }
    if let Some(f) = err.field() {
        fields.push(("field", f.to_string()));
    }
    if let Some(c) = err.call() {
        fields.push(("call", c));
    }
    if let Some(n) = err.errno() {
        fields.push(("errno", format!("{:?}", nix::errno::Errno::from_raw(n))));
    }
    fields
}

fn create_options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        no_pivot: a.no_pivot,
        // Socket-activation fds come first and reach the container too (as with runc).
        preserve_fds: a.preserve_fds + fds::socket_activation_fds(),
        no_new_keyring: a.no_new_keyring,
    }
}

/// One line (or block) on stdout. A reader that went away (`berth features | head`) is not
/// berth's failure: the rest is dropped instead of panicking on EPIPE.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// One event line; false once the reader is gone (the stream then stops).
fn emit_event(ev: &berth::events::Event) -> bool {
    use std::io::Write;
    let Ok(line) = serde_json::to_string(ev) else {
        return true;
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

fn exec_options(a: &cli::ExecArgs) -> berth::exec::ExecOptions {
    berth::exec::ExecOptions {
        process: a.process.clone(),
        args: a.command.clone(),
        tty: a.tty,
        console_socket: a.console_socket.clone(),
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        env: a.env.clone(),
        cwd: a.cwd.clone(),
        user: a.user.clone(),
        additional_gids: a.additional_gids.clone(),
        caps: a.cap.clone(),
        no_new_privs: a.no_new_privs,
        apparmor: a.apparmor.clone(),
        process_label: a.process_label.clone(),
        preserve_fds: a.preserve_fds + fds::socket_activation_fds(),
        cgroup: a.cgroup.clone(),
        ignore_paused: a.ignore_paused,
    }
}

/// CVE-2019-5736: verbs that spawn container processes first make berth non-dumpable and
/// re-exec it from a read-only copy of its binary (see `berth::selfexe`).
fn protect_binary() -> Result<()> {
    let (how, took) = selfexe::protect().context("protect the berth binary")?;
    match took {
        Some(t) => logging::debug(&format!(
            "berth binary protected: {how:?} in {}µs",
            t.as_micros()
        )),
        None => logging::debug(&format!("berth binary protected: {how:?}")),
    }
    Ok(())
}

fn dispatch(cli: Cli) -> Result<u8> {
    let ctx = Context {
        root: cli.root.clone(),
        systemd_cgroup: cli.systemd_cgroup,
    };
    match &cli.command {
        Command::Create(a) => {
            protect_binary().with_context(|| format!("create {}", a.id))?;
            lifecycle::create(&ctx, &a.id, &create_options(a))
                .with_context(|| format!("create {}", a.id))?;
        }
        Command::Start(a) => {
            lifecycle::start(&ctx, &a.id).with_context(|| format!("start {}", a.id))?
        }
        Command::State(a) => {
            let st = lifecycle::state(&ctx, &a.id).with_context(|| format!("state {}", a.id))?;
            emit(&serde_json::to_string_pretty(&st)?);
        }
        Command::Kill(a) => {
            let sig = signals::parse_signal(&a.signal)?;
            lifecycle::kill(&ctx, &a.id, sig, a.all).with_context(|| format!("kill {}", a.id))?;
        }
        Command::Delete(a) => {
            for id in &a.ids {
                lifecycle::delete(&ctx, id, a.force).with_context(|| format!("delete {id}"))?;
            }
        }
        Command::Run(a) => {
            protect_binary().with_context(|| format!("run {}", a.create.id))?;
            let code = lifecycle::run(
                &ctx,
                &a.create.id,
                &create_options(&a.create),
                a.detach,
                a.keep,
            )
            .with_context(|| format!("run {}", a.create.id))?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::List(a) => {
            let all = lifecycle::list(&ctx)?;
            if a.quiet {
                for s in &all {
                    emit(&s.id);
                }
            } else if a.format == ListFormat::Json {
                emit(&serde_json::to_string(&all)?);
            } else {
                emit(&format!(
                    "{:<20} {:<8} {:<10} {:<40} {:<30} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                ));
                for s in &all {
                    emit(&format!(
                        "{:<20} {:<8} {:<10} {:<40} {:<30} {}",
                        s.id,
                        s.pid,
                        s.status.to_string(),
                        s.bundle.display(),
                        s.created,
                        if s.owner.is_empty() { "root" } else { &s.owner }
                    ));
                }
            }
        }
        Command::Pause(a) => {
            lifecycle::pause(&ctx, &a.id, true).with_context(|| format!("pause {}", a.id))?
        }
        Command::Resume(a) => {
            lifecycle::pause(&ctx, &a.id, false).with_context(|| format!("resume {}", a.id))?
        }
        Command::Exec(a) => {
            protect_binary().with_context(|| format!("exec {}", a.id))?;
            let code = berth::exec::exec(&ctx, &a.id, &exec_options(a))
                .with_context(|| format!("exec {}", a.id))?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::Spec(a) => {
            let rootless = matches!(cli.rootless.as_deref(), Some("true"));
            lifecycle::write_spec(&a.bundle, rootless).context("spec")?;
        }
        Command::Ps(a) => {
            if a.format == ListFormat::Json {
                let pids = ps::pids(&ctx.root, &a.id).with_context(|| format!("ps {}", a.id))?;
                emit(&serde_json::to_string(&pids)?);
            } else {
                let table = ps::table(&ctx.root, &a.id, &a.ps_options)
                    .with_context(|| format!("ps {}", a.id))?;
                emit(table.trim_end_matches('\n'));
            }
        }
        Command::Update(a) => {
            let req = berth::update::Request {
                resources: a.resources.clone(),
                flags: berth::update::Flags {
                    memory: a.memory,
                    memory_swap: a.memory_swap,
                    memory_reservation: a.memory_reservation,
                    kernel_memory: a.kernel_memory,
                    kernel_memory_tcp: a.kernel_memory_tcp,
                    cpu_shares: a.cpu_shares,
                    cpu_quota: a.cpu_quota,
                    cpu_period: a.cpu_period,
                    cpu_burst: a.cpu_burst,
                    cpu_rt_runtime: a.cpu_rt_runtime,
                    cpu_rt_period: a.cpu_rt_period,
                    cpuset_cpus: a.cpuset_cpus.clone(),
                    cpuset_mems: a.cpuset_mems.clone(),
                    pids_limit: a.pids_limit,
                    blkio_weight: a.blkio_weight,
                    l3_cache_schema: a.l3_cache_schema.clone(),
                    mem_bw_schema: a.mem_bw_schema.clone(),
                },
            };
            berth::update::update(&ctx, &a.id, &req).with_context(|| format!("update {}", a.id))?
        }
        Command::Events(a) => {
            let sink = &mut emit_event;
            if a.stats {
                berth::events::stats_once(&ctx.root, &a.id, sink)
            } else {
                berth::events::stream(&ctx.root, &a.id, a.interval, sink)
            }
            .with_context(|| format!("events {}", a.id))?;
        }
        Command::Features => {
            let f = features::features().context("features")?;
            emit(&serde_json::to_string_pretty(&features::to_json(&f)?)?);
        }
    }
    Ok(0)
}
