//! `seccs bench kms`: key generation, cached local encryption, HTTPS
//! requests and file encryption against raw AES-GCM, in one run.

use std::time::Duration;

use clap::Args;
use seccs_kms::bench::{self, KmsBenchParams};

/// Arguments of `seccs bench kms`.
#[derive(Debug, Args)]
pub struct KmsBenchArgs {
    /// Print the figures as JSON (`keygen_per_s`, `encrypt_per_s`,
    /// `https_req_per_s`, `https_req_per_s_audit_each`,
    /// `audit_each_ratio`, `file_ratio`, …).
    #[arg(long)]
    json: bool,
    /// Seconds spent on each timed measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// MiB encrypted for the file measurement.
    #[arg(long, default_value_t = 128)]
    file_mib: usize,
}

/// Runs `seccs bench kms`.
pub fn run(args: KmsBenchArgs) -> anyhow::Result<()> {
    let params = KmsBenchParams {
        duration: Duration::from_secs_f64(args.seconds.max(0.1)),
        file_bytes: args.file_mib.max(1) << 20,
    };
    let r = bench::run(params)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r)?)?;
    } else {
        outln!(
            "keygen (durable, group commit)  {:>12.0} keys/s",
            r.keygen_per_s
        )?;
        outln!(
            "local encrypt, 64 B, cached     {:>12.0} msg/s",
            r.encrypt_per_s
        )?;
        outln!(
            "POST /key over HTTPS, 16 conns  {:>12.0} req/s",
            r.https_req_per_s
        )?;
        outln!(
            "  the same, --audit-sync each   {:>12.0} req/s  ({:.2}x)",
            r.https_req_per_s_audit_each,
            r.audit_each_ratio
        )?;
        outln!(
            "file encryption                 {:>12.0} MiB/s  ({:.2}x raw AES-256-GCM at {:.0} MiB/s)",
            r.file_mib_per_s,
            r.file_ratio,
            r.raw_aes_gcm_mib_per_s
        )?;
    }
    Ok(())
}
