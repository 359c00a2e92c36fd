//! The host's side of the escape suite: what an attempt inside an instance would change on the
//! host, observed from the host. A kernel-log cursor, a keyring probe, a loopback listener that
//! counts connections, an API watcher that keeps asking the daemon while attempts run, a holder
//! of uid 1000's inotify instances, bounded child processes, and the verdict list every test
//! reports through (each check is named; a test lists every failure, not only the first).

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Named checks; `finish` fails the test with every failed one.
#[derive(Default)]
pub struct Verdicts {
    pub lines: Vec<String>,
}

impl Verdicts {
    pub fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        let line = if ok {
            format!("PASS {name}")
        } else {
            format!("FAIL {name}: {}", detail())
        };
        eprintln!("{line}");
        self.lines.push(line);
    }

    pub fn failed(&self) -> Vec<&String> {
        self.lines
            .iter()
            .filter(|l| !l.starts_with("PASS "))
            .collect()
    }

    pub fn finish(self, what: &str) {
        let failed = self.failed();
        assert!(
            failed.is_empty(),
            "{what}: {} of {} attempts got through:\n{}",
            failed.len(),
            self.lines.len(),
            failed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Runs `cmd` (stdin from `stdin` or null), killing it after `timeout`; None when it had to be
/// killed (it hung).
pub fn run_bounded(
    cmd: &mut Command,
    stdin: Option<std::fs::File>,
    timeout: Duration,
) -> Option<Output> {
    let child = cmd
        .stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Some(out.unwrap()),
        Err(_) => {
            // SAFETY: kill with the pid of our own child (not yet reaped: the waiter holds it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(10));
            None
        }
    }
}

/// New records of the host's kernel log since `open`.
pub struct Kmsg(OwnedFd);

impl Kmsg {
    pub fn open() -> Kmsg {
        let path = CString::new("/dev/kmsg").unwrap();
        // SAFETY: valid path; we own the descriptor on success.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        assert!(
            fd >= 0,
            "open /dev/kmsg: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fresh descriptor; SEEK_END on /dev/kmsg skips to the next new record.
        unsafe { libc::lseek(fd, 0, libc::SEEK_END) };
        // SAFETY: fresh descriptor from open(2).
        Kmsg(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Every record logged since `open` (or the previous call), one string each.
    pub fn read_new(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        for _ in 0..100_000 {
            // SAFETY: reading into a buffer we own, of its length.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EPIPE) => continue, // records overwritten: go on
                    _ => break,                    // EAGAIN: no more records
                }
            }
            if n == 0 {
                break;
            }
            out.push(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
        }
        out
    }
}

const KEY_SPEC_USER_KEYRING: libc::c_long = -4;

/// Adds a "user" key to uid 0's user keyring (as `keyctl add user DESC DATA @u`); its id.
pub fn add_host_key(desc: &str, payload: &str) -> i64 {
    let (t, d) = (CString::new("user").unwrap(), CString::new(desc).unwrap());
    // SAFETY: add_key with valid nul-terminated strings and a payload of the given length.
    let id = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            t.as_ptr(),
            d.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_USER_KEYRING,
        )
    };
    assert!(
        id > 0,
        "add_key {desc}: {}",
        std::io::Error::last_os_error()
    );
    id
}

/// The id of the "user" key `desc` in uid 0's user keyring, if there is one.
pub fn find_host_key(desc: &str) -> Option<i64> {
    let (t, d) = (CString::new("user").unwrap(), CString::new(desc).unwrap());
    // SAFETY: KEYCTL_SEARCH with valid nul-terminated strings.
    let id = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_SEARCH,
            KEY_SPEC_USER_KEYRING,
            t.as_ptr(),
            d.as_ptr(),
            0,
        )
    };
    (id > 0).then_some(id)
}

pub fn remove_host_key(id: i64) {
    // SAFETY: KEYCTL_UNLINK of a key id from our own user keyring.
    unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_UNLINK,
            id,
            KEY_SPEC_USER_KEYRING,
        )
    };
}

/// A TCP listener on the host's 127.0.0.1 that counts the connections it accepts.
pub struct Listener {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok(_) => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Listener {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening; the number of connections accepted.
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Asks the daemon's API (DescribeInstances through the aws CLI, bounded) again and again until
/// stopped; counts the answers and the failures.
pub struct ApiWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(usize, Vec<String>)>>,
}

impl ApiWatch {
    pub fn start(env: Vec<(String, String)>) -> ApiWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut errors) = (0, Vec::new());
            // At most 10 minutes of asking; every call is itself bounded.
            for _ in 0..1200 {
                if s.load(Ordering::Relaxed) && ok + errors.len() > 0 {
                    break;
                }
                let mut cmd = Command::new("aws");
                cmd.args([
                    "ec2",
                    "describe-instances",
                    "--cli-read-timeout",
                    "30",
                    "--output",
                    "json",
                ])
                .envs(env.iter().map(|(k, v)| (k, v)));
                match run_bounded(&mut cmd, None, Duration::from_secs(40)) {
                    Some(o) if o.status.success() => ok += 1,
                    Some(o) => errors.push(String::from_utf8_lossy(&o.stderr).into_owned()),
                    None => errors.push("describe-instances hung".into()),
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            (ok, errors)
        });
        ApiWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// (answers, failures) seen while it ran.
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// A host process of uid 1000 holding every inotify instance that uid may have
/// (fs.inotify.max_user_instances), until dropped.
pub struct InotifyHolder {
    child: Child,
    pub held: usize,
}

const HOLD_INOTIFY: &str = "import ctypes,sys\n\
libc=ctypes.CDLL(None,use_errno=True)\n\
fds=[]\n\
while len(fds)<100000:\n    fd=libc.inotify_init1(0)\n    if fd<0: break\n    fds.append(fd)\n\
print(len(fds),flush=True)\n\
sys.stdin.read()\n";

impl InotifyHolder {
    pub fn start(uid: u32) -> Option<InotifyHolder> {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", HOLD_INOTIFY])
            .uid(uid)
            .gid(uid)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .ok()?;
        let held = line.trim().parse().ok()?;
        Some(InotifyHolder { child, held })
    }
}

impl Drop for InotifyHolder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ls -l`-like facts about a host path: (mode, content or listing).
pub fn snapshot(path: &std::path::Path) -> (u32, String) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    let body = if meta.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.join(",")
    } else {
        let mut s = String::new();
        std::fs::File::open(path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    (meta.permissions().mode() & 0o7777, body)
}

/// The host's hostname (uname's nodename).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}
