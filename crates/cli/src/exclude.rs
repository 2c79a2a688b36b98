//! `seccs put DIR --exclude PATTERN`: what a walk of a directory leaves out.
//!
//! The rules are the ones users know from `.gitignore` and `restic backup
//! --exclude`, cut down to what a name needs:
//! - a pattern without `/` matches the last component of a name, at any
//!   depth (`target`, `*.o`, `.git`);
//! - a pattern with `/` matches the whole name, as `seccs ls` shows it
//!   (`src/tree/build`, `src/**/cache`); a leading `/` anchors a pattern
//!   to the whole name too (`/build` is the name `build` only), and is not
//!   itself matched, since names have none;
//! - a trailing `/` makes a pattern match directories only (`build/`).
//!
//! `*` and `?` do not cross a `/`; `**` does. An excluded directory is not
//! entered. Patterns match a name's characters: `?` and `[…]` match one
//! character, ASCII or not (`caf?` matches `café`, `[éè]` either letter).
//! A name read from a file name that is not UTF-8 holds each byte that is
//! not part of UTF-8 as one character (U+EF80–U+EFFF, see
//! `seccs_store::file_name`), so there `?` matches one such byte, and a
//! pattern that holds the same byte (from `--exclude-from`, or typed as
//! `$'\xe9'`) matches it literally.

use std::path::Path;

use anyhow::{Context, Result, bail};
use globset::GlobBuilder;
use regex::Regex;

/// Whether a pattern matches the last component or the whole name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    BaseName,
    WholeName,
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: Regex,
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
            // A leading `/` anchors the pattern to the whole name, as in
            // `.gitignore` (`/build` is the top `build`, not every one);
            // names have no `/` of their own to match it.
            let anchored = body.starts_with('/');
            let body = body.trim_start_matches('/');
            if body.is_empty() {
                bail!("--exclude {given:?} matches no name: give a name or a glob such as '*.o'");
            }
            let scope = if anchored || body.contains('/') {
                Scope::WholeName
            } else {
                Scope::BaseName
            };
            let glob = GlobBuilder::new(body)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .with_context(|| format!("invalid --exclude pattern {given:?}"))?;
            let matcher = unicode_regex(glob.regex())
                .and_then(|re| {
                    regex::RegexBuilder::new(&re)
                        .dot_matches_new_line(true)
                        .size_limit(10 << 20)
                        .build()
                        .ok()
                })
                .with_context(|| format!("invalid --exclude pattern {given:?}: too complex"))?;
            rules.push(Rule {
                matcher,
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

/// The regular expression globset makes of a glob, read as one over
/// characters rather than bytes. globset's matches bytes (`(?-u)`), where
/// `?` (`[^/]`) and a class match one byte, and it writes each character
/// outside ASCII as the escapes of its UTF-8 bytes (`é` as `\xc3\xa9`, in
/// a class too). Without `(?-u)`, and with those escapes turned back into
/// the characters they spell, the same expression matches one character
/// where it matched one byte, and nothing else changes. `None` if the
/// expression is not in that form.
fn unicode_regex(bytes_regex: &str) -> Option<String> {
    let body = bytes_regex.strip_prefix("(?-u)")?;
    let mut out = String::with_capacity(body.len());
    let mut utf8 = Vec::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let escaped = chars.next()?;
            if escaped == 'x' {
                let hex: String = chars.by_ref().take(2).collect();
                utf8.push(u8::from_str_radix(&hex, 16).ok()?);
                continue;
            }
            spell(&mut utf8, &mut out)?;
            out.push(c);
            out.push(escaped);
            continue;
        }
        spell(&mut utf8, &mut out)?;
        out.push(c);
    }
    spell(&mut utf8, &mut out)?;
    Some(out)
}

/// Writes the characters whose UTF-8 bytes are `utf8` to `out`, and empties
/// it; `None` if they are not whole characters.
fn spell(utf8: &mut Vec<u8>, out: &mut String) -> Option<()> {
    if !utf8.is_empty() {
        out.push_str(&regex::escape(std::str::from_utf8(utf8).ok()?));
        utf8.clear();
    }
    Some(())
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
    fn a_leading_slash_anchors_a_pattern_to_the_whole_name() {
        let ex = excludes(&["/build", "/cache/"]);
        assert!(ex.excludes("build", true));
        assert!(ex.excludes("build", false));
        assert!(!ex.excludes("proj/build", true));
        assert!(!ex.excludes("proj/a/build", false));
        assert!(ex.excludes("cache", true));
        assert!(!ex.excludes("cache", false));
        assert!(!ex.excludes("proj/cache", true));
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

    /// `?` and `[…]` match one character, not one byte of its UTF-8:
    /// `é` is two bytes, and was matched by `??` and by no `?`.
    #[test]
    fn question_marks_and_classes_match_one_character_outside_ascii_too() {
        let ex = excludes(&["caf?", "[éè]t?", "x/?.txt", "[à-ÿ]/"]);
        assert!(ex.excludes("docs/café", false));
        assert!(ex.excludes("été", false));
        assert!(ex.excludes("èté", false));
        assert!(ex.excludes("x/é.txt", false));
        assert!(ex.excludes("a/ü", true));
        assert!(!ex.excludes("a/ü", false));
        assert!(!ex.excludes("docs/cafés", false));
        assert!(!ex.excludes("ete", false));
        let two = excludes(&["??.txt", "[é][é]"]);
        assert!(!two.excludes("é.txt", false), "é is one character");
        assert!(two.excludes("ab.txt", false));
        assert!(two.excludes("éé.txt", false));
        assert!(two.excludes("éé", false));
        assert!(!two.excludes("é", false));
        // Literal characters outside ASCII, and escapes, keep matching.
        let literal = excludes(&["naïve*", "a\\*b", "#x~&-"]);
        assert!(literal.excludes("naïve.md", false));
        assert!(literal.excludes("a*b", false));
        assert!(!literal.excludes("axb", false));
        assert!(literal.excludes("#x~&-", false));
    }

    /// A name from a file name that is not UTF-8 holds each such byte as
    /// one character: `?` matches it, and so does the byte in a pattern.
    #[test]
    fn a_byte_of_a_name_that_is_not_utf8_is_one_character() {
        let latin1 = seccs_store::file_name::name_of_typed(b"caf\xe9");
        assert!(excludes(&["caf?"]).excludes(&latin1, false));
        assert!(!excludes(&["caf??"]).excludes(&latin1, false));
        let pattern = seccs_store::file_name::name_of_typed(b"*\xe9");
        assert!(excludes(&[pattern.as_str()]).excludes(&latin1, false));
        assert!(!excludes(&[pattern.as_str()]).excludes("café", false));
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
