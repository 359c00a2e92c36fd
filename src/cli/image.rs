//! `ec2lab image register | ls | rm`: AMIs from directories on this host.

use std::path::PathBuf;

use clap::Subcommand;

use super::output::Rows;
use super::{CliError, Common};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Register an AMI directory (manifest.json + rootfs/, see scripts/build-ami.sh).
    Register {
        dir: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List AMIs.
    #[command(alias = "list")]
    Ls,
    /// Deregister an AMI (its directory is left alone).
    #[command(alias = "deregister")]
    Rm { image_id: String },
}

pub fn run(common: &Common, cmd: ImageCommand) -> Result<(), CliError> {
    let client = common.client()?;
    match cmd {
        ImageCommand::Register {
            dir,
            name,
            description,
        } => {
            let dir = std::fs::canonicalize(&dir)
                .map_err(|e| CliError::Setup(format!("cannot use {}: {e}", dir.display())))?;
            let ami = crate::ami::inspect(&dir).map_err(|e| CliError::Setup(e.to_string()))?;
            let name = name.unwrap_or(ami.manifest.name.clone());
            if name.is_empty() {
                return Err(CliError::Setup(
                    "give the AMI a name with --name (the manifest has none)".into(),
                ));
            }
            let mut params = vec![
                ("Name".to_string(), name.clone()),
                ("ImageLocation".to_string(), dir.display().to_string()),
            ];
            if let Some(d) = description {
                params.push(("Description".to_string(), d));
            }
            let r = client.call("RegisterImage", &params)?;
            let mut rows = Rows::new(&["IMAGE ID", "NAME", "LOCATION"]);
            rows.push(vec![r.text_of("imageId"), name, dir.display().to_string()]);
            rows.print(common.output);
        }
        ImageCommand::Ls => {
            let r = client.call("DescribeImages", &[])?;
            let mut rows = Rows::new(&[
                "IMAGE ID",
                "NAME",
                "OWNER",
                "CREATED",
                "LOCATION",
                "DESCRIPTION",
            ]);
            for i in r.items("imagesSet") {
                let owner = i.text_of("imageOwnerAlias");
                rows.push(vec![
                    i.text_of("imageId"),
                    i.text_of("name"),
                    if owner.is_empty() {
                        "self".into()
                    } else {
                        owner
                    },
                    i.text_of("creationDate"),
                    i.text_of("imageLocation"),
                    i.text_of("description"),
                ]);
            }
            rows.print(common.output);
        }
        ImageCommand::Rm { image_id } => {
            client.call(
                "DeregisterImage",
                &[("ImageId".to_string(), image_id.clone())],
            )?;
            eprintln!("deregistered {image_id}");
        }
    }
    Ok(())
}
