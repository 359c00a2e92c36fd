//! `ec2lab serve`: the daemon in the foreground.
//!
//! Start-up order: check root → raise the open-files limit (soft to hard, before any socket is
//! opened) → check the flags → create the data dir (0700) and take its lock
//! (one daemon per data dir) → load or make the lab credentials → open the store and the control
//! plane → build the default AMI → clean up what a previous daemon left (before the network
//! starts) → start the network and boot again the instances recorded as running → bind the API → publish `daemon.json` and the AWS profile
//! files → serve until SIGINT or SIGTERM, then finish the requests in flight, stop the
//! instances (their records stay `running`: the next start boots them) and exit.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::Ipv4Net;

use crate::api::{self, ApiState};
use crate::cloud::{Cloud, CloudConfig, InstanceState};
use crate::datadir::{DaemonInfo, DataDir};
use crate::runtime::Runtime;
use crate::store::Store;

/// The account id the lab reports as the owner of everything.
pub const ACCOUNT_ID: &str = "123456789012";

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where the daemon keeps its state, credentials and instance volumes.
    #[arg(long, default_value = crate::datadir::DEFAULT_DIR, env = "EC2LAB_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the EC2 API (HTTP).
    #[arg(long, default_value = "127.0.0.1:8773")]
    pub api_addr: SocketAddr,
    /// Pool of public and Elastic IPs; must lie inside 127.0.0.0/8.
    #[arg(long, default_value = "127.100.0.0/16")]
    pub public_cidr: Ipv4Net,
    /// The SSH gateway's port on every public IP.
    #[arg(long, default_value_t = 22)]
    pub ssh_port: u16,
    /// The lab's region; its zones are <region>a … <region>d.
    #[arg(long, default_value = "ap-northeast-2")]
    pub region: String,
    /// Most API connections open at once; when full, the oldest idle one is closed.
    #[arg(long, default_value_t = 512)]
    pub api_max_connections: usize,
    /// Seconds a client has to send a request's head (request line and headers).
    #[arg(long, default_value_t = 10)]
    pub api_header_timeout: u64,
    /// Seconds a client has to send a request's body, from the end of its head.
    #[arg(long, default_value_t = 30)]
    pub api_body_timeout: u64,
    /// Seconds an API connection may stay idle between requests.
    #[arg(long, default_value_t = 60)]
    pub api_idle_timeout: u64,
    /// Launchers kept ready in a cgroup of their own (cgroup v1 hosts; 0 = none): a launch then
    /// skips the kernel's wait for moving a process into a cgroup.
    #[arg(long, default_value_t = crate::sandbox::SPARES, value_parser = clap::value_parser!(u8).range(0..=16))]
    pub spare_launchers: u8,
    #[command(flatten)]
    pub limits: crate::cloud::Limits,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "ec2lab serve needs root (it creates namespaces, mounts and cgroups): run it with sudo"
        );
    }
    raise_nofile_limit();
    let loopback: Ipv4Net = "127.0.0.0/8".parse().expect("valid cidr");
    if !loopback.contains(&args.public_cidr) {
        bail!(
            "--public-cidr {} is not inside 127.0.0.0/8",
            args.public_cidr
        );
    }
    if !valid_region(&args.region) {
        bail!(
            "--region '{}' does not look like an AWS region (e.g. ap-northeast-2)",
            args.region
        );
    }
    let dd = DataDir::new(&args.data_dir);
    dd.create()?;
    let _lock = lock(&dd)?;
    let creds = dd.credentials_or_create()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ec2lab")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.api_addr)
            .await
            .with_context(|| format!("cannot listen on --api-addr {}", args.api_addr))?;
        let addr = listener.local_addr()?;
        let endpoint = format!("http://{addr}");
        let store = Store::open(&dd.db_path())?;
        let cfg = CloudConfig {
            region: args.region.clone(),
            account_id: ACCOUNT_ID.to_string(),
            endpoint: endpoint.clone(),
            public_cidr: args.public_cidr,
            limits: args.limits.clone(),
        };
        let cloud = Arc::new(Cloud::open(cfg, store).map_err(|e| anyhow::anyhow!("{e}"))?);
        // The built-in AMI, made without any download on first start.
        let ami = crate::ami::build_default(&dd.root).context("cannot build the default AMI lab-linux")?;
        cloud.ensure_builtin_image(&ami).map_err(|e| anyhow::anyhow!("{e}"))?;
        // The runtime that makes instances real; then bring back what was running before.
        let runtime = Runtime::new(
            PathBuf::from("/proc/self/exe"),
            &dd.root,
            usize::from(args.spare_launchers),
            tokio::runtime::Handle::current(),
        );
        runtime.attach(&cloud);
        runtime.set_front(crate::front::Front::new(
            tokio::runtime::Handle::current(),
            Arc::downgrade(&cloud),
            args.ssh_port,
        ));
        runtime.set_gateway(crate::gateway::Gateway::new(PathBuf::from("/proc/self/exe")), args.ssh_port);
        cloud.set_host(Arc::new(runtime.clone()));
        // What a crash left goes before the network starts (it refills the spare volumes, whose
        // half-made ones are among the leftovers); then the recorded instances boot again.
        {
            let (cloud, runtime) = (cloud.clone(), runtime.clone());
            tokio::task::spawn_blocking(move || runtime.clean_leftovers(&cloud.instances_in(&InstanceState::ALL))).await?;
        }
        runtime.start_network().map_err(|e| anyhow::anyhow!(e))?;
        warn_if_ssh_port_taken(&args);
        {
            let cloud = cloud.clone();
            tokio::task::spawn_blocking(move || cloud.reconcile()).await?;
        }
        let info = DaemonInfo {
            endpoint: endpoint.clone(),
            region: args.region.clone(),
            public_cidr: args.public_cidr.to_string(),
            ssh_port: args.ssh_port,
            pid: std::process::id(),
        };
        dd.publish(&info, &creds)?;
        tracing::info!(%endpoint, region = %args.region, data_dir = %dd.root.display(), "ec2lab is serving");
        eprintln!(
            "ec2lab: EC2 API on {endpoint} (region {}); point the aws CLI at it with: eval \"$(ec2lab env{})\"",
            args.region,
            if args.data_dir.as_os_str() == crate::datadir::DEFAULT_DIR {
                String::new()
            } else {
                format!(" --data-dir {}", args.data_dir.display())
            }
        );
        let state = ApiState::new(cloud.clone(), creds);
        let server = api::server::ServerConfig {
            max_connections: args.api_max_connections,
            header_timeout: Duration::from_secs(args.api_header_timeout.max(1)),
            body_timeout: Duration::from_secs(args.api_body_timeout.max(1)),
            idle_timeout: Duration::from_secs(args.api_idle_timeout.max(1)),
        };
        api::server::serve(listener, state, server, shutdown_signal()).await;
        tracing::info!("stopping instances (they boot again at the next start)");
        tokio::task::spawn_blocking(move || {
            runtime.stop_all();
            runtime.stop_network();
        })
        .await?;
        tracing::info!("ec2lab stopped");
        anyhow::Ok(())
    })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: every API connection, SSH session and
