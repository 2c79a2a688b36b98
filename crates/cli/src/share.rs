//! `seccs share …` commands (being built).

use clap::Args;

/// Arguments of `seccs share`.
#[derive(Debug, Args)]
pub struct ShareArgs {}

/// Runs `seccs share`.
pub fn run(_args: ShareArgs) -> anyhow::Result<()> {
    anyhow::bail!("seccs share is not built yet")
}
