//! Attacks on the host: CVE-2019-5736 (a container gets a writable handle on the runtime's
//! binary) and redirected procfs writes (CVE-2019-16884 / CVE-2025-52881).
//!
//! The CVE-2019-5736 cases run `runtimetest attack-exe` as container A (PID 1 of a pid
//! namespace) and a victim container B that joins A's pid namespace: A sees B's init while B
//! waits for `start`, and B's process once started. The attacker never writes: it only
//! reports whether a write-open would have succeeded, and on which file (dev, inode), which the
//! case compares with the runtime binary on the host.

use super::{Case, Ctx, Fail, R};
use crate::bundle::Bundle;
use crate::runtime::one_line;
use crate::{bail, ensure};
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "exe/sibling_open_init",
            run: sibling_open_init,
        },
        Case {
            name: "exe/entrypoint_proc_self_exe",
            run: entrypoint_proc_self_exe,
        },
        Case {
            name: "procfs/sysctl_over_bind",
            run: sysctl_over_bind,
        },
    ]
}

/// One line of the attacker's report, split into its `key=value` fields.
struct Line {
    kind: String,
    fields: Vec<(String, String)>,
    text: String,
}

impl Line {
    fn get(&self, k: &str) -> &str {
        self.fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn is_file(&self, dev: u64, ino: u64) -> bool {
        self.get("dev") == dev.to_string() && self.get("ino") == ino.to_string()
    }
}

fn parse(report: &str) -> Vec<Line> {
    report
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let kind = words.next().unwrap_or("").to_string();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Line {
                kind,
                fields,
                text: l.to_string(),
            }
        })
        .collect()
}

