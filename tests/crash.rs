//! Crash safety: the daemon is killed with SIGKILL at random moments while launches, stops,
//! starts and terminations are in flight, restarted on the same data dir, and after every
//! restart nothing is lost or left behind: every instance the API ever named is still described
//! in a settled, sensible state; no process, launcher, cgroup, mount, volume or runtime dir is
//! left for an instance that is not running; half-made spare volumes are gone. Every third
//! round the daemon is also killed once more while it recovers.
//!
//! The calls go through the signed Query API (the same requests the aws CLI sends) so that a
//! round costs milliseconds, not the CLI's start-up; the delays come from a seeded RNG
//! (`EC2LAB_CRASH_SEED` replays another run).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;

const ROUNDS: usize = 30;
/// Most instances alive (not terminated) at a time.
const MAX_ALIVE: usize = 8;
const DEFAULT_SEED: u64 = 0x0ec2_1ab0_c4a5_4001;

/// SplitMix64: small, seeded, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where and how to send signed requests, owned so threads can carry it.
#[derive(Clone)]
struct Api {
    endpoint: String,
    host: String,
    key: (String, String),
}

impl Api {
    fn of(d: &Daemon) -> Api {
        Api {
            endpoint: d.endpoint(),
            host: format!("127.0.0.1:{}", d.api_port),
            key: d.creds(),
        }
    }

    /// One signed call; `None` when the daemon died before answering.
    fn call(&self, body: &str) -> Answer {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let headers = ec2lab::api::sigv4::sign(
            &self.host,
            body.as_bytes(),
            &self.key.0,
            &self.key.1,
            "ap-northeast-2",
            "ec2",
            &ec2lab::api::sigv4::format_amz_date(now),
        );
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let mut req = agent.post(format!("{}/", self.endpoint));
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k, v);
        }
        let mut resp = req.send(body.as_bytes()).ok()?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().ok()?;
        Some((status, text))
    }

    /// Every instance and its state name, from DescribeInstances.
    fn describe(&self) -> BTreeMap<String, String> {
        let (status, body) = self
            .call("Action=DescribeInstances&Version=2016-11-15")
            .expect("the daemon answers DescribeInstances");
        assert_eq!(status, 200, "DescribeInstances: {body}");
        let mut out = BTreeMap::new();
        for chunk in body.split("<instanceId>").skip(1) {
            let id = chunk.split('<').next().unwrap().to_string();
            let state = chunk
                .split("<instanceState>")
                .nth(1)
                .and_then(|s| s.split("<name>").nth(1))
                .and_then(|s| s.split('<').next())
                .expect("instanceState follows instanceId")
                .to_string();
            out.insert(id, state);
        }
        out
    }
}

fn ids_in(body: &str) -> Vec<String> {
    body.split("<instanceId>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Run,
    Stop,
    Start,
    Terminate,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Run => "RunInstances",
            Action::Stop => "StopInstances",
            Action::Start => "StartInstances",
            Action::Terminate => "TerminateInstances",
        }
    }
    /// The settled state after the call took effect.
    fn end_state(self) -> &'static str {
        match self {
            Action::Run | Action::Start => "running",
            Action::Stop => "stopped",
            Action::Terminate => "terminated",
        }
    }
}

/// An answer: (HTTP status, body), or `None` when the daemon died first.
type Answer = Option<(u16, String)>;
/// (pid, what) of processes found on the host.
type Procs = Vec<(i32, String)>;

/// A call in flight: what it asked, for which instances, and (after the join) its answer.
struct Call {
    action: Action,
    ids: Vec<String>,
    thread: JoinHandle<Answer>,
}

fn issue(api: &Api, action: Action, ids: Vec<String>, body: String) -> Call {
    let api = api.clone();
    Call {
        action,
        ids,
        thread: std::thread::spawn(move || api.call(&body)),
    }
}

fn id_params(ids: &[String]) -> String {
    ids.iter()
        .enumerate()
        .map(|(n, id)| format!("&InstanceId.{}={id}", n + 1))
        .collect()
}

/// The instance of this test whose cgroup a `/proc/<pid>/cgroup` text names (`…/ec2lab/<id>`).
fn instance_of_cgroup(text: &str, ours: &BTreeSet<String>) -> Option<String> {
    for path in text.lines().filter_map(|l| l.splitn(3, ':').nth(2)) {
        let segs: Vec<&str> = path.split('/').collect();
        for w in segs.windows(2) {
            if w[0] == "ec2lab" && ours.contains(w[1]) {
                return Some(w[1].to_string());
            }
        }
    }
    None
}

