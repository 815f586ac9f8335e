//! The CRI calls as the kubelet makes them, over containerd's socket, and what the tests read
//! back: a pod's and a container's verbose info (pid, runtime spec), the host's view of a
//! process (namespaces, cgroups, status).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Labels every pod and container of this run carries, so listings can be filtered to them.
pub const RUN_LABEL: &str = "berth-cri-test";

#[derive(Clone)]
pub struct Cri {
    rt: RuntimeServiceClient<Channel>,
}

impl Cri {
    pub async fn connect(socket: &Path) -> Result<Cri> {
        let socket = socket.to_path_buf();
        // The URI is unused: every connection is the unix socket.
        let channel =
            Endpoint::try_from("http://[::]:0")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?))
                    }
                }))
                .await
                .context("connecting to containerd's socket")?;
        Ok(Cri {
            rt: RuntimeServiceClient::new(channel),
        })
    }

    pub async fn version(&mut self) -> Result<VersionResponse> {
        Ok(self
            .rt
            .version(VersionRequest::default())
            .await?
            .into_inner())
    }

    pub async fn run_pod(&mut self, config: &PodSandboxConfig, handler: &str) -> Result<String> {
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let resp = self
            .rt
            .run_pod_sandbox(req)
            .await
            .context("RunPodSandbox")?;
        Ok(resp.into_inner().pod_sandbox_id)
    }

    pub async fn pod_status(&mut self, id: &str) -> Result<(PodSandboxStatus, serde_json::Value)> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        let resp = self
            .rt
            .pod_sandbox_status(req)
            .await
            .context("PodSandboxStatus")?
            .into_inner();
        let status = resp
            .status
            .ok_or_else(|| anyhow!("PodSandboxStatus: no status"))?;
        Ok((status, verbose_info(&resp.info)?))
    }

    pub async fn stop_pod(&mut self, id: &str) -> Result<()> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt
            .stop_pod_sandbox(req)
            .await
            .context("StopPodSandbox")?;
        Ok(())
    }

    pub async fn remove_pod(&mut self, id: &str) -> Result<()> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt
            .remove_pod_sandbox(req)
            .await
            .context("RemovePodSandbox")?;
        Ok(())
    }

    pub async fn list_pods(&mut self, filter: PodSandboxFilter) -> Result<Vec<PodSandbox>> {
        let req = ListPodSandboxRequest {
            filter: Some(filter),
        };
        Ok(self
            .rt
            .list_pod_sandbox(req)
            .await
            .context("ListPodSandbox")?
            .into_inner()
            .items)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        config: ContainerConfig,
        pod_config: &PodSandboxConfig,
    ) -> Result<String> {
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        };
        Ok(self
            .rt
            .create_container(req)
            .await
            .context("CreateContainer")?
            .into_inner()
            .container_id)
    }

    pub async fn start(&mut self, id: &str) -> Result<()> {
        let req = StartContainerRequest {
            container_id: id.into(),
        };
        self.rt
            .start_container(req)
            .await
            .context("StartContainer")?;
        Ok(())
    }

    pub async fn stop(&mut self, id: &str, grace_seconds: i64) -> Result<()> {
        let req = StopContainerRequest {
            container_id: id.into(),
            timeout: grace_seconds,
        };
        self.rt.stop_container(req).await.context("StopContainer")?;
        Ok(())
    }

    pub async fn remove(&mut self, id: &str) -> Result<()> {
        let req = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.rt
            .remove_container(req)
            .await
            .context("RemoveContainer")?;
        Ok(())
    }

    pub async fn status(&mut self, id: &str) -> Result<(ContainerStatus, serde_json::Value)> {
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let resp = self
            .rt
            .container_status(req)
            .await
            .context("ContainerStatus")?
            .into_inner();
        let status = resp
            .status
            .ok_or_else(|| anyhow!("ContainerStatus: no status"))?;
        Ok((status, verbose_info(&resp.info)?))
    }

    pub async fn list(&mut self, filter: ContainerFilter) -> Result<Vec<Container>> {
        let req = ListContainersRequest {
            filter: Some(filter),
        };
        Ok(self
            .rt
            .list_containers(req)
            .await
            .context("ListContainers")?
            .into_inner()
            .containers)
    }

    pub async fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<ExecSyncResponse> {
        let req = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        Ok(self
            .rt
            .exec_sync(req)
            .await
            .context("ExecSync")?
            .into_inner())
    }

    pub async fn update(&mut self, id: &str, resources: LinuxContainerResources) -> Result<()> {
        let req = UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(resources),
            ..Default::default()
        };
        self.rt
            .update_container_resources(req)
            .await
            .context("UpdateContainerResources")?;
        Ok(())
    }

    pub async fn stats(&mut self, id: &str) -> Result<ContainerStats> {
        let req = ContainerStatsRequest {
            container_id: id.into(),
        };
        let resp = self
            .rt
            .container_stats(req)
            .await
            .context("ContainerStats")?
            .into_inner();
        resp.stats
            .ok_or_else(|| anyhow!("ContainerStats: no stats"))
    }

    pub async fn list_stats(
        &mut self,
        filter: ContainerStatsFilter,
    ) -> Result<Vec<ContainerStats>> {
        let req = ListContainerStatsRequest {
            filter: Some(filter),
        };
        Ok(self
            .rt
            .list_container_stats(req)
            .await
            .context("ListContainerStats")?
            .into_inner()
            .stats)
    }

    /// The container's status once it has exited. The kubelet learns of exits by relisting;
    /// this does the same, every 20 ms until `limit`.
    pub async fn wait_exited(&mut self, id: &str, limit: Duration) -> Result<ContainerStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let (status, _) = self.status(id).await?;
            if status.state == ContainerState::ContainerExited as i32 {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("container still in state {} after {limit:?}", status.state);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The host pid of a running container, from containerd's verbose info.
    pub async fn pid(&mut self, id: &str) -> Result<u32> {
        let (_, info) = self.status(id).await?;
        info_pid(&info)
    }
}

