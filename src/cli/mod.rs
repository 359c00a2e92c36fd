//! The user-facing `ec2lab` command line: `serve` runs the daemon; every other subcommand is a
//! thin client of the same EC2 API the aws CLI uses (see `client`), except `key convert`, which
//! works offline on key files, and `completions` / `man`, which print what clap knows.

pub mod client;
mod docs;
mod env;
mod image;
mod instance;
mod key;
mod keyfiles;
mod launch;
mod lifecycle;
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
    /// The region to talk to: the lab has one (its daemon's); any other is refused.
    #[arg(long, global = true)]
    pub region: Option<String>,
}

impl Common {
    /// The API client for this data dir and region.
    pub fn client(&self) -> Result<Client, CliError> {
        Client::new(&self.data_dir, self.region.as_deref())
    }
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
        args: launch::RunArgs,
    },
    /// List instances (terminated ones only with --all).
    Ls {
        #[command(flatten)]
        common: Common,
        /// Also list terminated instances.
        #[arg(long)]
        all: bool,
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
        #[command(flatten)]
        args: lifecycle::TargetArgs,
    },
    /// Stop running instances.
    Stop {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: lifecycle::TargetArgs,
    },
    /// Reboot running instances.
    Reboot {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: lifecycle::TargetArgs,
    },
    /// Terminate instances (their root volumes are deleted).
    Terminate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: lifecycle::TargetArgs,
    },
    /// Print a shell completion script: ec2lab completions bash > /etc/bash_completion.d/ec2lab
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (or write one page per subcommand into --dir).
    Man {
        /// Write ec2lab.1 and ec2lab-SUBCOMMAND.1 files into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs a client subcommand; `serve` is dispatched by `main`.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
        Command::Env { data_dir } => env::run(&data_dir),
        Command::Key { common, command } => key::run(&common, command),
        Command::Image { common, command } => image::run(&common, command),
        Command::Run { common, args } => launch::run(&common, args),
        Command::Ls { common, all } => instance::ls(&common, all),
        Command::Exec { common, args } => instance::exec(&common, args),
        Command::Why { common, args } => why::run(&common, args),
        Command::Ssh { common, args } => ssh::run(&common, args),
        Command::Start { common, args } => lifecycle::run(&common, lifecycle::Action::Start, args),
        Command::Stop { common, args } => lifecycle::run(&common, lifecycle::Action::Stop, args),
        Command::Reboot { common, args } => {
            lifecycle::run(&common, lifecycle::Action::Reboot, args)
        }
        Command::Terminate { common, args } => {
            lifecycle::run(&common, lifecycle::Action::Terminate, args)
        }
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { dir } => docs::man(dir.as_deref()),
    }
}
