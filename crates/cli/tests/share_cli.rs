//! `seccs share` as an operator runs it: a real `redis-server` on a free
//! loopback port, three `seccs share serve` processes, and the client
//! commands save, ls, serv, load and rm, with their JSON listings.

mod common;

use common::{Killed, free_port, ok, run};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn redis(dir: &Path) -> (Killed, u16) {
    common::redis_server(dir, &[])
}

fn seccs(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
    c.env("HOME", home).env_remove("SECCS_SHARE_PASSWORD");
    c
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// The client side of the test: its config, password file and home.
struct Network {
    home: PathBuf,
    config: PathBuf,
    password: PathBuf,
}

impl Network {
    fn client(&self, args: &[&str]) -> Command {
        let mut c = seccs(&self.home);
        c.arg("share").args(args).arg("--config").arg(&self.config);
        c
    }

    fn with_password(&self, args: &[&str]) -> Command {
        let mut c = self.client(args);
        c.arg("--password-file").arg(&self.password);
        c
    }

    /// `share serv --json`, polled until `n` servers answer (bounded).
    fn wait_for_servers(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = run(&mut self.client(&["serv", "--json"]));
            if out.status.success() {
                let servers = json_lines(&String::from_utf8_lossy(&out.stdout));
                if servers.len() == n {
                    return servers;
                }
            }
            assert!(Instant::now() < deadline, "{n} servers never came online");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn save_ls_serv_load_and_rm_across_three_servers_on_redis() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = format!(
        "broker = \"redis://127.0.0.1:{port}\"\ntimeout_secs = 10\n\
         [kdf]\nalgorithm = \"argon2id\"\nmemory_kib = 8\niterations = 1\nparallelism = 1\n"
    );
    let mut servers = Vec::new();
    for i in 0..3 {
        let root = tmp.path().join(format!("server{i}"));
        std::fs::create_dir_all(&root).expect("mkdir");
        // The third names itself with a control sequence, which `serv`
        // must not send to a terminal.
        let name = match i {
            2 => "s2\\u001b]0;title\\u0007".to_owned(),
            i => format!("s{i}"),
        };
        std::fs::write(
            root.join("seccs-share.toml"),
            format!("name = \"{name}\"\n{common}"),
        )
        .expect("server config");
        let log = std::fs::File::create(tmp.path().join(format!("server{i}.log"))).expect("log");
        let child = seccs(tmp.path())
            .args(["share", "serve", "--root"])
            .arg(&root)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("seccs share serve");
        servers.push(Killed(child));
    }
    let net = Network {
        home: tmp.path().to_path_buf(),
        config: tmp.path().join("client.toml"),
        password: tmp.path().join("password"),
    };
    std::fs::write(&net.config, &common).expect("client config");
    std::fs::write(&net.password, "correct horse\n").expect("password");

    let listed = net.wait_for_servers(3);
    let mut names: Vec<&str> = listed.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["s0", "s1", "s2\u{1b}]0;title\u{7}"]);
    assert!(listed.iter().all(|s| s["records"] == 0), "{listed:?}");
    let text = ok(&mut net.client(&["serv"]));
    assert!(
        text.contains("\ts2\\u{1b}]0;title\\u{7}\t") && !text.contains('\u{1b}'),
        "{text}"
    );
    // A server logs its start (channel, name, root) to standard error.
    let log = std::fs::read_to_string(tmp.path().join("server0.log")).expect("server log");
    let channel_logged = listed
        .iter()
        .filter_map(|s| s["channel"].as_str())
        .any(|c| log.contains(c));
    assert!(
        log.contains("share server started")
            && channel_logged
            && log.contains(&tmp.path().join("server0").display().to_string()),
        "{log}"
    );

    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let input = tmp.path().join("input.bin");
    std::fs::write(&input, &data).expect("input");
    let saved = ok(net.with_password(&["save", "docs/report"]).arg(&input));
    assert!(
        saved.contains("docs/report@1") && saved.contains("3 of 3"),
        "{saved}"
    );

    let tags = json_lines(&ok(&mut net.client(&["ls", "docs/", "--json"])));
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(tags[0]["tag"], "docs/report");
    assert_eq!(tags[0]["versions"][0]["version"], 1);
    assert_eq!(tags[0]["versions"][0]["servers"], 3);
    let text = ok(&mut net.client(&["ls"]));
    assert!(text.contains("docs/report\t@1 on 3 servers"), "{text}");
    // A prefix no tag starts with lists nothing, and says so apart from
    // the listing; --json lists nothing and says nothing.
    let none = run(&mut net.client(&["ls", "mail/"]));
    assert!(none.status.success());
    assert_eq!(
        (none.stdout.as_slice(), stderr_of(&none).trim()),
        (&b""[..], "note: no tags start with \"mail/\"")
    );
    let none = run(&mut net.client(&["ls", "mail/", "--json"]));
    assert!(none.status.success() && none.stdout.is_empty() && none.stderr.is_empty());
    let after = net.wait_for_servers(3);
    assert!(after.iter().all(|s| s["records"] == 1), "{after:?}");
    // A check reads every server's record: all three authentic.
    let checked = json_lines(&ok(net
        .with_password(&["check", "--json"])
        .arg("docs/report")));
    assert_eq!(checked.len(), 1, "{checked:?}");
    assert_eq!(
        (
            &checked[0]["version"],
            &checked[0]["n"],
            &checked[0]["t"],
            &checked[0]["whole"]
        ),
        (&1.into(), &3.into(), &2.into(), &true.into()),
        "{checked:?}"
    );
    assert_eq!(checked[0]["authentic"].as_array().map(Vec::len), Some(3));
    // A server is said as `serv --json` says it, by channel and name, so
    // that a script can join the two.
    let mut authentic: Vec<(String, String)> = checked[0]["authentic"]
        .as_array()
        .expect("authentic")
        .iter()
        .map(|s| (s["channel"].to_string(), s["name"].to_string()))
        .collect();
    let mut online: Vec<(String, String)> = net
        .wait_for_servers(3)
        .iter()
        .map(|s| (s["channel"].to_string(), s["name"].to_string()))
        .collect();
    authentic.sort();
    online.sort();
    assert_eq!(authentic, online, "{checked:?}");
    // Without a tag, every tag listed is checked, its newest version.
    let all = json_lines(&ok(&mut net.with_password(&["check", "--json"])));
    assert!(
        all.len() == 1 && all[0]["tag"] == "docs/report" && all[0]["whole"] == true,
        "{all:?}"
    );

    // SECCS_SHARE_PASSWORD is bytes: a value that is not UTF-8 is the
    // password, exactly (a file of those bytes loads the save; the UTF-8
    // spelling of the same text does not), and the variable is not passed
    // over for a prompt.
    let latin1 = || std::ffi::OsString::from_vec(b"caf\xe9".to_vec());
    ok(net
        .client(&["save", "bytes/pw"])
        .env("SECCS_SHARE_PASSWORD", latin1())
        .stdin(Stdio::null())
        .arg(&input));
    let pw_bytes = tmp.path().join("pw-bytes");
    std::fs::write(&pw_bytes, b"caf\xe9\n").expect("password");
    let back = tmp.path().join("back.bin");
    ok(net
        .client(&["load", "bytes/pw"])
        .arg("--password-file")
        .arg(&pw_bytes)
        .arg(&back));
    assert_eq!(std::fs::read(&back).expect("loaded"), data);
    std::fs::write(&pw_bytes, "caf\u{e9}\n").expect("password");
    let wrong = run(net
        .client(&["load", "bytes/pw"])
        .arg("--password-file")
        .arg(&pw_bytes)
        .arg(tmp.path().join("wrong.bin")));
    assert!(!wrong.status.success());
    ok(net
        .client(&["load", "bytes/pw"])
        .env("SECCS_SHARE_PASSWORD", latin1())
        .stdin(Stdio::null())
        .arg(tmp.path().join("again.bin")));
    ok(&mut net.client(&["rm", "bytes/pw"]));

    // A file larger than a save carries (each share must fit in one 1 GiB
    // message; with t = 2, about 2 GiB) is refused before it is read: a
    // sparse 3 GiB file, one clear line, nothing saved.
    let huge = tmp.path().join("huge.bin");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(3 << 30))
        .expect("sparse file");
    let refused = run(net.with_password(&["save", "huge"]).arg(&huge));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("huge.bin is 3221225472 bytes, more than a save")
            && err.contains("--threshold"),
        "{err}"
    );
    assert_eq!(json_lines(&ok(&mut net.client(&["ls", "--json"]))).len(), 1);

    // Any two of the three rebuild it: stop one server and load.
    drop(servers.pop());
    net.wait_for_servers(2);
    let out = tmp.path().join("out.bin");
    ok(net.with_password(&["load", "docs/report"]).arg(&out));
    assert_eq!(std::fs::read(&out).expect("loaded"), data);
    // A check says a record is gone, and fails, though the file rebuilds.
    let checked = run(&mut net.with_password(&["check", "docs/report@1"]));
    let (said, err) = (
        String::from_utf8_lossy(&checked.stdout),
        stderr_of(&checked),
    );
    assert_eq!(checked.status.code(), Some(1), "a finding: {said}");
    assert!(
        said.starts_with("docs/report@1: 2 of the 3 records its save made are authentic")
            && said.matches("  authentic ").count() == 2,
        "{said}"
    );
    assert!(
        err.contains("docs/report@1 is not whole")
            && err.contains("it still rebuilds, as 2 are enough"),
        "{err}"
    );

    let all = run(&mut net.with_password(&["check"]));
    let err = stderr_of(&all);
    assert_eq!(all.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: docs/report: docs/report@1 is not whole")
            && err.contains("1 of the 1 tags checked is not whole or did not rebuild"),
        "{err}"
    );
    // With --json, the tag that is not whole is one object, its report
    // ("whole": false), and the exit status still says it is not whole.
    let all = run(&mut net.with_password(&["check", "--json"]));
    assert_eq!(all.status.code(), Some(1), "{}", stderr_of(&all));
    let lines = json_lines(&String::from_utf8_lossy(&all.stdout));
    assert!(
        lines.len() == 1 && lines[0]["tag"] == "docs/report" && lines[0]["whole"] == false,
        "{lines:?}"
    );
    // An output that cannot be written is refused before any server is
    // asked: the error is the output's, not that no such tag is held.
    let nowhere = tmp.path().join("missing").join("out.bin");
    let refused = run(net.with_password(&["load", "no/such/tag"]).arg(&nowhere));
    let err = stderr_of(&refused);
    assert!(!refused.status.success());
    assert!(
        err.contains(&format!("cannot write {}", nowhere.display()))
            && err.contains("does not exist")
            && !err.contains("no/such/tag"),
        "{err}"
    );
    // A wrong password loads nothing and leaves no file, and an existing
    // file is left as it was.
    std::fs::write(&net.password, "wrong\n").expect("password");
    let bad = tmp.path().join("bad.bin");
    let failed = run(net.with_password(&["load", "docs/report"]).arg(&bad));
    assert!(!failed.status.success());
    assert!(!bad.exists());
    let failed = run(net.with_password(&["load", "docs/report"]).arg(&out));
    assert!(!failed.status.success());
    assert_eq!(std::fs::read(&out).expect("kept"), data);
    let failed = run(&mut net.with_password(&["check", "docs/report"]));
    // A check the password does not open did not run: exit 2, not a
    // finding, for one tag or for every tag.
    assert_eq!(failed.status.code(), Some(2), "{}", stderr_of(&failed));
    assert!(
        stderr_of(&failed).contains("cannot decrypt docs/report@1"),
        "{}",
        stderr_of(&failed)
    );
    let all = run(&mut net.with_password(&["check", "--json"]));
    assert_eq!(all.status.code(), Some(2), "{}", stderr_of(&all));
    let lines = json_lines(&String::from_utf8_lossy(&all.stdout));
    assert!(
        lines.len() == 2
            && lines[0]["tag"] == "docs/report"
            && lines[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot decrypt"))
            && lines[1]["exit"] == 2
            && lines[1]["error"]
                .as_str()
                .is_some_and(|e| e.contains("1 of the 1 tags could not be checked")),
        "{lines:?}"
    );
    // One server of three left: the file no longer rebuilds, the check's
    // gravest finding (exit 1), one JSON object for the tag.
    std::fs::write(&net.password, "correct horse\n").expect("password");
    drop(servers.pop());
    net.wait_for_servers(1);
    let lost = run(&mut net.with_password(&["check", "docs/report", "--json"]));
    assert_eq!(lost.status.code(), Some(1), "{}", stderr_of(&lost));
    let lines = json_lines(&String::from_utf8_lossy(&lost.stdout));
    assert!(
        lines.len() == 1
            && lines[0]["tag"] == "docs/report"
            && lines[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("valid share")),
        "{lines:?}"
    );

    ok(&mut net.client(&["rm", "docs/report"]));
    assert!(ok(&mut net.client(&["ls", "--json"])).trim().is_empty());
}