/// (pid, instance) of every host process in one of our instances' cgroups, and every
/// `__launch`/`__enter` helper of ours (named by an instance id in its cmdline or cgroup).
fn instance_processes(ours: &BTreeSet<String>) -> (Procs, Procs) {
    let (mut members, mut helpers) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let in_cg = instance_of_cgroup(&cg, ours);
        if let Some(id) = &in_cg {
            members.push((pid, id.clone()));
        }
        if matches!(
            args.get(1).map(String::as_str),
            Some("__launch" | "__enter")
        ) {
            let named = args.iter().find(|a| ours.contains(*a)).cloned();
            if let Some(id) = named.or(in_cg) {
                helpers.push((pid, format!("{id} ({})", args.join(" "))));
            }
        }
    }
    (members, helpers)
}

/// Instance ids with a cgroup directory under any controller's `ec2lab/`.
fn cgroups_of(ours: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut parents = vec![Path::new("/sys/fs/cgroup/ec2lab").to_path_buf()];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        parents.extend(rd.flatten().map(|e| e.path().join("ec2lab")));
    }
    for p in parents {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if ours.contains(&id) && e.path().is_dir() {
                out.entry(id).or_default().push(p.display().to_string());
            }
        }
    }
    out
}

/// Mount points under the data dir, but the VPC router's namespace (the daemon's own, kept
/// while it runs).
fn mounts_under(data_dir: &Path, keep_router: bool) -> Vec<String> {
    let router = data_dir.join("vpc-router.netns");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(data_dir))
        .filter(|m| !(keep_router && Path::new(m) == router))
        .map(str::to_string)
        .collect()
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Everything that must hold after a restart (or a graceful stop: `running` then means none).
fn check_nothing_left(
    d: &Daemon,
    states: &BTreeMap<String, String>,
    round: usize,
    keep_router: bool,
) {
    let ours: BTreeSet<String> = states.keys().cloned().collect();
    let running = |id: &str| states.get(id).is_some_and(|s| s == "running");
    let (members, helpers) = instance_processes(&ours);
    let orphans: Vec<_> = members.iter().filter(|(_, id)| !running(id)).collect();
    assert!(
        orphans.is_empty(),
        "round {round}: orphaned processes {orphans:?}"
    );
    assert!(
        helpers.is_empty(),
        "round {round}: helpers left {helpers:?}"
    );
    let cgroups = cgroups_of(&ours);
    let stray: Vec<_> = cgroups.iter().filter(|(id, _)| !running(id)).collect();
    assert!(
        stray.is_empty(),
        "round {round}: orphaned cgroups {stray:?}"
    );
    let mounts = mounts_under(&d.data_dir, keep_router);
    assert!(mounts.is_empty(), "round {round}: mounts left {mounts:?}");
    for id in dir_names(&d.data_dir.join("volumes")) {
        let s = states.get(&id).map(String::as_str);
        assert!(
            matches!(s, Some("running" | "stopped")),
            "round {round}: volume of {id} ({s:?}) left"
        );
    }
    for id in dir_names(&d.data_dir.join("run")) {
        assert!(
            running(&id),
            "round {round}: run dir of {id} ({:?}) left",
            states.get(&id)
        );
    }
    for (id, s) in states {
        if s == "running" || s == "stopped" {
            assert!(
                d.data_dir.join("volumes").join(id).join("upper").is_dir(),
                "round {round}: {id} ({s}) lost its root volume"
            );
        }
        if s == "running" && keep_router {
            assert!(
                cgroups.contains_key(id),
                "round {round}: running {id} has no cgroup"
            );
            assert!(
                members.iter().any(|(_, m)| m == id),
                "round {round}: running {id} has no processes"
            );
        }
    }
}

