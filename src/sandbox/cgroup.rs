//! Cgroups for instances, v1 and v2, detected at run time.
//!
//! Layout: a parent cgroup `ec2lab` at the **root of each hierarchy** with one child per
//! instance id (`/sys/fs/cgroup/memory/ec2lab/i-…` on v1, `/sys/fs/cgroup/ec2lab/i-…` on v2).
//! Why the root and not the daemon's own cgroup: the daemon's cgroup is not stable (a
//! supervisor or a test harness may start every process in a fresh, short-lived cgroup — on
//! this machine each command runs under `memory:/process_api/<random>`), and after a crash the
//! next daemon must find every instance's cgroup at a fixed place (`cleanup_stale`,
//! `list_stale_cgroups`). On v2 the root is also the one cgroup exempt from the
//! "no internal processes" rule, so enabling controllers for `ec2lab` always works there.
//!
//! Order of operations (the plan is pure data so it is unit-tested for v1 and v2):
//! 1. v2 only: enable `cpu memory pids` in the root's and in `ec2lab`'s `cgroup.subtree_control`
//! 2. mkdir `ec2lab` (tolerates EEXIST), mkdir `ec2lab/<id>` (an existing empty one is reused)
//! 3. write limits (memory, cpu quota, pids) and, v1, the device allow-list (`ALLOWED_DEVICES`)
//! 4. the launcher writes its own pid to every `cgroup.procs`, so PID 1 is born inside
//!
//! Teardown: kill everything (v2 `cgroup.kill`; else freeze, SIGKILL each pid, thaw, repeat
//! until empty), then rmdir (retrying while exiting tasks leave).

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::spec::Limits;
use super::{SandboxError, sys};

pub(crate) const PARENT: &str = "ec2lab";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// The device nodes an instance may open or create (v1 `devices.allow` rules): the standard
/// nodes its /dev holds (null zero full random urandom tty ptmx) and its own ptys. Everything
/// else — the host's disks, kvm, kmsg, mem, consoles — is denied, whatever node the instance
/// finds or makes. (On v2 the same list would need a device BPF program: not done yet; there
/// nodev mounts and the missing CAP_MKNOD hold alone.)
pub(crate) const ALLOWED_DEVICES: &[&str] = &[
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];
/// CFS period used for the vCPU quota (100 ms, the kernel default).
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
/// Which cgroup hierarchy the host uses.
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>`).
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup` is cgroup2).
    V2,
}

/// The v1 cpuset hierarchy and what its root offers (a new cpuset cgroup starts with no
/// CPUs and no memory nodes: both are written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cpuset {
    pub mount: PathBuf,
    pub cpus: Vec<u32>,
    pub mems: String,
}

impl Cpuset {
    fn read(mount: PathBuf) -> Option<Cpuset> {
        let cpus = parse_cpu_list(fs::read_to_string(mount.join("cpuset.cpus")).ok()?.trim())?;
        let mems = fs::read_to_string(mount.join("cpuset.mems"))
            .ok()?
            .trim()
            .to_string();
        (!cpus.is_empty() && !mems.is_empty()).then_some(Cpuset { mount, cpus, mems })
    }

    /// The CPUs of an instance with `vcpus` (0 = unlimited): all when it has as many as the
    /// host, else a window of that many starting at a place its id picks (spread, stable).
    pub(crate) fn cpus_for(&self, id: &str, vcpus: usize) -> String {
        let n = self.cpus.len();
        if vcpus == 0 || vcpus >= n {
            return cpu_list(&self.cpus);
        }
        let start = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
            % n;
        let mut picked: Vec<u32> = (0..vcpus).map(|i| self.cpus[(start + i) % n]).collect();
        picked.sort_unstable();
        cpu_list(&picked)
    }
}

/// "0-3,6" → [0, 1, 2, 3, 6].
fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

