//! The `#cloud-config` subset ec2lab runs, read from one or more YAML parts.
//!
//! Parts are merged the cloud-init default way (a later part's top-level key replaces an
//! earlier one's; `merge_how`/`merge_type` with `list(append)` concatenates lists), then typed
//! into [`CloudConfig`]. Values of the wrong shape and keys ec2lab does not implement become
//! warnings; they never stop the boot.

use crate::userdata::yaml::Node;

/// A `bootcmd`/`runcmd` entry: a string for `sh`, or an argv list.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Shell(String),
    Argv(Vec<String>),
}

/// One `write_files` item.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteFile {
    pub path: String,
    pub content: Vec<u8>,
    pub encoding: String,
    pub owner: String,
    /// `None` = cloud-init's default 0644.
    pub permissions: Option<u32>,
    pub append: bool,
    pub defer: bool,
    pub source_uri: Option<String>,
}

/// One `users` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum UserEntry {
    /// The distro default user (the AMI's, e.g. `ec2-user`).
    Default,
    User(Box<UserSpec>),
}

/// A user to create or update.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserSpec {
    pub name: String,
    pub gecos: Option<String>,
    pub groups: Vec<String>,
    /// Add to `groups` only when the group already exists (the default user's groups).
    pub groups_if_exist: bool,
    pub sudo: Vec<String>,
    pub shell: Option<String>,
    pub lock_passwd: bool,
    pub ssh_authorized_keys: Vec<String>,
    pub homedir: Option<String>,
    pub primary_group: Option<String>,
    pub system: bool,
    pub uid: Option<u32>,
    pub hashed_passwd: Option<String>,
    pub no_create_home: bool,
}

/// A package name with an optional version.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pub name: String,
    pub version: Option<String>,
}

/// The typed config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CloudConfig {
    pub bootcmd: Vec<Cmd>,
    pub runcmd: Option<Vec<Cmd>>,
    pub write_files: Vec<WriteFile>,
    /// `None` = key absent = `[default]`.
    pub users: Option<Vec<UserEntry>>,
    /// Groups to create, with members.
    pub groups: Vec<(String, Vec<String>)>,
    pub ssh_authorized_keys: Vec<String>,
    pub disable_root: bool,
    pub disable_root_opts: Option<String>,
    pub packages: Vec<Package>,
    pub package_update: bool,
    pub package_upgrade: bool,
    pub final_message: Option<String>,
    pub ssh_fp_console_blacklist: Vec<String>,
    pub ssh_key_console_blacklist: Vec<String>,
}

const KNOWN: &[&str] = &[
    "bootcmd",
    "runcmd",
    "write_files",
    "users",
    "groups",
    "ssh_authorized_keys",
    "disable_root",
    "disable_root_opts",
    "packages",
    "package_update",
    "package_upgrade",
    "apt_update",
    "apt_upgrade",
    "final_message",
    "ssh_fp_console_blacklist",
    "ssh_key_console_blacklist",
    "merge_how",
    "merge_type",
];

/// Merges parsed `#cloud-config` documents in order.
pub fn merge(docs: Vec<Node>, warnings: &mut Vec<String>) -> Node {
    let mut merged: Vec<(String, Node)> = Vec::new();
    for doc in docs {
        let Node::Map(entries) = &doc else {
            warnings.push("cloud-config part is not a mapping, ignored".into());
            continue;
        };
        let append = list_append(&doc);
        for (key, value) in entries.iter().cloned() {
            match merged.iter_mut().find(|(k, _)| *k == key) {
                Some((_, old)) => match (old, value) {
                    (Node::Seq(old), Node::Seq(new)) if append => old.extend(new),
                    (old, new) => *old = new,
                },
                None => merged.push((key, value)),
            }
        }
    }
    Node::Map(merged)
}

fn list_append(doc: &Node) -> bool {
    let how = doc.get("merge_how").or_else(|| doc.get("merge_type"));
    match how {
        Some(Node::Seq(items)) => items.iter().any(|item| {
            item.get("name").and_then(Node::as_str) == Some("list")
                && item
                    .get("settings")
                    .map(|s| {
                        s.as_str_list()
                            .iter()
                            .any(|v| v == "append" || v == "prepend")
                    })
                    .unwrap_or(false)
        }),
        Some(n) => n
            .as_str()
            .is_some_and(|s| s.replace(' ', "").contains("list(append")),
        None => false,
    }
}

