//! The share network end to end: 5 servers and clients as tasks, on an
//! in-process broker and on real `redis-server` and `nats-server` processes.

mod common;

use std::time::Duration;

use common::{Kind, Net, TestResult, data};
use seccs_net::packet::{DataFrame, Frame, MessageId};
use seccs_net::record::Record;
use seccs_net::store::RecordStore;
use seccs_net::{Error, Kdf, Password};

fn pw() -> Password {
    Password::new("correct horse battery staple")
}

async fn save_and_load_sizes_from_0_bytes_to_1_mib(kind: Kind) -> TestResult {
    let net = Net::new(kind, 5).await?;
    let client = net.client(Some(3)).await?;
    for (i, size) in [0usize, 1, 1000, 300_001, 1 << 20].into_iter().enumerate() {
        let tag = format!("size/{size}");
        let file = data(size, i as u64);
        let saved = client.save(&tag, &file, &pw()).await?;
        assert_eq!(
            (
                saved.servers,
                saved.stored_on,
                saved.threshold,
                saved.version
            ),
            (5, 5, 3, 1)
        );
        // Each server stores about size/t, not the whole file (seed flaw).
        assert!(
            (saved.record_bytes as f64) <= 1.1 * size as f64 / 3.0 + 4096.0,
            "{} bytes per server for {size}",
            saved.record_bytes
        );
        let loaded = client.load(&tag, None, &pw()).await?;
        assert_eq!(loaded.data, file, "size {size}");
        assert!(loaded.bad_servers.is_empty());
    }
    let status = client.server_status().await?;
    assert_eq!(status.len(), 5);
    let total: u64 = status.iter().map(|s| s.info.stored_bytes).sum();
    assert!(
        status
            .iter()
            .all(|s| s.info.records == 5 && s.info.free_bytes > 0)
    );
    let sizes: usize = 1 + 1000 + 300_001 + (1 << 20);
    assert!(
        (total as f64) < 1.8 * sizes as f64 + 5.0 * 5.0 * 4096.0,
        "total {total}"
    );
    Ok(())
}

async fn any_t_of_n_servers_suffice_after_killing_n_minus_t(kind: Kind) -> TestResult {
    let mut net = Net::new(kind, 5).await?;
    let client = net.client(None).await?;
    let file = data(200_000, 7);
    let saved = client.save("doc", &file, &pw()).await?;
    assert_eq!(saved.threshold, 3, "default threshold is n/2 + 1");
    net.kill(0);
    net.kill(3);
    net.wait_servers(&client, 3).await?;
    let loaded = client.load("doc", None, &pw()).await?;
    assert_eq!(loaded.data, file);
    let mut used = loaded.used_servers.clone();
    used.sort();
    let mut expected = vec![net.channel(1), net.channel(2), net.channel(4)];
    expected.sort();
    assert_eq!(used, expected);
    Ok(())
}

async fn corrupt_fragment_and_share_are_detected_and_the_server_named(kind: Kind) -> TestResult {
    let net = Net::new(kind, 5).await?;
    let client = net.client(Some(3)).await?;
    let file = data(100_000, 9);
    client.save("victim", &file, &pw()).await?;
    // Server 2's disk is altered: one fragment byte and one key-share byte.
    let path = RecordStore::open(&net.root(2))?.record_path("victim", 1);
    let (mut rec, _) = Record::decode(&std::fs::read(&path)?)?;
    rec.fragment[10] ^= 0x55;
    rec.share[7] ^= 0x01;
    std::fs::write(&path, rec.encode())?;
    let loaded = client.load("victim", Some(1), &pw()).await?;
    assert_eq!(loaded.data, file);
    assert!(!loaded.used_servers.contains(&net.channel(2)));
    // A load that asked server 2 first left its record out; one that did
    // not never saw it. A check reads every server's record and names it.
    if loaded.asked_servers.contains(&net.channel(2)) {
        assert_eq!(loaded.bad_servers, vec![net.channel(2)]);
    } else {
        assert!(loaded.bad_servers.is_empty());
    }
    let checked = client.check("victim", None, &pw()).await?;
    assert_eq!(checked.version, 1);
    assert_eq!(
        checked
            .bad
            .iter()
            .map(|(s, _)| s.clone())
            .collect::<Vec<_>>(),
        vec![net.channel(2)]
    );
    assert_eq!(checked.authentic.len(), 4);
    assert!(!checked.is_whole());
    Ok(())
}

