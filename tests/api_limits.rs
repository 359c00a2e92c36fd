//! Account limits as AWS states them, set small by `serve` flags so the test is quick: running
//! vCPUs (`VcpuLimitExceeded`, RunInstances and StartInstances), Elastic IPs
//! (`AddressLimitExceeded`), security groups per VPC (`SecurityGroupLimitExceeded`) and rules
//! per group (`RulesPerSecurityGroupLimitExceeded`, inbound and outbound apart).

mod common;

use common::*;

const LIMITS: [&str; 8] = [
    "--max-vcpus",
    "2",
    "--max-elastic-ips",
    "2",
    "--max-security-groups",
    "3",
    "--max-rules-per-group",
    "2",
];

fn authorize(d: &Daemon, direction: &str, group: &str, port: u16) -> std::process::Output {
    d.aws(&[
        "ec2",
        &format!("authorize-security-group-{direction}"),
        "--group-id",
        group,
        "--ip-permissions",
        &format!("IpProtocol=tcp,FromPort={port},ToPort={port},IpRanges=[{{CidrIp=10.0.0.0/8}}]"),
    ])
}

#[test]
fn addresses_groups_and_rules_stop_at_their_limits() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start_with(&LIMITS);
    for _ in 0..2 {
        d.aws_json(&["ec2", "allocate-address"]);
    }
    let e = d.aws_err(&["ec2", "allocate-address"], "AddressLimitExceeded");
    assert!(
        e.contains("The maximum number of addresses has been reached."),
        "{e}"
    );

    // `default` is the first of the three groups the VPC may have.
    let g = d.aws_json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "a",
        "--description",
        "a",
    ])["GroupId"]
        .as_str()
        .unwrap()
        .to_string();
    d.aws_json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "b",
        "--description",
        "b",
    ]);
    d.aws_err(
        &[
            "ec2",
            "create-security-group",
            "--group-name",
            "c",
            "--description",
            "c",
        ],
        "SecurityGroupLimitExceeded",
    );

    for port in [22, 80] {
        let out = authorize(&d, "ingress", &g, port);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = authorize(&d, "ingress", &g, 443);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(RulesPerSecurityGroupLimitExceeded)"),
        "{err}"
    );
    // A new group has one outbound rule (all traffic): one more fits.
    let out = authorize(&d, "egress", &g, 443);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = authorize(&d, "egress", &g, 8443);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(RulesPerSecurityGroupLimitExceeded)"),
        "{err}"
    );
    // Nothing of the refused calls was kept; freeing a slot makes room again.
    let v = d.aws_json(&["ec2", "describe-security-groups", "--group-ids", &g]);
    assert_eq!(
        v["SecurityGroups"][0]["IpPermissions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    d.aws_json(&[
        "ec2",
        "revoke-security-group-ingress",
        "--group-id",
        &g,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "10.0.0.0/8",
    ]);
    let out = authorize(&d, "ingress", &g, 443);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn running_vcpus_stop_at_the_limit_on_run_and_start() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start_with(&LIMITS);
    // t3.micro has 2 vCPUs: one fills the limit of 2.
    let ids = d.run_instances(&["--instance-type", "t3.micro"]);
    let ami = d.lab_linux();
    let e = d.aws_err(
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            "t2.micro",
        ],
        "VcpuLimitExceeded",
    );
    assert!(
        e.contains(
            "You have requested more vCPU capacity than your current vCPU limit of 2 allows"
        ),
        "{e}"
    );
    // Stopped instances do not count; starting one again does.
    d.aws_json(&["ec2", "stop-instances", "--instance-ids", &ids[0]]);
    d.wait_state(&ids[0], "stopped");
    let small = d.run_instances(&["--instance-type", "t2.micro", "--count", "1"]);
    d.aws_err(
        &["ec2", "start-instances", "--instance-ids", &ids[0]],
        "VcpuLimitExceeded",
    );
    assert_eq!(d.state_of(&ids[0]), "stopped");
    // MinCount 1, MaxCount 3 with room for one more: one is launched, as on AWS.
    let v = d.aws_json(&[
        "ec2",
        "run-instances",
        "--image-id",
        &ami,
        "--instance-type",
        "t2.micro",
        "--count",
        "1:3",
    ]);
    assert_eq!(v["Instances"].as_array().unwrap().len(), 1, "{v}");
    let all: Vec<String> = small
        .into_iter()
        .chain(std::iter::once(
            v["Instances"][0]["InstanceId"]
                .as_str()
                .unwrap()
                .to_string(),
        ))
        .chain(ids)
        .collect();
    let mut args = vec!["ec2", "terminate-instances", "--instance-ids"];
    args.extend(all.iter().map(String::as_str));
    d.aws_json(&args);
}
