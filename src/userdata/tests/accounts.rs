//! Users, groups, sudo rules and authorized_keys.

use super::{ED25519_PUB, Inst, RSA_PUB, is_root};

const ROOT_PREFIX: &str = r#"no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo 'Please login as the user \"ec2-user\" rather than the user \"root\".';echo;sleep 10;exit 142""#;

fn field(db: &str, name: &str, index: usize) -> String {
    db.lines()
        .find(|l| l.split(':').next() == Some(name))
        .and_then(|l| l.split(':').nth(index))
        .unwrap_or_else(|| panic!("{name} not in {db}"))
        .to_string()
}

#[test]
fn launch_key_reaches_default_user_and_root() {
    let inst = Inst::new(None);
    inst.boot();
    let keys = "home/ec2-user/.ssh/authorized_keys";
    assert_eq!(inst.read(keys), format!("{ED25519_PUB}\n"));
    assert_eq!(inst.mode(keys), 0o600);
    assert_eq!(inst.mode("home/ec2-user/.ssh"), 0o700);
    assert_eq!(
        inst.read("root/.ssh/authorized_keys"),
        format!("{ROOT_PREFIX} {ED25519_PUB}\n")
    );
    assert_eq!(inst.mode("root/.ssh/authorized_keys"), 0o600);
    if is_root() {
        assert_eq!(inst.owner(keys), (1000, 1000));
        assert_eq!(inst.owner("home/ec2-user/.ssh"), (1000, 1000));
        assert_eq!(inst.owner("root/.ssh/authorized_keys"), (0, 0));
    } else {
        println!("skipping ownership checks: chown needs root");
    }
    // The default user gets passwordless sudo and the groups that exist.
    let sudoers = inst.read("etc/sudoers.d/90-cloud-init-users");
    assert!(
        sudoers.starts_with("# Created by cloud-init v. "),
        "{sudoers}"
    );
    assert!(sudoers.contains("\n# User rules for ec2-user\nec2-user ALL=(ALL) NOPASSWD:ALL\n"));
    assert_eq!(inst.mode("etc/sudoers.d/90-cloud-init-users"), 0o440);
    assert!(
        inst.read("etc/sudoers")
            .contains("#includedir /etc/sudoers.d")
    );
    let group = inst.read("etc/group");
    assert_eq!(field(&group, "adm", 3), "ec2-user");
    assert_eq!(field(&group, "wheel", 3), "ec2-user");
    assert!(
        !group.contains("sudo:"),
        "missing default groups are not created"
    );
}

