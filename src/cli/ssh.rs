//! `ec2lab ssh NAME|ID [-- SSH ARGS…]`: finds the instance's public IP, its AMI's default user
//! and the key pair's `.pem` (where `keyfiles` says), then runs the system's OpenSSH client (`exec`, so the
//! exit status and terminal are ssh's own). `--print` shows the command instead.
//!
//! Order: resolve the instance (id or Name tag) → must be running with a public IP → user
//! (`--user`, else the AMI's default user) → key (`--key FILE`, else `<KeyName>.pem` found by
//! `keyfiles::find_key`) → port from `daemon.json`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::Args;

use super::instance::{default_user, resolve_running};
use super::{CliError, Common, keyfiles};
use crate::datadir::DataDir;

#[derive(Debug, Args)]
pub struct SshArgs {
    /// Instance id or Name tag.
    pub instance: String,
    /// Log in as this user (default: the AMI's default user, e.g. ec2-user).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Private key file (default: <KeyName>.pem, looked for in --keys-dir, ./keys, ., ~/.ssh
    /// and where `ec2lab key create` saved it).
    #[arg(long, short = 'i')]
    pub key: Option<PathBuf>,
    /// Look for key files here first.
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
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

pub fn run(common: &Common, a: SshArgs) -> Result<(), CliError> {
    let client = common.client()?;
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
            let home = keyfiles::invoking_home();
            let dirs = keyfiles::search_dirs(a.keys_dir.as_deref(), home.as_deref());
            keyfiles::find_key(&dirs, &name)?
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
}
