//! Secrets: read from the environment or from a file only its owner can read, and
//! never shown. [`Secret`]'s `Debug` prints nothing of it, and [`Secret::redact`]
//! scrubs it out of any text a server sends back before that text is stored or shown.

use std::fmt;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context as _, bail};

use crate::campaign::SecretRef;

#[derive(Clone)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    /// Reads the secret a campaign points to: the file when one is named, else the
    /// environment variable.
    pub fn load(reference: &SecretRef) -> anyhow::Result<Secret> {
        if let Some(path) = &reference.file {
            let shown = path.display();
            let meta = std::fs::metadata(path).with_context(|| format!("token file {shown}"))?;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                bail!(
                    "token file {shown} is readable by other users (mode {:04o}); run `chmod 600 {shown}`",
                    mode & 0o7777
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {shown}"))?;
            return Secret::new(text.trim(), &format!("token file {shown}"));
        }
        match std::env::var(&reference.env) {
            Ok(value) => Secret::new(
                value.trim(),
                &format!("environment variable {}", reference.env),
            ),
            Err(_) => bail!(
                "the environment variable {} is not set; export the access token there \
                 (or set provider.token_file to a file readable only by you)",
                reference.env
            ),
        }
    }

    pub fn new(value: &str, origin: &str) -> anyhow::Result<Secret> {
        if value.is_empty() {
            bail!("{origin} is empty");
        }
        Ok(Secret(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced.
    pub fn redact(&self, text: &str) -> String {
        if self.0.len() >= 4 && text.contains(&self.0) {
            text.replace(&self.0, "[redacted]")
        } else {
            text.to_owned()
        }
    }
}
