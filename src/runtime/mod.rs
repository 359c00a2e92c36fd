//! The runtime: makes the control plane's instances real on this host. It implements
//! [`Host`] for `cloud` and owns, per running instance, its sandbox, its metadata service,
//! its connector (sockets inside its network namespace for the front and the gateway, closed
//! when it stops) and the watcher that notices when the instance ends by itself.
//!
//! At daemon start: first `clean_leftovers` (whatever a crashed daemon left: processes,
//! launchers, cgroups, runtime dirs, half-made spares, volumes of terminated instances, each
//! removal retried); then the lab's VPC router namespace (see `sandbox::vpc`) and one metadata
//! service on 169.254.169.254:80 in it, answering each instance by its source address.
//!
//! Start of an instance: (first boot) claim or make the root volume (a copy of the template
//! image, and SSH host keys) and list the files PID 1 writes into it through
//! `sandbox::guestfs` (never by plain path: the instance's root may have planted symlinks or
//! FIFOs there) — SSH host keys, hostname, hosts, machine-id → the boot
//! context (user data, launch key), kept in the volume dir *outside* the instance and handed to
//! its PID 1 in memory → `sandbox::launch` (its `eth0` is a veth to the router) → the SSH
//! gateway's listener on its public IP → watch PID 1's pidfd.
//!
//! ```text
//! DIR/volumes/<id>/   root volume: disk.img (an 8 GiB ext4 image holding the overlay's upper/
//!                     and work/, mounted only inside the instance; see `sandbox::volume`),
//!                     host_keys/ (the gateway's copy), boot.json (the boot context),
//!                     console.prev (console output across daemon restarts)
//! DIR/run/<id>/       runtime: console.log, init.json, rootfs mount point
//! DIR/vpc-router.netns the VPC router's network namespace (a bind mount; see `sandbox::vpc`)
//! DIR/spares/         volumes with host keys made ahead, each on a loop device, claimed by
//!                     first boots (a rename; see `spare_volumes`)
//! DIR/volume-template.img  the empty 8 GiB ext4 image every new root volume is a copy of
//! ```

mod metadata;
mod spare_volumes;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

pub use metadata::InstanceMetadata;

use crate::cloud::{Cloud, Host, Image, Instance, InstanceState, catalog};
use crate::front::Front;
use crate::gateway::{Admit, Gateway, Route};
use crate::keys::{self, HostKeyType};
use crate::sandbox::volume::Attached;
use crate::sandbox::vpc::Router;
use crate::sandbox::{self, InitExit, LaunchSpec, Limits, Running, VolumeFile};
use crate::userdata::BootContext;
use spare_volumes::SpareVolumes;

/// The metadata service's address inside every instance.
pub const IMDS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The boot context's file in the volume dir (host side; the instance never sees it).
pub const BOOT_CONTEXT: &str = "boot.json";
/// How long an instance's processes get between SIGTERM and SIGKILL when it stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Console output kept for GetConsoleOutput, as on AWS.
pub const CONSOLE_TAIL: u64 = 64 * 1024;

struct Live {
    running: Running,
    /// Where the SSH gateway listens for this instance (its public IP, `--ssh-port`).
    ssh_addr: Option<SocketAddr>,
    /// Set when the host stops it, so the watcher does not report an unexpected exit.
    stopping: Arc<AtomicBool>,
    /// Makes sockets inside its network namespace (front, port forwarding); closed on stop.
    connector: Arc<sandbox::Connector>,
    /// The router side of its veth, where the VPC firewall knows it.
    iface: Option<String>,
}

pub struct Runtime {
    exe: PathBuf,
    data_dir: PathBuf,
    handle: tokio::runtime::Handle,
    cloud: OnceLock<Weak<Cloud>>,
    gateway: OnceLock<(Arc<Gateway>, u16)>,
    router: OnceLock<Router>,
    /// Security groups between instances, in the router (see `vpc`).
    firewall: OnceLock<Arc<crate::vpc::Firewall>>,
    front: OnceLock<Arc<Front>>,
    /// LXCFS: the instances' /proc as their types see it (see `sandbox::procview`).
    proc_view: OnceLock<sandbox::procview::ProcView>,
    /// Volumes made (and attached) ahead of first boots.
    spare_volumes: Arc<SpareVolumes>,
    /// The loop device of a claimed spare, held until its launch has ended.
    claimed_devices: Mutex<HashMap<String, Attached>>,
    /// Launchers made ahead, already in a cgroup (cgroup v1; see `sandbox::spare`).
    launchers: Arc<sandbox::Spares>,
    /// Stops under way (their own threads): shutdown waits for them, or their cgroups would
    /// be left behind.
    stops_in_flight: std::sync::atomic::AtomicUsize,
    live: Mutex<HashMap<String, Live>>,
}

