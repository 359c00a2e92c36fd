//! `ec2lab ls | exec`, and what every instance subcommand shares: instances are named by id or
//! by their `Name` tag (`resolve_instance`), and shown as one table. `exec` enters a running
//! instance directly (the same path the SSH gateway uses), so it needs root like the daemon.
//! `run` is in `launch`, start / stop / reboot / terminate in `lifecycle`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::client::Element;
use super::output::Rows;
use super::{CliError, Client, Common};
use crate::datadir::DataDir;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run as this user (default: the AMI's default user).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Instance id or Name tag.
    pub instance: String,
    /// The command and its arguments (none: a login shell).
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub(crate) fn p(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// `ec2lab ls`: every instance but the terminated ones, unless `all`.
pub fn ls(common: &Common, all: bool) -> Result<(), CliError> {
    let client = common.client()?;
    let r = client.call("DescribeInstances", &[])?;
    let shown: Vec<&Element> = instances(&r)
        .into_iter()
        .filter(|i| all || state_name(i) != "terminated")
        .collect();
    table(&shown).print(common.output);
    Ok(())
}

/// The instances with these ids, as DescribeInstances shows them now.
pub(crate) fn describe(client: &Client, ids: &[String]) -> Result<Vec<Element>, CliError> {
    let q: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| p(&format!("InstanceId.{}", n + 1), id.clone()))
        .collect();
    let r = client.call("DescribeInstances", &q)?;
    Ok(instances(&r).into_iter().cloned().collect())
}

fn instances(r: &Element) -> Vec<&Element> {
    r.items("reservationSet")
        .into_iter()
        .flat_map(|res| res.items("instancesSet"))
        .collect()
}

pub(crate) fn name_of(i: &Element) -> String {
    i.items("tagSet")
        .iter()
        .find(|t| t.text_of("key") == "Name")
        .map(|t| t.text_of("value"))
        .unwrap_or_default()
}

pub(crate) fn table(shown: &[&Element]) -> Rows {
    let mut rows = Rows::new(&[
        "INSTANCE ID",
        "NAME",
        "STATE",
        "TYPE",
        "ZONE",
        "PRIVATE IP",
        "PUBLIC IP",
        "IMAGE",
        "KEY",
    ]);
    for i in shown {
        rows.push(vec![
            i.text_of("instanceId"),
            name_of(i),
            i.find("instanceState")
                .map(|s| s.text_of("name"))
                .unwrap_or_default(),
            i.text_of("instanceType"),
            i.find("placement")
                .map(|pl| pl.text_of("availabilityZone"))
                .unwrap_or_default(),
            i.text_of("privateIpAddress"),
            i.text_of("ipAddress"),
            i.text_of("imageId"),
            i.text_of("keyName"),
        ]);
    }
    rows
}

/// The instance for an id or a Name tag (a name must match exactly one live instance).
pub(crate) fn resolve_instance(client: &Client, what: &str) -> Result<Element, CliError> {
    let r = if what.starts_with("i-") {
        client.call("DescribeInstances", &[p("InstanceId.1", what)])?
    } else {
        client.call(
            "DescribeInstances",
            &[
                p("Filter.1.Name", "tag:Name"),
                p("Filter.1.Value.1", what),
                p("Filter.2.Name", "instance-state-name"),
                p("Filter.2.Value.1", "pending"),
                p("Filter.2.Value.2", "running"),
                p("Filter.2.Value.3", "stopping"),
                p("Filter.2.Value.4", "stopped"),
            ],
        )?
    };
    let found = instances(&r);
    match found.len() {
        0 => Err(CliError::Setup(format!(
            "no instance named '{what}' (see `ec2lab ls`)"
        ))),
        1 => Ok(found[0].clone()),
        n => Err(CliError::Setup(format!(
            "{n} instances are named '{what}': use an instance id"
        ))),
    }
}

/// An instance's state name (`running`, `stopped`, …).
pub(crate) fn state_name(inst: &Element) -> String {
    inst.find("instanceState")
        .map(|s| s.text_of("name"))
        .unwrap_or_default()
}

/// The instance for an id or Name tag, and its id; an error unless it is running.
pub(crate) fn resolve_running(client: &Client, what: &str) -> Result<(Element, String), CliError> {
    let inst = resolve_instance(client, what)?;
    let id = inst.text_of("instanceId");
    let state = state_name(&inst);
    if state != "running" {
        return Err(CliError::Setup(format!(
            "instance {id} is {state}, not running"
        )));
    }
    Ok((inst, id))
}

/// The default user recorded in the instance's boot context on this host (saves an API call).
fn boot_context_user(data_dir: &Path, id: &str) -> Option<String> {
    let path = DataDir::new(data_dir)
        .path("volumes")
        .join(id)
        .join(crate::runtime::BOOT_CONTEXT);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["default_user"].as_str().map(str::to_string)
}

/// The default user of the instance's AMI (from its manifest on this host).
pub(crate) fn default_user(client: &Client, image_id: &str) -> String {
    let fallback = "root".to_string();
    let Ok(r) = client.call("DescribeImages", &[p("ImageId.1", image_id)]) else {
        return fallback;
    };
    let Some(img) = r
        .items("imagesSet")
        .first()
        .map(|i| i.text_of("imageLocation"))
    else {
        return fallback;
    };
    crate::ami::inspect(Path::new(&img))
        .map(|a| a.manifest.default_user)
        .unwrap_or(fallback)
}

pub fn exec(common: &Common, a: ExecArgs) -> Result<(), CliError> {
    let client = common.client()?;
    let (inst, id) = resolve_running(&client, &a.instance)?;
    let user = match a.user {
        Some(u) => u,
        None => boot_context_user(&common.data_dir, &id)
            .unwrap_or_else(|| default_user(&client, &inst.text_of("imageId"))),
    };
    let run_dir = DataDir::new(&common.data_dir).path("run").join(&id);
    let state_file = run_dir.join("init.json");
    let v: serde_json::Value = std::fs::read(&state_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            CliError::Setup(format!(
                "cannot read {} (ec2lab exec enters instances directly and needs root on the lab host)",
                state_file.display()
            ))
        })?;
    let spec = crate::sandbox::EnterSpec {
        init_pid: v["init_pid"].as_i64().unwrap_or(0) as i32,
        start_time: v["start_time"].as_u64().unwrap_or(0),
        user,
        argv: a.command,
        env: std::env::var("TERM")
            .ok()
            .map(|t| vec![("TERM".to_string(), t)])
            .unwrap_or_default(),
        tty: a.tty,
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let status = crate::sandbox::enter_command(&exe, &spec)
        .status()
        .map_err(|e| CliError::Setup(format!("cannot start the enter helper: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    std::process::exit(code);
}
