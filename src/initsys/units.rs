//! Unit files: parsing (`[Section]`, `Key=Value`, continuation lines, comments), drop-ins, aliases
//! and masks, and the per-name view the manager keeps.
//!
//! Order of a load (`scan`, then `ensure` per name as units are needed, or `load_all`): for
//! every directory of [`UNIT_DIRS`] (first wins by name) list
//! `*.service` / `*.target` entries → a symlink to `/dev/null` is a mask, a symlink to another
//! unit file is an alias of that unit → parse the fragment → apply drop-ins `NAME.d/*.conf` from
//! every directory, sorted by file name → SysV scripts in `/etc/init.d` without a unit become
//! `Type=forking` services (as systemd-sysv-generator does). A file that does not parse is kept
//! as a unit whose load state is `error`, with the line that failed: it never stops the others.

use std::collections::{BTreeMap, HashMap};

use super::unitfile::validate;
pub use super::unitfile::{
    Entries, ParseError, apply, parse_cmd, parse_ini, parse_timespan, split_words,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where unit files are looked up, in priority order (as systemd's system manager does).
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// Directories whose `*.wants/` links count as "enabled" (vendor wants are not followed: on
/// `lab-linux` `/lib` is the host's, whose own services make no sense in an instance).
pub const ENABLE_DIRS: &[&str] = &["/etc/systemd/system", "/run/systemd/system"];

/// The directory `enable` writes into.
pub const ADMIN_DIR: &str = "/etc/systemd/system";

/// How a unit file loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    Loaded,
    Masked,
    /// The file did not parse or has a setting that cannot work; the message says which.
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Simple,
    Exec,
    Forking,
    Oneshot,
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnAbort,
}

/// One command line of an `Exec*=` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    /// `-` prefix: a failure is ignored.
    pub ignore_failure: bool,
    /// `+` / `!` prefix: run with full privileges (no User=).
    pub privileged: bool,
}

/// The `[Service]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub ty: Type,
    pub exec_start_pre: Vec<Cmd>,
    pub exec_start: Vec<Cmd>,
    pub exec_start_post: Vec<Cmd>,
    pub exec_reload: Vec<Cmd>,
    pub exec_stop: Vec<Cmd>,
    pub exec_stop_post: Vec<Cmd>,
    pub pid_file: Option<PathBuf>,
    pub restart: Restart,
    pub restart_sec: Duration,
    pub remain_after_exit: bool,
    pub user: Option<String>,
    pub group: Option<String>,
    pub working_directory: Option<String>,
    pub environment: Vec<(String, String)>,
    /// `(path, optional)`: a `-` prefix makes a missing file fine.
    pub environment_files: Vec<(PathBuf, bool)>,
    pub runtime_directories: Vec<String>,
    pub timeout_start: Duration,
    pub timeout_stop: Duration,
    pub syslog_identifier: Option<String>,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            ty: Type::Simple,
            exec_start_pre: Vec::new(),
            exec_start: Vec::new(),
            exec_start_post: Vec::new(),
            exec_reload: Vec::new(),
            exec_stop: Vec::new(),
            exec_stop_post: Vec::new(),
            pid_file: None,
            restart: Restart::No,
            restart_sec: Duration::from_millis(100),
            remain_after_exit: false,
            user: None,
            group: None,
            working_directory: None,
            environment: Vec::new(),
            environment_files: Vec::new(),
            runtime_directories: Vec::new(),
            timeout_start: Duration::from_secs(90),
            timeout_stop: Duration::from_secs(90),
            syslog_identifier: None,
        }
    }
}

/// One unit as the manager knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unit {
    pub name: String,
    pub fragment: Option<PathBuf>,
    pub dropins: Vec<PathBuf>,
    pub load: Option<Load>,
    pub description: String,
    pub after: Vec<String>,
    pub before: Vec<String>,
    pub wants: Vec<String>,
    pub requires: Vec<String>,
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub aliases: Vec<String>,
    pub has_install: bool,
    /// The SysV script this unit was made from.
    pub sysv: Option<PathBuf>,
    /// Settings the file has that this manager does not honour, each as a journal line
    /// (`path:line: Key= in [Section] is not supported …`), logged when the unit first starts.
    pub ignored: Vec<String>,
    pub service: Service,
}

impl Unit {
    pub fn load_state(&self) -> &Load {
        self.load.as_ref().unwrap_or(&Load::Loaded)
    }
    pub fn is_service(&self) -> bool {
        self.name.ends_with(".service")
    }
    pub fn description(&self) -> &str {
        if self.description.is_empty() {
            &self.name
        } else {
            &self.description
        }
    }
}

