//! The exit status of `seccs`, one meaning each, so that a script (a cron
//! job running `seccs verify`, a copy to a mirror) can tell a report that
//! needs reading from a command that did not run:
//!
//! - 0: the command did all it was asked and found nothing wrong.
//! - 1 ([`PROBLEMS`]): it ran to its end, and its report names what needs
//!   attention: damage found (`verify`, `gc`, `copy`, `kms check`, `share
//!   check`), entries it could not store or restore while it did the rest,
//!   a copy that would remove versions only DEST holds.
//! - 2 ([`FAILED`]): it could not run, or stopped part way: a usage error
//!   (as clap reports one), a store it cannot open, a wrong key, a backend
//!   that does not answer, a disk that is full.
//! - 128 + N: stopped by signal N (see `interrupt`).
//!
//! A command says "problems" by failing with [`Problems`]; every other
//! error is a failure to run.

/// The command ran to its end and reports problems.
pub const PROBLEMS: i32 = 1;

/// The command could not run, or stopped part way.
pub const FAILED: i32 = 2;

/// The error that ends a command which ran to its end but reports problems
/// (printed above it): its message is the summary line.
#[derive(Debug)]
pub struct Problems(String);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Problems {}

/// `bail!` for a command that ran to its end and reports problems: returns
/// a [`Problems`] error with the formatted summary, so that it exits 1.
macro_rules! problems {
    ($($arg:tt)*) => {
        return Err($crate::exit::Problems::from(format!($($arg)*)).into())
    };
}

impl From<String> for Problems {
    fn from(summary: String) -> Self {
        Self(summary)
    }
}

/// The exit status for a command that ended in `err`.
pub fn status(err: &anyhow::Error) -> i32 {
    match err.chain().any(|e| e.is::<Problems>()) {
        true => PROBLEMS,
        false => FAILED,
    }
}

/// What a command run with `--json` prints on standard output when it
/// could not run, so that a program reading it always gets one JSON
/// document: `{"error": MESSAGE, "exit": 2}`. A command that ran and
/// reports problems has printed its report already, and gets nothing more.
pub fn json_failure(err: &anyhow::Error) -> Option<String> {
    (status(err) == FAILED).then(|| {
        serde_json::json!({
            "error": format!("{err:#}"),
            "exit": FAILED,
        })
        .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems() -> anyhow::Result<()> {
        problems!("verify found {} problem(s)", 2)
    }

    #[test]
    fn a_report_of_problems_exits_1_and_anything_else_2() {
        let reported = problems().expect_err("problems");
        assert_eq!(status(&reported), PROBLEMS);
        assert_eq!(reported.to_string(), "verify found 2 problem(s)");
        // Context added on the way up keeps the meaning.
        let wrapped = reported.context("while checking");
        assert_eq!(status(&wrapped), PROBLEMS);
        let io = anyhow::Error::new(std::io::Error::other("disk full"));
        assert_eq!(status(&io), FAILED);
        assert_eq!(status(&anyhow::anyhow!("no content named \"a\"")), FAILED);
    }

    #[test]
    fn a_failure_under_json_is_one_json_object_and_problems_add_none() {
        let failed = anyhow::anyhow!("cannot open \"s\"").context("open");
        let shown: serde_json::Value =
            serde_json::from_str(&json_failure(&failed).expect("a document")).expect("JSON");
        assert_eq!(shown["error"], "open: cannot open \"s\"");
        assert_eq!(shown["exit"], 2);
        assert!(json_failure(&problems().expect_err("problems")).is_none());
    }
}