impl Runtime {
    pub fn new(
        exe: PathBuf,
        data_dir: &Path,
        spare_launchers: usize,
        handle: tokio::runtime::Handle,
    ) -> Arc<Runtime> {
        Arc::new(Runtime {
            launchers: sandbox::Spares::new(&exe, data_dir, spare_launchers),
            exe,
            data_dir: data_dir.to_path_buf(),
            handle,
            cloud: OnceLock::new(),
            gateway: OnceLock::new(),
            router: OnceLock::new(),
            firewall: OnceLock::new(),
            front: OnceLock::new(),
            proc_view: OnceLock::new(),
            stops_in_flight: std::sync::atomic::AtomicUsize::new(0),
            spare_volumes: SpareVolumes::new(
                data_dir.join("spares"),
                data_dir.join("volume-template.img"),
            ),
            claimed_devices: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        })
    }

    pub fn attach(&self, cloud: &Arc<Cloud>) {
        let _ = self.cloud.set(Arc::downgrade(cloud));
    }

    /// The SSH gateway that listens on each running instance's public IP at `ssh_port`.
    pub fn set_gateway(&self, gateway: Arc<Gateway>, ssh_port: u16) {
        let _ = self.gateway.set((gateway, ssh_port));
    }

    /// The front listeners (security groups enforced on every public port but SSH's).
    pub fn set_front(&self, front: Arc<Front>) {
        let _ = self.front.set(front);
    }

    fn sync_front(&self, id: &str, connector: &Arc<sandbox::Connector>) {
        if let Some(f) = self.front.get() {
            f.sync(id, connector);
        }
    }

    /// Hands the VPC firewall the running instances and their groups as they are now.
    fn sync_vpc(&self) {
        let (Some(fw), Some(cloud)) = (self.firewall.get(), self.cloud()) else {
            return;
        };
        let live: Vec<(String, String)> = self
            .live()
            .iter()
            .filter_map(|(id, l)| Some((id.clone(), l.iface.clone()?)))
            .collect();
        let mut snap = crate::vpc::Snapshot::default();
        for (id, iface) in live {
            let Ok(inst) = cloud.instance(&id) else {
                continue;
            };
            let Ok(private_ip) = inst.private_ip.parse() else {
                continue;
            };
            for g in cloud.groups_of(&inst) {
                if !snap.groups.iter().any(|x| x.id == g.id) {
                    snap.groups.push(g);
                }
            }
            snap.members.push(crate::vpc::Member {
                private_ip,
                iface,
                groups: inst.groups.iter().map(|g| g.id.clone()).collect(),
            });
        }
        snap.members.sort_by_key(|m| m.private_ip);
        fw.update(snap);
    }

    fn remove_front(&self, id: &str) {
        if let Some(f) = self.front.get() {
            f.remove(id);
        }
    }

