//! A store's key kept on the share network (`seccs init --key-from-share`):
//! saved only under a new tag, only when no single server could rebuild it,
//! only with a password and a costly KDF. Loads check none of it.

mod common;

use common::{Kind, Net, TestResult};
use seccs_core::{KEY_LEN, SecretKey};
use seccs_net::keyfile::{load_key, load_key_with, save_key, save_key_with};
use seccs_net::{Client, Config, Error, Kdf, Password};

fn pw() -> Password {
    Password::new("store password")
}

fn key(byte: u8) -> Result<SecretKey, seccs_core::Error> {
    SecretKey::from_slice(&[byte; KEY_LEN])
}

/// A client of `net` whose KDF is the cheapest a key may be saved with.
async fn key_client(net: &Net, threshold: Option<usize>) -> Result<Client, Error> {
    let mut client = net.client(threshold).await?;
    client.options_mut().kdf = Kdf::KEY_FLOOR;
    Ok(client)
}

/// The versions of `tag` the servers list.
async fn versions(client: &Client, tag: &str) -> Result<Vec<u64>, Error> {
    Ok(client
        .list(tag)
        .await?
        .into_iter()
        .filter(|l| l.tag == tag)
        .flat_map(|l| l.versions.into_iter().map(|v| v.version))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_key_is_never_saved_over_an_existing_tag() -> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let client = key_client(&net, None).await?;
    // Over a user's file: refused, naming the tag and the way out.
    client.save("notes", b"my file", &pw()).await?;
    match save_key_with(&client, "notes", &key(1)?, &pw()).await {
        Err(e @ Error::TagExists { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("\"notes\" already exists")
                    && text.contains("version 1")
                    && text.contains("choose another tag")
                    && text.contains("a removed tag is refused too")
                    && !text.contains("share rm"),
                "{text}"
            );
        }
        other => return Err(format!("expected TagExists, got {other:?}").into()),
    }
    assert_eq!(versions(&client, "notes").await?, [1]);
    assert_eq!(client.load("notes", None, &pw()).await?.data, b"my file");
    // Over another store's key: refused, and the first store's key still loads.
    let first = key(2)?;
    let saved = save_key_with(&client, "stores/main", &first, &pw()).await?;
    assert_eq!(saved.version, 1);
    assert!(matches!(
        save_key_with(&client, "stores/main", &key(3)?, &pw()).await,
        Err(Error::TagExists { ref versions, .. }) if versions == &[1]
    ));
    assert_eq!(versions(&client, "stores/main").await?, [1]);
    assert_eq!(load_key_with(&client, "stores/main", &pw()).await?, first);
    // A plain save to the tag later (same password) adds a version, but
    // the store's key stays the one saved as version 1.
    client.save("stores/main", b"not a key", &pw()).await?;
    assert_eq!(versions(&client, "stores/main").await?, [1, 2]);
    assert_eq!(load_key_with(&client, "stores/main", &pw()).await?, first);
    // Any version counts, not only the first.
    client.save("notes", b"again", &pw()).await?;
    client.remove("notes", Some(1)).await?;
    assert!(matches!(
        save_key_with(&client, "notes", &key(4)?, &pw()).await,
        Err(Error::TagExists { ref versions, .. }) if versions == &[2]
    ));
    assert_eq!(versions(&client, "notes").await?, [2]);
    // A tag used before and removed since: servers offline at the removal
    // may hold its version 1, so a key is not saved there.
    client.remove("notes", None).await?;
    match save_key_with(&client, "notes", &key(5)?, &pw()).await {
        Err(e @ Error::TagUsedBefore { highest: 2, .. }) => {
            assert!(e.to_string().contains("choose another tag"), "{e}")
        }
        other => return Err(format!("expected TagUsedBefore, got {other:?}").into()),
    }
    assert!(versions(&client, "notes").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_key_whose_version_1_was_removed_is_said_to_be_missing() -> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let client = key_client(&net, None).await?;
    save_key_with(&client, "stores/main", &key(1)?, &pw()).await?;
    client.save("stores/main", b"not a key", &pw()).await?;
    client.remove("stores/main", Some(1)).await?;
    assert_eq!(versions(&client, "stores/main").await?, [2]);
    match load_key_with(&client, "stores/main", &pw()).await {
        Err(e @ Error::KeyVersionMissing { latest: 2, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("version 1 of \"stores/main\"")
                    && text.contains("where the store's key is kept")
                    && text.contains("is not on the share servers")
                    && text.contains("removed")
                    && text.contains("offline")
                    && !text.contains("not a seccs key file")
                    && !text.contains("  "),
                "{text}"
            );
        }
        other => return Err(format!("expected KeyVersionMissing, got {other:?}").into()),
    }
    // A key an earlier build saved at a later version, with no version 1,
    // still loads.
    let mut old = Vec::from(*b"SCKF");
    old.push(1);
    old.extend_from_slice(&[7; KEY_LEN]);
    client.save("older", b"a file first", &pw()).await?;
    client.save("older", &old, &pw()).await?;
    client.remove("older", Some(1)).await?;
    assert_eq!(load_key_with(&client, "older", &pw()).await?, key(7)?);
    // Version 1 there but not a key, the latest not a key either: the file
    // is not a key file, and nothing is missing.
    client.save("notes", b"my file", &pw()).await?;
    assert!(matches!(
        load_key_with(&client, "notes", &pw()).await,
        Err(Error::NotAKeyFile)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_key_is_refused_when_one_server_could_rebuild_it() -> TestResult {
    let lonely = Net::new(Kind::Memory, 1).await?;
    let client = key_client(&lonely, None).await?;
    match save_key_with(&client, "k", &key(1)?, &pw()).await {
        Err(
            e @ Error::KeyThresholdTooLow {
                servers: 1,
                threshold: 1,
            },
        ) => {
            let text = e.to_string();
            assert!(
                text.contains("only 1 share server answered")
                    && text.contains("at least 2 servers must hold shares")
                    && text.contains("start more share servers")
                    && text.contains("threshold = 2"),
                "{text}"
            );
        }
        other => return Err(format!("expected KeyThresholdTooLow, got {other:?}").into()),
    }
    assert!(client.list("").await?.is_empty(), "nothing was stored");
    // A threshold of 1 set by hand is refused however many servers there are.
    let net = Net::new(Kind::Memory, 3).await?;
    let one = key_client(&net, Some(1)).await?;
    assert!(matches!(
        save_key_with(&one, "k", &key(1)?, &pw()).await,
        Err(Error::KeyThresholdTooLow {
            servers: 3,
            threshold: 1
        })
    ));
    assert!(one.list("").await?.is_empty(), "nothing was stored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_key_needs_a_spare_server_unless_the_threshold_is_set() -> TestResult {
    // Two servers online (three, one down): the default threshold would
    // need both, so losing either disk would lose the store. Refused.
    let two = Net::new(Kind::Memory, 2).await?;
    let client = key_client(&two, None).await?;
    match save_key_with(&client, "k", &key(1)?, &pw()).await {
        Err(e @ Error::KeyNoSpareServer { servers: 2 }) => {
            let text = e.to_string();
            assert!(
                text.contains(
                    "only 2 share servers answered, and the default threshold would need all 2 \
                     to rebuild the store key: losing any one server's disk would lose the store \
                     for good;"
                ) && text.contains("would lose the store")
                    && text.contains("start more share servers")
                    && text.contains("threshold = 2"),
                "{text}"
            );
        }
        other => return Err(format!("expected KeyNoSpareServer, got {other:?}").into()),
    }
    assert!(client.list("").await?.is_empty(), "nothing was stored");
    // The same threshold set by hand is the user's choice: saved 2-of-2.
    let client = key_client(&two, Some(2)).await?;
    let saved = save_key_with(&client, "k", &key(1)?, &pw()).await?;
    assert_eq!((saved.stored_on, saved.threshold), (2, 2));
    // Three online: 2-of-3 by default, one server to spare.
    let three = Net::new(Kind::Memory, 3).await?;
    let client = key_client(&three, None).await?;
    let saved = save_key_with(&client, "k", &key(1)?, &pw()).await?;
    assert_eq!((saved.stored_on, saved.threshold), (3, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_key_needs_a_password_and_a_kdf_at_or_above_the_floor() -> TestResult {
    let net = Net::new(Kind::Memory, 3).await?;
    let client = key_client(&net, None).await?;
    match save_key_with(&client, "k", &key(1)?, &Password::new("")).await {
        Err(e @ Error::EmptyPassword) => assert!(e.to_string().contains("empty"), "{e}"),
        other => return Err(format!("expected EmptyPassword, got {other:?}").into()),
    }
    let mut weak = net.client(None).await?;
    for (kdf, setting) in [
        (Kdf::INSECURE_FAST, "argon2id memory_kib = 8"),
        (
            Kdf::Argon2id {
                memory_kib: 65536,
                iterations: 1,
                parallelism: 1,
            },
            "argon2id iterations = 1",
        ),
        (
            Kdf::Scrypt {
                log_n: 1,
                r: 1,
                p: 1,
            },
            "scrypt log_n = 1",
        ),
    ] {
        weak.options_mut().kdf = kdf;
        match save_key_with(&weak, "k", &key(1)?, &pw()).await {
            Err(e @ Error::WeakKdf { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(setting) && text.contains("at least"),
                    "{text}"
                );
            }
            other => return Err(format!("expected WeakKdf, got {other:?}").into()),
        }
    }
    assert!(client.list("").await?.is_empty(), "nothing was stored");
    // A key saved before the floor existed (a key file saved with a cheap
    // KDF) still loads: only saves are held to it.
    let mut old = Vec::from(*b"SCKF");
    old.push(1);
    old.extend_from_slice(&[9; KEY_LEN]);
    net.client(None).await?.save("old", &old, &pw()).await?;
    assert_eq!(load_key_with(&client, "old", &pw()).await?, key(9)?);
    Ok(())
}

#[test]
fn the_blocking_save_checks_the_password_and_the_config_kdf_first() -> TestResult {
    // Refused before any broker is asked: none listens on this port.
    let mut config = Config::parse(&format!(
        "broker = \"redis://127.0.0.1:{}\"\n[kdf]\nalgorithm = \"argon2id\"\n\
         memory_kib = 8\niterations = 1\nparallelism = 1\n",
        common::free_port()?
    ))?;
    assert!(matches!(
        save_key(&config, "k", &key(1)?, &pw()),
        Err(Error::WeakKdf {
            setting: "argon2id memory_kib",
            value: 8,
            floor: 19456
        })
    ));
    config.kdf = Kdf::default();
    assert!(matches!(
        save_key(&config, "k", &key(1)?, &Password::new("")),
        Err(Error::EmptyPassword)
    ));
    // Loads are not held to the floor: this one fails only at the broker.
    config.kdf = Kdf::INSECURE_FAST;
    assert!(matches!(
        load_key(&config, "k", &pw()),
        Err(Error::Broker(_))
    ));
    Ok(())
}

/// The blocking key calls, made inside a tokio runtime (a task, and a
/// spawn_blocking thread, which has the runtime's context), return an error
/// naming the async form instead of panicking as their own runtime's
/// block_on did ("Cannot start a runtime from within a runtime").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_key_calls_refuse_a_runtime_thread() -> TestResult {
    let config = Config::new("memory");
    let inside = |result: Result<(), Error>, what: &str| match result {
        Err(Error::InsideAsyncRuntime(name)) => {
            let message = Error::InsideAsyncRuntime(name).to_string();
            assert!(name.ends_with(what), "{name}");
            assert!(message.contains("inside a tokio runtime"), "{message}");
            assert!(message.contains(&format!("{what}_with")), "{message}");
        }
        other => panic!("{what} inside a runtime gave {other:?}"),
    };
    inside(load_key(&config, "k", &pw()).map(|_| ()), "load_key");
    inside(
        save_key(&config, "k", &key(1)?, &pw()).map(|_| ()),
        "save_key",
    );
    let in_blocking = tokio::task::spawn_blocking(move || {
        let config = Config::new("memory");
        (
            load_key(&config, "k", &pw()).map(|_| ()),
            key(1)
                .map_err(Error::from)
                .and_then(|k| save_key(&config, "k", &k, &pw()).map(|_| ())),
        )
    })
    .await?;
    inside(in_blocking.0, "load_key");
    inside(in_blocking.1, "save_key");
    Ok(())
}
