//! A share server's files are private: a record is a share of a
//! password-encrypted file, not for other users of the machine to read.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::{TIMEOUT, TestResult};
use seccs_net::broker::MemoryBroker;
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
