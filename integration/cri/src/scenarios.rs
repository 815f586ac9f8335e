//! The scenarios, each run once per handler. Each makes its own pods and checks what is seen
//! from outside: the CRI's answers, the host's /proc and cgroup files, the container's own view
//! through ExecSync, the CRI log file. Whatever a scenario leaves, `Ctx::remove_pods` removes
//! as the kubelet would (stop, remove, then the pod's cgroup), and a cgroup it cannot remove is
//! a failure: something of the pod is still in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_cri::v1::*;

use crate::cri::{self, cgroup_dir, info_pid, ns_of, proc_status, read_trim, Cri};
use crate::Args;

pub const NAMES: &[&str] = &[
    "pod/lifecycle",
    "pod/shared-namespaces",
    "pod/share-process-namespace",
    "pod/host-namespaces",
    "pod/sysctls",
    "pods/parallel",
    "container/lifecycle",
    "container/log-file",
    "container/stop-grace",
    "container/stop-kill-after-grace",
    "container/killed-from-outside",
    "container/restart-attempt",
    "container/command-env-workdir",
    "container/mounts",
    "exec/sync",
    "exec/timeout",
    "resources/cgroup",
    "resources/update",
    "resources/oom-killed",
    "security/defaults",
    "security/run-as-user-group",
    "security/read-only-rootfs",
    "security/capabilities",
    "security/privileged",
    "security/runtime-default-seccomp",
    "security/masked-readonly-paths",
    "security/no-new-privileges",
    "security/localhost-seccomp",
    "stats",
    "list",
    "nothing-left",
];

pub async fn run(ctx: &mut Ctx<'_>, name: &str) -> Result<()> {
    match name {
        "pod/lifecycle" => pod_lifecycle(ctx).await,
        "pod/shared-namespaces" => pod_shared_namespaces(ctx).await,
        "pod/share-process-namespace" => pod_share_process_namespace(ctx).await,
        "pod/host-namespaces" => pod_host_namespaces(ctx).await,
        "pod/sysctls" => pod_sysctls(ctx).await,
        "pods/parallel" => pods_parallel(ctx).await,
        "container/lifecycle" => container_lifecycle(ctx).await,
        "container/log-file" => container_log_file(ctx).await,
        "container/stop-grace" => stop_grace(ctx).await,
        "container/stop-kill-after-grace" => stop_kill_after_grace(ctx).await,
        "container/killed-from-outside" => killed_from_outside(ctx).await,
        "container/restart-attempt" => restart_attempt(ctx).await,
        "container/command-env-workdir" => command_env_workdir(ctx).await,
        "container/mounts" => container_mounts(ctx).await,
        "exec/sync" => exec_sync(ctx).await,
        "exec/timeout" => exec_timeout(ctx).await,
        "resources/cgroup" => resources_cgroup(ctx).await,
        "resources/update" => resources_update(ctx).await,
        "resources/oom-killed" => resources_oom(ctx).await,
        "security/defaults" => security_defaults(ctx).await,
        "security/run-as-user-group" => security_run_as(ctx).await,
        "security/read-only-rootfs" => security_read_only_rootfs(ctx).await,
        "security/capabilities" => security_capabilities(ctx).await,
        "security/privileged" => security_privileged(ctx).await,
        "security/runtime-default-seccomp" => security_seccomp(ctx).await,
        "security/masked-readonly-paths" => security_masked_paths(ctx).await,
        "security/no-new-privileges" => security_no_new_privs(ctx).await,
        "security/localhost-seccomp" => security_localhost_seccomp(ctx).await,
        "stats" => stats(ctx).await,
        "list" => list(ctx).await,
        "nothing-left" => nothing_left(ctx).await,
        other => bail!("no scenario {other}"),
    }
}

/// The default capabilities containerd gives a container (Docker's fourteen), as CapEff.
const DEFAULT_CAPS: &str = "00000000a80425fb";
/// What the kubelet sends in every container's security context (its default ProcMount):
/// containerd 1.6 masks and write-protects only what the request lists.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
const WAIT: Duration = Duration::from_secs(60);

pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
}

impl Pod {
    fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }
    fn ns_options(&self) -> Option<NamespaceOption> {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
    }
    fn cgroup_parent(&self) -> String {
        self.config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default()
    }
}

pub struct Ctx<'a> {
    args: &'a Args,
    handler: String,
    pub cri: Cri,
    /// Pods made and not yet removed: (id, cgroup parent).
    pods: Vec<(String, String)>,
    /// Every sandbox this handler ran, for the final checks.
    all_pods: Vec<String>,
    n: u32,
}

impl<'a> Ctx<'a> {
    pub fn new(args: &'a Args, handler: &str, cri: Cri) -> Ctx<'a> {
        Ctx {
            args,
            handler: handler.into(),
            cri,
            pods: Vec::new(),
            all_pods: Vec::new(),
            n: 0,
        }
    }

    /// A pod's config as the kubelet writes it: network and IPC shared in the pod, PID per
    /// container, a cgroup parent of its own, a log directory.
    fn pod_config(&mut self, name: &str) -> PodSandboxConfig {
        self.n += 1;
        let uid = format!("{}-{}-{}", self.handler, self.n, std::process::id());
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: format!("{}-{}", name.replace('/', "-"), self.handler),
                uid: uid.clone(),
                namespace: "berth-cri".into(),
                attempt: 0,
            }),
            hostname: "berth-pod".into(),
            log_directory: self
                .args
                .state_dir
                .join("pod-logs")
                .join(&uid)
                .to_string_lossy()
                .into(),
            labels: cri::labels(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.parent(&format!("pod{}", self.n)),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A cgroup parent below this handler's (`leaf` None: the handler's own), as the kubelet
    /// names them: a path with the cgroupfs driver, a slice with systemd's (its dashes nest).
    fn parent(&self, leaf: &str) -> String {
        let (base, handler) = (&self.args.cgroup_parent, &self.handler);
        match (self.args.systemd, leaf) {
            (false, "") => format!("{base}/{handler}"),
            (false, leaf) => format!("{base}/{handler}/{leaf}"),
            (true, "") => format!("{base}-{handler}.slice"),
            (true, leaf) => format!("{base}-{handler}-{leaf}.slice"),
        }
    }

    async fn run_pod(&mut self, config: PodSandboxConfig) -> Result<Pod> {
        std::fs::create_dir_all(&config.log_directory).context("making the pod's log directory")?;
        let parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let id = self.cri.run_pod(&config, &self.handler).await?;
        self.pods.push((id.clone(), parent));
        self.record(&id);
        Ok(Pod { id, config })
    }