async fn fewer_than_t_servers_fail_clearly_and_learn_nothing(kind: Kind) -> TestResult {
    let mut net = Net::new(kind, 5).await?;
    let client = net.client(Some(3)).await?;
    let file = data(50_000, 11);
    client.save("secret", &file, &pw()).await?;
    for i in [0, 1, 2] {
        net.kill(i);
    }
    net.wait_servers(&client, 2).await?;
    match client.load("secret", Some(1), &pw()).await {
        Err(
            e @ Error::NotEnoughShares {
                good: 2, needed: 3, ..
            },
        ) => {
            // The save's threshold, and how many servers answered.
            let text = e.to_string();
            assert!(
                text.contains("only 2 valid shares of secret@1, 3 needed")
                    && text.contains("2 of the 2 servers asked sent a record"),
                "{text}"
            );
        }
        other => return Err(format!("expected NotEnoughShares, got {other:?}").into()),
    }
    // What the two remaining servers hold contains no piece of the plaintext.
    for i in [3, 4] {
        let rec = std::fs::read(RecordStore::open(&net.root(i))?.record_path("secret", 1))?;
        assert!(
            !rec.windows(32)
                .any(|w| file.windows(32).take(2000).any(|f| f == w))
        );
    }
    Ok(())
}

async fn odd_tags_with_slash_plus_unicode_and_4_kib_length(kind: Kind) -> TestResult {
    let net = Net::new(kind, 5).await?;
    let client = net.client(Some(3)).await?;
    let long = "ü/".repeat(1024) + "+end"; // > 4 KiB of UTF-8
    let tags = [
        "a/b/c",
        "x+y=z",
        "???",
        "../../etc/passwd",
        "日本語 タグ 🎉",
        long.as_str(),
    ];
    for (i, tag) in tags.iter().enumerate() {
        let file = data(1000 + i, i as u64);
        client.save(tag, &file, &pw()).await?;
        assert_eq!(client.load(tag, None, &pw()).await?.data, file);
    }
    let listed = client.list("").await?;
    assert_eq!(listed.len(), tags.len());
    assert!(
        listed
            .iter()
            .all(|l| l.versions.len() == 1 && l.versions[0].servers == 5)
    );
    assert!(listed.iter().any(|l| l.tag == long));
    Ok(())
}