fn cpu_list(cpus: &[u32]) -> String {
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The instance's cgroup directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// v1: one directory per hierarchy we use (memory, cpu, pids, freezer when mounted);
    /// v2: exactly one. Joining the instance = writing a pid to each `cgroup.procs`.
    pub dirs: Vec<PathBuf>,
    /// Directory whose `cgroup.procs` lists every process of the instance (v1: the pids
    /// hierarchy; v2: the only directory).
    pub procs_dir: PathBuf,
    /// v1 freezer directory, when the freezer hierarchy is mounted.
    pub freezer_dir: Option<PathBuf>,
    /// v1 devices directory (the allow-list), when that hierarchy is mounted.
    #[serde(default)]
    pub devices_dir: Option<PathBuf>,
}

/// Where the hierarchies are mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        pids: PathBuf,
        freezer: Option<PathBuf>,
        /// The device controller (the allow-list of device nodes), when mounted.
        devices: Option<PathBuf>,
        /// CPU accounting, when mounted apart from `cpu` (LXCFS's CPU view needs the instance
        /// in both; it is also the instance's CPU time).
        cpuacct: Option<PathBuf>,
        /// CPU placement: an instance with fewer vCPUs than the host has cores runs on that
        /// many (`nproc`, and LXCFS's /proc/cpuinfo, which reads the cpuset cgroup's quota).
        cpuset: Option<Cpuset>,
    },
    V2 {
        root: PathBuf,
    },
}

/// One step of creating an instance cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Add `+controller` to a `cgroup.subtree_control` unless already listed (v2).
    Enable {
        file: PathBuf,
        controller: &'static str,
    },
    /// mkdir that tolerates an existing directory (the shared `ec2lab` parent).
    MkdirParent(PathBuf),
    /// mkdir of the instance directory; an existing one is reused only when it has no process.
    MkdirInstance(PathBuf),
    Write {
        file: PathBuf,
        value: String,
    },
    /// Write only when the kernel offers the file (swap accounting may be off).
    WriteIfExists {
        file: PathBuf,
        value: String,
    },
}

