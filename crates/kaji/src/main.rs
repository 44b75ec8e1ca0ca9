//! The `kaji` binary: parses flags and wires the components together. Nothing else lives here.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "kaji", version, about = "Kaji: a small Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server with its embedded store), k3s-style.
    Server(ServerArgs),
}

#[derive(Parser)]
struct ServerArgs {
    /// Where state, certificates and the kubeconfig live.
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Run without the node agent (the agent arrives with the kubelet).
    #[arg(long)]
    disable_agent: bool,
    /// Write the admin kubeconfig here instead of `<data-dir>/kubeconfig.yaml`.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAJI_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Server(args) => rt.block_on(server(args)),
    }
}

async fn server(args: ServerArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let db_dir = args.data_dir.join("server").join("db");
    std::fs::create_dir_all(&db_dir).with_context(|| format!("creating {}", db_dir.display()))?;
    let store = kaji_store::RedbStore::open(&db_dir.join("state.redb"), kaji_store::RedbOptions::default())
        .context("opening the embedded store")?;
    let config = kaji_apiserver::Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address,
        port: args.https_listen_port,
        kubeconfig: args.write_kubeconfig.clone(),
    };
    let running = kaji_apiserver::start(config, Arc::new(store)).await?;
    if !args.disable_agent {
        tracing::info!("the node agent is not part of this build yet; running the control plane only");
    }
    tracing::info!(addr = %running.addr, elapsed_ms = started.elapsed().as_millis() as u64, "API server ready");
    eprintln!(
        "Kaji is running: https://{}\n  export KUBECONFIG={}\n  kubectl get namespaces",
        running.addr,
        running.kubeconfig.display()
    );
    tokio::select! {
        r = running.serve => r??,
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}