/// Plants what a crash at the worst moment leaves: a half-made spare volume, and a volume and
/// runtime dir for a terminated instance (a removal that failed). Returns the spare's path.
fn plant_leftovers(d: &Daemon, terminated: Option<&String>, round: usize) -> std::path::PathBuf {
    let spare = d
        .data_dir
        .join("spares")
        .join(format!("spare-{round:016x}.tmp"));
    std::fs::create_dir_all(spare.join("upper/etc/ssh")).unwrap();
    std::fs::write(spare.join("upper/etc/ssh/ssh_host_ed25519_key"), "half").unwrap();
    if let Some(id) = terminated {
        std::fs::create_dir_all(d.data_dir.join("volumes").join(id).join("upper/root")).unwrap();
        std::fs::write(
            d.data_dir.join("volumes").join(id).join("upper/root/f"),
            "x",
        )
        .unwrap();
        std::fs::create_dir_all(d.data_dir.join("run").join(id)).unwrap();
        std::fs::write(d.data_dir.join("run").join(id).join("console.log"), "x").unwrap();
    }
    spare
}

/// Starts the daemon on the same data dir and kills it `delay` into its start-up (clean-up and
/// reconciliation included), as a crash during recovery would.
fn crash_during_start(d: &Daemon, delay: Duration) {
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&d.data_dir)
        .args(["--api-addr", &format!("127.0.0.1:{}", d.api_port)])
        .args(["--public-cidr", &d.public_cidr])
        .args(["--ssh-port", &d.ssh_port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `restart`, once more if the new daemon found the lock or the API port still held: a child
/// the killed daemon was spawning holds copies of its descriptors until it execs (they are
/// close-on-exec), which on a loaded machine can outlast the kill by a moment. Any other
/// start-up failure fails the test with the daemon's log.
fn restart_after_crash(d: &mut Daemon) {
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.restart()));
    let Err(payload) = first else { return };
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    if !(msg.contains("another ec2lab daemon is already using")
        || msg.contains("cannot listen on --api-addr"))
    {
        std::panic::resume_unwind(payload);
    }
    eprintln!("restart refused while the killed daemon's last child exec'd; again: {msg}");
    d.kill9(); // reaps the exited child
    std::thread::sleep(Duration::from_millis(200));
    d.restart();
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_leaves_nothing() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let seed = std::env::var("EC2LAB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("crash test seed {seed} (EC2LAB_CRASH_SEED replays it)");
    let mut rng = Rng(seed);
    let mut d = Daemon::start();
    let ami = d.lab_linux();
    let mut api = Api::of(&d);
    let mut named: BTreeSet<String> = BTreeSet::new();
    let mut states = api.describe();
    let mut kills_during_calls = 0;
    for round in 0..ROUNDS {
        let alive: Vec<String> = states
            .iter()
            .filter(|(_, s)| *s != "terminated")
            .map(|(id, _)| id.clone())
            .collect();
        // Every fourth round, a session inside a running instance (an `__enter` helper) too.
        let session = states
            .iter()
            .find(|(_, s)| *s == "running")
            .filter(|_| round % 4 == 1)
            .map(|(id, _)| {
                std::process::Command::new(BIN)
                    .args(["exec", "--data-dir"])
                    .arg(&d.data_dir)
                    .args([id, "--", "sleep", "600"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            });
        let mut calls = Vec::new();
        if alive.len() < MAX_ALIVE {
            let n = 1 + rng.below(3);
            let body = format!(
                "Action=RunInstances&Version=2016-11-15&ImageId={ami}&MinCount=1&MaxCount={n}&InstanceType=t2.nano"
            );
            calls.push(issue(&api, Action::Run, Vec::new(), body));
        }
        for id in &alive {
            let action = match (states[id].as_str(), rng.below(6)) {
                ("running", 0 | 1) => Action::Stop,
                ("stopped", 0..=2) => Action::Start,
                (_, 3) => Action::Terminate,
                _ => continue,
            };
            let body = format!(
                "Action={}&Version=2016-11-15{}",
                action.name(),
                id_params(std::slice::from_ref(id))
            );
            calls.push(issue(&api, action, vec![id.clone()], body));
        }
        // 0–300 ms, more often early (the smaller of two draws), so that kills land inside
        // calls as well as in the stops and terminations that finish after them.
        let delay = rng.below(301).min(rng.below(301));
        std::thread::sleep(Duration::from_millis(delay));
        d.kill9();
        let mut answered: Vec<(Action, Vec<String>, Answer)> = Vec::new();
        for c in calls {
            let r = c.thread.join().expect("call thread");
            answered.push((c.action, c.ids, r));
        }
        kills_during_calls += answered.iter().filter(|a| a.2.is_none()).count();
        // Half-made things a crash can leave, planted every few rounds.
        let spares_before: Vec<String> = dir_names(&d.data_dir.join("spares"))
            .into_iter()
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        let planted = (round % 5 == 4).then(|| {
            let terminated = states
                .iter()
                .find(|(_, s)| *s == "terminated")
                .map(|(id, _)| id);
            plant_leftovers(&d, terminated, round)
        });

        // Every third round, a second crash while the daemon recovers from the first.
        if round % 3 == 2 {
            crash_during_start(&d, Duration::from_millis(rng.below(301)));
        }
        restart_after_crash(&mut d);
        api = Api::of(&d);
        let after = api.describe();

        // 0 lost records, each in a settled and sensible state.
        for (action, ids, answer) in &answered {
            if let (Action::Run, Some((200, body))) = (action, answer) {
                named.extend(ids_in(body));
            }
            let ok = matches!(answer, Some((200, _)));
            assert!(
                !matches!(answer, Some((s, _)) if *s >= 500),
                "round {round}: {action:?} answered {answer:?}"
            );
            for id in ids {
                let now = after.get(id).map(String::as_str);
                let before = states[id].as_str();
                let allowed: Vec<&str> = if ok {
                    vec![action.end_state()]
                } else if answer.is_some() {
                    vec![before]
                } else {
                    // Killed before it answered: it happened or not, and a start that failed
                    // to boot is stopped.
                    vec![before, action.end_state()]
                };
                assert!(
                    now.is_some_and(|n| allowed.contains(&n)),
                    "round {round}: {id} was {before}, {action:?} answered {}: now {now:?}, expected one of {allowed:?}\n{}",
                    answer
                        .as_ref()
                        .map_or("nothing".to_string(), |a| a.0.to_string()),
                    d.log_text()
                );
            }
        }
        for id in &named {
            assert!(after.contains_key(id), "round {round}: record of {id} lost");
        }
        for (id, s) in &after {
            match states.get(id) {
                // Not touched this round: as it was.
                Some(b) if !answered.iter().any(|a| a.1.contains(id)) => assert_eq!(
                    s,
                    b,
                    "round {round}: {id} changed by itself\n{}",
                    d.log_text()
                ),
                Some(_) => {}
                // New: from a launch, answered or not; it boots again.
                None => assert_eq!(s, "running", "round {round}: new {id} is {s}"),
            }
        }
        check_nothing_left(&d, &after, round, true);
        if let Some(mut s) = session {
            // Its instance was killed and booted again: the session ended with it.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while s.try_wait().unwrap().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = s.kill();
                    panic!("round {round}: an exec session outlived its instance's crash");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for n in &spares_before {
            assert!(
                !d.data_dir.join("spares").join(n).exists(),
                "round {round}: half-made spare {n} left"
            );
        }
        if let Some(p) = planted {
            assert!(
                !p.exists(),
                "round {round}: planted spare {} left",
                p.display()
            );
        }
        states = after;
    }
    eprintln!(
        "{ROUNDS} rounds, {} instances, {kills_during_calls} calls cut by the kill",
        states.len()
    );
    assert!(kills_during_calls > 0, "no kill ever landed during a call");

    // A graceful stop at the end leaves nothing at all, the router's namespace included.
    assert!(d.stop().success());
    let none_running: BTreeMap<String, String> = states
        .keys()
        .map(|id| (id.clone(), "stopped".to_string()))
        .collect();
    let (members, helpers) = instance_processes(&none_running.keys().cloned().collect());
    assert!(
        members.is_empty() && helpers.is_empty(),
        "left after stop: {members:?} {helpers:?}"
    );
    assert!(cgroups_of(&none_running.keys().cloned().collect()).is_empty());
    assert!(
        mounts_under(&d.data_dir, false).is_empty(),
        "mounts left after stop"
    );
}

#[test]
fn a_terminate_during_a_start_waits_for_the_boot_and_deletes_the_volume() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let mut d = Daemon::start();
    let ami = d.lab_linux();
    // Just after a restart, as in the report.
    d.kill9();
    d.restart();
    let api = Api::of(&d);
    let (status, body) = api
        .call(&format!(
            "Action=RunInstances&Version=2016-11-15&ImageId={ami}&MinCount=6&MaxCount=6&InstanceType=t2.nano"
        ))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let ids = ids_in(&body);
    let stop = format!("Action=StopInstances&Version=2016-11-15{}", id_params(&ids));
    assert_eq!(api.call(&stop).unwrap().0, 200);
    for id in &ids {
        d.wait_state(id, "stopped");
    }
    // Each instance: a start and a terminate sent at the same moment.
    let calls: Vec<_> = ids
        .iter()
        .flat_map(|id| {
            let one = id_params(std::slice::from_ref(id));
            [
                issue(
                    &api,
                    Action::Start,
                    vec![id.clone()],
                    format!("Action=StartInstances&Version=2016-11-15{one}"),
                ),
                issue(
                    &api,
                    Action::Terminate,
                    vec![id.clone()],
                    format!("Action=TerminateInstances&Version=2016-11-15{one}"),
                ),
            ]
        })
        .collect();
    for c in calls {
        let answer = c.thread.join().unwrap();
        let status = answer.as_ref().map(|a| a.0);
        // A start after the terminate is refused (IncorrectInstanceState), never a 5xx.
        assert!(
            status == Some(200) || (c.action == Action::Start && status == Some(400)),
            "{:?} {:?}: {answer:?}",
            c.action,
            c.ids
        );
    }
    for id in &ids {
        d.wait_state(id, "terminated");
    }
    let states: BTreeMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), "terminated".to_string()))
        .collect();
    check_nothing_left(&d, &states, 0, true);
    assert!(
        !d.log_text().contains("Directory not empty"),
        "a removal raced a boot: {}",
        d.log_text()
    );
}