#[test]
fn serv_without_servers_and_an_unreachable_broker_fail_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let net = Network {
        home: tmp.path().to_path_buf(),
        config: tmp.path().join("client.toml"),
        password: tmp.path().join("password"),
    };
    std::fs::write(
        &net.config,
        format!("broker = \"redis://127.0.0.1:{port}\"\ntimeout_secs = 5\n"),
    )
    .expect("client config");
    // No server online: `serv` fails like `ls`, it does not print nothing.
    for args in [&["serv"][..], &["ls"][..]] {
        let out = run(&mut net.client(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains("no share server is online"), "{args:?}: {err}");
    }
    // Nothing listens on the port: the error names the URL and the reason.
    let dead = free_port();
    std::fs::write(
        &net.config,
        format!("broker = \"redis://127.0.0.1:{dead}\"\ntimeout_secs = 5\n"),
    )
    .expect("client config");
    let out = run(&mut net.client(&["serv"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "cannot connect to the broker at redis://127.0.0.1:{dead}"
        )) && err.to_lowercase().contains("refused"),
        "{err}"
    );
    // The same for NATS.
    std::fs::write(
        &net.config,
        format!("broker = \"nats://127.0.0.1:{dead}\"\ntimeout_secs = 5\n"),
    )
    .expect("client config");
    let out = run(&mut net.client(&["serv"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "cannot connect to the broker at nats://127.0.0.1:{dead}"
        )) && err.to_lowercase().contains("refused")
            && !err.contains("IO error"),
        "{err}"
    );
    // min_acks below the threshold is refused when the config is read.
    std::fs::write(
        &net.config,
        format!("broker = \"redis://127.0.0.1:{port}\"\nthreshold = 2\nmin_acks = 1\n"),
    )
    .expect("client config");
    let out = run(&mut net.client(&["ls"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("min_acks = 1 is below threshold = 2"), "{err}");
}

/// Starts share server `i` (root `tmp/server{i}`, name `s{i}`) on the
/// broker that `common` (config lines for servers and client alike) names.
fn spawn_server(tmp: &Path, common: &str, i: usize) -> Killed {
    let root = tmp.join(format!("server{i}"));
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(
        root.join("seccs-share.toml"),
        format!("name = \"s{i}\"\n{common}"),
    )
    .expect("server config");
    let child = seccs(tmp)
        .args(["share", "serve", "--root"])
        .arg(&root)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("seccs share serve");
    Killed(child)
}

/// Starts `n` share servers on the broker that `common` (config lines for
/// servers and client alike) names; the client config is written too.
/// A network config for the Redis on `port`, with `extra` settings and a
/// KDF strong enough for a store key (the key floor) yet quick in tests.
fn key_strength_config(port: u16, extra: &str) -> String {
    format!(
        "broker = \"redis://127.0.0.1:{port}\"\ntimeout_secs = 10\n{extra}[kdf]\n\
         algorithm = \"argon2id\"\nmemory_kib = 19456\niterations = 2\nparallelism = 1\n"
    )
}

fn start_servers(tmp: &Path, common: &str, n: usize) -> (Vec<Killed>, Network) {
    let servers = (0..n).map(|i| spawn_server(tmp, common, i)).collect();
    let net = Network {
        home: tmp.to_path_buf(),
        config: tmp.join("client.toml"),
        password: tmp.join("password"),
    };
    std::fs::write(&net.config, common).expect("client config");
    std::fs::write(&net.password, "correct horse\n").expect("password");
    net.wait_for_servers(n);
    (servers, net)
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The review's scenario: `save --threshold 2 tie1 A` on 5 servers; 3 go
/// offline; `rm tie1` reaches 2; `save tie1 B`; the 3 come back. B is
/// tie1@2 and `load tie1` returns it, every time; `rm` said that servers
/// offline may still hold tie1. Then a save with a mistyped password: the
/// next `load tie1` fails naming tie1@3, and `--or-older` loads tie1@2.
#[test]
fn a_version_removed_while_servers_were_offline_is_never_reused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = format!(
        "broker = \"redis://127.0.0.1:{port}\"\ntimeout_secs = 10\n\
         [kdf]\nalgorithm = \"argon2id\"\nmemory_kib = 8\niterations = 1\nparallelism = 1\n"
    );
    let (mut servers, net) = start_servers(tmp.path(), &common, 5);
    // One server per root: a second on server0's root is refused.
    let second = run(seccs(tmp.path())
        .args(["share", "serve", "--root"])
        .arg(tmp.path().join("server0")));
    let err = stderr_of(&second);
    assert!(!second.status.success());
    assert!(
        err.starts_with(&format!(
            "seccs: {} is in use by another share server (pid ",
            tmp.path().join("server0").display()
        )),
        "{err}"
    );

    let a = tmp.path().join("a.txt");
    let b = tmp.path().join("b.txt");
    std::fs::write(&a, "A: the removed content\n").expect("a");
    std::fs::write(&b, "B: saved after the rm\n").expect("b");
    let saved = ok(net
        .with_password(&["save", "--threshold", "2", "tie1"])
        .arg(&a));
    assert!(saved.contains("tie1@1: 5 of 5"), "{saved}");
    servers.truncate(2); // the other three stop
    net.wait_for_servers(2);
    let rm = run(&mut net.client(&["rm", "tie1"]));
    assert!(rm.status.success(), "{}", stderr_of(&rm));
    let said = String::from_utf8_lossy(&rm.stdout);
    let warned = stderr_of(&rm);
    assert!(
        said.contains("removed tie1 from 2 of the 2 servers online"),
        "{said}"
    );
    assert!(
        warned.contains("was saved to 5 servers and 2 removed it: the other 3")
            && warned.contains("comes back when they return"),
        "{warned}"
    );
    let saved = ok(net.with_password(&["save", "tie1"]).arg(&b));
    assert!(saved.contains("tie1@2: 2 of 2"), "{saved}");
    for i in 2..5 {
        servers.push(spawn_server(tmp.path(), &common, i));
    }
    net.wait_for_servers(5);
    let out = tmp.path().join("out.txt");
    for _ in 0..3 {
        let _ = std::fs::remove_file(&out);
        ok(net.with_password(&["load", "tie1"]).arg(&out));
        assert_eq!(
            std::fs::read_to_string(&out).expect("out"),
            "B: saved after the rm\n"
        );
    }
    ok(net.with_password(&["load", "tie1@1"]).arg(&out));
    assert_eq!(
        std::fs::read_to_string(&out).expect("out"),
        "A: the removed content\n"
    );
    let listed = ok(&mut net.client(&["ls", "tie1"]));
    assert!(
        listed.contains("tie1\t@1 on 3 servers, @2 on 2 servers"),
        "{listed}"
    );

    // A save with a mistyped password: `load tie1` fails, exit 1, naming
    // the version and the ways to an older one; nothing is written.
    let typo = tmp.path().join("typo");
    std::fs::write(&typo, "correct hose\n").expect("typo");
    let saved = ok(net
        .client(&["save", "tie1"])
        .arg(&b)
        .arg("--password-file")
        .arg(&typo));
    assert!(saved.contains("tie1@3"), "{saved}");
    let strict = tmp.path().join("strict.txt");
    let failed = run(net.with_password(&["load", "tie1"]).arg(&strict));
    let err = stderr_of(&failed);
    assert_eq!(failed.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tie1@3, the newest version of \"tie1\", cannot be rebuilt")
            && err.contains("wrong password")
            && err.contains("tie1@2")
            && err.contains("--or-older"),
        "{err}"
    );
    assert!(!strict.exists());
    let older = run(net
        .with_password(&["load", "--or-older", "tie1"])
        .arg(&strict));
    let err = stderr_of(&older);
    assert!(older.status.success(), "{err}");
    assert!(
        err.contains("warning: tie1@3 could not be rebuilt") && err.contains("tie1@2"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&strict).expect("strict"),
        "B: saved after the rm\n"
    );

    // The prompt, scripted on standard input: wrong argument counts say the
    // usage, `save TAG -` is refused (the commands are on stdin) and the
    // commands after it still run, a tag and files with spaces are given
    // quoted as in a shell, a quote left open is an error, the exit status
    // says a command failed, and no history is kept.
    let spaced = tmp.path().join("in put.txt");
    std::fs::write(&spaced, "saved from a spaced name\n").expect("spaced");
    let spaced_back = tmp.path().join("back copy.txt");
    let mut client = net.client(&["client"]);
    client
        .arg("--password-file")
        .arg(&net.password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = client.spawn().expect("share client");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        let quoted = format!(
            "bogus\nload tie1\nsave t2 -\nls tie1 extra\nls tie1\n\
             save 'my notes' \"{}\"\nload \"my notes\" '{}'\nls 'my notes\nls my\n",
            spaced.display(),
            spaced_back.display()
        );
        stdin.write_all(quoted.as_bytes()).expect("commands");
    }
    let script = child.wait_with_output().expect("share client");
    let err = stderr_of(&script);
    let said = String::from_utf8_lossy(&script.stdout);
    assert_eq!(script.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unknown command bogus")
            && err.contains("usage: load TAG[@N] FILE")
            && err.contains("save TAG -: standard input carries the commands")
            && err.contains("usage: ls [PREFIX]")
            && err.contains("error: a quote is not closed")
            && err.contains("5 commands failed"),
        "{err}"
    );
    assert!(said.contains("tie1\t@1 on 3 servers"), "{said}");
    assert!(
        said.contains("saved my notes@1:") && said.contains("my notes\t@1 on "),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(&spaced_back).expect("loaded by a quoted name"),
        "saved from a spaced name\n"
    );
    assert!(!tmp.path().join(".seccs-share/history").exists());
}

/// A save refuses an empty password from a file, and an empty
/// SECCS_SHARE_PASSWORD counts as unset: the save asks for the password,
/// which fails without a terminal. Nothing reaches a broker.
#[test]
fn an_empty_password_is_refused_for_a_save() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("client.toml");
    std::fs::write(&config, "broker = \"redis://127.0.0.1:1\"\n").expect("config");
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "x").expect("input");
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "\nsecond line\n").expect("empty");
    let out = run(seccs(tmp.path())
        .args(["share", "save", "t", "--config"])
        .arg(&config)
        .arg("--password-file")
        .arg(&empty)
        .arg(&input));
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("(its first line) is empty: a save needs a password"),
        "{err}"
    );
    // `setsid --wait`: no terminal to prompt on, even when the tests run
    // in one.
    let mut cmd = Command::new("setsid");
    cmd.arg("--wait")
        .arg(env!("CARGO_BIN_EXE_seccs"))
        .args(["share", "save", "t", "--config"])
        .arg(&config)
        .arg(&input)
        .env("HOME", tmp.path())
        .env("SECCS_SHARE_PASSWORD", "")
        .stdin(Stdio::null());
    let out = run(&mut cmd);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("cannot ask for the share password"), "{err}");
}

