//! `ec2lab env`: the shell lines that make the plain aws CLI (and boto3) talk to the lab.

use std::path::Path;

use super::CliError;
use crate::datadir::DataDir;

pub fn run(data_dir: &Path) -> Result<(), CliError> {
    print!("{}", render(data_dir)?);
    Ok(())
}

pub fn render(data_dir: &Path) -> Result<String, CliError> {
    let dd = DataDir::new(data_dir);
    let info = dd.daemon_info().map_err(|_| {
        CliError::Setup(format!(
            "no ec2lab daemon has run with data dir {} yet: start it with `sudo ec2lab serve{}`",
            data_dir.display(),
            if data_dir == Path::new(crate::datadir::DEFAULT_DIR) {
                String::new()
            } else {
                format!(" --data-dir {}", data_dir.display())
            }
        ))
    })?;
    let creds = dd
        .credentials()
        .map_err(|e| CliError::Setup(format!("cannot read the lab credentials: {e}")))?;
    Ok(format!(
        "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport AWS_DEFAULT_REGION={}\nexport AWS_REGION={}\nexport AWS_ENDPOINT_URL={}\nexport EC2LAB_DATA_DIR={}\n",
        creds.access_key_id,
        creds.secret_access_key,
        info.region,
        info.region,
        info.endpoint,
        shell_quote(&data_dir.display().to_string()),
    ))
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
