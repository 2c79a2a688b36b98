//! `seccs kms …`: the key service. A thin layer over `seccs-kms`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use seccs_kms::api::MAX_ITEM_PLAINTEXT;
use seccs_kms::client::{self, BlockingClient, ClientConfig, LocalFacility};
use seccs_kms::lifecycle::KeyState;
use seccs_kms::server::{self, ServerConfig};

/// Arguments of `seccs kms`.
#[derive(Debug, Args)]
pub struct KmsArgs {
    #[command(subcommand)]
    command: KmsCommand,
}

/// How to reach and trust the key server.
#[derive(Debug, Args)]
struct Conn {
    /// The key server, e.g. https://127.0.0.1:8080.
    #[arg(long, env = "SECCS_KMS_URL", default_value = "https://127.0.0.1:8080")]
    server: String,
    /// Trust the CA certificates in this PEM file (the server's DIR/tls/ca.pem).
    #[arg(long, env = "SECCS_KMS_CA", conflicts_with = "pin")]
    ca: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint.
    #[arg(long, env = "SECCS_KMS_PIN")]
    pin: Option<String>,
    /// The management bearer token (the server's DIR/token).
    #[arg(long, env = "SECCS_KMS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the management bearer token from this file.
    #[arg(long, env = "SECCS_KMS_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Allow plain http:// to a loopback address (never to another host).
    #[arg(long)]
    insecure_loopback_http: bool,
}

impl Conn {
    fn config(&self) -> anyhow::Result<ClientConfig> {
        let mut c = ClientConfig::new(&self.server);
        if let Some(ca) = &self.ca {
            c = c.with_ca_file(ca);
        }
        if let Some(pin) = &self.pin {
            c = c.with_pin(pin)?;
        }
        if let Some(t) = &self.token {
            c = c.with_token(t.trim());
        }
        if let Some(f) = &self.token_file {
            let t =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            c = c.with_token(t.trim());
        }
        c.allow_loopback_http = self.insecure_loopback_http;
        c.validate()?;
        Ok(c)
    }

    fn client(&self) -> anyhow::Result<BlockingClient> {
        Ok(BlockingClient::new(&self.config()?)?)
    }
}

/// Where data comes from and goes to.
#[derive(Debug, Args)]
struct Io {
    /// Input file (default: standard input).
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Output file (default: standard output). Nothing is written unless
    /// the whole input was processed: a regular file appears by a synced
    /// rename; standard output, a device or a named pipe is fed from an
    /// encrypted spool at the end (never replaced); a symbolic link is
    /// written through.
    #[arg(long = "out", value_name = "FILE")]
    output: Option<PathBuf>,
    /// The encryption context (associated data); decryption needs the same.
    #[arg(long, default_value = "")]
    context: String,
}

#[derive(Debug, Subcommand)]
enum KmsCommand {
    /// Run the key server over HTTPS until SIGINT or SIGTERM.
    Serve {
        /// Storage directory, made 0700 if missing: `keys/` (DEK files,
        /// each sealed), `named/` (named keys), `root.key` (the key that
        /// seals them: back it up with the rest, keep it as secret as the
        /// keys), `token` (the management token), `audit.log`, and `tls/`
        /// (the certificate made when --cert is not given).
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Certificate chain (PEM); without it a certificate is created in DIR/tls.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Private key (PEM) of --cert.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Largest request body in bytes (larger: 413).
        #[arg(long, default_value_t = 1 << 20)]
        max_body: usize,
    },
    /// Create a KEK/DEK pair on the server; writes the KEK (the caller keeps it).
    New {
        #[command(flatten)]
        conn: Conn,
        /// Write the KEK (32 raw bytes, mode 0600) to this new file instead of
        /// printing it as hex.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fetch the DEK of a KEK (printed as hex).
    Key {
        #[command(flatten)]
        conn: Conn,
        /// The KEK file (32 raw bytes or 64 hex digits).
        #[arg(long)]
        kek: PathBuf,
    },
    /// Encrypt a file or stream: locally under the DEK of --kek (segmented
    /// stream format), or on the server under the named key --name.
    #[command(group(clap::ArgGroup::new("key").required(true).args(["kek", "name"])))]
    Encrypt {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        io: Io,
        /// Encrypt locally with the DEK of this KEK file.
        #[arg(long, conflicts_with = "name")]
        kek: Option<PathBuf>,
        /// Encrypt on the server with this named key (input ≤ 256 KiB; larger
        /// input is refused: use --kek for files).
        #[arg(long)]
        name: Option<String>,
    },
    /// Decrypt what `encrypt` produced (same --kek or --name and --context).
    #[command(group(clap::ArgGroup::new("key").required(true).args(["kek", "name"])))]
    Decrypt {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        io: Io,
        /// Decrypt locally with the DEK of this KEK file.
        #[arg(long, conflicts_with = "name")]
        kek: Option<PathBuf>,
        /// Decrypt on the server with this named key.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show the server's status (seed status line and key counts).
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a named key (management token).
    Create {
        #[command(flatten)]
        conn: Conn,
        /// The key name (A-Z a-z 0-9 - _ .).
        name: String,
        /// Create it in pre-activation instead of active.
        #[arg(long)]
        pre_activation: bool,
    },
    /// List named keys (management token).
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a named key's versions, state and transition times (JSON).
    Info {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
    },
    /// Add a version to a named key; new ciphertexts use it.
    Rotate {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
    },
    /// Move a named key to a lifecycle state: pre-activation, active,
    /// suspended, deactivated, compromised, destroyed (erases the material).
    State {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
        /// The new state.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(
            KeyState::ALL.map(KeyState::as_str)
        ))]
        state: String,
    },
    /// Refuse decryption with versions below N.
    MinVersion {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
        /// The minimum decryption version.
        version: u32,
    },
    /// Re-encrypt a ciphertext to the newest version of a named key without
    /// revealing the plaintext.
    Rewrap {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        io: Io,
        /// The key name.
        name: String,
    },
    /// Generate a data key: prints JSON with the key and its wrapped form (hex).
    Datakey {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
        /// The encryption context of the wrapped form.
        #[arg(long, default_value = "")]
        context: String,
    },
}