/// A password file that group or others can read is used, and said once,
/// naming the file and its mode, as a KEK file is; a 0600 one is not.
#[test]
fn a_password_file_others_can_read_is_warned_of_once() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("client.toml");
    std::fs::write(&config, "broker = \"redis://127.0.0.1:1\"\n").expect("config");
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "correct horse\n").expect("pw");
    let load = |mode: u32| {
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(mode)).expect("chmod");
        // The broker is unreachable: the load fails after the password.
        let out = run(seccs(tmp.path())
            .args(["share", "load", "t", "--config"])
            .arg(&config)
            .arg("--password-file")
            .arg(&pw)
            .arg(tmp.path().join("out")));
        assert!(!out.status.success());
        stderr_of(&out)
    };
    let err = load(0o644);
    let warning = format!(
        "seccs: warning: the password file {} can be read by others (mode 644)",
        pw.display()
    );
    assert_eq!(err.matches(&warning).count(), 1, "{err}");
    let err = load(0o600);
    assert!(!err.contains("warning"), "{err}");
}

/// A password file with anything after its first line (more lines, or
/// bytes after a line feed) is still used, its first line the password, and
/// said once on stderr naming the file; a line with one final line ending
/// (LF or CRLF), or none, is not.
#[test]
fn a_password_file_with_more_than_its_first_line_is_warned_of() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("client.toml");
    std::fs::write(&config, "broker = \"redis://127.0.0.1:1\"\n").expect("config");
    let pw = tmp.path().join("pw");
    let load = |bytes: &[u8]| {
        std::fs::write(&pw, bytes).expect("pw");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        // The broker is unreachable: the load fails after the password.
        let out = run(seccs(tmp.path())
            .args(["share", "load", "t", "--config"])
            .arg(&config)
            .arg("--password-file")
            .arg(&pw)
            .arg(tmp.path().join("out")));
        assert!(!out.status.success());
        stderr_of(&out)
    };
    let warning = format!(
        "seccs: warning: the password file {} holds more than one line: only its first line \
         is the password",
        pw.display()
    );
    for bytes in [
        &b"correct horse\nbattery staple\n"[..],
        b"correct horse\r\nsecond",
        b"correct horse\n\n",
        b"correct horse\n\x00\xff\x01",
    ] {
        let err = load(bytes);
        assert_eq!(err.matches(&warning).count(), 1, "{bytes:?}: {err}");
    }
    for bytes in [
        &b"correct horse\n"[..],
        b"correct horse\r\n",
        b"correct horse",
    ] {
        let err = load(bytes);
        assert!(!err.contains("more than one line"), "{bytes:?}: {err}");
    }
}

