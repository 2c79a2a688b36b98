//! Running the `seccs` binary from the CLI tests.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `cmd` to the end.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run seccs")
}

/// Runs `cmd`, which must succeed; returns its standard output.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