fn read_input(io: &Io) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    match &io.input {
        Some(p) => {
            data = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut data)
                .context("cannot read standard input")?;
        }
    }
    Ok(data)
}

fn write_output(io: &Io, data: &[u8]) -> anyhow::Result<()> {
    crate::output::write_bytes(io.output.as_deref(), data)
}

fn load_kek(path: &Path) -> anyhow::Result<seccs_core::SecretKey> {
    // The library names the path only where the file cannot be opened.
    client::load_kek(path).with_context(|| format!("cannot read the KEK file {}", path.display()))
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn local_stream(conn: &Conn, io: &Io, kek: &Path, encrypt: bool) -> anyhow::Result<()> {
    let local = LocalFacility::new(&conn.config()?)?;
    let kek = load_kek(kek)?;
    let ctx = io.context.as_bytes();
    let mut input = Input {
        inner: match &io.input {
            Some(p) => Box::new(
                std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            ),
            None => Box::new(std::io::stdin().lock()),
        },
        failed: false,
    };
    let source = match &io.input {
        Some(p) => p.display().to_string(),
        None => "standard input".to_owned(),
    };
    // A stream is authenticated segment by segment and whole only at its
    // end (truncation): nothing reaches the output before. Every output,
    // file or not, goes through `write_output`: a regular file appears by
    // a synced rename; a device, a named pipe or a link's target is
    // written in place, never replaced.
    crate::output::write_output(io.output.as_deref(), |mut output| {
        let r = if encrypt {
            local.encrypt_stream(&kek, ctx, &mut input, &mut output)
        } else {
            local.decrypt_stream(&kek, ctx, &mut input, &mut output)
        };
        if input.failed {
            r.with_context(|| format!("cannot read {source}"))?;
        } else {
            r?;
        }
        Ok(())
    })
}

/// The input of a stream, remembering whether a read failed, so that its
/// error can name the input rather than only say "stream I/O failed".
struct Input {
    inner: Box<dyn Read>,
    failed: bool,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        if let Err(e) = &r
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            self.failed = true;
        }
        r
    }
}

fn named_one(c: &BlockingClient, name: &str, op: &str, io: &Io) -> anyhow::Result<()> {
    let data = read_input(io)?;
    if op == "encrypt" && data.len() > MAX_ITEM_PLAINTEXT {
        anyhow::bail!(
            "input is {} bytes; the server encrypts at most {} KiB per item: use --kek for files",
            data.len(),
            MAX_ITEM_PLAINTEXT / 1024
        );
    }
    let items: [(&[u8], &[u8]); 1] = [(&data, io.context.as_bytes())];
    let mut results = c.run(|k| async move {
        match op {
            "encrypt" => k.encrypt(name, &items).await,
            "decrypt" => k.decrypt(name, &items).await,
            _ => k.rewrap(name, &items).await,
        }
    })?;
    let out = results.pop().context("the server answered no result")??;
    write_output(io, &out)
}

