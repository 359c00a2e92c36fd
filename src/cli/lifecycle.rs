//! `ec2lab start | stop | reboot | terminate [--wait [--timeout S]] NAME|ID…`, and the waiting
//! that `run --wait` shares.
//!
//! Order: resolve every target (id or Name tag) → reboot only: each must be running, and with
//! `--wait` its console's count of "booting instance" lines (what PID 1 prints at each boot) is
//! taken → the API call → with `--wait`, poll DescribeInstances until every instance is in the
//! state the action leads to (or GetConsoleOutput until each reboot has booted again). A state
//! from which the target can no longer be reached ends the wait at once with the reason.

use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;

use super::client::Element;
use super::instance::{describe, name_of, p, resolve_instance, state_name};
use super::output::Rows;
use super::{CliError, Client, Common};

/// What PID 1 writes on the console when an instance boots (`sandbox::init`).
const BOOT_LINE: &str = "booting instance ";
/// How often `--wait` asks.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Wait until the instances are in the state the action leads to.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds, before giving up with an error.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "wait")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Instance ids or Name tags.
    #[arg(required = true)]
    pub instances: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Reboot,
    Terminate,
}

impl Action {
    fn api(self) -> &'static str {
        match self {
            Action::Start => "StartInstances",
            Action::Stop => "StopInstances",
            Action::Reboot => "RebootInstances",
            Action::Terminate => "TerminateInstances",
        }
    }

    /// The state `--wait` waits for.
    fn target(self) -> &'static str {
        match self {
            Action::Start | Action::Reboot => "running",
            Action::Stop => "stopped",
            Action::Terminate => "terminated",
        }
    }
}

/// Runs one lifecycle action on the targets.
pub fn run(common: &Common, action: Action, a: TargetArgs) -> Result<(), CliError> {
    let client = common.client()?;
    let mut found = Vec::new();
    for t in &a.instances {
        found.push(resolve_instance(&client, t)?);
    }
    let ids: Vec<String> = found.iter().map(|i| i.text_of("instanceId")).collect();
    if action == Action::Reboot {
        for (i, t) in found.iter().zip(&a.instances) {
            let state = state_name(i);
            if state != "running" {
                return Err(CliError::Setup(format!(
                    "cannot reboot {t}: it is {state}, and only a running instance can be rebooted (start it with `ec2lab start {t}`)"
                )));
            }
        }
    }
    let boots_before = if action == Action::Reboot && a.wait.wait {
        ids.iter()
            .map(|id| boot_count(&client, id))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let params: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| p(&format!("InstanceId.{}", n + 1), id.clone()))
        .collect();
    let r = client.call(action.api(), &params)?;
    let deadline = Instant::now() + Duration::from_secs(a.wait.timeout);
    if action == Action::Reboot {
        if a.wait.wait {
            for (id, before) in ids.iter().zip(boots_before) {
                wait_for_boot(&client, id, before, deadline)?;
            }
            wait_for_state(&client, &ids, "running", deadline)?;
            eprintln!("rebooted {}", a.instances.join(", "));
        } else {
            eprintln!("rebooting {}", a.instances.join(", "));
        }
        return Ok(());
    }
    let mut rows = Rows::new(&["INSTANCE ID", "PREVIOUS", "CURRENT"]);
    let now = if a.wait.wait {
        Some(wait_for_state(&client, &ids, action.target(), deadline)?)
    } else {
        None
    };
    for i in r.items("instancesSet") {
        let id = i.text_of("instanceId");
        let current = match &now {
            Some(list) => list
                .iter()
                .find(|n| n.text_of("instanceId") == id)
                .map(state_name)
                .unwrap_or_default(),
            None => i
                .find("currentState")
                .map(|s| s.text_of("name"))
                .unwrap_or_default(),
        };
        rows.push(vec![
            id,
            i.find("previousState")
                .map(|s| s.text_of("name"))
                .unwrap_or_default(),
            current,
        ]);
    }
    rows.print(common.output);
    Ok(())
}

/// Polls DescribeInstances until every instance is in `target`; returns them as they are then.
/// An instance in a state that cannot lead to `target` is an error at once, with its reason.
pub(crate) fn wait_for_state(
    client: &Client,
    ids: &[String],
    target: &str,
    deadline: Instant,
) -> Result<Vec<Element>, CliError> {
    loop {
        let now = describe(client, ids)?;
        if now.len() == ids.len() && now.iter().all(|i| state_name(i) == target) {
            return Ok(now);
        }
        for i in &now {
            stuck(i, target)?;
        }
        if Instant::now() >= deadline {
            let states: Vec<String> = now
                .iter()
                .map(|i| format!("{} {}", i.text_of("instanceId"), state_name(i)))
                .collect();
            return Err(CliError::Setup(format!(
                "gave up waiting for {target} after --timeout: {}",
                states.join(", ")
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// An error when the instance is in a state that cannot lead to `target`, with its reason.
fn stuck(i: &Element, target: &str) -> Result<(), CliError> {
    let state = state_name(i);
    if !dead_end(&state, target) {
        return Ok(());
    }
    let reason = i
        .find("stateReason")
        .map(|r| r.text_of("message"))
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    Err(CliError::Setup(format!(
        "{}{} is {state}{reason}: it will not become {target}",
        i.text_of("instanceId"),
        named(i),
    )))
}

/// Whether an instance in `state` can no longer reach `target` by itself.
fn dead_end(state: &str, target: &str) -> bool {
    match target {
        // A failed boot is recorded as `stopped` with a reason.
        "running" => matches!(
            state,
            "stopping" | "stopped" | "shutting-down" | "terminated"
        ),
        "stopped" => matches!(state, "shutting-down" | "terminated"),
        _ => false,
    }
}

/// " (NAME)" for an instance with a Name tag.
fn named(i: &Element) -> String {
    let n = name_of(i);
    if n.is_empty() { n } else { format!(" ({n})") }
}

/// How many times the instance's console says it booted.
fn boot_count(client: &Client, id: &str) -> Result<usize, CliError> {
    let r = client.call("GetConsoleOutput", &[p("InstanceId", id)])?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r.text_of("output").trim())
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&raw).matches(BOOT_LINE).count())
}

/// Polls the console until it shows one more boot than `before`; a reboot that failed (the
/// instance is no longer running) ends the wait with its reason.
fn wait_for_boot(
    client: &Client,
    id: &str,
    before: usize,
    deadline: Instant,
) -> Result<(), CliError> {
    while boot_count(client, id)? <= before {
        if let Some(i) = describe(client, &[id.to_string()])?.first() {
            stuck(i, "running")?;
        }
        if Instant::now() >= deadline {
            return Err(CliError::Setup(format!(
                "gave up waiting for {id} to boot again after --timeout (its console shows no new \"{}\" line)",
                BOOT_LINE.trim_end()
            )));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_ends() {
        assert!(dead_end("stopped", "running"));
        assert!(!dead_end("pending", "running"));
        assert!(!dead_end("stopping", "stopped"));
        assert!(dead_end("terminated", "stopped"));
        assert!(!dead_end("running", "terminated"));
    }
}
