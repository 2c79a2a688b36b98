//! `seccs bench share`: save and load throughput past the KDF, and the bytes
//! the network stores, with 5 servers and threshold 3.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use seccs_net::broker::{self, Broker, MemoryBroker};
use seccs_net::{Client, ClientOptions, Kdf, Password, server};

/// Arguments of `seccs bench share`.
#[derive(Debug, Args)]
pub struct ShareBenchArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Broker URL (default: an in-process broker), e.g. redis://127.0.0.1:6379.
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// File sizes in MiB, each from 1 to 1024, separated by commas.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64", value_name = "MIB",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    sizes_mib: Vec<u16>,
    /// Timed saves and loads of each size, from 1 to 20; the median counts.
    /// One untimed save and load of 1 MiB runs first, as a warm-up.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=20))]
    rounds: u8,
}

struct Row {
    size_mib: usize,
    save_s: f64,
    load_s: f64,
    stored: u64,
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

async fn bench(args: &ShareBenchArgs) -> anyhow::Result<Vec<Row>> {
    let broker: Arc<dyn Broker> = match &args.broker {
        Some(url) => broker::connect(url).await?,
        None => Arc::new(MemoryBroker::new()),
    };
    let roots = tempfile::tempdir()?;
    let timeout = Duration::from_secs(120);
    let mut servers = Vec::new();
    for i in 0..5 {
        servers.push(
            server::start(
                broker.clone(),
                &roots.path().join(i.to_string()),
                None,
                timeout,
            )
            .await?,
        );
    }
    // The KDF is excluded: its cost is a parameter, not throughput.
    let options = ClientOptions {
        timeout,
        kdf: Kdf::INSECURE_FAST,
        threshold: Some(3),
        min_acks: None,
    };
    let client = Client::new(broker, options).await?;
    let pw = Password::new("bench");
    let warm_up = pattern(1 << 20);
    client.save("bench/warm-up", &warm_up, &pw).await?;
    anyhow::ensure!(client.load("bench/warm-up", None, &pw).await?.data == warm_up);
    client.remove("bench/warm-up", None).await?;
    let mut rows = Vec::new();
    for &mib in &args.sizes_mib {
        let mib = usize::from(mib);
        let data = pattern(mib << 20);
        let tag = format!("bench/{mib}");
        let (mut saves, mut loads, mut stored) = (Vec::new(), Vec::new(), 0);
        for _ in 0..args.rounds {
            let t0 = Instant::now();
            let saved = client.save(&tag, &data, &pw).await?;
            saves.push(t0.elapsed().as_secs_f64());
            let t1 = Instant::now();
            let loaded = client.load(&tag, None, &pw).await?;
            loads.push(t1.elapsed().as_secs_f64());
            anyhow::ensure!(loaded.data == data, "loaded data differs");
            stored = saved.record_bytes * saved.stored_on as u64;
            client.remove(&tag, None).await?;
        }
        rows.push(Row {
            size_mib: mib,
            save_s: median(saves),
            load_s: median(loads),
            stored,
        });
    }
    for s in servers {
        s.shutdown().await?;
    }
    Ok(rows)
}

/// Runs `seccs bench share`.
pub fn run(args: ShareBenchArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = rt.block_on(bench(&args))?;
    let total_mib: f64 = rows.iter().map(|r| r.size_mib as f64).sum();
    let save_mib_s = total_mib / rows.iter().map(|r| r.save_s).sum::<f64>().max(1e-9);
    let load_mib_s = total_mib / rows.iter().map(|r| r.load_s).sum::<f64>().max(1e-9);
    let stored_ratio =
        rows.iter().map(|r| r.stored as f64).sum::<f64>() / (total_mib * 1048576.0).max(1.0);
    if args.json {
        let sizes: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "size_mib": r.size_mib,
                    "save_mib_s": r.size_mib as f64 / r.save_s,
                    "load_mib_s": r.size_mib as f64 / r.load_s,
                    "stored_ratio": r.stored as f64 / (r.size_mib as f64 * 1048576.0),
                })
            })
            .collect();
        let out = serde_json::json!({
            "servers": 5,
            "threshold": 3,
            "broker": args.broker.as_deref().unwrap_or("memory"),
            "save_mib_s": save_mib_s,
            "load_mib_s": load_mib_s,
            "stored_ratio": stored_ratio,
            "seed_stored_ratio": 5.0,
            "sizes": sizes,
        });
        outln!("{out}")?;
    } else {
        outln!(
            "share network, 5 servers, t = 3, broker {}",
            args.broker.as_deref().unwrap_or("memory")
        )?;
        outln!(
            "{:>8} {:>12} {:>12} {:>13}",
            "MiB",
            "save MiB/s",
            "load MiB/s",
            "stored ratio"
        )?;
        for r in &rows {
            outln!(
                "{:>8} {:>12.1} {:>12.1} {:>13.3}",
                r.size_mib,
                r.size_mib as f64 / r.save_s,
                r.size_mib as f64 / r.load_s,
                r.stored as f64 / (r.size_mib as f64 * 1048576.0)
            )?;
        }
        outln!(
            "{:>8} {:>12.1} {:>12.1} {:>13.3}  (seed: 5.000)",
            "all",
            save_mib_s,
            load_mib_s,
            stored_ratio
        )?;
    }
    Ok(())
}
