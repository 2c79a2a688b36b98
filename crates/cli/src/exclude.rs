//! `seccs put DIR --exclude PATTERN`: what a walk of a directory leaves out.
//!
//! The rules are the ones users know from `.gitignore` and `restic backup
//! --exclude`, cut down to what a name needs:
//! - a pattern without `/` matches the last component of a name, at any
//!   depth (`target`, `*.o`, `.git`);
//! - a pattern with `/` matches the whole name, as `seccs ls` shows it
//!   (`src/tree/build`, `src/**/cache`); a leading `/` is dropped, since
//!   names have none;
//! - a trailing `/` makes a pattern match directories only (`build/`).
//!
//! `*` and `?` do not cross a `/`; `**` does. An excluded directory is not
//! entered. Patterns match a name's UTF-8 bytes (globset's rule, as in
//! ripgrep): `?` and `[…]` match one byte, so a character outside ASCII
//! (`é`, a byte held from a name that is not UTF-8) is matched by `*`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use globset::{GlobBuilder, GlobMatcher};

/// Whether a pattern matches the last component or the whole name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    BaseName,
    WholeName,
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    scope: Scope,
    directories_only: bool,
}

/// A compiled list of `--exclude` patterns; empty excludes nothing.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    rules: Vec<Rule>,
}

impl Excludes {
    /// Compiles `patterns`; an empty or malformed one is an error that
    /// names it.
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut rules = Vec::with_capacity(patterns.len());
        for given in patterns {
            let (body, directories_only) = match given.strip_suffix('/') {
                Some(body) => (body, true),
                None => (given.as_str(), false),
            };
            let body = body.trim_start_matches('/');
            if body.is_empty() {
                bail!("--exclude {given:?} matches no name: give a name or a glob such as '*.o'");
            }
            let scope = if body.contains('/') {
                Scope::WholeName
            } else {
                Scope::BaseName
            };
            let glob = GlobBuilder::new(body)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .with_context(|| format!("invalid --exclude pattern {given:?}"))?;
            rules.push(Rule {
                matcher: glob.compile_matcher(),
                scope,
                directories_only,
            });
        }
        Ok(Self { rules })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the entry `name` (a directory when `is_dir`) is left out.
    pub fn excludes(&self, name: &str, is_dir: bool) -> bool {
        let base = name.rsplit('/').next().unwrap_or(name);
        self.rules.iter().any(|rule| {
            (is_dir || !rule.directories_only)
                && rule.matcher.is_match(match rule.scope {
                    Scope::BaseName => base,
                    Scope::WholeName => name,
                })
        })
    }

    /// Whether the entry `name` is left out, or a directory above it is:
    /// what a restore leaves out, where a walk would not have entered.
    pub fn excludes_path(&self, name: &str, is_dir: bool) -> bool {
        name.match_indices('/')
            .any(|(i, _)| self.excludes(&name[..i], true))
            || self.excludes(name, is_dir)
    }
}

/// The patterns of an `--exclude-from` file: one per line, blank lines and
/// `#` comments skipped, surrounding spaces trimmed.
pub fn patterns_in(file: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(file).with_context(|| {
        format!(
            "cannot read the --exclude-from file {}",
            crate::tree::shown_path(file)
        )
    })?;
    // A pattern's bytes need not be UTF-8, as a name's need not.
    let text = seccs_store::file_name::name_of_typed(&bytes);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excludes(patterns: &[&str]) -> Excludes {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        Excludes::new(&patterns).expect("valid patterns")
    }

    #[test]
    fn a_pattern_without_a_slash_matches_the_last_component_at_any_depth() {
        let ex = excludes(&["target", "*.o"]);
        assert!(ex.excludes("proj/target", true));
        assert!(ex.excludes("proj/a/b/target", false));
        assert!(ex.excludes("proj/src/main.o", false));
        assert!(!ex.excludes("proj/targets", true));
        assert!(!ex.excludes("proj/target.rs", false));
        assert!(!ex.excludes("proj/main.o.txt", false));
    }

    #[test]
    fn a_pattern_with_a_slash_matches_the_whole_name() {
        let ex = excludes(&["proj/build", "/proj/**/cache"]);
        assert!(ex.excludes("proj/build", true));
        assert!(!ex.excludes("other/proj/build", true));
        assert!(!ex.excludes("build", true));
        assert!(ex.excludes("proj/cache", true));
        assert!(ex.excludes("proj/a/b/cache", true));
        // `*` stays within one component.
        let star = excludes(&["proj/*.log"]);
        assert!(star.excludes("proj/x.log", false));
        assert!(!star.excludes("proj/sub/x.log", false));
    }

    #[test]
    fn a_trailing_slash_matches_directories_only() {
        let ex = excludes(&["build/"]);
        assert!(ex.excludes("proj/build", true));
        assert!(!ex.excludes("proj/build", false));
    }

    #[test]
    fn a_path_is_left_out_with_any_directory_above_it() {
        let ex = excludes(&["build/", "proj/docs"]);
        assert!(ex.excludes_path("proj/build/out/a.o", false));
        assert!(ex.excludes_path("proj/build", true));
        assert!(ex.excludes_path("proj/docs/index.md", false));
        assert!(ex.excludes_path("proj/docs", false));
        // A file named build is not a directory above anything.
        assert!(!ex.excludes_path("proj/build", false));
        assert!(!ex.excludes_path("proj/src/build.rs", false));
        assert!(!ex.excludes_path("proj/docsify/a", false));
    }

    #[test]
    fn an_exclude_file_gives_one_pattern_a_line_without_blanks_or_comments() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("excludes");
        std::fs::write(&file, "# build output\ntarget/\n\n  *.o  \r\n#.git\n").expect("write");
        assert_eq!(patterns_in(&file).expect("read"), ["target/", "*.o"]);
        let err = patterns_in(&dir.path().join("missing")).expect_err("missing");
        assert!(format!("{err:#}").contains("--exclude-from"), "{err:#}");
    }

    #[test]
    fn empty_and_malformed_patterns_are_errors_that_name_them() {
        for bad in ["", "/", "a[", "{a,b"] {
            let err = Excludes::new(&[bad.to_owned()]).expect_err(bad);
            assert!(format!("{err:#}").contains(&format!("{bad:?}")), "{err:#}");
        }
        assert!(Excludes::new(&[]).expect("none").is_empty());
    }
}
