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
#[path = "crash_support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use support::*;

const ROUNDS: usize = 30;
/// Most instances alive (not terminated) at a time.
const MAX_ALIVE: usize = 8;
const DEFAULT_SEED: u64 = 0x0ec2_1ab0_c4a5_4001;

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
    let loops = loops_under(&d.data_dir);
    assert!(loops.is_empty(), "loop devices left after stop: {loops:?}");
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