fn io_err(action: &'static str, path: &Path, source: io::Error) -> SandboxError {
    SandboxError::Cgroup {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Detects the cgroup layout once per process.
pub(crate) fn layout() -> Result<&'static Layout, SandboxError> {
    static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(detect)
        .as_ref()
        .map_err(|m| SandboxError::CgroupUnsupported(m.clone()))
}

fn detect() -> Result<Layout, String> {
    let root = sys::cpath(Path::new(CGROUP_ROOT)).map_err(|e| e.to_string())?;
    match sys::statfs_type(&root) {
        Ok(CGROUP2_SUPER_MAGIC) => {
            return Ok(Layout::V2 {
                root: CGROUP_ROOT.into(),
            });
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot stat {CGROUP_ROOT}: {e}")),
    }
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    parse_v1_layout(&info)
}

/// Finds the v1 hierarchies we use in a mountinfo text.
pub(crate) fn parse_v1_layout(mountinfo: &str) -> Result<Layout, String> {
    let (mut memory, mut cpu, mut pids, mut freezer, mut devices, mut cpuacct) =
        (None, None, None, None, None, None);
    let mut cpuset = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let opts = r.nth(1).unwrap_or("");
        let Some(mnt) = left.split(' ').nth(4) else {
            continue;
        };
        let mnt = PathBuf::from(unescape_mountinfo(mnt));
        for o in opts.split(',') {
            let slot = match o {
                "memory" => &mut memory,
                "cpu" => &mut cpu,
                "pids" => &mut pids,
                "freezer" => &mut freezer,
                "devices" => &mut devices,
                "cpuacct" => &mut cpuacct,
                "cpuset" => &mut cpuset,
                _ => continue,
            };
            slot.get_or_insert_with(|| mnt.clone());
        }
    }
    let need = |v: Option<PathBuf>, name: &str| {
        v.ok_or_else(|| format!("cgroup v1 controller {name} is not mounted"))
    };
    let cpu = need(cpu, "cpu")?;
    Ok(Layout::V1 {
        memory: need(memory, "memory")?,
        cpuacct: cpuacct.filter(|a| *a != cpu),
        cpuset: cpuset.filter(|c| *c != cpu).and_then(Cpuset::read),
        cpu,
        pids: need(pids, "pids")?,
        freezer,
        devices,
    })
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Layout {
    pub(crate) fn paths(&self, id: &str) -> CgroupPaths {
        match self {
            Layout::V1 {
                memory,
                cpu,
                pids,
                freezer,
                devices,
                cpuacct,
                cpuset,
            } => {
                let d = |h: &Path| h.join(PARENT).join(id);
                let mut dirs = vec![d(memory), d(cpu), d(pids)];
                dirs.extend(cpuacct.as_deref().map(d));
                dirs.extend(cpuset.as_ref().map(|c| d(&c.mount)));
                let freezer_dir = freezer.as_deref().map(d);
                dirs.extend(freezer_dir.clone());
                let devices_dir = devices.as_deref().map(d);
                dirs.extend(devices_dir.clone());
                CgroupPaths {
                    version: CgroupVersion::V1,
                    procs_dir: d(pids),
                    dirs,
                    freezer_dir,
                    devices_dir,
                }
            }
            Layout::V2 { root } => {
                let dir = root.join(PARENT).join(id);
                CgroupPaths {
                    version: CgroupVersion::V2,
                    dirs: vec![dir.clone()],
                    procs_dir: dir,
                    freezer_dir: None,
                    devices_dir: None,
                }
            }
        }
    }

    /// Every directory that may hold `ec2lab/<id>` children.
    fn parents(&self) -> Vec<PathBuf> {
        match self {
            Layout::V1 {
                memory,
                cpu,
                pids,
                freezer,
                devices,
                cpuacct,
                cpuset,
            } => {
                let mut v = vec![pids.join(PARENT), memory.join(PARENT), cpu.join(PARENT)];
                v.extend(cpuacct.as_ref().map(|f| f.join(PARENT)));
                v.extend(cpuset.as_ref().map(|c| c.mount.join(PARENT)));
                v.extend(freezer.as_ref().map(|f| f.join(PARENT)));
                v.extend(devices.as_ref().map(|f| f.join(PARENT)));
                v
            }
            Layout::V2 { root } => vec![root.join(PARENT)],
        }
    }

    /// The ordered steps that create and configure the instance's cgroup.
    pub(crate) fn create_plan(&self, id: &str, limits: &Limits) -> Vec<Op> {
        let mut ops = Vec::new();
        let mem = (limits.memory_bytes > 0).then(|| limits.memory_bytes.to_string());
        let quota = (limits.cpu_millicores > 0)
            .then(|| u64::from(limits.cpu_millicores) * CPU_PERIOD_US / 1000);
        let pids = if limits.pids_max > 0 {
            limits.pids_max.to_string()
        } else {
            "max".to_string()
        };
        match self {
            Layout::V1 {
                memory,
                cpu,
                pids: pids_h,
                freezer,
                devices,
                cpuacct,
                cpuset,
            } => {
                // cpuset first: its parent needs CPUs and memory nodes before a child can.
                if let Some(c) = cpuset {
                    let (parent, dir) = (c.mount.join(PARENT), c.mount.join(PARENT).join(id));
                    let vcpus = (limits.cpu_millicores as usize).div_ceil(1000);
                    ops.push(Op::MkdirParent(parent.clone()));
                    ops.push(Op::Write {
                        file: parent.join("cpuset.cpus"),
                        value: cpu_list(&c.cpus),
                    });
                    ops.push(Op::Write {
                        file: parent.join("cpuset.mems"),
                        value: c.mems.clone(),
                    });
                    ops.push(Op::MkdirInstance(dir.clone()));
                    ops.push(Op::Write {
                        file: dir.join("cpuset.cpus"),
                        value: c.cpus_for(id, vcpus),
                    });
                    ops.push(Op::Write {
                        file: dir.join("cpuset.mems"),
                        value: c.mems.clone(),
                    });
                }
                for h in [
                    Some(memory),
                    Some(cpu),
                    Some(pids_h),
                    freezer.as_ref(),
                    cpuacct.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    ops.push(Op::MkdirParent(h.join(PARENT)));
                    ops.push(Op::MkdirInstance(h.join(PARENT).join(id)));
                }
                let m = memory.join(PARENT).join(id);
                let c = cpu.join(PARENT).join(id);
                let p = pids_h.join(PARENT).join(id);
                let mem = mem.unwrap_or_else(|| "-1".into());
                ops.push(Op::Write {
                    file: m.join("memory.limit_in_bytes"),
                    value: mem.clone(),
                });
                // memsw >= limit is required; equal means "no swap" for the instance.
                ops.push(Op::WriteIfExists {
                    file: m.join("memory.memsw.limit_in_bytes"),
                    value: mem,
                });
                ops.push(Op::Write {
                    file: c.join("cpu.cfs_period_us"),
                    value: CPU_PERIOD_US.to_string(),
                });
                ops.push(Op::Write {
                    file: c.join("cpu.cfs_quota_us"),
                    value: quota.map_or("-1".into(), |q| q.to_string()),
                });
                ops.push(Op::Write {
                    file: p.join("pids.max"),
                    value: pids,
                });
                if let Some(dev) = devices {
                    let d = dev.join(PARENT).join(id);
                    ops.push(Op::MkdirParent(dev.join(PARENT)));
                    ops.push(Op::MkdirInstance(d.clone()));
                    ops.push(Op::Write {
                        file: d.join("devices.deny"),
                        value: "a".into(),
                    });
                    ops.extend(ALLOWED_DEVICES.iter().map(|rule| Op::Write {
                        file: d.join("devices.allow"),
                        value: (*rule).into(),
                    }));
                }
            }
            Layout::V2 { root } => {
                let parent = root.join(PARENT);
                for ctl in ["cpu", "memory", "pids"] {
                    ops.push(Op::Enable {
                        file: root.join("cgroup.subtree_control"),
                        controller: ctl,
                    });
                }
                ops.push(Op::MkdirParent(parent.clone()));
                for ctl in ["cpu", "memory", "pids"] {
                    ops.push(Op::Enable {
                        file: parent.join("cgroup.subtree_control"),
                        controller: ctl,
                    });
                }
                let d = parent.join(id);
                ops.push(Op::MkdirInstance(d.clone()));
                let has_mem = mem.is_some();
                ops.push(Op::Write {
                    file: d.join("memory.max"),
                    value: mem.unwrap_or_else(|| "max".into()),
                });
                if has_mem {
                    ops.push(Op::WriteIfExists {
                        file: d.join("memory.swap.max"),
                        value: "0".into(),
                    });
                }
                ops.push(Op::Write {
                    file: d.join("cpu.max"),
                    value: format!(
                        "{} {CPU_PERIOD_US}",
                        quota.map_or("max".into(), |q| q.to_string())
                    ),
                });
                ops.push(Op::Write {
                    file: d.join("pids.max"),
                    value: pids,
                });
            }
        }
        ops
    }
}

fn write_file(file: &Path, value: &str) -> io::Result<()> {
    // cgroup files want one write(2) per value; fs::write does exactly one for short values.
    fs::write(file, value)
}

fn apply(op: &Op) -> Result<(), SandboxError> {
    match op {
        Op::Enable { file, controller } => {
            let cur = fs::read_to_string(file).map_err(|e| io_err("read", file, e))?;
            if cur.split_whitespace().any(|c| c == *controller) {
                return Ok(());
            }
            write_file(file, &format!("+{controller}")).map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EBUSY) {
                    " (processes live in this cgroup; on a delegated v2 tree run the daemon in a leaf cgroup)"
                } else {
                    ""
                };
                let source = if hint.is_empty() { e } else { io::Error::new(e.kind(), format!("{e}{hint}")) };
                io_err("enable controller in", file, source)
            })
        }
        Op::MkdirParent(d) => match fs::create_dir(d) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(io_err("create", d, e)),
            _ => Ok(()),
        },
        Op::MkdirInstance(d) => match fs::create_dir(d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if read_pids(&d.join("cgroup.procs"))
                    .map_err(|e| io_err("read", d, e))?
                    .is_empty()
                {
                    Ok(())
                } else {
                    Err(SandboxError::CgroupBusy { path: d.clone() })
                }
            }
            Err(e) => Err(io_err("create", d, e)),
        },
        Op::Write { file, value } => {
            write_file(file, value).map_err(|e| io_err("write limit to", file, e))
        }
        Op::WriteIfExists { file, value } => match write_file(file, value) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            r => r.map_err(|e| io_err("write limit to", file, e)),
        },
    }
}

