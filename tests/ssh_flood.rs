//! The gateway under connection floods: caps on unauthenticated connections (per source and in
//! total, with eviction for a new source), the login grace time, and — against the real daemon
//! — 5,000 idle connections from other addresses while a real `ssh` login and the API still
//! work. The caps and the grace time are also checked in-process with small limits
//! (`Gateway::with_limits`) and a russh client, so those tests need neither root nor an instance.

mod flood;
mod ssh_common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ec2lab::gateway::{Gateway, Limits, Route};
use flood::*;
use ssh_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SERVER_ID: &[u8] = b"SSH-2.0-ec2lab_gateway\r\n";

/// An in-process gateway on 127.0.0.1 with a fresh host key; no instance behind it.
async fn gateway(limits: Limits) -> (Arc<Gateway>, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = ec2lab::keys::generate_host_key(ec2lab::keys::HostKeyType::Ed25519);
    std::fs::write(dir.path().join("ssh_host_ed25519_key"), pem).unwrap();
    let gw = Gateway::with_limits(PathBuf::from(BIN), limits);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let route = Route {
        instance_id: "i-0123456789abcdef0".into(),
        init_pid: 1,
        start_time: 0,
        host_key_dir: dir.path().to_path_buf(),
        banner: String::new(),
        admit: None,
    };
    gw.add(addr, route).await.unwrap();
    (gw, addr, dir)
}

/// Reads the server's identification line (the connection was admitted).
async fn expect_server_id(s: &mut TcpStream) {
    let mut buf = vec![0u8; SERVER_ID.len()];
    tokio::time::timeout(BOUND, s.read_exact(&mut buf))
        .await
        .expect("server id within the bound")
        .unwrap();
    assert_eq!(buf, SERVER_ID);
}

#[tokio::test]
async fn caps_close_extra_connections_before_any_byte_and_evict_for_a_new_source() {
    let limits = Limits {
        max_startups: 4,
        per_source_startups: 2,
        login_grace: Duration::from_secs(600),
        ..Limits::default()
    };
    let (gw, addr, _keys) = gateway(limits).await;
    let mut a1 = connect_from(src(2), addr).await;
    expect_server_id(&mut a1).await;
    let mut a2 = connect_from(src(2), addr).await;
    expect_server_id(&mut a2).await;
    // A third from the same source: closed before a single byte (no crypto either).
    let mut a3 = connect_from(src(2), addr).await;
    assert_eq!(read_to_close(&mut a3).await, b"");
    let mut b1 = connect_from(src(3), addr).await;
    expect_server_id(&mut b1).await;
    let mut b2 = connect_from(src(3), addr).await;
    expect_server_id(&mut b2).await;
    assert_eq!(gw.unauthenticated(), 4);

    // The gateway is full; a source holding nothing still gets in: the oldest connection of
    // a source holding the most gives way.
    let mut c1 = connect_from(src(4), addr).await;
    expect_server_id(&mut c1).await;
    let a1_closed = tokio::select! {
        _ = read_to_close(&mut a1) => true,
        _ = read_to_close(&mut b1) => false,
    };
    assert!(still_open(if a1_closed { &b1 } else { &a1 }));
    assert!(still_open(&a2) && still_open(&b2) && still_open(&c1));
    assert_eq!(gw.unauthenticated(), 4);

    // Connections per source (authenticated or not) have their own cap.
    let (_gw2, addr2, _keys2) = gateway(Limits {
        per_source_connections: 2,
        login_grace: Duration::from_secs(600),
        ..Limits::default()
    })
    .await;
    let mut d1 = connect_from(src(5), addr2).await;
    expect_server_id(&mut d1).await;
    let mut d2 = connect_from(src(5), addr2).await;
    expect_server_id(&mut d2).await;
    let mut d3 = connect_from(src(5), addr2).await;
    assert_eq!(read_to_close(&mut d3).await, b"");
}

