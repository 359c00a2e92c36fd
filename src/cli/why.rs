//! `ec2lab why INSTANCE --port P [--from IP]`: explains whether a connection from a source
//! address reaches a port of an instance, and why: which group and rule allow it, or that none
//! does and the rule that would; and whether anything listens on that port inside the instance.
//! It evaluates the same pure functions the front listeners and the VPC firewall enforce. A
//! private source address is an instance in the VPC: its groups' outbound rules are checked
//! first (to the destination's private IP), then the destination's inbound rules, as the VPC
//! router does. SSH — tcp/22 (and the daemon's `--ssh-port`) from the host — is answered by the
//! lab's SSH gateway, not by a server inside.

use std::net::Ipv4Addr;

use clap::Args;

use super::client::Element;
use super::instance::{resolve_instance, state_name};
use super::{CliError, Client, Common};
use crate::cloud::security_groups::{self, Rule, SecurityGroup, Verdict};

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// Instance id or Name tag.
    pub instance: String,
    /// The TCP port on its public IP.
    #[arg(long)]
    pub port: u16,
    /// The source address (default 127.0.0.1, where your ssh and curl come from).
    #[arg(long, default_value = "127.0.0.1")]
    pub from: Ipv4Addr,
}

fn rule_from(item: &Element) -> Vec<Rule> {
    let proto = item.text_of("ipProtocol");
    let port = |n: &str| item.text_of(n).parse::<i32>().ok();
    let mut out = Vec::new();
    for r in item.items("ipRanges") {
        out.push(Rule {
            id: String::new(),
            protocol: proto.clone(),
            from_port: port("fromPort"),
            to_port: port("toPort"),
            cidr: Some(r.text_of("cidrIp")),
            source_group: None,
            description: r.text_of("description"),
        });
    }
    for g in item.items("groups") {
        out.push(Rule {
            id: String::new(),
            protocol: proto.clone(),
            from_port: port("fromPort"),
            to_port: port("toPort"),
            cidr: None,
            source_group: Some(g.text_of("groupId")),
            description: g.text_of("description"),
        });
    }
    out
}

fn groups(client: &Client, ids: &[String]) -> Result<Vec<SecurityGroup>, CliError> {
    let params: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("GroupId.{}", i + 1), id.clone()))
        .collect();
    let r = client.call("DescribeSecurityGroups", &params)?;
    Ok(r.items("securityGroupInfo")
        .iter()
        .map(|g| SecurityGroup {
            id: g.text_of("groupId"),
            name: g.text_of("groupName"),
            description: g.text_of("groupDescription"),
            vpc_id: g.text_of("vpcId"),
            ingress: g
                .items("ipPermissions")
                .iter()
                .flat_map(|p| rule_from(p))
                .collect(),
            egress: g
                .items("ipPermissionsEgress")
                .iter()
                .flat_map(|p| rule_from(p))
                .collect(),
            tags: Vec::new(),
        })
        .collect())
}

pub fn run(common: &Common, a: WhyArgs) -> Result<(), CliError> {
    let client = common.client()?;
    let inst = resolve_instance(&client, &a.instance)?;
    let id = inst.text_of("instanceId");
    let state = state_name(&inst);
    let public = inst.text_of("ipAddress");
    let group_ids: Vec<String> = inst
        .items("groupSet")
        .iter()
        .map(|g| g.text_of("groupId"))
        .collect();
    let gs = groups(&client, &group_ids)?;
    let names: Vec<String> = gs
        .iter()
        .map(|g| format!("{} ({})", g.name, g.id))
        .collect();
    println!("{id} port {}/tcp from {}:", a.port, a.from);
    let private_source = a.from.is_private() || a.from.is_link_local();
    if state != "running" || (public.is_empty() && !private_source) {
        println!(
            "  UNREACHABLE: the instance is {state}{}.",
            if public.is_empty() {
                " and has no public IP"
            } else {
                ""
            }
        );
        return Ok(());
    }
    println!(
        "  public IP {public}; security groups: {}",
        names.join(", ")
    );
    let ssh_port = crate::datadir::DataDir::new(&common.data_dir)
        .daemon_info()
        .map(|i| i.ssh_port)
        .unwrap_or(22);
    let gateway = !private_source && (a.port == 22 || a.port == ssh_port);
    // The gateway's connections are checked against the tcp/22 rules, on whichever port it has.
    let port = if gateway { 22 } else { a.port };
    // Source-group rules: which groups the instance owning the source address is in.
    let all = client.call("DescribeInstances", &[])?;
    let owners: Vec<(String, Vec<String>)> = all
        .items("reservationSet")
        .iter()
        .flat_map(|r| r.items("instancesSet"))
        .filter(|i| {
            i.find("instanceState")
                .map(|s| s.text_of("name"))
                .as_deref()
                == Some("running")
        })
        .flat_map(|i| {
            let g: Vec<String> = i
                .items("groupSet")
                .iter()
                .map(|x| x.text_of("groupId"))
                .collect();
            [i.text_of("privateIpAddress"), i.text_of("ipAddress")]
                .into_iter()
                .map(move |ip| (ip, g.clone()))
        })
        .collect();
    let member = |ip: Ipv4Addr| {
        owners
            .iter()
            .filter(|(o, _)| *o == ip.to_string())
            .flat_map(|(_, g)| g.clone())
            .collect()
    };
    if private_source && !egress_allows(&client, &inst, &owners, a.from, port, &member)? {
        return Ok(());
    }
    match security_groups::evaluate(&gs, a.from, "tcp", port, &member) {
        Verdict::Allowed {
            group_id,
            group_name,
            rule,
        } => {
            let peer = peer_of(&rule);
            println!(
                "  ALLOWED by {group_name} ({group_id}): {} from {peer}",
                ports_of(&rule)
            );
        }
        Verdict::Denied => {
            println!(
                "  DENIED: no inbound rule of its groups allows {} on tcp/{}.",
                a.from, port
            );
            let near: Vec<String> = gs
                .iter()
                .flat_map(|g| g.ingress.iter().map(move |r| (g, r)))
                .filter(|(_, r)| {
                    r.protocol == "-1"
                        || (r.protocol == "tcp"
                            && (r.from_port.unwrap_or(0)..=r.to_port.unwrap_or(-1))
                                .contains(&i32::from(port)))
                })
                .map(|(g, r)| format!("{}: {} from {}", g.name, ports_of(r), peer_of(r)))
                .collect();
            if near.is_empty() {
                println!("  No rule opens tcp/{} at all.", port);
            } else {
                println!(
                    "  Rules for tcp/{} (none matches {}): {}",
                    port,
                    a.from,
                    near.join("; ")
                );
            }
            if let Some(g) = gs.first() {
                println!(
                    "  To allow it: aws ec2 authorize-security-group-ingress --group-id {} --protocol tcp --port {} --cidr {}/32",
                    g.id, port, a.from
                );
            }
        }
    }
    if gateway {
        println!(
            "  Port {} is answered by the lab's SSH gateway on {public}:{ssh_port}, not by a server inside the instance (none needs to listen there): log in with `ec2lab ssh {}`.",
            a.port, a.instance
        );
        return Ok(());
    }
    listening_inside(common, &id, a.port);
    Ok(())
}

