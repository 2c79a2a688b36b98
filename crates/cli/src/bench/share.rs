//! `seccs bench share` (being built).

use clap::Args;

/// Arguments of `seccs bench share`.
#[derive(Debug, Args)]
pub struct ShareBenchArgs {}

/// Runs `seccs bench share`.
pub fn run(_args: ShareBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("seccs bench share is not built yet")
}
