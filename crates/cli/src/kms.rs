//! `seccs kms …` commands (being built).

use clap::Args;

/// Arguments of `seccs kms`.
#[derive(Debug, Args)]
pub struct KmsArgs {}

/// Runs `seccs kms`.
pub fn run(_args: KmsArgs) -> anyhow::Result<()> {
    anyhow::bail!("seccs kms is not built yet")
}
