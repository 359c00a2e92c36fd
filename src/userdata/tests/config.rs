//! `#cloud-config` keys: runcmd, bootcmd, write_files, packages, final_message, merging.

use std::os::unix::fs::PermissionsExt;

use super::{Inst, b64, gzip, is_root};
use crate::userdata::VERSION;

#[test]
fn runcmd_bootcmd_and_once_per_instance() {
    let ud = r#"#cloud-config
bootcmd:
  - echo bootcmd-$INSTANCE_ID >> tmp/bootcmd
runcmd:
  - echo runcmd-string >> tmp/runcmd
  - [sh, -c, "echo 'runcmd list arg' >> tmp/runcmd"]
  - cd tmp
  - echo same-shell > cwd-check
final_message: "done after $UPTIME s, v{{version}} at {{ timestamp }} via {{datasource}}"
"#;
    let mut inst = Inst::new(Some(ud.as_bytes()));
    let console = inst.boot();
    assert_eq!(inst.read("tmp/bootcmd"), "bootcmd-i-0123456789abcdef0\n");
    assert_eq!(inst.read("tmp/runcmd"), "runcmd-string\nruncmd list arg\n");
    assert_eq!(
        inst.read("tmp/cwd-check"),
        "same-shell\n",
        "runcmd is one shell script"
    );
    let runcmd = inst.read("var/lib/cloud/instance/scripts/runcmd");
    assert!(runcmd.starts_with("#!/bin/sh\n"));
    assert!(
        runcmd.contains("'sh' '-c' 'echo '\\''runcmd list arg'\\'' >> tmp/runcmd'"),
        "{runcmd}"
    );
    let msg = console
        .lines()
        .find(|l| l.starts_with("done after"))
        .expect(&console);
    assert!(msg.contains(&format!("v{VERSION} at ")), "{msg}");
    assert!(msg.ends_with(" via DataSourceEc2lab"), "{msg}");
    assert!(!msg.contains("$UPTIME") && !msg.contains("{{"), "{msg}");

    // Reboot: bootcmd and final_message again, runcmd not.
    let console = inst.boot();
    assert_eq!(
        inst.read("tmp/bootcmd"),
        "bootcmd-i-0123456789abcdef0\n".repeat(2)
    );
    assert_eq!(inst.read("tmp/runcmd"), "runcmd-string\nruncmd list arg\n");
    assert!(console.contains("done after"));

    // A new instance id (an AMI made from this instance) runs per-instance modules again.
    inst.ctx.instance_id = "i-0fedcba9876543210".into();
    inst.boot();
    assert_eq!(
        inst.read("tmp/runcmd"),
        "runcmd-string\nruncmd list arg\n".repeat(2)
    );
    assert_eq!(
        inst.read("var/lib/cloud/data/previous-instance-id"),
        "i-0123456789abcdef0\n"
    );
    let link = std::fs::read_link(inst.root().join("var/lib/cloud/instance")).unwrap();
    assert_eq!(link.to_str(), Some("instances/i-0fedcba9876543210"));
}

#[test]
fn write_files_encodings_permissions_append_defer() {
    let ud = format!(
        r#"#cloud-config
write_files:
  - path: /etc/plain.txt
    content: |
      plain text
  - path: /etc/b64.txt
    encoding: b64
    content: {b64}
    permissions: '0600'
  - path: /opt/deep/dir/gz.bin
    encoding: gzip
    content: !!binary |
      {gz}
    permissions: 0755
  - path: /etc/gzb64.txt
    encoding: gz+b64
    content: {gzb64}
  - path: /etc/plain.txt
    append: true
    content: "appended\n"
  - path: /home/newbie/owned.txt
    owner: newbie:newbie
    defer: true
    content: "deferred\n"
  - path: /etc/bad.txt
    encoding: b64
    content: "!!!notbase64"
  - path: relative.txt
    content: x
users:
  - default
  - name: newbie
"#,
        b64 = b64(b"b64 text\n"),
        gz = b64(&gzip(b"gz text\n")),
        gzb64 = b64(&gzip(b"gzb64 text\n")),
    );
    let inst = Inst::new(Some(ud.as_bytes()));
    let console = inst.boot();
    assert_eq!(inst.read("etc/plain.txt"), "plain text\nappended\n");
    assert_eq!(inst.mode("etc/plain.txt"), 0o644);
    assert_eq!(inst.read("etc/b64.txt"), "b64 text\n");
    assert_eq!(inst.mode("etc/b64.txt"), 0o600);
    assert_eq!(inst.read("opt/deep/dir/gz.bin"), "gz text\n");
    assert_eq!(inst.mode("opt/deep/dir/gz.bin"), 0o755);
    assert_eq!(inst.read("etc/gzb64.txt"), "gzb64 text\n");
    assert_eq!(inst.read("home/newbie/owned.txt"), "deferred\n");
    assert!(
        console.contains("/etc/bad.txt: invalid base64"),
        "{console}"
    );
    assert!(
        console.contains("\"relative.txt\" is not absolute"),
        "{console}"
    );
    assert!(!inst.exists("etc/bad.txt"));
    if is_root() {
        let newbie = inst.read("etc/passwd");
        let uid: u32 = newbie
            .lines()
            .find(|l| l.starts_with("newbie:"))
            .and_then(|l| l.split(':').nth(2)?.parse().ok())
            .unwrap();
        assert_eq!(inst.owner("home/newbie/owned.txt"), (uid, uid));
    } else {
        println!("skipping ownership checks: chown needs root");
    }
    // Per instance: a reboot does not append again.
    inst.boot();
    assert_eq!(inst.read("etc/plain.txt"), "plain text\nappended\n");
}