/// `seccs init --key-from-share TAG`: the store key lives only on the
/// share network; the store opens with the password, refuses a wrong one,
/// and a second store can neither take the same tag nor be made with a
/// password or KDF too weak for a key.
#[test]
fn a_store_whose_key_lives_on_the_share_network() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let broker = format!("broker = \"redis://127.0.0.1:{port}\"\ntimeout_secs = 10\n");
    let common = key_strength_config(port, "");
    let (_servers, net) = start_servers(tmp.path(), &common, 3);
    let store = |name: &str, password: &str| {
        let mut c = seccs(tmp.path());
        c.arg("--store")
            .arg(tmp.path().join(name))
            .env("SECCS_SHARE_PASSWORD", password);
        c
    };
    let init = |name: &str, password: &str, config: &Path| {
        let mut c = store(name, password);
        c.args(["init", "--key-from-share", "storekey", "--share-config"])
            .arg(config);
        c
    };
    ok(&mut init("a", "correct horse", &net.config));
    assert!(!tmp.path().join("a/key").exists(), "no key on this machine");
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "held by three servers\n").expect("input");
    ok(store("a", "correct horse")
        .arg("put")
        .arg(&input)
        .args(["--name", "f"]));
    let back = run(store("a", "correct horse").args(["get", "f"]));
    assert_eq!(back.stdout, b"held by three servers\n");
    let wrong = run(store("a", "not it").args(["get", "f"]));
    assert!(!wrong.status.success());
    // A copy names the same key on the share network, saves no other
    // (the count of tags below stays 1), and reads back with it.
    ok(store("a", "correct horse")
        .arg("copy")
        .arg(tmp.path().join("a-copy"))
        .arg("-q"));
    assert!(!tmp.path().join("a-copy/key").exists(), "no key file");
    let config = std::fs::read_to_string(tmp.path().join("a-copy/config.toml")).expect("config");
    assert!(config.contains("tag = \"storekey\""), "{config}");
    let back = run(store("a-copy", "correct horse").args(["get", "f"]));
    assert_eq!(back.stdout, b"held by three servers\n");

    // The tag is taken: a second store would load another key, so it is
    // refused, and nothing of it is made.
    let taken = run(&mut init("b", "correct horse", &net.config));
    let err = String::from_utf8_lossy(&taken.stderr);
    assert!(!taken.status.success() && err.contains("storekey"), "{err}");
    assert!(!tmp.path().join("b").exists());
    // A key needs a password and a KDF that make guessing it costly.
    let empty = run(&mut init("c", "", &net.config));
    assert!(!empty.status.success());
    let weak = tmp.path().join("weak.toml");
    std::fs::write(
        &weak,
        format!("{broker}[kdf]\nalgorithm = \"argon2id\"\nmemory_kib = 8\niterations = 1\nparallelism = 1\n"),
    )
    .expect("weak config");
    let cheap = run(&mut init("d", "correct horse", &weak));
    let err = String::from_utf8_lossy(&cheap.stderr);
    assert!(!cheap.status.success() && err.contains("19456"), "{err}");
    assert!(!tmp.path().join("c").exists() && !tmp.path().join("d").exists());
    let tags = json_lines(&ok(&mut net.client(&["ls", "--json"])));
    assert_eq!(tags.len(), 1, "{tags:?}");
}

