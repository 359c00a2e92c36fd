//! `ec2lab key …`: key pairs through the API, and `convert`, which does puttygen's job offline.
//! Private keys are written once, 0600, into `keys/NAME.pem|.ppk` (or `--out`); an existing file
//! is never overwritten without `--force`, and the check happens before the key pair is created.
//! `create` also records where it saved the key (`keyfiles::record`), for `ec2lab ssh`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use clap::Subcommand;

use super::output::Rows;
use super::{CliError, Common, keyfiles};
use crate::keys::{PpkVersion, PrivateKey, PublicKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyFormatArg {
    Pem,
    Ppk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyTypeArg {
    Rsa,
    Ed25519,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key pair; the private key is saved to keys/NAME.pem (or .ppk), mode 0600.
    Create {
        name: String,
        #[arg(long = "type", value_enum, default_value_t = KeyTypeArg::Rsa)]
        key_type: KeyTypeArg,
        #[arg(long, value_enum, default_value_t = KeyFormatArg::Pem)]
        format: KeyFormatArg,
        /// PuTTY key file version (with --format ppk).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
        ppk_version: u8,
        /// Protect the .ppk with the passphrase in this file (with --format ppk).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Where to save the private key (default: keys/NAME.pem|.ppk).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Import a public key (OpenSSH .pub, PEM/DER public key, RFC 4716, or derive it from a
    /// private key file .pem/.ppk — the private key never leaves this machine).
    Import {
        name: String,
        file: PathBuf,
        /// Passphrase file, when FILE is an encrypted .ppk.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// List key pairs.
    #[command(alias = "ls")]
    List {
        /// Also show each public key.
        #[arg(long)]
        public_key: bool,
    },
    /// Delete a key pair (by name or key- id). Local key files are kept.
    #[command(alias = "rm")]
    Delete { name: String },
    /// Convert a private key file: pem ↔ ppk, ppk v2 ↔ v3, add or remove a passphrase (offline).
    Convert {
        file: PathBuf,
        #[arg(long, value_enum)]
        to: KeyFormatArg,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
        ppk_version: u8,
        /// Protect the new .ppk with the passphrase in this file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// The passphrase of the input file, when it is encrypted.
        #[arg(long)]
        old_passphrase_file: Option<PathBuf>,
        /// Comment stored in the .ppk (default: the file name without extension).
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
}

pub fn run(common: &Common, cmd: KeyCommand) -> Result<(), CliError> {
    match cmd {
        KeyCommand::Create {
            name,
            key_type,
            format,
            ppk_version,
            passphrase_file,
            out,
            force,
        } => {
            let ext = match format {
                KeyFormatArg::Pem => "pem",
                KeyFormatArg::Ppk => "ppk",
            };
            let path = out.unwrap_or_else(|| PathBuf::from("keys").join(format!("{name}.{ext}")));
            if path.exists() && !force {
                return Err(CliError::Setup(format!(
                    "{} already exists: not overwriting it (use --force, or --out another file)",
                    path.display()
                )));
            }
            if passphrase_file.is_some() && format != KeyFormatArg::Ppk {
                return Err(CliError::Setup(
                    "--passphrase-file needs --format ppk".into(),
                ));
            }
            let passphrase = passphrase_file
                .as_deref()
                .map(read_passphrase)
                .transpose()?;
            // The server writes PPK v3 without a passphrase; anything else is converted here from
            // the PEM it returns, so the private key still never leaves this machine and the lab.
            let convert_locally =
                format == KeyFormatArg::Ppk && (ppk_version == 2 || passphrase.is_some());
            let wire_format = if format == KeyFormatArg::Ppk && !convert_locally {
                "ppk"
            } else {
                "pem"
            };
            let client = common.client()?;
            let kt = match key_type {
                KeyTypeArg::Rsa => "rsa",
                KeyTypeArg::Ed25519 => "ed25519",
            };
            let r = client.call(
                "CreateKeyPair",
                &[
                    ("KeyName".into(), name.clone()),
                    ("KeyType".into(), kt.into()),
                    ("KeyFormat".into(), wire_format.into()),
                ],
            )?;
            let mut material = r.text_of("keyMaterial");
            if convert_locally {
                let key = PrivateKey::from_any(material.as_bytes(), None).map_err(|e| {
                    CliError::Protocol(format!("the daemon returned an unreadable key: {e}"))
                })?;
                material = key.to_ppk(ppk_version_of(ppk_version), &name, passphrase.as_deref());
            }
            write_private(&path, material.as_bytes(), force)?;
            keyfiles::give_to_invoking_user(&path);
            if let Err(e) = keyfiles::record(&path) {
                eprintln!(
                    "warning: cannot record where the key is saved ({e}): ec2lab ssh finds it from this directory only"
                );
            }
            let mut rows = Rows::new(&["NAME", "KEY PAIR ID", "FINGERPRINT", "SAVED TO"]);
            rows.push(vec![
                r.text_of("keyName"),
                r.text_of("keyPairId"),
                r.text_of("keyFingerprint"),
                path.display().to_string(),
            ]);
            rows.print(common.output);
            Ok(())
        }
        KeyCommand::Import {
            name,
            file,
            passphrase_file,
        } => {
            let bytes = fs::read(&file)
                .map_err(|e| CliError::Setup(format!("cannot read {}: {e}", file.display())))?;
            let passphrase = passphrase_file
                .as_deref()
                .map(read_passphrase)
                .transpose()?;
            // A private key file is turned into its public key here; only that is sent.
            let material = match PrivateKey::from_any(&bytes, passphrase.as_deref()) {
                Ok(k) => k.public_key().to_openssh().into_bytes(),
                Err(_) if PublicKey::parse_import(&bytes).is_ok() => bytes,
                Err(e) if looks_private(&bytes) => {
                    return Err(CliError::Setup(format!(
                        "cannot read private key {}: {e}",
                        file.display()
                    )));
                }
                Err(_) => bytes,
            };
            let client = common.client()?;
            let r = client.call(
                "ImportKeyPair",
                &[
                    ("KeyName".into(), name),
                    (
                        "PublicKeyMaterial".into(),
                        base64::engine::general_purpose::STANDARD.encode(material),
                    ),
                ],
            )?;
            let mut rows = Rows::new(&["NAME", "KEY PAIR ID", "FINGERPRINT"]);
            rows.push(vec![
                r.text_of("keyName"),
                r.text_of("keyPairId"),
                r.text_of("keyFingerprint"),
            ]);
            rows.print(common.output);
            Ok(())
        }
        KeyCommand::List { public_key } => {
            let client = common.client()?;
            let mut params = Vec::new();
            if public_key {
                params.push(("IncludePublicKey".to_string(), "true".to_string()));
            }
            let r = client.call("DescribeKeyPairs", &params)?;
            let cols: &[&'static str] = if public_key {
                &[
                    "NAME",
                    "KEY PAIR ID",
                    "TYPE",
                    "FINGERPRINT",
                    "CREATED",
                    "PUBLIC KEY",
                ]
            } else {
                &["NAME", "KEY PAIR ID", "TYPE", "FINGERPRINT", "CREATED"]
            };
            let mut rows = Rows::new(cols);
            for k in r.items("keySet") {
                let mut row = vec![
                    k.text_of("keyName"),
                    k.text_of("keyPairId"),
                    k.text_of("keyType"),
                    k.text_of("keyFingerprint"),
                    k.text_of("createTime"),
                ];
                if public_key {
                    row.push(k.text_of("publicKey"));
                }
                rows.push(row);
            }
            rows.print(common.output);
            Ok(())
        }
        KeyCommand::Delete { name } => {
            let client = common.client()?;
            let param = if name.starts_with("key-") {
                "KeyPairId"
            } else {
                "KeyName"
            };
            let r = client.call("DeleteKeyPair", &[(param.into(), name.clone())])?;
            if r.text_of("keyPairId").is_empty() {
                eprintln!("no key pair named {name} (nothing to delete)");
            } else {
                eprintln!(
                    "deleted key pair {name} ({}); local key files are kept",
                    r.text_of("keyPairId")
                );
            }
            Ok(())
        }
        KeyCommand::Convert {
            file,
            to,
            ppk_version,
            passphrase_file,
            old_passphrase_file,
            comment,
            out,
            force,
        } => {
            let bytes = fs::read(&file)
                .map_err(|e| CliError::Setup(format!("cannot read {}: {e}", file.display())))?;
            let old = old_passphrase_file
                .as_deref()
                .map(read_passphrase)
                .transpose()?;
            let key = PrivateKey::from_any(&bytes, old.as_deref()).map_err(|e| {
                CliError::Setup(format!("cannot read private key {}: {e}", file.display()))
            })?;
            let new_pass = passphrase_file
                .as_deref()
                .map(read_passphrase)
                .transpose()?;
            let ext = match to {
                KeyFormatArg::Pem => "pem",
                KeyFormatArg::Ppk => "ppk",
            };
            let out = out.unwrap_or_else(|| file.with_extension(ext));
            if out == file {
                return Err(CliError::Setup(format!(
                    "the output would overwrite {}: give --out",
                    file.display()
                )));
            }
            let text = match to {
                KeyFormatArg::Pem => {
                    if new_pass.is_some() {
                        return Err(CliError::Setup(
                            "--passphrase-file applies to --to ppk only".into(),
                        ));
                    }
                    key.to_pem()
                }
                KeyFormatArg::Ppk => {
                    let comment = comment.unwrap_or_else(|| {
                        file.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    });
                    key.to_ppk(ppk_version_of(ppk_version), &comment, new_pass.as_deref())
                }
            };
            write_private(&out, text.as_bytes(), force)?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
    }
}

fn ppk_version_of(v: u8) -> PpkVersion {
    if v == 2 {
        PpkVersion::V2
    } else {
        PpkVersion::V3
    }
}

fn looks_private(bytes: &[u8]) -> bool {
    let s = String::from_utf8_lossy(bytes);
    s.contains("PRIVATE KEY") || s.starts_with("PuTTY-User-Key-File")
}

/// The passphrase in a file, without a trailing newline (as puttygen reads it).
fn read_passphrase(path: &Path) -> Result<Vec<u8>, CliError> {
    let mut p = fs::read(path)
        .map_err(|e| CliError::Setup(format!("cannot read {}: {e}", path.display())))?;
    while p.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        p.pop();
    }
    Ok(p)
}

/// Writes a private key file with mode 0600, creating its directory (0700) if needed.
fn write_private(path: &Path, content: &[u8], force: bool) -> Result<(), CliError> {
    let err = |e: std::io::Error| CliError::Setup(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(content).map_err(err)?;
    Ok(())
}