/// A private source: the instance that owns it, and whether its groups let the connection out
/// to the destination's private IP (the VPC router checks both sides). Prints the verdict;
/// false when the connection goes no further.
fn egress_allows(
    client: &Client,
    dest: &Element,
    owners: &[(String, Vec<String>)],
    from: Ipv4Addr,
    port: u16,
    member: &dyn Fn(Ipv4Addr) -> Vec<String>,
) -> Result<bool, CliError> {
    let Some((_, src_groups)) = owners.iter().find(|(ip, _)| *ip == from.to_string()) else {
        println!(
            "  UNREACHABLE: no running instance has the private address {from}; inside the VPC only instances send (from the host, connect to a public IP)."
        );
        return Ok(false);
    };
    let Ok(dest_ip) = dest.text_of("privateIpAddress").parse::<Ipv4Addr>() else {
        println!("  UNREACHABLE: the instance has no private IP.");
        return Ok(false);
    };
    let gs = groups(client, src_groups)?;
    match security_groups::evaluate_egress(&gs, dest_ip, "tcp", port, member) {
        Verdict::Allowed {
            group_id,
            group_name,
            rule,
        } => {
            let peer = peer_of(&rule);
            println!(
                "  out of {from}: allowed by {group_name} ({group_id}): {} to {peer}; through the VPC router to {dest_ip}",
                ports_of(&rule)
            );
            Ok(true)
        }
        Verdict::Denied => {
            println!(
                "  DENIED on the way out: no outbound rule of {from}'s groups allows tcp/{port} to {dest_ip}."
            );
            if let Some(g) = gs.first() {
                println!(
                    "  To allow it: aws ec2 authorize-security-group-egress --group-id {} --protocol tcp --port {port} --cidr {dest_ip}/32",
                    g.id
                );
            }
            Ok(false)
        }
    }
}

/// A rule's peer as the console shows it: its CIDR or its group.
fn peer_of(r: &Rule) -> String {
    r.cidr
        .clone()
        .or(r.source_group.clone())
        .unwrap_or_default()
}

fn ports_of(r: &Rule) -> String {
    match r.protocol.as_str() {
        "-1" => "all traffic".into(),
        p if r.from_port == r.to_port => format!("{p}/{}", r.from_port.unwrap_or(-1)),
        p => format!(
            "{p}/{}-{}",
            r.from_port.unwrap_or(-1),
            r.to_port.unwrap_or(-1)
        ),
    }
}

/// Says whether a socket listens on the port inside the instance (needs root, like exec).
fn listening_inside(common: &Common, id: &str, port: u16) {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let out = std::process::Command::new(exe)
        .args(["exec", "--data-dir"])
        .arg(&common.data_dir)
        .args([
            "--user",
            "root",
            id,
            "--",
            "cat",
            "/proc/net/tcp",
            "/proc/net/tcp6",
        ])
        .output();
    let Ok(out) = out else { return };
    if !out.status.success() {
        println!(
            "  (cannot look inside the instance: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = format!("{port:04X}");
    // st 0A = LISTEN; local address column is ADDR:PORT in hex.
    let listening = text.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[3] == "0A" && f[1].ends_with(&format!(":{hex}"))
    });
    if listening {
        println!("  Inside the instance: a server listens on port {port}.");
    } else {
        println!(
            "  Inside the instance: nothing listens on port {port} (start a server, or check its user data)."
        );
    }
}
