//! What an instance is made of (`LaunchSpec`, `Limits`) and the checks done before anything
//! is created. Validation is pure so it is unit-tested without root.

use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SandboxError;

/// Everything the launcher needs to build one instance. Passed to the `__launch` helper as
/// JSON on its stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// `i-…`; also the cgroup name, so only `[A-Za-z0-9._-]`.
    pub instance_id: String,
    /// Overlay lower layers, topmost first (AMI layers). Must exist.
    pub lower_dirs: Vec<PathBuf>,
    /// `(host path, path inside the instance)`, mounted read-only (and nodev) after the overlay.
    /// A host path that is a symlink (`/bin -> usr/bin` on merged-usr hosts) is reproduced as the
    /// same symlink inside when the instance has nothing at that path.
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
    /// Persistent root volume: holds `upper/` and `work/` (created if missing).
    pub volume_dir: PathBuf,
    /// Runtime directory on the host: `console.log`, `init.json`, the `rootfs` mount point.
    pub run_dir: PathBuf,
    /// Hostname inside the instance (UTS namespace), e.g. `ip-172-31-5-9`.
    pub hostname: String,
    /// Extra `/32` addresses on `lo` inside the instance (IMDS address, private IP).
    pub lo_addrs: Vec<Ipv4Addr>,
    /// The veth to the lab's VPC router (`eth0` inside), if the instance joins one.
    #[serde(default)]
    pub vpc: Option<super::vpc::VpcLink>,
    /// cgroup limits from the instance type.
    pub limits: Limits,
    /// argv of the instance's PID 1. When `init_argv[0]` is the `exe` given to [`launch`], PID 1
    /// does not exec at all: it calls the init entry passed to [`launcher_main`] with this argv
    /// (host binary, host libraries — works with any AMI). Otherwise `init_argv[0]` is an
    /// absolute path inside the instance, exec'd after `pivot_root`.
    ///
    /// [`launch`]: super::launch
    /// [`launcher_main`]: super::launcher_main
    pub init_argv: Vec<String>,
    /// Handed to the builtin init in-process (e.g. the boot context): never in an argv, an
    /// environment or a file the instance can reach. Ignored for an exec'd init.
    #[serde(default)]
    pub init_payload: Option<String>,
    /// Run the instance in its own user namespace (see `userns`): its root is an unprivileged
    /// host uid range. Every instance the daemon launches has one.
    #[serde(default)]
    pub user_namespace: bool,
    /// Files written into the root volume's upper layer before the instance runs (a first
    /// boot's hostname, hosts…), through `guestfs`, owned by the instance's root.
    #[serde(default)]
    pub volume_files: Vec<VolumeFile>,
    /// The host binary that is also the instance's `systemctl`, `journalctl`, `service`,
    /// `poweroff`… (see `mounts`, step 8); `None`: no tools.
    #[serde(default)]
    pub tools_exe: Option<PathBuf>,
    /// A loop device already holding the volume's image (a spare's, attached ahead); the
    /// launcher checks that it does and otherwise attaches one itself.
    #[serde(default)]
    pub volume_loop: Option<u32>,
    /// LXCFS's `proc/` (see `procview`): its files are bound over the instance's `/proc`.
    #[serde(default)]
    pub proc_view: Option<PathBuf>,
}

/// A file the host puts into a root volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFile {
    /// Path inside the instance, e.g. `/etc/hostname`.
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// Resource limits from the instance type. `0` means "no limit" for each field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap is not allowed on top of it).
    pub memory_bytes: u64,
    /// 1000 = one vCPU (CFS quota of one full period).
    pub cpu_millicores: u32,
    /// Maximum number of processes and threads.
    pub pids_max: u32,
}

/// The launcher's stdin: the spec plus what `launch` decided on the host side.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LauncherInput {
    pub spec: LaunchSpec,
    /// PID 1 calls the init entry in-process instead of exec'ing `init_argv`.
    pub builtin_init: bool,
}

/// Longest overlay option string we hand to mount(2) (the kernel takes one page).
const MAX_OVERLAY_DATA: usize = 4000;

fn invalid(msg: String) -> SandboxError {
    SandboxError::InvalidSpec(msg)
}

pub(crate) fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A path overlayfs can take in its option string without escaping.
fn overlay_safe(p: &Path) -> bool {
    let s = p.as_os_str().as_encoded_bytes();
    !s.iter()
        .any(|b| matches!(b, b':' | b',' | b'\\' | b'\n' | 0))
}

