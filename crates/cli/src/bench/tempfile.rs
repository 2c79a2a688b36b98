//! `seccs bench tempfile` (being built).

use clap::Args;

/// Arguments of `seccs bench tempfile`.
#[derive(Debug, Args)]
pub struct TempfileBenchArgs {}

/// Runs `seccs bench tempfile`.
pub fn run(_args: TempfileBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("seccs bench tempfile is not built yet")
}
