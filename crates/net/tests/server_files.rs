//! A share server's files are private: a record is a share of a
//! password-encrypted file, not for other users of the machine to read.
//! And a store the server refuses, or that is rolled back, leaves nothing
//! on its disk.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::{Kind, Net, TIMEOUT, TestResult, ask_raw};
use seccs_net::broker::MemoryBroker;
use seccs_net::message::{Body, NOT_A_VERSION_REASON, conflict_reason};
use seccs_net::store::RecordStore;
use seccs_net::{Client, ClientOptions, Kdf, Password, server};

fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

/// Every directory and file under `dir`, `dir` included.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    out.push(dir.to_owned());
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_makes_its_directories_0700_and_its_files_0600() -> TestResult {
    let tmp = tempfile::tempdir()?;
    // The operator's directory keeps its mode; what the server makes does not.
    let operator = tmp.path().join("operator");
    std::fs::create_dir(&operator)?;
    std::fs::set_permissions(&operator, std::fs::Permissions::from_mode(0o755))?;
    let new = operator.join("newroot");
    let root = new.join("sub");
    let broker = Arc::new(MemoryBroker::new());
    let mut servers = Vec::new();
    for r in [root.clone(), operator.join("other")] {
        servers.push(server::start(broker.clone(), &r, None, TIMEOUT).await?);
    }
    let options = ClientOptions {
        timeout: TIMEOUT,
        kdf: Kdf::INSECURE_FAST,
        threshold: None,
        min_acks: None,
    };
    let client = Client::new(broker, options).await?;
    client.save("secret", b"data", &Password::new("p")).await?;
    assert_eq!(
        mode(&operator)?,
        0o755,
        "the operator's directory kept its mode"
    );
    let mut paths = Vec::new();
    walk(&new, &mut paths)?;
    let (mut dirs, mut files) = (0, 0);
    for path in &paths {
        let want = if path.is_dir() {
            dirs += 1;
            0o700
        } else {
            files += 1;
            0o600
        };
        assert_eq!(mode(path)?, want, "{}", path.display());
    }
    // newroot, sub, records, the tag's directory; server-id, tag, 1 record.
    assert!(dirs >= 4 && files >= 3, "{paths:?}");
    assert!(paths.iter().any(|p| p.ends_with("server-id")));
    assert!(
        paths
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "rec"))
    );
    for s in servers {
        s.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_the_operator_made_keeps_its_mode() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    std::fs::create_dir(&root)?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o750))?;
    let broker = Arc::new(MemoryBroker::new());
    let s = server::start(broker, &root, None, TIMEOUT).await?;
    assert_eq!(mode(&root)?, 0o750);
    assert_eq!(mode(&root.join("records"))?, 0o700);
    assert_eq!(mode(&root.join("server-id"))?, 0o600);
    s.shutdown().await?;
    Ok(())
}

/// The names in `dir`, sorted; none when it does not exist.
fn names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                out.push(entry?.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_refused_or_rolled_back_leaves_nothing_on_the_servers_disk() -> TestResult {
    let net = Net::new(Kind::Memory, 1).await?;
    let server = net.channel(0);
    let root = net.root(0);
    let store = RecordStore::open(&root)?;
    let pw = Password::new("p");
    let record = |tag: &str, version: u64| {
        seccs_net::sharing::split(tag, version, b"forged", &pw, &Kdf::INSECURE_FAST, 1, 1)
            .map(|mut r| r.remove(0))
    };
    // Version 0 is no version: refused as such, not as a version taken.
    let body = Body::Store {
        tag: "zero".into(),
        version: 0,
        record: record("zero", 0)?,
    };
    match ask_raw(&net.broker, &server, body).await? {
        Body::Refused { reason } => {
            assert_eq!(reason, NOT_A_VERSION_REASON);
            assert_ne!(reason, conflict_reason(0));
        }
        other => return Err(format!("unexpected answer {other:?}").into()),
    }
    // A store at a version the server held (its tag removed since) is
    // refused without the tag's directory coming back.
    let client = Client::new(
        net.broker.clone(),
        ClientOptions {
            timeout: TIMEOUT,
            kdf: Kdf::INSECURE_FAST,
            threshold: None,
            min_acks: None,
        },
    )
    .await?;
    client.save("removed", b"data", &pw).await?;
    client.remove("removed", None).await?;
    let body = Body::Store {
        tag: "removed".into(),
        version: 1,
        record: record("removed", 1)?,
    };
    match ask_raw(&net.broker, &server, body).await? {
        Body::Refused { reason } => assert_eq!(reason, conflict_reason(1)),
        other => return Err(format!("unexpected answer {other:?}").into()),
    }
    // A store rolled back after it was stored takes nothing with it: the
    // tag had no version before, and has no trace after.
    let forged = record("gone", 1)?;
    let file_id = seccs_net::record::file_id_of(&forged)?;
    let body = Body::Store {
        tag: "gone".into(),
        version: 1,
        record: forged,
    };
    match ask_raw(&net.broker, &server, body).await? {
        Body::Stored => {}
        other => return Err(format!("unexpected answer {other:?}").into()),
    }
    let body = Body::Rollback {
        tag: "gone".into(),
        version: 1,
        file_id,
    };
    match ask_raw(&net.broker, &server, body).await? {
        Body::Deleted { removed: 1 } => {}
        other => return Err(format!("unexpected answer {other:?}").into()),
    }
    // No tag directory is left, and only the removed tag's highest version
    // is remembered (as it must be).
    assert!(
        names(&root.join("records"))?.is_empty(),
        "{:?}",
        names(&root.join("records"))?
    );
    let removed = store.highest_path("removed");
    let highest = names(&root.join("highest"))?;
    assert_eq!(
        highest,
        [removed
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()]
    );
    assert_eq!(store.highest("removed"), 1);
    assert_eq!(store.highest("gone"), 0);
    Ok(())
}