/// front listener is a descriptor, and the default soft limit (1024) is far below what a lab
/// under load holds. Failure is only logged: the daemon still works with fewer.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the rlimit struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            eprintln!(
                "ec2lab: warning: cannot raise the open-files limit to {}: {}",
                lim.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The gateway listens on each public IP at --ssh-port; a host service bound to 0.0.0.0 on that
/// port (a local sshd on 22) makes that impossible. Says so once, with the way out.
fn warn_if_ssh_port_taken(args: &ServeArgs) {
    let probe = std::net::SocketAddr::from((args.public_cidr.broadcast(), args.ssh_port));
    if let Err(e) = std::net::TcpListener::bind(probe)
        && e.kind() == std::io::ErrorKind::AddrInUse
    {
        tracing::warn!(
            port = args.ssh_port,
            "SSH port taken on the public addresses"
        );
        eprintln!(
            "ec2lab: warning: port {} is taken on 127.x addresses (is an sshd listening on 0.0.0.0:{}?): SSH to instances will not work; restart with --ssh-port 2222",
            args.ssh_port, args.ssh_port
        );
    }
}

fn valid_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Holds an exclusive lock on `DIR/daemon.lock` for the life of the daemon.
fn lock(dd: &DataDir) -> anyhow::Result<std::fs::File> {
    let path = dd.path("daemon.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "another ec2lab daemon is already using {}",
            dd.root.display()
        );
    }
    Ok(f)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn regions() {
        assert!(super::valid_region("ap-northeast-2"));
        assert!(super::valid_region("us-gov-west-1"));
        assert!(!super::valid_region("seoul"));
        assert!(!super::valid_region("AP-northeast-2"));
    }
}
