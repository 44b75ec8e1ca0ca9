//! Upstream controller_utils' PodControl.DeletePod for a batch, shared by the controllers that
//! delete their pods the same way (ReplicaSet/ReplicationController, DaemonSet).

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kaji_runtime::events::Recorder;
use kube::api::{Api, DeleteParams};
use std::collections::HashSet;

/// Deletes the named pods at once, each with its DeleteParams, recording SuccessfulDelete
/// ("Deleted pod: x") or FailedDelete ("Error deleting: <error>") on `owner`; a pod already
/// gone is neither. Returns the names deleted (for expectations) and the last failure.
pub async fn delete_pods(
    api: &Api<Pod>,
    recorder: &Recorder,
    owner: &ObjectReference,
    pods: impl IntoIterator<Item = (String, DeleteParams)>,
) -> (HashSet<String>, Option<kube::Error>) {
    let results = futures::future::join_all(
        pods.into_iter()
            .map(|(name, dp)| async move { (name.clone(), api.delete(&name, &dp).await) }),
    )
    .await;
    let mut deleted = HashSet::new();
    let mut failure = None;
    for (name, r) in results {
        match r {
            Ok(_) => {
                recorder
                    .normal(owner, "SuccessfulDelete", &format!("Deleted pod: {name}"))
                    .await;
                deleted.insert(name);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                recorder
                    .warning(owner, "FailedDelete", &format!("Error deleting: {e}"))
                    .await;
                failure = Some(e);
            }
        }
    }
    (deleted, failure)
}