impl CloudConfig {
    /// Types a merged document; wrong shapes become warnings.
    pub fn from_node(doc: &Node, warnings: &mut Vec<String>) -> CloudConfig {
        let mut cfg = CloudConfig {
            disable_root: true,
            ..CloudConfig::default()
        };
        let Node::Map(entries) = doc else {
            return cfg;
        };
        let unknown: Vec<&str> = entries
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !KNOWN.contains(k))
            .collect();
        if !unknown.is_empty() {
            warnings.push(format!(
                "cloud-config keys not supported by ec2lab, ignored: {}",
                unknown.join(", ")
            ));
        }
        let flag = |key: &str| doc.get(key).and_then(Node::as_bool).unwrap_or(false);
        if let Some(n) = doc.get("bootcmd") {
            cfg.bootcmd = commands("bootcmd", n, warnings);
        }
        cfg.runcmd = doc.get("runcmd").map(|n| commands("runcmd", n, warnings));
        if let Some(Node::Seq(items)) = doc.get("write_files") {
            cfg.write_files = items
                .iter()
                .filter_map(|i| write_file(i, warnings))
                .collect();
        }
        cfg.users = doc.get("users").map(|n| users(n, warnings));
        if let Some(n) = doc.get("groups") {
            cfg.groups = groups(n);
        }
        if let Some(n) = doc.get("ssh_authorized_keys") {
            cfg.ssh_authorized_keys = n.as_str_list_lines();
        }
        if let Some(b) = doc.get("disable_root").and_then(Node::as_bool) {
            cfg.disable_root = b;
        }
        cfg.disable_root_opts = text(doc, "disable_root_opts");
        if let Some(Node::Seq(items)) = doc.get("packages") {
            cfg.packages = items.iter().filter_map(package).collect();
        }
        cfg.package_update = flag("package_update") || flag("apt_update");
        cfg.package_upgrade = flag("package_upgrade") || flag("apt_upgrade");
        cfg.final_message = text(doc, "final_message");
        if let Some(n) = doc.get("ssh_fp_console_blacklist") {
            cfg.ssh_fp_console_blacklist = n.as_str_list();
        }
        if let Some(n) = doc.get("ssh_key_console_blacklist") {
            cfg.ssh_key_console_blacklist = n.as_str_list();
        }
        cfg
    }
}

impl Node {
    /// Key lists: a sequence, or a single key string (never split on commas).
    fn as_str_list_lines(&self) -> Vec<String> {
        match self {
            Node::Seq(_) => self.as_str_list(),
            _ => self
                .as_str()
                .map(|s| vec![s.to_string()])
                .unwrap_or_default(),
        }
    }
}

fn text(node: &Node, key: &str) -> Option<String> {
    node.get(key).and_then(Node::as_str).map(str::to_string)
}

fn commands(key: &str, node: &Node, warnings: &mut Vec<String>) -> Vec<Cmd> {
    let items = match node {
        Node::Seq(items) => items.as_slice(),
        _ if node.is_null() => return Vec::new(),
        _ => {
            warnings.push(format!("{key} is not a list, ignored"));
            return Vec::new();
        }
    };
    items
        .iter()
        .filter_map(|item| match item {
            Node::Seq(args) => Some(Cmd::Argv(
                args.iter()
                    .map(|a| a.as_str().unwrap_or_default().to_string())
                    .collect(),
            )),
            Node::Scalar(_) => item.as_str().map(|s| Cmd::Shell(s.to_string())),
            Node::Map(_) => {
                warnings.push(format!("{key} entry is a mapping, ignored"));
                None
            }
        })
        .collect()
}

fn write_file(item: &Node, warnings: &mut Vec<String>) -> Option<WriteFile> {
    let Some(path) = text(item, "path") else {
        warnings.push("write_files entry without a path, ignored".into());
        return None;
    };
    let permissions = match item.get("permissions") {
        None => None,
        Some(n) if n.is_null() => None,
        Some(n) => {
            // cloud-init: numbers are taken as they are, strings are read as octal.
            let parsed = match n {
                Node::Scalar(s) if s.plain => n.as_int(),
                _ => n.as_str().and_then(|s| {
                    let s = s.trim();
                    let s = s.strip_prefix("0o").unwrap_or(s);
                    i64::from_str_radix(s, 8).ok()
                }),
            };
            match parsed.and_then(|p| u32::try_from(p).ok()) {
                Some(p) => Some(p & 0o7777),
                None => {
                    warnings.push(format!(
                        "write_files {path}: invalid permissions, using 0644"
                    ));
                    None
                }
            }
        }
    };
    Some(WriteFile {
        content: item
            .get("content")
            .and_then(Node::as_bytes)
            .unwrap_or_default(),
        encoding: text(item, "encoding")
            .unwrap_or_default()
            .to_ascii_lowercase(),
        owner: text(item, "owner").unwrap_or_else(|| "root:root".into()),
        permissions,
        append: item.get("append").and_then(Node::as_bool).unwrap_or(false),
        defer: item.get("defer").and_then(Node::as_bool).unwrap_or(false),
        source_uri: item
            .get("source")
            .and_then(|s| s.get("uri").or(Some(s)))
            .and_then(Node::as_str)
            .map(str::to_string),
        path,
    })
}