#[test]
fn packages_without_a_package_manager() {
    let ud = "#cloud-config\npackage_update: true\npackages:\n  - apache2\n  - [php, '8.2']\n";
    let inst = Inst::new(Some(ud.as_bytes()));
    let console = inst.boot();
    let line = console
        .lines()
        .find(|l| l.contains("packages: cannot install"))
        .expect(&console);
    assert!(line.ends_with("packages: cannot install [apache2, php]: no package manager in this image and no package mirror reachable (ec2lab instances are offline)"), "{line}");
    assert!(console.contains("finished at"));
}

#[test]
fn packages_with_an_offline_package_manager() {
    let ud = "#cloud-config\npackages: [nginx, [php, '8.2']]\n";
    let inst = Inst::new(Some(ud.as_bytes()));
    let apt = inst.root().join("usr/bin/apt-get");
    std::fs::create_dir_all(apt.parent().unwrap()).unwrap();
    std::fs::write(
        &apt,
        "#!/bin/sh\necho \"fake-apt $DEBIAN_FRONTEND $*\"\nexit 100\n",
    )
    .unwrap();
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let console = inst.boot();
    assert!(
        console.contains("fake-apt noninteractive --assume-yes --quiet update"),
        "{console}"
    );
    assert!(console.contains("install nginx php=8.2"), "{console}");
    assert!(
        console.contains("packages: package index update: /usr/bin/apt-get failed with exit status 100; no package mirror"),
        "{console}"
    );
    assert!(console.contains("packages: cannot install [nginx, php]: /usr/bin/apt-get failed with exit status 100; no package mirror reachable (ec2lab instances are offline)"), "{console}");
}

#[test]
fn unknown_keys_are_logged_and_ignored() {
    let ud = "#cloud-config\ntimezone: Asia/Seoul\nhostname: web\nruncmd: [echo still-runs]\n";
    let inst = Inst::new(Some(ud.as_bytes()));
    let console = inst.boot();
    assert!(
        console.contains("cloud-config keys not supported by ec2lab, ignored: timezone, hostname"),
        "{console}"
    );
    assert!(console.contains("still-runs"));
    let bad = Inst::new(Some(b"#cloud-config\nruncmd: [unclosed\n"));
    let console = bad.boot();
    assert!(console.contains("invalid cloud-config"), "{console}");
}

#[test]
fn default_final_message_and_merging() {
    let doc = "Content-Type: multipart/mixed; boundary=\"XX\"\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/cloud-config\n\nruncmd: [echo first-part]\n--XX\nContent-Type: text/cloud-config\n\nruncmd: [echo second-part]\n--XX\nContent-Type: text/cloud-config\n\nmerge_how: 'list(append)+dict(recurse_array)+str()'\nruncmd: [echo third-part]\n--XX--\n";
    let inst = Inst::new(Some(doc.as_bytes()));
    let console = inst.boot();
    assert!(
        !console.contains("first-part"),
        "later parts replace: {console}"
    );
    assert!(
        console.contains("second-part") && console.contains("third-part"),
        "{console}"
    );
    let last = console
        .lines()
        .rev()
        .find(|l| l.starts_with("Cloud-init v."))
        .unwrap();
    assert!(
        last.starts_with(&format!("Cloud-init v. {VERSION} finished at ")),
        "{last}"
    );
    assert!(
        last.contains(". Datasource DataSourceEc2lab.  Up "),
        "{last}"
    );
    assert!(last.ends_with(" seconds"), "{last}");
    assert!(inst.exists("var/lib/cloud/instance/boot-finished"));
}

#[test]
fn no_user_data_still_boots() {
    let inst = Inst::new(None);
    let console = inst.boot();
    assert!(console.contains("running 'init'"));
    assert!(console.contains("finished at"));
    // The launch key still reaches the default user.
    assert!(
        inst.read("home/ec2-user/.ssh/authorized_keys")
            .contains("lab-ed25519")
    );
}