async fn malformed_and_truncated_packets_leave_the_server_serving(kind: Kind) -> TestResult {
    let net = Net::new(kind, 3).await?;
    let client = net.client(Some(2)).await?;
    let target = net.channel(0);
    let good = Frame::Data(DataFrame {
        message_id: MessageId([1; 16]),
        sender: "seccs:client:attacker".into(),
        index: 0,
        count: 1,
        payload: b"SCNM\x01\x03".to_vec(),
    })
    .encode();
    let mut packets: Vec<Vec<u8>> = vec![
        vec![],
        b"garbage".to_vec(),
        vec![0xff; 1000],
        b"SCNF\x09".to_vec(),
        good.clone(),
    ];
    for cut in [1, 5, 10, 30, good.len() - 1] {
        packets.push(good[..cut].to_vec());
    }
    let mut oversized = good.clone();
    let n = oversized.len();
    oversized[n - 10..n - 6].copy_from_slice(&u32::MAX.to_be_bytes());
    packets.push(oversized);
    // First frame of a two-frame message that never completes.
    packets.push(
        Frame::Data(DataFrame {
            message_id: MessageId([2; 16]),
            sender: "seccs:client:attacker".into(),
            index: 0,
            count: 2,
            payload: vec![0; seccs_net::packet::MAX_FRAME_PAYLOAD],
        })
        .encode(),
    );
    // The last frame of a claimed 1 GiB message, from four message ids: 60
    // bytes each must not make the server reserve gigabytes.
    for id in 3..7 {
        packets.push(
            Frame::Data(DataFrame {
                message_id: MessageId([id; 16]),
                sender: "seccs:client:attacker".into(),
                index: seccs_net::packet::MAX_FRAMES - 1,
                count: seccs_net::packet::MAX_FRAMES,
                payload: vec![0; 60],
            })
            .encode(),
        );
    }
    for p in packets {
        net.broker.publish(&target, p).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let file = data(70_000, 3);
    let saved = client.save("after-junk", &file, &pw()).await?;
    assert_eq!(saved.stored_on, 3);
    assert_eq!(client.load("after-junk", None, &pw()).await?.data, file);
    Ok(())
}

async fn three_clients_at_once(kind: Kind) -> TestResult {
    let net = Net::new(kind, 5).await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(net.client(Some(3)).await?);
    }
    let jobs = clients.iter().enumerate().map(|(i, c)| async move {
        let file = data(400_000 + i, 100 + i as u64);
        let tag = format!("client{i}");
        c.save(&tag, &file, &pw()).await?;
        let back = c.load(&tag, None, &pw()).await?;
        Ok::<bool, Error>(back.data == file)
    });
    for r in futures::future::join_all(jobs).await {
        assert!(r?);
    }
    Ok(())
}

async fn saving_again_keeps_the_previous_version_and_rm_removes(kind: Kind) -> TestResult {
    let net = Net::new(kind, 3).await?;
    let client = net.client(Some(2)).await?;
    client.save("v", b"one", &pw()).await?;
    let second = client.save("v", b"two", &pw()).await?;
    assert_eq!(second.version, 2);
    assert_eq!(client.load("v", None, &pw()).await?.data, b"two");
    assert_eq!(client.load("v", Some(1), &pw()).await?.data, b"one");
    assert_eq!(client.remove("v", Some(2)).await?, 3);
    assert_eq!(client.load("v", None, &pw()).await?.data, b"one");
    assert_eq!(client.remove("v", None).await?, 3);
    assert!(matches!(
        client.load("v", None, &pw()).await,
        Err(Error::NotFound(_))
    ));
    assert!(client.list("").await?.is_empty());
    Ok(())
}

async fn concurrent_saves_of_one_tag_each_keep_their_own_version(kind: Kind) -> TestResult {
    // Threshold 2 of 5: before, two racing saves could both be acknowledged
    // by 2 servers at one version and both report success.
    let net = Net::new(kind, 5).await?;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(net.client(Some(2)).await?);
    }
    for round in 0..3u64 {
        let jobs = clients.iter().enumerate().map(|(i, c)| async move {
            let file = data(20_000 + i, 1000 * round + i as u64);
            (file.clone(), c.save("race", &file, &pw()).await)
        });
        let mut saved = Vec::new();
        for (file, result) in futures::future::join_all(jobs).await {
            match result {
                Ok(report) => saved.push((report.version, file)),
                Err(Error::SaveConflict { .. } | Error::SaveIncomplete { .. }) => {}
                Err(e) => return Err(format!("unexpected save error: {e}").into()),
            }
        }
        assert!(!saved.is_empty(), "no save of round {round} succeeded");
        let mut versions: Vec<u64> = saved.iter().map(|(v, _)| *v).collect();
        versions.sort_unstable();
        versions.dedup();
        assert_eq!(
            versions.len(),
            saved.len(),
            "two saves reported one version"
        );
        for (version, file) in saved {
            let loaded = clients[0].load("race", Some(version), &pw()).await?;
            assert!(loaded.data == file, "race@{version} is not what was saved");
        }
    }
    Ok(())
}

