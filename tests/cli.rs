//! The `ec2lab` client binary as a user drives it — run with groups and --wait, the lifecycle
//! subcommands with --wait, ls --all, why, --region, key files for ssh, completions and man —
//! checked with the aws CLI and the files a user would look at. Every run gets its own HOME, so
//! nothing is recorded in the real user's ~/.local/state.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ec2lab ARGS` against the daemon, from `cwd`, with HOME set to `home`.
fn ec2lab_home(d: &Daemon, home: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(&args[..1])
        .arg("--data-dir")
        .arg(&d.data_dir)
        .args(&args[1..])
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("SUDO_USER")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Like `ec2lab_home` with HOME in the daemon's temp dir, asserting success; returns stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let home = d.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = ec2lab_home(d, &home, d.dir.path(), args);
    assert!(
        out.status.success(),
        "ec2lab {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Like `ok`, expecting failure; returns stderr.
fn fails(d: &Daemon, args: &[&str]) -> String {
    let home = d.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = ec2lab_home(d, &home, d.dir.path(), args);
    assert!(
        !out.status.success(),
        "ec2lab {args:?} should have failed: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// The instance as `aws ec2 describe-instances` shows it.
fn described(d: &Daemon, id: &str) -> serde_json::Value {
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", id]);
    v["Reservations"][0]["Instances"][0].clone()
}

fn group_ids(inst: &serde_json::Value) -> Vec<String> {
    let mut g: Vec<String> = inst["SecurityGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["GroupId"].as_str().unwrap().to_string())
        .collect();
    g.sort();
    g
}

/// The instance id in the first data row of a table whose first column is INSTANCE ID.
fn first_id(table: &str) -> String {
    table
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no instance row in {table:?}"))
        .to_string()
}

#[test]
fn run_with_groups_and_wait_then_stop_start_reboot_terminate() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "0.0.0.0/0");
    let app = d.group_with_ingress("app", "8080", "10.0.0.0/8");

    // A group by a name that does not exist is refused before anything is launched.
    let err = fails(&d, &["run", "--security-group", "nope", "--wait"]);
    assert!(err.contains("no security group named 'nope'"), "{err}");

    // By name and by id; --wait prints the ready instance: id, name, public IP.
    let out = ok(
        &d,
        &[
            "run",
            "--name",
            "cli-a",
            "--security-group",
            "web",
            "--security-group",
            &app,
            "--wait",
        ],
    );
    let id = first_id(&out);
    let inst = described(&d, &id);
    assert_eq!(inst["State"]["Name"], "running");
    let ip = inst["PublicIpAddress"].as_str().unwrap();
    assert!(out.contains("cli-a") && out.contains(ip), "{out}");
    let mut want = vec![web.clone(), app.clone()];
    want.sort();
    assert_eq!(group_ids(&inst), want);

    // Reboot --wait returns once the instance has booted again.
    ok(&d, &["reboot", "--wait", "cli-a"]);
    assert_eq!(d.console(&id).matches("booting instance").count(), 2);
    assert_eq!(d.state_of(&id), "running");

    // Stop then start in one script.
    let out = ok(&d, &["stop", "--wait", "cli-a"]);
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(d.state_of(&id), "stopped");
    let err = fails(&d, &["reboot", "cli-a"]);
    assert!(
        err.contains("stopped") && err.contains("only a running instance"),
        "{err}"
    );
    assert_eq!(d.state_of(&id), "stopped");
    ok(&d, &["start", "--wait", "cli-a"]);
    assert_eq!(d.state_of(&id), "running");

    // Terminated instances are listed with --all only.
    let out = ok(&d, &["terminate", "--wait", &id]);
    assert!(out.contains("terminated"), "{out}");
    assert_eq!(d.state_of(&id), "terminated");
    assert!(!ok(&d, &["ls"]).contains(&id));
    assert!(ok(&d, &["ls", "--all"]).contains(&id));

    // The daemon's log went to a file, not a terminal: no colour codes in it.
    assert!(!d.log_text().contains('\u{1b}'), "ANSI codes in the log");
}

#[test]
fn run_without_a_public_ip_in_a_group() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "0.0.0.0/0");
    let out = ok(
        &d,
        &["run", "--no-public-ip", "--security-group", "web", "--wait"],
    );
    let inst = described(&d, &first_id(&out));
    assert!(inst["PublicIpAddress"].is_null(), "{inst}");
    assert_eq!(group_ids(&inst), vec![web]);
}

#[test]
fn a_region_other_than_the_labs_is_refused() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let err = fails(&d, &["ls", "--region", "us-east-1"]);
    assert!(
        err.contains("us-east-1") && err.contains("ap-northeast-2"),
        "{err}"
    );
    ok(&d, &["ls", "--region", "ap-northeast-2"]);
    // The variable the aws CLI reads counts the same, and is named.
    let home = d.dir.path();
    let out = Command::new(BIN)
        .args(["key", "list", "--data-dir"])
        .arg(&d.data_dir)
        .env("HOME", home)
        .env("AWS_REGION", "eu-west-1")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("eu-west-1") && err.contains("AWS_REGION"),
        "{err}"
    );
}