    /// A sandbox this handler ran: for the final checks, and for run.sh's cleanup by name.
    fn record(&mut self, id: &str) {
        self.all_pods.push(id.to_string());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.args.sandboxes)
        {
            use std::io::Write;
            let _ = writeln!(f, "{id}");
        }
    }

    async fn pod(&mut self, name: &str) -> Result<Pod> {
        let config = self.pod_config(name);
        self.run_pod(config).await
    }

    /// A container's config as the kubelet writes it; it repeats the pod's namespace options,
    /// which containerd does not inherit.
    fn container(&self, pod: &Pod, name: &str, cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.args.image.clone(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            labels: cri::labels(),
            linux: Some(LinuxContainerConfig {
                resources: None,
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: pod.ns_options(),
                    masked_paths: MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    async fn start(&mut self, pod: &Pod, config: ContainerConfig) -> Result<String> {
        let id = self.cri.create(&pod.id, config, &pod.config).await?;
        self.cri.start(&id).await?;
        Ok(id)
    }

    /// A running `sleep` in the pod, and its host pid.
    async fn sleeper(
        &mut self,
        pod: &Pod,
        name: &str,
        tweak: impl FnOnce(&mut ContainerConfig),
    ) -> Result<(String, u32)> {
        let mut config = self.container(pod, name, &["sleep", "1000"]);
        tweak(&mut config);
        let id = self.start(pod, config).await?;
        let pid = self.cri.pid(&id).await?;
        Ok((id, pid))
    }

    async fn sh(&mut self, id: &str, script: &str) -> Result<ExecSyncResponse> {
        self.cri.exec_sync(id, &["sh", "-c", script], 30).await
    }

    /// ExecSync that must exit 0; its stdout.
    async fn sh_ok(&mut self, id: &str, script: &str) -> Result<String> {
        let r = self.sh(id, script).await?;
        ensure!(
            r.exit_code == 0,
            "`{script}` exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&r.stdout).into_owned())
    }

    fn runtime_root(&self) -> Option<&Path> {
        self.args
            .runtime_roots
            .iter()
            .find(|(h, _)| *h == self.handler)
            .map(|(_, d)| d.as_path())
    }

    /// A pod the scenario removed itself: its cgroup parent goes, as after `remove_pods`.
    fn removed(&mut self, pod: &Pod) -> Result<()> {
        self.pods.retain(|(id, _)| *id != pod.id);
        remove_cgroup(&pod.cgroup_parent())
    }

    /// Stops and removes every pod the scenario made, then its cgroup parent, deepest first:
    /// a cgroup that will not go still holds something of the pod.
    pub async fn remove_pods(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        for (id, parent) in std::mem::take(&mut self.pods) {
            if let Err(e) = self.cri.stop_pod(&id).await {
                errors.push(format!("{e:#}"));
            }
            if let Err(e) = self.cri.remove_pod(&id).await {
                errors.push(format!("{e:#}"));
            }
            if let Err(e) = remove_cgroup(&parent) {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("cleanup: {}", errors.join("; ")))
        }
    }
}

/// Every hierarchy's directory for cgroup path `rel` (v1: one per mounted hierarchy; v2: one).
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.join(rel)];
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| !p.is_symlink())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter().map(|h| h.join(rel)).collect()
}

/// Where systemd puts a slice's cgroup: `a-b-c.slice` is `a.slice/a-b.slice/a-b-c.slice`.
fn slice_path(slice: &str) -> PathBuf {
    let name = slice.trim_end_matches(".slice");
    let mut path = PathBuf::from("/sys/fs/cgroup");
    for (i, _) in name.match_indices('-') {
        path.push(format!("{}.slice", &name[..i]));
    }
    path.join(slice)
}

/// The names of the directories in `dir` (none when it is gone).
fn subdirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a pod's cgroup parent in every hierarchy, as the kubelet does after the pod; under
/// systemd, stops its slice. A parent that still holds a cgroup is what the runtime left.
fn remove_cgroup(rel: &str) -> Result<()> {
    if rel.is_empty() {
        return Ok(());
    }
    if rel.ends_with(".slice") {
        let dir = slice_path(rel);
        let left = subdirs(&dir);
        ensure!(left.is_empty(), "slice {rel} still holds {left:?}");
        let stopped = std::process::Command::new("systemctl")
            .args(["stop", rel])
            .status()
            .context("running systemctl")?;
        ensure!(stopped.success(), "systemctl stop {rel}: {stopped}");
        ensure!(
            !dir.exists(),
            "{} is left after its slice stopped",
            dir.display()
        );
        return Ok(());
    }
    for dir in cgroup_dirs(rel) {
        if !dir.exists() {
            continue;
        }
        // What the runtime left below it is its leak: say what it is.
        let left = subdirs(&dir);
        std::fs::remove_dir(&dir)
            .with_context(|| format!("cgroup {} is left (children: {left:?})", dir.display()))?;
    }
    Ok(())
}

fn out(r: &ExecSyncResponse) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}
fn err(r: &ExecSyncResponse) -> String {
    String::from_utf8_lossy(&r.stderr).into_owned()
}

/// Waits until the container's CRI log holds `needle` (its process said it is ready).
async fn wait_log(path: &Path, needle: &str) -> Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("{} never held {needle:?}: {text:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The interfaces of a network namespace, as its /proc/PID/net/dev lists them.
fn interfaces(pid: u32) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect())
}

