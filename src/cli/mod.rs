//! The user-facing `ec2lab` command line: `serve` runs the daemon; every other subcommand is a
//! thin client of the same EC2 API the aws CLI uses (see `client`), except `key convert`, which
//! works offline on key files.

pub mod client;
mod env;
mod image;
mod instance;
mod key;
pub mod output;
mod ssh;
mod why;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use client::{CliError, Client};
use output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "ec2lab",
    version,
    about = "A hands-on EC2 lab on one Linux host",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options every client subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The daemon's data dir (to find its endpoint and credentials).
    #[arg(long, global = true, default_value = crate::datadir::DEFAULT_DIR, env = "EC2LAB_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (needs root).
    Serve(crate::serve::ServeArgs),
    /// Print `export AWS_…` lines that point the aws CLI at the lab: eval "$(ec2lab env)".
    Env {
        #[arg(long, default_value = crate::datadir::DEFAULT_DIR, env = "EC2LAB_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Key pairs: create, import, list, delete, and convert key files (pem ↔ ppk).
    Key {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// AMIs: register a directory image, list, deregister.
    Image {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Launch instances (RunInstances).
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: instance::RunArgs,
    },
    /// List instances.
    Ls {
        #[command(flatten)]
        common: Common,
    },
    /// Run a command (or a login shell) inside a running instance; exits with its status.
    Exec {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: instance::ExecArgs,
    },
    /// Log into an instance with the system's ssh: finds its public IP, user and key.
    Ssh {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: ssh::SshArgs,
    },
    /// Explain whether a port of an instance is reachable from a source address, and why.
    Why {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: why::WhyArgs,
    },
    /// Start stopped instances (by id or Name tag).
    Start {
        #[command(flatten)]
        common: Common,
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Stop running instances.
    Stop {
        #[command(flatten)]
        common: Common,
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Reboot running instances.
    Reboot {
        #[command(flatten)]
        common: Common,
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Terminate instances (their root volumes are deleted).
    Terminate {
        #[command(flatten)]
        common: Common,
        #[arg(required = true)]
        instances: Vec<String>,
    },
}

/// Runs a client subcommand; `serve` is dispatched by `main`.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
        Command::Env { data_dir } => env::run(&data_dir),
        Command::Key { common, command } => key::run(&common, command),
        Command::Image { common, command } => image::run(&common, command),
        Command::Run { common, args } => instance::run(&common, args),
        Command::Ls { common } => instance::ls(&common),
        Command::Exec { common, args } => instance::exec(&common, args),
        Command::Why { common, args } => why::run(&common, args),
        Command::Ssh { common, args } => ssh::run(&common, args),
        Command::Start { common, instances } => {
            instance::lifecycle(&common, "StartInstances", &instances)
        }
        Command::Stop { common, instances } => {
            instance::lifecycle(&common, "StopInstances", &instances)
        }
        Command::Reboot { common, instances } => {
            instance::lifecycle(&common, "RebootInstances", &instances)
        }
        Command::Terminate { common, instances } => {
            instance::lifecycle(&common, "TerminateInstances", &instances)
        }
    }
}