/// A record of `tag` at `version` under another password, as another user's
/// save (or a partial one) leaves it on one server.
fn foreign_record(tag: &str, version: u64) -> Result<Vec<u8>, Error> {
    let recs = seccs_net::sharing::split(
        tag,
        version,
        b"someone else's",
        &Password::new("another password"),
        &Kdf::INSECURE_FAST,
        3,
        2,
    )?;
    recs.into_iter()
        .next()
        .ok_or_else(|| Error::Config("no record".into()))
}

async fn a_stray_record_above_the_newest_version_neither_hides_nor_blocks_it(
    kind: Kind,
) -> TestResult {
    let net = Net::new(kind, 3).await?;
    let client = net.client(Some(2)).await?;
    client.save("doc", b"mine", &pw()).await?;
    let store = RecordStore::open(&net.root(0))?;
    store.put("doc", 2, &foreign_record("doc", 2)?)?;
    // `load doc` takes the newest version enough servers hold.
    let loaded = client.load("doc", None, &pw()).await?;
    assert_eq!((loaded.version, &loaded.data[..]), (1, &b"mine"[..]));
    // Asked for explicitly, version 2 fails naming it, its save's threshold
    // and how many servers answered; one record is no save, so its KDF is
    // not run.
    match client.load("doc", Some(2), &pw()).await {
        Err(e @ Error::NotEnoughShares { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("only 1 valid share of doc@2, 2 needed")
                    && text.contains("1 of the 3 servers asked"),
                "{text}"
            );
        }
        other => return Err(format!("expected NotEnoughShares, got {other:?}").into()),
    }
    // A record at the largest number (left by an earlier build, which
    // stored any version) does not count: the next save follows the
    // versions below it, and the stray at 2 (one server held it, so the
    // version is not given out again).
    store.put("doc", u64::MAX, &foreign_record("doc", u64::MAX)?)?;
    let saved = client.save("doc", b"again", &pw()).await?;
    assert_eq!(saved.version, 3);
    let loaded = client.load("doc", None, &pw()).await?;
    assert_eq!((loaded.version, &loaded.data[..]), (3, &b"again"[..]));
    Ok(())
}

async fn the_latest_version_loads_whatever_threshold_the_servers_online_gave_it(
    kind: Kind,
) -> TestResult {
    let mut net = Net::new(kind, 4).await?;
    let client = net.client(None).await?;
    let v1 = data(30_000, 21);
    assert_eq!(client.save("doc", &v1, &pw()).await?.threshold, 3);
    net.kill(2);
    net.kill(3);
    net.wait_servers(&client, 2).await?;
    let v2 = data(30_000, 22);
    let saved = client.save("doc", &v2, &pw()).await?;
    assert_eq!((saved.version, saved.stored_on, saved.threshold), (2, 2, 2));
    net.restart(2).await?;
    net.restart(3).await?;
    net.wait_servers(&client, 4).await?;
    // Version 2 is on 2 of the 4 servers, fewer than 4/2 + 1, yet it was
    // saved 2-of-2: it is the latest, not version 1.
    let loaded = client.load("doc", None, &pw()).await?;
    assert_eq!(loaded.version, 2);
    assert!(loaded.data == v2, "an older version was loaded");
    assert!(loaded.newer_failed.is_empty());
    // A newer version that fewer servers hold than its save needs (here a
    // stray record) is passed over and named, not tried.
    let store = RecordStore::open(&net.root(0))?;
    store.put("doc", 3, &foreign_record("doc", 3)?)?;
    let loaded = client.load("doc", None, &pw()).await?;
    assert_eq!(loaded.version, 2);
    assert!(loaded.newer_failed.is_empty(), "{:?}", loaded.newer_failed);
    assert_eq!(loaded.passed_over.len(), 1);
    assert_eq!(loaded.passed_over[0].0, 3);
    assert!(
        loaded.passed_over[0]
            .1
            .contains("1 server online holds a record of it, its save needs 2"),
        "{:?}",
        loaded.passed_over
    );
    // The key of a store kept on the network loads the same way: saved
    // 2-of-2, it loads with all 4 servers online. A key is saved once only.
    // The threshold is set by hand: under the default, a key that needs
    // every server online is refused.
    let mut client = client;
    client.options_mut().kdf = Kdf::KEY_FLOOR;
    client.options_mut().threshold = Some(2);
    let key = seccs_core::SecretKey::from_slice(&[7; seccs_core::KEY_LEN])?;
    net.kill(2);
    net.kill(3);
    net.wait_servers(&client, 2).await?;
    let saved = seccs_net::keyfile::save_key_with(&client, "key", &key, &pw()).await?;
    assert_eq!((saved.version, saved.threshold), (1, 2));
    net.restart(2).await?;
    net.restart(3).await?;
    net.wait_servers(&client, 4).await?;
    let loaded = seccs_net::keyfile::load_key_with(&client, "key", &pw()).await?;
    assert!(loaded.expose_secret() == key.expose_secret());
    Ok(())
}

