//! IMDS over real HTTP: a server on 127.0.0.1:0 and ureq (plus one test with the real `curl`).

use std::sync::{Arc, Mutex};

use super::{Metadata, MetadataSource, serve};

fn sample() -> Metadata {
    Metadata {
        instance_id: "i-0123456789abcdef0".into(),
        ami_id: "ami-0abcdef1234567890".into(),
        ami_launch_index: 0,
        instance_type: "t2.micro".into(),
        reservation_id: "r-0123456789abcdef0".into(),
        account_id: "123456789012".into(),
        architecture: "x86_64".into(),
        region: "ap-northeast-2".into(),
        availability_zone: "ap-northeast-2a".into(),
        availability_zone_id: "apne2-az1".into(),
        pending_time: "2026-11-22T03:14:00Z".into(),
        local_ipv4: "172.31.1.5".into(),
        public_ipv4: None,
        local_hostname: "ip-172-31-1-5.ap-northeast-2.compute.internal".into(),
        public_hostname: None,
        mac: "0a:1b:2c:3d:4e:5f".into(),
        interface_id: "eni-0123456789abcdef0".into(),
        security_groups: vec!["default".into(), "web".into()],
        security_group_ids: vec!["sg-01".into(), "sg-02".into()],
        subnet_id: "subnet-0a".into(),
        subnet_ipv4_cidr_block: "172.31.0.0/20".into(),
        vpc_id: "vpc-0a".into(),
        vpc_ipv4_cidr_block: "172.31.0.0/16".into(),
        root_device_name: "/dev/xvda".into(),
        public_keys: vec![(
            "seoul-lab-web".into(),
            "ssh-ed25519 AAAAC3Nz seoul-lab-web".into(),
        )],
        user_data: Some(b"#!/bin/sh\necho \xff binary\n".to_vec()),
        tags: vec![
            ("Name".into(), "lab-web".into()),
            ("env".into(), "dev".into()),
        ],
        instance_tags_enabled: false,
        http_tokens_required: false,
        http_endpoint_enabled: true,
    }
}