/// Three servers, one down: a save under the default threshold needs both
/// that are left (2-of-2). `share save` warns that no server can be lost,
/// `share check` says it has no spare server (and still exits 0: it is
/// whole), and `init --key-from-share` refuses it unless the share config
/// sets the threshold.
#[test]
fn a_save_that_needs_every_server_says_so_and_a_store_key_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = key_strength_config(port, "");
    let (_servers, net) = start_servers(tmp.path(), &common, 2);
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "two servers\n").expect("input");
    let out = run(net.with_password(&["save", "t"]).arg(&input));
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: t@1 was saved to 2 servers and each one is needed")
            && err.contains("no server can be lost"),
        "{err}"
    );
    let text = ok(&mut net.with_password(&["check", "t"]));
    assert!(text.contains("no spare server"), "{text}");
    let report = json_lines(&ok(&mut net.with_password(&["check", "t", "--json"])));
    assert_eq!(report[0]["spare_servers"], 0, "{report:?}");
    assert_eq!(report[0]["whole"], true, "{report:?}");

    let init = |name: &str, config: &Path| {
        let mut c = seccs(tmp.path());
        c.arg("--store")
            .arg(tmp.path().join(name))
            .env("SECCS_SHARE_PASSWORD", "correct horse")
            .args(["init", "--key-from-share", "storekey", "--share-config"])
            .arg(config);
        run(&mut c)
    };
    let refused = init("a", &net.config);
    let err = stderr_of(&refused);
    assert!(!refused.status.success());
    assert!(
        err.contains("only 2 share servers answered")
            && err.contains("start more share servers")
            && err.contains("threshold = 2"),
        "{err}"
    );
    assert!(
        !tmp.path().join("a").exists(),
        "nothing of the store is made"
    );
    // The threshold set by hand: the user's choice, made with a warning.
    let chosen = tmp.path().join("chosen.toml");
    std::fs::write(&chosen, format!("threshold = 2\n{common}")).expect("config");
    let made = init("b", &chosen);
    let err = stderr_of(&made);
    assert!(made.status.success(), "{err}");
    assert!(err.contains("no server can be lost"), "{err}");
}

/// Four servers, one of which cannot store the file (its directory for
/// the tag is a plain file): the save is made on the 3 others, 3 of 4
/// needed, and so each of those 3 is needed to rebuild it. `share save`
/// warns that no server can be lost, as it does when only 3 are online,
/// names the server that refused and its reason, and does not advise
/// waiting for servers that are online already.
#[test]
fn a_save_that_a_failing_server_leaves_without_a_spare_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = key_strength_config(port, "threshold = 3\n");
    let (_servers, net) = start_servers(tmp.path(), &common, 4);
    let broken = seccs_net::store::RecordStore::open(&tmp.path().join("server3")).expect("open");
    std::fs::write(broken.tag_dir("t7"), "not a directory").expect("block the tag");
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "three of four\n").expect("input");
    let out = run(net.with_password(&["save", "t7"]).arg(&input));
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("3 of 4 servers hold it, any 3 rebuild it"),
        "{said}"
    );
    assert!(
        err.contains("warning: t7@1 was saved to 3 servers and each one is needed")
            && err.contains("no server can be lost"),
        "{err}"
    );
    assert!(
        err.contains("warning: s3 (") && err.contains(") did not store t7@1: "),
        "the refusing server is named: {err}"
    );
    assert!(
        err.contains("Not a directory") && err.contains("(the server's answer)"),
        "with its reason: {err}"
    );
    assert!(!err.contains("when more servers are online"), "{err}");
    assert!(
        err.contains("save it again once the servers named above can store it"),
        "{err}"
    );
}

/// An `init --key-from-share` whose config.toml cannot be written (a
/// directory is in its place) saves no key on the share network:
/// config.toml, marked unfinished, is written before anything is made
/// anywhere, so that a stopped init can be undone. The lock it made is
/// removed again, and the init run again once the cause is gone saves the
/// key under the same tag and succeeds.
#[test]
fn an_init_whose_config_cannot_be_written_saves_no_store_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = key_strength_config(port, "");
    let (_servers, net) = start_servers(tmp.path(), &common, 3);
    let store = tmp.path().join("st");
    std::fs::create_dir_all(store.join("config.toml")).expect("mkdir");
    let init = |tag: &str| {
        let mut c = seccs(tmp.path());
        c.arg("--store")
            .arg(&store)
            .env("SECCS_SHARE_PASSWORD", "correct horse")
            .args(["init", "--key-from-share", tag, "--share-config"])
            .arg(&net.config);
        run(&mut c)
    };
    let failed = init("storekey");
    let err = stderr_of(&failed);
    assert!(!failed.status.success(), "{err}");
    assert!(
        err.contains("removed again") && err.contains("config.toml"),
        "{err}"
    );
    assert!(!err.contains("storekey@1"), "nothing saved: {err}");
    assert_eq!(
        std::fs::read_dir(&store).expect("ls").count(),
        1,
        "only config.toml, which was there before"
    );
    let tags = json_lines(&ok(&mut net.client(&["ls", "--json"])));
    assert!(tags.is_empty(), "{tags:?}");
    std::fs::remove_dir(store.join("config.toml")).expect("rmdir");
    // Never saved, the tag is free.
    let made = init("storekey");
    assert!(made.status.success(), "{}", stderr_of(&made));
}

/// A `share load TAG FILE` of 3 MiB whose FILE cannot be written whole (the file
/// size limit, as a full disk) names FILE, as the other outputs do, and
/// leaves no file.
#[test]
fn a_load_into_a_file_that_cannot_be_written_names_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = key_strength_config(port, "");
    let (_servers, net) = start_servers(tmp.path(), &common, 3);
    let input = tmp.path().join("in.bin");
    std::fs::write(&input, vec![5u8; 3 << 20]).expect("input");
    ok(net.with_password(&["save", "big"]).arg(&input));
    let outdir = tmp.path().join("out");
    std::fs::create_dir(&outdir).expect("mkdir");
    let target = outdir.join("loaded");
    let load = net.with_password(&["load", "big"]);
    let mut limited = Command::new("sh");
    limited
        .args(["-c", "trap '' XFSZ; exec prlimit --fsize=4096 \"$@\"", "sh"])
        .arg(load.get_program())
        .args(load.get_args())
        .arg(&target)
        .env("HOME", &net.home)
        .env_remove("SECCS_SHARE_PASSWORD");
    let out = limited.output().expect("run the load under prlimit");
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("cannot write {}: ", target.display())),
        "{err}"
    );
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(std::fs::read_dir(&outdir).expect("ls").count(), 0, "{err}");
}