async fn pod_lifecycle(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("lifecycle").await?;
    let (st, info) = ctx.cri.pod_status(&pod.id).await?;
    ensure!(
        st.state == PodSandboxState::SandboxReady as i32,
        "state {} after RunPodSandbox",
        st.state
    );
    let ip = st
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    ensure!(
        ip == "127.0.0.1",
        "pod IP {ip:?}, not the loopback result's 127.0.0.1"
    );
    ensure!(st.created_at > 0, "no created_at");
    let pid = info_pid(&info)?;
    ensure!(
        interfaces(pid)? == ["lo"],
        "pod network has {:?}, not only lo",
        interfaces(pid)?
    );
    ensure!(
        ns_of(pid, "net")? != ns_of(std::process::id(), "net")?,
        "pod in the host's netns"
    );
    ensure!(
        proc_status(pid, "Name")? == "pause",
        "sandbox process is {}",
        proc_status(pid, "Name")?
    );
    // The sandbox is a container of the handler's runtime, under the root the shim gave it.
    if let Some(root) = ctx.runtime_root() {
        ensure!(
            root.join(&pod.id).is_dir(),
            "{} has no state for the sandbox",
            root.display()
        );
    }
    let filter = PodSandboxFilter {
        id: pod.id.clone(),
        ..Default::default()
    };
    let listed = ctx.cri.list_pods(filter.clone()).await?;
    ensure!(
        listed.len() == 1 && listed[0].state == PodSandboxState::SandboxReady as i32,
        "ListPodSandbox: {listed:?}"
    );

    ctx.cri.stop_pod(&pod.id).await?;
    let (st, _) = ctx.cri.pod_status(&pod.id).await?;
    ensure!(
        st.state == PodSandboxState::SandboxNotready as i32,
        "state {} after StopPodSandbox",
        st.state
    );
    if let Some(root) = ctx.runtime_root() {
        ensure!(
            !root.join(&pod.id).exists(),
            "runtime state of the stopped sandbox is still there"
        );
    }
    ctx.cri.remove_pod(&pod.id).await?;
    ctx.removed(&pod)?;
    ensure!(
        ctx.cri.list_pods(filter).await?.is_empty(),
        "removed pod still listed"
    );
    ensure!(
        ctx.cri.pod_status(&pod.id).await.is_err(),
        "PodSandboxStatus of a removed pod answered"
    );
    Ok(())
}

async fn pod_shared_namespaces(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("shared-ns").await?;
    let (_, info) = ctx.cri.pod_status(&pod.id).await?;
    let sandbox = info_pid(&info)?;
    let (a, pa) = ctx.sleeper(&pod, "a", |_| {}).await?;
    let (_, pb) = ctx.sleeper(&pod, "b", |_| {}).await?;
    for kind in ["net", "ipc", "uts"] {
        let s = ns_of(sandbox, kind)?;
        ensure!(
            ns_of(pa, kind)? == s && ns_of(pb, kind)? == s,
            "{kind} namespace not the pod's"
        );
    }
    for kind in ["pid", "mnt"] {
        let (s, x, y) = (ns_of(sandbox, kind)?, ns_of(pa, kind)?, ns_of(pb, kind)?);
        ensure!(
            s != x && s != y && x != y,
            "{kind} namespace shared without being asked"
        );
    }
    let host = ctx.sh_ok(&a, "hostname").await?;
    ensure!(
        host.trim() == "berth-pod",
        "hostname {host:?}, not the pod's"
    );
    Ok(())
}

async fn pod_share_process_namespace(ctx: &mut Ctx<'_>) -> Result<()> {
    let mut config = ctx.pod_config("share-pid");
    if let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = NamespaceMode::Pod as i32;
    }
    let pod = ctx.run_pod(config).await?;
    let (_, info) = ctx.cri.pod_status(&pod.id).await?;
    let sandbox = info_pid(&info)?;
    let (a, pa) = ctx.sleeper(&pod, "a", |_| {}).await?;
    let mut b = ctx.container(&pod, "b", &["sleep", "1001"]);
    b.labels.insert("role".into(), "b".into());
    let b = ctx.start(&pod, b).await?;
    let pb = ctx.cri.pid(&b).await?;
    let s = ns_of(sandbox, "pid")?;
    ensure!(
        ns_of(pa, "pid")? == s && ns_of(pb, "pid")? == s,
        "containers not in the pod's pid namespace"
    );
    let init = ctx.sh_ok(&a, "cat /proc/1/cmdline").await?;
    ensure!(
        init.trim_end_matches('\0') == "/pause",
        "PID 1 seen from a container is {init:?}"
    );
    let ps = ctx.sh_ok(&a, "ps -o args").await?;
    ensure!(
        ps.contains("sleep 1001"),
        "container a does not see b's process: {ps}"
    );
    Ok(())
}

/// hostNetwork, hostPID, hostIPC: the pod and its containers are in the node's namespaces,
/// but for their own mounts.
async fn pod_host_namespaces(ctx: &mut Ctx<'_>) -> Result<()> {
    let mut config = ctx.pod_config("host-ns");
    // As the kubelet: a hostNetwork pod has the node's UTS namespace, so no hostname of its own.
    config.hostname.clear();
    if let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.network = NamespaceMode::Node as i32;
        ns.pid = NamespaceMode::Node as i32;
        ns.ipc = NamespaceMode::Node as i32;
    }
    let pod = ctx.run_pod(config).await?;
    let (_, pid) = ctx.sleeper(&pod, "c", |_| {}).await?;
    let me = std::process::id();
    // containerd gives a hostNetwork pod the node's UTS namespace too.
    for kind in ["net", "pid", "ipc", "uts"] {
        ensure!(
            ns_of(pid, kind)? == ns_of(me, kind)?,
            "{kind} namespace is not the node's"
        );
    }
    ensure!(
        ns_of(pid, "mnt")? != ns_of(me, "mnt")?,
        "mount namespace is the node's"
    );
    Ok(())
}

/// Pod sysctls reach the pod's namespaces, and only them.
async fn pod_sysctls(ctx: &mut Ctx<'_>) -> Result<()> {
    let mut config = ctx.pod_config("sysctls");
    let wanted = [
        ("kernel.shm_rmid_forced", "1"),
        ("net.ipv4.ip_unprivileged_port_start", "80"),
    ];
    if let Some(l) = config.linux.as_mut() {
        l.sysctls = wanted
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    let host: Vec<String> = wanted
        .iter()
        .map(|(k, _)| read_trim(&Path::new("/proc/sys").join(k.replace('.', "/"))))
        .collect::<Result<_>>()?;
    let pod = ctx.run_pod(config).await?;
    let (id, _) = ctx.sleeper(&pod, "c", |_| {}).await?;
    for ((k, v), before) in wanted.iter().zip(&host) {
        let file = Path::new("/proc/sys").join(k.replace('.', "/"));
        let inside = ctx.sh_ok(&id, &format!("cat {}", file.display())).await?;
        ensure!(
            inside.trim() == *v,
            "{k} is {:?} inside, not {v}",
            inside.trim()
        );
        ensure!(read_trim(&file)? == *before, "{k} changed on the host");
    }
    Ok(())
}

/// Eight pods at once, as a node starting a deployment: each runs a container to completion
/// and is removed; nothing fails and nothing is left.
async fn pods_parallel(ctx: &mut Ctx<'_>) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let config = ctx.pod_config(&format!("parallel-{i}"));
        std::fs::create_dir_all(&config.log_directory)?;
        let mut c = ctx.container(
            &Pod {
                id: String::new(),
                config: config.clone(),
            },
            "c",
            &["sh", "-c", "echo hi; exit 4"],
        );
        c.labels.insert("n".into(), i.to_string());
        let (mut cri, handler) = (ctx.cri.clone(), ctx.handler.clone());
        tasks.spawn(async move {
            let mut made = None;
            let r: Result<()> = async {
                let pod = cri.run_pod(&config, &handler).await?;
                made = Some(pod.clone());
                let id = cri.create(&pod, c, &config).await?;
                cri.start(&id).await?;
                let st = cri.wait_exited(&id, WAIT).await?;
                ensure!(st.exit_code == 4, "exit {}", st.exit_code);
                cri.stop_pod(&pod).await?;
                cri.remove_pod(&pod).await
            }
            .await;
            let parent = config.linux.map(|l| l.cgroup_parent).unwrap_or_default();
            (made, parent, r)
        });
    }
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (made, parent, r) = joined?;
        if let Some(id) = &made {
            ctx.record(id);
        }
        match r {
            Ok(()) => remove_cgroup(&parent)?,
            Err(e) => {
                errors.push(format!("{e:#}"));
                if let Some(id) = made {
                    ctx.pods.push((id, parent));
                }
            }
        }
    }
    ensure!(
        errors.is_empty(),
        "{} of 8 pods failed: {}",
        errors.len(),
        errors.join("; ")
    );
    Ok(())
}