struct Server {
    base: String,
    md: Arc<Mutex<Option<Metadata>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    fn start(md: Metadata) -> Server {
        let shared = Arc::new(Mutex::new(Some(md)));
        let src = shared.clone();
        let source: Arc<dyn MetadataSource> = Arc::new(move || src.lock().unwrap().clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                serve(listener, source, async {
                    let _ = rx.await;
                })
                .await
            })
        });
        Server {
            base,
            md: shared,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn set(&self, f: impl FnOnce(&mut Option<Metadata>)) {
        f(&mut self.md.lock().unwrap());
    }

    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut resp = agent.run(builder.body(()).unwrap()).unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        Reply {
            status: resp.status().as_u16(),
            content_type: header("content-type"),
            server: header("server"),
            ttl: header("x-aws-ec2-metadata-token-ttl-seconds"),
            body: resp.body_mut().read_to_vec().unwrap(),
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.req("GET", path, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: Option<String>,
    server: Option<String>,
    ttl: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a 200 and returns the body.
    fn ok(&self) -> String {
        assert_eq!(self.status, 200, "{self:?}");
        self.text()
    }
}

#[test]
fn v1_tree() {
    let s = Server::start(sample());
    let root = s.get("/");
    assert_eq!(root.server.as_deref(), Some("EC2ws"));
    let versions = root.ok();
    for v in [
        "1.0",
        "2009-04-04",
        "2016-09-02",
        "2018-09-24",
        "2021-03-23",
        "latest",
    ] {
        assert!(versions.lines().any(|l| l == v), "{v} not in {versions}");
    }
    assert_eq!(versions.lines().last(), Some("latest"));
    assert_eq!(s.get("/latest/").ok(), "dynamic\nmeta-data\nuser-data");
    let listing = s.get("/latest/meta-data/").ok();
    assert_eq!(s.get("/latest/meta-data").ok(), listing);
    for entry in [
        "ami-id",
        "ami-launch-index",
        "ami-manifest-path",
        "block-device-mapping/",
        "hostname",
        "instance-id",
        "instance-life-cycle",
        "instance-type",
        "local-hostname",
        "local-ipv4",
        "mac",
        "network/",
        "placement/",
        "public-keys/",
        "reservation-id",
        "security-groups",
        "services/",
    ] {
        assert!(
            listing.lines().any(|l| l == entry),
            "{entry} not in {listing}"
        );
    }
    assert!(
        !listing.contains("public-ipv4") && !listing.contains("tags/"),
        "{listing}"
    );
    let leaf = |p: &str| s.get(&format!("/latest/meta-data/{p}")).ok();
    assert_eq!(leaf("instance-id"), "i-0123456789abcdef0");
    assert_eq!(leaf("ami-id"), "ami-0abcdef1234567890");
    assert_eq!(leaf("ami-launch-index"), "0");
    assert_eq!(leaf("instance-type"), "t2.micro");
    assert_eq!(leaf("instance-life-cycle"), "on-demand");
    assert_eq!(
        leaf("hostname"),
        "ip-172-31-1-5.ap-northeast-2.compute.internal"
    );
    assert_eq!(leaf("local-ipv4"), "172.31.1.5");
    assert_eq!(
        leaf("placement/"),
        "availability-zone\navailability-zone-id\nregion"
    );
    assert_eq!(leaf("placement/availability-zone"), "ap-northeast-2a");
    assert_eq!(leaf("placement/availability-zone-id"), "apne2-az1");
    assert_eq!(leaf("placement/region"), "ap-northeast-2");
    assert_eq!(leaf("block-device-mapping/"), "ami\nroot");
    assert_eq!(leaf("block-device-mapping/root"), "/dev/xvda");
    assert_eq!(leaf("security-groups"), "default\nweb");
    assert_eq!(leaf("services/domain"), "amazonaws.com");
    assert_eq!(leaf("services/partition"), "aws");
    assert_eq!(leaf("public-keys/"), "0=seoul-lab-web");
    assert_eq!(leaf("public-keys/0/"), "openssh-key");
    assert_eq!(
        leaf("public-keys/0/openssh-key"),
        "ssh-ed25519 AAAAC3Nz seoul-lab-web"
    );
    assert_eq!(leaf("network/interfaces/macs/"), "0a:1b:2c:3d:4e:5f/");
    let mac = "network/interfaces/macs/0a:1b:2c:3d:4e:5f";
    let mac_listing = leaf(&format!("{mac}/"));
    for e in [
        "device-number",
        "interface-id",
        "local-ipv4s",
        "security-group-ids",
        "subnet-id",
        "vpc-id",
    ] {
        assert!(
            mac_listing.lines().any(|l| l == e),
            "{e} not in {mac_listing}"
        );
    }
    assert_eq!(leaf(&format!("{mac}/device-number")), "0");
    assert_eq!(leaf(&format!("{mac}/security-group-ids")), "sg-01\nsg-02");
    assert_eq!(leaf(&format!("{mac}/subnet-id")), "subnet-0a");
    assert_eq!(leaf(&format!("{mac}/vpc-id")), "vpc-0a");
    let r = s.get("/latest/meta-data/instance-id");
    assert_eq!(r.content_type.as_deref(), Some("text/plain"));
    // Dated versions serve the same tree (cloud-init probes them).
    for v in ["2009-04-04", "2016-09-02", "2021-03-23"] {
        assert_eq!(
            s.get(&format!("/{v}/meta-data/instance-id")).ok(),
            "i-0123456789abcdef0"
        );
    }
    // Absent or unknown → 404 with AWS's page.
    for p in [
        "/latest/meta-data/public-ipv4",
        "/latest/meta-data/public-hostname",
        "/latest/meta-data/nope",
        "/latest/meta-data/tags/instance/",
        "/2000-01-01/meta-data/",
        "/latest/meta-data/instance-id/extra",
        "/nope",
    ] {
        let r = s.get(p);
        assert_eq!(r.status, 404, "{p}");
        assert!(r.text().contains("<title>404 - Not Found</title>"), "{p}");
        assert_eq!(r.server.as_deref(), Some("EC2ws"));
    }
}

#[test]
fn user_data_and_identity_document() {
    let s = Server::start(sample());
    let r = s.get("/latest/user-data");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(r.body, b"#!/bin/sh\necho \xff binary\n");
    let doc = s.get("/latest/dynamic/instance-identity/document").ok();
    assert!(
        doc.starts_with("{\n  \"accountId\" : \"123456789012\",\n"),
        "{doc}"
    );
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["instanceId"], "i-0123456789abcdef0");
    assert_eq!(v["imageId"], "ami-0abcdef1234567890");
    assert_eq!(v["availabilityZone"], "ap-northeast-2a");
    assert_eq!(v["privateIp"], "172.31.1.5");
    assert_eq!(v["pendingTime"], "2026-11-22T03:14:00Z");
    assert_eq!(v["version"], "2017-09-30");
    assert_eq!(v["architecture"], "x86_64");
    assert!(v["kernelId"].is_null() && v["ramdiskId"].is_null() && v["billingProducts"].is_null());
    assert_eq!(s.get("/latest/dynamic/").ok(), "instance-identity/");
    s.set(|md| md.as_mut().unwrap().user_data = None);
    assert_eq!(s.get("/latest/user-data").status, 404);
    assert_eq!(s.get("/latest/").ok(), "dynamic\nmeta-data");
}

#[test]
fn v2_tokens() {
    let s = Server::start(sample());
    let ttl = [("X-aws-ec2-metadata-token-ttl-seconds", "21600")];
    let r = s.req("PUT", "/latest/api/token", &ttl);
    assert_eq!(r.ttl.as_deref(), Some("21600"));
    let token = r.ok();
    assert_eq!(token.len(), 56);
    let with = |t: &str| {
        s.req(
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", t)],
        )
    };
    assert_eq!(with(&token).ok(), "i-0123456789abcdef0");
    // A bad token is refused even while tokens are optional.
    assert_eq!(with("bogus").status, 401);
    assert!(with("bogus").text().contains("401 - Unauthorized"));
    // Required: no token → 401; a valid one works.
    s.set(|md| md.as_mut().unwrap().http_tokens_required = true);
    assert_eq!(s.get("/latest/meta-data/instance-id").status, 401);
    assert_eq!(with(&token).status, 200);
    // Bad token requests.
    for bad in ["0", "21601", "abc", ""] {
        let r = s.req(
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", bad)],
        );
        assert_eq!(r.status, 400, "ttl {bad:?}");
    }
    assert_eq!(s.req("PUT", "/latest/api/token", &[]).status, 400);
    let fwd = s.req(
        "PUT",
        "/latest/api/token",
        &[ttl[0], ("X-Forwarded-For", "10.0.0.1")],
    );
    assert_eq!(fwd.status, 403);
    for m in ["GET", "POST", "DELETE"] {
        assert_eq!(s.req(m, "/latest/api/token", &ttl).status, 405, "{m}");
    }
    assert_eq!(
        s.req(
            "POST",
            "/latest/meta-data/",
            &[("X-aws-ec2-metadata-token", &token)]
        )
        .status,
        405
    );
    // Expiry.
    let short = s
        .req(
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "1")],
        )
        .ok();
    assert_eq!(with(&short).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(with(&short).status, 401);
}

