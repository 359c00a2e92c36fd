//! Client strings are validated as AWS does before anything is stored, with the parameter named;
//! a control character never gets into a record, so every Describe call stays parseable XML; an
//! error message that echoes a bad value is itself well-formed XML.

mod common;

use common::*;

/// Every Describe call whose answer holds client strings still parses (the CLI would fail
/// otherwise).
fn describes_still_parse(d: &Daemon) {
    for call in [
        "describe-instances",
        "describe-tags",
        "describe-security-groups",
        "describe-key-pairs",
        "describe-images",
        "describe-addresses",
    ] {
        d.aws_json(&["ec2", call]);
    }
}

fn assert_names(err: &str, param: &str) {
    assert!(
        err.contains(param),
        "the error does not name {param}: {err}"
    );
    assert!(
        !err.contains('\u{1}'),
        "the error echoes a raw control character: {err:?}"
    );
}

/// A CLI argument in JSON form (the shorthand syntax cannot carry control characters).
fn json(v: serde_json::Value) -> String {
    v.to_string()
}

fn well_formed_xml(body: &str) {
    if let Err(e) = common::xml::check(body) {
        panic!("not well-formed XML ({e}): {body:?}");
    }
}

#[test]
fn control_characters_are_refused_naming_the_parameter() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let sg = d.aws_json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "web",
        "--description",
        "web servers",
    ])["GroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = "a\u{1}b";

    for (tag, named) in [
        (
            serde_json::json!([{"Key": "Name", "Value": bad}]),
            "Tag.Value",
        ),
        (serde_json::json!([{"Key": bad, "Value": "x"}]), "Tag.Key"),
    ] {
        let e = d.aws_err(
            &[
                "ec2",
                "create-tags",
                "--resources",
                &sg,
                "--tags",
                &json(tag),
            ],
            "InvalidParameterValue",
        );
        assert_names(&e, named);
    }
    let e = d.aws_err(
        &[
            "ec2",
            "create-security-group",
            "--group-name",
            bad,
            "--description",
            "d",
        ],
        "InvalidParameterValue",
    );
    assert_names(&e, "GroupName");
    let e = d.aws_err(
        &[
            "ec2",
            "create-security-group",
            "--group-name",
            "g2",
            "--description",
            bad,
        ],
        "InvalidParameterValue",
    );
    assert_names(&e, "GroupDescription");
    let e = d.aws_err(
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            &sg,
            "--ip-permissions",
            &json(
                serde_json::json!([{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": bad}]}]),
            ),
        ],
        "InvalidParameterValue",
    );
    assert_names(&e, "Description");
    let e = d.aws_err(
        &["ec2", "create-key-pair", "--key-name", bad],
        "InvalidParameterValue",
    );
    assert_names(&e, "KeyName");
    let e = d.aws_err(
        &[
            "ec2",
            "create-key-pair",
            "--key-name",
            "k",
            "--tag-specifications",
            &json(serde_json::json!([{"ResourceType": "key-pair",
                "Tags": [{"Key": "Name", "Value": bad}]}])),
        ],
        "InvalidParameterValue",
    );
    assert_names(&e, "Tag.Value");
    describes_still_parse(&d);

    // The raw error document that echoes the value is well-formed XML without the character.
    for body in [
        format!(
            "Action=CreateTags&Version=2016-11-15&ResourceId.1={sg}&Tag.1.Key=k&Tag.1.Value=a%01b%0Bc"
        ),
        "Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-%01%FF%FE".to_string(),
        "Action=CreateSecurityGroup&Version=2016-11-15&GroupName=%1B%5B31m&GroupDescription=x"
            .to_string(),
        "Action=No%01Such%EF%BF%BEAction&Version=2016-11-15".to_string(),
    ] {
        let (status, text) = d.raw(&body);
        assert_eq!(status, 400, "{body}: {text}");
        well_formed_xml(&text);
        assert!(
            !text.contains('\u{1}') && !text.contains('\u{FFFE}'),
            "{text:?}"
        );
    }
}

#[test]
fn lengths_at_the_edge_ids_and_charsets() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let (g255, d255) = ("g".repeat(255), "d".repeat(255));
    let group = |name: &str, desc: &str| {
        d.aws_json(&[
            "ec2",
            "create-security-group",
            "--group-name",
            name,
            "--description",
            desc,
        ])["GroupId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let sg = group(&g255, &d255);
    // VPC group names allow a-z A-Z 0-9 spaces and ._-:/()#,@[]+=&;{}!$*.
    group("web (prod) #1 [a]+{b}!$*", "ok: ._-:/()#,@[]+=&;{}!$*");
    let (k128, v256) = ("k".repeat(128), "v".repeat(256));
    d.aws_json(&[
        "ec2",
        "create-tags",
        "--resources",
        &sg,
        "--tags",
        &format!("Key={k128},Value={v256}"),
    ]);
    d.aws_json(&["ec2", "create-key-pair", "--key-name", &"n".repeat(255)]);

    let (g256, d256, n256) = ("g".repeat(256), "d".repeat(256), "n".repeat(256));
    let (k129, v257) = (
        format!("Key={k128}k,Value=x"),
        format!("Key=k,Value={v256}v"),
    );
    // Each case: the arguments (split at single spaces), the code, what the message names.
    let refused: Vec<(String, &str, &str)> = vec![
        (
            format!("create-security-group --group-name {g256} --description d"),
            "InvalidParameterValue",
            "GroupName",
        ),
        (
            format!("create-security-group --group-name x --description {d256}"),
            "InvalidParameterValue",
            "GroupDescription",
        ),
        (
            "create-security-group --group-name caf\u{e9} --description d".into(),
            "InvalidParameterValue",
            "GroupName",
        ),
        (
            "create-security-group --group-name a<b --description d".into(),
            "InvalidParameterValue",
            "GroupName",
        ),
        (
            "create-security-group --group-name sg-web --description d".into(),
            "InvalidParameterValue",
            "GroupName",
        ),
        (
            "create-security-group --group-name tab\there --description d".into(),
            "InvalidParameterValue",
            "GroupName",
        ),
        (
            format!("create-tags --resources {sg} --tags {k129}"),
            "InvalidParameterValue",
            "Tag.Key",
        ),
        (
            format!("create-tags --resources {sg} --tags {v257}"),
            "InvalidParameterValue",
            "Tag.Value",
        ),
        (
            format!("create-tags --resources {sg} --tags Key=aws:x,Value=y"),
            "InvalidParameterValue",
            "Tag.Key",
        ),
        (
            format!("create-key-pair --key-name {n256}"),
            "InvalidParameterValue",
            "KeyName",
        ),
        (
            "create-key-pair --key-name 키".into(),
            "InvalidParameterValue",
            "KeyName",
        ),
        // Ids of the wrong shape are Malformed, by their own codes.
        (
            "describe-instances --instance-ids i-xyz".into(),
            "InvalidInstanceID.Malformed",
            "i-xyz",
        ),
        (
            "describe-security-groups --group-ids sg-nothex".into(),
            "InvalidGroupId.Malformed",
            "sg-nothex",
        ),
        (
            "describe-images --image-ids ami-12".into(),
            "InvalidAMIID.Malformed",
            "ami-12",
        ),
        (
            "release-address --allocation-id eipalloc-zz".into(),
            "InvalidAllocationID.Malformed",
            "eipalloc-zz",
        ),
        (
            "create-tags --resources i-123 --tags Key=a,Value=b".into(),
            "InvalidID",
            "i-123",
        ),
    ];
    for (args, code, named) in &refused {
        let args: Vec<&str> = std::iter::once("ec2").chain(args.split(' ')).collect();
        let e = d.aws_err(&args, code);
        assert_names(&e, named);
    }
    let tags = d.aws_json(&["ec2", "describe-tags"]);
    assert_eq!(tags["Tags"].as_array().unwrap().len(), 1, "{tags}");
    assert_eq!(tags["Tags"][0]["Key"], k128.as_str(), "{tags}");
    describes_still_parse(&d);
}

/// A parameter the lab does not know is refused by name before anything is launched.
#[test]
fn an_unread_parameter_is_refused_by_name_and_launches_nothing() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let ami = d.lab_linux();
    let (status, body) = d.raw(&format!(
        "Action=RunInstances&Version=2016-11-15&ImageId={ami}&MinCount=1&MaxCount=1&NetworkInterface.1.DeviceIndex=0&NetworkInterface.1.Colour=blue"
    ));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("UnknownParameter"), "{body}");
    assert_names(&body, "NetworkInterface.1.Colour");
    let v = d.aws_json(&["ec2", "describe-instances"]);
    assert_eq!(
        v["Reservations"].as_array().map(Vec::len),
        Some(0),
        "an instance was launched anyway: {v}"
    );
}

/// A dry run checks the request first (a bad member is refused as without DryRun), then says
/// it would have succeeded — and launches nothing.
#[test]
fn dry_run_checks_the_request_then_answers_and_acts_not() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let ami = d.lab_linux();
    let run = ["ec2", "run-instances", "--image-id", &ami, "--dry-run"];
    d.aws_err(&run, "DryRunOperation");
    let e = d.aws_err(
        &[&run[..], &["--placement", "Tenancy=dedicated"]].concat(),
        "InvalidParameterValue",
    );
    assert_names(&e, "Placement.Tenancy");
    d.aws_err(
        &["ec2", "create-key-pair", "--key-name", "k", "--dry-run"],
        "DryRunOperation",
    );
    let v = d.aws_json(&["ec2", "describe-instances"]);
    assert_eq!(v["Reservations"].as_array().map(Vec::len), Some(0), "{v}");
    let v = d.aws_json(&["ec2", "describe-key-pairs"]);
    assert_eq!(v["KeyPairs"].as_array().map(Vec::len), Some(0), "{v}");
}

