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

/// Asserts the call succeeded, or failed with `code` when one is given.
fn expect(out: std::process::Output, code: Option<&str>) {
    let err = String::from_utf8_lossy(&out.stderr);
    match code {
        None => assert!(out.status.success(), "{err}"),
        Some(c) => assert!(
            !out.status.success() && err.contains(&format!("({c})")),
            "{c}: {err}"
        ),
    }
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
    let group = |name: &str| d.create_group(name);
    let a = group("a");
    expect(group("b"), None);
    expect(group("c"), Some("SecurityGroupLimitExceeded"));
    let g: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let g = g["GroupId"].as_str().unwrap().to_string();

    let rules = "RulesPerSecurityGroupLimitExceeded";
    expect(authorize(&d, "ingress", &g, 22), None);
    expect(authorize(&d, "ingress", &g, 80), None);
    expect(authorize(&d, "ingress", &g, 443), Some(rules));
    // A new group has one outbound rule (all traffic): one more fits.
    expect(authorize(&d, "egress", &g, 443), None);
    expect(authorize(&d, "egress", &g, 8443), Some(rules));
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
    expect(authorize(&d, "ingress", &g, 443), None);
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
    let run = |ty: &str, count: &str| {
        d.aws(&[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            ty,
            "--count",
            count,
        ])
    };
    let out = run("t2.micro", "1");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("(VcpuLimitExceeded)")
            && e.contains(
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
    let out = run("t2.micro", "1:3");
    expect(out.clone(), None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
