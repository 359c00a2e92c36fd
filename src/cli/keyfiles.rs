//! Where private key files are found for `ec2lab ssh`, and where `ec2lab key create` records
//! them. "The invoking user" is `SUDO_USER` under sudo (its home from the password database),
//! else the user whose `HOME` this is.
//!
//! Search order for key pair NAME: `--keys-dir`, `./keys/`, `./`, `~/.ssh/`, then the record
//! dir `~/.local/state/ec2lab/keys/`, where `key create` leaves a symlink to every key it saves
//! (so `ec2lab ssh` finds it from any directory). The first `NAME.pem` wins; a lone `NAME.ppk`
//! is explained (OpenSSH cannot read it); finding none names every place looked in.

use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::CliError;

/// The record dir under a home.
const RECORD_DIR: &str = ".local/state/ec2lab/keys";

/// The invoking user under sudo: name, uid, gid (None when not run through sudo by another user).
fn sudo_user() -> Option<(String, u32, u32)> {
    let name = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty() && u != "root")?;
    let id = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    Some((name, id("SUDO_UID")?, id("SUDO_GID")?))
}

/// The invoking user's home directory.
pub fn invoking_home() -> Option<PathBuf> {
    if let Some((name, _, _)) = sudo_user() {
        return home_of(&name);
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A user's home from the password database.
fn home_of(user: &str) -> Option<PathBuf> {
    let c = CString::new(user).ok()?;
    // SAFETY: getpwnam with a valid C string; the result (static storage, valid until the next
    // call) is copied out at once, and the CLI is single-threaded here.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() || (*pw).pw_dir.is_null() {
            return None;
        }
        let dir = CStr::from_ptr((*pw).pw_dir).to_bytes().to_vec();
        Some(PathBuf::from(OsString::from_vec(dir)))
    }
}

/// Gives a path to the invoking user under sudo (no-op otherwise); the link itself, not its
/// target, for symlinks. A key file saved under sudo so becomes readable by the user's own ssh.
pub fn give_to_invoking_user(path: &Path) {
    let Some((_, uid, gid)) = sudo_user() else {
        return;
    };
    let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
}

/// The places searched for key files, in order.
pub fn search_dirs(keys_dir: Option<&Path>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = keys_dir.map(Path::to_path_buf).into_iter().collect();
    dirs.extend([PathBuf::from("keys"), PathBuf::from(".")]);
    if let Some(h) = home {
        dirs.extend([h.join(".ssh"), h.join(RECORD_DIR)]);
    }
    dirs
}

/// The key file for `key_name` in the first of `dirs` that has `<name>.pem`; a `.ppk` alone is
/// an error that says how to convert it, and none at all one that says where it looked.
pub fn find_key(dirs: &[PathBuf], key_name: &str) -> Result<PathBuf, CliError> {
    let pem_name = format!("{key_name}.pem");
    if let Some(pem) = dirs.iter().map(|d| d.join(&pem_name)).find(|f| f.exists()) {
        return Ok(pem);
    }
    let ppk_name = format!("{key_name}.ppk");
    if let Some(ppk) = dirs.iter().map(|d| d.join(&ppk_name)).find(|f| f.exists()) {
        let pem = ppk.with_extension("pem");
        return Err(CliError::Setup(format!(
            "{} is a PuTTY key, which OpenSSH cannot use: convert it with `ec2lab key convert {} --to pem --out {}` (or use plink -i {})",
            ppk.display(),
            ppk.display(),
            pem.display(),
            ppk.display()
        )));
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(CliError::Setup(format!(
        "no key file {pem_name} for key pair '{key_name}' in {} (pass --key FILE or --keys-dir DIR)",
        looked.join(", ")
    )))
}

/// Records a saved key file: a symlink to it, named like it, in the invoking user's record
/// dir (replacing an older one). Returns the link.
pub fn record(saved: &Path) -> Result<PathBuf, CliError> {
    let home = invoking_home()
        .ok_or_else(|| CliError::Setup("no home directory to record the key in".into()))?;
    let err = |p: &Path, e: std::io::Error| CliError::Setup(format!("{}: {e}", p.display()));
    let target = std::fs::canonicalize(saved).map_err(|e| err(saved, e))?;
    let name = target
        .file_name()
        .ok_or_else(|| CliError::Setup(format!("{} has no file name", target.display())))?;
    let dir = home.join(RECORD_DIR);
    // Each missing level is created (0700) and handed to the invoking user.
    let mut level = home.clone();
    for part in Path::new(RECORD_DIR).components() {
        level.push(part);
        if !level.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&level)
                .map_err(|e| err(&level, e))?;
            give_to_invoking_user(&level);
        }
    }
    let link = dir.join(name);
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).map_err(|e| err(&tmp, e))?;
    give_to_invoking_user(&tmp);
    std::fs::rename(&tmp, &link).map_err(|e| err(&link, e))?;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pem_wins_and_a_lone_ppk_is_explained() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        let e = find_key(&dirs, "k").unwrap_err().to_string();
        assert!(e.contains(&a.path().display().to_string()), "{e}");
        assert!(e.contains(&b.path().display().to_string()), "{e}");
        std::fs::write(b.path().join("k.ppk"), "x").unwrap();
        let e = find_key(&dirs, "k").unwrap_err().to_string();
        assert!(
            e.contains("PuTTY key") && e.contains("ec2lab key convert"),
            "{e}"
        );
        std::fs::write(b.path().join("k.pem"), "x").unwrap();
        assert_eq!(find_key(&dirs, "k").unwrap(), b.path().join("k.pem"));
        std::fs::write(a.path().join("k.pem"), "x").unwrap();
        assert_eq!(find_key(&dirs, "k").unwrap(), a.path().join("k.pem"));
    }

    #[test]
    fn search_order() {
        let d = search_dirs(Some(Path::new("/k")), Some(Path::new("/home/u")));
        let want: Vec<PathBuf> = [
            "/k",
            "keys",
            ".",
            "/home/u/.ssh",
            "/home/u/.local/state/ec2lab/keys",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(d, want);
    }
}