    /// Starts the gateway's listener for a booted instance on its public IP.
    fn start_ssh(
        &self,
        inst: &Instance,
        image: &Image,
        running: &Running,
    ) -> Result<Option<SocketAddr>, String> {
        let (Some((gw, port)), Some(ip)) = (self.gateway.get(), inst.public_ip.as_ref()) else {
            return Ok(None);
        };
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("public ip {ip}: {e}"))?;
        let addr = SocketAddr::from((ip, *port));
        let route = Route {
            instance_id: inst.id.clone(),
            init_pid: running.init_pid,
            start_time: running.start_time,
            host_key_dir: self.host_key_dir(&inst.id),
            banner: banner(inst, image),
            // The gateway is the instance's port 22 whatever --ssh-port is: rules for tcp/22 apply.
            admit: self.front.get().map(|f| {
                let (f, id) = (f.clone(), inst.id.clone());
                Admit(Arc::new(move |peer: SocketAddr| f.admit(&id, peer, 22)))
            }),
        };
        self.handle
            .block_on(gw.add(addr, route))
            .map_err(|e| format!("SSH gateway on {addr}: {e}"))?;
        Ok(Some(addr))
    }

    fn stop_ssh(&self, addr: Option<SocketAddr>) {
        if let (Some((gw, _)), Some(addr)) = (self.gateway.get(), addr) {
            self.handle.block_on(gw.remove(addr));
        }
    }

    pub fn volume_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("volumes").join(id)
    }

    /// The empty root volume image new volumes are copied from (see `sandbox::volume`).
    fn volume_template(&self) -> PathBuf {
        self.spare_volumes.template().to_path_buf()
    }

    /// The instance's SSH host keys as the gateway reads them (not inside the instance).
    pub fn host_key_dir(&self, id: &str) -> PathBuf {
        self.volume_dir(id).join("host_keys")
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("run").join(id)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At daemon start, before the network and before anything boots: removes whatever a
    /// previous daemon on this data dir left. In order: the cgroups of its spare launchers;
    /// half-made spare volumes
    /// (`spares/*.tmp`); for every instance of this data dir — recorded ones and those with a
    /// runtime dir or a volume (records are written before a launch, so no instance of ours can
    /// lack all three) — its console output is saved into its volume, then its launchers,
    /// processes, cgroup and runtime dir go; last, the volumes of instances that are terminated
    /// or have no record. Never another lab's instances on the same host. Each removal is
    /// retried (bounded, with a backoff) and what still fails is logged; the next start tries
    /// again.
    pub fn clean_leftovers(&self, known: &[Instance]) {
        self.launchers.clean_stale();
        if let Ok(entries) = fs::read_dir(self.spare_volumes.dir()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = retry_removal(&e.path(), || remove_tree(&e.path()));
                }
            }
        }
        let mut ids: Vec<String> = known.iter().map(|i| i.id.clone()).collect();
        for dir in ["run", "volumes"] {
            for id in instance_dirs(&self.data_dir.join(dir)) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        for id in &ids {
            self.save_console(id);
            let run_dir = self.run_dir(id);
            let _ = retry_removal(&run_dir, || sandbox::cleanup_stale(id, &run_dir));
        }
        for id in &ids {
            let state = known.iter().find(|i| &i.id == id).map(|i| i.state);
            if matches!(state, None | Some(InstanceState::Terminated)) {
                let volume = self.volume_dir(id);
                let _ = retry_removal(&volume, || remove_tree(&volume));
            }
        }
    }

    /// Moves the console log out of the runtime dir (which cleanup removes) into the volume's
    /// `console.prev` (the last [`CONSOLE_TAIL`] bytes), replaced whole by a rename so a crash
    /// leaves either the old or the new one; then the log goes, so a retry never adds it twice.
    fn save_console(&self, id: &str) {
        let log = self.run_dir(id).join("console.log");
        let keep = self.volume_dir(id).join("console.prev");
        if !log.exists() || !self.volume_dir(id).is_dir() {
            return;
        }
        let mut all = fs::read(&keep).unwrap_or_default();
        all.extend(fs::read(&log).unwrap_or_default());
        let start = all.len().saturating_sub(CONSOLE_TAIL as usize);
        let tmp = keep.with_extension("prev.tmp");
        let saved = fs::write(&tmp, &all[start..]).and_then(|()| fs::rename(&tmp, &keep));
        match saved {
            Ok(()) => {
                let _ = fs::remove_file(&log);
            }
            Err(e) => {
                tracing::error!(instance = %id, path = %keep.display(), error = %e, "cannot keep the console output")
            }
        }
    }

    /// Stops every running instance (daemon shutdown), in parallel. Records stay as they are:
    /// the next start boots them again.
    pub fn stop_all(self: &Arc<Self>) {
        let ids: Vec<String> = self.live().keys().cloned().collect();
        std::thread::scope(|s| {
            for id in &ids {
                s.spawn(|| Host::stop(self, id));
            }
        });
        // Stops and terminations that were already running on their own threads.
        let deadline = Instant::now() + SHUTDOWN_GRACE + Duration::from_secs(10);
        while self.stops_in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// First boot: the instance's own files in its upper layer.
    /// Returns the files PID 1 writes into the new volume (through `guestfs`): a first boot's
    /// hostname, hosts and machine-id; none on later boots.
    fn prepare_volume(&self, inst: &Instance) -> Result<Vec<VolumeFile>, String> {
        let marker = self.volume_dir(&inst.id).join(".prepared");
        if marker.exists() {
            return Ok(Vec::new());
        }
        // No marker: no boot ever ran on it. What a launch killed before it wrote the marker
        // left here (a claimed spare, a half-copied image) holds nothing of the user's and
        // would make the claim and the copy below fail: start again from nothing.
        let volume = self.volume_dir(&inst.id);
        if volume.exists() {
            remove_tree(&volume)
                .map_err(|e| format!("remove the half-made volume {}: {e}", volume.display()))?;
        }
        // The host keys and directories come from a spare volume made ahead of time (creating
        // a dozen files costs milliseconds on a launch); without one, they are made here.
        match self.spare_volumes.claim(&self.volume_dir(&inst.id)) {
            Some(Some(device)) => {
                self.claimed_devices
                    .lock()
                    .unwrap()
                    .insert(inst.id.clone(), device);
            }
            Some(None) => {}
            None => make_volume(&self.volume_dir(&inst.id), &self.volume_template())?,
        }
        let region = self
            .cloud()
            .map(|c| c.cfg.region.clone())
            .unwrap_or_default();
        let machine_id: String = inst
            .id
            .trim_start_matches("i-")
            .chars()
            .chain("0123456789abcdef".chars().cycle())
            .take(32)
            .collect();
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{} {}\n",
            inst.private_ip,
            inst.private_dns(&region),
            inst.hostname()
        );
        write_file(&marker, b"", 0o600)?;
        let keys = host_key_files(&self.volume_dir(&inst.id))?;
        Ok([
            ("/etc/hostname", format!("{}\n", inst.hostname()), 0o644),
            ("/etc/hosts", hosts, 0o644),
            ("/etc/machine-id", format!("{machine_id}\n"), 0o444),
        ]
        .into_iter()
        .map(|(path, content, mode)| VolumeFile {
            path: path.into(),
            content,
            mode,
        })
        .chain(keys)
        .collect())
    }

    /// The boot context PID 1 gets in memory; also kept in the volume dir (host side) for
    /// `ec2lab exec`'s default user.
    fn boot_context(&self, inst: &Instance, image: &Image) -> Result<String, String> {
        let ctx = BootContext {
            instance_id: inst.id.clone(),
            default_user: image.default_user.clone(),
            public_keys: inst.public_key.iter().cloned().collect(),
            user_data: inst.user_data_bytes(),
            host_key_dir: PathBuf::from("/etc/ssh"),
            hostname: inst.hostname(),
            cloud_name: "ec2lab".into(),
        };
        let json = serde_json::to_string(&ctx).map_err(|e| e.to_string())?;
        // Rewritten from the record at every boot, so no fsync (it cost 2 ms of each launch).
        write_file(
            &self.volume_dir(&inst.id).join(BOOT_CONTEXT),
            json.as_bytes(),
            0o600,
        )?;
        Ok(json)
    }

    fn spec(
        &self,
        inst: &Instance,
        image: &Image,
        boot: String,
        volume_files: Vec<VolumeFile>,
    ) -> LaunchSpec {
        let t = catalog::instance_type(&inst.instance_type)
            .copied()
            .unwrap_or(catalog::INSTANCE_TYPES[1]);
        let private: Ipv4Addr = inst
            .private_ip
            .parse()
            .unwrap_or(Ipv4Addr::new(172, 31, 0, 4));
        LaunchSpec {
            instance_id: inst.id.clone(),
            lower_dirs: vec![image.rootfs.clone()],
            ro_binds: image
                .host_binds
                .iter()
                .map(|p| (p.clone(), p.clone()))
                .collect(),
            volume_dir: self.volume_dir(&inst.id),
            run_dir: self.run_dir(&inst.id),
            hostname: inst.hostname(),
            lo_addrs: Vec::new(),
            vpc: self.router.get().map(|r| sandbox::vpc::VpcLink {
                router_netns: r.path.clone(),
                address: private,
                peer_name: sandbox::vpc::peer_name(),
                gateway: sandbox::vpc::gateway_of(private),
            }),
            limits: Limits {
                memory_bytes: t.memory_mib * 1024 * 1024,
                cpu_millicores: t.vcpus * 1000,
                pids_max: 512 + 512 * t.vcpus,
            },
            init_argv: vec![
                self.exe.display().to_string(),
                INIT_ARG.to_string(),
                inst.id.clone(),
            ],
            init_payload: Some(boot),
            user_namespace: true,
            volume_files,
            volume_loop: None,
            proc_view: self.proc_view.get().map(|v| v.proc_dir()),
            tools_exe: Some(self.exe.clone()),
        }
    }

    fn cloud(&self) -> Option<Arc<Cloud>> {
        self.cloud.get().and_then(Weak::upgrade)
    }

    /// Creates (or reuses) the lab's VPC router namespace and serves the metadata service for
    /// every instance on 169.254.169.254:80 there. Called once at daemon start.
    pub fn start_network(self: &Arc<Self>) -> Result<(), String> {
        let router = Router::open_or_create(&self.data_dir.join("vpc-router.netns"))
            .map_err(|e| format!("cannot create the VPC router namespace: {e}"))?;
        let std_listener = router
            .bind(SocketAddr::from((IMDS_ADDR, 80)))
            .map_err(|e| format!("cannot listen on {IMDS_ADDR}:80 in the VPC router: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let _guard = self.handle.enter();
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
        let resolver = Arc::new(ByPrivateIp {
            cloud: self.cloud.get().cloned().unwrap_or_default(),
        });
        self.handle.spawn(async move {
            if let Err(e) =
                crate::imds::serve_shared(listener, resolver, std::future::pending()).await
            {
                tracing::error!(error = %e, "metadata service ended");
            }
        });
        let firewall = crate::vpc::Firewall::start(router.path.clone());
        let _ = self.firewall.set(firewall);
        let _ = self.router.set(router);
        self.sync_vpc();
        if let Some(view) = sandbox::procview::ProcView::start(&self.data_dir) {
            let _ = self.proc_view.set(view);
        }
        self.spare_volumes.refill(make_volume);
        self.launchers.refill();
        Ok(())
    }

    /// Removes the router namespace (daemon shutdown, after `stop_all`).
    pub fn stop_network(&self) {
        self.launchers.drain();
        if let Some(f) = self.firewall.get() {
            f.stop();
        }
        if let Some(r) = self.router.get() {
            r.remove();
        }
        if let Some(v) = self.proc_view.get() {
            v.stop();
        }
    }

    /// Watches PID 1: when it ends without the host asking, tell the control plane.
    fn watch(self: &Arc<Self>, running: Running, stopping: Arc<AtomicBool>) {
        let me = self.clone();
        let Ok(pidfd) = sandbox::open_pidfd(&running) else {
            return;
        };
        self.handle.spawn(async move {
            // SAFETY: the AsyncFd owns the pidfd; `as_raw_fd` returns that same descriptor for
            // its whole life, and nothing else closes it.
            let Ok(afd) = (unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    pidfd,
                    tokio::io::Interest::READABLE,
                )
            }) else {
                return;
            };
            let _ = afd.readable().await;
            if stopping.load(Ordering::SeqCst) {
                return; // the host's own stop reaps it
            }
            let exit = tokio::task::spawn_blocking({
                let running = running.clone();
                move || sandbox::try_reap(&running).ok().flatten()
            })
            .await
            .ok()
            .flatten();
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let id = running.instance_id.clone();
            tracing::info!(instance = %id, ?exit, "instance init ended by itself");
            let _ = tokio::task::spawn_blocking(move || me.on_exit(&id, exit)).await;
        });
    }

    /// PID 1 ended by itself. The control plane cleans up the sandbox (through `Host::stop`,
    /// under the instance's lifecycle lock, so a stop or terminate under way never deletes the
    /// volume while the sandbox still goes) and decides what comes next.
    fn on_exit(self: &Arc<Self>, id: &str, exit: Option<InitExit>) {
        let Some(cloud) = self.cloud() else {
            Host::stop(self, id);
            return;
        };
        match exit {
            // A reboot from inside: boot again from the same volume.
            Some(InitExit::Reboot) => cloud.instance_rebooted(id),
            Some(InitExit::Poweroff) => cloud.instance_exited(id, true),
            _ => cloud.instance_exited(id, false),
        }
    }
}