/// Adds `.service` to a bare name (`httpd` → `httpd.service`), as systemctl does.
pub fn canonical_name(name: &str) -> String {
    const SUFFIXES: &[&str] = &[
        ".service", ".target", ".socket", ".timer", ".mount", ".path", ".slice", ".scope",
    ];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// Every unit found under `root` (the instance's `/` in production, a temp dir in tests),
/// keyed by name; aliases map to their unit's name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    /// Loaded units (and masks and SysV scripts, known without reading a file).
    pub units: BTreeMap<String, Unit>,
    pub aliases: HashMap<String, String>,
    /// Unit files found by `scan`, name → fragment; parsed into `units` by `ensure`.
    files: BTreeMap<String, PathBuf>,
    root: PathBuf,
}

/// `abs` (an instance path) under `root`.
pub fn in_root(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// A path under `root` as the instance sees it (`/etc/systemd/system/…`).
pub fn inside(root: &Path, p: &Path) -> String {
    format!(
        "/{}",
        p.strip_prefix(root)
            .unwrap_or(p)
            .display()
            .to_string()
            .trim_start_matches('/')
    )
}

fn is_unit_name(n: &str) -> bool {
    (n.ends_with(".service") || n.ends_with(".target")) && !n.contains('@')
}

impl Registry {
    /// Resolves a name (or alias) to the unit's name.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        let n = canonical_name(name);
        if let Some(u) = self.units.get(&n) {
            return Some(&u.name);
        }
        self.aliases.get(&n).map(|s| s.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&Unit> {
        self.resolve(name).and_then(|n| self.units.get(n))
    }

    /// Loads every unit under `root` (the short-lived `systemctl` clients: listings of files).
    pub fn load_all(root: &Path) -> Registry {
        let mut reg = Registry::scan(root);
        let names: Vec<String> = reg.files.keys().cloned().collect();
        for name in names {
            reg.ensure(&name);
        }
        reg
    }

    /// Finds every unit under `root` without reading one: masks, alias links and SysV scripts
    /// are known at once, unit files are parsed by [`Registry::ensure`] when first needed (as
    /// systemd loads units on demand). PID 1 keeps this: on a host-derived image there are
    /// hundreds of vendor units it never uses.
    pub fn scan(root: &Path) -> Registry {
        let mut reg = Registry {
            root: root.to_path_buf(),
            ..Registry::default()
        };
        let mut links: Vec<(String, String)> = Vec::new();
        for dir in UNIT_DIRS {
            let d = in_root(root, dir);
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| is_unit_name(n))
                .collect();
            names.sort();
            for name in names {
                if reg.units.contains_key(&name)
                    || reg.files.contains_key(&name)
                    || links.iter().any(|(a, _)| *a == name)
                {
                    continue;
                }
                let p = d.join(&name);
                match std::fs::read_link(&p) {
                    Ok(t) if t == Path::new("/dev/null") => {
                        reg.units.insert(
                            name.clone(),
                            Unit {
                                name,
                                fragment: Some(p),
                                load: Some(Load::Masked),
                                ..Unit::default()
                            },
                        );
                    }
                    Ok(t) => {
                        let target = t
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        if target != name && is_unit_name(&target) {
                            links.push((name, target));
                        } else {
                            reg.files.insert(name, p);
                        }
                    }
                    Err(_) => {
                        reg.files.insert(name, p);
                    }
                }
            }
        }
        reg.add_sysv(root);
        for (alias, target) in links {
            if reg.units.contains_key(&target) || reg.files.contains_key(&target) {
                reg.aliases.insert(alias, target);
            }
        }
        reg
    }

    /// A new scan of the unit directories; units already loaded stay as they were (new files
    /// and links are found, as `systemctl start` of a just-written unit finds it).
    pub fn rescan(&mut self) {
        let fresh = Registry::scan(&self.root);
        for (n, p) in fresh.files {
            if !self.units.contains_key(&n) {
                self.files.insert(n, p);
            }
        }
        for (n, u) in fresh.units {
            self.units.entry(n).or_insert(u);
        }
        for (a, t) in fresh.aliases {
            self.aliases.entry(a).or_insert(t);
        }
    }

    /// `daemon-reload`: every file read again; the units that were loaded are loaded again.
    pub fn reload(&mut self) {
        let loaded: Vec<String> = self.units.keys().cloned().collect();
        *self = Registry::scan(&self.root);
        for n in loaded {
            self.ensure(&n);
        }
    }

    /// Makes sure `name` (or the unit it is an alias of) is loaded, with what it wants and
    /// requires; false when no such unit exists. A name nothing links to may still be an
    /// `Alias=` of an unloaded unit: those files are read one at a time and only a match is
    /// kept.
    pub fn ensure(&mut self, name: &str) -> bool {
        let asked = canonical_name(name);
        let asked = self.aliases.get(&asked).cloned().unwrap_or(asked);
        if !self.units.contains_key(&asked) && !self.files.contains_key(&asked) {
            return self.load_declaring(&asked);
        }
        // The unit and, transitively, what it wants and requires (a missing one is left out).
        let mut todo = vec![asked];
        while let Some(n) = todo.pop() {
            let n = self.aliases.get(&n).cloned().unwrap_or(n);
            if self.units.contains_key(&n) {
                continue;
            }
            let Some(path) = self.files.get(&n).cloned() else {
                continue;
            };
            self.insert_parsed(&n, &path);
            if let Some(u) = self.units.get(&n) {
                todo.extend(u.wants.iter().chain(&u.requires).map(|w| canonical_name(w)));
            }
        }
        true
    }

    /// Loads the unit whose `Alias=` names `alias`, if any.
    fn load_declaring(&mut self, alias: &str) -> bool {
        let candidates: Vec<(String, PathBuf)> = self
            .files
            .iter()
            .filter(|(n, _)| !self.units.contains_key(*n))
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        for (n, p) in candidates {
            let declares = std::fs::read_to_string(&p).is_ok_and(|t| {
                t.lines().any(|l| {
                    l.trim()
                        .strip_prefix("Alias=")
                        .is_some_and(|v| v.split_whitespace().any(|a| a == alias))
                })
            });
            if declares {
                self.insert_parsed(&n, &p);
                return self.ensure(&n);
            }
        }
        false
    }

    fn insert_parsed(&mut self, name: &str, path: &Path) {
        let root = self.root.clone();
        let root = root.as_path();
        let mut unit = Unit {
            name: name.to_string(),
            fragment: Some(path.to_path_buf()),
            ..Unit::default()
        };
        let shown = |p: &Path| inside(root, p);
        let mut files = vec![path.to_path_buf()];
        let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in UNIT_DIRS.iter().rev() {
            let d = in_root(root, dir).join(format!("{name}.d"));
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    let f = e.file_name().to_string_lossy().into_owned();
                    if f.ends_with(".conf") {
                        dropins.insert(f, e.path());
                    }
                }
            }
        }
        unit.dropins = dropins.into_values().collect();
        files.extend(unit.dropins.iter().cloned());
        for f in &files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) => {
                    unit.load = Some(Load::Error(format!("{}: {e}", shown(f))));
                    break;
                }
            };
            let result =
                parse_ini(&shown(f), &text).and_then(|en| apply(&mut unit, &shown(f), &en));
            if let Err(e) = result {
                unit.load = Some(Load::Error(e.to_string()));
                break;
            }
        }
        if unit.load.is_none()
            && let Err(e) = validate(&unit)
        {
            unit.load = Some(Load::Error(format!("{}: {e}", shown(path))));
        }
        for alias in &unit.aliases {
            if !self.units.contains_key(alias) && !self.files.contains_key(alias) {
                self.aliases
                    .entry(alias.clone())
                    .or_insert_with(|| name.to_string());
            }
        }
        self.units.insert(name.to_string(), unit);
    }

    /// `/etc/init.d/NAME` without a unit of that name: a generated `Type=forking` service.
    fn add_sysv(&mut self, root: &Path) {
        let d = in_root(root, "/etc/init.d");
        let Ok(rd) = std::fs::read_dir(&d) else {
            return;
        };
        for e in rd.flatten() {
            let script = e.file_name().to_string_lossy().into_owned();
            let name = format!("{script}.service");
            if script.starts_with('.')
                || script == "README"
                || self.units.contains_key(&name)
                || self.files.contains_key(&name)
            {
                continue;
            }
            let meta = e.metadata();
            if !meta.is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            }) {
                continue;
            }
            let path = format!("/etc/init.d/{script}");
            let cmd = |verb: &str| Cmd {
                argv: vec![path.clone(), verb.to_string()],
                ignore_failure: false,
                privileged: false,
            };
            let unit = Unit {
                name: name.clone(),
                fragment: None,
                description: format!("LSB: {script}"),
                sysv: Some(path.clone().into()),
                service: Service {
                    ty: Type::Forking,
                    exec_start: vec![cmd("start")],
                    exec_stop: vec![cmd("stop")],
                    exec_reload: vec![cmd("reload")],
                    remain_after_exit: true,
                    timeout_start: Duration::from_secs(300),
                    ..Service::default()
                },
                ..Unit::default()
            };
            self.units.insert(name, unit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn drop_ins_aliases_masks_errors_and_sysv_scripts_load() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(
            r,
            "lib/systemd/system/mariadb.service",
            "[Unit]\nDescription=MariaDB\n[Service]\nType=notify\nExecStart=/usr/sbin/mariadbd \\\n  --flag\nRestart=on-abort\n[Install]\nWantedBy=multi-user.target\nAlias=mysql.service mysqld.service\n",
        );
        write(
            r,
            "etc/systemd/system/mariadb.service.d/10-env.conf",
            "[Service]\nEnvironment=A=1 \"B=two words\"\nRestart=always\n",
        );
        write(
            r,
            "etc/systemd/system/bad.service",
            "[Service]\nExecStart=/bin/true\nnot an assignment\n",
        );
        write(
            r,
            "etc/systemd/system/noexec.service",
            "[Service]\nType=simple\n",
        );
        std::os::unix::fs::symlink("/dev/null", r.join("etc/systemd/system/masked.service"))
            .unwrap();
        write(r, "etc/init.d/legacy", "#!/bin/sh\n");
        std::fs::set_permissions(
            r.join("etc/init.d/legacy"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let reg = Registry::load_all(r);
        let m = reg.get("mysql").expect("alias resolves");
        assert_eq!(m.name, "mariadb.service");
        assert_eq!(m.service.ty, Type::Notify);
        assert_eq!(m.service.restart, Restart::Always, "the drop-in wins");
        assert_eq!(
            m.service.exec_start[0].argv,
            vec!["/usr/sbin/mariadbd", "--flag"]
        );
        assert_eq!(
            m.service.environment,
            vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(
            reg.get("bad").unwrap().load_state(),
            &Load::Error("/etc/systemd/system/bad.service:3: invalid line 'not an assignment' (expected Key=Value)".into())
        );
        assert!(
            matches!(reg.get("noexec").unwrap().load_state(), Load::Error(e) if e.contains("Refusing"))
        );
        assert_eq!(reg.get("masked").unwrap().load_state(), &Load::Masked);
        let legacy = reg.get("legacy").unwrap();
        assert_eq!(legacy.service.ty, Type::Forking);
        assert_eq!(
            legacy.service.exec_start[0].argv,
            vec!["/etc/init.d/legacy", "start"]
        );
        assert_eq!(parse_timespan("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_timespan("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timespan("soon"), None);
    }

    #[test]
    fn a_scan_parses_nothing_and_ensure_loads_a_unit_with_what_it_wants() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(
            r,
            "lib/systemd/system/web.service",
            "[Unit]\nWants=db.service\n[Service]\nExecStart=/bin/web\n[Install]\nAlias=www.service\n",
        );
        write(
            r,
            "lib/systemd/system/db.service",
            "[Service]\nExecStart=/bin/db\n",
        );
        write(
            r,
            "lib/systemd/system/other.service",
            "[Service]\nExecStart=/bin/o\n",
        );
        let mut reg = Registry::scan(r);
        assert!(reg.units.is_empty(), "nothing parsed by a scan");
        assert!(reg.ensure("web"));
        let loaded: Vec<&String> = reg.units.keys().collect();
        assert_eq!(loaded, ["db.service", "web.service"]);
        assert_eq!(
            reg.resolve("www"),
            Some("web.service"),
            "Alias= of a loaded unit"
        );
        assert!(!reg.ensure("nothing"));
        // A name only an unloaded unit's Alias= gives: that unit alone is loaded.
        let mut fresh = Registry::scan(r);
        assert!(fresh.ensure("www.service"));
        assert!(fresh.units.contains_key("web.service"));
        assert!(!fresh.units.contains_key("other.service"));
        // A unit file written after the scan is found by a rescan.
        write(
            r,
            "etc/systemd/system/new.service",
            "[Service]\nExecStart=/bin/n\n",
        );
        assert!(!fresh.ensure("new"));
        fresh.rescan();
        assert!(fresh.ensure("new"));
    }
}
