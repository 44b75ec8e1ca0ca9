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

/// The name the in-server dashboard's sampler acts as, and its RBAC objects.
const SAMPLER_USER: &str = "system:kaji-dashboard";
const SAMPLER_ROLE: &str = "system:kaji-dashboard-metrics";

/// In `kaji server`, once the API is up: the dashboard checks viewers against the server (the
/// admin kubeconfig's URL and CA, no credentials of its own on those requests) and samples the
/// metrics API every `resolution` as `system:kaji-dashboard` (`sampler_kubeconfig`, a client
/// certificate), which a ClusterRole allows to get and list node and pod metrics and nothing
/// else. Never returns (a spoke): a failure costs the history, not the server.
pub async fn run_in_server(
    dashboard: Arc<kaji_dashboard::Dashboard>,
    admin_kubeconfig: PathBuf,
    sampler_kubeconfig: PathBuf,
    resolution: std::time::Duration,
) -> Result<()> {
    if let Err(e) = sample(dashboard, admin_kubeconfig, sampler_kubeconfig, resolution).await {
        tracing::error!(error = %e, "the dashboard keeps no CPU and memory history");
    }
    std::future::pending().await
}

async fn sample(
    dashboard: Arc<kaji_dashboard::Dashboard>,
    admin_kubeconfig: PathBuf,
    sampler_kubeconfig: PathBuf,
    resolution: std::time::Duration,
) -> Result<()> {
    dashboard.set_api(kaji_dashboard::standalone::Upstream::from_kubeconfig(
        &admin_kubeconfig,
    )?);
    let admin = kaji_dashboard::standalone::sampler_client(&admin_kubeconfig).await?;
    let role = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": SAMPLER_ROLE, "labels": {"app.kubernetes.io/managed-by": "kaji-dashboard"}},
        "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["nodes", "pods"], "verbs": ["get", "list"]}]});
    let binding = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": SAMPLER_ROLE, "labels": {"app.kubernetes.io/managed-by": "kaji-dashboard"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SAMPLER_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": SAMPLER_USER}]});
    let pp = kube::api::PatchParams::apply("kaji-dashboard").force();
    let dynamic = |kind: &str, plural: &str| {
        let ar = kube::api::ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        kube::Api::<kube::api::DynamicObject>::all_with(admin.clone(), &ar)
    };
    // Applied until it works (the API server may still be starting its RBAC).
    loop {
        let r = async {
            dynamic("ClusterRole", "clusterroles")
                .patch(SAMPLER_ROLE, &pp, &kube::api::Patch::Apply(&role))
                .await?;
            dynamic("ClusterRoleBinding", "clusterrolebindings")
                .patch(SAMPLER_ROLE, &pp, &kube::api::Patch::Apply(&binding))
                .await
        }
        .await;
        match r {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "the dashboard's metrics role; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
    let client = kaji_dashboard::standalone::sampler_client(&sampler_kubeconfig).await?;
    kaji_dashboard::history::run_sampler(dashboard.history.clone(), client, Some(resolution)).await;
    Ok(())
}

/// The user `run_in_server`'s sampler acts as.
pub fn sampler_user() -> &'static str {
    SAMPLER_USER
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