async fn container_lifecycle(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("c-lifecycle").await?;
    let config = ctx.container(&pod, "c", &["sh", "-c", "exit 3"]);
    let id = ctx.cri.create(&pod.id, config, &pod.config).await?;
    let (st, _) = ctx.cri.status(&id).await?;
    ensure!(
        st.state == ContainerState::ContainerCreated as i32,
        "state {} after create",
        st.state
    );
    ensure!(
        st.created_at > 0 && st.started_at == 0,
        "timestamps after create: {st:?}"
    );
    ctx.cri.start(&id).await?;
    let st = ctx.cri.wait_exited(&id, WAIT).await?;
    ensure!(
        st.exit_code == 3 && st.reason == "Error",
        "exit {} reason {:?}, not 3 Error",
        st.exit_code,
        st.reason
    );
    // containerd stamps started_at when StartContainer returns and finished_at from the exit
    // event, so a quick exit may finish "before" it started: only creation comes first.
    ensure!(
        st.started_at > 0 && st.created_at <= st.started_at && st.created_at <= st.finished_at,
        "timestamps: created {} started {} finished {}",
        st.created_at,
        st.started_at,
        st.finished_at
    );
    let ok = ctx.container(&pod, "ok", &["true"]);
    let ok = ctx.start(&pod, ok).await?;
    let st = ctx.cri.wait_exited(&ok, WAIT).await?;
    ensure!(
        st.exit_code == 0 && st.reason == "Completed",
        "exit {} reason {:?}, not 0 Completed",
        st.exit_code,
        st.reason
    );
    for c in [&id, &ok] {
        ctx.cri.remove(c).await?;
        let left = ctx
            .cri
            .list(ContainerFilter {
                id: c.to_string(),
                ..Default::default()
            })
            .await?;
        ensure!(left.is_empty(), "removed container still listed");
        ensure!(
            ctx.cri.status(c).await.is_err(),
            "ContainerStatus of a removed container answered"
        );
        if let Some(root) = ctx.runtime_root() {
            ensure!(
                !root.join(c).exists(),
                "runtime state of a removed container is left"
            );
        }
    }
    Ok(())
}

/// The kubelet's log format: `<RFC 3339 time> <stream> <F|P> <text>` per line.
async fn container_log_file(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("log").await?;
    let config = ctx.container(
        &pod,
        "c",
        &["sh", "-c", "echo out; echo err >&2; printf partial"],
    );
    let id = ctx.start(&pod, config).await?;
    let st = ctx.cri.wait_exited(&id, WAIT).await?;
    ensure!(st.exit_code == 0, "exit {}", st.exit_code);
    let path = pod.log_dir().join("c.log");
    ensure!(
        Path::new(&st.log_path) == path,
        "status log_path {:?}",
        st.log_path
    );
    let text = wait_log(&path, "partial").await?;
    let mut seen = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(4, ' ');
        let (time, stream, tag, msg) = match (f.next(), f.next(), f.next(), f.next()) {
            (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
            _ => bail!("log line not in the CRI format: {line:?}"),
        };
        ensure!(
            time.len() > 20 && time.as_bytes()[10] == b'T',
            "time {time:?} not RFC 3339"
        );
        ensure!(
            matches!(stream, "stdout" | "stderr") && matches!(tag, "F" | "P"),
            "bad line {line:?}"
        );
        seen.push((stream.to_string(), tag.to_string(), msg.to_string()));
    }
    for want in [
        ("stdout", "F", "out"),
        ("stderr", "F", "err"),
        ("stdout", "P", "partial"),
    ] {
        ensure!(
            seen.iter()
                .any(|(s, t, m)| (s.as_str(), t.as_str(), m.as_str()) == want),
            "no line {want:?} in {text:?}"
        );
    }
    Ok(())
}

/// StopContainer sends SIGTERM and waits: the process's own exit within the grace period.
async fn stop_grace(ctx: &mut Ctx<'_>) -> Result<()> {
    stop_with_trap(
        ctx,
        "stop-grace",
        "echo got TERM; exit 7",
        30,
        7,
        "the trap's 7",
    )
    .await
}

/// A process that outlives its grace period is killed: SIGTERM first, SIGKILL after.
async fn stop_kill_after_grace(ctx: &mut Ctx<'_>) -> Result<()> {
    stop_with_trap(ctx, "stop-kill", "echo got TERM", 2, 137, "SIGKILL's 137").await
}

/// A shell that runs `trap` on SIGTERM, stopped with `grace` seconds: it must have got the
/// SIGTERM (its log says so) and exited `want`.
async fn stop_with_trap(
    ctx: &mut Ctx<'_>,
    name: &str,
    trap: &str,
    grace: i64,
    want: i32,
    what: &str,
) -> Result<()> {
    let pod = ctx.pod(name).await?;
    let script = format!("trap '{trap}' TERM; echo ready; while :; do sleep 0.1; done");
    let config = ctx.container(&pod, "c", &["sh", "-c", &script]);
    let id = ctx.start(&pod, config).await?;
    let path = pod.log_dir().join("c.log");
    wait_log(&path, "ready").await?;
    ctx.cri.stop(&id, grace).await?;
    let st = ctx.cri.wait_exited(&id, WAIT).await?;
    ensure!(
        st.exit_code == want,
        "exit {} (reason {:?}), not {what}",
        st.exit_code,
        st.reason
    );
    wait_log(&path, "got TERM").await?;
    Ok(())
}

