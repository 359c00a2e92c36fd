//! The calls tools and tutorials make first (issue 9), through the real aws CLI: STS
//! GetCallerIdentity, the default VPC and its subnets, the account's attributes, the instance
//! type offerings, security group rules as objects, and metadata options changed on a running
//! instance (enforced by the metadata service at once).

mod common;

use common::*;

#[test]
fn sts_get_caller_identity_answers_the_account_root() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let v = d.aws_json(&["sts", "get-caller-identity"]);
    assert_eq!(v["Account"], "123456789012");
    assert_eq!(v["Arn"], "arn:aws:iam::123456789012:root");
    assert_eq!(v["UserId"], "123456789012");
    // Another STS action is refused in STS's own error shape, which the CLI reads.
    let err = d.aws_err(&["sts", "get-session-token"], "InvalidAction");
    assert!(err.contains("GetSessionToken"), "{err}");
    // A service the lab does not offer is named.
    let err = d.aws_err(&["iam", "list-users"], "InvalidAction");
    assert!(err.contains("'iam'"), "{err}");
}

#[test]
fn default_vpc_subnets_account_attributes_and_offerings() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let v = d.aws_json(&["ec2", "describe-vpcs"]);
    let vpc = &v["Vpcs"][0];
    assert_eq!(v["Vpcs"].as_array().unwrap().len(), 1);
    assert_eq!(vpc["CidrBlock"], "172.31.0.0/16");
    assert_eq!(vpc["IsDefault"], true);
    assert_eq!(vpc["State"], "available");
    let vpc_id = vpc["VpcId"].as_str().unwrap().to_string();
    let v = d.aws_json(&[
        "ec2",
        "describe-vpcs",
        "--filters",
        "Name=is-default,Values=true",
    ]);
    assert_eq!(v["Vpcs"][0]["VpcId"], vpc_id.as_str());
    d.aws_err(
        &["ec2", "describe-vpcs", "--vpc-ids", "vpc-0123456789abcdef0"],
        "InvalidVpcID.NotFound",
    );

    let v = d.aws_json(&["ec2", "describe-subnets"]);
    let subnets = v["Subnets"].as_array().unwrap();
    assert_eq!(subnets.len(), 4, "one default subnet per zone");
    for (i, s) in subnets.iter().enumerate() {
        assert_eq!(s["VpcId"], vpc_id.as_str());
        assert_eq!(s["CidrBlock"], format!("172.31.{}.0/20", i * 16));
        assert_eq!(s["AvailableIpAddressCount"], 4091);
        assert_eq!(s["DefaultForAz"], true);
        assert_eq!(s["MapPublicIpOnLaunch"], true);
    }
    let v = d.aws_json(&[
        "ec2",
        "describe-subnets",
        "--filters",
        "Name=availability-zone,Values=ap-northeast-2b",
        "Name=default-for-az,Values=true",
    ]);
    assert_eq!(v["Subnets"].as_array().unwrap().len(), 1);
    assert_eq!(v["Subnets"][0]["CidrBlock"], "172.31.16.0/20");
    assert_eq!(v["Subnets"][0]["AvailabilityZoneId"], "apne2-az2");
    let b = v["Subnets"][0]["SubnetId"].as_str().unwrap().to_string();
    let v = d.aws_json(&["ec2", "describe-subnets", "--subnet-ids", &b]);
    assert_eq!(v["Subnets"][0]["AvailabilityZone"], "ap-northeast-2b");
    d.aws_err(
        &[
            "ec2",
            "describe-subnets",
            "--subnet-ids",
            "subnet-0123456789abcdef0",
        ],
        "InvalidSubnetID.NotFound",
    );
    d.aws_err(
        &[
            "ec2",
            "describe-subnets",
            "--filters",
            "Name=colour,Values=red",
        ],
        "InvalidParameterValue",
    );
    // The CLI walks the pages (MaxResults 5) and sees every subnet once.
    let v = d.aws_json(&["ec2", "describe-subnets", "--page-size", "5"]);
    assert_eq!(v["Subnets"].as_array().unwrap().len(), 4);

    let v = d.aws_json(&["ec2", "describe-account-attributes"]);
    let attr = |name: &str| -> Vec<String> {
        v["AccountAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["AttributeName"] == name)
            .unwrap_or_else(|| panic!("no {name}: {v}"))["AttributeValues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["AttributeValue"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(attr("supported-platforms"), ["VPC"]);
    assert_eq!(attr("default-vpc"), [vpc_id.as_str()]);
    assert_eq!(attr("max-elastic-ips"), ["5"]);
    assert_eq!(attr("max-instances"), ["64"]);
    let v = d.aws_json(&[
        "ec2",
        "describe-account-attributes",
        "--attribute-names",
        "default-vpc",
    ]);
    assert_eq!(v["AccountAttributes"].as_array().unwrap().len(), 1);
    d.aws_err(
        &[
            "ec2",
            "describe-account-attributes",
            "--attribute-names",
            "max-unicorns",
        ],
        "InvalidParameterValue",
    );

    let types = d.aws_json(&["ec2", "describe-instance-types"])["InstanceTypes"]
        .as_array()
        .unwrap()
        .len();
    let v = d.aws_json(&["ec2", "describe-instance-type-offerings"]);
    let offers = v["InstanceTypeOfferings"].as_array().unwrap();
    assert_eq!(offers.len(), types);
    assert!(
        offers
            .iter()
            .all(|o| o["Location"] == "ap-northeast-2" && o["LocationType"] == "region")
    );
    let v = d.aws_json(&[
        "ec2",
        "describe-instance-type-offerings",
        "--location-type",
        "availability-zone",
        "--filters",
        "Name=instance-type,Values=t3.micro",
        "--page-size",
        "5",
    ]);
    let locations: Vec<&str> = v["InstanceTypeOfferings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["Location"].as_str().unwrap())
        .collect();
    assert_eq!(
        locations,
        [
            "ap-northeast-2a",
            "ap-northeast-2b",
            "ap-northeast-2c",
            "ap-northeast-2d"
        ]
    );
    d.aws_err(
        &[
            "ec2",
            "describe-instance-type-offerings",
            "--location-type",
            "outpost",
        ],
        "InvalidParameterValue",
    );

    // Unknown types name what the lab offers.
    let err = d.aws_err(
        &[
            "ec2",
            "describe-instance-types",
            "--instance-types",
            "p4d.24xlarge",
        ],
        "InvalidInstanceType",
    );
    assert!(err.contains("t3.micro"), "{err}");
    let ami = d.lab_linux();
    let err = d.aws_err(
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            "p4d.24xlarge",
        ],
        "InvalidParameterValue",
    );
    assert!(
        err.contains("p4d.24xlarge") && err.contains("t2.micro"),
        "{err}"
    );
}

/// The ids of the group's ingress rules, from DescribeSecurityGroupRules.
fn ingress_rules(d: &Daemon, group: &str) -> Vec<serde_json::Value> {
    let v = d.aws_json(&[
        "ec2",
        "describe-security-group-rules",
        "--filters",
        &format!("Name=group-id,Values={group}"),
    ]);
    v["SecurityGroupRules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["IsEgress"] == false)
        .cloned()
        .collect()
}

#[test]
fn security_group_rules_as_objects_keep_their_ids() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let mut d = Daemon::start();
    let g = d.aws_json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "rules",
        "--description",
        "rules lab",
    ])["GroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let v = d.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &g,
        "--ip-permissions",
        "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=10.0.0.0/8}]",
        "IpProtocol=tcp,FromPort=80,ToPort=80,IpRanges=[{CidrIp=0.0.0.0/0}]",
    ]);
    let added = v["SecurityGroupRules"].as_array().unwrap();
    assert_eq!(added.len(), 2);
    let ssh = added[0]["SecurityGroupRuleId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ssh.starts_with("sgr-"), "{v}");
    assert_eq!(added[0]["GroupId"], g.as_str());

    let rules = ingress_rules(&d, &g);
    assert_eq!(rules.len(), 2);
    assert!(
        rules
            .iter()
            .any(|r| r["SecurityGroupRuleId"] == ssh.as_str())
    );
    let v = d.aws_json(&[
        "ec2",
        "describe-security-group-rules",
        "--security-group-rule-ids",
        &ssh,
    ]);
    assert_eq!(v["SecurityGroupRules"][0]["CidrIpv4"], "10.0.0.0/8");
    assert_eq!(v["SecurityGroupRules"][0]["FromPort"], 22);

    // Modify the SSH rule in place: new port, peer and description, same id.
    d.aws_json(&[
        "ec2",
        "modify-security-group-rules",
        "--group-id",
        &g,
        "--security-group-rules",
        &format!(
            "SecurityGroupRuleId={ssh},SecurityGroupRule={{IpProtocol=tcp,FromPort=2222,ToPort=2222,CidrIpv4=192.168.0.0/16,Description=admin}}"
        ),
    ]);
    let v = d.aws_json(&["ec2", "describe-security-groups", "--group-ids", &g]);
    let perms = v["SecurityGroups"][0]["IpPermissions"].as_array().unwrap();
    let admin = perms.iter().find(|p| p["FromPort"] == 2222).unwrap();
    assert_eq!(admin["IpRanges"][0]["CidrIp"], "192.168.0.0/16");
    assert_eq!(admin["IpRanges"][0]["Description"], "admin");
    assert!(!perms.iter().any(|p| p["FromPort"] == 22));

    // Descriptions by rule id and by permission.
    d.aws_json(&[
        "ec2",
        "update-security-group-rule-descriptions-ingress",
        "--group-id",
        &g,
        "--security-group-rule-descriptions",
        &format!("SecurityGroupRuleId={ssh},Description=bastion"),
    ]);
    d.aws_json(&[
        "ec2",
        "update-security-group-rule-descriptions-ingress",
        "--group-id",
        &g,
        "--ip-permissions",
        "IpProtocol=tcp,FromPort=80,ToPort=80,IpRanges=[{CidrIp=0.0.0.0/0,Description=web}]",
    ]);
    let described = |d: &Daemon| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = ingress_rules(d, &g)
            .iter()
            .map(|r| {
                (
                    r["SecurityGroupRuleId"].as_str().unwrap().to_string(),
                    r["Description"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = described(&d);
    assert!(
        before.contains(&(ssh.clone(), "bastion".to_string())),
        "{before:?}"
    );
    assert!(before.iter().any(|(_, desc)| desc == "web"), "{before:?}");
    d.aws_err(
        &[
            "ec2",
            "update-security-group-rule-descriptions-ingress",
            "--group-id",
            &g,
            "--ip-permissions",
            "IpProtocol=tcp,FromPort=443,ToPort=443,IpRanges=[{CidrIp=0.0.0.0/0,Description=x}]",
        ],
        "InvalidPermission.NotFound",
    );

    // Ids and descriptions survive a restart.
    d.stop();
    d.restart();
    assert_eq!(described(&d), before);

    d.aws_err(
        &[
            "ec2",
            "describe-security-group-rules",
            "--security-group-rule-ids",
            "sgr-0123456789abcdef0",
        ],
        "InvalidSecurityGroupRuleId.NotFound",
    );
    d.aws_err(
        &[
            "ec2",
            "describe-security-group-rules",
            "--security-group-rule-ids",
            "rule-1",
        ],
        "InvalidSecurityGroupRuleId.Malformed",
    );
    d.aws_err(
        &[
            "ec2",
            "modify-security-group-rules",
            "--group-id",
            &g,
            "--security-group-rules",
            "SecurityGroupRuleId=sgr-0123456789abcdef0,SecurityGroupRule={IpProtocol=tcp,FromPort=1,ToPort=1,CidrIpv4=10.0.0.0/8}",
        ],
        "InvalidSecurityGroupRuleId.NotFound",
    );
}

#[test]
fn metadata_options_change_live_and_subnets_count_instances() {
    if !prerequisites(&["aws", "curl"]) {
        return;
    }
    let d = Daemon::start();
    let id = d.run_instances(&["--placement", "AvailabilityZone=ap-northeast-2c"])[0].clone();
    d.wait_state(&id, "running");
    let v = d.aws_json(&[
        "ec2",
        "describe-subnets",
        "--filters",
        "Name=availability-zone,Values=ap-northeast-2c",
    ]);
    assert_eq!(v["Subnets"][0]["AvailableIpAddressCount"], 4090);

    let url = "http://169.254.169.254/latest/meta-data/instance-id";
    let code = |d: &Daemon| {
        d.exec_ok(
            &id,
            None,
            &format!("curl -s -o /dev/null -w '%{{http_code}}' {url}"),
        )
    };
    assert_eq!(code(&d), "200");
    let v = d.aws_json(&[
        "ec2",
        "modify-instance-metadata-options",
        "--instance-id",
        &id,
        "--http-tokens",
        "required",
        "--http-put-response-hop-limit",
        "2",
    ]);
    assert_eq!(v["InstanceId"], id.as_str());
    assert_eq!(v["InstanceMetadataOptions"]["HttpTokens"], "required");
    assert_eq!(v["InstanceMetadataOptions"]["HttpPutResponseHopLimit"], 2);
    assert_eq!(code(&d), "401", "IMDSv1 refused at once");
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", &id]);
    let md = &v["Reservations"][0]["Instances"][0]["MetadataOptions"];
    assert_eq!(md["HttpTokens"], "required");
    assert_eq!(md["HttpPutResponseHopLimit"], 2);
    assert_eq!(md["HttpEndpoint"], "enabled");

    d.aws_json(&[
        "ec2",
        "modify-instance-metadata-options",
        "--instance-id",
        &id,
        "--http-endpoint",
        "disabled",
    ]);
    assert_eq!(code(&d), "403", "the endpoint is off");
    d.aws_json(&[
        "ec2",
        "modify-instance-metadata-options",
        "--instance-id",
        &id,
        "--http-endpoint",
        "enabled",
        "--http-tokens",
        "optional",
    ]);
    assert_eq!(code(&d), "200");

    let err = d.aws_err(
        &[
            "ec2",
            "modify-instance-metadata-options",
            "--instance-id",
            &id,
            "--http-put-response-hop-limit",
            "65",
        ],
        "InvalidParameterValue",
    );
    assert!(err.contains("HttpPutResponseHopLimit"), "{err}");
    d.aws_err(
        &[
            "ec2",
            "modify-instance-metadata-options",
            "--instance-id",
            &id,
            "--http-protocol-ipv6",
            "enabled",
        ],
        "InvalidParameterValue",
    );
    d.aws_err(
        &[
            "ec2",
            "modify-instance-metadata-options",
            "--instance-id",
            "i-0123456789abcdef0",
            "--http-tokens",
            "required",
        ],
        "InvalidInstanceID.NotFound",
    );
}
