//! Hostile input through the CLI: bad ids, oversized and malformed config.json, thousands of
//! mounts, very deep paths, bytes that are not UTF-8, a symlinked rootfs, a read-only bundle and
//! a FIFO where a namespace file should be. Each must work or be refused with an error that
//! names the field or file, promptly, leaving nothing behind: no state dir, no cgroup, no mount
//! under the bundle, nothing in `list`.

use super::{leftovers, mentions_any, Case, Ct, Ctx, R};
use crate::runtime::{one_line, Opts};
use crate::{bail, ensure, host};
use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "hostile/invalid_ids",
            run: invalid_ids,
        },
        Case {
            name: "hostile/huge_annotations",
            run: huge_annotations,
        },
        Case {
            name: "hostile/huge_env",
            run: huge_env,
        },
        Case {
            name: "hostile/thousands_of_mounts",
            run: thousands_of_mounts,
        },
        Case {
            name: "hostile/deep_mount_destination",
            run: deep_mount_destination,
        },
        Case {
            name: "hostile/destination_beyond_path_max",
            run: destination_beyond_path_max,
        },
        Case {
            name: "hostile/config_not_utf8",
            run: config_not_utf8,
        },
        Case {
            name: "hostile/bundle_path_not_utf8",
            run: bundle_path_not_utf8,
        },
        Case {
            name: "hostile/process_json_malformed",
            run: process_json_malformed,
        },
        Case {
            name: "hostile/rootfs_symlink",
            run: rootfs_symlink,
        },
        Case {
            name: "hostile/readonly_bundle",
            run: readonly_bundle,
        },
        Case {
            name: "hostile/namespace_path_fifo",
            run: namespace_path_fifo,
        },
    ]
}

/// Long enough for the slow cases, well short of the case's own limit: a call that hangs is
/// reported as such rather than eating the whole case.
const SLOW: Duration = Duration::from_secs(45);

/// Nothing of a refused or finished container may remain: beyond `leftovers` (state dir of
/// `ct.id`, cgroups, mounts and processes of the bundle), no entry at all under the runtime's
/// root and nothing in `list`.
fn nothing_left(ctx: &Ctx, ct: &Ct) -> R {
    let l = leftovers(ctx, &ct.id, &ct.b.dir);
    ensure!(l.is_empty(), "left behind: {}", l.join("; "));
    let entries: Vec<OsString> = fs::read_dir(&ctx.rt.root)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(
        entries.is_empty(),
        "runtime root {} still holds {entries:?}",
        ctx.rt.root.display()
    );
    let o = ctx.rt.exec(&["list", "-q"]);
    ensure!(o.success(), "list failed: {}", o.brief());
    ensure!(
        o.stdout.trim().is_empty(),
        "list still shows: {}",
        one_line(&o.stdout, 300)
    );
    Ok(())
}

/// What a container that ran to the end prints: a runtime's exit status alone could be its own.
const OK: &str = "hostile-ok";

fn ran(ct: &Ct) -> R {
    let out = ct.stdout_text();
    ensure!(
        out.contains(OK),
        "the container did not get to the end; stdout: {}",
        one_line(&out, 200)
    );
    Ok(())
}

/// `create` of `ct` (config as on disk) must fail, in time, with stderr naming one of `words`.
fn refused(ctx: &Ctx, ct: &Ct, words: &[&str]) -> R {
    let o = ct.create_raw(
        &[],
        Opts {
            timeout: Some(SLOW),
            ..Default::default()
        },
    );
    ensure!(!o.timed_out, "create hung: {}", o.brief());
    ensure!(
        o.failed(),
        "create did not fail: {} (want an error)",
        o.brief()
    );
    ensure!(
        mentions_any(&o.stderr, words),
        "error names none of {words:?}: {}",
        o.brief()
    );
    nothing_left(ctx, ct)
}

/// Foreground `run` of `ct`; must finish within SLOW.
fn run_slow(ct: &Ct) -> Result<crate::runtime::Out, super::Fail> {
    ct.b.write()?;
    let b = ct.b.dir.to_string_lossy().into_owned();
    let o = ct.rt.exec_opts(
        &["run", "--bundle", &b, &ct.id],
        Opts {
            stdout: Some(ct.out.clone()),
            stderr: Some(ct.err.clone()),
            timeout: Some(SLOW),
            ..Default::default()
        },
    );
    ensure!(!o.timed_out, "run hung: {}", o.brief());
    Ok(o)
}