#[test]
fn existing_keys_kept_and_no_duplicates() {
    let other = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDother other@host";
    let ud = format!("#cloud-config\nssh_authorized_keys:\n  - {RSA_PUB}\n  - {ED25519_PUB}\n");
    let inst = Inst::new(Some(ud.as_bytes()));
    let ssh = inst.root().join("home/ec2-user/.ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let old = format!("# my keys\n{other}\nfrom=\"10.0.0.1\" {ED25519_PUB}\n");
    std::fs::write(ssh.join("authorized_keys"), old).unwrap();
    inst.boot();
    let text = inst.read("home/ec2-user/.ssh/authorized_keys");
    assert_eq!(
        text,
        format!("# my keys\n{other}\n{ED25519_PUB}\n{RSA_PUB}\n")
    );
    let root = inst.read("root/.ssh/authorized_keys");
    assert_eq!(root.lines().count(), 2);
    assert!(root.lines().all(|l| l.starts_with(ROOT_PREFIX)));
}

#[test]
fn users_groups_sudo() {
    let ud = format!(
        r#"#cloud-config
groups:
  - devs: [ec2-user]
  - ops
users:
  - default
  - name: alice
    gecos: Alice A
    groups: [docker, wheel]
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    ssh_authorized_keys: ["{RSA_PUB}"]
  - name: bob
    sudo: ["ALL=(ALL) ALL", "ALL=(root) NOPASSWD:/bin/ls"]
    lock_passwd: false
    hashed_passwd: $6$abc$def
    homedir: /srv/bob
  - name: svc
    system: true
    no_create_home: true
    sudo: false
"#
    );
    let inst = Inst::new(Some(ud.as_bytes()));
    inst.boot();
    let passwd = inst.read("etc/passwd");
    // Groups devs and ops took 1001 and 1002, so alice's own group gets the next free gid.
    assert!(
        passwd.contains("alice:x:1001:1003:Alice A:/home/alice:/bin/bash\n"),
        "{passwd}"
    );
    assert_eq!(field(&passwd, "bob", 5), "/srv/bob");
    let svc_uid: u32 = field(&passwd, "svc", 2).parse().unwrap();
    assert_eq!(
        svc_uid, 999,
        "system users are allocated downwards from 999"
    );
    assert!(!inst.exists("home/svc"));
    let group = inst.read("etc/group");
    assert_eq!(field(&group, "alice", 2), "1003");
    assert_eq!(field(&group, "docker", 3), "alice");
    assert_eq!(field(&group, "wheel", 3), "ec2-user,alice");
    assert_eq!(field(&group, "devs", 3), "ec2-user");
    assert!(group.contains("ops:x:"));
    let shadow = inst.read("etc/shadow");
    assert_eq!(field(&shadow, "alice", 1), "!");
    assert_eq!(field(&shadow, "bob", 1), "$6$abc$def");
    assert_eq!(inst.mode("etc/shadow"), 0o640);
    let sudoers = inst.read("etc/sudoers.d/90-cloud-init-users");
    for rule in [
        "ec2-user ALL=(ALL) NOPASSWD:ALL",
        "alice ALL=(ALL) NOPASSWD:ALL",
        "bob ALL=(ALL) ALL",
        "bob ALL=(root) NOPASSWD:/bin/ls",
    ] {
        assert!(
            sudoers.lines().any(|l| l == rule),
            "{rule} missing: {sudoers}"
        );
    }
    assert!(!sudoers.contains("svc"));
    assert_eq!(
        inst.read("home/alice/.ssh/authorized_keys"),
        format!("{RSA_PUB}\n")
    );
    assert_eq!(inst.mode("home/alice"), 0o700);
    assert_eq!(inst.read("home/alice/.bashrc"), "# skel\n");
    if is_root() {
        assert_eq!(inst.owner("home/alice"), (1001, 1003));
        assert_eq!(inst.owner("home/alice/.bashrc"), (1001, 1003));
        assert_eq!(inst.owner("home/alice/.ssh/authorized_keys"), (1001, 1003));
    }
    // Once per instance: a second boot adds nothing.
    inst.boot();
    assert_eq!(inst.read("etc/passwd"), passwd);
    assert_eq!(inst.read("etc/sudoers.d/90-cloud-init-users"), sudoers);
}

#[test]
fn users_without_default_and_disable_root_false() {
    let inst = Inst::new(Some(b"#cloud-config\nusers:\n  - name: carol\n"));
    inst.boot();
    assert!(!inst.exists("home/ec2-user/.ssh/authorized_keys"));
    let root = inst.read("root/.ssh/authorized_keys");
    assert!(
        root.contains(r#"Please login as the user \"NONE\" rather than the user \"root\"."#),
        "{root}"
    );
    assert!(inst.read("etc/passwd").contains("carol:x:1001:"));

    let inst = Inst::new(Some(b"#cloud-config\ndisable_root: false\n"));
    inst.boot();
    assert_eq!(
        inst.read("root/.ssh/authorized_keys"),
        format!("{ED25519_PUB}\n")
    );
}

#[test]
fn a_failing_module_does_not_stop_the_boot() {
    let inst = Inst::new(Some(
        b"#cloud-config\nusers: [default, {name: dave}]\nruncmd: [echo runcmd-still-ran]\n",
    ));
    // /etc/passwd replaced by a directory: users_groups cannot work.
    std::fs::remove_file(inst.root().join("etc/passwd")).unwrap();
    std::fs::create_dir(inst.root().join("etc/passwd")).unwrap();
    let console = inst.boot();
    assert!(
        console.contains("module users_groups failed: "),
        "{console}"
    );
    assert!(console.contains("runcmd-still-ran"), "{console}");
    assert!(console.contains("finished at"));
}