/// The process dies of a signal nobody sent through the CRI (an OOM killer, an operator).
async fn killed_from_outside(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("killed").await?;
    let (id, pid) = ctx.sleeper(&pod, "c", |_| {}).await?;
    // SAFETY: kill(2) with a pid containerd reported for this container, just now.
    ensure!(
        unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0,
        "kill: {}",
        std::io::Error::last_os_error()
    );
    let st = ctx.cri.wait_exited(&id, WAIT).await?;
    ensure!(
        st.exit_code == 137 && st.reason == "Error",
        "exit {} reason {:?}",
        st.exit_code,
        st.reason
    );
    // The pod is still whole: a new container starts in it.
    let (again, _) = ctx.sleeper(&pod, "again", |_| {}).await?;
    let (st, _) = ctx.cri.status(&again).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "restart in the pod: state {}",
        st.state
    );
    Ok(())
}

/// The kubelet restarts a container as a new one with the next attempt number, in the same
/// pod, while the exited one is kept for inspection.
async fn restart_attempt(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("restart").await?;
    let first = ctx.container(&pod, "c", &["sh", "-c", "echo first; exit 1"]);
    let first = ctx.start(&pod, first).await?;
    let st = ctx.cri.wait_exited(&first, WAIT).await?;
    ensure!(st.exit_code == 1, "first attempt exit {}", st.exit_code);
    let mut second = ctx.container(&pod, "c", &["sh", "-c", "echo second; sleep 1000"]);
    second.metadata = Some(ContainerMetadata {
        name: "c".into(),
        attempt: 1,
    });
    second.log_path = "c.1.log".into();
    let second = ctx.start(&pod, second).await?;
    wait_log(&pod.log_dir().join("c.1.log"), "second").await?;
    let (st, _) = ctx.cri.status(&first).await?;
    ensure!(
        st.state == ContainerState::ContainerExited as i32 && st.exit_code == 1,
        "first attempt now {st:?}"
    );
    let (st, _) = ctx.cri.status(&second).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "second attempt state {}",
        st.state
    );
    ensure!(
        st.metadata.map(|m| m.attempt) == Some(1),
        "second attempt's metadata"
    );
    ctx.cri.remove(&first).await?;
    Ok(())
}

/// command + args, env, working dir, as a pod spec's container gives them.
async fn command_env_workdir(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("config").await?;
    let mut c = ctx.container(&pod, "c", &["sh", "-c"]);
    c.args = vec![
        r#"echo "foo=$FOO"; echo "cwd=$(pwd)"; echo "args=$0 $1""#.into(),
        "a0".into(),
        "a1".into(),
    ];
    c.envs = vec![KeyValue {
        key: "FOO".into(),
        value: "bar baz".into(),
    }];
    c.working_dir = "/tmp/work".into();
    let id = ctx.start(&pod, c).await?;
    let st = ctx.cri.wait_exited(&id, WAIT).await?;
    ensure!(st.exit_code == 0, "exit {}", st.exit_code);
    let log = wait_log(&pod.log_dir().join("c.log"), "args=").await?;
    for want in ["foo=bar baz", "cwd=/tmp/work", "args=a0 a1"] {
        ensure!(log.contains(want), "no {want:?} in {log:?}");
    }
    Ok(())
}

/// hostPath volumes, read-write and read-only; the files containerd gives every container.
async fn container_mounts(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("mounts").await?;
    let vol = pod.log_dir().join("volume");
    std::fs::create_dir_all(&vol)?;
    std::fs::write(vol.join("from-host"), "hello\n")?;
    let (id, _) = ctx
        .sleeper(&pod, "c", |c| {
            for (path, readonly) in [("/data", false), ("/ro", true)] {
                c.mounts.push(k8s_cri::v1::Mount {
                    container_path: path.into(),
                    host_path: vol.to_string_lossy().into(),
                    readonly,
                    ..Default::default()
                });
            }
        })
        .await?;
    ensure!(
        ctx.sh_ok(&id, "cat /data/from-host").await? == "hello\n",
        "the volume's file"
    );
    ctx.sh_ok(&id, "echo written >/data/from-container").await?;
    ensure!(
        std::fs::read_to_string(vol.join("from-container")).unwrap_or_default() == "written\n",
        "a write to the volume did not reach the host"
    );
    let r = ctx.sh(&id, "echo x >/ro/nope").await?;
    ensure!(
        r.exit_code != 0 && err(&r).contains("Read-only file system"),
        "write to a read-only volume: exit {} {:?}",
        r.exit_code,
        err(&r)
    );
    ensure!(
        !vol.join("nope").exists(),
        "the read-only volume was written"
    );
    let hostname = ctx.sh_ok(&id, "cat /etc/hostname").await?;
    ensure!(hostname.trim() == "berth-pod", "/etc/hostname {hostname:?}");
    ctx.sh_ok(
        &id,
        "test -f /etc/hosts && test -f /etc/resolv.conf && test -d /dev/shm",
    )
    .await?;
    Ok(())
}

async fn exec_sync(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("exec").await?;
    let (id, pid) = ctx.sleeper(&pod, "c", |_| {}).await?;
    let r = ctx.sh(&id, "echo out; echo err >&2; exit 5").await?;
    ensure!(
        out(&r) == "out\n" && err(&r) == "err\n" && r.exit_code == 5,
        "stdout {:?} stderr {:?} exit {}",
        out(&r),
        err(&r),
        r.exit_code
    );
    // The exec runs in the container's namespaces.
    for kind in ["pid", "mnt", "net", "ipc", "uts"] {
        let inside = ctx
            .sh_ok(&id, &format!("readlink /proc/self/ns/{kind}"))
            .await?;
        ensure!(
            inside.trim() == ns_of(pid, kind)?,
            "exec's {kind} namespace is not the container's"
        );
    }
    // An exec probe that fails to start reports an error, not a pass.
    let r = ctx.cri.exec_sync(&id, &["/no/such/binary"], 10).await;
    ensure!(
        r.as_ref().map(|r| r.exit_code != 0).unwrap_or(true),
        "a missing binary's exec reported success"
    );
    Ok(())
}

async fn exec_timeout(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("exec-timeout").await?;
    let (id, _) = ctx.sleeper(&pod, "c", |_| {}).await?;
    let started = Instant::now();
    let r = ctx.cri.exec_sync(&id, &["sleep", "31"], 2).await;
    let took = started.elapsed();
    ensure!(r.is_err(), "ExecSync past its timeout returned {r:?}");
    ensure!(
        took < Duration::from_secs(25),
        "ExecSync returned after {took:?}, not at its 2 s timeout"
    );
    // The timed-out process is gone from the container.
    let ps = ctx.sh_ok(&id, "ps -o args").await?;
    ensure!(
        !ps.contains("sleep 31"),
        "the timed-out exec is still running: {ps}"
    );
    Ok(())
}