fn invalid_ids(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["true"])?;
    ct.b.write()?;
    let b = ct.b.dir.to_string_lossy().into_owned();
    let long = "a".repeat(300);
    let slashed = format!("{}/b", ctx.base_id);
    let non_ascii = format!("{}-\u{e9}t\u{e9}", ctx.base_id);
    // 300 bytes: more than a directory name can hold (NAME_MAX, 255); refused as an id.
    for (bad, words) in [
        ("", &["id"][..]),
        ("..", &["id"][..]),
        (slashed.as_str(), &["id"][..]),
        (non_ascii.as_str(), &["id"][..]),
        (long.as_str(), &["id", "too long"][..]),
    ] {
        let o = ctx.rt.exec(&["create", "--bundle", &b, bad]);
        let shown = one_line(bad, 40);
        ensure!(!o.timed_out, "create with id {shown:?} hung");
        ensure!(
            o.failed(),
            "create with id {shown:?}: {} (want an error)",
            o.brief()
        );
        ensure!(
            mentions_any(&o.stderr, words),
            "error for id {shown:?} names none of {words:?}: {}",
            o.brief()
        );
        nothing_left(ctx, &ct).map_err(|e| match e {
            super::Fail::Fail(m) => super::Fail::Fail(format!("after id {shown:?}: {m}")),
            s => s,
        })?;
    }
    let esc = host::cgroup_dirs_matching(&ctx.base_id);
    ensure!(esc.is_empty(), "cgroup dirs created: {esc:?}");
    Ok(())
}

/// About 10 MB of annotations: they only travel into the state, so this must work (runc runs
/// it). Kubernetes alone allows 256 KB of them per pod.
fn huge_annotations(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["echo", OK])?;
    let value = "v".repeat(1000);
    let mut ann = serde_json::Map::new();
    for i in 0..10_000 {
        ann.insert(format!("org.berth.test.{i}"), json!(value));
    }
    ct.b.config["annotations"] = Value::Object(ann);
    let o = run_slow(&ct)?;
    ensure!(
        o.success(),
        "run with 10 MB of annotations: {}; stderr: {}",
        o.brief(),
        one_line(&ct.stderr_text(), 300)
    );
    ran(&ct)?;
    nothing_left(ctx, &ct)
}

/// About 10 MB of environment: more than execve takes (E2BIG), so this may fail, but clearly.
fn huge_env(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["echo", OK])?;
    let value = "v".repeat(1000);
    for i in 0..10_000 {
        ct.b.push_env(&format!("BIG{i}={value}"));
    }
    let o = run_slow(&ct)?;
    if !o.success() {
        let err = format!("{} {}", o.stderr, ct.stderr_text());
        ensure!(
            mentions_any(&err, &["argument list too long", "e2big", "process.env"]),
            "run with 10 MB of env failed without saying why: {}; stderr: {}",
            o.brief(),
            one_line(&ct.stderr_text(), 300)
        );
    } else {
        ran(&ct)?;
    }
    nothing_left(ctx, &ct)
}

fn thousands_of_mounts(ctx: &mut Ctx) -> R {
    const N: usize = 3000;
    let mut ct = ctx.container(&["sh", "-c", "grep -c ' /mnt/m[0-9]* ' /proc/self/mounts"])?;
    for i in 0..N {
        ct.b.add_mount(json!({
            "destination": format!("/mnt/m{i}"), "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "size=64k"]
        }));
    }
    let o = run_slow(&ct)?;
    if o.success() {
        let seen = ct.stdout_text();
        ensure!(
            seen.trim() == N.to_string(),
            "the container sees {} of the {N} mounts",
            seen.trim()
        );
    } else {
        ensure!(
            mentions_any(&o.stderr, &["mounts["]),
            "run with {N} mounts failed without naming the mount: {}",
            o.brief()
        );
    }
    nothing_left(ctx, &ct)
}

fn deep_mount_destination(ctx: &mut Ctx) -> R {
    let dest = format!("/mnt{}", "/d".repeat(200));
    let mut ct = ctx.container(&[
        "sh",
        "-c",
        &format!("touch {dest}/f && grep -q ' {dest} tmpfs ' /proc/self/mounts && echo {OK}"),
    ])?;
    ct.b.add_mount(json!({
        "destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]
    }));
    let o = run_slow(&ct)?;
    ensure!(
        o.success(),
        "a tmpfs 200 levels deep: {}; stderr: {}",
        o.brief(),
        one_line(&ct.stderr_text(), 300)
    );
    ran(&ct)?;
    nothing_left(ctx, &ct)
}

/// A destination longer than PATH_MAX (4096) may work (resolved a component at a time) or be
/// refused naming the mount.
fn destination_beyond_path_max(ctx: &mut Ctx) -> R {
    let dest = format!("/mnt{}", format!("/{}", "x".repeat(50)).repeat(100));
    let mut ct = ctx.container(&["echo", OK])?;
    ct.b.add_mount(json!({
        "destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]
    }));
    let o = run_slow(&ct)?;
    if !o.success() {
        ensure!(
            mentions_any(&o.stderr, &["mounts[", "destination", "mounting"]),
            "a {}-byte destination failed without naming it: {}",
            dest.len(),
            one_line(&o.stderr, 300)
        );
    } else {
        ran(&ct)?;
    }
    nothing_left(ctx, &ct)
}

