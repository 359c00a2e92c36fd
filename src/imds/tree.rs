//! The metadata tree: which path answers what, built from a [`Metadata`] snapshot per request.
//!
//! `/` lists the API versions; every version (dated or `latest`) serves the same tree:
//! `meta-data/…` (reference §5.3), `user-data` (raw bytes, only when present) and
//! `dynamic/instance-identity/document`. Directories list their children one per line, sorted,
//! sub-directories with a trailing `/`, no final newline; `public-keys/` lists `0=<name>`.
//! A trailing slash on a path makes no difference.

use crate::imds::Metadata;

/// API versions listed at `/` and accepted as path prefixes (cloud-init probes several).
pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "latest",
];

/// A successful answer: body and content type.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

enum Node {
    Leaf(String),
    /// Entries: (path key, listing label, child).
    Dir(Vec<(String, String, Node)>),
}

fn leaf(key: &str, value: impl Into<String>) -> (String, String, Node) {
    (key.to_string(), key.to_string(), Node::Leaf(value.into()))
}

fn dir(key: &str, entries: Vec<(String, String, Node)>) -> (String, String, Node) {
    (key.to_string(), format!("{key}/"), Node::Dir(entries))
}

fn text(body: String) -> Answer {
    Answer {
        body: body.into_bytes(),
        content_type: "text/plain",
    }
}

/// Resolves a request path (already without query string) to an answer; `None` = 404.
pub fn resolve(md: &Metadata, path: &str) -> Option<Answer> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let Some((version, rest)) = segments.split_first() else {
        return Some(text(VERSIONS.join("\n")));
    };
    if !VERSIONS.contains(&version.as_str()) {
        return None;
    }
    let Some((top, rest)) = rest.split_first() else {
        let mut names = vec!["dynamic", "meta-data"];
        if md.user_data.is_some() {
            names.push("user-data");
        }
        return Some(text(names.join("\n")));
    };
    match top.as_str() {
        "user-data" if rest.is_empty() => md.user_data.as_ref().map(|d| Answer {
            body: d.clone(),
            content_type: "application/octet-stream",
        }),
        "meta-data" => walk(Node::Dir(meta_data(md)), rest),
        "dynamic" => walk(Node::Dir(dynamic(md)), rest),
        _ => None,
    }
}

fn walk(mut node: Node, path: &[String]) -> Option<Answer> {
    for segment in path {
        let Node::Dir(entries) = node else {
            return None;
        };
        node = entries.into_iter().find(|(k, _, _)| k == segment)?.2;
    }
    Some(match node {
        Node::Leaf(value) => text(value),
        Node::Dir(mut entries) => {
            entries.sort_by(|a, b| a.1.cmp(&b.1));
            let labels: Vec<String> = entries.into_iter().map(|(_, label, _)| label).collect();
            text(labels.join("\n"))
        }
    })
}

