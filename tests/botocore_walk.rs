//! No parameter is dropped silently: for every action the lab answers (`ec2::actions()`) and
//! every input member of its botocore shape (nested structures and lists flattened to their
//! wire names by botocore's own EC2 serializer), a `DryRun` request carrying that member must
//! either
//! - answer `DryRunOperation`: every handler decodes, then calls `Params::finish` before acting,
//!   which refuses any name no accessor read (`UnknownParameter`) and only then answers the dry
//!   run — so the member was read; or
//! - fail with another 4xx error while the same request without the member answers
//!   `DryRunOperation`: the member changed the outcome (refused by name, a bad value, a
//!   combination) — it had an effect.
//!
//! `UnknownParameter`, a 5xx, or a base request that does not answer `DryRunOperation` (a
//! handler that would act on a dry run) fail the test. Values are plausible, not necessarily
//! valid: a refusal is an effect too. Whether a read member is also honoured is for the
//! handlers' own tests (`run_forms`, …).

mod common;

use std::process::{Command, Stdio};

use common::*;

const WALK: &str = r#"
import datetime, json, sys
import boto3, botocore.session
from botocore.config import Config

model = botocore.session.get_session().get_service_model("ec2")
ec2 = boto3.client("ec2", config=Config(parameter_validation=False, retries={"max_attempts": 1}))
actions = json.loads(sys.argv[1])

IDS = {"ImageId": "ami-0123456789abcdef0", "InstanceId": "i-0123456789abcdef0",
       "GroupId": "sg-0123456789abcdef0", "SubnetId": "subnet-0123456789abcdef0",
       "VpcId": "vpc-0123456789abcdef0", "AllocationId": "eipalloc-0123456789abcdef0",
       "AssociationId": "eipassoc-0123456789abcdef0", "KeyPairId": "key-0123456789abcdef0",
       "SnapshotId": "snap-0123456789abcdef0", "ResourceId": "i-0123456789abcdef0",
       "SecurityGroupRuleId": "sgr-0123456789abcdef0", "SecurityGroupId": "sg-0123456789abcdef0"}
STRINGS = {"CidrIp": "10.0.0.0/8", "IpProtocol": "tcp", "PrivateIpAddress": "172.31.0.10",
           "PublicIp": "127.0.0.1", "Address": "127.0.0.1", "KeyName": "k", "Name": "n",
           "GroupName": "g", "GroupDescription": "d", "Description": "d", "DeviceName": "/dev/sdf",
           "ImageLocation": "/nonexistent", "Attribute": "instanceType", "Value": "t2.micro",
           "ResourceType": "instance", "Key": "k", "UserData": "ZWNobyBoaQ==",
           "PublicKeyMaterial": "x", "InstanceType": "t2.micro", "RegionName": "ap-northeast-2",
           "ZoneName": "ap-northeast-2a", "Owner": "self", "ExecutableBy": "self"}
INTS = {"MinCount": 1, "MaxCount": 1, "FromPort": 22, "ToPort": 22, "MaxResults": 5,
        "DeviceIndex": 0, "VolumeSize": 8}

# The members a request needs besides the model's required ones to get past decoding.
BASE = {
    "DeleteKeyPair": {"KeyName": "k"},
    "DeleteSecurityGroup": {"GroupId": IDS["GroupId"]},
    "AuthorizeSecurityGroupIngress": {"GroupId": IDS["GroupId"]},
    "AuthorizeSecurityGroupEgress": {"GroupId": IDS["GroupId"]},
    "RevokeSecurityGroupIngress": {"GroupId": IDS["GroupId"]},
    "RevokeSecurityGroupEgress": {"GroupId": IDS["GroupId"]},
    "AssociateAddress": {"AllocationId": IDS["AllocationId"], "InstanceId": IDS["InstanceId"]},
    "RunInstances": {"ImageId": IDS["ImageId"]},
    "DisassociateAddress": {"AssociationId": IDS["AssociationId"]},
    "ReleaseAddress": {"AllocationId": IDS["AllocationId"]},
    "ModifyInstanceAttribute": {"Attribute": "instanceType", "Value": "t2.micro"},
    "RegisterImage": {"ImageLocation": "/nonexistent"},
    "ModifySecurityGroupRules": {"SecurityGroupRules": [{"SecurityGroupRuleId": IDS["SecurityGroupRuleId"],
        "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIpv4": "10.0.0.0/8"}}]},
    "UpdateSecurityGroupRuleDescriptionsIngress": {"GroupId": IDS["GroupId"]},
    "UpdateSecurityGroupRuleDescriptionsEgress": {"GroupId": IDS["GroupId"]},
}

