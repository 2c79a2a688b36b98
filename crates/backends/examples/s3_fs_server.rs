//! A local S3-compatible server (`s3s-fs`, objects as files in a directory)
//! for trying and benchmarking the S3 backend on loopback, the same server
//! the conformance tests start in process:
//!
//! ```text
//! cargo run --release -p seccs-backends --example s3_fs_server -- DIR PORT
//! AWS_ACCESS_KEY_ID=seccs AWS_SECRET_ACCESS_KEY=seccs-local-secret \
//!   seccs bench --backend 's3://bench/run?endpoint=http://127.0.0.1:PORT&region=us-east-1'
//! ```
//!
//! It creates the bucket `bench` in DIR, accepts the credentials in
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (default `seccs` /
//! `seccs-local-secret`), listens on 127.0.0.1 only, and stops on Ctrl-C.
//! Conditional writes (`If-None-Match: *`, `If-Match`) are atomic: every
//! write to an object is made under a lock of that object, from its
//! condition check to its end (`s3s-fs` alone checks, then writes, and two
//! writers' creates of one writer lease could both succeed).

use std::error::Error;
use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

// The tests' server is this one too.
#[path = "../tests/support/serial_s3.rs"]
mod serial_s3;

const USAGE: &str = "usage: s3_fs_server DIR PORT";

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or(USAGE)?);
    let port: u16 = args.next().ok_or(USAGE)?.parse().map_err(|_| USAGE)?;
    std::fs::create_dir_all(dir.join("bench"))?;
    let access = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "seccs".into());
    let secret =
        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "seccs-local-secret".into());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let fs = s3s_fs::FileSystem::new(&dir).map_err(|e| format!("s3s-fs: {e:?}"))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(serial_s3::SerialFs::new(fs));
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            access.as_str(),
            secret.as_str(),
        ));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!(
            "s3s-fs: serving {} on http://127.0.0.1:{port} (bucket `bench`)",
            dir.display()
        );
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    let conn = http
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        Ok::<(), Box<dyn Error>>(())
    })
}
