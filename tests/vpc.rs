//! The VPC between instances, driven as a user would: the aws CLI for groups and rules,
//! `ec2lab exec` inside the instances (python3's sockets, iputils' ping as ec2-user). The book's lesson
//! "the database in its own instance": a web instance reaches the DB's port through a
//! source-group rule, an instance outside that group does not; ICMP and UDP need their own
//! rules; revoking egress stops new connections but not one already open; no instance can
//! speak with another's address.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A TCP server on 3306 that greets and echoes lines, and a UDP echo server on 9999.
const SERVERS: &str = r#"#!/bin/sh
mkdir -p /srv
cat > /srv/db.py <<'EOF'
import socket, threading
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", 3306)); s.listen(64)
    def serve(c):
        c.sendall(b"db-ok\n")
        for line in c.makefile("rb"):
            c.sendall(b"echo " + line)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("", 9999))
    while True:
        data, peer = u.recvfrom(100)
        u.sendto(b"udp " + data, peer)
threading.Thread(target=udp, daemon=True).start()
tcp()
EOF
setsid -f python3 /srv/db.py >/srv/db.log 2>&1
echo servers-up
"#;

/// Connects from inside `from` to `ip:3306`; the greeting, or None when it did not connect.
fn tcp_hello(d: &Daemon, from: &str, ip: &str) -> Option<String> {
    let o = d.exec(
        from,
        Some("root"),
        &format!(
            "python3 -c 'import socket; s=socket.create_connection((\"{ip}\",3306),timeout=3); print(s.recv(100).decode().strip())'"
        ),
    );
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn udp_echo(d: &Daemon, from: &str, ip: &str) -> Option<String> {
    let o = d.exec(
        from,
        Some("root"),
        &format!(
            "python3 -c 'import socket; u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout(2); u.sendto(b\"hi\",(\"{ip}\",9999)); print(u.recv(100).decode())'"
        ),
    );
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn ping(d: &Daemon, from: &str, ip: &str) -> bool {
    d.exec(from, None, &format!("ping -c 1 -W 2 {ip}"))
        .status
        .success()
}

/// Polls `f` until it is true (a rule change is enforced within moments, not at once).
fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn group(d: &Daemon, name: &str) -> String {
    let out = d.create_group(name);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["GroupId"].as_str().unwrap().to_string()
}

fn rule(d: &Daemon, verb: &str, group: &str, args: &[&str]) {
    let out = d.aws(&[&["ec2", verb, "--group-id", group][..], args].concat());
    assert!(out.status.success(), "{verb} {args:?}: {out:?}");
}

#[test]
fn the_database_in_its_own_instance() {
    if !prerequisites(&["aws", "python3", "ping", "nft"]) {
        return;
    }
    let d = Daemon::start();
    let web = group(&d, "lab-web-sg");
    let db = group(&d, "lab-db-sg");
    let other = group(&d, "lab-other-sg");
    rule(
        &d,
        "authorize-security-group-ingress",
        &db,
        &[
            "--protocol",
            "tcp",
            "--port",
            "3306",
            "--source-group",
            &web,
        ],
    );
    let servers = d.write_file("servers.sh", SERVERS);
    let db_id = d.run_with_user_data(
        &db,
        &servers,
        &["--placement", "AvailabilityZone=ap-northeast-2c"],
    );
    let web_id = d.run_instances(&["--security-group-ids", &web])[0].clone();
    let other_id = d.run_instances(&["--security-group-ids", &other])[0].clone();
    for id in [&db_id, &web_id, &other_id] {
        d.wait_state(id, "running");
    }
    d.wait_console(&db_id, "servers-up");
    let db_ip = d.private_ip(&db_id);
    assert!(db_ip.starts_with("172.31.32."), "zone c's subnet: {db_ip}");

    // Through the source-group rule: web reaches the DB, the other instance does not.
    until("web reaches the DB on 3306", || {
        tcp_hello(&d, &web_id, &db_ip).as_deref() == Some("db-ok")
    });
    assert_eq!(tcp_hello(&d, &other_id, &db_ip), None, "not in lab-web-sg");

    // ICMP and UDP need rules of their own, and a new rule takes effect on the fly.
    assert!(!ping(&d, &web_id, &db_ip), "no ICMP rule yet");
    assert_eq!(udp_echo(&d, &web_id, &db_ip), None, "no UDP rule yet");
    rule(
        &d,
        "authorize-security-group-ingress",
        &db,
        &[
            "--ip-permissions",
            "IpProtocol=icmp,FromPort=8,ToPort=-1,IpRanges=[{CidrIp=172.31.0.0/16}]",
        ],
    );
    rule(
        &d,
        "authorize-security-group-ingress",
        &db,
        &[
            "--protocol",
            "udp",
            "--port",
            "9999",
            "--source-group",
            &web,
        ],
    );
    until("ping allowed", || ping(&d, &web_id, &db_ip));
    assert!(ping(&d, &other_id, &db_ip), "the ICMP rule is by CIDR");
    until("udp allowed", || {
        udp_echo(&d, &web_id, &db_ip).as_deref() == Some("udp hi")
    });
    assert_eq!(
        udp_echo(&d, &other_id, &db_ip),
        None,
        "udp is for lab-web-sg only"
    );

    // A connection open before an egress revoke lives on; new ones are refused.
    d.exec_ok(
        &web_id,
        Some("root"),
        &format!(
            "cat > /tmp/held.py <<'EOF'\nimport socket, os, time\ns = socket.create_connection((\"{db_ip}\", 3306), timeout=5)\nprint(s.recv(100).decode().strip(), flush=True)\nwhile not os.path.exists(\"/tmp/go\"):\n    time.sleep(0.05)\ns.sendall(b\"after\\n\")\nprint(s.recv(100).decode().strip(), flush=True)\nEOF\nsetsid -f python3 /tmp/held.py >/tmp/held.log 2>&1"
        ),
    );
    until("the held connection is open", || {
        d.exec_ok(&web_id, Some("root"), "cat /tmp/held.log")
            .contains("db-ok")
    });
    rule(
        &d,
        "revoke-security-group-egress",
        &web,
        &[
            "--ip-permissions",
            "IpProtocol=-1,IpRanges=[{CidrIp=0.0.0.0/0}]",
        ],
    );
    until("egress revoked", || {
        tcp_hello(&d, &web_id, &db_ip).is_none()
    });
    d.exec_ok(&web_id, Some("root"), "touch /tmp/go");
    until("the held connection still carries data", || {
        d.exec_ok(&web_id, Some("root"), "cat /tmp/held.log")
            .contains("echo after")
    });
    rule(
        &d,
        "authorize-security-group-egress",
        &web,
        &[
            "--ip-permissions",
            "IpProtocol=tcp,FromPort=3306,ToPort=3306,IpRanges=[{CidrIp=172.31.32.0/20}]",
        ],
    );
    until("egress to the DB subnet only", || {
        tcp_hello(&d, &web_id, &db_ip).as_deref() == Some("db-ok")
    });

    // No instance speaks with another's address: the other instance tries to take web's IP as
    // a second address and connect from it (its root cannot change its network, and the
    // router drops a source that is not the veth's own).
    let web_ip = d.private_ip(&web_id);
    let o = d.exec(
        &other_id,
        Some("root"),
        &format!(
            "ip addr add {web_ip}/32 dev eth0 && python3 -c 'import socket; s=socket.socket(); s.settimeout(3); s.bind((\"{web_ip}\",0)); s.connect((\"{db_ip}\",3306)); print(s.recv(100))'"
        ),
    );
    assert!(
        !o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("db-ok"),
        "a spoofed source got through: {o:?}"
    );
    assert_eq!(
        tcp_hello(&d, &web_id, &db_ip).as_deref(),
        Some("db-ok"),
        "the real web instance still does"
    );
}

#[test]
fn network_interfaces_show_each_instance_and_refuse_what_is_not_there() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let web = group(&d, "lab-web-sg");
    let a = d.run_instances(&["--security-group-ids", &web])[0].clone();
    let b = d.run_instances(&["--placement", "AvailabilityZone=ap-northeast-2b"])[0].clone();
    let all = d.aws_json(&["ec2", "describe-network-interfaces"]);
    let enis = all["NetworkInterfaces"].as_array().unwrap();
    assert_eq!(enis.len(), 2, "{all}");
    for id in [&a, &b] {
        let inst = &d.aws_json(&["ec2", "describe-instances", "--instance-ids", id])["Reservations"]
            [0]["Instances"][0];
        let eni_id = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
            .as_str()
            .unwrap();
        let v = d.aws_json(&[
            "ec2",
            "describe-network-interfaces",
            "--filters",
            &format!("Name=attachment.instance-id,Values={id}"),
        ]);
        let n = &v["NetworkInterfaces"][0];
        assert_eq!(v["NetworkInterfaces"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(n["NetworkInterfaceId"], eni_id);
        assert_eq!(n["PrivateIpAddress"], inst["PrivateIpAddress"]);
        assert_eq!(n["PrivateDnsName"], inst["PrivateDnsName"]);
        assert_eq!(n["SubnetId"], inst["SubnetId"]);
        assert_eq!(n["Association"]["PublicIp"], inst["PublicIpAddress"]);
        assert_eq!(n["Attachment"]["Status"], "attached");
        assert_eq!(n["Attachment"]["DeviceIndex"], 0);
        assert_eq!(n["Groups"], inst["SecurityGroups"]);
        assert_eq!(n["Status"], "in-use");
        // The same id by name.
        let by_id = d.aws_json(&[
            "ec2",
            "describe-network-interfaces",
            "--network-interface-ids",
            eni_id,
        ]);
        assert_eq!(
            by_id["NetworkInterfaces"][0]["Attachment"]["InstanceId"],
            id.as_str()
        );
    }
    let in_web = d.aws_json(&[
        "ec2",
        "describe-network-interfaces",
        "--filters",
        &format!("Name=group-id,Values={web}"),
    ]);
    assert_eq!(in_web["NetworkInterfaces"].as_array().unwrap().len(), 1);
    d.aws_err(
        &[
            "ec2",
            "describe-network-interfaces",
            "--network-interface-ids",
            "eni-0123456789abcdef0",
        ],
        "InvalidNetworkInterfaceID.NotFound",
    );
    d.aws_err(
        &[
            "ec2",
            "describe-network-interfaces",
            "--network-interface-ids",
            "i-0123",
        ],
        "InvalidNetworkInterfaceID.Malformed",
    );
    d.aws_err(
        &[
            "ec2",
            "describe-network-interfaces",
            "--filters",
            "Name=nonsense,Values=x",
        ],
        "InvalidParameterValue",
    );
    // Terminated: its interface is gone with it.
    d.aws_json(&["ec2", "terminate-instances", "--instance-ids", &b]);
    d.wait_state(&b, "terminated");
    let left = d.aws_json(&["ec2", "describe-network-interfaces"]);
    assert_eq!(
        left["NetworkInterfaces"].as_array().unwrap().len(),
        1,
        "{left}"
    );
}

/// The `default` group's own rule (all traffic from its members), as on AWS: two instances
/// launched without a group reach each other; one in another group does not reach them.
#[test]
fn default_group_members_reach_each_other() {
    if !prerequisites(&["aws", "python3"]) {
        return;
    }
    let d = Daemon::start();
    let servers = d.write_file("servers.sh", SERVERS);
    let ud = format!("file://{}", servers.display());
    let server = d.run_instances(&["--user-data", &ud])[0].clone();
    let client = d.run_instances(&[])[0].clone();
    let outsider = d.run_instances(&["--security-group-ids", &group(&d, "elsewhere")])[0].clone();
    for id in [&server, &client, &outsider] {
        d.wait_state(id, "running");
    }
    d.wait_console(&server, "servers-up");
    let ip = d.private_ip(&server);
    until("a default-group member reaches another", || {
        tcp_hello(&d, &client, &ip).as_deref() == Some("db-ok")
    });
    assert_eq!(
        udp_echo(&d, &client, &ip).as_deref(),
        Some("udp hi"),
        "all protocols"
    );
    assert_eq!(
        tcp_hello(&d, &outsider, &ip),
        None,
        "not a member of default"
    );
}