/// `seccs share --help` teaches the config file: every key, the defaults,
/// and what a store key needs.
#[test]
fn share_help_shows_the_config_format() {
    let tmp = tempfile::tempdir().expect("tmp");
    let help = ok(seccs(tmp.path()).args(["share", "--help"]));
    for key in [
        "broker =",
        "name =",
        "timeout_secs =",
        "threshold =",
        "min_acks =",
        "[kdf]",
        "memory_kib =",
        "SECCS_SHARE_PASSWORD",
        "19456",
    ] {
        assert!(help.contains(key), "{key}: {help}");
    }
    // --threshold splits a save; a load, listing or removal reads each
    // record's own, so there it is refused rather than ignored.
    assert!(ok(seccs(tmp.path()).args(["share", "save", "--help"])).contains("--threshold"));
    for (args, flag) in [
        (&["load", "--threshold", "2", "t", "-"][..], "--threshold"),
        (&["ls", "--threshold", "2"], "--threshold"),
        (&["rm", "--threshold", "2", "t"], "--threshold"),
        // Nor is a password read where none is needed.
        (&["ls", "--password-file", "p"], "--password-file"),
        (&["serv", "--password-file", "p"], "--password-file"),
        (&["rm", "--password-file", "p", "t"], "--password-file"),
    ] {
        let out = run(seccs(tmp.path()).arg("share").args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("unexpected argument '{flag}'")),
            "{err}"
        );
    }
}

/// A missing config file is named, with its cause said once and the
/// line a config needs.
#[test]
fn a_missing_config_is_named_with_its_cause_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("missing.toml");
    let out = run(seccs(tmp.path())
        .args(["share", "ls", "--config"])
        .arg(&missing));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("broker = "), "what the config needs: {err}");

    // A server without one says what its root's config file must hold.
    let root = tmp.path().join("root");
    let out = run(seccs(tmp.path())
        .args(["share", "serve", "--root"])
        .arg(&root));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&root.join("seccs-share.toml").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains("broker = \"redis://127.0.0.1:6379\"") && err.contains("--config"),
        "{err}"
    );
}

/// SIGHUP (a closed terminal) stops a share server as SIGTERM does: it
/// leaves the network and exits 0, its log saying it stopped. The server
/// is started with SIGHUP at its default, whatever this test inherited (a
/// run under `nohup` ignores it, and a server started so rightly keeps
/// running through one).
#[test]
fn a_hangup_stops_a_share_server_gracefully() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = format!("broker = \"redis://127.0.0.1:{port}\"\ntimeout_secs = 10\n");
    let root = tmp.path().join("server0");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(
        root.join("seccs-share.toml"),
        format!("name = \"s0\"\n{common}"),
    )
    .expect("server config");
    let log = tmp.path().join("server0.log");
    let child = Command::new("env")
        .arg("--default-signal=HUP")
        .arg(env!("CARGO_BIN_EXE_seccs"))
        .args(["share", "serve", "--root"])
        .arg(&root)
        .env("HOME", tmp.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("seccs share serve");
    let mut server = Killed(child);
    let net = Network {
        home: tmp.path().to_path_buf(),
        config: tmp.path().join("client.toml"),
        password: tmp.path().join("password"),
    };
    std::fs::write(&net.config, &common).expect("client config");
    net.wait_for_servers(1);

    let sent = Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not stop the server");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log).expect("server log");
    assert!(log.contains("share server stopped"), "{log}");
}

/// A store whose key is on the share network opens with a password file
/// and no password in the environment, for unattended jobs: at init and at
/// every open, from `--share-password-file` (before or after the command)
/// or SECCS_SHARE_PASSWORD_FILE; the option wins over the variable, and a
/// file with another password is refused.
#[test]
fn a_share_keyed_store_takes_its_password_from_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = key_strength_config(port, "");
    let (_servers, net) = start_servers(tmp.path(), &common, 3);
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not it\n").expect("write");
    for file in [&net.password, &wrong] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let store = tmp.path().join("s");
    let command = || {
        let mut c = seccs(tmp.path());
        c.arg("--store")
            .arg(&store)
            .env_remove("SECCS_SHARE_PASSWORD_FILE");
        c
    };
    let init = run(command()
        .args(["init", "--key-from-share", "filekey", "--share-config"])
        .arg(&net.config)
        .arg("--share-password-file")
        .arg(&net.password));
    let said = stderr_of(&init);
    assert!(init.status.success(), "{said}");
    assert!(!said.contains("warning"), "{said}");
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "unattended\n").expect("input");
    ok(command()
        .arg("--share-password-file")
        .arg(&net.password)
        .arg("put")
        .arg(&input)
        .args(["--name", "f"]));
    let back = run(command()
        .env("SECCS_SHARE_PASSWORD_FILE", &net.password)
        .args(["get", "f"]));
    assert!(back.status.success(), "{}", stderr_of(&back));
    assert_eq!(back.stdout, b"unattended\n");
    let listed = ok(command()
        .args(["ls", "--share-password-file"])
        .arg(&net.password));
    assert!(listed.contains('f'), "{listed}");
    let refused = run(command()
        .env("SECCS_SHARE_PASSWORD_FILE", &net.password)
        .args(["get", "f", "--share-password-file"])
        .arg(&wrong));
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    // The share commands read the same variable, as their --password-file.
    ok(net
        .client(&["save", "envfile"])
        .arg(&input)
        .env("SECCS_SHARE_PASSWORD_FILE", &net.password));
    let loaded = run(&mut net.with_password(&["load", "envfile", "-"]));
    assert!(loaded.status.success(), "{}", stderr_of(&loaded));
    assert_eq!(loaded.stdout, b"unattended\n");
    let refused = run(net
        .client(&["load", "envfile", "-"])
        .env("SECCS_SHARE_PASSWORD_FILE", &wrong));
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
}

/// Save and load take -q/--quiet as put and get do; a threshold of 0 is a
/// usage error (exit status 2); placeholders say what a value is.
#[test]
fn share_save_and_load_take_quiet_and_bounds_are_usage_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("missing.toml");
    for args in [
        &["save", "-q", "t1", "-"][..],
        &["save", "--quiet", "t1", "-"],
        &["load", "-q", "t1", "-"],
        &["load", "--quiet", "t1", "-"],
    ] {
        let out = run(seccs(tmp.path())
            .arg("share")
            .args(args)
            .arg("--config")
            .arg(&missing)
            .env("SECCS_SHARE_PASSWORD", "correct horse")
            .stdin(Stdio::null()));
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("missing.toml"), "{args:?}: {err}");
    }
    let out = run(seccs(tmp.path()).args(["share", "save", "--threshold", "0", "t1", "-"]));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--threshold") && err.contains("try '--help'"),
        "{err}"
    );
    for (args, expected) in [
        (
            &["save", "--help"][..],
            &[
                "--config <FILE>",
                "--threshold <N>",
                "--password-file <FILE>",
            ][..],
        ),
        (
            &["client", "--help"],
            &["--threshold <N>", "--config <FILE>"],
        ),
        (&["serve", "--help"], &["--root <DIR>", "--config <FILE>"]),
        (&["check", "--help"], &["--password-file <FILE>"]),
    ] {
        let help = ok(seccs(tmp.path()).arg("share").args(args));
        for e in expected {
            assert!(help.contains(e), "{args:?}: {e} in {help}");
        }
    }
}

