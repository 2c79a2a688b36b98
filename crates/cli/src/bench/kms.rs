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
    pub(crate) json: bool,
    /// Seconds spent on each timed measurement, from 0.1 to 3600
    /// (decimals such as 0.5 are taken).
    #[arg(long, default_value = "2", value_name = "SECONDS", value_parser = parse_seconds)]
    seconds: Duration,
    /// MiB encrypted for the file measurement, from 1 to 16384.
    #[arg(long, default_value_t = 128, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(1..=16384))]
    file_mib: u32,
}

/// The bounds of `--seconds`: below the lower one a measurement is mostly
/// noise; the upper one keeps a mistyped figure from running for days.
const SECONDS_RANGE: std::ops::RangeInclusive<f64> = 0.1..=3600.0;

/// `--seconds`: a finite number of seconds within [`SECONDS_RANGE`],
/// refused here rather than turned into a duration that cannot exist
/// (`inf`, `1e20` or NaN would panic in `Duration::from_secs_f64`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !SECONDS_RANGE.contains(&secs) {
        return Err(format!(
            "{text} seconds is out of range: give from {} to {}",
            SECONDS_RANGE.start(),
            SECONDS_RANGE.end()
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs `seccs bench kms`.
pub fn run(args: KmsBenchArgs) -> anyhow::Result<()> {
    let params = KmsBenchParams {
        duration: args.seconds,
        file_bytes: (args.file_mib as usize) << 20,
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
