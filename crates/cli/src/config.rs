//! The configuration file, layered: defaults, then the TOML file, then `BRAMBLE_SECTION__KEY`
//! environment variables (`BRAMBLE_SERVER__DATABASE=postgres://…`,
//! `BRAMBLE_SERVER__UPLINK__SRP_KEY=…`), then command-line flags.

use std::path::Path;

use anyhow::{Context, Result};
use bramble_relay::RelayConfig;
use bramble_server::ServerConfig;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// Everything a configuration file may hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`: the enterprise server.
    pub server: ServerConfig,
    /// `[relay]`: a relay (`bramble relay`, or the in-process relay of `bramble serve`).
    pub relay: Option<RelayConfig>,
}

/// Reads the file (if given) and the environment.
///
/// # Errors
/// With the file and key at fault and what was expected.
pub fn load(file: Option<&Path>) -> Result<FileConfig> {
    let mut fig = Figment::new();
    if let Some(path) = file {
        if !path.exists() {
            anyhow::bail!("the configuration file {} does not exist", path.display());
        }
        fig = fig.merge(Toml::file(path));
    }
    fig = fig.merge(
        Env::prefixed("BRAMBLE_")
            .split("__")
            .filter(|k| k.as_str().starts_with("server.") || k.as_str().starts_with("relay.")),
    );
    let what = file.map_or_else(|| "the environment".to_owned(), |p| p.display().to_string());
    fig.extract::<FileConfig>()
        .with_context(|| format!("the configuration in {what} is not valid"))
}
