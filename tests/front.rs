//! Security groups enforced live on the front listeners: curl from different source addresses
//! (`--interface`), revoke takes effect on the next connection, source-group and all-traffic
//! rules; `ec2lab why` explains the verdict.

mod common;

use std::process::Command;

use common::*;

/// `curl` from `src` to `url`: the body, or None when refused/closed.
fn curl_from(src: &str, url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-m", "3", "--interface", src, url])
        .output()
        .unwrap();
    (out.status.success() && !out.stdout.is_empty())
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn rules_are_enforced_live_on_public_ips() {
    if !prerequisites(&["aws", "curl", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "127.0.0.1/32");
    let app = d.aws_json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "app",
        "--description",
        "app",
    ])["GroupId"]
        .as_str()
        .unwrap()
        .to_string();
    let ud = d.write_file("www.sh", "#!/bin/sh\nmkdir -p /srv && echo \"page of $(hostname)\" > /srv/index.html\nbusybox httpd -p 80 -h /srv\nbusybox httpd -p 8080 -h /srv\n");
    let a = d.run_with_user_data(&web, &ud, &[]);
    let b = d.run_instances(&["--security-group-ids", &app])[0].clone();
    let (ip, ip_b) = (d.public_ip(&a).unwrap(), d.public_ip(&b).unwrap());
    let url = format!("http://{ip}/");
    eventually("the page from 127.0.0.1", || {
        curl_from("127.0.0.1", &url).is_some_and(|p| p.contains("page of ip-"))
    });
    assert_eq!(
        curl_from("127.0.0.9", &url),
        None,
        "127.0.0.9 is not in 127.0.0.1/32"
    );
    assert_eq!(
        curl_from("127.0.0.1", &format!("http://{ip}:8080/")),
        None,
        "no rule opens 8080"
    );

    let why = String::from_utf8(
        d.ec2lab(
            d.dir.path(),
            &["why", &a, "--port", "80", "--from", "127.0.0.9"],
        )
        .stdout,
    )
    .unwrap();
    assert!(
        why.contains("DENIED")
            && why.contains("--cidr 127.0.0.9/32")
            && why.contains("a server listens on port 80"),
        "{why}"
    );
    let why =
        String::from_utf8(d.ec2lab(d.dir.path(), &["why", &a, "--port", "80"]).stdout).unwrap();
    assert!(why.contains("ALLOWED by web"), "{why}");

    // Source-group rule: connections from B's public IP are from a member of `app`.
    assert_eq!(curl_from(&ip_b, &url), None);
    d.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--source-group",
        &app,
    ]);
    assert!(
        curl_from(&ip_b, &url).is_some(),
        "a member of the source group gets in"
    );
    assert_eq!(curl_from("127.0.0.9", &url), None);

    // Revoke: the next connection is refused.
    d.aws_json(&[
        "ec2",
        "revoke-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--cidr",
        "127.0.0.1/32",
    ]);
    assert_eq!(curl_from("127.0.0.1", &url), None, "revoked");

    // All traffic (-1) from anywhere opens the common ports, 8080 among them.
    d.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "all",
        "--cidr",
        "0.0.0.0/0",
    ]);
    eventually("8080 after an all-traffic rule", || {
        curl_from("127.0.0.9", &format!("http://{ip}:8080/")).is_some()
    });
    // Denied connections are logged, rate-limited.
    assert!(
        d.log_text()
            .contains("connection denied by security groups")
    );
}