#[test]
fn live_changes_disabled_endpoint_and_gone_instance() {
    let s = Server::start(sample());
    s.set(|md| {
        let md = md.as_mut().unwrap();
        md.public_ipv4 = Some("127.100.0.7".into());
        md.public_hostname = Some("ec2-127-100-0-7.ap-northeast-2.compute.amazonaws.com".into());
        md.instance_tags_enabled = true;
    });
    assert_eq!(s.get("/latest/meta-data/public-ipv4").ok(), "127.100.0.7");
    assert!(
        s.get("/latest/meta-data/")
            .ok()
            .lines()
            .any(|l| l == "tags/")
    );
    assert_eq!(s.get("/latest/meta-data/tags/instance").ok(), "Name\nenv");
    assert_eq!(
        s.get("/latest/meta-data/tags/instance/Name").ok(),
        "lab-web"
    );
    let mac = "/latest/meta-data/network/interfaces/macs/0a:1b:2c:3d:4e:5f";
    assert_eq!(s.get(&format!("{mac}/public-ipv4s")).ok(), "127.100.0.7");
    assert_eq!(
        s.get(&format!("{mac}/ipv4-associations/127.100.0.7")).ok(),
        "172.31.1.5"
    );
    s.set(|md| {
        md.as_mut()
            .unwrap()
            .tags
            .push(("team".into(), "blue green".into()))
    });
    assert_eq!(
        s.get("/latest/meta-data/tags/instance/team").ok(),
        "blue green"
    );
    s.set(|md| md.as_mut().unwrap().http_endpoint_enabled = false);
    let r = s.get("/latest/meta-data/instance-id");
    assert_eq!(r.status, 403);
    assert_eq!(
        s.req(
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "60")]
        )
        .status,
        403
    );
    s.set(|md| *md = None);
    assert_eq!(s.get("/latest/meta-data/instance-id").status, 404);
}

#[test]
fn curl_v1_and_v2() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl is required in CI"
        );
        println!("skipping: curl is not installed");
        return;
    }
    let s = Server::start(sample());
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--noproxy", "*", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let url = |p: &str| format!("{}{p}", s.base);
    // v1
    assert_eq!(
        curl(&[&url("/latest/meta-data/instance-id")]),
        ("200".into(), "i-0123456789abcdef0".into())
    );
    let (code, head) = curl(&["-I", &url("/latest/meta-data/instance-id")]);
    assert_eq!(code, "200");
    assert!(
        head.to_ascii_lowercase().contains("server: ec2ws"),
        "{head}"
    );
    // v2, the AWS documentation's commands.
    let (code, token) = curl(&[
        "-X",
        "PUT",
        &url("/latest/api/token"),
        "-H",
        "X-aws-ec2-metadata-token-ttl-seconds: 21600",
    ]);
    assert_eq!(code, "200");
    let header = format!("X-aws-ec2-metadata-token: {token}");
    assert_eq!(
        curl(&[
            "-H",
            &header,
            &url("/latest/meta-data/placement/availability-zone")
        ]),
        ("200".into(), "ap-northeast-2a".into())
    );
    s.set(|md| md.as_mut().unwrap().http_tokens_required = true);
    assert_eq!(curl(&[&url("/latest/meta-data/instance-id")]).0, "401");
    assert_eq!(
        curl(&["-H", &header, &url("/latest/meta-data/instance-id")]).0,
        "200"
    );
    assert_eq!(curl(&["-X", "PUT", &url("/latest/api/token")]).0, "400");
}

#[test]
fn shutdown_stops_serving() {
    let s = Server::start(sample());
    let base = s.base.clone();
    drop(s); // sends shutdown and joins: serve returned Ok
    let addr = base.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(addr).is_err());
}
