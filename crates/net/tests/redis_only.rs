//! Tests that need a real broker process: a 64 MiB file through Redis, a
//! Redis restart, and the blocking key-file functions.

mod common;

use std::time::Duration;

use common::{Kind, Net, TestResult, data};
use seccs_net::server;
use seccs_net::{Client, ClientOptions, Config, Error, Kdf, Password};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_file_travels_in_bounded_frames_and_each_server_stores_a_third() -> TestResult {
    let net = Net::new(Kind::Redis, 5).await?;
    let client = net.client(Some(3)).await?;
    let size = 64 << 20;
    let file = data(size, 64);
    let saved = client.save("big", &file, &Password::new("p")).await?;
    assert_eq!(saved.stored_on, 5);
    assert!((saved.record_bytes as f64) <= 1.1 * size as f64 / 3.0 + 4096.0);
    let status = client.server_status().await?;
    for s in &status {
        assert!((s.info.stored_bytes as f64) <= 1.1 * size as f64 / 3.0 + 4096.0);
    }
    let loaded = client.load("big", None, &Password::new("p")).await?;
    assert!(loaded.data == file);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_reconnect_after_a_redis_restart() -> TestResult {
    let mut net = Net::new(Kind::Redis, 5).await?;
    let client = net.client(Some(3)).await?;
    client
        .save("before", b"old data", &Password::new("p"))
        .await?;
    let port = net.proc.as_ref().map(|p| p.port).ok_or("no redis")?;
    drop(net.proc.take()); // kill redis-server
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.proc = Some(common::redis(Some(port))?);
    net.wait_servers(&client, 5).await?;
    // The client's own subscription comes back too: wait until it answers.
    let mut loaded = None;
    for _ in 0..50 {
        match client.load("before", None, &Password::new("p")).await {
            Ok(r) => {
                loaded = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert_eq!(loaded.ok_or("no load after restart")?.data, b"old data");
    client
        .save("after", b"new data", &Password::new("p"))
        .await?;
    assert_eq!(
        client.load("after", None, &Password::new("p")).await?.data,
        b"new data"
    );
    Ok(())
}

/// A client whose broker has gone waits for it no longer than its timeout
/// at each step: the listing of servers online, then each step of a save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_gone_a_client_fails_within_its_timeouts() -> TestResult {
    let mut net = Net::new(Kind::Redis, 3).await?;
    let timeout = Duration::from_secs(2);
    let client = net.client_waiting(timeout, Some(2)).await?;
    assert_eq!(client.servers().await?.len(), 3);
    drop(net.proc.take()); // kill redis-server
    // One timeout for the listing, with room for a busy machine; the
    // broker's own reconnection took about a minute.
    let listed = tokio::time::timeout(3 * timeout, client.servers())
        .await
        .map_err(|_| "listing the servers with the broker gone outlasted three timeouts")?;
    let e = listed
        .err()
        .ok_or("servers were listed with the broker gone")?;
    assert!(e.to_string().contains("broker"), "{e}");
    let saved = tokio::time::timeout(3 * timeout, client.save("t", b"data", &Password::new("p")))
        .await
        .map_err(|_| "a save with the broker gone outlasted three timeouts")?;
    let e = saved.err().ok_or("a save succeeded with the broker gone")?;
    assert!(e.to_string().contains("broker"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_without_enough_acks_fails_and_is_rolled_back() -> TestResult {
    let net = Net::new(Kind::Memory, 2).await?;
    // Three silent hosts that look like servers but never answer.
    let mut silent = Vec::new();
    for i in 0..3 {
        silent.push(
            net.broker
                .subscribe(&format!("seccs:server:silent{i}"))
                .await?,
        );
    }
    let client = net.client_waiting(Duration::from_secs(3), Some(3)).await?;
    match client.save("t", b"data", &Password::new("p")).await {
        Err(
            e @ Error::SaveIncomplete {
                acked: 2,
                needed: 3,
                servers: 5,
                ..
            },
        ) => {
            // Each server that did not store says why, in the error itself.
            let text = e.to_string();
            for i in 0..3 {
                assert!(
                    text.contains(&format!("seccs:server:silent{i}: timed out")),
                    "{text}"
                );
            }
        }
        other => return Err(format!("expected SaveIncomplete, got {other:?}").into()),
    }
    drop(silent);
    assert!(
        client.list("").await?.is_empty(),
        "the partial save was rolled back"
    );
    Ok(())
}

/// A failed save says "rolled back" only where its rollback arrived: a
/// server that stored the record and did not confirm its removal keeps it,
/// and the error names that server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_names_the_servers_its_rollback_did_not_reach() -> TestResult {
    use seccs_net::message::Body;
    let net = Net::new(Kind::Memory, 1).await?;
    // Stores every record, and refuses to remove it again.
    let (keeper, _task) =
        common::posing_server(net.broker.clone(), &"ee".repeat(16), 8, |body| match body {
            Body::Versions { .. } => Body::VersionsHeld {
                highest: 0,
                saves: Vec::new(),
            },
            Body::Store { .. } => Body::Stored,
            _ => Body::Refused {
                reason: "not now".into(),
            },
        })
        .await?;
    let _silent = net.broker.subscribe("seccs:server:silent").await?;
    let client = net.client_waiting(Duration::from_secs(3), Some(3)).await?;
    match client.save("t", b"data", &Password::new("p")).await {
        Err(e @ Error::SaveIncomplete { acked: 2, .. }) => {
            let text = e.to_string();
            assert!(!text.contains("the save was rolled back"), "{text}");
            assert!(text.contains("rollback did not reach"), "{text}");
            assert!(text.contains(&keeper), "{text}");
            assert!(
                !text.contains(&format!("reach {}", net.channel(0))),
                "{text}"
            );
        }
        other => return Err(format!("expected SaveIncomplete, got {other:?}").into()),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_server_restart_with_the_same_channel() -> TestResult {
    let mut net = Net::new(Kind::Memory, 3).await?;
    let client = net.client(Some(2)).await?;
    client
        .save("keep", b"persisted", &Password::new("p"))
        .await?;
    let before = net.channel(1);
    if let Some(h) = net.servers[1].take() {
        h.shutdown().await?;
    }
    let h = server::start(net.broker.clone(), &net.root(1), None, common::TIMEOUT).await?;
    assert_eq!(h.channel(), before);
    net.servers[1] = Some(h);
    net.kill(0);
    net.wait_servers(&client, 2).await?;
    assert_eq!(
        client.load("keep", None, &Password::new("p")).await?.data,
        b"persisted"
    );
    Ok(())
}

#[test]
fn store_keys_round_trip_through_the_blocking_key_file_functions() -> TestResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let net = rt.block_on(Net::new(Kind::Redis, 3))?;
    let mut config = Config::new(net.url.clone());
    // The cheapest KDF a store key may be saved with.
    config.kdf = Kdf::KEY_FLOOR;
    config.timeout_secs = 10;
    let key = seccs_core::SecretKey::generate()?;
    let pw = Password::new("store password");
    let report = seccs_net::keyfile::save_key(&config, "stores/main", &key, &pw)?;
    assert_eq!((report.stored_on, report.threshold), (3, 2));
    assert_eq!(
        seccs_net::keyfile::load_key(&config, "stores/main", &pw)?,
        key
    );
    assert!(matches!(
        seccs_net::keyfile::load_key(&config, "stores/main", &Password::new("wrong")),
        Err(Error::DecryptVersion { version: 1, .. })
    ));
    drop(net);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_reported_with_its_url_and_the_reason() -> TestResult {
    // A free loopback port with nothing listening: the connection is refused.
    let url = format!("redis://127.0.0.1:{}", common::free_port()?);
    match seccs_net::broker::RedisBroker::connect(&url).await {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("cannot connect to the broker at {url}")),
                "{text}"
            );
            assert!(text.to_lowercase().contains("refused"), "{text}");
        }
        Ok(_) => return Err(format!("connected to {url}, where nothing listens").into()),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_acks_above_the_servers_online_fails_the_save() -> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let client = Client::new(
        net.broker.clone(),
        ClientOptions {
            timeout: common::TIMEOUT,
            kdf: Kdf::INSECURE_FAST,
            threshold: None,
            min_acks: Some(4),
        },
    )
    .await?;
    match client.save("t", b"data", &Password::new("p")).await {
        Err(
            e @ Error::NotEnoughServers {
                needed: 4,
                servers: 3,
            },
        ) => assert!(e.to_string().contains("min_acks"), "{e}"),
        other => return Err(format!("expected NotEnoughServers, got {other:?}").into()),
    }
    assert!(client.list("").await?.is_empty(), "nothing was stored");
    Ok(())
}

/// A loopback TCP relay to a Redis server that holds back every byte the
/// server sends for `delay` (as a slow link would), and counts the
/// `PUBLISH` commands the client sends through it.
struct SlowRelay {
    port: u16,
    publishes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowRelay {
    async fn start(upstream: u16, delay: Duration) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let publishes = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = publishes.clone();
        let task = tokio::spawn(async move {
            // Bounded: a test opens a handful of connections.
            for _ in 0..64 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    // What the client sent last, so that a command name cut
                    // between two reads is still counted once.
                    let mut tail: Vec<u8> = Vec::new();
                    while let Ok(n) = client_rx.read(&mut buf).await {
                        if n == 0 || server_tx.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let mut seen = std::mem::take(&mut tail);
                        seen.extend_from_slice(&buf[..n]);
                        let word = b"PUBLISH\r\n";
                        counted.fetch_add(
                            seen.windows(word.len()).filter(|w| w == word).count(),
                            Ordering::SeqCst,
                        );
                        tail = seen[seen.len().saturating_sub(word.len() - 1)..].to_vec();
                    }
                });
                tokio::spawn(async move {
                    let (tx, mut rx) =
                        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                    tokio::spawn(async move {
                        while let Some((due, bytes)) = rx.recv().await {
                            tokio::time::sleep_until(due).await;
                            if client_tx.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = server_rx.read(&mut buf).await {
                        let due = tokio::time::Instant::now() + delay;
                        if n == 0 || tx.send((due, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self {
            port,
            publishes,
            task,
        })
    }

    fn publishes(&self) -> usize {
        self.publishes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SlowRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A publish whose answer is slow to come (a slow link, a busy broker) is
/// waited for, not sent again: every payload reaches a subscriber once.
/// (The client's default answer timeout of 500 ms, with a resend after it,
/// once delivered such payloads two or three times.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_answered_slowly_is_delivered_once() -> TestResult {
    use seccs_net::Broker;
    use seccs_net::broker::RedisBroker;
    let redis = common::redis(None)?;
    let direct = RedisBroker::connect(&format!("redis://127.0.0.1:{}", redis.port)).await?;
    let mut subscription = direct.subscribe("seccs:test:slow").await?;
    let relay = SlowRelay::start(redis.port, Duration::from_millis(1200)).await?;
    let slow = RedisBroker::connect(&format!("redis://127.0.0.1:{}", relay.port)).await?;
    let sent = relay.publishes();
    for i in 0..3u8 {
        slow.publish("seccs:test:slow", vec![i; 100]).await?;
    }
    assert_eq!(relay.publishes() - sent, 3, "each payload was sent once");
    let mut got = Vec::new();
    // Anything sent twice would arrive before the last reply was relayed.
    while let Ok(Some(payload)) =
        tokio::time::timeout(Duration::from_secs(2), subscription.recv()).await
    {
        got.push(payload);
        if got.len() > 6 {
            break;
        }
    }
    assert_eq!(got, vec![vec![0u8; 100], vec![1u8; 100], vec![2u8; 100]]);
    Ok(())
}
