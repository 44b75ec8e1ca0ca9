//! nodelifecycle controller (being written).

use crate::Options;
use kube::Client;

pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let _ = (client, opts);
    std::future::pending::<()>().await;
    Ok(())
}