/// JSON is UTF-8: raw invalid bytes, a lone surrogate escape and an unknown escape must each
/// be a parse error that names config.json.
fn config_not_utf8(ctx: &mut Ctx) -> R {
    let marker = "HOSTILE_MARKER";
    let variants: [(&str, &[u8]); 3] = [
        ("raw 0xff byte", b"\xff\xfe"),
        ("lone surrogate escape", b"\\udc80"),
        ("unknown escape", b"\\q"),
    ];
    for (what, bytes) in variants {
        let mut ct = ctx.container(&["true"])?;
        ct.b.push_env(&format!("X={marker}"));
        ct.b.write()?;
        let path = ct.b.dir.join("config.json");
        let text = fs::read(&path)?;
        let Some(at) = text
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
        else {
            bail!("marker not in config.json");
        };
        let mut bad = text[..at].to_vec();
        bad.extend_from_slice(bytes);
        bad.extend_from_slice(&text[at + marker.len()..]);
        fs::write(&path, bad)?;
        refused(ctx, &ct, &["config.json"])
            .map_err(|e| super::Fail::Fail(format!("{what}: {e:?}")))?;
    }
    Ok(())
}

/// A bundle directory whose name is not UTF-8 (legal on Linux): `run` must work, or fail
/// clearly, and leave nothing.
fn bundle_path_not_utf8(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["echo", OK])?;
    ct.b.write()?;
    // No "bundle" in the name, so an error can only name the bundle by saying so.
    let odd = ctx.tmp.join(OsStr::from_bytes(b"odd-\xff\xfe"));
    fs::rename(&ct.b.dir, &odd)?;
    let mut cmd = Command::new(&ctx.rt.path);
    cmd.arg("--root")
        .arg(&ctx.rt.root)
        .arg("run")
        .arg("--bundle")
        .arg(&odd)
        .arg(&ct.id)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&ct.out)?)
        .stderr(fs::File::create(&ct.err)?);
    let mut child = cmd.spawn()?;
    let end = Instant::now() + SLOW;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("run from a non-UTF-8 bundle path hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = ct.stderr_text();
    if !status.success() {
        ensure!(
            mentions_any(&err, &["bundle"]),
            "run from a non-UTF-8 bundle path failed without saying why: {status}; {}",
            one_line(&err, 300)
        );
    } else {
        ran(&ct)?;
    }
    // mountinfo holds the raw bytes; a lossy read would hide any mount left there.
    let info = fs::read("/proc/self/mountinfo")?;
    let needle = odd.as_os_str().as_bytes();
    ensure!(
        !info.windows(needle.len()).any(|w| w == needle),
        "a mount under the non-UTF-8 bundle is left"
    );
    fs::rename(&odd, &ct.b.dir)?;
    nothing_left(ctx, &ct)
}

/// `exec --process` with a file that is not valid JSON, or whose process has no args: refused
/// naming the file or field; the container goes on running.
fn process_json_malformed(ctx: &mut Ctx) -> R {
    let ct = ctx.container(&["sleep", "30"])?;
    ct.up()?;
    let cases: [(&str, &[u8], &[&str]); 3] = [
        (
            "lone surrogate",
            b"{\"args\": [\"\\udc80\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}",
            &["process.json", "surrogate", "escape"],
        ),
        (
            "raw 0xff",
            b"{\"args\": [\"\xff\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}",
            &["process.json", "utf-8", "unicode"],
        ),
        (
            "no args",
            b"{\"args\": [], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}",
            &["process.args", "args"],
        ),
    ];
    for (what, text, words) in cases {
        let file = ctx.tmp.join("process.json");
        fs::write(&file, text)?;
        let f = file.to_string_lossy().into_owned();
        let o = ctx.rt.exec(&["exec", "--process", &f, &ct.id]);
        ensure!(!o.timed_out, "{what}: exec hung");
        ensure!(o.failed(), "{what}: exec did not fail: {}", o.brief());
        ensure!(
            mentions_any(&o.stderr, words),
            "{what}: error names none of {words:?}: {}",
            o.brief()
        );
        ensure!(
            ct.status()? == "running",
            "{what}: container no longer running"
        );
    }
    let o = ct.delete(true);
    ensure!(o.success(), "delete --force: {}", o.brief());
    nothing_left(ctx, &ct)
}

