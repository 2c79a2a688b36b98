//! `seccs bench …` as a user mistypes it: a directory that is not there, or
//! figures out of range, are refused before anything is measured, naming
//! the option; a figure in range never prints NaN.

mod common;

use common::run;
use std::process::{Command, Output};

fn bench(dir: &std::path::Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_seccs"))
        .arg("bench")
        .args(args)
        .current_dir(dir)
        .env_remove("SECCS_STORE"))
}

/// `bench tempfile --dir` that is missing, or a file, is named with its
/// cause before any round starts.
#[test]
fn bench_tempfile_names_a_dir_it_cannot_use_before_it_starts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("missing");
    let file = tmp.path().join("f1");
    std::fs::write(&file, "x").expect("file");
    for (dir, cause) in [
        (&missing, "No such file or directory"),
        (&file, "Not a directory"),
    ] {
        let dir = dir.to_str().expect("utf-8 path");
        let out = bench(
            tmp.path(),
            &[
                "tempfile",
                "--dir",
                dir,
                "--size-mib",
                "1",
                "--random-ops",
                "10",
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains("round"), "refused before a round: {err}");
        assert!(
            err.contains(&format!("--dir {dir}")) && err.contains(cause),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
}

/// Every bench refuses figures that measure nothing or overflow as clap
/// refuses a usage error (exit status 2, the option named), before it
/// prints anything.
#[test]
fn bench_figures_out_of_range_are_usage_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    for args in [
        &["--size-mib", "0"][..],
        &["--size-mib", "17592186044416"],
        &["--rounds", "0"],
        &["--chunk-size", "0"],
        &["--chunk-size", "1048577"],
        &["--stream-mib", "17592186044416"],
        &["tempfile", "--size-mib", "0"],
        &["tempfile", "--size-mib", "17592186044416"],
        &["tempfile", "--random-ops", "0"],
        &["tree", "--files", "0"],
        &["tree", "--rounds", "0"],
        &["share", "--rounds", "0"],
        &["share", "--sizes-mib", "0"],
        &["copy", "--size-mib", "0"],
        &["copy", "--size-mib", "16385"],
        &["copy", "--rounds", "0"],
        &["copy", "--files", "1000001"],
    ] {
        let out = bench(tmp.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        let option = args.iter().find(|a| a.starts_with("--")).expect("option");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(option) && err.contains("try '--help'"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// The smallest figures in range measure something: no NaN, no infinity.
#[test]
fn bench_at_its_smallest_figures_prints_numbers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = bench(
        tmp.path(),
        &["--size-mib", "1", "--stream-mib", "0", "--rounds", "1"],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.contains("NaN") && !said.contains("inf"), "{said}");
}

/// Placeholders say what a value is: <N>, <MIB>, <DIR>, <URL>, <SECONDS>,
/// never clap's upper-cased field name.
#[test]
fn bench_help_names_values_by_kind() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (part, expected) in [
        (
            None,
            &["--size-mib <MIB>", "--rounds <N>", "--backend <URL>"][..],
        ),
        (Some("tempfile"), &["--size-mib <MIB>", "--dir <DIR>"]),
        (Some("kms"), &["--file-mib <MIB>", "--seconds <SECONDS>"]),
        (
            Some("share"),
            &["--sizes-mib <MIB>", "--rounds <N>", "--broker <URL>"],
        ),
        (Some("tree"), &["--files <N>", "--rounds <N>"]),
        (
            Some("copy"),
            &["--size-mib <MIB>", "--files <N>", "--rounds <N>"],
        ),
    ] {
        let mut args: Vec<&str> = part.into_iter().collect();
        args.push("--help");
        let out = bench(tmp.path(), &args);
        let help = String::from_utf8_lossy(&out.stdout);
        for e in expected {
            assert!(help.contains(e), "{part:?}: {e} in {help}");
        }
    }
}

/// `bench copy` mirrors a store with `seccs copy`, checks the copy with
/// `verify`, copies it again unchanged, and gives both times with the
/// plain copy of the store's files beside them, for a store of one file
/// or of many; it leaves nothing behind in the directory it ran in.
#[test]
fn bench_copy_measures_a_verified_copy_against_a_plain_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    for files in ["0", "300"] {
        let out = bench(
            tmp.path(),
            &[
                "copy",
                "--size-mib",
                "1",
                "--files",
                files,
                "--rounds",
                "1",
                "--json",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("one JSON object");
        let figure = |name: &str| report[name].as_f64().unwrap_or(f64::NAN);
        assert!(figure("store_bytes") > f64::from(1 << 20), "{report}");
        assert_eq!(report["files"].to_string(), files, "{report}");
        for name in [
            "copy_mib_per_s",
            "plain_mib_per_s",
            "copy_time_ratio_to_plain",
            "unchanged_copy_seconds",
            "unchanged_copy_time_ratio_to_plain",
        ] {
            assert!(
                figure(name).is_finite() && figure(name) > 0.0,
                "{files} files: {name}: {report}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("read dir").collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