/// Runs `seccs kms`.
pub fn run(args: KmsArgs) -> anyhow::Result<()> {
    match args.command {
        KmsCommand::Serve {
            dir,
            listen,
            cert,
            key,
            max_body,
        } => {
            crate::init_tracing("info");
            let mut cfg = ServerConfig::new(&dir);
            cfg.listen = listen;
            cfg.cert = cert;
            cfg.key = key;
            cfg.max_body = max_body;
            server::serve_blocking(cfg, |s| {
                errln!("seccs kms listening on {}", s.url());
                errln!("certificate: {}", s.cert().cert_path.display());
                if let Some(ca) = &s.cert().ca_path {
                    errln!("CA file (for --ca): {}", ca.display());
                }
                errln!("SHA-256 fingerprint (for --pin): {}", s.cert().fingerprint);
                if let Some(t) = s.token_path() {
                    errln!("management token file: {}", t.display());
                }
            })?;
        }
        KmsCommand::New { conn, out } => {
            // The KEK file's temporary file is created before the server
            // creates the key, so a destination that cannot be written
            // (taken, read-only, missing, a directory path) leaves no key
            // that no one holds the KEK of.
            let file = out.as_deref().map(client::KekFile::create).transpose()?;
            // An interrupt while the server is asked removes it too.
            let _registered = file
                .as_ref()
                .map(|f| crate::interrupt::register(f.temporary_path()));
            let kek = conn.client()?.run(|c| c.new_kek())?;
            match file {
                Some(file) => {
                    let path = file.path().to_owned();
                    file.write(&kek).with_context(|| {
                        format!(
                            "the server created a key, but its KEK could not be saved to {}",
                            path.display()
                        )
                    })?;
                    errln!("KEK written to {}", path.display());
                }
                None => {
                    // Not an I/O error any more: a closed pipe here loses a
                    // key, it is not the benign end of `… | head`.
                    outln!("{}", seccs_core::hexenc::encode(kek.expose_secret())).map_err(
                        |e| {
                            anyhow::anyhow!(
                                "the server created a key, but its KEK could not be written to standard output ({e}): that key is lost; create another with --out FILE"
                            )
                        },
                    )?;
                }
            }
        }
        KmsCommand::Key { conn, kek } => {
            let kek = load_kek(&kek)?;
            let dek = conn.client()?.run(|c| c.dek(&kek))?;
            outln!("{}", seccs_core::hexenc::encode(dek.expose_secret()))?;
        }
        KmsCommand::Encrypt {
            conn,
            io,
            kek,
            name,
        } => match (kek, name) {
            (Some(kek), _) => local_stream(&conn, &io, &kek, true)?,
            (None, Some(name)) => named_one(&conn.client()?, &name, "encrypt", &io)?,
            (None, None) => anyhow::bail!("give --kek FILE or --name NAME"),
        },
        KmsCommand::Decrypt {
            conn,
            io,
            kek,
            name,
        } => match (kek, name) {
            (Some(kek), _) => local_stream(&conn, &io, &kek, false)?,
            (None, Some(name)) => named_one(&conn.client()?, &name, "decrypt", &io)?,
            (None, None) => anyhow::bail!("give --kek FILE or --name NAME"),
        },
        KmsCommand::Status { conn } => {
            let c = conn.client()?;
            outln!("{}", c.run(|k| k.status_text())?)?;
            print_json(&c.run(|k| k.status())?)?;
        }
        KmsCommand::Create {
            conn,
            name,
            pre_activation,
        } => {
            let state = if pre_activation {
                KeyState::PreActivation
            } else {
                KeyState::Active
            };
            print_json(&conn.client()?.run(|k| k.create_key(&name, state))?)?;
        }
        KmsCommand::List { conn } => {
            for n in conn.client()?.run(|k| k.list_keys())? {
                outln!("{n}")?;
            }
        }
        KmsCommand::Info { conn, name } => {
            print_json(&conn.client()?.run(|k| k.key_info(&name))?)?;
        }
        KmsCommand::Rotate { conn, name } => {
            print_json(&conn.client()?.run(|k| k.rotate(&name))?)?;
        }
        KmsCommand::State { conn, name, state } => {
            let state: KeyState = state.parse()?;
            print_json(&conn.client()?.run(|k| k.set_state(&name, state))?)?;
        }
        KmsCommand::MinVersion {
            conn,
            name,
            version,
        } => {
            print_json(
                &conn
                    .client()?
                    .run(|k| k.set_min_decrypt_version(&name, version))?,
            )?;
        }
        KmsCommand::Rewrap { conn, io, name } => {
            named_one(&conn.client()?, &name, "rewrap", &io)?;
        }
        KmsCommand::Datakey {
            conn,
            name,
            context,
        } => {
            let mut keys = conn
                .client()?
                .run(|k| k.datakeys(&name, 1, context.as_bytes()))?;
            let (key, wrapped) = keys.pop().context("the server answered no data key")?;
            print_json(&serde_json::json!({
                "plaintext": seccs_core::hexenc::encode(key.expose_secret()),
                "ciphertext": seccs_core::hexenc::encode(&wrapped),
            }))?;
        }
    }
    Ok(())
}
