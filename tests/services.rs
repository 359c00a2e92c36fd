//! The instance's service manager, driven as a user would: unit files written by user data or
//! over `ec2lab exec`, `systemctl`/`service`/`journalctl` inside the instance (the lab's own
//! tools, bound over the host's on `lab-linux`), the real aws CLI for stop/start, and curl to
//! the public IP for the web server a unit runs.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The unit of a small web server (python3 comes from the host's /usr on lab-linux).
const WEB_UNIT: &str = "[Unit]
Description=Lab web server
After=network.target

[Service]
WorkingDirectory=/srv/www
ExecStart=/usr/bin/python3 -m http.server 80
Restart=on-failure
RestartSec=1

[Install]
WantedBy=multi-user.target
";

fn user_data(d: &Daemon, script: &str) -> String {
    d.write_file("user-data.sh", script).display().to_string()
}

/// Launches lab-linux with a user data script; waits until it ran.
fn launch(d: &Daemon, script: &str, extra: &[&str]) -> String {
    let file = user_data(d, &format!("#!/bin/sh\n{script}\necho USERDATA-DONE\n"));
    let ud = format!("file://{file}");
    let id = d.run_instances(&[&["--user-data", ud.as_str()], extra].concat())[0].clone();
    d.wait_state(&id, "running");
    d.wait_console(&id, "USERDATA-DONE");
    id
}

/// `exec` returning (exit code, stdout, stderr).
fn sh(d: &Daemon, id: &str, script: &str) -> (i32, String, String) {
    let o = d.exec(id, Some("root"), script);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Polls `script` in the instance until its stdout contains `needle` (at most 30 s).
fn wait_for(d: &Daemon, id: &str, script: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, err) = sh(d, id, script);
        if out.contains(needle) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{script:?} never printed {needle:?}; last: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn write_unit(name: &str, body: &str) -> String {
    format!(
        "mkdir -p /etc/systemd/system && cat > /etc/systemd/system/{name} <<'UNIT'\n{body}UNIT\n"
    )
}

#[test]
fn systemctl_verbs_answer_with_systemds_words_and_exit_codes() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let script = format!(
        "mkdir -p /srv/www && echo hello-from-unit > /srv/www/index.html\n{}",
        write_unit("web.service", WEB_UNIT)
    );
    let id = launch(&d, &script, &[]);

    let (code, _, err) = sh(&d, &id, "systemctl start nosuch");
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("Unit nosuch.service not found."), "{err}");
    let (code, out, _) = sh(&d, &id, "systemctl is-active web");
    assert_eq!((code, out.trim()), (3, "inactive"));
    let (code, out, _) = sh(&d, &id, "systemctl is-enabled web");
    assert_eq!((code, out.trim()), (1, "disabled"));

    let (code, out, err) = sh(&d, &id, "systemctl enable --now web");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Created symlink /etc/systemd/system/multi-user.target.wants/web.service"),
        "{out}"
    );
    let (code, out, _) = sh(&d, &id, "systemctl is-active web; systemctl is-enabled web");
    assert_eq!((code, out.as_str()), (0, "active\nenabled\n"));
    let status = wait_for(&d, &id, "systemctl status web", "Main PID:");
    assert!(status.contains("Active: active (running)"), "{status}");
    let page = wait_for(&d, &id, "curl -s http://127.0.0.1/", "hello-from-unit");
    assert!(page.contains("hello-from-unit"));

    let (code, out, err) = sh(&d, &id, "systemctl stop web; systemctl is-active web");
    assert_eq!((code, out.trim()), (3, "inactive"), "{err}");
    let (code, _, _) = sh(&d, &id, "systemctl status web");
    assert_eq!(code, 3);
    let (code, _, err) = sh(&d, &id, "systemctl status nosuch");
    assert_eq!(code, 4);
    assert!(
        err.contains("Unit nosuch.service could not be found."),
        "{err}"
    );
    let (code, out, err) = sh(&d, &id, "systemctl disable web");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Removed \"/etc/systemd/system/multi-user.target.wants/web.service\"."),
        "{out}"
    );
    // A unit whose file is in /etc/systemd/system cannot be masked (systemd refuses too).
    let (code, _, err) = sh(&d, &id, "systemctl mask web");
    assert_eq!(code, 1);
    assert!(
        err.contains("Failed to mask unit: File /etc/systemd/system/web.service already exists."),
        "{err}"
    );
    let (code, out, _) = sh(&d, &id, "systemctl mask other; systemctl is-enabled other");
    assert_eq!(code, 1);
    assert!(
        out.contains("/etc/systemd/system/other.service \u{2192} /dev/null")
            && out.trim_end().ends_with("masked"),
        "{out}"
    );
    let (code, _, err) = sh(&d, &id, "systemctl start other");
    assert_eq!(code, 1);
    assert!(err.contains("Unit other.service is masked."), "{err}");
    let (code, _, err) = sh(
        &d,
        &id,
        "systemctl unmask other && systemctl restart web && systemctl is-active web",
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = sh(&d, &id, "service web status");
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = sh(&d, &id, "systemctl list-units --type=service");
    assert_eq!(code, 0);
    assert!(
        out.contains("web.service") && out.contains("loaded units listed."),
        "{out}"
    );
    let (code, out, _) = sh(&d, &id, "systemctl list-unit-files");
    assert_eq!(code, 0);
    assert!(out.contains("web.service"), "{out}");
    // Into a pipe that closes early, as `| head` does: the tool ends quietly (SIGPIPE).
    let (code, out, err) = sh(
        &d,
        &id,
        "for i in 1 2 3 4 5 6 7 8; do systemctl list-unit-files; done | head -n 1; systemctl status web | head -n 1",
    );
    assert_eq!(code, 0);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && out.lines().count() == 2,
        "{out}{err}"
    );
    let (_, out, _) = sh(&d, &id, "journalctl -u web --no-pager");
    assert!(out.contains("Started Lab web server."), "{out}");

    // The tools are the daemon's binary, bound read-only: the instance's root cannot change it.
    for attempt in [
        "echo x >> /usr/bin/systemctl",
        "echo x >> /run/ec2lab/ctl",
        "mount -o remount,bind,rw /usr/bin/systemctl",
        "umount /usr/bin/systemctl",
    ] {
        let (code, _, _) = sh(&d, &id, attempt);
        assert_ne!(code, 0, "{attempt} succeeded");
    }
}

