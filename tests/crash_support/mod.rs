//! The crash test's tools: a seeded RNG, signed API calls that survive the daemon's death, and
//! the checks that nothing is left on the host (processes, helpers, cgroups, mounts, volumes,
//! runtime dirs) for an instance that is not running.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::Daemon;

/// SplitMix64: small, seeded, the same sequence on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where and how to send signed requests, owned so threads can carry it.
#[derive(Clone)]
pub struct Api {
    endpoint: String,
    host: String,
    key: (String, String),
}

impl Api {
    pub fn of(d: &Daemon) -> Api {
        Api {
            endpoint: d.endpoint(),
            host: format!("127.0.0.1:{}", d.api_port),
            key: d.creds(),
        }
    }

    /// One signed call; `None` when the daemon died before answering.
    pub fn call(&self, body: &str) -> Answer {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let headers = ec2lab::api::sigv4::sign(
            &self.host,
            body.as_bytes(),
            &self.key.0,
            &self.key.1,
            "ap-northeast-2",
            "ec2",
            &ec2lab::api::sigv4::format_amz_date(now),
        );
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let mut req = agent.post(format!("{}/", self.endpoint));
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k, v);
        }
        let mut resp = req.send(body.as_bytes()).ok()?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().ok()?;
        Some((status, text))
    }

    /// Every instance and its state name, from DescribeInstances.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let (status, body) = self
            .call("Action=DescribeInstances&Version=2016-11-15")
            .expect("the daemon answers DescribeInstances");
        assert_eq!(status, 200, "DescribeInstances: {body}");
        let mut out = BTreeMap::new();
        for chunk in body.split("<instanceId>").skip(1) {
            let id = chunk.split('<').next().unwrap().to_string();
            let state = chunk
                .split("<instanceState>")
                .nth(1)
                .and_then(|s| s.split("<name>").nth(1))
                .and_then(|s| s.split('<').next())
                .expect("instanceState follows instanceId")
                .to_string();
            out.insert(id, state);
        }
        out
    }
}

pub fn ids_in(body: &str) -> Vec<String> {
    body.split("<instanceId>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Run,
    Stop,
    Start,
    Terminate,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Run => "RunInstances",
            Action::Stop => "StopInstances",
            Action::Start => "StartInstances",
            Action::Terminate => "TerminateInstances",
        }
    }
    /// The settled state after the call took effect.
    pub fn end_state(self) -> &'static str {
        match self {
            Action::Run | Action::Start => "running",
            Action::Stop => "stopped",
            Action::Terminate => "terminated",
        }
    }
}

/// An answer: (HTTP status, body), or `None` when the daemon died first.
pub type Answer = Option<(u16, String)>;
/// (pid, what) of processes found on the host.
pub type Procs = Vec<(i32, String)>;

/// A call in flight: what it asked, for which instances, and (after the join) its answer.
pub struct Call {
    pub action: Action,
    pub ids: Vec<String>,
    pub thread: JoinHandle<Answer>,
}

pub fn issue(api: &Api, action: Action, ids: Vec<String>, body: String) -> Call {
    let api = api.clone();
    Call {
        action,
        ids,
        thread: std::thread::spawn(move || api.call(&body)),
    }
}

pub fn id_params(ids: &[String]) -> String {
    ids.iter()
        .enumerate()
        .map(|(n, id)| format!("&InstanceId.{}={id}", n + 1))
        .collect()
}

/// The instance of this test whose cgroup a `/proc/<pid>/cgroup` text names (`…/ec2lab/<id>`).
pub fn instance_of_cgroup(text: &str, ours: &BTreeSet<String>) -> Option<String> {
    for path in text.lines().filter_map(|l| l.splitn(3, ':').nth(2)) {
        let segs: Vec<&str> = path.split('/').collect();
        for w in segs.windows(2) {
            if w[0] == "ec2lab" && ours.contains(w[1]) {
                return Some(w[1].to_string());
            }
        }
    }
    None
}

/// (pid, instance) of every host process in one of our instances' cgroups, and every
/// `__launch`/`__enter` helper of ours (named by an instance id in its cmdline or cgroup).
pub fn instance_processes(ours: &BTreeSet<String>) -> (Procs, Procs) {
    let (mut members, mut helpers) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let in_cg = instance_of_cgroup(&cg, ours);
        if let Some(id) = &in_cg {
            members.push((pid, id.clone()));
        }
        if matches!(
            args.get(1).map(String::as_str),
            Some("__launch" | "__enter")
        ) {
            let named = args.iter().find(|a| ours.contains(*a)).cloned();
            if let Some(id) = named.or(in_cg) {
                helpers.push((pid, format!("{id} ({})", args.join(" "))));
            }
        }
    }
    (members, helpers)
}

