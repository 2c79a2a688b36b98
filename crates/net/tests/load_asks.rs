//! What a load asks of the servers: when they agree on one save of the
//! version, t of its servers' records, the same t for every load of one
//! file and others for other files; the other servers only when those t
//! do not give the file back; and a check reads every server's record.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{Kind, Net, TestResult, data};
use seccs_net::message::Body;
use seccs_net::record::Record;
use seccs_net::store::RecordStore;
use seccs_net::{Error, Password};

fn pw() -> Password {
    Password::new("correct horse battery staple")
}

fn sorted(servers: &[String]) -> Vec<String> {
    let mut servers = servers.to_vec();
    servers.sort();
    servers
}

/// The index of the server of `channel` in `net`.
fn index_of(net: &Net, channel: &str) -> Result<usize, String> {
    (0..net.servers.len())
        .find(|i| net.channel(*i) == channel)
        .ok_or_else(|| format!("no server has channel {channel}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_asks_t_servers_the_same_for_one_file_and_others_for_others() -> TestResult {
    let net = Net::new(Kind::Memory, 5).await?;
    let client = net.client(Some(3)).await?;
    let mut asked_any: BTreeSet<String> = BTreeSet::new();
    for i in 0..12u64 {
        let tag = format!("doc/{i}");
        let file = data(20_000, i);
        client.save(&tag, &file, &pw()).await?;
        let first = client.load(&tag, None, &pw()).await?;
        assert_eq!(first.data, file);
        assert_eq!(
            first.asked_servers.len(),
            3,
            "{tag}: {:?}",
            first.asked_servers
        );
        assert_eq!(sorted(&first.used_servers), sorted(&first.asked_servers));
        // The save gave the servers asked first the ciphertext's own
        // fragments: nothing was restored from recovery fragments.
        assert_eq!(first.restored_fragments, 0, "{tag}");
        // A version asked for by number is loaded the same way.
        let again = client.load(&tag, Some(1), &pw()).await?;
        assert_eq!(again.data, file);
        assert_eq!(again.asked_servers, first.asked_servers, "{tag}");
        asked_any.extend(first.asked_servers);
    }
    // Twelve files, each ranking the five servers by its own hash: the odds
    // that all rank the same three first are 10^-11.
    assert!(asked_any.len() > 3, "every load asked {asked_any:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asked_first_that_is_gone_is_replaced_and_its_fragment_restored() -> TestResult {
    let mut net = Net::new(Kind::Memory, 5).await?;
    let client = net.client(Some(3)).await?;
    let file = data(30_000, 7);
    client.save("gone/first", &file, &pw()).await?;
    let whole = client.load("gone/first", None, &pw()).await?;
    assert_eq!(whole.restored_fragments, 0);
    // One of the servers asked first stops: the load asks the next in the
    // save's order, whose record is a recovery fragment.
    let stopped = whole.asked_servers[1].clone();
    net.kill(index_of(&net, &stopped)?);
    net.wait_servers(&client, 4).await?;
    let loaded = client.load("gone/first", None, &pw()).await?;
    assert_eq!(loaded.data, file);
    assert_eq!(loaded.asked_servers.len(), 3, "{:?}", loaded.asked_servers);
    assert!(!loaded.asked_servers.contains(&stopped));
    assert_eq!(loaded.restored_fragments, 1);
    Ok(())
}

/// Saves `data(len, i)` as the i-th of `tags`, and returns what a server
/// holding them all answers when asked for each tag's versions: the claims
/// a server posing as one of them makes.
async fn save_each(
    net: &Net,
    client: &seccs_net::Client,
    tags: &[String],
    len: usize,
) -> Result<HashMap<String, Body>, Box<dyn std::error::Error + Send + Sync>> {
    let mut claims = HashMap::new();
    for (i, tag) in tags.iter().enumerate() {
        client.save(tag, &data(len, i as u64), &pw()).await?;
        let held = common::ask_raw(
            &net.broker,
            &net.channel(0),
            Body::Versions { tag: tag.clone() },
        )
        .await?;
        claims.insert(tag.clone(), held);
    }
    Ok(claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asked_first_that_sends_no_record_is_made_up_for_by_the_others() -> TestResult {
    let net = Net::new(Kind::Memory, 5).await?;
    let client = net.client(Some(3)).await?;
    let tags: Vec<String> = (0..24).map(|i| format!("file/{i}")).collect();
    let claims = save_each(&net, &client, &tags, 5_000).await?;
    // A server that claims every save as the real ones do, and sends no
    // record when asked for one.
    let (poser, task) = common::posing_server(
        net.broker.clone(),
        &"70".repeat(16),
        1_000,
        move |body| match body {
            Body::Versions { tag } => claims.get(&tag).cloned().unwrap_or(Body::VersionsHeld {
                highest: 0,
                saves: Vec::new(),
            }),
            Body::Fetch { .. } => Body::Fetched { record: None },
            _ => Body::Refused {
                reason: "no".into(),
            },
        },
    )
    .await?;
    net.wait_servers(&client, 6).await?;
    let mut made_up = 0;
    for (i, tag) in tags.iter().enumerate() {
        let loaded = client.load(tag, None, &pw()).await?;
        assert_eq!(loaded.data, data(5_000, i as u64), "{tag}");
        assert!(!loaded.used_servers.contains(&poser));
        assert!(loaded.bad_servers.is_empty(), "{:?}", loaded.bad_servers);
        // Whoever was asked, the records used are the first t of the
        // save's order, which the real servers all hold.
        assert_eq!(loaded.restored_fragments, 0, "{tag}");
        if loaded.asked_servers.contains(&poser) {
            // Asked first, it gave nothing: every other server was asked.
            assert_eq!(loaded.asked_servers.len(), 6, "{tag}");
            made_up += 1;
        } else {
            assert_eq!(loaded.asked_servers.len(), 3, "{tag}");
        }
    }
    // One holder in six ranks among a file's first three half the time:
    // the odds that it never does in 24 files are 6·10^-8.
    assert!(made_up > 0, "the posing server was never asked first");
    task.abort();
    Ok(())
}

/// The tag a request to a server asks a record of, if it is a fetch.
fn fetched_tag(frame: &[u8]) -> Option<String> {
    use seccs_net::message::Message;
    use seccs_net::packet::Frame;
    let Ok(Frame::Data(d)) = Frame::decode(frame) else {
        return None;
    };
    match Message::decode(&d.payload).ok()?.body {
        Body::Fetch { tag, .. } => Some(tag),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_asks_its_first_server_alone_and_the_others_once_it_has_answered() -> TestResult {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    let net = Net::new(Kind::Memory, 5).await?;
    let client = net.client(Some(3)).await?;
    let tags: Vec<String> = (0..64).map(|i| format!("lead/{i}")).collect();
    let claims = save_each(&net, &client, &tags, 2_000).await?;
    // A second subscriber on each real server's channel sees every
    // request sent to it.
    let mut watchers = Vec::new();
    for i in 0..net.servers.len() {
        watchers.push(net.broker.subscribe(&net.channel(i)).await?);
    }
    let watchers = Arc::new(tokio::sync::Mutex::new(watchers));
    // For each fetch the posing server is sent: its tag, and how many real
    // servers had been asked for that tag's record by the time it answers
    // (a tenth of a second later).
    let asked_before_answer: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let (poser, task) = {
        let (watchers, seen) = (watchers.clone(), asked_before_answer.clone());
        common::posing_server_waiting(net.broker.clone(), &"71".repeat(16), 1_000, move |body| {
            let (watchers, seen, claims) = (watchers.clone(), seen.clone(), claims.clone());
            async move {
                match body {
                    Body::Versions { tag } => {
                        claims.get(&tag).cloned().unwrap_or(Body::VersionsHeld {
                            highest: 0,
                            saves: Vec::new(),
                        })
                    }
                    Body::Fetch { tag, .. } => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let mut asked = 0;
                        for w in watchers.lock().await.iter_mut() {
                            // Bounded: what is queued now, then nothing.
                            for _ in 0..1_024 {
                                let Ok(Some(frame)) =
                                    tokio::time::timeout(Duration::ZERO, w.recv()).await
                                else {
                                    break;
                                };
                                asked += usize::from(fetched_tag(&frame).as_ref() == Some(&tag));
                            }
                        }
                        if let Ok(mut seen) = seen.lock() {
                            seen.push((tag, asked));
                        }
                        Body::Fetched { record: None }
                    }
                    _ => Body::Refused {
                        reason: "no".into(),
                    },
                }
            }
        })
        .await?
    };
    net.wait_servers(&client, 6).await?;
    for (i, tag) in tags.iter().enumerate() {
        let loaded = client.load(tag, None, &pw()).await?;
        assert_eq!(loaded.data, data(2_000, i as u64), "{tag}");
        assert!(!loaded.used_servers.contains(&poser));
    }
    task.abort();
    let seen = asked_before_answer
        .lock()
        .map_err(|_| "a posing server's answer panicked")?
        .clone();
    // Asked first, the posing server is asked alone: no other server is
    // asked for the tag until it has answered. Asked second or third, the
    // first had been asked before it. Loads that asked every server at
    // once would have asked the two others beside it every time.
    let alone = seen.iter().filter(|(_, asked)| *asked == 0).count();
    assert!(
        seen.iter().all(|(_, asked)| *asked <= 2),
        "more than t servers asked at once: {seen:?}"
    );
    // One holder in six ranks first for a file: the odds that it never
    // does in 64 files are 9·10^-6.
    assert!(
        alone > 0,
        "the posing server was never asked alone: {seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_asked_first_that_do_not_rebuild_make_the_load_ask_every_server() -> TestResult {
    let net = Net::new(Kind::Memory, 5).await?;
    let client = net.client(Some(3)).await?;
    let file = data(100_000, 3);
    client.save("doc", &file, &pw()).await?;
    let first = client.load("doc", None, &pw()).await?;
    assert_eq!(first.asked_servers.len(), 3);
    // One of the servers a load of it asks first has its record altered.
    let victim = index_of(&net, &first.asked_servers[0])?;
    let path = RecordStore::open(&net.root(victim))?.record_path("doc", 1);
    let (mut rec, _) = Record::decode(&std::fs::read(&path)?)?;
    rec.fragment[10] ^= 0x55;
    std::fs::write(&path, rec.encode())?;
    let loaded = client.load("doc", None, &pw()).await?;
    assert_eq!(loaded.data, file);
    assert_eq!(loaded.asked_servers.len(), 5);
    assert_eq!(loaded.bad_servers, vec![net.channel(victim)]);
    assert!(!loaded.used_servers.contains(&net.channel(victim)));
    // A wrong password fails as a load of every server fails.
    match client.load("doc", None, &Password::new("wrong")).await {
        Err(Error::LatestUnavailable {
            version: 1,
            decrypt: true,
            ..
        }) => {}
        other => return Err(format!("expected a decryption failure, got {other:?}").into()),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_reads_every_servers_record_and_names_the_altered_and_the_missing() -> TestResult {
    let net = Net::new(Kind::Memory, 5).await?;
    let client = net.client(Some(3)).await?;
    client.save("doc", &data(50_000, 8), &pw()).await?;
    client.save("doc", &data(50_000, 9), &pw()).await?;
    let whole = client.check("doc", None, &pw()).await?;
    assert_eq!((whole.version, whole.n, whole.t), (2, 5, 3));
    assert_eq!(whole.authentic.len(), 5);
    assert!(whole.is_whole());
    // Server 1's record of version 2 is altered, server 4's lost.
    let path = RecordStore::open(&net.root(1))?.record_path("doc", 2);
    let (mut rec, _) = Record::decode(&std::fs::read(&path)?)?;
    rec.share[3] ^= 0x01;
    std::fs::write(&path, rec.encode())?;
    std::fs::remove_file(RecordStore::open(&net.root(4))?.record_path("doc", 2))?;
    let checked = client.check("doc", Some(2), &pw()).await?;
    assert!(!checked.is_whole());
    assert_eq!(
        sorted(&checked.authentic),
        sorted(&[net.channel(0), net.channel(2), net.channel(3)])
    );
    assert_eq!(
        checked
            .bad
            .iter()
            .map(|(s, _)| s.clone())
            .collect::<Vec<_>>(),
        vec![net.channel(1)]
    );
    assert_eq!(checked.without_record, vec![net.channel(4)]);
    assert!(checked.silent.is_empty());
    // Version 1 is untouched.
    assert!(client.check("doc", Some(1), &pw()).await?.is_whole());
    // A version that does not rebuild fails the check as it fails a load.
    match client.check("doc", Some(2), &Password::new("wrong")).await {
        Err(Error::DecryptVersion { version: 2, .. }) => {}
        other => return Err(format!("expected a decryption failure, got {other:?}").into()),
    }
    Ok(())
}

/// A tag whose every record no server can read is still a tag (`share
/// ls` lists it): a load fails naming the servers and why each record is
/// unreadable, and a record of a newer format is said to be one, not "no
/// server holds" the tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_of_a_tag_whose_every_record_is_unreadable_names_them_and_why() -> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let client = net.client(Some(2)).await?;
    client.save("doc", &data(20_000, 11), &pw()).await?;
    let paths = (0..3)
        .map(|i| Ok(RecordStore::open(&net.root(i))?.record_path("doc", 1)))
        .collect::<Result<Vec<_>, seccs_net::Error>>()?;
    let originals = paths
        .iter()
        .map(std::fs::read)
        .collect::<Result<Vec<_>, _>>()?;
    // The record's format byte follows its 4-byte magic; then its index,
    // the manifest's length (4 bytes) and the manifest, whose format byte
    // follows its own magic.
    /// A case's name, how it alters each record, and the reason said.
    type Case = (&'static str, fn(&mut Vec<u8>), &'static str);
    let cases: [Case; 3] = [
        (
            "a newer record format",
            |r| r[4] = 2,
            "its record names format 2, newer than this build reads (up to 1): written by a \
             newer seccs, unless altered",
        ),
        (
            "a newer manifest format",
            |r| r[4 + 1 + 1 + 4 + 4] = 3,
            "its manifest names format 3, newer than this build reads (up to 2)",
        ),
        ("a bad magic", |r| r[0] ^= 0xFF, "invalid record: bad magic"),
    ];
    for (case, alter, why) in cases {
        for (path, original) in paths.iter().zip(&originals) {
            let mut bytes = original.clone();
            alter(&mut bytes);
            std::fs::write(path, bytes)?;
        }
        let listed = client.list("").await?;
        assert!(listed.iter().any(|t| t.tag == "doc"), "{case}: {listed:?}");
        for load in [
            client.load("doc", None, &pw()).await,
            client.load_or_older("doc", &pw()).await,
        ] {
            let said = match load {
                Err(e @ seccs_net::Error::NotEnoughShares { .. }) => e.to_string(),
                other => {
                    return Err(format!("{case}: expected the records named, got {other:?}").into());
                }
            };
            assert!(!said.contains("no server holds"), "{case}: {said}");
            assert!(said.contains(why), "{case}: {said}");
            for i in 0..3 {
                assert!(said.contains(&net.channel(i)), "{case}: {said}");
            }
        }
    }
    Ok(())
}