/// A share config a store's init cannot read is named once, with the
/// broker-line hint `share ls` gives; one with an unknown field is named
/// too, by `share ls` and by init alike.
#[test]
fn a_share_config_init_cannot_read_is_named_once_with_the_hint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("missing.toml");
    let misspelt = tmp.path().join("misspelt.toml");
    std::fs::write(&misspelt, "brokr = \"redis://127.0.0.1:6379\"\n").expect("config");
    let init = |config: &Path| {
        run(seccs(tmp.path())
            .arg("--store")
            .arg(tmp.path().join("store"))
            .args(["init", "--key-from-share", "sk1", "--share-config"])
            .arg(config)
            .env("SECCS_SHARE_PASSWORD", "correct horse"))
    };
    let out = init(&missing);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert_eq!(
        err.matches(&missing.display().to_string()).count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("broker = \"redis://127.0.0.1:6379\""), "{err}");
    for out in [
        init(&misspelt),
        run(seccs(tmp.path())
            .args(["share", "ls", "--config"])
            .arg(&misspelt)),
    ] {
        let err = stderr_of(&out);
        assert!(!out.status.success());
        assert_eq!(
            err.matches(&misspelt.display().to_string()).count(),
            1,
            "{err}"
        );
        assert!(
            err.contains("line 1, column 1") && err.contains("brokr"),
            "{err}"
        );
    }
}

/// A password file that cannot be read is said with where its name came
/// from: the option or the variable.
#[test]
fn a_password_file_that_cannot_be_read_says_where_it_was_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("f1");
    std::fs::write(&input, "x").expect("input");
    let out = run(seccs(tmp.path())
        .args(["share", "save", "t1"])
        .arg(&input)
        .env("SECCS_SHARE_PASSWORD_FILE", "/nonexistent"));
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("/nonexistent") && err.contains("named by SECCS_SHARE_PASSWORD_FILE"),
        "{err}"
    );
    let out = run(seccs(tmp.path())
        .args([
            "share",
            "load",
            "--password-file",
            "/nonexistent",
            "t1",
            "-",
        ])
        .env("SECCS_SHARE_PASSWORD_FILE", "/elsewhere"));
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("/nonexistent") && err.contains("given with --password-file"),
        "{err}"
    );
}

/// The Redis URL of a store's backend under `prefix` on the server at
/// `port`.
fn redis_store_url(port: u16, prefix: &str) -> String {
    format!("redis://127.0.0.1:{port}/0?prefix={prefix}")
}

/// The `key_check = …` line of the store's config.toml at `store`.
fn key_check_of(store: &Path) -> String {
    let config = std::fs::read_to_string(store.join("config.toml")).expect("config.toml");
    config
        .lines()
        .find(|l| l.starts_with("key_check = "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no key_check in {config}"))
}

/// The versions of each tag on the network, as `share ls --json` lists
/// them: (tag, [(version, servers)]).
fn tags_listed(net: &Network) -> Vec<(String, Vec<(u64, u64)>)> {
    json_lines(&ok(&mut net.client(&["ls", "--json"])))
        .iter()
        .map(|t| {
            let versions = t["versions"]
                .as_array()
                .expect("versions")
                .iter()
                .map(|v| {
                    (
                        v["version"].as_u64().expect("version"),
                        v["servers"].as_u64().expect("servers"),
                    )
                })
                .collect();
            (t["tag"].as_str().expect("tag").to_owned(), versions)
        })
        .collect()
}

/// A store on Redis whose key lives on the share network, and whose
/// directory (its config.toml) was lost, is opened again by `init
/// --attach --key-from-share` with its tag and password: every name reads
/// back byte for byte and verify is clean, with no key saved anew and none
/// kept on this machine. A tag that holds no key, another store's tag and
/// a wrong password are each refused, leaving no config.toml.
#[test]
fn a_share_keyed_store_whose_directory_was_lost_is_attached_with_its_tag() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = key_strength_config(port, "");
    let (_servers, net) = start_servers(tmp.path(), &common, 3);
    let url = redis_store_url(port, "st:");
    let store = |dir: &Path, password: &str| {
        let mut c = seccs(tmp.path());
        c.arg("--store")
            .arg(dir)
            .env("SECCS_SHARE_PASSWORD", password)
            .env_remove("SECCS_SHARE_PASSWORD_FILE");
        c
    };
    let lost = tmp.path().join("lost");
    ok(store(&lost, "correct horse")
        .args(["init", "--backend", &url, "--key-from-share", "storekey"])
        .arg("--share-config")
        .arg(&net.config));
    // Another store's key, under another tag.
    ok(store(&tmp.path().join("other"), "correct horse")
        .args(["init", "--key-from-share", "otherkey", "--share-config"])
        .arg(&net.config));
    let mut kept = Vec::new();
    for (name, len) in [("docs/a", 30_000u32), ("docs/b", 300_000), ("c", 100)] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + len / 7) as u8).collect();
        let file = tmp.path().join("input");
        std::fs::write(&file, &bytes).expect("input");
        ok(store(&lost, "correct horse")
            .arg("put")
            .arg(&file)
            .args(["--name", name, "-q"]));
        kept.push((name, bytes));
    }
    let lost_check = key_check_of(&lost);
    std::fs::remove_dir_all(&lost).expect("rm store dir");
    let before = tags_listed(&net);

    let attached = tmp.path().join("attached");
    let attach = |tag: &str, password: &str| {
        let out = run(store(&attached, password)
            .args([
                "init",
                "--attach",
                "--backend",
                &url,
                "--key-from-share",
                tag,
            ])
            .arg("--share-config")
            .arg(&net.config));
        (out.status.success(), stderr_of(&out))
    };
    for (tag, password, why) in [
        ("nosuchkey", "correct horse", "nosuchkey"),
        ("otherkey", "correct horse", "holds another store's marker"),
        (
            "storekey",
            "not it",
            "cannot load the store key \"storekey\"",
        ),
    ] {
        let (made, err) = attach(tag, password);
        assert!(!made && err.contains(why), "{tag}, {password}: {err}");
        assert!(
            !attached.join("config.toml").exists(),
            "{tag}, {password}: no config.toml: {err}"
        );
    }
    let (made, err) = attach("storekey", "correct horse");
    assert!(made, "{err}");
    assert!(
        err.contains("as its backend's descriptor records them"),
        "{err}"
    );
    assert!(!attached.join("key").exists(), "no key on this machine");
    let config = std::fs::read_to_string(attached.join("config.toml")).expect("config");
    assert!(config.contains("tag = \"storekey\""), "{config}");
    assert_eq!(key_check_of(&attached), lost_check);
    for (name, bytes) in &kept {
        let out = run(store(&attached, "correct horse").args(["get", name]));
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        assert!(out.stdout == *bytes, "{name} differs");
    }
    ok(store(&attached, "correct horse").arg("verify"));
    assert_eq!(tags_listed(&net), before, "no key is saved by an attach");
}

