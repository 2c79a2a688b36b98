//! Which version a save takes and which a load returns: a version removed
//! while servers were offline is never given out again, the newest version
//! that cannot be rebuilt is not replaced by an older one in silence, and a
//! server keeps to one process per root and to the largest version.

mod common;

use std::time::Duration;

use common::{Kind, Net, TestResult};
use seccs_net::message::{Body, MAX_VERSION};
use seccs_net::store::RecordStore;
use seccs_net::{Error, Password};

fn pw() -> Password {
    Password::new("correct horse battery staple")
}

/// The review's scenario: `save --threshold 2 tie1 A` on 5 servers; 3 go
/// offline; `rm tie1` reaches 2; `save tie1 B`; the 3 come back. Before,
/// B reused version 1 and a clock chose between A and B.
async fn a_version_removed_while_servers_were_offline_is_never_given_again(
    kind: Kind,
) -> TestResult {
    let mut net = Net::new(kind, 5).await?;
    let client = net.client(Some(2)).await?;
    let a = client.save("tie1", b"A: removed", &pw()).await?;
    assert_eq!((a.version, a.stored_on), (1, 5));
    for i in 2..5 {
        net.kill(i);
    }
    net.wait_servers(&client, 2).await?;
    let removed = client.remove_report("tie1", None).await?;
    assert_eq!(
        (removed.removed_from, removed.asked, removed.saved_to),
        (2, 2, Some(5)),
        "the removal says the version was saved to 5 servers"
    );
    let b = client.save("tie1", b"B: saved after the rm", &pw()).await?;
    assert_eq!((b.version, b.stored_on), (2, 2), "version 1 is not reused");
    for i in 2..5 {
        net.restart(i).await?;
    }
    net.wait_servers(&client, 5).await?;
    for _ in 0..5 {
        let loaded = client.load("tie1", None, &pw()).await?;
        assert_eq!(
            (loaded.version, &loaded.data[..]),
            (2, &b"B: saved after the rm"[..])
        );
    }
    // The removed version comes back with the servers that were offline
    // (the README says so), under its own number, never in B's place.
    let old = client.load("tie1", Some(1), &pw()).await?;
    assert_eq!(old.data, b"A: removed");
    let listed = client.list("tie1").await?;
    let versions: Vec<(u64, usize)> = listed
        .iter()
        .flat_map(|l| l.versions.iter().map(|v| (v.version, v.servers)))
        .collect();
    assert_eq!(versions, vec![(1, 3), (2, 2)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_version_removed_while_servers_were_offline_is_never_given_again() -> TestResult {
    a_version_removed_while_servers_were_offline_is_never_given_again(Kind::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_version_removed_while_servers_were_offline_is_never_given_again() -> TestResult {
    a_version_removed_while_servers_were_offline_is_never_given_again(Kind::Redis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_removed_from_the_top_are_not_reused() -> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let client = net.client(Some(2)).await?;
    for data in [&b"one"[..], b"two", b"three"] {
        client.save("t1", data, &pw()).await?;
    }
    client.remove("t1", Some(2)).await?;
    client.remove("t1", Some(3)).await?;
    let saved = client.save("t1", b"four", &pw()).await?;
    assert_eq!(saved.version, 4);
    // Every version removed: the next save still follows them.
    client.remove("t1", None).await?;
    assert_eq!(client.save("t1", b"five", &pw()).await?.version, 5);
    let loaded = client.load("t1", None, &pw()).await?;
    assert_eq!((loaded.version, &loaded.data[..]), (5, &b"five"[..]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_version_that_does_not_rebuild_fails_the_load_unless_older_is_asked_for()
-> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let client = net.client(Some(2)).await?;
    client.save("doc", b"mine", &pw()).await?;
    // A save made with a mistyped password.
    client.save("doc", b"typo", &Password::new("typo")).await?;
    match client.load("doc", None, &pw()).await {
        Err(e @ Error::LatestUnavailable { .. }) => {
            assert!(e.is_decrypt(), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("doc@2, the newest version of \"doc\", cannot be rebuilt")
                    && text.contains("wrong password")
                    && text.contains("doc@1")
                    && text.contains("--or-older"),
                "{text}"
            );
        }
        other => return Err(format!("expected LatestUnavailable, got {other:?}").into()),
    }
    let older = client.load_or_older("doc", &pw()).await?;
    assert_eq!((older.version, &older.data[..]), (1, &b"mine"[..]));
    assert_eq!(older.newer_failed.len(), 1);
    assert_eq!(older.newer_failed[0].0, 2);
    // The newest version's servers gone: the load says how many answered.
    Ok(())
}

/// Records of the newest version altered on fewer than t servers (here
/// truncated, so that their headers no longer parse) leave it held by too
/// few readable records. The load fails and says so, instead of taking the
/// version for a save that never completed and loading the one before it;
/// `--or-older` still loads that one, naming why the newest was passed
/// over. A lone unreadable record of a newer version (a stray) is passed
/// over as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_altered_on_a_few_servers_do_not_roll_the_load_back() -> TestResult {
    let net = Net::new(Kind::Memory, 5).await?;
    let client = net.client(Some(4)).await?;
    client.save("roll", b"version one", &pw()).await?;
    client.save("roll", b"version two", &pw()).await?;
    for i in [0, 1] {
        let path = RecordStore::open(&net.root(i))?.record_path("roll", 2);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(20)?;
    }
    match client.load("roll", None, &pw()).await {
        Err(e @ Error::LatestUnavailable { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("roll@2, the newest version of \"roll\", cannot be rebuilt")
                    && text.contains("its records on 2 of the servers online are altered")
                    && text.contains("nothing older is loaded in its place"),
                "{text}"
            );
        }
        other => return Err(format!("expected LatestUnavailable, got {other:?}").into()),
    }
    let older = client.load_or_older("roll", &pw()).await?;
    assert_eq!((older.version, &older.data[..]), (1, &b"version one"[..]));
    assert_eq!(older.passed_over.len(), 1);
    assert!(
        older.passed_over[0]
            .1
            .contains("2 more hold one that is altered or damaged"),
        "{:?}",
        older.passed_over
    );

    // A stray: one server holds an unreadable record of version 3 only.
    let store = RecordStore::open(&net.root(4))?;
    let stray = store.record_path("roll", 3);
    std::fs::write(&stray, b"not a record")?;
    for i in [0, 1] {
        let path = RecordStore::open(&net.root(i))?.record_path("roll", 2);
        std::fs::remove_file(&path)?;
    }
    let loaded = client.load("roll", None, &pw()).await;
    // Version 2 is now held by 3 readable records of 4 needed, with no
    // unreadable one: a save that never completed, passed over.
    let loaded = loaded?;
    assert_eq!((loaded.version, &loaded.data[..]), (1, &b"version one"[..]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_password_saves_nothing() -> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let client = net.client(Some(2)).await?;
    match client.save("t", b"x", &Password::new("")).await {
        Err(e @ Error::EmptyPassword) => {
            assert!(e.to_string().contains("the password is empty"), "{e}")
        }
        other => return Err(format!("expected EmptyPassword, got {other:?}").into()),
    }
    assert!(client.list("").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_root_is_refused_naming_the_holder() -> TestResult {
    let net = Net::new(Kind::Memory, 1).await?;
    match seccs_net::server::start(net.broker.clone(), &net.root(0), None, common::TIMEOUT).await {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.starts_with(&format!(
                    "{} is in use by another share server (pid {} on ",
                    net.root(0).display(),
                    std::process::id()
                )),
                "{text}"
            );
        }
        Ok(_) => return Err("a second server started on the same root".into()),
    }
    // A root that is a file is said to be one.
    let file = net.root(0).with_extension("file");
    std::fs::write(&file, b"")?;
    match seccs_net::server::start(net.broker.clone(), &file, None, common::TIMEOUT).await {
        Err(e) => assert!(e.to_string().contains("is not a directory"), "{e}"),
        Ok(_) => return Err("a server started on a file".into()),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refuses_a_version_above_the_largest_and_says_the_highest_it_held() -> TestResult {
    let net = Net::new(Kind::Memory, 1).await?;
    let client = net.client(Some(1)).await?;
    client.save("t", b"x", &pw()).await?;
    client.save("t", b"y", &pw()).await?;
    client.remove("t", Some(2)).await?;
    let server = net.channel(0);
    match common::ask_raw(&net.broker, &server, Body::Versions { tag: "t".into() }).await? {
        Body::VersionsHeld { highest, saves } => {
            assert_eq!(highest, 2, "a removed version is remembered");
            let held: Vec<(u64, u8, u8)> = saves.iter().map(|s| (s.version, s.n, s.t)).collect();
            assert_eq!(held, vec![(1, 1, 1)]);
        }
        other => return Err(format!("unexpected answer {other:?}").into()),
    }
    let record = seccs_net::sharing::split(
        "t",
        MAX_VERSION + 1,
        b"z",
        &pw(),
        &seccs_net::Kdf::INSECURE_FAST,
        1,
        1,
    )?
    .remove(0);
    let body = Body::Store {
        tag: "t".into(),
        version: MAX_VERSION + 1,
        record,
    };
    match common::ask_raw(&net.broker, &server, body).await? {
        Body::Refused { reason } => assert!(reason.contains("above the largest"), "{reason}"),
        other => return Err(format!("unexpected answer {other:?}").into()),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_with_the_test_kdf_warns_and_the_default_options_do_not() -> TestResult {
    let defaults = seccs_net::ClientOptions::default();
    assert_eq!(defaults.kdf, seccs_net::Kdf::default());
    assert_eq!((defaults.threshold, defaults.min_acks), (None, None));
    assert_eq!(defaults.timeout, Duration::from_secs(30));
    let net = Net::new(Kind::Memory, 3).await?;
    // The test helper's client uses Kdf::INSECURE_FAST.
    let mut client = net.client(None).await?;
    assert_eq!(client.options_mut().kdf, seccs_net::Kdf::INSECURE_FAST);
    let saved = client.save("cheap", b"x", &pw()).await?;
    assert!(
        saved.warnings.len() == 1
            && saved.warnings[0].contains("password KDF is cheap")
            && saved.warnings[0].contains("leave [kdf] out of the configuration"),
        "{:?}",
        saved.warnings
    );
    *client.options_mut() = seccs_net::ClientOptions::default().with_timeout(common::TIMEOUT);
    let saved = client.save("costly", b"x", &pw()).await?;
    assert!(saved.warnings.is_empty(), "{:?}", saved.warnings);
    Ok(())
}

/// A timeout past what the clock can add to now is taken as a day: a
/// save with `Duration::MAX` panicked computing its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_of_duration_max_is_taken_as_a_day() -> TestResult {
    let day = Duration::from_secs(seccs_net::config::MAX_TIMEOUT_SECS);
    let options = seccs_net::ClientOptions::default().with_timeout(Duration::MAX);
    assert_eq!(options.timeout, day);
    let net = Net::new(Kind::Memory, 3).await?;
    let mut client = net.client(None).await?;
    client.options_mut().timeout = Duration::MAX;
    let saved = client.save("long", b"x", &pw()).await?;
    assert_eq!(saved.stored_on, 3);
    let kdf = client.options_mut().kdf.clone();
    *client.options_mut() = options.with_kdf(kdf);
    let saved = client.save("long", b"y", &pw()).await?;
    assert_eq!(saved.version, 2);
    assert_eq!(client.load("long", None, &pw()).await?.data, b"y");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_acks_below_the_threshold_is_raised_with_a_warning() -> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let mut client = net.client(None).await?;
    client.options_mut().min_acks = Some(1);
    let saved = client.save("t", b"x", &pw()).await?;
    assert_eq!(saved.threshold, 2);
    // The test KDF's own warning aside.
    let warnings: Vec<_> = saved
        .warnings
        .iter()
        .filter(|w| !w.contains("password KDF is cheap"))
        .collect();
    assert!(
        warnings.len() == 1
            && warnings[0].contains("min_acks = 1 is below this save's threshold 2"),
        "{:?}",
        saved.warnings
    );
    Ok(())
}

/// A broker client posing as a share server of a build older than this
/// client's: it stores every record (counted in `stores`) and removes what
/// it is asked to, but leaves the request for a tag's versions unanswered,
/// as such a server does a request it does not know.
async fn older_build_server(
    net: &Net,
    id: &str,
    stores: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Result<(String, tokio::task::JoinHandle<()>), Box<dyn std::error::Error + Send + Sync>> {
    common::posing_server_answering(net.broker.clone(), id, 64, move |body| {
        let answer = match body {
            Body::Versions { .. } => None,
            Body::Store { .. } => {
                stores.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Some(Body::Stored)
            }
            Body::Delete { .. } | Body::Rollback { .. } => Some(Body::Deleted { removed: 1 }),
            _ => Some(Body::Refused {
                reason: "not known".into(),
            }),
        };
        std::future::ready(answer)
    })
    .await
}

/// Saves a new version of `diary` through a client that waits 2 s for
/// each answer, once `servers` servers are online, then stops the posing
/// servers' tasks `posers`.
async fn save_diary_beside(
    net: &Net,
    posers: Vec<tokio::task::JoinHandle<()>>,
    servers: usize,
) -> Result<Result<seccs_net::SaveReport, Error>, Box<dyn std::error::Error + Send + Sync>> {
    let client = net.client_waiting(Duration::from_secs(2), None).await?;
    net.wait_servers(&client, servers).await?;
    let saved = client.save("diary", b"a new version", &pw()).await;
    for task in &posers {
        task.abort();
    }
    Ok(saved)
}

/// Share servers of an older build store records but do not answer the
/// probe for a tag's versions. A save whose probe none of the servers
/// answered knows nothing of the versions the tag had (one removed may be
/// remembered by none of them): it fails, saying the servers may be of an
/// older build, and stores nothing. Before, it took version 1 (or the
/// first version the servers did not refuse) and reported success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_whose_probe_no_server_answered_fails_and_stores_nothing() -> TestResult {
    let net = Net::new(Kind::Memory, 0).await?;
    let stores = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..3u8 {
        let id = format!("{:02x}", 0xa0 + i).repeat(16);
        tasks.push(older_build_server(&net, &id, stores.clone()).await?.1);
    }
    let saved = save_diary_beside(&net, tasks, 3).await?;
    match saved {
        Err(e @ Error::NoAnswer { asked: 3, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("none of the 3 share servers online answered"),
                "{text}"
            );
            assert!(text.contains("older build"), "{text}");
        }
        other => return Err(format!("expected NoAnswer, got {other:?}").into()),
    }
    assert_eq!(
        stores.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a record was sent for a version chosen without any server's answer"
    );
    Ok(())
}

/// Servers that refuse the probe answered it: their reason is what the
/// failed save shows, not a silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_whose_probe_every_server_refused_shows_their_reason() -> TestResult {
    let net = Net::new(Kind::Memory, 0).await?;
    let mut tasks = Vec::new();
    for i in 0..2u8 {
        let id = format!("{:02x}", 0xc0 + i).repeat(16);
        let (_, task) = common::posing_server(net.broker.clone(), &id, 4, |_| Body::Refused {
            reason: "cannot read its root: disk on fire".into(),
        })
        .await?;
        tasks.push(task);
    }
    let saved = save_diary_beside(&net, tasks, 2).await?;
    let e = saved
        .err()
        .ok_or("a save succeeded with every probe refused")?;
    let text = e.to_string();
    assert!(
        text.contains("refused: cannot read its root: disk on fire"),
        "{text}"
    );
    Ok(())
}

/// With one server of this build among servers of an older build, the
/// save's probe has its answer (the tag's highest version, kept after a
/// removal): the save takes the version after it, on all three servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_follows_the_one_server_that_answered_its_probe() -> TestResult {
    let net = Net::new(Kind::Memory, 1).await?;
    let alone = net.client(None).await?;
    for i in 1..=3u64 {
        let saved = alone.save("diary", b"an old version", &pw()).await?;
        assert_eq!(saved.version, i);
    }
    assert_eq!(alone.remove("diary", Some(3)).await?, 1);
    let stores = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..2u8 {
        let id = format!("{:02x}", 0xb0 + i).repeat(16);
        tasks.push(older_build_server(&net, &id, stores.clone()).await?.1);
    }
    let saved = save_diary_beside(&net, tasks, 3).await?;
    let saved = saved?;
    assert_eq!((saved.version, saved.stored_on), (4, 3));
    assert_eq!(stores.load(std::sync::atomic::Ordering::SeqCst), 2);
    Ok(())
}