fn meta_data(md: &Metadata) -> Vec<(String, String, Node)> {
    let mut entries = vec![
        leaf("ami-id", &md.ami_id),
        leaf("ami-launch-index", md.ami_launch_index.to_string()),
        leaf("ami-manifest-path", "(unknown)"),
        dir(
            "block-device-mapping",
            vec![
                leaf("ami", &md.root_device_name),
                leaf("root", &md.root_device_name),
            ],
        ),
        leaf("hostname", &md.local_hostname),
        leaf("instance-action", "none"),
        leaf("instance-id", &md.instance_id),
        leaf("instance-life-cycle", "on-demand"),
        leaf("instance-type", &md.instance_type),
        leaf("local-hostname", &md.local_hostname),
        leaf("local-ipv4", &md.local_ipv4),
        leaf("mac", &md.mac),
        dir(
            "network",
            vec![dir(
                "interfaces",
                vec![dir("macs", vec![dir(&md.mac, interface(md))])],
            )],
        ),
        dir(
            "placement",
            vec![
                leaf("availability-zone", &md.availability_zone),
                leaf("availability-zone-id", &md.availability_zone_id),
                leaf("region", &md.region),
            ],
        ),
        leaf("profile", "default-hvm"),
        leaf("reservation-id", &md.reservation_id),
        leaf("security-groups", md.security_groups.join("\n")),
        dir(
            "services",
            vec![leaf("domain", "amazonaws.com"), leaf("partition", "aws")],
        ),
    ];
    if let Some(host) = &md.public_hostname {
        entries.push(leaf("public-hostname", host));
    }
    if let Some(ip) = &md.public_ipv4 {
        entries.push(leaf("public-ipv4", ip));
    }
    if !md.public_keys.is_empty() {
        let keys = md
            .public_keys
            .iter()
            .enumerate()
            .map(|(i, (name, line))| {
                (
                    i.to_string(),
                    format!("{i}={name}"),
                    Node::Dir(vec![leaf("openssh-key", line)]),
                )
            })
            .collect();
        entries.push(("public-keys".into(), "public-keys/".into(), Node::Dir(keys)));
    }
    if md.instance_tags_enabled {
        let tags = md.tags.iter().map(|(k, v)| leaf(k, v)).collect();
        entries.push(dir("tags", vec![dir("instance", tags)]));
    }
    entries
}

fn interface(md: &Metadata) -> Vec<(String, String, Node)> {
    let mut entries = vec![
        leaf("device-number", "0"),
        leaf("interface-id", &md.interface_id),
        leaf("local-hostname", &md.local_hostname),
        leaf("local-ipv4s", &md.local_ipv4),
        leaf("mac", &md.mac),
        leaf("owner-id", &md.account_id),
        leaf("security-group-ids", md.security_group_ids.join("\n")),
        leaf("security-groups", md.security_groups.join("\n")),
        leaf("subnet-id", &md.subnet_id),
        leaf("vpc-id", &md.vpc_id),
    ];
    if !md.subnet_ipv4_cidr_block.is_empty() {
        entries.push(leaf("subnet-ipv4-cidr-block", &md.subnet_ipv4_cidr_block));
    }
    if !md.vpc_ipv4_cidr_block.is_empty() {
        entries.push(leaf("vpc-ipv4-cidr-block", &md.vpc_ipv4_cidr_block));
        entries.push(leaf("vpc-ipv4-cidr-blocks", &md.vpc_ipv4_cidr_block));
    }
    if let Some(ip) = &md.public_ipv4 {
        entries.push(leaf("public-ipv4s", ip));
        entries.push(dir("ipv4-associations", vec![leaf(ip, &md.local_ipv4)]));
    }
    if let Some(host) = &md.public_hostname {
        entries.push(leaf("public-hostname", host));
    }
    entries
}

fn dynamic(md: &Metadata) -> Vec<(String, String, Node)> {
    vec![dir(
        "instance-identity",
        vec![leaf("document", identity_document(md))],
    )]
}

/// The instance identity document, formatted as AWS formats it.
pub fn identity_document(md: &Metadata) -> String {
    let s = |v: &str| serde_json::Value::String(v.to_string());
    let null = serde_json::Value::Null;
    let fields: [(&str, serde_json::Value); 15] = [
        ("accountId", s(&md.account_id)),
        ("architecture", s(&md.architecture)),
        ("availabilityZone", s(&md.availability_zone)),
        ("billingProducts", null.clone()),
        ("devpayProductCodes", null.clone()),
        ("marketplaceProductCodes", null.clone()),
        ("imageId", s(&md.ami_id)),
        ("instanceId", s(&md.instance_id)),
        ("instanceType", s(&md.instance_type)),
        ("kernelId", null.clone()),
        ("pendingTime", s(&md.pending_time)),
        ("privateIp", s(&md.local_ipv4)),
        ("ramdiskId", null),
        ("region", s(&md.region)),
        ("version", s("2017-09-30")),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  \"{k}\" : {v}"))
        .collect();
    format!("{{\n{}\n}}", body.join(",\n"))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
