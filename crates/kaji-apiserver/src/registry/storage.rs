//! storage.k8s.io/v1.

use super::{Plain, Strategy, info};
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    const G: &str = "storage.k8s.io";
    all.push(Arc::new(Plain { info: info(G, "v1", "StorageClass", "storageclasses", "storageclass", false, &["sc"], &[]), status: false, generation: false }));
    all.push(Arc::new(Plain { info: info(G, "v1", "CSIDriver", "csidrivers", "csidriver", false, &[], &[]), status: false, generation: false }));
    all.push(Arc::new(Plain { info: info(G, "v1", "CSINode", "csinodes", "csinode", false, &[], &[]), status: false, generation: false }));
    all.push(Arc::new(Plain { info: info(G, "v1", "VolumeAttachment", "volumeattachments", "volumeattachment", false, &[], &["status"]), status: true, generation: false }));
}
