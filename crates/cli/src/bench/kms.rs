//! `seccs bench kms` (being built).

use clap::Args;

/// Arguments of `seccs bench kms`.
#[derive(Debug, Args)]
pub struct KmsBenchArgs {}

/// Runs `seccs bench kms`.
pub fn run(_args: KmsBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("seccs bench kms is not built yet")
}
