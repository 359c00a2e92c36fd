//! `ec2lab completions SHELL` and `ec2lab man [--dir D]`: shell completion scripts and man
//! pages, generated from the same clap definitions that parse the command line, so they never
//! drift from it. Without `--dir` the main page goes to stdout (`ec2lab man | man -l -`); with it,
//! `ec2lab.1` and one `ec2lab-SUBCOMMAND.1` per subcommand are written there.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::{Cli, CliError};

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ec2lab", &mut text);
    print_all(&text)
}

/// Writes to stdout; a reader that stopped early (`| head`) is not an error.
fn print_all(text: &[u8]) -> Result<(), CliError> {
    match std::io::stdout().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Setup(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// Prints the man page, or writes every page into `dir`.
pub fn man(dir: Option<&Path>) -> Result<(), CliError> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        let mut text = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut text)
            .map_err(|e| CliError::Setup(format!("cannot render the man page: {e}")))?;
        return print_all(&text);
    };
    let err =
        |e: std::io::Error| CliError::Setup(format!("cannot write into {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(err)?;
    clap_mangen::generate_to(cmd, dir).map_err(err)?;
    eprintln!("wrote the ec2lab man pages into {}", dir.display());
    Ok(())
}
