//! What fewer than t servers, or any client of the broker, can do to a
//! tag's versions and to other clients' messages: a server that claims a
//! tag's highest version is near the largest neither spends the tag nor
//! blocks its saves, a save that reached too few servers keeps its version
//! to itself, and a flood of messages that never complete does not keep a
//! save of several frames out. A save that won its version against another
//! save of the tag at the same time ends with its record on the servers
//! that the other save reached first, once that one rolls back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Kind, Net, TestResult, data};
use seccs_net::broker::Broker;
use seccs_net::message::{Body, MAX_VERSION, conflict_reason};
use seccs_net::packet::{DataFrame, Frame, MAX_FRAME_PAYLOAD, MessageId};
use seccs_net::store::RecordStore;
use seccs_net::{Kdf, Password};

fn pw() -> Password {
    Password::new("correct horse battery staple")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_claiming_the_largest_versions_neither_spends_a_tag_nor_blocks_its_saves()
-> TestResult {
    let net = Net::new(Kind::Redis, 3).await?;
    let client = net.client(None).await?;
    let first = client.save("doc", b"first", &pw()).await?;
    assert_eq!(first.version, 1);
    let (liar, task) = common::lying_server(
        net.broker.clone(),
        &"5e".repeat(16),
        256,
        MAX_VERSION - 1,
        Vec::new(),
    )
    .await?;
    net.wait_servers(&client, 4).await?;
    // Four servers online: threshold 3, which the three honest ones meet.
    for (i, expected) in [(0u64, 2u64), (1, 3), (2, 4)] {
        let file = data(2_000, i);
        let saved = client.save("doc", &file, &pw()).await?;
        assert_eq!(
            (saved.version, saved.stored_on, saved.threshold),
            (expected, 3, 3)
        );
        let passed: Vec<&String> = saved
            .warnings
            .iter()
            .filter(|w| w.contains("passed over"))
            .collect();
        assert!(
            passed.len() == 1
                && passed[0].contains(&format!(
                    "{liar} reports doc up to version {}",
                    MAX_VERSION - 1
                ))
                && passed[0].contains("a faulty or forged server"),
            "{:?}",
            saved.warnings
        );
        let loaded = client.load("doc", None, &pw()).await?;
        assert_eq!((loaded.version, &loaded.data), (expected, &file));
    }
    // No honest server took a version near the largest.
    for i in 0..3 {
        assert_eq!(RecordStore::open(&net.root(i))?.highest("doc"), 4);
    }
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_reached_too_few_servers_keeps_its_version_to_itself() -> TestResult {
    let net = Net::new(Kind::Redis, 5).await?;
    let client = net.client(None).await?;
    assert_eq!(client.save("doc", b"one", &pw()).await?.version, 1);
    // A save of version 2 (3 of 5) that reached two servers and stopped.
    let records =
        seccs_net::sharing::split("doc", 2, b"half done", &pw(), &Kdf::INSECURE_FAST, 5, 3)?;
    for (i, record) in records.iter().enumerate().take(2) {
        RecordStore::open(&net.root(i))?.put("doc", 2, record)?;
    }
    // The next save does not share version 2 with it: every server stores
    // version 3, and nothing was passed over.
    let saved = client.save("doc", b"three", &pw()).await?;
    assert_eq!((saved.version, saved.stored_on), (3, 5));
    assert!(
        saved.warnings.iter().all(|w| !w.contains("passed over")),
        "{:?}",
        saved.warnings
    );
    for (i, record) in records.iter().enumerate().take(2) {
        let held = RecordStore::open(&net.root(i))?.get("doc", 2)?;
        assert!(held.as_ref() == Some(record), "server {i} lost its record");
    }
    let loaded = client.load("doc", None, &pw()).await?;
    assert_eq!((loaded.version, &loaded.data[..]), (3, &b"three"[..]));
    // Removed from the servers online, version 3 stays taken by them.
    client.remove("doc", Some(3)).await?;
    let saved = client.save("doc", b"four", &pw()).await?;
    assert_eq!((saved.version, saved.stored_on), (4, 5));
    let loaded = client.load("doc", Some(1), &pw()).await?;
    assert_eq!(loaded.data, b"one");
    Ok(())
}

/// Publishes, to each of `servers`, frames that each open a message of two
/// frames and never complete it, from 1,000 invented senders: at most
/// `limit` frames, until `stop` is set. Every 64th frame is as large as a
/// frame of an honest message. Returns how many were sent.
async fn flood(
    broker: Arc<dyn Broker>,
    servers: Vec<String>,
    stop: Arc<AtomicBool>,
    limit: u32,
) -> Result<u32, seccs_net::Error> {
    let full = vec![0u8; MAX_FRAME_PAYLOAD];
    let mut sent = 0;
    for i in 0..limit {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut message_id = [0xf1; 16];
        message_id[..4].copy_from_slice(&i.to_le_bytes());
        let large = i % 64 == 0;
        let frame = Frame::Data(DataFrame {
            message_id: MessageId(message_id),
            sender: format!("seccs:client:forged{}", i % 1000),
            index: if large { 0 } else { 1 },
            count: 2,
            payload: if large { full.clone() } else { b"x".to_vec() },
        })
        .encode();
        for server in &servers {
            broker
                .publish(server, frame.clone())
                .await
                .map_err(seccs_net::Error::Broker)?;
        }
        sent += 1;
        if i % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    Ok(sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_messages_that_never_complete_does_not_keep_a_large_save_out() -> TestResult {
    let net = Net::new(Kind::Redis, 3).await?;
    let client = net.client(None).await?;
    let servers = client.servers().await?;
    let stop = Arc::new(AtomicBool::new(false));
    // The flood fills every partial-message slot of every server first.
    let sent = flood(net.broker.clone(), servers.clone(), stop.clone(), 2_000).await?;
    assert_eq!(sent, 2_000);
    let running = tokio::spawn(flood(net.broker.clone(), servers, stop.clone(), 400_000));
    // Records of about 512 KiB: three frames to each server.
    let file = data(1 << 20, 7);
    let saved =
        tokio::time::timeout(Duration::from_secs(60), client.save("large", &file, &pw())).await;
    stop.store(true, Ordering::Relaxed);
    let flooded = tokio::time::timeout(Duration::from_secs(60), running).await???;
    let saved = saved??;
    assert_eq!((saved.version, saved.stored_on), (1, 3));
    assert!(flooded > 0, "the flood never ran alongside the save");
    let loaded = client.load("large", None, &pw()).await?;
    assert!(loaded.data == file, "the file loaded is not the one saved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_than_t_servers_saying_a_tag_was_used_do_not_refuse_a_store_key() -> TestResult {
    use seccs_core::{KEY_LEN, SecretKey};
    use seccs_net::Error;
    use seccs_net::keyfile::{load_key_with, save_key_with};
    use seccs_net::message::SaveEntry;
    let net = Net::new(Kind::Redis, 3).await?;
    let mut client = net.client(None).await?;
    client.options_mut().kdf = Kdf::KEY_FLOOR;
    // A broker client posing as a server that once held every tag, holds
    // an unreadable version 1 of it, and refuses every store as taken.
    let (liar, task) = common::lying_server(
        net.broker.clone(),
        &"7a".repeat(16),
        64,
        9,
        vec![SaveEntry::unreadable(1)],
    )
    .await?;
    net.wait_servers(&client, 4).await?;
    // Four servers online, threshold 3: the three honest ones keep the key.
    let key = SecretKey::from_slice(&[9; KEY_LEN])?;
    let saved = save_key_with(&client, "stores/new", &key, &pw()).await?;
    assert_eq!((saved.version, saved.stored_on, saved.threshold), (1, 3, 3));
    assert!(
        saved.warnings.iter().any(|w| w.contains(&format!(
            "{liar} reports stores/new as used (up to version 9), a claim fewer than 3 servers"
        )) && w.contains("passed over")),
        "{:?}",
        saved.warnings
    );
    assert!(load_key_with(&client, "stores/new", &pw()).await? == key);
    // What t servers say still counts: the tag is taken now.
    let other = SecretKey::from_slice(&[8; KEY_LEN])?;
    match save_key_with(&client, "stores/new", &other, &pw()).await {
        Err(Error::TagExists { versions, .. }) => assert_eq!(versions, [1]),
        other => return Err(format!("expected TagExists, got {other:?}").into()),
    }
    task.abort();
    Ok(())
}

/// A broker client posing as a share server that claims `claim` as the
/// highest version of the first tag it is asked about, and 0 after; it
/// refuses its first store as a version taken and acknowledges the next
/// (holding nothing).
async fn refusing_once(
    broker: Arc<dyn Broker>,
    id: &str,
    claim: u64,
) -> Result<(String, tokio::task::JoinHandle<()>), Box<dyn std::error::Error + Send + Sync>> {
    use std::sync::atomic::AtomicU32;
    let (probes, stores) = (AtomicU32::new(0), AtomicU32::new(0));
    common::posing_server(broker, id, 64, move |body| match body {
        Body::Versions { .. } => Body::VersionsHeld {
            highest: if probes.fetch_add(1, Ordering::SeqCst) == 0 {
                claim
            } else {
                0
            },
            saves: Vec::new(),
        },
        Body::Store { version, .. } if stores.fetch_add(1, Ordering::SeqCst) == 0 => {
            Body::Refused {
                reason: conflict_reason(version),
            }
        }
        Body::Store { .. } => Body::Stored,
        Body::Delete { .. } | Body::Rollback { .. } => Body::Deleted { removed: 0 },
        _ => Body::Refused {
            reason: "no".into(),
        },
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_retried_reports_only_what_held_for_its_last_attempt() -> TestResult {
    let net = Net::new(Kind::Memory, 2).await?;
    let client = net.client(None).await?;
    // Two servers posing as ones: the first claims the tag far up, once;
    // both refuse their first store as a version taken and store the next.
    let (far, far_task) = refusing_once(net.broker.clone(), &"6b".repeat(16), 5000).await?;
    let (_, near_task) = refusing_once(net.broker.clone(), &"6c".repeat(16), 0).await?;
    net.wait_servers(&client, 4).await?;
    // The first attempt passes over the far claim, takes version 1 and
    // loses it (two acknowledgements of three needed, two refusals); the
    // second meets no claim and keeps version 2.
    let saved = client.save("doc", b"retried", &pw()).await?;
    assert_eq!((saved.version, saved.stored_on), (2, 4));
    assert!(
        saved
            .warnings
            .iter()
            .all(|w| !w.contains(&far) && !w.contains("passed over")),
        "{:?}",
        saved.warnings
    );
    far_task.abort();
    near_task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_key_whose_first_attempt_fewer_than_t_refused_is_saved_on_its_retry() -> TestResult
{
    use seccs_core::{KEY_LEN, SecretKey};
    use seccs_net::keyfile::save_key_with;
    let net = Net::new(Kind::Memory, 2).await?;
    let mut client = net.client(None).await?;
    client.options_mut().kdf = Kdf::KEY_FLOOR;
    // Two servers posing as ones refuse their first store as a version
    // taken (as a save that ran at the same time and rolled back leaves
    // them, or as a liar does) and claim nothing: with four servers and a
    // threshold of 3, the first attempt is kept by two and loses.
    let (_, first_task) = refusing_once(net.broker.clone(), &"6d".repeat(16), 0).await?;
    let (_, second_task) = refusing_once(net.broker.clone(), &"6e".repeat(16), 0).await?;
    net.wait_servers(&client, 4).await?;
    // The retry asks again; nothing is held, so the key is saved, where it
    // was refused as an existing tag that no server listed.
    let key = SecretKey::from_slice(&[7; KEY_LEN])?;
    let saved = save_key_with(&client, "stores/raced", &key, &pw()).await?;
    assert_eq!((saved.version, saved.stored_on), (1, 4));
    // The posing servers keep nothing; the two real ones list version 1.
    let held: Vec<u64> = client
        .list("stores/raced")
        .await?
        .into_iter()
        .flat_map(|l| l.versions.into_iter().map(|v| v.version))
        .collect();
    assert_eq!(held, [1]);
    first_task.abort();
    second_task.abort();
    Ok(())
}

/// Two saves of one tag at once: the other save's store of version N
/// reached the third server just before this save's, which that server
/// refused ("version N exists"); the other save lost elsewhere and rolled
/// back there a moment later. This save, which won N with the other two
/// servers, ends with its record on all three: it stores it again where
/// the claim it was refused for is gone, and reports no server as missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_refused_for_a_claim_rolled_back_since_stores_its_record_there_after_all()
-> TestResult {
    let net = Net::new(Kind::Redis, 2).await?;
    // The third server: a real record store behind a broker client, so
    // that the other save's store lands on it just before this save's.
    let root = tempfile::tempdir()?;
    let store = RecordStore::open(root.path())?;
    let raced = Arc::new(AtomicBool::new(false));
    let (third, task) = {
        let (store, raced) = (store.clone(), raced.clone());
        common::posing_server_waiting(net.broker.clone(), &"7a".repeat(16), 256, move |body| {
            let (store, raced) = (store.clone(), raced.clone());
            async move { race_at_first_store(&store, &raced, body).await }
        })
        .await?
    };
    let client = net.client(None).await?;
    net.wait_servers(&client, 3).await?;
    let saved = client.save("doc", b"the winner", &pw()).await?;
    assert!(raced.load(Ordering::SeqCst), "the race was not staged");
    assert!(
        saved.not_stored.is_empty() && (saved.version, saved.stored_on) == (1, 3),
        "{saved:?}"
    );
    // Every server holds this save's record of version 1, none another's.
    let ids: Vec<Vec<[u8; 16]>> = [
        RecordStore::open(&net.root(0))?,
        RecordStore::open(&net.root(1))?,
        store,
    ]
    .iter()
    .map(|s| s.saves("doc").iter().map(|e| e.file_id).collect())
    .collect();
    assert!(
        ids.iter().all(|held| held.len() == 1 && *held == ids[0]),
        "{third}: {ids:?}"
    );
    let loaded = client.load("doc", Some(1), &pw()).await?;
    assert_eq!(loaded.data, b"the winner");
    task.abort();
    Ok(())
}

/// A share server's answer to `body` from `store`, except that the first
/// store it gets is preceded by another save's store of that version (a
/// save of the same tag at the same time), which is refused "version
/// exists" and rolled back 100 ms later, as a save that lost elsewhere
/// rolls back.
async fn race_at_first_store(store: &RecordStore, raced: &AtomicBool, body: Body) -> Body {
    let answer = |r: Result<Body, seccs_net::Error>| {
        r.unwrap_or_else(|e| Body::Refused {
            reason: e.to_string(),
        })
    };
    match body {
        Body::Versions { tag } => Body::VersionsHeld {
            highest: store.highest(&tag),
            saves: store.saves(&tag),
        },
        Body::Store {
            tag,
            version,
            record,
        } => {
            if !raced.swap(true, Ordering::SeqCst) {
                let other = seccs_net::sharing::split(
                    &tag,
                    version,
                    b"the loser",
                    &pw(),
                    &Kdf::INSECURE_FAST,
                    3,
                    2,
                );
                let planted = other
                    .map_err(|e| e.to_string())
                    .and_then(|records| {
                        store
                            .put(&tag, version, &records[0])
                            .map_err(|e| e.to_string())
                    })
                    .map(|_| store.saves(&tag).first().map(|e| e.file_id));
                if let Ok(Some(file_id)) = planted {
                    let store = store.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let _ = store.delete_save(&tag, version, &file_id);
                    });
                }
                return Body::Refused {
                    reason: conflict_reason(version),
                };
            }
            answer(store.put(&tag, version, &record).map(|o| match o {
                seccs_net::store::PutOutcome::Stored | seccs_net::store::PutOutcome::Unchanged => {
                    Body::Stored
                }
                _ => Body::Refused {
                    reason: conflict_reason(version),
                },
            }))
        }
        Body::Fetch { tag, version } => answer(
            store
                .get(&tag, version)
                .map(|record| Body::Fetched { record }),
        ),
        Body::Rollback {
            tag,
            version,
            file_id,
        } => answer(
            store
                .delete_save(&tag, version, &file_id)
                .map(|removed| Body::Deleted { removed }),
        ),
        Body::Delete { tag, version } => answer(
            store
                .delete(&tag, version)
                .map(|removed| Body::Deleted { removed }),
        ),
        _ => Body::Refused {
            reason: "not a request this test answers".into(),
        },
    }
}

/// Two saves of one tag at once, 30 times over (3 servers, any 2 rebuild):
/// each save ends on all three servers. Before, about one race in ten left
/// the winner's version on two (the loser held it on the third, rolled back,
/// and its next version there made that server refuse the winner's for
/// good), with a warning blaming that server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_saves_of_one_tag_at_once_both_end_on_every_server() -> TestResult {
    let net = Net::new(Kind::Redis, 3).await?;
    let (a, b) = (net.client(None).await?, net.client(None).await?);
    let p = pw();
    let mut short = Vec::new();
    for round in 0..30u64 {
        let tag = format!("tag{round}");
        let (ra, rb) = tokio::join!(a.save(&tag, b"aaa", &p), b.save(&tag, b"bbb", &p));
        let (ra, rb) = (ra?, rb?);
        let mut versions = [ra.version, rb.version];
        versions.sort_unstable();
        assert_eq!(versions, [1, 2], "{tag}");
        for r in [ra, rb] {
            if r.stored_on != 3 {
                short.push(format!("{tag}@{}: {:?}", r.version, r.not_stored));
            }
        }
        for i in 0..3 {
            let held: Vec<u64> = RecordStore::open(&net.root(i))?
                .saves(&tag)
                .iter()
                .map(|e| e.version)
                .collect();
            if held != [1, 2] {
                short.push(format!("server {i} holds {tag} versions {held:?}"));
            }
        }
    }
    assert!(short.is_empty(), "{short:#?}");
    Ok(())
}