def scalar(name, shape):
    t = shape.type_name
    if t == "string":
        if name in IDS: return IDS[name]
        if name in STRINGS: return STRINGS[name]
        if shape.enum: return shape.enum[0]
        return "x"
    if t in ("integer", "long"): return INTS.get(name, 1)
    if t == "boolean": return True
    if t == "timestamp": return datetime.datetime(2030, 1, 1)
    if t == "blob": return b"x"
    if t in ("float", "double"): return 1.0
    raise ValueError(t)

def required(shape):
    """The required members of a structure, plausibly filled."""
    return {m: fill(m, shape.members[m]) for m in shape.required_members}

def fill(name, shape):
    if shape.type_name == "structure": return required(shape)
    if shape.type_name == "list": return [fill(name, shape.member)]
    return scalar(name, shape)

def leaves(name, shape):
    """(label, value) for every leaf under a member: each value carries one leaf (and the
    required members around it)."""
    if shape.type_name == "structure":
        for m, s in shape.members.items():
            for label, v in leaves(m, s):
                obj = required(shape)
                obj[m] = v
                yield ".".join(x for x in (m, label) if x), obj
    elif shape.type_name == "list":
        for label, v in leaves(name, shape.member):
            yield label, [v]
    else:
        yield "", scalar(name, shape)

def call(op, params):
    try:
        ec2._make_api_call(op, params)
        return 200, "OK", ""
    except ec2.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], e.response["Error"]["Message"]

for op in actions:
    shape = model.operation_model(op).input_shape
    base = required(shape)
    base.update(BASE.get(op, {}))
    base["DryRun"] = True
    status, code, msg = call(op, base)
    print(json.dumps({"action": op, "member": None, "status": status, "code": code, "message": msg}))
    for m, s in shape.members.items():
        if m == "DryRun": continue
        for label, v in leaves(m, s):
            params = dict(base)
            params[m] = v
            status, code, msg = call(op, params)
            print(json.dumps({"action": op, "member": ".".join(x for x in (m, label) if x),
                              "status": status, "code": code, "message": msg}))
"#;

#[test]
fn every_member_of_every_action_is_read_or_refused() {
    if !prerequisites(&["aws", "python3"]) {
        return;
    }
    let d = Daemon::start();
    let actions = serde_json::to_string(ec2lab::api::ec2::actions()).unwrap();
    let out = Command::new("python3")
        .args(["-c", WALK, &actions])
        .envs(d.aws_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the walk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bad = Vec::new();
    let (mut members, mut read) = (0, 0);
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let (code, status) = (r["code"].as_str().unwrap(), r["status"].as_u64().unwrap());
        if r["member"].is_null() {
            if code != "DryRunOperation" {
                bad.push(format!(
                    "{}: a dry run without members answered {r}",
                    r["action"]
                ));
            }
            continue;
        }
        members += 1;
        read += usize::from(code == "DryRunOperation");
        if code == "UnknownParameter" || status >= 500 || status == 200 {
            bad.push(format!("{}.{}: {r}", r["action"], r["member"]));
        }
    }
    eprintln!(
        "{members} members: {read} read (DryRunOperation), {} refused or with another effect",
        members - read
    );
    assert!(members > 300, "the walk saw only {members} members");
    assert!(
        bad.is_empty(),
        "{} members not handled:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
