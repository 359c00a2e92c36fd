//! Fuzzing the API over raw TCP: 20,000 malformed requests, signed with the lab credentials and
//! unsigned — random actions and parameters, control characters, huge values, wrong methods,
//! paths and versions, invalid percent-encoding, bad `Content-Length`, chunked and huge bodies.
//! Asserts no reset and no connection closed without an answer, no status ≥ 500, no hang (every
//! answer within a bounded client timeout), every XML answer well-formed, and the daemon alive at
//! the end. Deterministic: one seed, printed on failure.

#[path = "api_fuzz/cases.rs"]
mod cases;
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use cases::{Case, Rng, case};
use common::*;

const SEED: u64 = 0x0ec2_1ab5_eed5;
const WORKERS: u64 = 4;
const PER_WORKER: usize = 5_000;
/// The client's limit for one answer: far above any honest answer, below the daemon's timeouts
/// only where the request is complete.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
struct Tally {
    requests: usize,
    answers: usize,
    resets: usize,
    silent_closes: usize,
    hangs: usize,
    server_errors: usize,
    bad_xml: usize,
    examples: Vec<String>,
}

impl Tally {
    fn note(&mut self, what: &str, case: &Case) {
        if self.examples.len() < 8 {
            let shown: String =
                String::from_utf8_lossy(&case.bytes[..case.bytes.len().min(300)]).into();
            self.examples.push(format!("{what}: {shown:?}"));
        }
    }
}

/// Reads one HTTP response; `Err(kind)` when the connection failed before a whole response.
fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Result<(u16, String, Vec<u8>, bool), ErrorKind> {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        fill(s, buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
    };
    let len: usize = if head_request {
        0
    } else {
        header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let content_type = header("content-type").unwrap_or_default();
    let close = header("connection").is_some_and(|v| v == "close");
    while buf.len() < head_end + len {
        fill(s, buf)?;
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Ok((status, content_type, body, close))
}

fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), ErrorKind> {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk) {
        Ok(0) => Err(ErrorKind::UnexpectedEof),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(e.kind()),
    }
}

fn well_formed(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    common::xml::check(text).map_err(|e| format!("{e} in {:?}", &text[..text.len().min(400)]))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    s
}

fn worker(d: &Daemon, seed: u64) -> Tally {
    let addr = SocketAddr::from(([127, 0, 0, 1], d.api_port));
    let creds = d.creds();
    let mut r = Rng(seed);
    let mut t = Tally::default();
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    for _ in 0..PER_WORKER {
        let c = case(&mut r, d, &creds);
        t.requests += 1;
        // A kept connection the server closed meanwhile (after an answer that ended it) is
        // not an unanswered request: such a request is sent again once, on a new connection.
        let mut answer = Err(ErrorKind::NotConnected);
        for _ in 0..2 {
            let reused = conn.is_some();
            let (s, buf) = conn.get_or_insert_with(|| (connect(addr), Vec::new()));
            // A write may fail once the server has answered and closed; the answer still counts.
            let _ = s.write_all(&c.bytes);
            if c.last {
                let _ = s.shutdown(Shutdown::Write);
            }
            answer = read_response(s, buf, c.head);
            if !(reused && buf.is_empty() && answer == Err(ErrorKind::UnexpectedEof)) {
                break;
            }
            conn = None;
        }
        match answer {
            Ok((status, content_type, body, close)) => {
                t.answers += 1;
                if !(100..500).contains(&status) {
                    t.server_errors += 1;
                    t.note(&format!("status {status}"), &c);
                }
                if content_type.contains("xml")
                    && !c.head
                    && let Err(e) = well_formed(&body)
                {
                    t.bad_xml += 1;
                    t.note(&format!("bad xml: {e}"), &c);
                }
                if close || c.last {
                    conn = None;
                }
            }
            Err(ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                t.hangs += 1;
                t.note("hang", &c);
                conn = None;
            }
            Err(ErrorKind::UnexpectedEof) if !c.is_request => conn = None,
            Err(ErrorKind::UnexpectedEof) => {
                t.silent_closes += 1;
                t.note("closed without an answer", &c);
                conn = None;
            }
            Err(kind) => {
                t.resets += 1;
                t.note(&format!("{kind:?}"), &c);
                conn = None;
            }
        }
    }
    t
}

#[test]
fn twenty_thousand_malformed_requests_get_well_formed_4xx_answers() {
    if !prerequisites(&[]) {
        return;
    }
    let d = Daemon::start();
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let d = &d;
                scope.spawn(move || worker(d, SEED ^ (w + 1).wrapping_mul(0x1234_5678_9abc)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = Tally::default();
    for t in tallies {
        total.requests += t.requests;
        total.answers += t.answers;
        total.resets += t.resets;
        total.silent_closes += t.silent_closes;
        total.hangs += t.hangs;
        total.server_errors += t.server_errors;
        total.bad_xml += t.bad_xml;
        total.examples.extend(t.examples);
    }
    eprintln!(
        "fuzz (seed {SEED:#x}): {} requests, {} answers, {} resets, {} closed unanswered, {} hangs, {} ≥500, {} bad XML",
        total.requests,
        total.answers,
        total.resets,
        total.silent_closes,
        total.hangs,
        total.server_errors,
        total.bad_xml
    );
    assert!(total.requests >= 10_000);
    assert!(
        total.resets == 0
            && total.silent_closes == 0
            && total.hangs == 0
            && total.server_errors == 0
            && total.bad_xml == 0,
        "{total:#?}"
    );
    // Still alive and answering.
    assert!(std::path::Path::new(&format!("/proc/{}", d.pid())).exists());
    let (status, body) = d.raw("Action=DescribeKeyPairs&Version=2016-11-15");
    assert_eq!(status, 200, "{body}");
    let log = d.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
