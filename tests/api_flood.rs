//! One client cannot make the API stop answering: 20,000 half-sent requests and idle connections
//! held open while the real aws CLI is served; a slowloris head and a slow body are cut off by
//! the timeouts; a bad `Authorization` is refused before a huge body is read; a chunked body
//! that announces 2^64 bytes and never ends gets its 413.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const FLOOD: usize = 20_000;
/// The daemon's body timeout in these tests (`--api-body-timeout`).
const BODY_TIMEOUT: u64 = 3;
/// The default head timeout, which these tests keep.
const HEADER_TIMEOUT: u64 = 10;

/// Raises this process's soft open-files limit to its hard limit (the daemon inherits it).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Holds `n` connections to the API in a separate process (one process may not have enough
/// descriptors for the whole flood): three in four send half a request, the rest nothing.
/// It prints `held N` once they are all open and keeps them until its stdin closes.
const HOLDER: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n = int(sys.argv[1]), int(sys.argv[2])
half = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Amz-Da"
held = []
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    if i % 4:
        try:
            c.sendall(half)
        except OSError:
            pass
    held.append(c)
print("held", len(held), flush=True)
sys.stdin.read()
"#;

struct Holder(std::process::Child);

impl Holder {
    fn start(port: u16, n: usize) -> Holder {
        let child = std::process::Command::new("python3")
            .args(["-c", HOLDER, &port.to_string(), &n.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Holder(child)
    }

    /// Waits for the holder to report its connections open; returns how many.
    fn held(&mut self) -> usize {
        let mut line = String::new();
        let out = self.0.stdout.as_mut().unwrap();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0] as char);
        }
        line.strip_prefix("held ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("flood holder failed: {line:?}"))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn api_addr(d: &Daemon) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], d.api_port))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |r| r.count())
}

/// Signed request headers for `body` (the CLI's own signer), as raw HTTP lines.
fn signed_head(d: &Daemon, body: &[u8], extra: &str) -> String {
    let (id, secret) = d.creds();
    let host = format!("127.0.0.1:{}", d.api_port);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let headers = ec2lab::api::sigv4::sign(
        &host,
        body,
        &id,
        &secret,
        "ap-northeast-2",
        "ec2",
        &ec2lab::api::sigv4::format_amz_date(now),
    );
    let mut head = String::from("POST / HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(extra);
    head.push_str("\r\n");
    head
}

/// Reads until the server closes the connection (EOF or reset), at most `secs` seconds of
/// silence in a row; returns what was read, or `None` if the connection stayed open.
fn read_until_closed(s: &mut TcpStream, secs: u64) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut quiet = 0;
    while quiet < secs {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                quiet = 0;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => quiet += 1,
            Err(_) => return Some(out),
        }
    }
    None
}

fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn api_answers_the_aws_cli_while_20000_half_open_connections_are_held() {
    if !prerequisites(&["aws", "python3"]) {
        return;
    }
    raise_nofile();
    let d = Daemon::start_with(&["--api-body-timeout", &BODY_TIMEOUT.to_string()]);
    let mut holders: Vec<Holder> = (0..2)
        .map(|_| Holder::start(d.api_port, FLOOD / 2))
        .collect();
    let held: usize = holders.iter_mut().map(Holder::held).sum();
    assert_eq!(held, FLOOD);
    // While every one of them is still open on this side, the real CLI is answered.
    for _ in 0..3 {
        let v = d.aws_json(&["ec2", "describe-instances"]);
        assert!(v["Reservations"].is_array(), "{v}");
    }
    d.aws_json(&["ec2", "describe-key-pairs"]);
    let fds = open_fds(d.pid());
    assert!(
        fds < 2048,
        "the daemon holds {fds} descriptors: the flood was not capped"
    );
    drop(holders);
    d.aws_json(&["ec2", "describe-instances"]);
}