/// The metadata service's way from a client address to its instance: the running instance
/// with that private IP (the source address of everything an instance sends to the router).
struct ByPrivateIp {
    cloud: Weak<Cloud>,
}

impl crate::imds::Resolver for ByPrivateIp {
    fn resolve(&self, peer: std::net::IpAddr) -> Option<Arc<dyn crate::imds::MetadataSource>> {
        let cloud = self.cloud.upgrade()?;
        let ip = peer.to_string();
        let id = cloud
            .instances_in(&[InstanceState::Running, InstanceState::Pending])
            .into_iter()
            .find(|i| i.private_ip == ip)?
            .id;
        Some(Arc::new(InstanceMetadata {
            cloud: Arc::downgrade(&cloud),
            instance_id: id,
        }))
    }
}

/// argv[1] of the instance's PID 1 (dispatched in-process by the launcher).
pub const INIT_ARG: &str = "__init";

impl Host for Arc<Runtime> {
    fn start(&self, inst: &Instance, image: &Image) -> Result<(), String> {
        if self.live().contains_key(&inst.id) {
            return Ok(());
        }
        let t0 = Instant::now();
        let first_boot = !self.volume_dir(&inst.id).join(".prepared").exists();
        let mut iface = None;
        let result = (|| {
            let t = Instant::now();
            let files = self.prepare_volume(inst)?;
            // A claimed spare's loop device, held until the launch has ended, however it ends.
            let device = self.claimed_devices.lock().unwrap().remove(&inst.id);
            let prep = t.elapsed().as_secs_f64() * 1000.0;
            let boot = self.boot_context(inst, image)?;
            tracing::debug!(instance = %inst.id, prepare_ms = prep, boot_ctx_ms = t.elapsed().as_secs_f64() * 1000.0 - prep, "volume ready");
            let t = Instant::now();
            let mut spec = self.spec(inst, image, boot, files);
            spec.volume_loop = device.as_ref().map(|d| d.minor);
            iface = spec.vpc.as_ref().map(|v| v.peer_name.clone());
            let r = sandbox::launch_with(&self.exe, &spec, self.launchers.take())
                .map_err(|e| e.to_string());
            drop(device);
            self.launchers.refill();
            tracing::debug!(instance = %inst.id, ms = t.elapsed().as_secs_f64() * 1000.0, "sandbox launched");
            r
        })();
        let running = match result {
            Ok(r) => r,
            Err(e) => {
                if first_boot {
                    let _ = fs::remove_dir_all(self.volume_dir(&inst.id));
                }
                return Err(e);
            }
        };
        let t_ssh = Instant::now();
        // A host service on the same port (an sshd on 0.0.0.0:22) blocks the gateway: the
        // instance still runs (exec, IMDS, front ports); the daemon warned at start-up.
        let ssh_addr = self.start_ssh(inst, image, &running).unwrap_or_else(|e| {
            tracing::error!(instance = %inst.id, error = %e, "no SSH for this instance");
            None
        });
        let stopping = Arc::new(AtomicBool::new(false));
        // The gateway's route got the same one (one per PID 1): a new boot, a new namespace.
        let connector = sandbox::Connector::of(running.init_pid, running.start_time);
        self.live().insert(
            inst.id.clone(),
            Live {
                running: running.clone(),
                ssh_addr,
                stopping: stopping.clone(),
                connector: connector.clone(),
                iface,
            },
        );
        self.sync_vpc();
        let ssh_ms = t_ssh.elapsed().as_secs_f64() * 1000.0;
        if first_boot {
            self.spare_volumes.refill(make_volume);
        }
        self.sync_front(&inst.id, &connector);
        self.watch(running, stopping);
        tracing::info!(instance = %inst.id, ms = t0.elapsed().as_secs_f64() * 1000.0, ssh_ms, "instance booted");
        Ok(())
    }

