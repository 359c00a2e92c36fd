//! The boot sequence: cloud-init's init, config and final stages, in order, with semaphores.
//!
//! Every boot: set up `/var/lib/cloud` (the `instance` link to `instances/<id>`), save and
//! decode the user data, write its scripts, run boothooks, then `bootcmd`. Once per instance
//! (a file in `instances/<id>/sem/`, written before the module runs as cloud-init does):
//! `write_files`, `users_groups`, `ssh`, `runcmd`, packages, deferred `write_files`, per-instance
//! and user scripts; per-once scripts once ever (`/var/lib/cloud/sem/`); per-boot scripts, the
//! host key block and `final_message` every boot.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::userdata::cloud_config::{self, CloudConfig, UserEntry, UserSpec};
use crate::userdata::decode::{self, PartKind};
use crate::userdata::run::{self, Out};
use crate::userdata::users::{Accounts, PwEntry};
use crate::userdata::{BootContext, UserDataError, VERSION, files, fingerprints, packages, yaml};

const DEFAULT_FINAL_MESSAGE: &str = "Cloud-init v. {{version}} finished at {{timestamp}}. Datasource {{datasource}}.  Up {{uptime}} seconds";
const DEFAULT_ROOT_OPTS: &str = "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the user \\\"$USER\\\" rather than the user \\\"$DISABLE_USER\\\".';echo;sleep 10;exit 142\"";

/// One boot of one instance.
pub struct Boot<'a, 'c> {
    ctx: &'a BootContext,
    /// Runs before the final stage (the service manager's boot); its lines go to the output.
    before_final: Option<&'c mut dyn FnMut() -> Vec<String>>,
    out: Out<'c>,
    root: PathBuf,
    cloud: PathBuf,
    inst: PathBuf,
}

#[derive(Clone, Copy)]
enum Freq {
    Instance,
    Once,
}

fn mkdir(path: &Path) -> Result<(), UserDataError> {
    std::fs::create_dir_all(path).map_err(|e| UserDataError::io(path, e))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), UserDataError> {
    std::fs::write(path, data).map_err(|e| UserDataError::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| UserDataError::io(path, e))
}