/// An `init --key-from-share` stopped after it saved the store key (all
/// made but config.toml's last write, which still says `unfinished =
/// "init"`) is finished by the same init run again, with the key it saved:
/// the tag keeps its one version, the store's check value is the stopped
/// init's, and the store works. A rerun with a wrong password is refused
/// and keeps the stopped init's config.toml, so that the right password
/// still finishes it.
#[test]
fn a_resumed_share_keyed_init_reuses_the_key_it_saved() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = key_strength_config(port, "");
    let (_servers, net) = start_servers(tmp.path(), &common, 3);
    let url = redis_store_url(port, "st:");
    let dir = tmp.path().join("s");
    let store = |password: &str| {
        let mut c = seccs(tmp.path());
        c.arg("--store")
            .arg(&dir)
            .env("SECCS_SHARE_PASSWORD", password)
            .env_remove("SECCS_SHARE_PASSWORD_FILE");
        c
    };
    let init = |password: &str| {
        let mut c = store(password);
        c.args(["init", "--backend", &url, "--key-from-share", "storekey"])
            .arg("--share-config")
            .arg(&net.config);
        run(&mut c)
    };
    let made = init("correct horse");
    assert!(made.status.success(), "{}", stderr_of(&made));
    let saved_check = key_check_of(&dir);
    // Stopped before config.toml's last write: as it was first written.
    let config = dir.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config.toml");
    std::fs::write(&config, format!("unfinished = \"init\"\n{text}")).expect("write config");
    let refused = run(store("correct horse").arg("ls"));
    assert!(
        !refused.status.success() && stderr_of(&refused).contains("was stopped"),
        "{}",
        stderr_of(&refused)
    );
    let saved = tags_listed(&net);
    assert_eq!(saved, [("storekey".to_owned(), vec![(1, 3)])]);

    let wrong = init("not it");
    let err = stderr_of(&wrong);
    assert!(!wrong.status.success(), "{err}");
    assert!(
        err.contains("as \"storekey\", which cannot be loaded: nothing was changed"),
        "{err}"
    );
    let kept = std::fs::read_to_string(&config).expect("config.toml kept");
    assert!(kept.contains("unfinished = \"init\""), "{kept}");
    assert_eq!(tags_listed(&net), saved);

    let resumed = init("correct horse");
    let err = stderr_of(&resumed);
    assert!(resumed.status.success(), "{err}");
    assert!(
        err.contains("was stopped before it finished; removed what it made")
            && err.contains("saved on the share network as \"storekey\" is used again"),
        "{err}"
    );
    assert!(
        !err.contains("store key saved on the share network"),
        "{err}"
    );
    assert_eq!(tags_listed(&net), saved, "the tag is saved to once");
    let config = std::fs::read_to_string(&config).expect("config.toml");
    assert!(!config.contains("unfinished"), "{config}");
    assert_eq!(key_check_of(&dir), saved_check);
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "after the resumed init\n").expect("input");
    ok(store("correct horse")
        .arg("put")
        .arg(&input)
        .args(["--name", "f", "-q"]));
    let back = run(store("correct horse").args(["get", "f"]));
    assert_eq!(back.stdout, b"after the resumed init\n");
    ok(store("correct horse").arg("verify"));

    // Stopped before it saved the key (config.toml as first written; no
    // key under its tag): the rerun saves one.
    let early = tmp.path().join("early");
    std::fs::create_dir(&early).expect("mkdir");
    let first: String = text
        .replace("tag = \"storekey\"", "tag = \"early\"")
        .replace(&format!("backend = \"{url}\""), "backend = \"embedded\"")
        .lines()
        .filter(|l| !l.starts_with("backend_marked"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        early.join("config.toml"),
        format!("unfinished = \"init\"\n{first}"),
    )
    .expect("write config");
    let made = run(seccs(tmp.path())
        .arg("--store")
        .arg(&early)
        .env("SECCS_SHARE_PASSWORD", "correct horse")
        .env_remove("SECCS_SHARE_PASSWORD_FILE")
        .args(["init", "--key-from-share", "early", "--share-config"])
        .arg(&net.config));
    let err = stderr_of(&made);
    assert!(made.status.success(), "{err}");
    assert!(
        err.contains("removed what it made")
            && err.contains("store key saved on the share network as \"early\"")
            && !err.contains("used again"),
        "{err}"
    );
    assert!(
        tags_listed(&net).contains(&("early".to_owned(), vec![(1, 3)])),
        "{:?}",
        tags_listed(&net)
    );
}

/// An `init --key-from-share` that saved the store key and then failed
/// (its backend, a Redis at its memory limit, refuses the store marker)
/// removes that key from the share network again, and says that the tag,
/// once used, is not used again; nothing of the store is left, and an
/// init with another tag on the same backend, given room, is made.
#[test]
fn a_share_keyed_init_that_fails_after_saving_its_key_removes_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = redis(tmp.path());
    let common = key_strength_config(port, "");
    let (_servers, net) = start_servers(tmp.path(), &common, 3);
    // The store's backend on a Redis of its own, full: it refuses every
    // write that needs memory (the marker), not the writer lease.
    let backend_dir = tmp.path().join("backend");
    std::fs::create_dir(&backend_dir).expect("mkdir");
    let (_backend, backend_port) = redis(&backend_dir);
    let config_set = |name: &[u8], value: &[u8]| {
        let reply = common::redis_command(backend_port, &[b"CONFIG", b"SET", name, value]);
        assert!(
            reply.starts_with(b"+OK"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    };
    config_set(b"maxmemory-policy", b"noeviction");
    config_set(b"maxmemory", b"1");
    let url = redis_store_url(backend_port, "st:");
    let dir = tmp.path().join("s");
    let init = |tag: &str| {
        run(seccs(tmp.path())
            .arg("--store")
            .arg(&dir)
            .env("SECCS_SHARE_PASSWORD", "correct horse")
            .env_remove("SECCS_SHARE_PASSWORD_FILE")
            .args(["init", "--backend", &url, "--key-from-share", tag])
            .arg("--share-config")
            .arg(&net.config))
    };
    let failed = init("storekey");
    let err = stderr_of(&failed);
    assert!(!failed.status.success(), "{err}");
    assert!(
        err.contains("store key saved on the share network as \"storekey\""),
        "the key was saved before the failure: {err}"
    );
    assert!(
        err.contains("what init made there is removed again")
            && err.contains("storekey@1 is removed from the share network")
            && err.contains("run init again with another tag"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing of the store is left");
    let listed = tags_listed(&net);
    assert!(listed.is_empty(), "the key is no longer listed: {listed:?}");
    // A tag once used is never a store key's again, as the error said.
    let again = init("storekey");
    let err = stderr_of(&again);
    assert!(!again.status.success(), "{err}");
    assert!(err.contains("a store key needs a tag never used"), "{err}");
    assert!(!dir.exists(), "nothing of the store is left: {err}");
    // Given room, the backend holds no marker of the failed inits: another
    // tag makes the store there.
    config_set(b"maxmemory", b"0");
    let made = init("storekey2");
    assert!(made.status.success(), "{}", stderr_of(&made));
    assert_eq!(tags_listed(&net), [("storekey2".to_owned(), vec![(1, 3)])]);
}