/// Instance ids with a cgroup directory under any controller's `ec2lab/`.
pub fn cgroups_of(ours: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut parents = vec![Path::new("/sys/fs/cgroup/ec2lab").to_path_buf()];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        parents.extend(rd.flatten().map(|e| e.path().join("ec2lab")));
    }
    for p in parents {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if ours.contains(&id) && e.path().is_dir() {
                out.entry(id).or_default().push(p.display().to_string());
            }
        }
    }
    out
}

/// Mount points under the data dir, but the daemon's own while it runs (`keep_router`): the VPC
/// router's namespace and LXCFS.
pub fn mounts_under(data_dir: &Path, keep_router: bool) -> Vec<String> {
    let router = data_dir.join("vpc-router.netns");
    let lxcfs = data_dir.join("lxcfs");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(data_dir))
        .filter(|m| !(keep_router && (Path::new(m) == router || Path::new(m) == lxcfs)))
        .map(str::to_string)
        .collect()
}

/// Backing files under the data dir of the host's loop devices (a deleted file keeps its
/// path, with " (deleted)" after it).
pub fn loops_under(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(f) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            let f = f.trim_end();
            if Path::new(f).starts_with(data_dir) {
                out.push(f.to_string());
            }
        }
    }
    out
}

pub fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Everything that must hold after a restart (or a graceful stop: `running` then means none).
pub fn check_nothing_left(
    d: &Daemon,
    states: &BTreeMap<String, String>,
    round: usize,
    keep_router: bool,
) {
    let ours: BTreeSet<String> = states.keys().cloned().collect();
    let running = |id: &str| states.get(id).is_some_and(|s| s == "running");
    let (members, helpers) = instance_processes(&ours);
    let orphans: Vec<_> = members.iter().filter(|(_, id)| !running(id)).collect();
    assert!(
        orphans.is_empty(),
        "round {round}: orphaned processes {orphans:?}"
    );
    assert!(
        helpers.is_empty(),
        "round {round}: helpers left {helpers:?}"
    );
    let cgroups = cgroups_of(&ours);
    let stray: Vec<_> = cgroups.iter().filter(|(id, _)| !running(id)).collect();
    assert!(
        stray.is_empty(),
        "round {round}: orphaned cgroups {stray:?}"
    );
    let mounts = mounts_under(&d.data_dir, keep_router);
    assert!(mounts.is_empty(), "round {round}: mounts left {mounts:?}");
    // Loop devices: a running instance's volume, or (while the daemon runs) a spare's.
    for f in loops_under(&d.data_dir) {
        let rel = Path::new(&f).strip_prefix(&d.data_dir).unwrap();
        let mut parts = rel.iter().map(|p| p.to_string_lossy());
        let ok = match (parts.next().as_deref(), parts.next()) {
            (Some("spares"), _) => keep_router,
            (Some("volumes"), Some(id)) => running(&id) && !f.ends_with("(deleted)"),
            _ => false,
        };
        assert!(ok, "round {round}: loop device left on {f}");
    }
    for id in dir_names(&d.data_dir.join("volumes")) {
        let s = states.get(&id).map(String::as_str);
        assert!(
            matches!(s, Some("running" | "stopped")),
            "round {round}: volume of {id} ({s:?}) left"
        );
    }
    for id in dir_names(&d.data_dir.join("run")) {
        assert!(
            running(&id),
            "round {round}: run dir of {id} ({:?}) left",
            states.get(&id)
        );
    }
    for (id, s) in states {
        if s == "running" || s == "stopped" {
            assert!(
                d.data_dir
                    .join("volumes")
                    .join(id)
                    .join("disk.img")
                    .is_file(),
                "round {round}: {id} ({s}) lost its root volume"
            );
        }
        if s == "running" && keep_router {
            assert!(
                cgroups.contains_key(id),
                "round {round}: running {id} has no cgroup"
            );
            assert!(
                members.iter().any(|(_, m)| m == id),
                "round {round}: running {id} has no processes"
            );
        }
    }
}