/// Creates and configures the instance's cgroup. On error, removes what it created.
pub(crate) fn create(id: &str, limits: &Limits) -> Result<CgroupPaths, SandboxError> {
    let layout = layout()?;
    let paths = layout.paths(id);
    for op in layout.create_plan(id, limits) {
        if let Err(e) = apply(&op) {
            return Err(match remove(&paths, Duration::from_millis(500)) {
                Ok(()) => e,
                Err(c) => SandboxError::with_cleanup(e, c),
            });
        }
    }
    Ok(paths)
}

/// Gives a spare launcher's cgroup (`ec2lab/<spare>`, made ahead with no limits, its launcher
/// already inside — see `spare`) to an instance: renames it to `ec2lab/<id>` in every hierarchy
/// and writes the instance's limits. The kernel moves no process and so waits for no RCU grace
/// period (a join costs 10–20 ms on v1). v1 only: cgroup2 refuses renames. On error the dirs
/// already renamed carry the instance's name: the caller destroys both names.
pub(crate) fn adopt(spare: &str, id: &str, limits: &Limits) -> Result<CgroupPaths, SandboxError> {
    let layout = layout()?;
    let (from, to) = (layout.paths(spare), layout.paths(id));
    for (a, b) in from.dirs.iter().zip(&to.dirs) {
        // An empty one left by an earlier boot is reused, as `create` does; rmdir refuses a
        // cgroup with processes.
        if b.exists() && fs::remove_dir(b).is_err() {
            return Err(SandboxError::CgroupBusy { path: b.clone() });
        }
        fs::rename(a, b).map_err(|e| io_err("rename", a, e))?;
    }
    // The limits only: the structure and the device allow-list were made with the spare.
    for op in layout.create_plan(id, limits) {
        if let Op::Write { file, .. } | Op::WriteIfExists { file, .. } = &op
            && !file.to_string_lossy().contains("/devices.")
        {
            apply(&op)?;
        }
    }
    Ok(to)
}

