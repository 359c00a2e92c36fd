//! Tests of the userdata module: each boots a fake instance root in a temp directory.
//!
//! Scripts run on the host with the instance root as their working directory, so test scripts
//! write relative paths (`tmp/…`) to leave marks inside the temp root.

mod accounts;
mod config;
mod formats;
mod output;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::userdata::{BootContext, boot_with};

pub const ED25519_PUB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMOmxVKdj3yOf0jx0W+OsUnIZVceP7yRarEuJt6YJE3g lab-ed25519";
pub const ED25519_FP: &str =
    "256 SHA256:KhG9/UWafclfZeHx3bOTXrw47OE83Iec3A90ShM0JpY lab-ed25519 (ED25519)";
pub const RSA_PUB: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCVUesSAGnv/4whocOi4aCC/Q7R20BXY6Z82LjTQoLdJcTiTlrBsU7mJ2SltafxHiUFczOODZiW88rdVHq3tYiZd9ATcIvznuslMu6dWxuB4/xODc/Zwwlz3Ln9DKzM8i3G3RxIBBHaogiAsVJX4NYjgo5WIds/xnwGrNII/oeea6ktNOuoWCeivpgNXJ+DBlBqRovl180m9TD8zUmXR84nh4Ps19bKesZhs+s+h/V9+Di/cBmgFSw+YlxSdcEclf70gt7zl0ctnHwZ2sBHp3KeF0clXOMhSM3BP8KrkEI9ZGkgXd9BYYKhnYcbEDMCeL9VBMB81sXyOVBHEE9G/Ugx";
pub const RSA_FP_SUFFIX: &str = "SHA256:FJDzk4nYylEMG+u+PPPpOY7nC0Z7HNmNX/nb7kPO/fo";

/// A fake instance root.
pub struct Inst {
    pub dir: tempfile::TempDir,
    pub ctx: BootContext,
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Inst {
    pub fn new(user_data: Option<&[u8]>) -> Inst {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nec2-user:x:1000:1000:EC2 Default User:/home/ec2-user:/bin/sh\n",
            0o644,
        );
        write(
            root,
            "etc/group",
            "root:x:0:\nadm:x:4:\nwheel:x:10:\nec2-user:x:1000:\n",
            0o644,
        );
        write(
            root,
            "etc/shadow",
            "root:*:19000:0:99999:7:::\nec2-user:!:19000:0:99999:7:::\n",
            0o640,
        );
        write(root, "etc/sudoers", "root ALL=(ALL) ALL\n", 0o440);
        write(root, "etc/skel/.bashrc", "# skel\n", 0o644);
        write(
            root,
            "etc/ssh/ssh_host_ed25519_key.pub",
            &format!("{ED25519_PUB}\n"),
            0o644,
        );
        write(
            root,
            "etc/ssh/ssh_host_rsa_key.pub",
            &format!("{RSA_PUB}\n"),
            0o644,
        );
        write(root, "etc/ssh/ssh_host_ed25519_key", "secret", 0o600);
        for d in ["home/ec2-user", "root", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let ctx = BootContext {
            instance_id: "i-0123456789abcdef0".into(),
            default_user: "ec2-user".into(),
            public_keys: vec![ED25519_PUB.into()],
            user_data: user_data.map(<[u8]>::to_vec),
            host_key_dir: PathBuf::from("/etc/ssh"),
            hostname: "ip-172-31-1-5".into(),
            cloud_name: "ec2lab".into(),
        };
        Inst { dir, ctx }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Boots once; returns the console output.
    pub fn boot(&self) -> String {
        let mut console = Vec::new();
        boot_with(self.root(), &self.ctx, &mut console).expect("boot");
        String::from_utf8(console).unwrap()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.root().join(rel).exists()
    }

    pub fn output_log(&self) -> String {
        self.read("var/log/cloud-init-output.log")
    }

    pub fn mode(&self, rel: &str) -> u32 {
        std::fs::metadata(self.root().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    pub fn owner(&self, rel: &str) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(self.root().join(rel)).unwrap();
        (m.uid(), m.gid())
    }
}

/// Whether ownership can be checked (chown to other users needs root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Serves `body` for every request on 127.0.0.1:0 (up to `count` requests); returns the base URL.
pub fn http_server(routes: Vec<(&'static str, u16, Vec<u8>)>, count: usize) -> String {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, b"not found".to_vec()));
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}