#[test]
fn why_knows_the_ssh_gateway_and_the_vpc_path() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    d.open_ssh();
    let id = first_id(&ok(&d, &["run", "--wait"]));
    let other = first_id(&ok(&d, &["run", "--wait"]));
    let why = ok(&d, &["why", &id, "--port", "22"]);
    assert!(
        why.contains("ALLOWED") && why.contains("SSH gateway") && !why.contains("start a server"),
        "{why}"
    );
    // From another instance's private IP: its outbound rules, then this one's inbound ones;
    // port 22 is then the instance's own (no gateway inside the VPC).
    let private = described(&d, &other)["PrivateIpAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let why = ok(&d, &["why", &id, "--port", "22", "--from", &private]);
    assert!(
        why.contains(&format!("out of {private}: allowed"))
            && why.contains("ALLOWED")
            && !why.contains("SSH gateway"),
        "{why}"
    );
    // A private address no instance has sends nothing.
    let why = ok(
        &d,
        &["why", &id, "--port", "22", "--from", "172.31.250.250"],
    );
    assert!(
        why.contains("no running instance has the private address 172.31.250.250")
            && !why.contains("ALLOWED"),
        "{why}"
    );
}

#[test]
fn ssh_finds_the_key_where_key_create_saved_it_from_any_directory() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let home = d.dir.path().join("home");
    let made_in = d.dir.path().join("project");
    let elsewhere = d.dir.path().join("elsewhere");
    for dir in [&home, &made_in, &elsewhere] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let out = ec2lab_home(&d, &home, &made_in, &["key", "create", "cli-k"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let saved = made_in.join("keys/cli-k.pem");
    let link = home.join(".local/state/ec2lab/keys/cli-k.pem");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::fs::canonicalize(&saved).unwrap()
    );

    let id = first_id(&ok(
        &d,
        &["run", "--key", "cli-k", "--name", "cli-s", "--wait"],
    ));
    let ip = d.public_ip(&id).unwrap();
    let out = ec2lab_home(&d, &home, &elsewhere, &["ssh", "cli-s", "--print"]);
    let printed = text(&out.stdout);
    assert!(
        out.status.success() && printed.contains(&format!("-i {}", link.display())),
        "{printed}{}",
        text(&out.stderr)
    );
    assert!(printed.contains(&ip), "{printed}");

    // Not recorded: it says where it looked.
    std::fs::remove_file(&link).unwrap();
    let out = ec2lab_home(&d, &home, &elsewhere, &["ssh", "cli-s", "--print"]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("cli-k.pem")
            && err.contains(&home.join(".ssh").display().to_string())
            && err.contains("keys"),
        "{err}"
    );
    // ~/.ssh, where AWS tutorials keep keys.
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(&saved, home.join(".ssh/cli-k.pem")).unwrap();
    let out = ec2lab_home(&d, &home, &elsewhere, &["ssh", "cli-s", "--print"]);
    assert!(
        text(&out.stdout).contains(&format!("-i {}", home.join(".ssh/cli-k.pem").display())),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_ec2lab") && bash.contains("--security-group"),
        "bash"
    );
    assert!(run(&["completions", "zsh"]).starts_with("#compdef ec2lab"));
    assert!(run(&["completions", "fish"]).contains("complete -c ec2lab"));
    let page = run(&["man"]);
    assert!(page.contains(".TH ec2lab 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    run(&["man", "--dir", pages.to_str().unwrap()]);
    for f in [
        "ec2lab.1",
        "ec2lab-run.1",
        "ec2lab-ssh.1",
        "ec2lab-completions.1",
    ] {
        let p = pages.join(f);
        assert!(p.exists(), "{} missing", p.display());
    }
    let run_page = std::fs::read_to_string(pages.join("ec2lab-run.1")).unwrap();
    assert!(run_page.contains("security\\-group"), "{run_page}");
}