fn limits(shares: i64, quota: i64, memory: i64) -> LinuxContainerResources {
    LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory,
        ..Default::default()
    }
}

/// The cgroup files a process's limits are in, read from the host: v1 or v2.
fn read_limits(pid: u32) -> Result<(String, String, String)> {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let d = cgroup_dir(pid, "")?;
        return Ok((
            read_trim(&d.join("cpu.weight"))?,
            read_trim(&d.join("cpu.max"))?,
            read_trim(&d.join("memory.max"))?,
        ));
    }
    let cpu = cgroup_dir(pid, "cpu")?;
    let mem = cgroup_dir(pid, "memory")?;
    Ok((
        read_trim(&cpu.join("cpu.shares"))?,
        format!(
            "{} {}",
            read_trim(&cpu.join("cpu.cfs_quota_us"))?,
            read_trim(&cpu.join("cpu.cfs_period_us"))?
        ),
        read_trim(&mem.join("memory.limit_in_bytes"))?,
    ))
}

/// What read_limits must show for shares, quota and memory: the v1 values, or v2's
/// conversion of shares to weight (1 + (shares - 2) * 9999 / 262142).
fn expected_limits(shares: i64, quota: i64, memory: i64) -> (String, String, String) {
    let cpu = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        (1 + (shares - 2) * 9999 / 262_142).to_string()
    } else {
        shares.to_string()
    };
    (cpu, format!("{quota} 100000"), memory.to_string())
}

async fn resources_cgroup(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("resources").await?;
    let (_, pid) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(l) = c.linux.as_mut() {
                l.resources = Some(limits(512, 50_000, 64 << 20));
            }
        })
        .await?;
    let got = read_limits(pid)?;
    ensure!(
        got == expected_limits(512, 50_000, 64 << 20),
        "cgroup limits {got:?}"
    );
    let dir = cgroup_dir(pid, "memory")?;
    ensure!(
        dir.to_string_lossy().contains(&pod.cgroup_parent()),
        "container cgroup {} is not under the pod's parent {}",
        dir.display(),
        pod.cgroup_parent()
    );
    Ok(())
}

async fn resources_update(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("update").await?;
    let (id, pid) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(l) = c.linux.as_mut() {
                l.resources = Some(limits(512, 50_000, 64 << 20));
            }
        })
        .await?;
    ctx.cri.update(&id, limits(1024, 20_000, 128 << 20)).await?;
    let got = read_limits(pid)?;
    ensure!(
        got == expected_limits(1024, 20_000, 128 << 20),
        "cgroup limits after update {got:?}"
    );
    Ok(())
}

async fn resources_oom(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("oom").await?;
    // dd's buffer is one 100 MiB block, filled by one read: over the 32 MiB limit. It waits
    // for a go from an exec, made once StartContainer has returned: the shim watches the
    // cgroup for OOM kills only from then on (containerd 1.6). The shell outlives dd by 2 s
    // with dd's status: under systemd the scope's cgroup goes with its last process, and the
    // shim, reading memory.events after the kill, raced its removal (seen with runc and with
    // berth in the v2 guest).
    let script = "while [ ! -e /tmp/go ]; do sleep 0.05; done; \
                  dd if=/dev/zero of=/dev/null bs=100M count=1; s=$?; sleep 2; exit $s";
    let mut config = ctx.container(&pod, "c", &["sh", "-c", script]);
    if let Some(l) = config.linux.as_mut() {
        l.resources = Some(limits(0, 0, 32 << 20));
    }
    let id = ctx.start(&pod, config).await?;
    ctx.sh_ok(&id, "touch /tmp/go").await?;
    let st = ctx.cri.wait_exited(&id, WAIT).await?;
    ensure!(
        st.reason == "OOMKilled" && st.exit_code == 137,
        "exit {} reason {:?}, not 137 OOMKilled",
        st.exit_code,
        st.reason
    );
    Ok(())
}

/// With no security context: containerd's default capabilities, no seccomp (the kubelet's
/// default is Unconfined), root. The other security scenarios are measured against this.
async fn security_defaults(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("sec-defaults").await?;
    let (id, pid) = ctx.sleeper(&pod, "c", |_| {}).await?;
    ensure!(
        proc_status(pid, "CapEff")? == DEFAULT_CAPS,
        "CapEff {}",
        proc_status(pid, "CapEff")?
    );
    ensure!(
        proc_status(pid, "CapBnd")? == DEFAULT_CAPS,
        "CapBnd {}",
        proc_status(pid, "CapBnd")?
    );
    ensure!(
        proc_status(pid, "Seccomp")? == "0",
        "Seccomp {}",
        proc_status(pid, "Seccomp")?
    );
    ensure!(
        proc_status(pid, "Uid")?.starts_with("0\t"),
        "Uid {}",
        proc_status(pid, "Uid")?
    );
    // The controls for the attacks below: with defaults each of them works.
    ctx.sh_ok(&id, "touch /x && chown 1:1 /x").await?;
    ctx.sh_ok(&id, "unshare -U true").await?;
    ctx.sh_ok(&id, "mkdir /tmp/d").await?;
    Ok(())
}

async fn security_run_as(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("run-as").await?;
    let (id, pid) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                sc.run_as_user = Some(Int64Value { value: 1000 });
                sc.run_as_group = Some(Int64Value { value: 2000 });
                sc.supplemental_groups = vec![3000];
            }
        })
        .await?;
    ensure!(
        proc_status(pid, "Uid")? == "1000\t1000\t1000\t1000",
        "Uid {}",
        proc_status(pid, "Uid")?
    );
    ensure!(
        proc_status(pid, "Gid")? == "2000\t2000\t2000\t2000",
        "Gid {}",
        proc_status(pid, "Gid")?
    );
    let groups = proc_status(pid, "Groups")?;
    ensure!(
        groups.split_whitespace().any(|g| g == "3000"),
        "Groups {groups}"
    );
    ensure!(
        proc_status(pid, "CapEff")? == "0000000000000000",
        "a non-root user kept CapEff {}",
        proc_status(pid, "CapEff")?
    );
    // An exec runs as the same user.
    let who = ctx.sh_ok(&id, "id -u; id -g").await?;
    ensure!(who == "1000\n2000\n", "exec runs as {who:?}");
    Ok(())
}