/// A `Type=notify` service: python3 sends `READY=1` (and a status) to `$NOTIFY_SOCKET`.
const NOTIFY_UNIT: &str = "[Service]
Type=notify
ExecStart=/usr/bin/python3 -c 'import os,socket,time; time.sleep(1); s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(os.environ[\"NOTIFY_SOCKET\"]); s.send(b\"READY=1\\\\nSTATUS=serving\"); time.sleep(3600)'
";

const CRASHY_UNIT: &str = "[Service]
ExecStart=/bin/sleep 3600
Restart=on-failure
RestartSec=1
ProtectSystem=full
";

const BROKEN_UNIT: &str = "[Unit]
Description=Broken on purpose
this line is not an assignment
[Service]
ExecStart=/bin/true
";

const MISSING_UNIT: &str = "[Service]
ExecStart=/usr/bin/no-such-binary --flag
";

const NO_PIDFILE_UNIT: &str = "[Service]
Type=forking
PIDFile=/run/never.pid
ExecStart=/bin/sh -c 'sleep 3600 &'
TimeoutStartSec=2
";

const CHATTY_UNIT: &str = "[Service]
Type=oneshot
RemainAfterExit=yes
Environment=WHO=journal
ExecStart=/bin/sh -c 'for i in 1 2 3 4 5; do echo line-$i from $WHO; done'
";