/// Runs the attacker for `secs` seconds next to a victim with `victim_args` (joining the
/// attacker's pid namespace), starting the victim after `created_for`. Returns the report.
/// With `trace`, the attacker gets CAP_SYS_PTRACE and seizes the victim, so it catches the
/// victim's exec however short-lived the new program is.
fn attack(
    ctx: &mut Ctx,
    secs: u64,
    trace: bool,
    victim_args: &[&str],
    victim_setup: &dyn Fn(&mut Bundle) -> R,
    created_for: Duration,
) -> Result<Vec<Line>, Fail> {
    ctx.need_runtimetest()?;
    let secs_arg = secs.to_string();
    let mut args = vec!["/runtimetest", "attack-exe", "--secs", &secs_arg];
    if trace {
        args.push("--trace-exec");
    }
    let mut a = ctx.container(&args)?;
    if trace {
        for set in ["bounding", "effective", "permitted"] {
            if let Some(list) = a.b.config["process"]["capabilities"][set].as_array_mut() {
                list.push(json!("CAP_SYS_PTRACE"));
            }
        }
    }
    a.up()?;
    let end = Instant::now() + Duration::from_secs(5);
    while !a.stdout_text().contains("ready") {
        ensure!(
            Instant::now() < end,
            "attacker did not start: {}",
            one_line(&a.stderr_text(), 200)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let apid = a.pid()?;
    let mut b = ctx.container(victim_args)?;
    b.b.set_namespaces(&[
        ("pid", Some(&format!("/proc/{apid}/ns/pid"))),
        ("network", None),
        ("ipc", None),
        ("uts", None),
        ("mount", None),
    ]);
    victim_setup(&mut b.b)?;
    let o = b.create();
    ensure!(o.success(), "create victim: {}", o.brief());
    std::thread::sleep(created_for);
    let o = b.start();
    ensure!(o.success(), "start victim: {}", o.brief());
    // No runtime call until the attacker is done: a running runtime holds its binary busy
    // (ETXTBSY) and would hide a writable reopen.
    let end = Instant::now() + Duration::from_secs(secs + 10);
    while !a.stdout_text().contains("done") {
        if Instant::now() >= end {
            bail!(
                "attacker did not finish; report so far: {}",
                one_line(&a.stdout_text(), 600)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = a.stdout_text();
    let _ = b.delete(true);
    let _ = a.delete(true);
    Ok(parse(&report))
}

/// (dev, inode) of the runtime binary under test.
fn runtime_file(ctx: &Ctx) -> Result<(u64, u64), Fail> {
    let m = std::fs::metadata(&ctx.rt.path)?;
    Ok((m.dev(), m.ino()))
}

fn writable(lines: &[Line], dev: u64, ino: u64) -> Vec<String> {
    lines
        .iter()
        .filter(|l| (l.kind == "wopen" || l.kind == "wopen-direct") && l.get("result") == "OK")
        .filter(|l| l.is_file(dev, ino))
        .map(|l| l.text.clone())
        .collect()
}

/// (a) A process in the container's pid namespace opens /proc/<pid>/exe of the runtime's
/// init while it waits for `start`: it must be refused (non-dumpable), and nothing may ever
/// give it a writable handle on the runtime binary.
fn sibling_open_init(ctx: &mut Ctx) -> R {
    let (dev, ino) = runtime_file(ctx)?;
    let lines = attack(
        ctx,
        5,
        false,
        &["sleep", "1"],
        &|_| Ok(()),
        Duration::from_millis(1500),
    )?;
    let all = || {
        one_line(
            &lines
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            900,
        )
    };
    ensure!(
        lines.iter().any(|l| l.kind == "target"),
        "the attacker never saw the victim's init in its pid namespace: {}",
        all()
    );
    let w = writable(&lines, dev, ino);
    ensure!(
        w.is_empty(),
        "the container got a writable handle on the runtime binary: {w:?}; report: {}",
        all()
    );
    let handles: Vec<&str> = lines
        .iter()
        .filter(|l| l.kind == "handle" && l.is_file(dev, ino))
        .map(|l| l.text.as_str())
        .collect();
    ensure!(
        handles.is_empty(),
        "the container opened /proc/<pid>/exe of a runtime process (is it dumpable?): \
         {handles:?}; report: {}",
        all()
    );
    ensure!(
        lines
            .iter()
            .any(|l| l.kind == "opath" && matches!(l.get("result"), "EACCES" | "EPERM")),
        "no open of the waiting init's exe was refused with EACCES/EPERM: {}",
        all()
    );
    Ok(())
}

/// (b) The victim's entrypoint is a script `#!/proc/self/exe`: the kernel runs the binary
/// that is exec'ing it, i.e. the runtime, as the container process. The attacker (given
/// CAP_SYS_PTRACE, so it can stop the victim at that exec, and so it could also have opened
/// the waiting init's exe) grabs an O_PATH handle on that process's exe and keeps trying to
/// reopen it for writing after it exits; it must never succeed on the runtime binary.
fn entrypoint_proc_self_exe(ctx: &mut Ctx) -> R {
    let (dev, ino) = runtime_file(ctx)?;
    let rt = ctx.rt.path.clone();
    let setup = move |b: &mut Bundle| -> R {
        // A dynamically linked runtime needs its loader and libraries in the rootfs to run
        // there (as in any glibc-based image).
        copy_libs(&rt, &b.rootfs)?;
        let evil = b.rootfs.join("evil");
        std::fs::write(&evil, "#!/proc/self/exe\n")?;
        std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    };
    let mut last = String::new();
    // The attacker ptrace-seizes the victim's init and grabs the exe at its exec stop; retry
    // in case it still missed it.
    for _ in 0..3 {
        let lines = attack(ctx, 5, true, &["/evil"], &setup, Duration::from_millis(300))?;
        last = one_line(
            &lines
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            900,
        );
        let w = writable(&lines, dev, ino);
        ensure!(
            w.is_empty(),
            "the container got a writable handle on the runtime binary through \
             #!/proc/self/exe: {w:?}; report: {last}"
        );
        // The exe of the program the victim's init exec'd, grabbed at its exec stop.
        let caught: Vec<&Line> = lines.iter().filter(|l| l.kind == "exec").collect();
        if caught.is_empty() {
            continue;
        }
        // Only a handle on the runtime binary itself proves the defence; a handle on a copy
        // (runc's memfd) is harmless but says nothing about reopening.
        let on_binary = caught.iter().any(|l| l.is_file(dev, ino));
        if on_binary {
            let refused = lines
                .iter()
                .any(|l| l.kind == "wopen" && l.is_file(dev, ino) && l.get("result") == "EROFS");
            ensure!(
                refused,
                "reopening the runtime binary for writing was never refused with EROFS \
                 once it had exited (only ETXTBSY while it ran?): {last}"
            );
        }
        return Ok(());
    }
    bail!("the attacker never caught the process started from #!/proc/self/exe (3 tries): {last}")
}

/// Copies the ELF loader and shared libraries `ldd` lists for `bin` into `rootfs`, at the
/// same paths.
fn copy_libs(bin: &std::path::Path, rootfs: &std::path::Path) -> R {
    let out = match Command::new("ldd").arg(bin).output() {
        Ok(o) => o,
        Err(e) => return Err(Fail::Skip(format!("ldd not available: {e}"))),
    };
    // A static binary: ldd says so and fails; nothing to copy.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let dest = rootfs.join(path.trim_start_matches('/'));
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(path, &dest)?;
    }
    Ok(())
}

/// A bundle binds a host directory over /proc/sys/kernel and asks for kernel.shmmax: the
/// runtime must not write into the host directory; either create fails, or the value reaches
/// the container's real procfs.
fn sysctl_over_bind(ctx: &mut Ctx) -> R {
    let host_dir = ctx.dir("fake-proc-sys-kernel");
    let value = "123456789";
    let mut ct = ctx.container(&["sleep", "30"])?;
    ct.b.add_mount(json!({
        "destination": "/proc/sys/kernel", "type": "bind",
        "source": host_dir.to_string_lossy(), "options": ["rbind", "rw"]
    }));
    ct.b.config["linux"]["sysctl"] = json!({ "kernel.shmmax": value });
    let o = ct.create();
    let written: Vec<String> = std::fs::read_dir(&host_dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let content = std::fs::read_to_string(host_dir.join("shmmax")).unwrap_or_default();
    let seen = if o.success() {
        // The value must then have reached the real procfs of the container's ipc namespace.
        let pid = ct.pid();
        let out = pid.map(|pid| {
            Command::new("nsenter")
                .args([
                    "-t",
                    &pid.to_string(),
                    "--ipc",
                    "cat",
                    "/proc/sys/kernel/shmmax",
                ])
                .output()
        });
        Some(out)
    } else {
        None
    };
    let _ = ct.delete(true);
    ensure!(
        written.is_empty(),
        "the sysctl write landed in the host directory bound over /proc/sys/kernel: \
         {written:?} (shmmax = {content:?}); create: {}",
        o.brief()
    );
    match seen {
        Some(out) => {
            let out = match out? {
                Ok(o) if o.status.success() => {
                    String::from_utf8_lossy(&o.stdout).trim().to_string()
                }
                Ok(o) => bail!(
                    "nsenter failed: {}",
                    one_line(&String::from_utf8_lossy(&o.stderr), 200)
                ),
                Err(e) => return Err(Fail::Skip(format!("nsenter not available: {e}"))),
            };
            ensure!(
                out == value,
                "create succeeded but kernel.shmmax in the container's ipc namespace is \
                 {out:?}, not {value}"
            );
        }
        None => ensure!(
            o.stderr.to_lowercase().contains("proc") || o.stderr.contains("sysctl"),
            "create failed without naming procfs or the sysctl: {}",
            o.brief()
        ),
    }
    Ok(())
}
