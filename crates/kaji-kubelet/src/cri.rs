//! A CRI v1 client (gRPC over containerd's unix socket): the `k8s-cri` generated
//! RuntimeService and ImageService clients on one tonic channel, plus the few helpers the pod
//! workers use (find a pod's sandboxes and containers by the labels the kubelet puts on them).

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1 as api;

/// Labels on every sandbox and container, as upstream's kuberuntime sets them.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Annotations on containers.
pub const RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
pub const CONTAINER_HASH_ANNOTATION: &str = "io.kubernetes.container.hash";

/// A cheap-to-clone CRI client (tonic channels multiplex one connection).
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
    pub socket: PathBuf,
}

impl Cri {
    /// Connects to the CRI socket, retrying for up to `wait` while the runtime starts.
    pub async fn connect(socket: &Path, wait: Duration) -> Result<Cri> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Self::try_connect(socket).await {
                Ok(c) => return Ok(c),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn try_connect(socket: &Path) -> Result<Cri> {
        let path = socket.to_path_buf();
        let channel = Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .with_context(|| format!("connecting to the CRI socket {}", socket.display()))?;
        let mut c = Cri {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
            socket: socket.to_path_buf(),
        };
        c.version().await?;
        Ok(c)
    }

    pub async fn version(&mut self) -> Result<cri::VersionResponse> {
        Ok(self
            .runtime
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .context("CRI Version")?
            .into_inner())
    }

    /// Sandboxes of the pod with `uid` (all states), newest first.
    pub async fn pod_sandboxes(&mut self, uid: &str) -> Result<Vec<cri::PodSandbox>> {
        let filter = cri::PodSandboxFilter {
            label_selector: HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]),
            ..Default::default()
        };
        self.list_sandboxes(Some(filter)).await
    }

    pub async fn list_sandboxes(
        &mut self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>> {
        let mut items = self
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter })
            .await
            .context("CRI ListPodSandbox")?
            .into_inner()
            .items;
        items.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(items)
    }

    /// Containers of the pod with `uid` (all states, all sandboxes), newest first.
    pub async fn pod_containers(&mut self, uid: &str) -> Result<Vec<cri::Container>> {
        let filter = cri::ContainerFilter {
            label_selector: HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]),
            ..Default::default()
        };
        self.list_containers(Some(filter)).await
    }

    pub async fn list_containers(
        &mut self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>> {
        let mut items = self
            .runtime
            .list_containers(cri::ListContainersRequest { filter })
            .await
            .context("CRI ListContainers")?
            .into_inner()
            .containers;
        items.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(items)
    }

    pub async fn container_status(&mut self, id: &str) -> Result<cri::ContainerStatus> {
        self.runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .context("CRI ContainerStatus")?
            .into_inner()
            .status
            .context("CRI ContainerStatus without a status")
    }

    pub async fn sandbox_status(&mut self, id: &str) -> Result<cri::PodSandboxStatus> {
        self.runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .context("CRI PodSandboxStatus")?
            .into_inner()
            .status
            .context("CRI PodSandboxStatus without a status")
    }

    pub async fn run_sandbox(&mut self, config: cri::PodSandboxConfig) -> Result<String> {
        Ok(self
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn stop_sandbox(&mut self, id: &str) -> Result<()> {
        self.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(status_error)?;
        Ok(())
    }

    pub async fn remove_sandbox(&mut self, id: &str) -> Result<()> {
        self.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(status_error)?;
        Ok(())
    }

    pub async fn create_container(
        &mut self,
        sandbox: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        Ok(self
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<()> {
        self.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(status_error)?;
        Ok(())
    }

    /// Stops a container: SIGTERM, then SIGKILL after `timeout` seconds (the runtime does both).
    pub async fn stop_container(&mut self, id: &str, timeout: i64) -> Result<()> {
        self.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .map_err(status_error)?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> Result<()> {
        self.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(status_error)?;
        Ok(())
    }

    pub async fn exec_sync(
        &mut self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        Ok(self
            .runtime
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd,
                timeout,
            })
            .await
            .map_err(status_error)?
            .into_inner())
    }

    /// The image's status, or None when it is not on the node.
    pub async fn image_status(&mut self, image: &str) -> Result<Option<cri::Image>> {
        Ok(self
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .image)
    }

    /// Pulls an image; returns its reference (the image id).
    pub async fn pull_image(
        &mut self,
        image: &str,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String> {
        Ok(self
            .images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: None,
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .image_ref)
    }

    pub async fn list_images(&mut self) -> Result<Vec<cri::Image>> {
        Ok(self
            .images
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .map_err(status_error)?
            .into_inner()
            .images)
    }
}

/// A gRPC status as an error that reads like the runtime's message (what upstream shows users).
fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        if s.message().is_empty() {
            format!("{:?}", s.code())
        } else {
            s.message().to_string()
        }
    )
}

/// `containerd://<id>`, the form containerStatuses use.
pub fn container_id_uri(runtime_name: &str, id: &str) -> String {
    format!("{runtime_name}://{id}")
}
