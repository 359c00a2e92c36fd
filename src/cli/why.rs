//! `ec2lab why INSTANCE --port P [--from IP]`: explains whether a connection from a source
//! address reaches a port of an instance, and why: which group and rule allow it, or that none
//! does and the rule that would; and whether anything listens on that port inside the instance.
//! It evaluates the same pure function the front listeners use. Two cases are told apart
//! first: a private source address (the lab's VPC does not carry traffic between instances
//! yet, so nothing from one arrives, whatever the rules say), and SSH — tcp/22 (and the
//! daemon's `--ssh-port`) is answered by the lab's SSH gateway, not by a server inside.

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
            egress: Vec::new(),
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
    if state != "running" || public.is_empty() {
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
    if a.from.is_private() || a.from.is_link_local() {
        println!(
            "  NOT CARRIED: {} is a private address, and the lab's VPC does not carry traffic between instances yet: nothing from {} reaches {id}, whatever its security groups say. Connect from this host (127.0.0.1) to its public IP {public} instead.",
            a.from, a.from
        );
        return Ok(());
    }
    let ssh_port = crate::datadir::DataDir::new(&common.data_dir)
        .daemon_info()
        .map(|i| i.ssh_port)
        .unwrap_or(22);
    let gateway = a.port == 22 || a.port == ssh_port;
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
    match security_groups::evaluate(&gs, a.from, "tcp", port, &member) {
        Verdict::Allowed {
            group_id,
            group_name,
            rule,
        } => {
            let peer = rule
                .cidr
                .clone()
                .or(rule.source_group.clone())
                .unwrap_or_default();
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
                .map(|(g, r)| {
                    format!(
                        "{}: {} from {}",
                        g.name,
                        ports_of(r),
                        r.cidr
                            .clone()
                            .or(r.source_group.clone())
                            .unwrap_or_default()
                    )
                })
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