async fn security_read_only_rootfs(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("ro-rootfs").await?;
    let (id, _) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                sc.readonly_rootfs = true;
            }
        })
        .await?;
    let r = ctx.sh(&id, "touch /x").await?;
    ensure!(
        r.exit_code != 0 && err(&r).contains("Read-only file system"),
        "write to a read-only rootfs: exit {} {:?}",
        r.exit_code,
        err(&r)
    );
    Ok(())
}

async fn security_capabilities(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("caps").await?;
    let (id, pid) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                sc.capabilities = Some(Capability {
                    add_capabilities: vec!["NET_ADMIN".into(), "NET_RAW".into()],
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                });
            }
        })
        .await?;
    // CAP_NET_ADMIN (12) and CAP_NET_RAW (13), nothing else, in every set that counts.
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        ensure!(
            proc_status(pid, set)? == "0000000000003000",
            "{set} {}",
            proc_status(pid, set)?
        );
    }
    // Attack: chown needs the dropped CAP_CHOWN (security/defaults shows it works otherwise).
    let r = ctx.sh(&id, "touch /x && chown 1:1 /x").await?;
    ensure!(r.exit_code != 0, "chown without CAP_CHOWN succeeded");
    // The added one works: CAP_NET_ADMIN sets lo down.
    ctx.sh_ok(&id, "ip link set lo down && ip link set lo up")
        .await?;
    Ok(())
}

async fn security_privileged(ctx: &mut Ctx<'_>) -> Result<()> {
    let mut config = ctx.pod_config("privileged");
    if let Some(sc) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.privileged = true;
    }
    let pod = ctx.run_pod(config).await?;
    let (id, pid) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                sc.privileged = true;
            }
        })
        .await?;
    // Every capability this host can give (its bounding set lacks CAP_SYS_RESOURCE).
    let host = proc_status(std::process::id(), "CapBnd")?;
    ensure!(
        proc_status(pid, "CapEff")? == host,
        "CapEff {} (host bounding {host})",
        proc_status(pid, "CapEff")?
    );
    ensure!(
        proc_status(pid, "Seccomp")? == "0",
        "Seccomp {}",
        proc_status(pid, "Seccomp")?
    );
    // The host's devices, /sys writable, nothing masked.
    if Path::new("/dev/kmsg").exists() {
        ctx.sh_ok(&id, "test -c /dev/kmsg").await?;
    }
    let mounts = ctx.sh_ok(&id, "cat /proc/self/mountinfo").await?;
    ensure!(
        !mounts
            .lines()
            .any(|l| mount_point(l) == Some("/proc/timer_list")),
        "/proc/timer_list masked in a privileged container"
    );
    let sys = mounts.lines().find(|l| mount_point(l) == Some("/sys"));
    ensure!(
        sys.map(|l| mount_opts(l).starts_with("rw"))
            .unwrap_or(false),
        "/sys not rw: {sys:?}"
    );
    Ok(())
}

async fn security_seccomp(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("seccomp").await?;
    let (id, pid) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                sc.seccomp = Some(SecurityProfile {
                    profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                    ..Default::default()
                });
            }
        })
        .await?;
    ensure!(
        proc_status(pid, "Seccomp")? == "2",
        "Seccomp {}",
        proc_status(pid, "Seccomp")?
    );
    let inside = ctx.sh_ok(&id, "grep Seccomp: /proc/self/status").await?;
    ensure!(
        inside.split_whitespace().nth(1) == Some("2"),
        "exec's Seccomp: {inside:?}"
    );
    // Attack: a new user namespace (the way into many kernel bugs). The default profile
    // refuses unshare without CAP_SYS_ADMIN; security/defaults shows it works unfiltered.
    let r = ctx.sh(&id, "unshare -U true").await?;
    ensure!(
        r.exit_code != 0,
        "unshare(CLONE_NEWUSER) allowed under RuntimeDefault"
    );
    Ok(())
}

/// allowPrivilegeEscalation: false.
async fn security_no_new_privs(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("nnp").await?;
    let (id, pid) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                sc.no_new_privs = true;
            }
        })
        .await?;
    ensure!(
        proc_status(pid, "NoNewPrivs")? == "1",
        "NoNewPrivs {}",
        proc_status(pid, "NoNewPrivs")?
    );
    let inside = ctx.sh_ok(&id, "grep NoNewPrivs: /proc/self/status").await?;
    ensure!(
        inside.split_whitespace().nth(1) == Some("1"),
        "exec's {inside:?}"
    );
    Ok(())
}

/// A profile of the operator's own, from a file on the node (`localhost/…`): mkdir refused.
async fn security_localhost_seccomp(ctx: &mut Ctx<'_>) -> Result<()> {
    let profile = ctx.args.state_dir.join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )?;
    let pod = ctx.pod("seccomp-local").await?;
    let (id, pid) = ctx
        .sleeper(&pod, "c", |c| {
            if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                sc.seccomp = Some(SecurityProfile {
                    profile_type: security_profile::ProfileType::Localhost as i32,
                    localhost_ref: profile.to_string_lossy().into(),
                });
            }
        })
        .await?;
    ensure!(
        proc_status(pid, "Seccomp")? == "2",
        "Seccomp {}",
        proc_status(pid, "Seccomp")?
    );
    // security/defaults shows mkdir works without the profile.
    let r = ctx.sh(&id, "mkdir /tmp/d").await?;
    ensure!(
        r.exit_code != 0 && err(&r).contains("Operation not permitted"),
        "mkdir under a profile refusing it: exit {} {:?}",
        r.exit_code,
        err(&r)
    );
    ctx.sh_ok(&id, "touch /tmp/f").await?;
    Ok(())
}

fn mount_point(line: &str) -> Option<&str> {
    line.split(' ').nth(4)
}
fn mount_opts(line: &str) -> &str {
    line.split(' ').nth(5).unwrap_or("")
}