#[test]
fn accept_frees_a_descriptor_when_the_daemon_runs_out_of_them() {
    if !prerequisites(&["aws", "python3"]) {
        return;
    }
    // The daemon inherits 256 descriptors and may admit far more connections than that.
    let lim = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: setrlimit reads the struct we own; lowering needs no privilege.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let d = Daemon::start_with(&["--api-max-connections", "100000"]);
    let mut holders: Vec<Holder> = (0..2).map(|_| Holder::start(d.api_port, 200)).collect();
    let held: usize = holders.iter_mut().map(Holder::held).sum();
    assert_eq!(held, 400);
    for _ in 0..3 {
        d.aws_json(&["ec2", "describe-instances"]);
    }
    assert!(
        d.log_text().contains("API accept failed"),
        "{}",
        d.log_text()
    );
}

#[test]
fn slowloris_head_and_slow_body_are_cut_off_by_the_timeouts() {
    if !prerequisites(&[]) {
        return;
    }
    let d = Daemon::start_with(&["--api-body-timeout", &BODY_TIMEOUT.to_string()]);
    let addr = api_addr(&d);

    // A head sent one byte a second never completes; the head timeout closes it.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let head = format!("POST / HTTP/1.1\r\nHost: x\r\nX-Slow: {}", "a".repeat(1000));
    let mut closed = false;
    let mut buf = [0u8; 1024];
    for b in head.bytes().take((HEADER_TIMEOUT * 6) as usize) {
        if s.write_all(&[b]).is_err() {
            closed = true;
            break;
        }
        match s.read(&mut buf) {
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "a slowloris head was still open after {}× the head timeout",
        6
    );

    // A complete, signed head whose body trickles in: answered RequestTimeout, then closed.
    let body = b"Action=DescribeKeyPairs&Version=2016-11-15";
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(signed_head(&d, body, &format!("Content-Length: {}\r\n", body.len())).as_bytes())
        .unwrap();
    let mut answer = None;
    for b in body.iter().take((BODY_TIMEOUT * 10) as usize) {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        if let Some(r) = read_until_closed(&mut s, 1) {
            answer = Some(r);
            break;
        }
    }
    let answer = answer
        .or_else(|| read_until_closed(&mut s, BODY_TIMEOUT * 5))
        .expect("a slow body was never cut off");
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 400, "{text}");
    assert!(text.contains("<Code>RequestTimeout</Code>"), "{text}");
    // The daemon still answers.
    let (status, _) = d.raw("Action=DescribeKeyPairs&Version=2016-11-15");
    assert_eq!(status, 200);
}

#[test]
fn credentials_are_checked_before_a_huge_body_and_endless_bodies_get_413() {
    if !prerequisites(&[]) {
        return;
    }
    let d = Daemon::start();
    let addr = api_addr(&d);

    // No Authorization, 100 MB announced, nothing sent: answered from the head alone.
    for (auth, code, status) in [
        ("", "MissingAuthenticationToken", 401),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIANOTTHELABSKEY0/20260101/ap-northeast-2/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\nX-Amz-Date: 20260101T000000Z\r\n",
            "AuthFailure",
            401,
        ),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=garbage\r\n",
            "IncompleteSignature",
            400,
        ),
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100000000\r\n\r\n"
        )
        .unwrap();
        s.write_all(&[b'A'; 1000]).unwrap();
        let r = read_until_closed(&mut s, 30).expect("refused request left open");
        let text = String::from_utf8_lossy(&r);
        assert_eq!(status_of(&r), status, "{text}");
        assert!(text.contains(&format!("<Code>{code}</Code>")), "{text}");
    }

    // Signed head, chunked body announcing 2^64-1 bytes, sent until the server stops reading.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(signed_head(&d, b"", "Transfer-Encoding: chunked\r\n").as_bytes())
        .unwrap();
    s.write_all(b"ffffffffffffffff\r\n").unwrap();
    let mut reader = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'A'; 64 * 1024];
        // Bounded: at most 64 MiB, far past the 4 MiB the server reads.
        for _ in 0..1024 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let r = read_until_closed(&mut reader, 30).expect("an endless chunked body hung");
    let text = String::from_utf8_lossy(&r);
    assert_eq!(status_of(&r), 413, "{text}");
    assert!(
        text.contains("<Code>RequestEntityTooLarge</Code>"),
        "{text}"
    );
    drop(reader);
    writer.join().unwrap();

    let (status, _) = d.raw("Action=DescribeKeyPairs&Version=2016-11-15");
    assert_eq!(status, 200);
}