#[tokio::test]
async fn connections_that_do_not_log_in_are_closed_after_the_grace_time() {
    let (gw, addr, _keys) = gateway(Limits {
        login_grace: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    // Never sends a byte.
    let mut silent = connect_from(src(2), addr).await;
    // Sends its version line, then nothing.
    let mut version = connect_from(src(3), addr).await;
    version.write_all(b"SSH-2.0-flood\r\n").await.unwrap();
    // Completes key exchange with russh, never authenticates.
    let config = Arc::new(russh::client::Config::default());
    let kex_only = russh::client::connect(config, addr, AnyHostKey)
        .await
        .unwrap();
    assert!(!kex_only.is_closed());

    assert!(read_to_close(&mut silent).await.starts_with(SERVER_ID));
    assert!(read_to_close(&mut version).await.starts_with(SERVER_ID));
    let deadline = Instant::now() + BOUND;
    while !kex_only.is_closed() {
        assert!(
            Instant::now() < deadline,
            "an unauthenticated session outlived the grace time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while gw.unauthenticated() != 0 {
        assert!(Instant::now() < deadline, "slots not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 5,000 connections from 127.0.0.3–252: even ones send the SSH version line and stop, odd
/// ones send nothing.
const FLOOD: usize = 5000;
const FLOOD_SOURCES: usize = 250;

#[test]
fn five_thousand_idle_connections_leave_ssh_logins_and_the_api_working() {
    let Some(lab) = Lab::start(&["ssh"]) else {
        return;
    };
    raise_nofile();
    let key = lab.key("k", "ed25519");
    let t = lab.launch("k", 1).remove(0);
    let addr = t.addr();
    // A session that logs in before the flood and lasts past the 30 s login grace time:
    // authenticated sessions are kept.
    let mut long = lab.ssh(&t, &key, "ec2-user", &["sleep 35; echo alive"]);
    let long = std::thread::spawn(move || run_with_input(&mut long, b""));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The per-source cap: 10 unauthenticated connections from one address, the 11th is closed
    // before any byte.
    let per_source = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..10 {
            let mut s = connect_from(src(2), addr).await;
            expect_server_id(&mut s).await;
            held.push(s);
        }
        let mut extra = connect_from(src(2), addr).await;
        assert_eq!(read_to_close(&mut extra).await, b"");
        held
    });

    let held = rt.block_on(open_many(
        addr,
        FLOOD,
        3,
        FLOOD_SOURCES,
        b"SSH-2.0-flood\r\n",
    ));
    assert_eq!(held.len(), FLOOD);
    let closed = held.iter().filter(|s| !still_open(s)).count();
    eprintln!("{FLOOD} flood connections held; {closed} closed by the gateway before any byte");
    if lab.gw.addrs().is_empty() {
        // The daemon serves SSH: it holds a bounded number of descriptors, not one per flood
        // connection.
        let fds = open_fds(lab.d.pid());
        eprintln!("daemon descriptors during the flood: {fds}");
        assert!(fds < FLOOD / 2, "daemon holds {fds} descriptors");
    }

    // While all of that is open: a real login from 127.0.0.1 and the API answer.
    let out = lab.ssh_run(&t, &key, "ec2-user", "echo in", b"");
    assert!(
        out.status.success(),
        "ssh during the flood: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "in\n");
    let v = lab
        .d
        .aws_json(&["ec2", "describe-instances", "--instance-ids", &t.id]);
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["State"]["Name"],
        "running"
    );

    let long = long.join().unwrap();
    assert!(long.status.success(), "{}", text(&long.stderr));
    assert_eq!(text(&long.stdout), "alive\n");
    drop((held, per_source));
}

/// Sets the soft RLIMIT_NOFILE of `pid`; returns the limit it had.
fn set_nofile(pid: u32, soft: Option<libc::rlim_t>) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with valid structs (a null new limit only reads).
    unsafe {
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old),
            0
        );
        if let Some(soft) = soft {
            let new = libc::rlimit {
                rlim_cur: soft,
                rlim_max: old.rlim_max,
            };
            assert_eq!(
                libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()),
                0
            );
        }
    }
    old
}

#[test]
fn out_of_descriptors_the_gateway_closes_new_connections_at_once() {
    let Some(lab) = Lab::start(&["ssh"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = lab.launch("k", 1).remove(0);
    if !lab.gw.addrs().is_empty() {
        eprintln!("SKIPPED: the daemon does not serve SSH itself here");
        return;
    }
    let pid = lab.d.pid();
    // A few descriptors left: the gateway runs out after a handful of connections.
    let old = set_nofile(pid, Some((open_fds(pid) + 12) as libc::rlim_t));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (admitted, closed) = rt.block_on(async {
        let mut conns = Vec::new();
        for i in 0..64u8 {
            conns.push(connect_from(src(20 + i), t.addr()).await);
        }
        let (mut admitted, mut closed) = (0, 0);
        for s in &mut conns {
            // The server id (admitted) or the end of the stream (closed), never a hang.
            let mut buf = vec![0u8; SERVER_ID.len()];
            let n = tokio::time::timeout(BOUND, s.read(&mut buf))
                .await
                .expect("an answer or a close within the bound")
                .unwrap_or(0);
            if n == 0 { closed += 1 } else { admitted += 1 }
        }
        (admitted, closed)
    });
    set_nofile(pid, Some(old.rlim_cur));
    eprintln!("out of descriptors: {admitted} admitted, {closed} closed at once");
    assert!(closed > 0, "the daemon never ran out of descriptors");
    let out = lab.ssh_run(&t, &key, "ec2-user", "echo in", b"");
    assert!(out.status.success(), "ssh after: {}", text(&out.stderr));
}