fn users(node: &Node, warnings: &mut Vec<String>) -> Vec<UserEntry> {
    let items: Vec<Node> = match node {
        Node::Seq(items) => items.clone(),
        Node::Scalar(_) => node
            .as_str_list()
            .into_iter()
            .map(|name| {
                Node::Scalar(crate::userdata::yaml::Scalar {
                    text: name,
                    plain: false,
                    binary: false,
                })
            })
            .collect(),
        Node::Map(entries) => entries
            .iter()
            .map(|(name, cfg)| {
                let mut cfg = match cfg {
                    Node::Map(e) => e.clone(),
                    _ => Vec::new(),
                };
                cfg.push(("name".into(), scalar(name)));
                Node::Map(cfg)
            })
            .collect(),
    };
    let mut out = Vec::new();
    for item in &items {
        if item.as_str() == Some("default") {
            out.push(UserEntry::Default);
        } else if let Some(name) = item.as_str() {
            out.push(UserEntry::User(Box::new(UserSpec {
                name: name.to_string(),
                lock_passwd: true,
                ..UserSpec::default()
            })));
        } else if let Some(name) = text(item, "name") {
            if name == "default" {
                out.push(UserEntry::Default);
                continue;
            }
            if item.get("plain_text_passwd").is_some()
                || item
                    .get("passwd")
                    .is_some_and(|p| p.as_str().is_some_and(|s| !s.starts_with('$')))
            {
                warnings.push(format!(
                    "users {name}: plain text passwords are not supported by ec2lab, ignored"
                ));
            }
            let sudo = match item.get("sudo") {
                Some(n) if n.as_bool() == Some(false) || n.is_null() => Vec::new(),
                Some(Node::Seq(_)) => item.get("sudo").unwrap().as_str_list(),
                Some(n) => n.as_str().map(|s| vec![s.to_string()]).unwrap_or_default(),
                None => Vec::new(),
            };
            out.push(UserEntry::User(Box::new(UserSpec {
                gecos: text(item, "gecos"),
                groups: item
                    .get("groups")
                    .map(Node::as_str_list)
                    .unwrap_or_default(),
                groups_if_exist: false,
                sudo,
                shell: text(item, "shell"),
                lock_passwd: item
                    .get("lock_passwd")
                    .and_then(Node::as_bool)
                    .unwrap_or(true),
                ssh_authorized_keys: item
                    .get("ssh_authorized_keys")
                    .map(Node::as_str_list_lines)
                    .unwrap_or_default(),
                homedir: text(item, "homedir"),
                primary_group: text(item, "primary_group"),
                system: item.get("system").and_then(Node::as_bool).unwrap_or(false),
                uid: item
                    .get("uid")
                    .and_then(Node::as_int)
                    .and_then(|u| u32::try_from(u).ok()),
                hashed_passwd: text(item, "hashed_passwd")
                    .or_else(|| text(item, "passwd").filter(|p| p.starts_with('$') || p == "*")),
                no_create_home: item
                    .get("no_create_home")
                    .and_then(Node::as_bool)
                    .unwrap_or(false),
                name,
            })));
        } else {
            warnings.push("users entry without a name, ignored".into());
        }
    }
    out
}

fn scalar(text: &str) -> Node {
    Node::Scalar(crate::userdata::yaml::Scalar {
        text: text.to_string(),
        plain: false,
        binary: false,
    })
}

fn groups(node: &Node) -> Vec<(String, Vec<String>)> {
    let entry = |item: &Node| -> Vec<(String, Vec<String>)> {
        match item {
            Node::Map(entries) => entries
                .iter()
                .map(|(name, members)| (name.clone(), members.as_str_list()))
                .collect(),
            _ => item
                .as_str_list()
                .into_iter()
                .map(|g| (g, Vec::new()))
                .collect(),
        }
    };
    match node {
        Node::Seq(items) => items.iter().flat_map(entry).collect(),
        _ => entry(node),
    }
}

fn package(item: &Node) -> Option<Package> {
    match item {
        Node::Seq(pair) => Some(Package {
            name: pair.first()?.as_str()?.to_string(),
            version: pair.get(1).and_then(Node::as_str).map(str::to_string),
        }),
        _ => item.as_str().map(|name| Package {
            name: name.to_string(),
            version: None,
        }),
    }
}

/// cloud-init's `shellify`: a `#!/bin/sh` script, strings as they are, argv lists quoted.
pub fn shellify(cmds: &[Cmd]) -> String {
    let mut out = String::from("#!/bin/sh\n");
    for cmd in cmds {
        match cmd {
            Cmd::Shell(s) => out.push_str(s),
            Cmd::Argv(args) => {
                let quoted: Vec<String> = args
                    .iter()
                    .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                    .collect();
                out.push_str(&quoted.join(" "));
            }
        }
        out.push('\n');
    }
    out
}