/// A spare launcher that was never used leaves its cgroup (back to each hierarchy's root) and
/// removes it, so nothing of it stays when its daemon goes away.
pub(crate) fn leave_and_remove(name: &str) -> Result<(), SandboxError> {
    let paths = layout()?.paths(name);
    let me = sys::getpid().to_string();
    for d in &paths.dirs {
        let root = d.parent().and_then(Path::parent).unwrap_or(d);
        let f = root.join("cgroup.procs");
        write_file(&f, &me).map_err(|e| io_err("leave to", &f, e))?;
    }
    remove(&paths, Duration::from_secs(2))
}

/// Names under `ec2lab/` that start with `prefix` (spare launchers' cgroups of one daemon).
pub(crate) fn list_prefixed(prefix: &str) -> Result<Vec<String>, SandboxError> {
    let mut names = Vec::new();
    for parent in layout()?.parents() {
        for ent in fs::read_dir(&parent).into_iter().flatten().flatten() {
            if let Some(name) = ent.file_name().to_str()
                && name.starts_with(prefix)
                && ent.path().is_dir()
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// True on a host whose hierarchies allow `adopt` (cgroup v1).
pub(crate) fn can_adopt() -> bool {
    matches!(layout(), Ok(Layout::V1 { .. }))
}

/// Adds one rule (`"b 7:3 rw"`) to the instance's device allow-list (v1; v2 has none yet).
pub(crate) fn allow_device(paths: &CgroupPaths, rule: &str) -> Result<(), SandboxError> {
    match &paths.devices_dir {
        Some(d) => {
            let f = d.join("devices.allow");
            write_file(&f, rule).map_err(|e| io_err("allow device in", &f, e))
        }
        None => Ok(()),
    }
}

/// Removes one rule from the device allow-list (v1; a rule exactly as it was allowed).
pub(crate) fn deny_device(paths: &CgroupPaths, rule: &str) -> Result<(), SandboxError> {
    match &paths.devices_dir {
        Some(d) => {
            let f = d.join("devices.deny");
            write_file(&f, rule).map_err(|e| io_err("deny device in", &f, e))
        }
        None => Ok(()),
    }
}

/// Moves process `pid` (0 = the caller) into the instance's cgroup, in every hierarchy.
pub(crate) fn join(paths: &CgroupPaths, pid: libc::pid_t) -> Result<(), SandboxError> {
    let v = pid.to_string();
    for d in &paths.dirs {
        let f = d.join("cgroup.procs");
        write_file(&f, &v).map_err(|e| io_err("join", &f, e))?;
    }
    Ok(())
}

pub(crate) fn read_pids(procs: &Path) -> io::Result<Vec<libc::pid_t>> {
    match fs::read_to_string(procs) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Processes currently in the instance's cgroup.
pub(crate) fn pids(paths: &CgroupPaths) -> io::Result<Vec<libc::pid_t>> {
    read_pids(&paths.procs_dir.join("cgroup.procs"))
}

fn set_frozen(paths: &CgroupPaths, frozen: bool) -> io::Result<bool> {
    match paths.version {
        CgroupVersion::V2 => {
            let f = paths.procs_dir.join("cgroup.freeze");
            write_file(&f, if frozen { "1" } else { "0" }).map(|_| true)
        }
        CgroupVersion::V1 => {
            let Some(d) = &paths.freezer_dir else {
                return Ok(false);
            };
            let f = d.join("freezer.state");
            write_file(&f, if frozen { "FROZEN" } else { "THAWED" })?;
            if frozen {
                // Wait (briefly) until the kernel reports FROZEN rather than FREEZING.
                let deadline = Instant::now() + Duration::from_millis(200);
                while fs::read_to_string(&f)?.trim() != "FROZEN" && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(true)
        }
    }
}

/// SIGKILLs every process in the instance's cgroup and waits until it is empty.
pub(crate) fn kill_all(paths: &CgroupPaths, timeout: Duration) -> Result<(), SandboxError> {
    let procs = paths.procs_dir.join("cgroup.procs");
    if !procs.exists() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    // v2 (5.14+): one write kills the whole subtree atomically.
    let kill_file = paths.procs_dir.join("cgroup.kill");
    let used_kill_file = paths.version == CgroupVersion::V2 && write_file(&kill_file, "1").is_ok();
    loop {
        let pids = read_pids(&procs).map_err(|e| io_err("read", &procs, e))?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io_err(
                "empty",
                &procs,
                io::Error::new(
                    ErrorKind::TimedOut,
                    format!("{} processes left", pids.len()),
                ),
            ));
        }
        if !used_kill_file {
            // Freeze so a fork bomb cannot outrun the kill loop, kill, thaw (SIGKILL is
            // delivered on thaw).
            let frozen = set_frozen(paths, true).unwrap_or(false);
            for pid in read_pids(&procs).unwrap_or(pids) {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
            if frozen {
                let _ = set_frozen(paths, false);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Removes the instance's cgroup directories (after `kill_all`). Missing ones are fine.
pub(crate) fn remove(paths: &CgroupPaths, timeout: Duration) -> Result<(), SandboxError> {
    let deadline = Instant::now() + timeout;
    for d in &paths.dirs {
        loop {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(io_err("remove", d, e)),
            }
        }
    }
    Ok(())
}

/// Kill everything, then remove.
pub(crate) fn destroy(paths: &CgroupPaths, timeout: Duration) -> Result<(), SandboxError> {
    kill_all(paths, timeout)?;
    remove(paths, timeout)
}

/// Instance ids that have an `ec2lab/<id>` cgroup in any hierarchy.
pub(crate) fn list() -> Result<Vec<String>, SandboxError> {
    let mut ids = Vec::new();
    for parent in layout()?.parents() {
        let rd = match fs::read_dir(&parent) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list", &parent, e)),
        };
        for ent in rd.flatten() {
            if ent.file_type().is_ok_and(|t| t.is_dir())
                && let Some(name) = ent.file_name().to_str()
                && super::spec::valid_instance_id(name)
                && !ids.iter().any(|i| i == name)
            {
                ids.push(name.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// The instance id in a `/proc/<pid>/cgroup` text (host view): the segment after `ec2lab/`.
pub(crate) fn instance_of(proc_cgroup: &str) -> Option<String> {
    for line in proc_cgroup.lines() {
        let path = line.splitn(3, ':').nth(2)?;
        let mut segs = path.split('/').filter(|s| !s.is_empty());
        while let Some(s) = segs.next() {
            if s == PARENT
                && let Some(id) = segs.next()
                && super::spec::valid_instance_id(id)
            {
                return Some(id.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
27 26 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
28 26 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 26 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
30 26 0:28 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
32 26 0:30 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
31 26 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn v1() -> Layout {
        parse_v1_layout(MOUNTINFO).unwrap()
    }

    fn v2() -> Layout {
        Layout::V2 {
            root: "/sys/fs/cgroup".into(),
        }
    }

    #[test]
    fn finds_v1_hierarchies() {
        assert_eq!(
            v1(),
            Layout::V1 {
                memory: "/sys/fs/cgroup/memory".into(),
                cpu: "/sys/fs/cgroup/cpu,cpuacct".into(),
                pids: "/sys/fs/cgroup/pids".into(),
                freezer: Some("/sys/fs/cgroup/freezer".into()),
                devices: Some("/sys/fs/cgroup/devices".into()),
                cpuacct: None,
                cpuset: None,
            }
        );
        let e = parse_v1_layout("1 2 0:1 / /x rw - cgroup cgroup rw,cpu\n").unwrap_err();
        assert_eq!(e, "cgroup v1 controller memory is not mounted");
    }

    #[test]
    fn v1_plan() {
        let l = Limits {
            memory_bytes: 536_870_912,
            cpu_millicores: 2000,
            pids_max: 256,
        };
        let ops = v1().create_plan("i-1", &l);
        let w = |f: &str, v: &str| Op::Write {
            file: f.into(),
            value: v.into(),
        };
        assert_eq!(
            ops[0],
            Op::MkdirParent("/sys/fs/cgroup/memory/ec2lab".into())
        );
        assert_eq!(
            ops[1],
            Op::MkdirInstance("/sys/fs/cgroup/memory/ec2lab/i-1".into())
        );
        assert_eq!(
            ops[7],
            Op::MkdirInstance("/sys/fs/cgroup/freezer/ec2lab/i-1".into())
        );
        assert_eq!(
            ops[8..13],
            [
                w(
                    "/sys/fs/cgroup/memory/ec2lab/i-1/memory.limit_in_bytes",
                    "536870912"
                ),
                Op::WriteIfExists {
                    file: "/sys/fs/cgroup/memory/ec2lab/i-1/memory.memsw.limit_in_bytes".into(),
                    value: "536870912".into()
                },
                w(
                    "/sys/fs/cgroup/cpu,cpuacct/ec2lab/i-1/cpu.cfs_period_us",
                    "100000"
                ),
                w(
                    "/sys/fs/cgroup/cpu,cpuacct/ec2lab/i-1/cpu.cfs_quota_us",
                    "200000"
                ),
                w("/sys/fs/cgroup/pids/ec2lab/i-1/pids.max", "256"),
            ]
        );
        // Then the device allow-list: deny everything, allow the standard nodes.
        let dev = "/sys/fs/cgroup/devices/ec2lab/i-1";
        assert_eq!(ops[14], Op::MkdirInstance(dev.into()));
        assert_eq!(ops[15], w(&format!("{dev}/devices.deny"), "a"));
        assert_eq!(ops.len(), 16 + ALLOWED_DEVICES.len());
        assert!(ops.contains(&w(&format!("{dev}/devices.allow"), "c 1:3 rwm")));
        assert!(!ops.iter().any(|o| matches!(o, Op::Write { value, .. } if value.starts_with("b ") || value == "c 1:11 rwm")));
        let p = v1().paths("i-1");
        assert_eq!(p.procs_dir, PathBuf::from("/sys/fs/cgroup/pids/ec2lab/i-1"));
        assert_eq!(p.dirs.len(), 5);
        assert_eq!(
            p.freezer_dir,
            Some("/sys/fs/cgroup/freezer/ec2lab/i-1".into())
        );
    }

    #[test]
    fn every_node_in_dev_is_allowed() {
        for (name, major, minor) in crate::sandbox::mounts::DEVICES {
            let rule = format!("c {major}:{minor} rwm");
            assert!(
                ALLOWED_DEVICES.contains(&rule.as_str()),
                "/dev/{name} ({rule})"
            );
        }
    }

    #[test]
    fn v1_plan_unlimited() {
        let ops = v1().create_plan("i-1", &Limits::default());
        assert!(ops.contains(&Op::Write {
            file: "/sys/fs/cgroup/memory/ec2lab/i-1/memory.limit_in_bytes".into(),
            value: "-1".into()
        }));
        assert!(ops.contains(&Op::Write {
            file: "/sys/fs/cgroup/cpu,cpuacct/ec2lab/i-1/cpu.cfs_quota_us".into(),
            value: "-1".into()
        }));
        assert!(ops.contains(&Op::Write {
            file: "/sys/fs/cgroup/pids/ec2lab/i-1/pids.max".into(),
            value: "max".into()
        }));
    }

    #[test]
    fn v2_plan() {
        let l = Limits {
            memory_bytes: 1 << 30,
            cpu_millicores: 500,
            pids_max: 100,
        };
        let ops = v2().create_plan("i-2", &l);
        let en = |f: &str, c: &'static str| Op::Enable {
            file: f.into(),
            controller: c,
        };
        let w = |f: &str, v: &str| Op::Write {
            file: f.into(),
            value: v.into(),
        };
        assert_eq!(
            ops,
            vec![
                en("/sys/fs/cgroup/cgroup.subtree_control", "cpu"),
                en("/sys/fs/cgroup/cgroup.subtree_control", "memory"),
                en("/sys/fs/cgroup/cgroup.subtree_control", "pids"),
                Op::MkdirParent("/sys/fs/cgroup/ec2lab".into()),
                en("/sys/fs/cgroup/ec2lab/cgroup.subtree_control", "cpu"),
                en("/sys/fs/cgroup/ec2lab/cgroup.subtree_control", "memory"),
                en("/sys/fs/cgroup/ec2lab/cgroup.subtree_control", "pids"),
                Op::MkdirInstance("/sys/fs/cgroup/ec2lab/i-2".into()),
                w("/sys/fs/cgroup/ec2lab/i-2/memory.max", "1073741824"),
                Op::WriteIfExists {
                    file: "/sys/fs/cgroup/ec2lab/i-2/memory.swap.max".into(),
                    value: "0".into()
                },
                w("/sys/fs/cgroup/ec2lab/i-2/cpu.max", "50000 100000"),
                w("/sys/fs/cgroup/ec2lab/i-2/pids.max", "100"),
            ]
        );
        let unl = v2().create_plan("i-2", &Limits::default());
        assert!(unl.contains(&w("/sys/fs/cgroup/ec2lab/i-2/memory.max", "max")));
        assert!(unl.contains(&w("/sys/fs/cgroup/ec2lab/i-2/cpu.max", "max 100000")));
        assert!(unl.contains(&w("/sys/fs/cgroup/ec2lab/i-2/pids.max", "max")));
        assert!(!unl.iter().any(|o| matches!(o, Op::WriteIfExists { .. })));
        let p = v2().paths("i-2");
        assert_eq!(p.dirs, vec![PathBuf::from("/sys/fs/cgroup/ec2lab/i-2")]);
        assert_eq!(p.procs_dir, PathBuf::from("/sys/fs/cgroup/ec2lab/i-2"));
    }

    #[test]
    fn instance_from_proc_cgroup() {
        let v1 = "9:name=systemd:/\n8:pids:/ec2lab/i-abc\n4:memory:/process_api/x\n";
        assert_eq!(instance_of(v1).as_deref(), Some("i-abc"));
        assert_eq!(instance_of("0::/ec2lab/i-9\n").as_deref(), Some("i-9"));
        assert_eq!(instance_of("0::/user.slice\n"), None);
        assert_eq!(instance_of("0::/ec2lab\n"), None);
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/a\04"), r"/a\04");
    }
}
