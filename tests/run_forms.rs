//! RunInstances in the forms tutorials and SDKs use, with the real aws CLI and boto3: the
//! `--associate-public-ip-address --security-group-ids --subnet-id` form (sent as
//! `NetworkInterface.1.*`) lands in the named group and subnet with a public IP;
//! `--no-associate-public-ip-address` gives none, and no front listener answers for it until an
//! Elastic IP comes; AWS's combination errors; block device mappings, IAM profile, monitoring
//! and EBS optimisation recorded and shown; what the lab does not do is refused by name and
//! launches nothing.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn instance(d: &Daemon, id: &str) -> serde_json::Value {
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", id]);
    v["Reservations"][0]["Instances"][0].clone()
}

fn subnet_of_zone(d: &Daemon, zone: &str) -> String {
    // DescribeSubnets may not be there yet: the subnet of an instance in that zone is.
    let id = d.run_instances(&["--placement", &format!("AvailabilityZone={zone}")])[0].clone();
    let s = instance(d, &id)["SubnetId"].as_str().unwrap().to_string();
    d.aws_json(&["ec2", "terminate-instances", "--instance-ids", &id]);
    s
}

fn no_instance_launched(d: &Daemon, before: usize) {
    let v = d.aws_json(&["ec2", "describe-instances"]);
    let n: usize = v["Reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Instances"].as_array().unwrap().len())
        .sum();
    assert_eq!(n, before, "an instance was launched anyway: {v}");
}

