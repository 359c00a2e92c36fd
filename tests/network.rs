//! Security groups and Elastic IPs through the real aws CLI; an Elastic IP moved between
//! instances presents the new instance's SSH host key (ssh-keyscan through the gateway).

mod common;

use std::process::Command;

use common::*;

/// The ed25519 host key the SSH gateway presents on `ip`.
fn scanned_key(d: &Daemon, ip: &str) -> String {
    let out = run_ok(Command::new("ssh-keyscan").args([
        "-T",
        "5",
        "-t",
        "ed25519",
        "-p",
        &d.ssh_port.to_string(),
        ip,
    ]));
    out.lines()
        .find(|l| l.contains("ssh-ed25519"))
        .unwrap_or_default()
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

fn instance_key(d: &Daemon, id: &str) -> String {
    let pubkey = std::fs::read_to_string(
        d.data_dir
            .join("volumes")
            .join(id)
            .join("host_keys/ssh_host_ed25519_key.pub"),
    )
    .unwrap();
    pubkey.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn security_groups_rules_and_errors() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let v = d.aws_json(&[
        "ec2",
        "describe-security-groups",
        "--group-names",
        "default",
    ]);
    assert_eq!(v["SecurityGroups"][0]["GroupName"], "default");
    let g = d.aws_json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "lab-web-sg",
        "--description",
        "web lab",
    ]);
    let gid = g["GroupId"].as_str().unwrap().to_string();
    assert!(gid.starts_with("sg-"));
    d.aws_err(
        &[
            "ec2",
            "create-security-group",
            "--group-name",
            "lab-web-sg",
            "--description",
            "again",
        ],
        "InvalidGroup.Duplicate",
    );

    // The CLI's shorthand becomes IpPermissions; the legacy flat form works too.
    let v = d.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-name",
        "lab-web-sg",
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "127.0.0.1/32",
    ]);
    assert!(
        v["SecurityGroupRules"][0]["SecurityGroupRuleId"]
            .as_str()
            .unwrap()
            .starts_with("sgr-")
    );
    d.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &gid,
        "--ip-permissions",
        "IpProtocol=tcp,FromPort=80,ToPort=80,IpRanges=[{CidrIp=0.0.0.0/0,Description=web}]",
    ]);
    let (s, b) = d.raw(&format!("Action=AuthorizeSecurityGroupIngress&Version=2016-11-15&GroupId={gid}&IpProtocol=tcp&FromPort=8000&ToPort=8100&CidrIp=10.0.0.0/8"));
    assert_eq!(s, 200, "{b}");
    d.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &gid,
        "--protocol",
        "all",
        "--source-group",
        "default",
    ]);
    let e = d.aws_err(
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            &gid,
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--cidr",
            "127.0.0.1/32",
        ],
        "InvalidPermission.Duplicate",
    );
    assert!(
        e.contains("peer: 127.0.0.1/32, TCP, from port: 22, to port: 22, ALLOW"),
        "{e}"
    );
    d.aws_err(
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            &gid,
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--cidr",
            "10.0.0.300/8",
        ],
        "InvalidParameterValue",
    );
    d.aws_err(
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            &gid,
            "--protocol",
            "tcp",
            "--port",
            "90-80",
            "--cidr",
            "0.0.0.0/0",
        ],
        "InvalidParameterValue",
    );
    d.aws_err(
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            "sg-0123456789abcdef0",
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--cidr",
            "0.0.0.0/0",
        ],
        "InvalidGroup.NotFound",
    );
    d.aws_err(
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-name",
            "nope",
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--cidr",
            "0.0.0.0/0",
        ],
        "InvalidGroup.NotFound",
    );

    let v = d.aws_json(&["ec2", "describe-security-groups", "--group-ids", &gid]);
    let perms = v["SecurityGroups"][0]["IpPermissions"].as_array().unwrap();
    assert_eq!(perms.len(), 4, "{perms:?}");
    assert!(
        perms
            .iter()
            .any(|p| p["FromPort"] == 80 && p["IpRanges"][0]["Description"] == "web")
    );
    assert!(perms.iter().any(|p| {
        p["IpProtocol"] == "-1"
            && p["UserIdGroupPairs"]
                .as_array()
                .is_some_and(|g| !g.is_empty())
    }));
    let v = d.aws_json(&[
        "ec2",
        "describe-security-groups",
        "--filters",
        "Name=ip-permission.from-port,Values=8000",
    ]);
    assert_eq!(v["SecurityGroups"][0]["GroupId"], gid.as_str());

    // Revoke: by permission, then by rule id; unknown rules are refused.
    d.aws_json(&[
        "ec2",
        "revoke-security-group-ingress",
        "--group-id",
        &gid,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "127.0.0.1/32",
    ]);
    d.aws_err(
        &[
            "ec2",
            "revoke-security-group-ingress",
            "--group-id",
            &gid,
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--cidr",
            "127.0.0.1/32",
        ],
        "InvalidPermission.NotFound",
    );

    // Instances by group name and id; a group in use cannot be deleted.
    let a = &d.run_instances(&["--security-groups", "lab-web-sg"])[0];
    let b = &d.run_instances(&["--security-group-ids", &gid])[0];
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", a]);
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["SecurityGroups"][0]["GroupName"],
        "lab-web-sg"
    );
    d.aws_err(
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &d.lab_linux(),
            "--security-groups",
            "nope",
        ],
        "InvalidGroup.NotFound",
    );
    d.aws_err(
        &["ec2", "delete-security-group", "--group-id", &gid],
        "DependencyViolation",
    );
    // Groups change while an instance runs.
    let default_gid = d.aws_json(&[
        "ec2",
        "describe-security-groups",
        "--group-names",
        "default",
    ])["SecurityGroups"][0]["GroupId"]
        .as_str()
        .unwrap()
        .to_string();
    d.aws_json(&[
        "ec2",
        "modify-instance-attribute",
        "--instance-id",
        b,
        "--groups",
        &default_gid,
    ]);
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", b]);
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["SecurityGroups"][0]["GroupName"],
        "default"
    );
    d.aws_json(&["ec2", "terminate-instances", "--instance-ids", a]);
    d.wait_state(a, "terminated");
    d.aws_json(&["ec2", "delete-security-group", "--group-id", &gid]);
    d.aws_err(
        &["ec2", "delete-security-group", "--group-name", "default"],
        "CannotDelete",
    );
}