/// A rogue server on `net`'s broker that answers every List with `dup`
/// copies of `tag@version` (and refuses anything else), for at most 64 requests.
async fn rogue_lister(
    net: &Net,
    tag: &str,
    version: u64,
    dup: usize,
) -> Result<tokio::task::JoinHandle<()>, Box<dyn std::error::Error + Send + Sync>> {
    use seccs_net::message::{Body, ListEntry, VersionEntry};
    let tag = tag.to_owned();
    let (_, task) =
        common::posing_server(
            net.broker.clone(),
            &"ab".repeat(16),
            64,
            move |body| match body {
                Body::List { .. } => Body::Listed {
                    entries: vec![
                        ListEntry {
                            tag: tag.clone(),
                            versions: vec![VersionEntry {
                                version,
                                stored_bytes: 100
                            }],
                        };
                        dup
                    ],
                },
                _ => Body::Refused {
                    reason: "no".into(),
                },
            },
        )
        .await?;
    Ok(task)
}

async fn a_server_listing_a_version_many_times_counts_once(kind: Kind) -> TestResult {
    let net = Net::new(kind, 3).await?;
    let client = net.client(Some(2)).await?;
    client.save("doc", b"mine", &pw()).await?;
    let rogue = rogue_lister(&net, "doc", 9, 5).await?;
    net.wait_servers(&client, 4).await?;
    let listed = client.list("doc").await?;
    let versions: Vec<(u64, usize)> = listed
        .iter()
        .flat_map(|l| l.versions.iter().map(|v| (v.version, v.servers)))
        .collect();
    rogue.abort();
    assert_eq!(versions, vec![(1, 3), (9, 1)]);
    Ok(())
}

/// Sends `count` fetches of version 1 of "big" to `channel`, each naming
/// `sender` (a client channel that never acknowledges) as the requester.
async fn forge_fetches(
    broker: &dyn seccs_net::broker::Broker,
    channel: &str,
    sender: &str,
    count: usize,
) -> TestResult {
    use seccs_net::message::{Body, Message, RequestId};
    for i in 0..count {
        let request = Message {
            request_id: RequestId([i as u8; 16]),
            body: Body::Fetch {
                tag: "big".into(),
                version: 1,
            },
        };
        let frame = Frame::Data(DataFrame {
            message_id: MessageId([i as u8; 16]),
            sender: sender.into(),
            index: 0,
            count: 1,
            payload: request.encode(),
        });
        broker.publish(channel, frame.encode()).await?;
    }
    Ok(())
}

/// One server on a broker of `kind`, whose acknowledgement timeout is
/// `ack_timeout`, holding "big": a file whose fetch replies take several
/// frames.
struct OneServerHoldingBig {
    broker: std::sync::Arc<dyn seccs_net::broker::Broker>,
    server: seccs_net::server::ServerHandle,
    file: Vec<u8>,
    _proc: Option<common::Proc>,
    _root: tempfile::TempDir,
}