/// TCP sockets listening on an address of the daemon's public pool (`127.O.0.0/16`).
fn pool_listeners(d: &Daemon) -> Vec<String> {
    let second: u8 = d.public_cidr.split('.').nth(1).unwrap().parse().unwrap();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    tcp.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (ip, port) = f.get(1)?.split_once(':')?;
            let b = u32::from_str_radix(ip, 16).ok()?.to_le_bytes();
            let port = u16::from_str_radix(port, 16).ok()?;
            (f.get(3) == Some(&"0A") && b[0] == 127 && b[1] == second)
                .then(|| format!("{}.{}.{}.{}:{port}", b[0], b[1], b[2], b[3]))
        })
        .collect()
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `curl` from 127.0.0.1 (the address the group admits) to `url`: the body, if any.
fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-m", "3", "--interface", "127.0.0.1", url])
        .output()
        .unwrap();
    (out.status.success() && !out.stdout.is_empty())
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_tutorial_form_lands_in_the_named_group_and_subnet_with_a_public_ip() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "127.0.0.1/32");
    let subnet = subnet_of_zone(&d, "ap-northeast-2b");
    let ami = d.lab_linux();
    let v = d.aws_json(&[
        "ec2",
        "run-instances",
        "--image-id",
        &ami,
        "--count",
        "1",
        "--associate-public-ip-address",
        "--security-group-ids",
        &web,
        "--subnet-id",
        &subnet,
    ]);
    let id = v["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let i = instance(&d, &id);
    let groups: Vec<&str> = i["SecurityGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["GroupName"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["web"], "{i}");
    assert_eq!(i["SubnetId"], subnet.as_str(), "{i}");
    assert_eq!(i["Placement"]["AvailabilityZone"], "ap-northeast-2b");
    assert!(i["PublicIpAddress"].is_string(), "{i}");
    assert_eq!(
        i["NetworkInterfaces"][0]["Association"]["PublicIp"],
        i["PublicIpAddress"]
    );

    // `--private-ip-address` with `--associate-public-ip-address`: the CLI moves it into the
    // interface (`PrivateIpAddresses.1`).
    let v = d.aws_json(&[
        "ec2",
        "run-instances",
        "--image-id",
        &ami,
        "--associate-public-ip-address",
        "--subnet-id",
        &subnet,
        "--private-ip-address",
        "172.31.16.66",
    ]);
    let i = &v["Instances"][0];
    assert_eq!(i["PrivateIpAddress"], "172.31.16.66", "{i}");

    // The interface's own private address, in its subnet.
    let v = d.aws_json(&[
        "ec2",
        "run-instances",
        "--image-id",
        &ami,
        "--network-interfaces",
        &serde_json::json!([{
            "DeviceIndex": 0,
            "SubnetId": subnet,
            "Groups": [web],
            "PrivateIpAddress": "172.31.16.77",
            "Description": "front door",
            "DeleteOnTermination": true,
        }])
        .to_string(),
    ]);
    let id = v["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let i = instance(&d, &id);
    assert_eq!(i["PrivateIpAddress"], "172.31.16.77", "{i}");
    assert_eq!(
        i["NetworkInterfaces"][0]["Description"], "front door",
        "{i}"
    );
    assert!(
        i["PublicIpAddress"].is_string(),
        "the default VPC maps one: {i}"
    );
}

#[test]
fn no_public_ip_means_none_and_no_front_listener() {
    if !prerequisites(&["aws", "curl", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "127.0.0.1/32");
    let id = d.run_instances(&[
        "--no-associate-public-ip-address",
        "--security-group-ids",
        &web,
    ])[0]
        .clone();
    d.wait_state(&id, "running");
    let i = instance(&d, &id);
    assert!(i.get("PublicIpAddress").is_none(), "{i}");
    assert!(
        i["NetworkInterfaces"][0].get("Association").is_none(),
        "{i}"
    );
    assert_eq!(i["SecurityGroups"][0]["GroupName"], "web");
    // The group opens 80 and the gateway serves 22 to instances with a public IP; nothing
    // listens for this one: it has no address to listen on.
    assert_eq!(
        pool_listeners(&d),
        Vec::<String>::new(),
        "nothing may listen for an instance without a public IP"
    );
    let out = d.ec2lab(d.dir.path(), &["ssh", &id]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && said.contains("no public IP"),
        "{said}"
    );

    // Stopped and started, it still has none.
    d.aws_json(&["ec2", "stop-instances", "--instance-ids", &id]);
    d.wait_state(&id, "stopped");
    d.aws_json(&["ec2", "start-instances", "--instance-ids", &id]);
    d.wait_state(&id, "running");
    assert_eq!(d.public_ip(&id), None);

    // A server inside; an Elastic IP gives the instance an address, and the page answers there.
    d.exec_ok(
        &id,
        Some("root"),
        "mkdir -p /srv && echo private page > /srv/index.html && busybox httpd -p 80 -h /srv",
    );
    let eip = d.aws_json(&["ec2", "allocate-address"]);
    let ip = eip["PublicIp"].as_str().unwrap().to_string();
    d.aws_json(&[
        "ec2",
        "associate-address",
        "--instance-id",
        &id,
        "--allocation-id",
        eip["AllocationId"].as_str().unwrap(),
    ]);
    eventually("the page on the Elastic IP", || {
        curl(&format!("http://{ip}/")).is_some_and(|p| p.contains("private page"))
    });
    // When the Elastic IP leaves, the instance is back to no public IP (not a fresh auto one).
    d.aws_json(&["ec2", "disassociate-address", "--public-ip", &ip]);
    assert_eq!(
        d.public_ip(&id),
        None,
        "no auto public IP after the EIP left"
    );
}

#[test]
fn combinations_and_unsupported_members_are_refused_and_launch_nothing() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "127.0.0.1/32");
    let ami = d.lab_linux();
    let run = |extra: &[&str], code: &str| -> String {
        let args = [&["ec2", "run-instances", "--image-id", ami.as_str()], extra].concat();
        d.aws_err(&args, code)
    };
    let nic = |v: serde_json::Value| v.to_string();

    let e = run(
        &[
            "--network-interfaces",
            &nic(serde_json::json!([{"DeviceIndex": 0, "Groups": [web]}])),
            "--security-group-ids",
            &web,
        ],
        "InvalidParameterCombination",
    );
    assert!(e.contains("instance-level security groups"), "{e}");
    // The CLI moves `--subnet-id` and `--private-ip-address` into the interface itself; other
    // clients can send both forms.
    let (status, body) = d.raw(&format!(
        "Action=RunInstances&Version=2016-11-15&ImageId={ami}&MinCount=1&MaxCount=1\
         &NetworkInterface.1.DeviceIndex=0&PrivateIpAddress=172.31.0.50"
    ));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("InvalidParameterCombination") && body.contains("private IP"),
        "{body}"
    );
    for (extra, named) in [
        (
            nic(serde_json::json!([{"DeviceIndex": 1}])),
            "NetworkInterface.1.DeviceIndex",
        ),
        (
            nic(serde_json::json!([{"DeviceIndex": 0}, {"DeviceIndex": 1}])),
            "NetworkInterface.2",
        ),
        (
            nic(serde_json::json!([{"DeviceIndex": 0, "Ipv6AddressCount": 1}])),
            "NetworkInterface.1.Ipv6AddressCount",
        ),
    ] {
        let e = run(&["--network-interfaces", &extra], "InvalidParameterValue");
        assert!(
            e.contains(named) && e.contains("not supported by this lab"),
            "{e}"
        );
    }
    let e = run(
        &["--placement", "Tenancy=dedicated"],
        "InvalidParameterValue",
    );
    assert!(e.contains("Placement.Tenancy"), "{e}");
    let e = run(
        &["--placement", "GroupName=spread"],
        "InvalidParameterValue",
    );
    assert!(e.contains("Placement.GroupName"), "{e}");
    let e = run(
        &["--launch-template", "LaunchTemplateName=web"],
        "InvalidParameterValue",
    );
    assert!(e.contains("LaunchTemplate.LaunchTemplateName"), "{e}");
    let e = run(
        &[
            "--block-device-mappings",
            r#"[{"DeviceName":"/dev/sdf","Ebs":{"SnapshotId":"snap-0123456789abcdef0"}}]"#,
        ],
        "InvalidParameterValue",
    );
    assert!(e.contains("BlockDeviceMapping.1.Ebs.SnapshotId"), "{e}");
    let e = run(
        &[
            "--block-device-mappings",
            r#"[{"DeviceName":"/dev/sdf","Ebs":{"VolumeSize":20,"VolumeType":"st1"}}]"#,
        ],
        "InvalidParameterValue",
    );
    assert!(e.contains("BlockDeviceMapping.1.Ebs.VolumeSize"), "{e}");
    let e = run(
        &[
            "--instance-type",
            "m5.large",
            "--credit-specification",
            "CpuCredits=unlimited",
        ],
        "InvalidParameterCombination",
    );
    assert!(e.contains("CreditSpecification"), "{e}");
    no_instance_launched(&d, 0);
}