fn init_pid(d: &Daemon, id: &str) -> Option<i64> {
    let json = std::fs::read(d.data_dir.join("run").join(id).join("init.json")).ok()?;
    serde_json::from_slice::<serde_json::Value>(&json).ok()?["init_pid"].as_i64()
}

#[test]
fn a_reboot_from_inside_boots_again_and_a_terminate_racing_it_leaves_nothing() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let ids = d.run_instances(&["--count", "2", "--instance-type", "t2.nano"]);
    let (a, b) = (&ids[0], &ids[1]);
    // A reboot asked from inside (ctrl-alt-del): the same instance boots again.
    let old = init_pid(&d, a).expect("init.json of a running instance");
    let _ = d.exec(a, Some("root"), "kill -INT 1");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while init_pid(&d, a).is_none_or(|p| p == old) {
        assert!(
            std::time::Instant::now() < deadline,
            "{a} never booted again: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(d.state_of(a), "running");
    assert_eq!(d.exec_ok(a, None, "echo ok"), "ok\n");
    // A reboot from inside and a terminate at once: terminated, nothing left.
    let _ = d.exec(b, Some("root"), "kill -INT 1");
    d.aws_json(&["ec2", "terminate-instances", "--instance-ids", b]);
    d.wait_state(b, "terminated");
    let states: BTreeMap<String, String> = [
        (a.clone(), "running".to_string()),
        (b.clone(), "terminated".to_string()),
    ]
    .into();
    check_nothing_left(&d, &states, 0, true);
}

/// Unmounts (lazily) on drop, so a failing test never leaves its mount on the host.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_leftover_that_cannot_be_removed_is_logged_and_removed_at_the_next_start() {
    if !prerequisites(&["aws", "mount", "umount"]) {
        return;
    }
    let mut d = Daemon::start();
    let id = &d.run_instances(&["--instance-type", "t2.nano"])[0];
    d.aws_json(&["ec2", "terminate-instances", "--instance-ids", id]);
    d.wait_state(id, "terminated");
    d.kill9();
    // What a failed removal leaves: the volume of a terminated instance, here held by a mount
    // (EBUSY) so that every attempt of the next start fails.
    let volume = d.data_dir.join("volumes").join(id);
    let busy = volume.join("upper/mnt");
    std::fs::create_dir_all(&busy).unwrap();
    run_ok(
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&busy),
    );
    let guard = Mounted(busy.clone());
    d.restart();
    let log = d.log_text();
    assert!(
        log.contains("cannot remove yet; retrying")
            && log.contains("cannot remove; the next start tries again"),
        "the failed removal is retried and logged: {log}"
    );
    assert!(volume.exists());
    drop(guard);
    d.kill9();
    d.restart();
    assert!(!volume.exists(), "the next start removes it");
    assert_eq!(d.state_of(id), "terminated");
}