async fn one_server_holding_big(
    kind: Kind,
    ack_timeout: Duration,
) -> Result<OneServerHoldingBig, Box<dyn std::error::Error + Send + Sync>> {
    let (broker, proc, _url) = common::broker_for(kind).await?;
    let root = tempfile::tempdir()?;
    let server = seccs_net::server::start(broker.clone(), root.path(), None, ack_timeout).await?;
    let client =
        seccs_net::Client::new(broker.clone(), common::fast_options(common::TIMEOUT)).await?;
    let file = data(700_000, 5);
    client.save("big", &file, &pw()).await?;
    Ok(OneServerHoldingBig {
        broker,
        server,
        file,
        _proc: proc,
        _root: root,
    })
}

async fn requests_from_a_channel_that_never_acknowledges_free_their_slots_after_one_timeout(
    kind: Kind,
) -> TestResult {
    let ack_timeout = Duration::from_secs(2);
    let held = one_server_holding_big(kind, ack_timeout).await?;
    let (broker, server) = (held.broker.clone(), &held.server);
    // One forged fetch per request slot, each answered to a channel that
    // is read but never acknowledges (one nobody reads ends its reply at
    // once).
    let _silent = broker.subscribe("seccs:client:silent").await?;
    forge_fetches(
        &*broker,
        server.channel(),
        "seccs:client:silent",
        seccs_net::server::MAX_CONCURRENT,
    )
    .await?;
    // A client that waits 3.5 ack timeouts is answered: the slots are free
    // after one (they were held for four). The margin is for a loaded
    // machine: the forged replies are sent before the slots free.
    let patient =
        seccs_net::Client::new(broker.clone(), common::fast_options(ack_timeout * 7 / 2)).await?;
    let listed = patient.list("big").await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].versions[0].servers, 1);
    held.server.shutdown().await?;
    Ok(())
}

/// A burst of forged fetches, ten per request slot, each of a record of
/// several frames and answered to a channel nobody reads: its effect ends
/// with the burst, and a load right after it succeeds within a bound of
/// two acknowledgement timeouts (each forged reply held a slot for one,
/// so the burst kept the server from answering for ten).
async fn a_burst_of_fetches_to_a_channel_nobody_reads_ends_with_the_burst(
    kind: Kind,
) -> TestResult {
    let ack_timeout = Duration::from_secs(2);
    let held = one_server_holding_big(kind, ack_timeout).await?;
    let (broker, server) = (held.broker.clone(), &held.server);
    forge_fetches(
        &*broker,
        server.channel(),
        "seccs:client:nobody",
        10 * seccs_net::server::MAX_CONCURRENT,
    )
    .await?;
    let bound = ack_timeout * 2;
    let after = seccs_net::Client::new(broker.clone(), common::fast_options(bound)).await?;
    let loaded = tokio::time::timeout(bound, after.load("big", None, &pw()))
        .await
        .map_err(|_| format!("no load within {bound:?} of the burst"))??;
    assert_eq!(loaded.data, held.file);
    held.server.shutdown().await?;
    Ok(())
}

/// Every request slot held by a reply nobody acknowledges, and one more
/// request waiting for a slot: shutdown still ends after its grace, instead
/// of when a slot frees (one acknowledgement timeout, here far longer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_while_every_request_slot_is_held() -> TestResult {
    let held = one_server_holding_big(Kind::Memory, Duration::from_secs(600)).await?;
    let (broker, server) = (held.broker.clone(), held.server);
    // Read, never acknowledged: each reply waits for its acknowledgements.
    let _silent = broker.subscribe("seccs:client:silent").await?;
    forge_fetches(
        &*broker,
        server.channel(),
        "seccs:client:silent",
        seccs_net::server::MAX_CONCURRENT + 1,
    )
    .await?;
    // Lets the server take the requests (the last one waits for a slot).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bound = seccs_net::server::SHUTDOWN_GRACE * 6;
    match tokio::time::timeout(bound, server.shutdown()).await {
        Ok(stopped) => stopped?,
        Err(_) => return Err(format!("shutdown still running after {bound:?}").into()),
    }
    Ok(())
}

