//! `ec2lab ssh NAME|ID [-- SSH ARGS…]`: finds the instance's public IP, its AMI's default user
//! and the key pair's `.pem` in `keys/`, then runs the system's OpenSSH client (`exec`, so the
//! exit status and terminal are ssh's own). `--print` shows the command instead.
//!
//! Order: resolve the instance (id or Name tag) → must be running with a public IP → user
//! (`--user`, else the AMI's default user) → key (`--key FILE`, else `keys/<KeyName>.pem`; a
//! lone `.ppk` is explained, since OpenSSH cannot read it) → port from `daemon.json`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::instance::{default_user, resolve_running};
use super::{CliError, Client, Common};
use crate::datadir::DataDir;

#[derive(Debug, Args)]
pub struct SshArgs {
    /// Instance id or Name tag.
    pub instance: String,
    /// Log in as this user (default: the AMI's default user, e.g. ec2-user).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Private key file (default: keys/<KeyName>.pem).
    #[arg(long, short = 'i')]
    pub key: Option<PathBuf>,
    /// Where key files are looked for.
    #[arg(long, default_value = "keys")]
    pub keys_dir: PathBuf,
    /// Print the ssh command instead of running it.
    #[arg(long)]
    pub print: bool,
    /// Extra arguments for ssh (after `--`), e.g. a command to run.
    #[arg(last = true)]
    pub ssh_args: Vec<String>,
}

/// What `ec2lab ssh` needs to know about the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub ip: String,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
}

/// The ssh argv (without the program name) for a target.
pub fn ssh_argv(t: &SshTarget, extra: &[String]) -> Vec<String> {
    let mut v = vec!["-i".to_string(), t.key.display().to_string()];
    if t.port != 22 {
        v.extend(["-p".to_string(), t.port.to_string()]);
    }
    v.push(format!("{}@{}", t.user, t.ip));
    v.extend(extra.iter().cloned());
    v
}

/// Shell-quotes one word for `--print`.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The key file for `key_name`: `<dir>/<name>.pem`; a `.ppk` alone is an error that says why.
pub fn find_key(dir: &Path, key_name: &str) -> Result<PathBuf, CliError> {
    let pem = dir.join(format!("{key_name}.pem"));
    if pem.exists() {
        return Ok(pem);
    }
    let ppk = dir.join(format!("{key_name}.ppk"));
    if ppk.exists() {
        return Err(CliError::Setup(format!(
            "{} is a PuTTY key, which OpenSSH cannot use: convert it with `ec2lab key convert {} --to pem --out {}` (or use plink -i {})",
            ppk.display(),
            ppk.display(),
            pem.display(),
            ppk.display()
        )));
    }
    Err(CliError::Setup(format!(
        "no key file {} for key pair '{key_name}' (pass --key FILE)",
        pem.display()
    )))
}

pub fn run(common: &Common, a: SshArgs) -> Result<(), CliError> {
    let client = Client::new(&common.data_dir)?;
    let (inst, id) = resolve_running(&client, &a.instance)?;
    let ip = inst.text_of("ipAddress");
    if ip.is_empty() {
        return Err(CliError::Setup(format!(
            "instance {id} has no public IP address"
        )));
    }
    let user = a
        .user
        .unwrap_or_else(|| default_user(&client, &inst.text_of("imageId")));
    let key = match a.key {
        Some(k) => k,
        None => {
            let name = inst.text_of("keyName");
            if name.is_empty() {
                return Err(CliError::Setup(format!(
                    "instance {id} was launched without a key pair (pass --key FILE)"
                )));
            }
            find_key(&a.keys_dir, &name)?
        }
    };
    let port = DataDir::new(&common.data_dir)
        .daemon_info()
        .map(|i| i.ssh_port)
        .unwrap_or(22);
    let target = SshTarget {
        ip,
        port,
        user,
        key,
    };
    let argv = ssh_argv(&target, &a.ssh_args);
    if a.print {
        let words: Vec<String> = std::iter::once("ssh".to_string())
            .chain(argv.iter().map(|w| quote(w)))
            .collect();
        println!("{}", words.join(" "));
        return Ok(());
    }
    let err = std::process::Command::new("ssh").args(&argv).exec();
    Err(CliError::Setup(format!("cannot run ssh: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_and_quoting() {
        let t = SshTarget {
            ip: "127.100.0.7".into(),
            port: 2222,
            user: "ec2-user".into(),
            key: PathBuf::from("keys/web.pem"),
        };
        assert_eq!(
            ssh_argv(&t, &["uptime".into()]),
            [
                "-i",
                "keys/web.pem",
                "-p",
                "2222",
                "ec2-user@127.100.0.7",
                "uptime"
            ]
        );
        let t22 = SshTarget { port: 22, ..t };
        assert_eq!(
            ssh_argv(&t22, &[]),
            ["-i", "keys/web.pem", "ec2-user@127.100.0.7"]
        );
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("keys/web.pem"), "keys/web.pem");
    }

    #[test]
    fn ppk_only_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.ppk"), "x").unwrap();
        let e = find_key(dir.path(), "k").unwrap_err().to_string();
        assert!(
            e.contains("PuTTY key") && e.contains("ec2lab key convert"),
            "{e}"
        );
        std::fs::write(dir.path().join("k.pem"), "x").unwrap();
        assert_eq!(find_key(dir.path(), "k").unwrap(), dir.path().join("k.pem"));
        assert!(find_key(dir.path(), "nope").is_err());
    }
}