/// runc refuses a root.path that goes through a symlink ("not an absolute path, or a
/// symlink"): a link can be swapped between the check and the mount. berth does the same.
fn rootfs_symlink(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["true"])?;
    symlink("rootfs", ct.b.dir.join("rootlink"))?;
    ct.b.config["root"]["path"] = json!("rootlink");
    ct.b.write()?;
    refused(ctx, &ct, &["root.path", "rootfs", "symlink"])?;
    // Absolute, through a link to the bundle: same answer.
    let link = ctx.tmp.join("bundle-link");
    symlink(&ct.b.dir, &link)?;
    ct.b.config["root"]["path"] = json!(link.join("rootfs").to_string_lossy());
    ct.b.write()?;
    refused(ctx, &ct, &["root.path", "rootfs", "symlink"])?;
    // Dangling.
    symlink("nowhere", ct.b.dir.join("dangling"))?;
    ct.b.config["root"]["path"] = json!("dangling");
    ct.b.write()?;
    refused(ctx, &ct, &["root.path", "rootfs", "dangling"])
}

fn mount_cmd(args: &[&OsStr]) -> R {
    let o = Command::new("mount").args(args).output()?;
    ensure!(
        o.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

/// The bundle on a read-only filesystem: nothing needs writing there, so `run` works; a mount
/// point that would have to be made in the read-only rootfs fails naming the mount.
fn readonly_bundle(ctx: &mut Ctx) -> R {
    let mut ct = ctx.container(&["true"])?;
    ct.b.write()?;
    let ro = ctx.dir("ro");
    mount_cmd(&[OsStr::new("--bind"), ct.b.dir.as_os_str(), ro.as_os_str()])?;
    let ro2 = ro.clone();
    ctx.on_cleanup(move || {
        host::umount_detach(&ro2);
    });
    mount_cmd(&[
        OsStr::new("-o"),
        OsStr::new("remount,bind,ro"),
        ro.as_os_str(),
    ])?;
    let r = ro.to_string_lossy().into_owned();
    let run = |ct: &Ct| {
        ct.rt.exec_opts(
            &["run", "--bundle", &r, &ct.id],
            Opts {
                timeout: Some(SLOW),
                ..Default::default()
            },
        )
    };
    let o = run(&ct);
    ensure!(o.success(), "run from a read-only bundle: {}", o.brief());
    ensure!(
        host::mounts_under(&ro) == [ro.clone()],
        "mounts left under the read-only bundle: {:?}",
        host::mounts_under(&ro)
    );
    ct.b.add_mount(json!({
        "destination": "/not-in-rootfs", "type": "tmpfs", "source": "tmpfs"
    }));
    // Written through the writable path; the read-only view shows the same file.
    ct.b.write()?;
    let o = run(&ct);
    ensure!(!o.timed_out, "run hung: {}", o.brief());
    ensure!(
        o.failed(),
        "a mount point the read-only rootfs lacks: run succeeded: {}",
        o.brief()
    );
    ensure!(
        mentions_any(&o.stderr, &["mounts[", "not-in-rootfs"]),
        "error names neither the mount nor its destination: {}",
        o.brief()
    );
    ensure!(
        host::mounts_under(&ro) == [ro.clone()],
        "mounts left under the read-only bundle: {:?}",
        host::mounts_under(&ro)
    );
    ensure!(
        host::umount_detach(&ro),
        "could not unmount {}",
        ro.display()
    );
    nothing_left(ctx, &ct)
}

/// A FIFO named as a namespace file: opening it for reading would block until a writer comes;
/// create must refuse it at once, naming linux.namespaces.
fn namespace_path_fifo(ctx: &mut Ctx) -> R {
    let fifo = ctx.tmp.join("ns-fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes())
        .map_err(|e| format!("fifo path: {e}"))?;
    // SAFETY: a valid C string; mkfifo only creates the node.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        bail!("mkfifo: {}", std::io::Error::last_os_error());
    }
    let mut ct = ctx.container(&["true"])?;
    let f = fifo.to_string_lossy().into_owned();
    ct.b.set_namespaces(&[
        ("pid", None),
        ("network", Some(&f)),
        ("ipc", None),
        ("uts", None),
        ("mount", None),
    ]);
    ct.b.write()?;
    let started = Instant::now();
    let o = ct.create_raw(
        &[],
        Opts {
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    ensure!(
        !o.timed_out,
        "create hung on the FIFO for {:?}",
        started.elapsed()
    );
    ensure!(o.failed(), "create did not fail: {}", o.brief());
    ensure!(
        mentions_any(&o.stderr, &["linux.namespaces", "namespace"]),
        "error does not name linux.namespaces: {}",
        o.brief()
    );
    nothing_left(ctx, &ct)
}