#[test]
fn services_are_supervised_restarted_notified_and_logged() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let mut script = String::new();
    for (name, body) in [
        ("ready.service", NOTIFY_UNIT),
        ("crashy.service", CRASHY_UNIT),
        ("broken.service", BROKEN_UNIT),
        ("missing.service", MISSING_UNIT),
        ("nopid.service", NO_PIDFILE_UNIT),
        ("chatty.service", CHATTY_UNIT),
    ] {
        script.push_str(&write_unit(name, body));
    }
    let id = launch(&d, &script, &[]);

    // Type=notify: start returns once READY=1 arrived; STATUS= shows.
    let (code, _, err) = sh(&d, &id, "systemctl start ready");
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = sh(&d, &id, "systemctl show ready -p ActiveState -p StatusText");
    assert_eq!(out, "ActiveState=active\nStatusText=serving\n");

    // Restart=on-failure: SIGKILL to the main process brings a new one.
    sh(&d, &id, "systemctl start crashy");
    let pid1 = sh(&d, &id, "systemctl show -p MainPID --value crashy").1;
    assert_ne!(pid1.trim(), "0");
    sh(&d, &id, &format!("kill -9 {}", pid1.trim()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = sh(
            &d,
            &id,
            "systemctl show -p ActiveState -p MainPID -p NRestarts crashy",
        );
        if out.contains("ActiveState=active") && !out.contains(&format!("MainPID={}", pid1.trim()))
        {
            assert!(out.contains("NRestarts=1"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "crashy never came back: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, journal, _) = sh(&d, &id, "journalctl -u crashy");
    assert!(
        journal.contains("Main process exited, code=killed, signal=KILL"),
        "{journal}"
    );
    assert!(
        journal.contains("Scheduled restart job, restart counter is at 1."),
        "{journal}"
    );
    // A setting the lab does not honour is said, with its file and line, never dropped silently.
    assert!(
        journal.contains(
            "/etc/systemd/system/crashy.service:5: ProtectSystem= in [Service] is not supported by the lab's service manager, ignoring."
        ),
        "{journal}"
    );

    // A unit file with a syntax error: a clear message; the others are unaffected.
    let (code, _, err) = sh(&d, &id, "systemctl start broken");
    assert_eq!(code, 1);
    assert!(
        err.contains("Unit broken.service has a bad unit file setting."),
        "{err}"
    );
    let (_, out, _) = sh(&d, &id, "systemctl status broken");
    assert!(
        out.contains(
            "/etc/systemd/system/broken.service:3: invalid line 'this line is not an assignment'"
        ),
        "{out}"
    );

    // A missing ExecStart binary: failed, 203/EXEC, said in the journal.
    let (code, _, err) = sh(&d, &id, "systemctl start missing");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Job for missing.service failed"), "{err}");
    let (code, out, _) = sh(
        &d,
        &id,
        "systemctl is-failed missing; systemctl status missing",
    );
    assert_eq!(code, 3);
    assert!(out.starts_with("failed\n"), "{out}");
    assert!(out.contains("status=203/EXEC"), "{out}");
    assert!(
        out.contains("Failed to locate executable /usr/bin/no-such-binary"),
        "{out}"
    );

    // A forking service that never writes its PID file: timeout, failed.
    let (code, _, err) = sh(&d, &id, "systemctl start nopid");
    assert_eq!(code, 1);
    assert!(
        err.contains("failed because a timeout was exceeded"),
        "{err}"
    );
    let (_, out, _) = sh(&d, &id, "systemctl status nopid");
    assert!(out.contains("Active: failed (Result: timeout)"), "{out}");

    // journalctl -u NAME -n N, --since, and the unit's own environment.
    sh(&d, &id, "systemctl start chatty");
    let (_, out, _) = sh(&d, &id, "journalctl -u chatty -n 2 -o cat");
    assert_eq!(out, "line-5 from journal\nFinished chatty.service.\n");
    let (_, out, _) = sh(
        &d,
        &id,
        "journalctl -u chatty --since '-10min' | grep -c 'from journal'",
    );
    assert_eq!(out.trim(), "5");
    let (_, out, _) = sh(&d, &id, "journalctl -u chatty --since '2999-01-01'");
    assert_eq!(out.trim(), "-- No entries --");
    let (_, out, _) = sh(&d, &id, "systemctl status chatty");
    assert!(
        out.contains("line-5 from journal"),
        "status shows the last lines: {out}"
    );
    // -f follows: a line logged after it started shows up.
    sh(
        &d,
        &id,
        "setsid -f timeout 60 journalctl -fu chatty -o cat </dev/null >/tmp/follow 2>&1; until [ -s /tmp/follow ]; do sleep 0.1; done; systemctl restart chatty",
    );
    wait_for(&d, &id, "grep -c 'line-5 from journal' /tmp/follow", "2");

    // As ec2-user: queries work, changes need sudo, as with systemd without polkit.
    let o = d.exec(
        &id,
        None,
        "systemctl is-active chatty; systemctl stop chatty",
    );
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "active\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Access denied"));
    let o = d.exec(
        &id,
        None,
        "sudo systemctl stop chatty && systemctl is-active chatty",
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "inactive\n", "{o:?}");
}

/// GET `http://ip/` from the host (through the front and the security group).
fn curl(ip: &str) -> Option<String> {
    let o = std::process::Command::new("curl")
        .args(["-s", "--max-time", "3", &format!("http://{ip}/")])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Polls the page until it says `needle` (at most 30 s).
fn wait_page(d: &Daemon, id: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ip = d.public_ip(id).expect("a public IP");
        if curl(&ip).is_some_and(|p| p.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "http://{ip}/ never served {needle:?}; console:\n{}",
            d.console(id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_enabled_web_server_comes_back_after_stop_start_reboot_and_a_daemon_restart() {
    if !prerequisites(&["aws", "curl"]) {
        return;
    }
    let mut d = Daemon::start();
    let sg = d.group_with_ingress("web", "80", "0.0.0.0/0");
    // As in the tutorials: user data installs the page and enables the service, once.
    let script = format!(
        "mkdir -p /srv/www && echo hello-from-unit > /srv/www/index.html\n{}systemctl enable web\nsystemctl start web\necho once >> /var/tmp/userdata-runs\n",
        write_unit("web.service", WEB_UNIT)
    );
    let id = launch(&d, &script, &["--security-group-ids", &sg]);
    wait_page(&d, &id, "hello-from-unit");

    d.aws_json(&["ec2", "stop-instances", "--instance-ids", &id]);
    d.wait_state(&id, "stopped");
    d.aws_json(&["ec2", "start-instances", "--instance-ids", &id]);
    d.wait_state(&id, "running");
    wait_page(&d, &id, "hello-from-unit");
    let console = d.wait_console(&id, "unit(s) started at boot");
    assert!(
        console.contains("[  OK  ] Started Lab web server."),
        "{console}"
    );

    // `reboot` from inside: the instance comes back running, the service with it.
    sh(&d, &id, "reboot");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.console(&id).contains("restarting system") {
        assert!(Instant::now() < deadline, "reboot did nothing");
        std::thread::sleep(Duration::from_millis(200));
    }
    d.wait_state(&id, "running");
    wait_page(&d, &id, "hello-from-unit");

    assert!(d.stop().success());
    d.restart();
    d.wait_state(&id, "running");
    wait_page(&d, &id, "hello-from-unit");
    assert_eq!(
        sh(&d, &id, "cat /var/tmp/userdata-runs").1,
        "once\n",
        "user data ran once; the service came back by itself"
    );

    // `poweroff` / `shutdown -h now` from inside: stopped, as on EC2, without complaint.
    // (The session may be cut by the shutdown before the tool exits, as over SSH on EC2: what
    // counts is that it said nothing and the instance stopped.)
    let (_, out, err) = sh(&d, &id, "poweroff");
    assert!(
        !out.contains("not been booted") && !err.contains("ailed"),
        "{out}{err}"
    );
    d.wait_state(&id, "stopped");
    d.aws_json(&["ec2", "start-instances", "--instance-ids", &id]);
    d.wait_state(&id, "running");
    wait_page(&d, &id, "hello-from-unit");
    let (_, out, err) = sh(&d, &id, "shutdown -h now");
    assert!(
        !out.contains("not been booted") && !err.contains("ailed"),
        "{out}{err}"
    );
    d.wait_state(&id, "stopped");
}

#[test]
fn stopping_an_instance_stops_its_units_in_reverse_order() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let unit = |name: &str, after: &str| {
        format!(
            "[Unit]\nAfter={after}\n[Service]\nExecStart=/bin/sleep 3600\nExecStop=/bin/sh -c 'echo {name} >> /var/tmp/stops'\n[Install]\nWantedBy=multi-user.target\n"
        )
    };
    let script = format!(
        "{}{}systemctl enable --now db app\n",
        write_unit("db.service", &unit("db", "network.target")),
        write_unit("app.service", &unit("app", "db.service"))
    );
    let id = launch(&d, &script, &[]);
    d.aws_json(&["ec2", "reboot-instances", "--instance-ids", &id]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = sh(
            &d,
            &id,
            "systemctl is-active db app; cat /var/tmp/stops 2>/dev/null",
        );
        if out.starts_with("active\nactive\n") && out.contains("app\ndb\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "units never stopped in order and came back: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A SysV script as old packages ship it: start forks a daemon and writes its pid.
const INIT_SCRIPT: &str = "#!/bin/sh
case \"$1\" in
  start) /bin/sleep 3600 >/dev/null 2>&1 & echo $! > /run/legacy.pid; echo legacy started ;;
  stop) kill $(cat /run/legacy.pid) && rm -f /run/legacy.pid; echo legacy stopped ;;
  status) [ -f /run/legacy.pid ] && echo running || { echo stopped; exit 3; } ;;
  hello) echo hello from the script ;;
  *) echo \"Usage: $0 {start|stop|status}\"; exit 1 ;;
esac
";

#[test]
fn service_runs_sysv_scripts_and_aliases_name_the_same_unit() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let script = format!(
        "mkdir -p /etc/init.d && cat > /etc/init.d/legacy <<'SCRIPT'\n{INIT_SCRIPT}SCRIPT\nchmod 755 /etc/init.d/legacy\n{}",
        write_unit(
            "mariadb.service",
            "[Service]\nExecStart=/bin/sleep 3600\n[Install]\nWantedBy=multi-user.target\nAlias=mysql.service\n"
        )
    );
    let id = launch(&d, &script, &[]);

    let (code, out, err) = sh(
        &d,
        &id,
        "service legacy start && systemctl is-active legacy",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("active\n"), "{out}");
    let (_, out, _) = sh(&d, &id, "journalctl -u legacy -o cat");
    assert!(out.contains("legacy started"), "{out}");
    assert_eq!(
        sh(&d, &id, "service legacy hello").1,
        "hello from the script\n"
    );
    let (code, _, err) = sh(&d, &id, "service legacy stop; test ! -e /run/legacy.pid");
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = sh(
        &d,
        &id,
        "systemctl enable legacy; ls /etc/rc3.d; systemctl is-enabled legacy",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("S01legacy") && out.ends_with("enabled\n"),
        "{out}"
    );

    let (code, out, err) = sh(
        &d,
        &id,
        "systemctl start mysql && systemctl is-active mariadb && systemctl is-active mysql.service",
    );
    assert_eq!((code, out.as_str()), (0, "active\nactive\n"), "{err}");
    let (code, out, _) = sh(
        &d,
        &id,
        "systemctl enable mariadb; systemctl is-enabled mysql",
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "/etc/systemd/system/mysql.service \u{2192} /etc/systemd/system/mariadb.service"
        ),
        "{out}"
    );
    assert!(out.ends_with("alias\n"), "{out}");
    let (code, _, err) = sh(&d, &id, "service nosuch start");
    assert_eq!(code, 5);
    assert!(err.contains("Unit nosuch.service not found."), "{err}");
}

#[test]
fn silent_clients_of_the_control_socket_do_not_stall_the_service_manager() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let id = launch(&d, "", &[]);
    // An unprivileged user holds 100 connections to PID 1's socket open and sends nothing
    // (before, PID 1 read each one blocking, 2 s apiece: systemctl waited minutes).
    let hold = "python3 -c 'import socket,time\nss=[]\nfor _ in range(100):\n s=socket.socket(socket.AF_UNIX); s.connect(\"/run/ec2lab/init.sock\"); ss.append(s)\nprint(\"held\", flush=True)\ntime.sleep(30)' &\nsleep 1\n";
    let o = d.exec(
        &id,
        Some("ec2-user"),
        &format!("{hold}t0=$(date +%s); timeout 10 systemctl is-system-running; echo rc=$?; echo took=$(( $(date +%s) - t0 ))"),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("held"), "the clients did not connect: {out}");
    assert!(
        !out.contains("rc=124"),
        "systemctl hung behind silent clients: {out}"
    );
    assert!(out.contains("running") || out.contains("degraded"), "{out}");
}