    fn stop(&self, instance_id: &str) {
        // Counted before the instance leaves the live map, so shutdown never misses it.
        self.stops_in_flight.fetch_add(1, Ordering::SeqCst);
        let live = self.live().remove(instance_id);
        let Some(l) = live else {
            self.stops_in_flight.fetch_sub(1, Ordering::SeqCst);
            return;
        };
        l.stopping.store(true, Ordering::SeqCst);
        self.sync_vpc();
        self.stop_ssh(l.ssh_addr);
        self.remove_front(instance_id);
        l.connector.close();
        if let Err(e) = sandbox::stop(&l.running, SHUTDOWN_GRACE + Duration::from_secs(3)) {
            tracing::error!(instance = %instance_id, error = %e, "stop did not clean up fully");
        }
        self.stops_in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Deletes the root volume and runtime dir, each retried (a file can still be closing);
    /// what cannot be deleted is logged and removed at the next start (`clean_leftovers`).
    fn destroy(&self, instance_id: &str) {
        for dir in [self.volume_dir(instance_id), self.run_dir(instance_id)] {
            let _ = retry_removal(&dir, || remove_tree(&dir));
        }
    }

    fn console(&self, instance_id: &str) -> Vec<u8> {
        let mut out =
            fs::read(self.volume_dir(instance_id).join("console.prev")).unwrap_or_default();
        out.extend(tail(
            &self.run_dir(instance_id).join("console.log"),
            CONSOLE_TAIL,
        ));
        let start = out.len().saturating_sub(CONSOLE_TAIL as usize);
        out.split_off(start)
    }

    fn public_ip_changed(&self, inst: &Instance) {
        let (old, running, connector) = {
            let live = self.live();
            match live.get(&inst.id) {
                Some(l) => (l.ssh_addr, l.running.clone(), l.connector.clone()),
                None => return,
            }
        };
        self.stop_ssh(old);
        let image = self.cloud().and_then(|c| c.image(&inst.image_id).ok());
        let new = match image {
            Some(img) => self.start_ssh(inst, &img, &running).unwrap_or_else(|e| {
                tracing::error!(instance = %inst.id, error = %e, "cannot move the SSH gateway to the new address");
                None
            }),
            None => None,
        };
        if let Some(l) = self.live().get_mut(&inst.id) {
            l.ssh_addr = new;
        }
        self.sync_front(&inst.id, &connector);
    }

    fn groups_changed(&self) {
        let live: Vec<(String, Arc<sandbox::Connector>)> = self
            .live()
            .iter()
            .map(|(id, l)| (id.clone(), l.connector.clone()))
            .collect();
        for (id, connector) in live {
            self.sync_front(&id, &connector);
        }
        self.sync_vpc();
    }
}

/// Makes a new root volume: its image (a copy of the data dir's template, see
/// `sandbox::volume`) and its SSH host keys in `host_keys/`, outside the instance's reach,
/// which the SSH gateway presents; PID 1 copies them into the instance's `/etc/ssh` at its
/// first boot (`.pub` files without a comment, so the console shows `root@<hostname>`).
fn make_volume(volume: &Path, template: &Path) -> Result<(), String> {
    let kept = volume.join("host_keys");
    mkdirs(&kept, 0o700)?;
    for kind in [HostKeyType::Ed25519, HostKeyType::EcdsaP256] {
        let (private, public) = keys::generate_host_key(kind);
        let name = kind.file_name();
        write_file(&kept.join(name), private.as_bytes(), 0o600)?;
        write_file(
            &kept.join(format!("{name}.pub")),
            format!("{public}\n").as_bytes(),
            0o644,
        )?;
    }
    sandbox::volume::make_template(template, sandbox::volume::DEFAULT_BYTES)
        .and_then(|()| sandbox::volume::create(volume, template))
        .map_err(|e| format!("make the root volume {}: {e}", volume.display()))
}

/// The volume's host keys as first-boot files for the instance's `/etc/ssh`.
fn host_key_files(volume: &Path) -> Result<Vec<VolumeFile>, String> {
    let kept = volume.join("host_keys");
    let mut files = Vec::new();
    for kind in [HostKeyType::Ed25519, HostKeyType::EcdsaP256] {
        for (name, mode) in [
            (kind.file_name().to_string(), 0o600),
            (format!("{}.pub", kind.file_name()), 0o644),
        ] {
            let content = fs::read_to_string(kept.join(&name))
                .map_err(|e| format!("read {}: {e}", kept.join(&name).display()))?;
            files.push(VolumeFile {
                path: format!("/etc/ssh/{name}"),
                content,
                mode,
            });
        }
    }
    Ok(files)
}

/// The login banner: which instance this is, as a learner wants to see it.
fn banner(inst: &Instance, image: &Image) -> String {
    format!(
        "\n       __|  __|_  )\n       _|  (     /    ec2lab: {name}\n      ___|\\___|___|\n\n  instance {id} ({itype}) in {zone}\n  AMI {ami} ({ami_name}), private IP {ip}\n\n",
        name = inst.name_tag().unwrap_or("an EC2 instance in your lab"),
        id = inst.id,
        itype = inst.instance_type,
        zone = inst.zone,
        ami = image.id,
        ami_name = image.name,
        ip = inst.private_ip,
    )
}

fn tail(path: &Path, n: u64) -> Vec<u8> {
    let Ok(mut f) = fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(n)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    buf
}

fn mkdirs(p: &Path, mode: u32) -> Result<(), String> {
    fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

fn write_file(p: &Path, content: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(p)
        .map_err(|e| format!("write {}: {e}", p.display()))?;
    f.write_all(content)
        .map_err(|e| format!("write {}: {e}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

/// Attempts of a removal before it is left for the next start, and the first pause between
/// two (doubled each time: 20 + 40 + 80 + 160 ms at most).
const REMOVAL_ATTEMPTS: u32 = 5;
const REMOVAL_BACKOFF: Duration = Duration::from_millis(20);

/// Runs `remove` until it succeeds, at most [`REMOVAL_ATTEMPTS`] times with a doubling backoff.
/// Every failure is logged with `path`; the last one as an error (it is then left for the next
/// start, never silently).
fn retry_removal<E: std::fmt::Display>(
    path: &Path,
    mut remove: impl FnMut() -> Result<(), E>,
) -> Result<(), E> {
    let mut pause = REMOVAL_BACKOFF;
    for attempt in 1.. {
        match remove() {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= REMOVAL_ATTEMPTS => {
                tracing::error!(path = %path.display(), error = %e, attempt, "cannot remove; the next start tries again");
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, attempt, "cannot remove yet; retrying");
                std::thread::sleep(pause);
                pause *= 2;
            }
        }
    }
    unreachable!("the loop returns")
}

/// Removes a directory tree; one that is already gone is fine.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Instance ids that have a directory in `dir` (`DIR/run` or `DIR/volumes`).
fn instance_dirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| crate::cloud::instances::check_id(id).is_ok())
        .collect()
}

/// Body of the instance's PID 1, called in-process by the launcher with `init_argv`
/// (`[exe, "__init", <instance id>]`) and the boot context JSON as the payload.
pub fn init_entry(argv: &[String], payload: Option<&str>) -> ! {
    let id = argv.get(2).cloned().unwrap_or_default();
    let ctx = payload.map(serde_json::from_str::<BootContext>);
    let cfg = sandbox::InitConfig {
        instance_id: id,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    sandbox::init_main(cfg, move || {
        let mut started = false;
        let mut services = || {
            started = true;
            crate::initsys::boot_units()
        };
        match ctx {
            Some(Ok(ctx)) => {
                if let Err(e) = crate::userdata::boot(&ctx, &mut services) {
                    println!("ec2lab-init: user data: {e}");
                }
            }
            Some(Err(e)) => println!("ec2lab-init: the boot context is not valid: {e}"),
            None => println!("ec2lab-init: no boot context was handed to init"),
        }
        // User data that failed before its final stage still gets the enabled units.
        if !started {
            for l in crate::initsys::boot_units() {
                println!("{l}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_failing_removal_is_retried_until_it_succeeds() {
        let calls = Cell::new(0);
        let r = retry_removal(Path::new("/x"), || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(std::io::Error::from_raw_os_error(libc::ENOTEMPTY))
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok());
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_removal_that_keeps_failing_is_bounded_and_reported() {
        let calls = Cell::new(0);
        let r = retry_removal(Path::new("/x"), || {
            calls.set(calls.get() + 1);
            Err(std::io::Error::from_raw_os_error(libc::EBUSY))
        });
        assert!(r.is_err());
        assert_eq!(calls.get(), REMOVAL_ATTEMPTS);
    }

    #[test]
    fn remove_tree_accepts_a_missing_dir() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("v/upper/etc")).unwrap();
        fs::write(d.path().join("v/upper/etc/x"), b"x").unwrap();
        remove_tree(&d.path().join("v")).unwrap();
        assert!(!d.path().join("v").exists());
        remove_tree(&d.path().join("v")).unwrap();
    }

    #[test]
    fn instance_dirs_lists_only_instance_ids() {
        let d = tempfile::tempdir().unwrap();
        for n in ["i-0123456789abcdef0", "spare-1", "i-zz"] {
            fs::create_dir(d.path().join(n)).unwrap();
        }
        assert_eq!(instance_dirs(d.path()), vec!["i-0123456789abcdef0"]);
        assert!(instance_dirs(&d.path().join("missing")).is_empty());
    }
}