/// DescribeInstances pages with MaxResults (5..1000) and NextToken, and refuses MaxResults
/// with explicit instance ids, as EC2 does.
#[test]
fn describe_instances_pages() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let ids = d.run_instances(&["--count", "6"]);
    let page = |token: Option<&str>| {
        let mut args = vec![
            "ec2",
            "describe-instances",
            "--max-results",
            "5",
            "--no-paginate",
        ];
        if let Some(t) = token {
            args.extend(["--next-token", t]);
        }
        d.aws_json(&args)
    };
    let count = |v: &serde_json::Value| -> usize {
        v["Reservations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Instances"].as_array().unwrap().len())
            .sum()
    };
    let first = page(None);
    assert_eq!(count(&first), 5, "{first}");
    let token = first["NextToken"]
        .as_str()
        .expect("a next token")
        .to_string();
    let second = page(Some(&token));
    assert_eq!(count(&second), 1, "{second}");
    assert!(second.get("NextToken").is_none(), "{second}");
    let e = d.aws_err(
        &[
            "ec2",
            "describe-instances",
            "--max-results",
            "5",
            "--instance-ids",
            &ids[0],
        ],
        "InvalidParameterCombination",
    );
    assert_names(&e, "maxResults");
    d.aws_err(
        &[
            "ec2",
            "describe-instances",
            "--max-results",
            "2",
            "--no-paginate",
        ],
        "InvalidParameterValue",
    );
}