/// A NATS broker that is gone: what waits for it fails instead of
/// waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_fails_requests_instead_of_hanging() -> TestResult {
    use seccs_net::broker::{Broker, NatsBroker};
    let proc = common::nats()?;
    let broker = NatsBroker::connect(&format!("nats://127.0.0.1:{}", proc.port))
        .await?
        .with_outage_limit(Duration::from_secs(2));
    let mut sub = broker.subscribe("seccs:test:outage").await?;
    drop(proc);
    let bound = Duration::from_secs(60);
    match tokio::time::timeout(bound, broker.channels("seccs:")).await {
        Ok(listed) => assert!(listed.is_err(), "{listed:?}"),
        Err(_) => return Err(format!("listing channels still waiting after {bound:?}").into()),
    }
    match tokio::time::timeout(bound, broker.subscribe("seccs:test:later")).await {
        Ok(sub) => assert!(sub.is_err(), "{sub:?}"),
        Err(_) => return Err(format!("subscribing still waiting after {bound:?}").into()),
    }
    // The subscription ends after the outage limit, as a server's does.
    match tokio::time::timeout(bound, async { while sub.recv().await.is_some() {} }).await {
        Ok(()) => Ok(()),
        Err(_) => Err(format!("subscription still open after {bound:?}").into()),
    }
}

async fn servers_with_no_server_online_and_missing_versions_fail_clearly(kind: Kind) -> TestResult {
    let empty = Net::new(kind, 0).await?;
    let lonely = empty.client(None).await?;
    assert!(matches!(
        lonely.server_status().await,
        Err(Error::NoServers)
    ));
    let net = Net::new(kind, 3).await?;
    let client = net.client(Some(2)).await?;
    client.save("a", b"x", &pw()).await?;
    match client.remove("a", Some(7)).await {
        Err(e @ Error::NotFound(_)) => assert!(e.to_string().contains("\"a@7\""), "{e}"),
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }
    // A tag that `TAG@N` would split is refused; `@` elsewhere is fine.
    match client.save("a@12", b"x", &pw()).await {
        Err(e @ Error::InvalidTag(_)) => assert!(e.to_string().contains("TAG@N"), "{e}"),
        other => return Err(format!("expected InvalidTag, got {other:?}").into()),
    }
    // So is one that would garble a listing.
    for tag in ["evil\nt9\t@7 on 4 servers", "red\u{1b}[31m"] {
        match client.save(tag, b"x", &pw()).await {
            Err(e @ Error::InvalidTag(_)) => {
                assert!(e.to_string().contains("control character"), "{e}")
            }
            other => return Err(format!("expected InvalidTag, got {other:?}").into()),
        }
    }
    client.save("mail@example.org", b"y", &pw()).await?;
    assert_eq!(
        client.load("mail@example.org", None, &pw()).await?.data,
        b"y"
    );
    Ok(())
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() -> TestResult { super::$name(Kind::Memory).await } )* }
        mod redis { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() -> TestResult { super::$name(Kind::Redis).await } )* }
        mod nats { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() -> TestResult { super::$name(Kind::Nats).await } )* }
    };
}

suite!(
    save_and_load_sizes_from_0_bytes_to_1_mib,
    any_t_of_n_servers_suffice_after_killing_n_minus_t,
    corrupt_fragment_and_share_are_detected_and_the_server_named,
    fewer_than_t_servers_fail_clearly_and_learn_nothing,
    odd_tags_with_slash_plus_unicode_and_4_kib_length,
    malformed_and_truncated_packets_leave_the_server_serving,
    three_clients_at_once,
    saving_again_keeps_the_previous_version_and_rm_removes,
    concurrent_saves_of_one_tag_each_keep_their_own_version,
    a_stray_record_above_the_newest_version_neither_hides_nor_blocks_it,
    servers_with_no_server_online_and_missing_versions_fail_clearly,
    the_latest_version_loads_whatever_threshold_the_servers_online_gave_it,
    a_server_listing_a_version_many_times_counts_once,
    requests_from_a_channel_that_never_acknowledges_free_their_slots_after_one_timeout,
    a_burst_of_fetches_to_a_channel_nobody_reads_ends_with_the_burst,
);