impl<'a, 'c> Boot<'a, 'c> {
    pub fn new(
        root: &Path,
        ctx: &'a BootContext,
        console: &'c mut dyn Write,
    ) -> Result<Self, UserDataError> {
        let id = &ctx.instance_id;
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(UserDataError::InvalidInstanceId(id.clone()));
        }
        let cloud = root.join("var/lib/cloud");
        Ok(Boot {
            ctx,
            before_final: None,
            out: Out::new(root, console)?,
            root: root.to_path_buf(),
            inst: cloud.join("instances").join(id),
            cloud,
        })
    }

    /// Sets the step run between the config and final stages.
    pub fn before_final(mut self, f: &'c mut dyn FnMut() -> Vec<String>) -> Self {
        self.before_final = Some(f);
        self
    }

    /// Runs every stage.
    pub fn run(mut self) -> Result<(), UserDataError> {
        self.layout()?;
        self.banner("init");
        let cfg = self.consume_user_data()?;
        let result = self.bootcmd(&cfg);
        self.module_result("bootcmd", result);
        if self.sem("write_files", Freq::Instance)? {
            self.write_files(&cfg, false);
        }
        if self.sem("users_groups", Freq::Instance)? {
            let result = self.users_groups(&cfg);
            self.module_result("users_groups", result);
        }
        if self.sem("ssh", Freq::Instance)? {
            let result = self.ssh(&cfg);
            self.module_result("ssh", result);
        }
        self.banner("modules:config");
        if let Some(cmds) = &cfg.runcmd
            && self.sem("runcmd", Freq::Instance)?
        {
            let path = self.inst.join("scripts/runcmd");
            let result = write_file(&path, cloud_config::shellify(cmds).as_bytes(), 0o700);
            self.module_result("runcmd", result);
        }
        if let Some(f) = self.before_final.take() {
            for l in f() {
                self.out.line(&l);
            }
        }
        self.banner("modules:final");
        if self.sem("package_update_upgrade_install", Freq::Instance)? {
            packages::run(&mut self.out, &cfg);
        }
        if self.sem("write_files_deferred", Freq::Instance)? {
            self.write_files(&cfg, true);
        }
        if self.sem("scripts_per_once", Freq::Once)? {
            self.run_dir("scripts_per_once", "var/lib/cloud/scripts/per-once");
        }
        self.run_dir("scripts_per_boot", "var/lib/cloud/scripts/per-boot");
        if self.sem("scripts_per_instance", Freq::Instance)? {
            self.run_dir("scripts_per_instance", "var/lib/cloud/scripts/per-instance");
        }
        if self.sem("scripts_user", Freq::Instance)? {
            self.run_dir("scripts_user", "var/lib/cloud/instance/scripts");
        }
        self.keys_to_console(&cfg);
        self.final_message(&cfg)
    }

    /// A failed module is logged; the boot goes on (as cloud-init's module runner does).
    fn module_result(&mut self, module: &str, result: Result<(), UserDataError>) {
        if let Err(e) = result {
            self.out
                .warn(module, &format!("module {module} failed: {e}"));
        }
    }

    fn layout(&mut self) -> Result<(), UserDataError> {
        for dir in ["sem", "scripts", "boothooks"] {
            mkdir(&self.inst.join(dir))?;
        }
        for dir in [
            "scripts/per-boot",
            "scripts/per-instance",
            "scripts/per-once",
            "sem",
            "data",
        ] {
            mkdir(&self.cloud.join(dir))?;
        }
        let link = self.cloud.join("instance");
        let target = PathBuf::from("instances").join(&self.ctx.instance_id);
        if std::fs::read_link(&link).ok().as_ref() != Some(&target) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).map_err(|e| UserDataError::io(&link, e))?;
        }
        let id_file = self.cloud.join("data/instance-id");
        if let Ok(prev) = std::fs::read_to_string(&id_file) {
            let prev_file = self.cloud.join("data/previous-instance-id");
            write_file(&prev_file, prev.as_bytes(), 0o644)?;
        }
        write_file(
            &id_file,
            format!("{}\n", self.ctx.instance_id).as_bytes(),
            0o644,
        )
    }

    fn banner(&mut self, stage: &str) {
        self.out.line(&format!(
            "Cloud-init v. {VERSION} running '{stage}' at {}. Up {:.2} seconds.",
            run::rfc2822_now(),
            run::uptime_seconds()
        ));
    }

    /// True when the module should run now; marks it as run.
    fn sem(&mut self, name: &str, freq: Freq) -> Result<bool, UserDataError> {
        let path = match freq {
            Freq::Instance => self.inst.join("sem").join(format!("config_{name}")),
            Freq::Once => self.cloud.join("sem").join(format!("config_{name}.once")),
        };
        if path.exists() {
            self.out.info(
                "helpers",
                &format!("{name} already ran ({})", path.display()),
            );
            return Ok(false);
        }
        write_file(&path, format!("{}\n", run::rfc2822_now()).as_bytes(), 0o644)?;
        Ok(true)
    }

    /// Saves and decodes the user data, writes its scripts, runs boothooks, merges configs.
    fn consume_user_data(&mut self) -> Result<CloudConfig, UserDataError> {
        let raw = self.ctx.user_data.clone().unwrap_or_default();
        write_file(&self.inst.join("user-data.txt"), &raw, 0o600)?;
        let root = self.root.clone();
        let fetch = move |url: &str| files::fetch(&root, url);
        let decoded = decode::decode(&raw, &fetch);
        for w in &decoded.warnings {
            self.out.warn("user_data", w);
        }
        let mut docs = Vec::new();
        let mut warnings = Vec::new();
        for part in &decoded.parts {
            let dir = match part.kind {
                PartKind::CloudConfig => {
                    match yaml::parse(&String::from_utf8_lossy(&part.body)) {
                        Ok(Some(doc)) => docs.push(doc),
                        Ok(None) => {}
                        Err(e) => {
                            warnings.push(format!("{}: invalid cloud-config: {e}", part.filename))
                        }
                    }
                    continue;
                }
                PartKind::Script => self.inst.join("scripts"),
                PartKind::BootHook => self.inst.join("boothooks"),
                PartKind::ScriptPerBoot => self.cloud.join("scripts/per-boot"),
                PartKind::ScriptPerInstance => self.cloud.join("scripts/per-instance"),
                PartKind::ScriptPerOnce => self.cloud.join("scripts/per-once"),
            };
            let mut body: &[u8] = &part.body;
            if part.kind == PartKind::BootHook && body.starts_with(b"#cloud-boothook") {
                let nl = body
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(body.len(), |i| i + 1);
                body = &body[nl..];
            }
            let path = dir.join(&part.filename);
            if let Err(e) = write_file(&path, body, 0o700) {
                self.out
                    .warn("user_data", &format!("cannot store {}: {e}", part.filename));
                continue;
            }
            if part.kind == PartKind::BootHook {
                let label = self.instance_path(&path);
                let mut cmd = run::script_command(&path);
                cmd.env("INSTANCE_ID", &self.ctx.instance_id);
                self.out.run_checked("boothook", &label, cmd);
            }
        }
        let merged = cloud_config::merge(docs, &mut warnings);
        let cfg = CloudConfig::from_node(&merged, &mut warnings);
        for w in &warnings {
            self.out.warn("cloud_config", w);
        }
        Ok(cfg)
    }

    /// The path as the instance sees it (for log lines).
    fn instance_path(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        format!("/{}", rel.display())
    }

    fn bootcmd(&mut self, cfg: &CloudConfig) -> Result<(), UserDataError> {
        if cfg.bootcmd.is_empty() {
            return Ok(());
        }
        let path = self.inst.join("bootcmd");
        write_file(
            &path,
            cloud_config::shellify(&cfg.bootcmd).as_bytes(),
            0o700,
        )?;
        let mut cmd = run::command("sh");
        cmd.arg(&path).env("INSTANCE_ID", &self.ctx.instance_id);
        self.out.run_checked("bootcmd", "bootcmd", cmd);
        Ok(())
    }

    fn write_files(&mut self, cfg: &CloudConfig, deferred: bool) {
        for item in cfg.write_files.iter().filter(|f| f.defer == deferred) {
            let mut content = match files::decode_content(item) {
                Ok(c) => c,
                Err(e) => {
                    self.out.warn("write_files", &format!("{}: {e}", item.path));
                    continue;
                }
            };
            if let Some(uri) = &item.source_uri {
                match files::fetch(&self.root, uri) {
                    Ok(c) => content = c,
                    Err(e) => self.out.warn(
                        "write_files",
                        &format!("{}: cannot fetch {uri}: {e}, using content", item.path),
                    ),
                }
            }
            match files::write_one(&self.root, item, &content) {
                Ok(()) => self
                    .out
                    .info("write_files", &format!("wrote {}", item.path)),
                Err(e) => self.out.warn("write_files", &e),
            }
        }
    }

    fn default_user_spec(&self) -> UserSpec {
        UserSpec {
            name: self.ctx.default_user.clone(),
            gecos: Some("EC2 Default User".into()),
            groups: ["adm", "wheel", "sudo", "systemd-journal"]
                .map(str::to_string)
                .to_vec(),
            groups_if_exist: true,
            sudo: vec!["ALL=(ALL) NOPASSWD:ALL".into()],
            lock_passwd: true,
            ..UserSpec::default()
        }
    }

    fn has_default_user(&self, cfg: &CloudConfig) -> bool {
        match &cfg.users {
            None => true,
            Some(list) => list.contains(&UserEntry::Default),
        }
    }

    fn users_groups(&mut self, cfg: &CloudConfig) -> Result<(), UserDataError> {
        let accounts = Accounts::new(&self.root);
        for (group, members) in &cfg.groups {
            accounts.ensure_group(group, false)?;
            accounts.add_members_each(members, group)?;
        }
        let entries = cfg
            .users
            .clone()
            .unwrap_or_else(|| vec![UserEntry::Default]);
        let header = format!(
            "# Created by cloud-init v. {VERSION} on {}\n",
            run::rfc2822_now()
        );
        for entry in entries {
            let spec = match entry {
                UserEntry::Default => self.default_user_spec(),
                UserEntry::User(spec) => *spec,
            };
            let (pw, created) = accounts.ensure_user(&spec)?;
            let verb = if created {
                "created"
            } else {
                "updated existing"
            };
            self.out.info(
                "users_groups",
                &format!("{verb} user {} (uid {})", pw.name, pw.uid),
            );
            accounts.add_sudo_rules(&pw.name, &spec.sudo, &header)?;
            accounts.authorize_keys(&pw, &spec.ssh_authorized_keys, None)?;
        }
        Ok(())
    }

    fn ssh(&mut self, cfg: &CloudConfig) -> Result<(), UserDataError> {
        let mut keys: Vec<String> = Vec::new();
        for k in self.ctx.public_keys.iter().chain(&cfg.ssh_authorized_keys) {
            let k = k.trim().to_string();
            if !k.is_empty() && !keys.contains(&k) {
                keys.push(k);
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let accounts = Accounts::new(&self.root);
        let mut user = None;
        if self.has_default_user(cfg) {
            match accounts.user(&self.ctx.default_user)? {
                Some(pw) => {
                    accounts.authorize_keys(&pw, &keys, None)?;
                    user = Some(pw.name);
                }
                None => self.out.warn(
                    "ssh",
                    &format!(
                        "default user {:?} does not exist, no keys installed for it",
                        self.ctx.default_user
                    ),
                ),
            }
        }
        let options = if cfg.disable_root {
            let opts = cfg
                .disable_root_opts
                .as_deref()
                .unwrap_or(DEFAULT_ROOT_OPTS);
            Some(
                opts.replace("$USER", user.as_deref().unwrap_or("NONE"))
                    .replace("$DISABLE_USER", "root"),
            )
        } else {
            None
        };
        let root_pw = accounts.user("root")?.unwrap_or(PwEntry {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
            shell: "/bin/sh".into(),
        });
        accounts.authorize_keys(&root_pw, &keys, options.as_deref())
    }

    /// Runs every file of a directory (relative to root) in name order.
    fn run_dir(&mut self, module: &str, dir: &str) {
        let dir = self.root.join(dir);
        let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        scripts.sort();
        for script in scripts {
            let label = self.instance_path(&script);
            self.out.info(module, &format!("running {label}"));
            let cmd = run::script_command(&script);
            self.out.run_checked(module, &label, cmd);
        }
    }

    fn keys_to_console(&mut self, cfg: &CloudConfig) {
        let dir = self.root.join(
            self.ctx
                .host_key_dir
                .strip_prefix("/")
                .unwrap_or(&self.ctx.host_key_dir),
        );
        let lines = fingerprints::console_block(
            &dir,
            &self.ctx.hostname,
            time::OffsetDateTime::now_utc(),
            &cfg.ssh_fp_console_blacklist,
            &cfg.ssh_key_console_blacklist,
        );
        for line in lines {
            self.out.line(&line);
        }
    }

    fn final_message(&mut self, cfg: &CloudConfig) -> Result<(), UserDataError> {
        let template = cfg
            .final_message
            .as_deref()
            .unwrap_or(DEFAULT_FINAL_MESSAGE);
        let uptime = format!("{:.2}", run::uptime_seconds());
        let timestamp = run::rfc2822_now();
        let datasource = datasource_name(&self.ctx.cloud_name);
        let subs = [
            ("version", VERSION),
            ("timestamp", &timestamp),
            ("datasource", &datasource),
            ("uptime", &uptime),
        ];
        let msg = render(template, &subs);
        for line in msg.lines() {
            self.out.line(line);
        }
        let finished = self.inst.join("boot-finished");
        write_file(
            &finished,
            format!("{uptime} - {timestamp} - v. {VERSION}\n").as_bytes(),
            0o644,
        )
    }
}

impl Accounts {
    fn add_members_each(&self, members: &[String], group: &str) -> Result<(), UserDataError> {
        for m in members {
            self.add_members(m, &[group.to_string()])?;
        }
        Ok(())
    }
}

/// `ec2lab` → `DataSourceEc2lab`.
fn datasource_name(cloud: &str) -> String {
    let mut chars = cloud.chars();
    let first = chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>())
        .unwrap_or_default();
    format!("DataSource{first}{}", chars.as_str())
}

/// Substitutes `{{ name }}`, `$name`, `${name}` and their upper-case forms.
pub fn render(template: &str, subs: &[(&str, &str)]) -> String {
    let mut text = template
        .strip_prefix("## template: jinja")
        .map(|t| t.trim_start_matches(['\r', '\n']))
        .unwrap_or(template)
        .to_string();
    for (name, value) in subs {
        let upper = name.to_uppercase();
        for n in [name.to_string(), upper] {
            for pattern in [
                format!("{{{{{n}}}}}"),
                format!("{{{{ {n} }}}}"),
                format!("${{{n}}}"),
                format!("${n}"),
            ] {
                text = text.replace(&pattern, value);
            }
        }
    }
    text
}
