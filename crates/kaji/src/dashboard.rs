//! `kaji dashboard`: on the server's machine, prints a URL that opens the dashboard logged in
//! (`kaji_dashboard::login`); with `--listen`, serves the dashboard for a remote cluster
//! (`kaji_dashboard::standalone`). And the hook `kaji server` gives the API server.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// `kaji dashboard` flags.
#[derive(clap::Args)]
pub struct DashboardArgs {
    /// The server's data dir (its admin kubeconfig is `<data-dir>/kubeconfig.yaml`).
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
    /// Open the URL in a browser too (`xdg-open`).
    #[arg(long)]
    open: bool,
    /// The kubeconfig: with --listen, the cluster to show (its server and CA; its credentials
    /// are not used, the viewer logs in; default $KUBECONFIG, then ~/.kube/config); without, an
    /// admin kubeconfig in place of the data dir's.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Serve the dashboard for a remote cluster on this address (plain HTTP, e.g.
    /// 127.0.0.1:8001) instead of printing a login URL.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

/// The API server's hook for `/dashboard` (no credentials needed: the page is the login page;
/// the history asks the API server about each viewer itself).
pub fn handler(dashboard: Arc<kaji_dashboard::Dashboard>) -> kaji_apiserver::ExtraHandler {
    kaji_apiserver::ExtraHandler {
        prefix: kaji_dashboard::PREFIX,
        handle: Arc::new(move |req| dashboard.respond(req)),
    }
}

/// In `kaji server`, once the API is up: the dashboard checks viewers against the server (the
/// admin kubeconfig's URL and CA, no credentials of its own on those requests) and keeps the
/// history from the API server's metrics provider, read in-process
/// (`kaji_apiserver::metrics::round`: the provider's figures, without building, sending and
/// parsing a list of every pod each round, nor reading the store). Never returns (a spoke): a failure
/// costs the history, not the server.
pub async fn run_in_server(
    dashboard: Arc<kaji_dashboard::Dashboard>,
    server: Arc<kaji_apiserver::ApiServer>,
    admin_kubeconfig: PathBuf,
    resolution: std::time::Duration,
) -> Result<()> {
    match kaji_dashboard::standalone::Upstream::from_kubeconfig(&admin_kubeconfig) {
        Ok(api) => {
            dashboard.set_api(api);
            let read = move || {
                let server = server.clone();
                async move {
                    let r = kaji_apiserver::metrics::round(&server).await;
                    kaji_dashboard::history::Reading { nodes: Some(r.nodes), pods: Some(r.pods), window: r.window, error: None }
                }
            };
            // The rounds (and the scrapes the first one starts, unless a metrics request came
            // first) run on a thread of their own: each round's garbage is freed and reused
            // within that thread's allocator arena, not spread over the server's workers'.
            let history = dashboard.history.clone();
            let (_running, stopped) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new().name("dashboard-sampler".into()).spawn(move || {
                let _running = _running;
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt.block_on(kaji_dashboard::history::run(history, read, Some(resolution))),
                    Err(e) => tracing::error!(error = %e, "the dashboard keeps no CPU and memory history"),
                }
            })?;
            let _ = stopped.await;
            tracing::error!("the dashboard's history sampler stopped");
        }
        Err(e) => tracing::error!(error = %e, "the dashboard keeps no CPU and memory history"),
    }
    std::future::pending().await
}

pub async fn run(args: DashboardArgs) -> Result<()> {
    if let Some(listen) = args.listen {
        // $KUBECONFIG as kubectl reads it (the first file of a list), then ~/.kube/config.
        let from_env = std::env::var_os("KUBECONFIG")
            .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()));
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
        let kubeconfig = args
            .kubeconfig
            .or(from_env)
            .or(home)
            .context("give --kubeconfig (no $KUBECONFIG, no $HOME)")?;
        if !listen.ip().is_loopback() {
            eprintln!(
                "Warning: {listen} is not a loopback address: the dashboard is served over plain HTTP, and viewers' tokens cross the network unencrypted"
            );
        }
        let open = args.open;
        return kaji_dashboard::standalone::run(&kubeconfig, listen, |addr| {
            let url = format!("http://{addr}/dashboard/");
            println!("{url}");
            eprintln!("Serving the dashboard for the cluster of {} at {url} (log in with a bearer token: kubectl create token ...)", kubeconfig.display());
            if open {
                open_browser(&url);
            }
        })
        .await;
    }
    let kubeconfig = args
        .kubeconfig
        .unwrap_or_else(|| args.data_dir.join("kubeconfig.yaml"));
    if !kubeconfig.exists() {
        anyhow::bail!(
            "no admin kubeconfig at {} (is `kaji server` running with --data-dir {}? or give --kubeconfig)",
            kubeconfig.display(),
            args.data_dir.display()
        );
    }
    let login = kaji_dashboard::login::login(&kubeconfig, &mut |step| eprintln!("{step}")).await?;
    eprintln!(
        "A login as {}/{} (cluster-admin) valid until {}; open:",
        kaji_dashboard::login::NAMESPACE,
        kaji_dashboard::login::SERVICE_ACCOUNT,
        login.expires
    );
    println!("{}", login.url);
    if args.open {
        open_browser(&login.url);
    }
    Ok(())
}

/// Runs `xdg-open URL` when there is one; says so when there is none.
fn open_browser(url: &str) {
    match std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => eprintln!("Opening it in your browser (xdg-open)"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("xdg-open is not installed: open the URL yourself")
        }
        Err(e) => eprintln!("xdg-open failed: {e}; open the URL yourself"),
    }
}