async fn security_masked_paths(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("masked").await?;
    let (id, _) = ctx.sleeper(&pod, "c", |_| {}).await?;
    let mounts = ctx.sh_ok(&id, "cat /proc/self/mountinfo").await?;
    let at = |p: &str| {
        mounts
            .lines()
            .rev()
            .find(|l| mount_point(l) == Some(p))
            .map(String::from)
    };
    // Those of the masked paths this host has (it has no /proc/kcore, for one).
    for m in MASKED_PATHS.iter().filter(|m| Path::new(m).exists()) {
        ensure!(at(m).is_some(), "{m} is not masked");
    }
    for ro in READONLY_PATHS.iter().filter(|p| Path::new(p).exists()) {
        let line = at(ro).with_context(|| format!("{ro} has no read-only mount"))?;
        ensure!(
            mount_opts(&line).starts_with("ro"),
            "{ro} mounted {}",
            mount_opts(&line)
        );
    }
    // Attacks: read the kernel's timers (host-wide pids and symbols); write a sysctl.
    let timers = ctx.sh_ok(&id, "wc -c </proc/timer_list").await?;
    ensure!(
        timers.trim() == "0",
        "/proc/timer_list gave {} bytes",
        timers.trim()
    );
    let r = ctx.sh(&id, "echo x >/proc/sys/kernel/domainname").await?;
    ensure!(r.exit_code != 0, "a sysctl write succeeded");
    Ok(())
}

async fn stats(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("stats").await?;
    let script = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo busy-done; sleep 1000";
    let config = ctx.container(&pod, "c", &["sh", "-c", script]);
    let id = ctx.start(&pod, config).await?;
    wait_log(&pod.log_dir().join("c.log"), "busy-done").await?;
    let s = ctx.cri.stats(&id).await?;
    ensure!(
        s.attributes.as_ref().map(|a| a.id.as_str()) == Some(id.as_str()),
        "stats for {:?}",
        s.attributes
    );
    let cpu = s
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value)
        .unwrap_or(0);
    ensure!(cpu > 10_000_000, "cpu usage {cpu} ns after a busy loop");
    let mem = s
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|v| v.value)
        .unwrap_or(0);
    ensure!(mem > 0, "memory working set {mem}");
    let all = ctx
        .cri
        .list_stats(ContainerStatsFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        })
        .await?;
    ensure!(
        all.len() == 1 && all[0].attributes.as_ref().map(|a| a.id.as_str()) == Some(id.as_str()),
        "ListContainerStats: {} entries",
        all.len()
    );
    Ok(())
}

async fn list(ctx: &mut Ctx<'_>) -> Result<()> {
    let pod = ctx.pod("list").await?;
    let (a, _) = ctx.sleeper(&pod, "a", |_| {}).await?;
    let mut b = ctx.container(&pod, "b", &["sleep", "1000"]);
    b.labels.insert("role".into(), "b".into());
    let b = ctx.cri.create(&pod.id, b, &pod.config).await?;
    let in_pod = ContainerFilter {
        pod_sandbox_id: pod.id.clone(),
        ..Default::default()
    };
    let ids = |v: Vec<Container>| {
        let mut v: Vec<String> = v.into_iter().map(|c| c.id).collect();
        v.sort();
        v
    };
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    ensure!(
        ids(ctx.cri.list(in_pod.clone()).await?) == both,
        "the pod's containers"
    );
    let running = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        ..in_pod.clone()
    };
    ensure!(
        ids(ctx.cri.list(running.clone()).await?) == [a.clone()],
        "running containers"
    );
    let labelled = ContainerFilter {
        label_selector: HashMap::from([("role".to_string(), "b".to_string())]),
        ..in_pod.clone()
    };
    ensure!(
        ids(ctx.cri.list(labelled).await?) == [b.clone()],
        "containers labelled role=b"
    );
    let ready = PodSandboxFilter {
        id: pod.id.clone(),
        state: Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxReady as i32,
        }),
        ..Default::default()
    };
    ensure!(
        ctx.cri.list_pods(ready.clone()).await?.len() == 1,
        "the pod is not listed ready"
    );
    ctx.cri.stop_pod(&pod.id).await?;
    ensure!(
        ctx.cri.list_pods(ready).await?.is_empty(),
        "a stopped pod is listed ready"
    );
    ensure!(
        ctx.cri.list(running).await?.is_empty(),
        "containers of a stopped pod listed running"
    );
    let (st, _) = ctx.cri.status(&a).await?;
    ensure!(
        st.state == ContainerState::ContainerExited as i32,
        "a is in state {} after StopPodSandbox",
        st.state
    );
    Ok(())
}

/// After every pod is gone: nothing of them is listed, in the runtime's root, in the mount
/// table or (checked after each scenario) in the cgroup tree; containerd's files outside its
/// dirs (shim sockets, CNI results) are gone too.
async fn nothing_left(ctx: &mut Ctx<'_>) -> Result<()> {
    let mine = PodSandboxFilter {
        label_selector: cri::labels(),
        ..Default::default()
    };
    let pods = ctx.cri.list_pods(mine).await?;
    let ours: Vec<&PodSandbox> = pods
        .iter()
        .filter(|p| ctx.all_pods.contains(&p.id))
        .collect();
    ensure!(ours.is_empty(), "{} pods still listed", ours.len());
    let containers = ctx
        .cri
        .list(ContainerFilter {
            label_selector: cri::labels(),
            ..Default::default()
        })
        .await?;
    let ours = containers
        .iter()
        .filter(|c| ctx.all_pods.contains(&c.pod_sandbox_id))
        .count();
    ensure!(ours == 0, "{ours} containers still listed");
    if let Some(root) = ctx.runtime_root() {
        let left: Vec<String> = std::fs::read_dir(root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ensure!(
            left.is_empty(),
            "the runtime's root {} still holds {left:?}",
            root.display()
        );
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let state = ctx.args.state_dir.to_string_lossy().into_owned();
    for line in mountinfo.lines() {
        let point = mount_point(line).unwrap_or("");
        ensure!(!point.starts_with(&state), "mount left: {point}");
        for id in &ctx.all_pods {
            ensure!(
                !point.contains(id.as_str()),
                "mount left for pod {id}: {point}"
            );
        }
    }
    let address = ctx.args.socket.to_string_lossy().into_owned();
    for id in &ctx.all_pods {
        let socket =
            Path::new("/run/containerd/s").join(sha256_hex(&format!("{address}/k8s.io/{id}"))?);
        ensure!(
            !socket.exists(),
            "the shim's socket {} is left",
            socket.display()
        );
        let results = std::fs::read_dir("/var/lib/cni/results")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_else(|_| Vec::<String>::new());
        ensure!(
            !results.iter().any(|r| r.contains(id.as_str())),
            "a CNI result of pod {id} is left"
        );
    }
    // The handler's own cgroup parent, empty once each pod's is gone.
    remove_cgroup(&ctx.parent(""))?;
    Ok(())
}

/// sha256 of a short string, by the coreutils tool (one use; no hashing crate for it).
fn sha256_hex(s: &str) -> Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    child
        .stdin
        .take()
        .context("sha256sum stdin")?
        .write_all(s.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .map(String::from)
        .context("sha256sum printed nothing")
}