/// Absolute, no `.`/`..` components, no nul bytes.
fn clean_absolute(p: &Path) -> bool {
    p.is_absolute()
        && !p.as_os_str().as_encoded_bytes().contains(&0)
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

impl LaunchSpec {
    /// Checks everything that can be checked without touching the system.
    pub fn validate(&self) -> Result<(), SandboxError> {
        if !valid_instance_id(&self.instance_id) {
            return Err(invalid(format!(
                "instance id {:?} must be 1-64 characters of [A-Za-z0-9._-]",
                self.instance_id
            )));
        }
        if self.lower_dirs.is_empty() {
            return Err(invalid("at least one lower dir is required".into()));
        }
        for p in self.lower_dirs.iter().chain([&self.volume_dir]) {
            if !clean_absolute(p) || !overlay_safe(p) {
                return Err(invalid(format!(
                    "overlay path {} must be absolute and free of ':' ',' '\\'",
                    p.display()
                )));
            }
        }
        if !clean_absolute(&self.run_dir) {
            return Err(invalid(format!(
                "run dir {} must be an absolute path",
                self.run_dir.display()
            )));
        }
        if overlay_data(self).len() > MAX_OVERLAY_DATA {
            return Err(invalid(format!(
                "overlay options are longer than {MAX_OVERLAY_DATA} bytes (too many or too long lower dirs)"
            )));
        }
        for (host, inside) in &self.ro_binds {
            if !clean_absolute(host) {
                return Err(invalid(format!(
                    "bind source {} must be an absolute path",
                    host.display()
                )));
            }
            if !clean_absolute(inside) || inside == Path::new("/") {
                return Err(invalid(format!(
                    "bind target {} must be an absolute path below /",
                    inside.display()
                )));
            }
        }
        let h = &self.hostname;
        if h.is_empty()
            || h.len() > 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(invalid(format!(
                "hostname {h:?} must be 1-64 characters of [A-Za-z0-9.-]"
            )));
        }
        match self.init_argv.first() {
            None => return Err(invalid("init argv is empty".into())),
            Some(a) if !a.starts_with('/') => {
                return Err(invalid(format!(
                    "init program {a:?} must be an absolute path"
                )));
            }
            _ => {}
        }
        if self.init_argv.iter().any(|a| a.contains('\0')) {
            return Err(invalid("init argv contains a nul byte".into()));
        }
        Ok(())
    }

    /// `run_dir/rootfs`: where the overlay is mounted (only inside the instance's mount namespace).
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.run_dir.join("rootfs")
    }

    pub(crate) fn upper_dir(&self) -> PathBuf {
        self.volume_dir.join("upper")
    }

    pub(crate) fn work_dir(&self) -> PathBuf {
        self.volume_dir.join("work")
    }

    /// `run_dir/console.log`: PID 1's stdout and stderr (append-only).
    pub fn console_log(&self) -> PathBuf {
        self.run_dir.join(CONSOLE_LOG)
    }
}

pub(crate) const CONSOLE_LOG: &str = "console.log";
pub(crate) const INIT_STATE: &str = "init.json";

/// The overlay option string: `lowerdir=a:b,upperdir=…,workdir=…`.
pub(crate) fn overlay_data(spec: &LaunchSpec) -> String {
    let lowers: Vec<String> = spec
        .lower_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        spec.upper_dir().display(),
        spec.work_dir().display()
    )
}

#[cfg(test)]
pub(crate) fn example_spec() -> LaunchSpec {
    LaunchSpec {
        instance_id: "i-0123456789abcdef0".into(),
        lower_dirs: vec!["/var/lib/ec2lab/images/ami-1/rootfs".into()],
        ro_binds: vec![
            ("/usr".into(), "/usr".into()),
            ("/bin".into(), "/bin".into()),
        ],
        volume_dir: "/var/lib/ec2lab/volumes/vol-1".into(),
        run_dir: "/run/ec2lab/i-0123456789abcdef0".into(),
        hostname: "ip-172-31-5-9".into(),
        lo_addrs: vec![
            Ipv4Addr::new(169, 254, 169, 254),
            Ipv4Addr::new(172, 31, 5, 9),
        ],
        vpc: None,
        limits: Limits {
            memory_bytes: 1 << 30,
            cpu_millicores: 1000,
            pids_max: 512,
        },
        init_argv: vec!["/usr/local/bin/ec2lab".into(), "__init".into(), "{}".into()],
        init_payload: None,
        user_namespace: false,
        volume_files: Vec::new(),
        tools_exe: None,
        volume_loop: None,
        proc_view: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_valid() {
        example_spec().validate().unwrap();
    }

    #[test]
    fn overlay_string() {
        let mut s = example_spec();
        s.lower_dirs.push("/a/b".into());
        assert_eq!(
            overlay_data(&s),
            "lowerdir=/var/lib/ec2lab/images/ami-1/rootfs:/a/b,upperdir=/var/lib/ec2lab/volumes/vol-1/upper,workdir=/var/lib/ec2lab/volumes/vol-1/work"
        );
    }

    #[test]
    fn rejects_bad_values() {
        type Mutation = Box<dyn Fn(&mut LaunchSpec)>;
        let bad: Vec<Mutation> = vec![
            Box::new(|s| s.instance_id = "../etc".into()),
            Box::new(|s| s.instance_id = String::new()),
            Box::new(|s| s.lower_dirs.clear()),
            Box::new(|s| s.lower_dirs = vec!["relative".into()]),
            Box::new(|s| s.lower_dirs = vec!["/a:b".into()]),
            Box::new(|s| s.volume_dir = "/v,x".into()),
            Box::new(|s| s.run_dir = "/run/../etc".into()),
            Box::new(|s| s.ro_binds = vec![("/usr".into(), "/".into())]),
            Box::new(|s| s.ro_binds = vec![("/usr".into(), "/usr/../..".into())]),
            Box::new(|s| s.hostname = "bad host".into()),
            Box::new(|s| s.init_argv.clear()),
            Box::new(|s| s.init_argv = vec!["init".into()]),
            Box::new(|s| {
                s.lower_dirs = (0..400)
                    .map(|i| PathBuf::from(format!("/very/long/lower/{i}")))
                    .collect()
            }),
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut s = example_spec();
            f(&mut s);
            let e = s.validate().expect_err(&format!("case {i} should fail"));
            assert!(matches!(e, SandboxError::InvalidSpec(_)), "case {i}: {e}");
        }
    }
}