#[test]
fn block_devices_profile_and_monitoring_are_recorded_and_shown() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let id = d.run_instances(&[
        "--block-device-mappings",
        r#"[{"DeviceName":"/dev/xvda","Ebs":{"VolumeSize":12,"DeleteOnTermination":false}},
            {"DeviceName":"/dev/sdf","Ebs":{"VolumeSize":20,"VolumeType":"gp3","Iops":4000,"Throughput":250}},
            {"DeviceName":"/dev/sdg","NoDevice":""}]"#,
        "--iam-instance-profile",
        "Name=web-role",
        "--monitoring",
        "Enabled=true",
        "--ebs-optimized",
        "--credit-specification",
        "CpuCredits=unlimited",
    ])[0]
        .clone();
    let i = instance(&d, &id);
    let bdm = i["BlockDeviceMappings"].as_array().unwrap();
    let devices: Vec<&str> = bdm
        .iter()
        .map(|b| b["DeviceName"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["/dev/xvda", "/dev/sdf"], "{i}");
    assert_eq!(bdm[0]["Ebs"]["DeleteOnTermination"], false, "{i}");
    assert_eq!(bdm[1]["Ebs"]["DeleteOnTermination"], true, "{i}");
    assert!(
        bdm[1]["Ebs"]["VolumeId"]
            .as_str()
            .unwrap()
            .starts_with("vol-")
    );
    assert_ne!(bdm[0]["Ebs"]["VolumeId"], bdm[1]["Ebs"]["VolumeId"]);
    assert!(
        i["IamInstanceProfile"]["Arn"]
            .as_str()
            .unwrap()
            .ends_with(":instance-profile/web-role"),
        "{i}"
    );
    assert_eq!(i["Monitoring"]["State"], "enabled");
    assert_eq!(i["EbsOptimized"], true);
}

/// boto3, as SDK users write it.
#[test]
fn boto3_network_interfaces_form() {
    if !prerequisites(&["aws", "python3"]) {
        return;
    }
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "127.0.0.1/32");
    let ami = d.lab_linux();
    let script = r#"
import boto3, sys
ec2 = boto3.client("ec2")
ami, sg = sys.argv[1], sys.argv[2]
r = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro",
    NetworkInterfaces=[{"DeviceIndex": 0, "AssociatePublicIpAddress": False, "Groups": [sg]}])
i = r["Instances"][0]
assert [g["GroupId"] for g in i["SecurityGroups"]] == [sg], i["SecurityGroups"]
assert "PublicIpAddress" not in i, i
try:
    ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=i["SubnetId"],
        NetworkInterfaces=[{"DeviceIndex": 0, "Groups": [sg]}])
    sys.exit("the combination was accepted")
except ec2.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidParameterCombination", e
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &ami, &web])
        .envs(d.aws_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
