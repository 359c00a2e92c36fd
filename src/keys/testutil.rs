//! Test helpers: locating the shared key fixtures (which live outside the crate, so the path
//! must work from the main crate, a scratch crate and CI), and running the real tools
//! (puttygen, ssh-keygen, openssl) with the skip-locally / fail-in-CI rule.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The fixture directory: `$EC2LAB_FIXTURES`, else the crate's copy in `tests/fixtures/keys`,
/// else `<manifest>/../shared/fixtures/keys`.
pub(crate) fn fixtures_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("EC2LAB_FIXTURES").map(PathBuf::from),
        Some(manifest.join("tests/fixtures/keys")),
        Some(manifest.join("../shared/fixtures/keys")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("FINGERPRINTS.txt").is_file())
        .unwrap_or_else(|| {
            panic!(
                "key fixtures not found: set EC2LAB_FIXTURES or put shared/ beside {}",
                manifest.display()
            )
        })
}

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub(crate) fn fixture_str(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap_or_else(|e| panic!("{name} is not utf-8: {e}"))
}

/// The fixture passphrase of every `*_pass.ppk`.
pub(crate) const FIXTURE_PASS: &[u8] = b"lab-pass";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `Some(name)` when the tool is on PATH. Otherwise the test is skipped with a printed
/// reason, except in CI (`CI=true`), where a missing tool fails the test.
pub(crate) fn tool(name: &'static str, package: &str) -> Option<&'static str> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    if found {
        return Some(name);
    }
    assert!(
        !in_ci(),
        "{name} is required in CI: apt-get install -y {package}"
    );
    eprintln!("skipping: {name} not installed (apt-get install -y {package})");
    None
}

/// Runs a command (optionally feeding stdin); panics with its stderr unless it succeeds.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let output = run_raw(program, args, stdin);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

pub(crate) fn run_raw(program: &str, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .unwrap_or_else(|e| panic!("write stdin of {program}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {program}: {e}"))
}

/// Writes `data` to `dir/name` with mode 0600 (ssh-keygen refuses group/world-readable
/// private keys) and returns the path as a string.
pub(crate) fn write_file(dir: &Path, name: &str, data: &[u8]) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path.to_string_lossy().into_owned()
}

/// The first two fields (`type base64`) of an authorized_keys line, i.e. without comment.
pub(crate) fn key_fields(line: &str) -> String {
    line.split_ascii_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create temp dir")
}

pub(crate) fn read_path(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

pub(crate) fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("tool output is utf-8")
}

/// The decoded `Private-Lines` block of a PPK file.
pub(crate) fn ppk_private_blob(ppk: &str) -> Vec<u8> {
    use base64::Engine as _;
    let mut lines = ppk.lines();
    let count: usize = lines
        .by_ref()
        .find_map(|l| l.strip_prefix("Private-Lines: "))
        .and_then(|n| n.parse().ok())
        .expect("Private-Lines header");
    base64::engine::general_purpose::STANDARD
        .decode(lines.take(count).collect::<String>())
        .expect("private base64")
}