#[test]
fn elastic_ip_moves_between_instances_with_their_host_keys() {
    if !prerequisites(&["aws", "ssh-keyscan"]) {
        return;
    }
    let d = Daemon::start();
    d.open_ssh();
    let a = d.run_instances(&[])[0].clone();
    let b = d.run_instances(&[])[0].clone();
    let auto_a = d.public_ip(&a).unwrap();
    let eip = d.aws_json(&["ec2", "allocate-address", "--domain", "vpc"]);
    let (alloc, ip) = (
        eip["AllocationId"].as_str().unwrap().to_string(),
        eip["PublicIp"].as_str().unwrap().to_string(),
    );
    assert!(alloc.starts_with("eipalloc-"));
    assert_ne!(ip, auto_a);

    let assoc = d.aws_json(&[
        "ec2",
        "associate-address",
        "--allocation-id",
        &alloc,
        "--instance-id",
        &a,
    ]);
    assert!(
        assoc["AssociationId"]
            .as_str()
            .unwrap()
            .starts_with("eipassoc-")
    );
    assert_eq!(d.public_ip(&a).as_deref(), Some(ip.as_str()));
    assert_eq!(
        scanned_key(&d, &ip),
        instance_key(&d, &a),
        "the EIP presents A's host key"
    );
    d.aws_err(
        &["ec2", "release-address", "--allocation-id", &alloc],
        "InvalidIPAddress.InUse",
    );
    d.aws_err(
        &[
            "ec2",
            "associate-address",
            "--allocation-id",
            &alloc,
            "--instance-id",
            &b,
            "--no-allow-reassociation",
        ],
        "Resource.AlreadyAssociated",
    );

    // Move to B: B presents its key on the EIP; A gets a new auto public IP.
    d.aws_json(&[
        "ec2",
        "associate-address",
        "--allocation-id",
        &alloc,
        "--instance-id",
        &b,
    ]);
    assert_eq!(d.public_ip(&b).as_deref(), Some(ip.as_str()));
    let new_a = d.public_ip(&a).unwrap();
    assert_ne!(new_a, ip);
    assert_eq!(
        scanned_key(&d, &ip),
        instance_key(&d, &b),
        "the EIP now presents B's host key"
    );
    assert_eq!(scanned_key(&d, &new_a), instance_key(&d, &a));
    let v = d.aws_json(&[
        "ec2",
        "describe-addresses",
        "--filters",
        &format!("Name=instance-id,Values={b}"),
    ]);
    assert_eq!(v["Addresses"][0]["PublicIp"], ip.as_str());

    // Stop/start keeps the EIP; the auto IP of A changes.
    d.aws_json(&["ec2", "stop-instances", "--instance-ids", &a, &b]);
    d.wait_state(&a, "stopped");
    d.wait_state(&b, "stopped");
    assert_eq!(d.public_ip(&a), None);
    assert_eq!(d.public_ip(&b).as_deref(), Some(ip.as_str()));
    d.aws_json(&["ec2", "start-instances", "--instance-ids", &a, &b]);
    d.wait_state(&b, "running");
    assert_eq!(d.public_ip(&b).as_deref(), Some(ip.as_str()));
    assert_eq!(scanned_key(&d, &ip), instance_key(&d, &b));

    // Terminate B: the EIP stays allocated, unassociated; a terminated instance refuses it.
    d.aws_json(&["ec2", "terminate-instances", "--instance-ids", &b]);
    d.wait_state(&b, "terminated");
    let v = d.aws_json(&["ec2", "describe-addresses", "--allocation-ids", &alloc]);
    assert!(v["Addresses"][0]["InstanceId"].is_null(), "{v}");
    d.aws_err(
        &[
            "ec2",
            "associate-address",
            "--allocation-id",
            &alloc,
            "--instance-id",
            &b,
        ],
        "IncorrectInstanceState",
    );
    let assoc = d.aws_json(&[
        "ec2",
        "associate-address",
        "--allocation-id",
        &alloc,
        "--instance-id",
        &a,
    ]);
    d.aws_json(&[
        "ec2",
        "disassociate-address",
        "--association-id",
        assoc["AssociationId"].as_str().unwrap(),
    ]);
    assert_ne!(d.public_ip(&a).as_deref(), Some(ip.as_str()));
    d.aws_json(&["ec2", "release-address", "--allocation-id", &alloc]);
    d.aws_err(
        &["ec2", "release-address", "--allocation-id", &alloc],
        "InvalidAllocationID.NotFound",
    );
}
