//! The `ec2lab` binary. Hidden helper modes (sandbox set-up, entering an instance) are dispatched
//! here before anything else — in particular before any async runtime starts threads — then the
//! command line is parsed with clap.

use clap::Parser;
use ec2lab::cli::{Cli, Command};

fn main() {
    // Inside an instance this binary is also `systemctl`, `journalctl`, `service`, `poweroff`…
    let argv0 = std::env::args().next().unwrap_or_default();
    let tool = std::path::Path::new(&argv0)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if ec2lab::initsys::client::TOOLS.contains(&tool.as_str()) {
        ec2lab::initsys::client::main(&tool, std::env::args().skip(1).collect());
    }
    // Hidden helper modes: single-threaded, before anything else runs.
    let mut args = std::env::args();
    match args.nth(1).as_deref() {
        Some(ec2lab::sandbox::LAUNCH_ARG) => {
            ec2lab::sandbox::launcher_main(ec2lab::runtime::init_entry)
        }
        Some(ec2lab::sandbox::ENTER_ARG) => {
            ec2lab::sandbox::enter_main(&args.next().unwrap_or_default())
        }
        Some(ec2lab::sandbox::SESSIOND_ARG) => {
            ec2lab::sandbox::sessiond_main(&args.next().unwrap_or_default())
        }
        _ => {}
    }
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => ec2lab::serve::run(args),
        other => ec2lab::cli::run(Cli { command: other }).map_err(anyhow::Error::from),
    };
    if let Err(e) = result {
        eprintln!("ec2lab: {}", one_line(&e));
        std::process::exit(1);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EC2LAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, and never when NO_COLOR is set.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
}

/// An error and its causes on one line: `outer: inner: root cause`.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
