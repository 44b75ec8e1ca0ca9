//! Credentials for people, made on the server's machine from its data dir:
//!
//! - `kaji kubeconfig --user NAME [--group G]... [--namespace NS]`: a kubeconfig with a client
//!   certificate signed by the cluster CA (CN=NAME, O=each group), for an admin to hand out;
//!   what it may do is up to RBAC (`kubectl create rolebinding ... --clusterrole=edit --user NAME`).
//! - `kaji token create --user NAME [--group G]... [--ttl 720h]`: a bearer token, added to the
//!   server's token file (`<data-dir>/server/cred/users.csv`, upstream's `--token-auth-file`
//!   format), which the API server re-reads when it changes.

use anyhow::{Context, Result, bail};
use kaji_apiserver::auth::tokenfile;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `kaji kubeconfig` flags.
#[derive(clap::Args)]
pub struct KubeconfigArgs {
    /// The user's name (the certificate's CN).
    #[arg(long)]
    user: String,
    /// A group of the user (the certificate's O); repeatable.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// The context's namespace.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// How long the certificate is valid.
    #[arg(long, default_value = "8760h", value_parser = super::parse_duration)]
    expiration: Duration,
    /// The server's data dir (where the cluster CA is).
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
    /// The API server's URL (default: the one of the admin kubeconfig in the data dir).
    #[arg(long)]
    server: Option<String>,
    /// Write the kubeconfig here (mode 0600) instead of printing it.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

/// `kaji token` subcommands.
#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Make a bearer token for a person and print it.
    Create(TokenCreateArgs),
}

#[derive(clap::Args)]
struct TokenCreateArgs {
    /// The user's name.
    #[arg(long)]
    user: String,
    /// A group of the user; repeatable.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// How long the token is valid (default: until removed from the token file).
    #[arg(long, value_parser = super::parse_duration)]
    ttl: Option<Duration>,
    /// The server's data dir.
    #[arg(long, short = 'd', default_value = "/var/lib/kaji")]
    data_dir: PathBuf,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, contents: &str, append: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// A YAML double-quoted scalar.
fn yaml_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() || s.contains(['\n', '\r', ',']) {
        bail!("{what} {s:?} must not be empty or hold commas or line breaks");
    }
    Ok(())
}

/// The server URL of the admin kubeconfig the server wrote into its data dir.
fn admin_server(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("kubeconfig.yaml")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().trim_matches('"').to_string())
}

pub fn kubeconfig(args: KubeconfigArgs) -> Result<()> {
    use base64::Engine;
    check_name("user", &args.user)?;
    for g in &args.groups {
        check_name("group", g)?;
    }
    let tls = args.data_dir.join("server").join("tls");
    let read = |f: &str| {
        std::fs::read_to_string(tls.join(f)).with_context(|| {
            format!(
                "reading {} (is {} a kaji server's data dir?)",
                tls.join(f).display(),
                args.data_dir.display()
            )
        })
    };
    let ca_cert = read("ca.crt")?;
    let ca_key = read("ca.key")?;
    let (cert, key) = kaji_apiserver::auth::usercert::issue(
        &ca_cert,
        &ca_key,
        &args.user,
        &args.groups,
        SystemTime::now() + args.expiration,
    )?;
    let server = args
        .server
        .or_else(|| admin_server(&args.data_dir))
        .unwrap_or_else(|| "https://127.0.0.1:6443".to_string());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let context = format!("{}@kaji", args.user);
    let namespace = args
        .namespace
        .map(|ns| format!("    namespace: {}\n", yaml_quote(&ns)))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: kaji\ncontexts:\n- context:\n    cluster: kaji\n{namespace}    user: {user}\n  name: {context}\ncurrent-context: {context}\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(&ca_cert),
        server = yaml_quote(&server),
        user = yaml_quote(&args.user),
        context = yaml_quote(&context),
        cert = b64(&cert),
        key = b64(&key),
    );
    match args.output {
        Some(path) => write_private(&path, &text, false),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

pub fn token(args: TokenArgs) -> Result<()> {
    let TokenCommand::Create(args) = args.command;
    check_name("user", &args.user)?;
    for g in &args.groups {
        check_name("group", g)?;
    }
    let path = args.data_dir.join(tokenfile::USERS_FILE);
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let token = random_hex(24)?;
    let u = random_hex(16)?;
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &u[..8],
        &u[8..12],
        &u[12..16],
        &u[16..20],
        &u[20..]
    );
    let mut line = format!(
        "{token},{},{uid},{}",
        tokenfile::csv_quote(&args.user),
        tokenfile::csv_quote(&args.groups.join(","))
    );
    if let Some(ttl) = args.ttl {
        let expires = kaji_apiserver::auth::audit::micro_time(SystemTime::now() + ttl);
        line.push_str(&format!(",expires={expires}"));
    }
    line.push('\n');
    write_private(&path, &line, true)?;
    println!("{token}");
    Ok(())
}