/// containerd's verbose info: one key, "info", whose value is a JSON document.
fn verbose_info(info: &HashMap<String, String>) -> Result<serde_json::Value> {
    match info.get("info") {
        Some(s) => serde_json::from_str(s).context("verbose info is not JSON"),
        None => Ok(serde_json::Value::Null),
    }
}

pub fn info_pid(info: &serde_json::Value) -> Result<u32> {
    info["pid"]
        .as_u64()
        .filter(|p| *p > 0)
        .map(|p| p as u32)
        .ok_or_else(|| anyhow!("verbose info has no pid"))
}

/// The inode of a process's namespace of `kind`, as the host sees it.
pub fn ns_of(pid: u32, kind: &str) -> Result<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .with_context(|| format!("reading /proc/{pid}/ns/{kind}"))?;
    Ok(link.to_string_lossy().into_owned())
}

/// A field of /proc/PID/status ("CapEff", "Seccomp", "Uid"…), trimmed.
pub fn proc_status(pid: u32, field: &str) -> Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| anyhow!("/proc/{pid}/status has no {field}"))
}

/// Where a process's cgroup for `controller` is on the host: its own line of /proc/PID/cgroup,
/// under the v1 hierarchy that holds the controller, or the v2 tree when the host is pure v2.
pub fn cgroup_dir(pid: u32, controller: &str) -> Result<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("reading /proc/{pid}/cgroup"))?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let path = path.trim_start_matches('/');
        if v2 && ctrls.is_empty() {
            return Ok(Path::new("/sys/fs/cgroup").join(path));
        }
        if !v2 && ctrls.split(',').any(|c| c == controller) {
            return Ok(Path::new("/sys/fs/cgroup").join(ctrls).join(path));
        }
    }
    bail!("process {pid} is in no {controller} cgroup")
}

pub fn read_trim(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

pub fn labels() -> HashMap<String, String> {
    HashMap::from([(RUN_LABEL.to_string(), "1".to_string())])
}
