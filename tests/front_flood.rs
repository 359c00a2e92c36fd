//! Front listeners under floods of idle connections: the per-source cap on an instance port
//! closes extra connections before any byte, admitted connections are real proxied ones, and
//! while more connections than the port's cap are held open from other addresses, an HTTP
//! request from 127.0.0.1 is still served (a silent connection gives way) and the API answers.

mod common;
mod flood;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use ec2lab::front::{PER_PORT, PER_SOURCE};
use flood::*;
use tokio::io::AsyncWriteExt;

/// `GET /` over `s`; the whole answer.
async fn get(s: &mut tokio::net::TcpStream) -> String {
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    String::from_utf8_lossy(&read_to_close(s).await).into_owned()
}

/// Connections from 127.0.0.3–10 beyond the port's cap, silent.
const FLOOD: usize = 1600;

#[test]
fn idle_floods_are_capped_per_source_and_per_port() {
    if !prerequisites(&["aws", "python3"]) {
        return;
    }
    raise_nofile();
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "127.0.0.0/8");
    // A server that can hold the whole flood: its accept queue takes every connection at once
    // (busybox httpd listens with a backlog of 9: the kernel drops SYNs beyond it and the
    // proxy's connects retry in step for up to a minute), it accepts in a loop on one thread
    // (asyncio; a thread per connection made the accepts themselves the bottleneck under
    // load), and it may hold more than the port's 1024 connections (an instance's processes
    // start with a soft limit of 1024 descriptors, as on Amazon Linux: raised to the hard 4096).
    let ud = d.write_file(
        "www.sh",
        r#"#!/bin/sh
mkdir -p /srv && echo "page of $(hostname)" > /srv/index.html
cat > /srv/www.py <<'EOF'
import asyncio
page = open("/srv/index.html", "rb").read()
head = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page)
async def handle(r, w):
    try:
        while (await r.readline()) not in (b"\r\n", b"\n", b""):
            pass
        w.write(head + page)
        await w.drain()
    finally:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", 80, backlog=4096)
    await s.serve_forever()
asyncio.run(main())
EOF
ulimit -n 4096
exec python3 /srv/www.py
"#,
    );
    let id = d.run_with_user_data(&web, &ud, &["--instance-type", "m5.xlarge"]);
    d.wait_state(&id, "running");
    let ip = d.public_ip(&id).unwrap();
    let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut s = connect_from(src(1), addr).await;
            if get(&mut s).await.contains("page of ip-") {
                break;
            }
            assert!(Instant::now() < deadline, "the page never came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // One source: PER_SOURCE connections are proxied, the next is closed before any byte.
        let mut held = open_many(addr, PER_SOURCE, 2, 1, b"").await;
        let mut extra = connect_from(src(2), addr).await;
        assert_eq!(read_to_close(&mut extra).await, b"");
        assert!(get(&mut held[0]).await.contains("page of ip-"));

        // More than the port's cap from eight other sources, all silent.
        let flood = open_many(addr, FLOOD, 3, 8, b"").await;
        let fds = open_fds(d.pid());
        eprintln!(
            "{} connections held, {} closed before any byte; daemon descriptors: {fds}",
            PER_SOURCE + FLOOD,
            flood.iter().filter(|s| !still_open(s)).count()
        );
        assert!(fds < 2 * PER_PORT + 500, "daemon holds {fds} descriptors");

        // A source that holds nothing is still served, and the API answers.
        let mut s = connect_from(src(1), addr).await;
        assert!(get(&mut s).await.contains("page of ip-"));
        drop((held, flood));
    });
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", &id]);
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["State"]["Name"],
        "running"
    );
}
