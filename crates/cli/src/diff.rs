//! `seccs diff`: what changed under a prefix between two times, name by
//! name, from the catalog alone (no content is read), as `restic diff`
//! and `borg diff` compare two snapshots.

use std::io::{BufWriter, Write};

use anyhow::Result;
use clap::Args;
use seccs_store::catalog::{EntryKind, Version};

use crate::open::{self, StoreLocation};
use crate::store::{format_time, parse_time};
use crate::tree::{shown_name, version_to_restore};

/// `seccs diff`: what changed between two times.
#[derive(Debug, Args)]
#[command(
    after_help = "diff exits 0 whether or not it lists changes (unlike diff(1), which exits 1 \
                  when the inputs differ): a change is a report, not a failure. It exits 1 only \
                  when it cannot say (no store, a catalog it cannot read)."
)]
pub struct DiffArgs {
    /// Only names starting with PREFIX (`photos/` for a tree put as
    /// `seccs put photos`).
    #[arg(default_value = "", value_parser = crate::store::name_arg())]
    prefix: String,
    /// The earlier time: `2026-12-02 14:14:22Z` as `seccs ls` prints it, or
    /// seconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: u64,
    /// The later time (same forms); without it, what the names hold now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<u64>,
    /// One JSON object per line: name, change, from_version, to_version,
    /// kind (file, symlink or directory: what the name holds at the later
    /// time, or held before if it was removed). The name is given whole,
    /// as `get NAME@N` takes it: a directory's without the `/` the plain
    /// form shows it with (the kind says it is one).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// How a name differs between two times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not there at the first time, there at the second.
    Added,
    /// There at the first time, not at the second.
    Removed,
    /// Other bytes, same kind.
    Modified,
    /// A file became a directory or a link, or the other way.
    TypeChanged,
    /// Same bytes, other bits, owner, attributes or modification time.
    Metadata,
}

impl Change {
    /// How `seccs diff` marks it, as `restic diff` does.
    fn mark(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::TypeChanged => 'T',
            Change::Metadata => 'U',
        }
    }

    fn word(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
            Change::TypeChanged => "type",
            Change::Metadata => "metadata",
        }
    }
}

/// How what a name held at one time (`before`) differs from what it held
/// at another (`after`); `None` when it is the same.
pub fn change(before: Option<&Version>, after: Option<&Version>) -> Option<Change> {
    let modified = |v: &Version| v.stamp.map(|s| s.file_stamp().modified());
    match (before, after) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Added),
        (Some(_), None) => Some(Change::Removed),
        (Some(a), Some(b)) if a.kind != b.kind => Some(Change::TypeChanged),
        (Some(a), Some(b)) if a.content_ref != b.content_ref => Some(Change::Modified),
        (Some(a), Some(b))
            if a.mode != b.mode
                || a.owner != b.owner
                || a.xattrs != b.xattrs
                || modified(a) != modified(b) =>
        {
            Some(Change::Metadata)
        }
        _ => None,
    }
}

/// Runs `seccs diff`.
pub fn run(loc: &StoreLocation, args: DiffArgs) -> Result<()> {
    crate::store::refuse_future("--from", Some(args.from))?;
    crate::store::refuse_future("--to", args.to)?;
    if let Some(to) = args.to
        && to < args.from
    {
        anyhow::bail!(
            "--to {} is before --from {}",
            format_time(to),
            format_time(args.from)
        );
    }
    let opened = open::open_to_read(loc)?;
    let listing = opened.store.list_readable(&args.prefix)?;
    let mut out = BufWriter::new(crate::output::report_out());
    let mut counts = [0usize; 5];
    for record in &listing.records {
        let before = record.at(args.from);
        let after = version_to_restore(record, args.to);
        let Some(change) = change(before, after) else {
            continue;
        };
        counts[change as usize] += 1;
        let kind = after.or(before).map_or(EntryKind::File, |v| v.kind);
        if args.json {
            let line = serde_json::json!({
                "name": record.name,
                "change": change.word(),
                "from_version": before.map(|v| v.number),
                "to_version": after.map(|v| v.number),
                "kind": crate::store::kind_word(kind),
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}  {}", change.mark(), shown_name(&record.name, kind))?;
        }
    }
    out.flush()?;
    let [added, removed, modified, type_changed, metadata] = counts;
    errln!(
        "seccs: from {} to {}: {added} added, {removed} removed, {modified} modified, \
         {type_changed} changed type, {metadata} changed metadata only",
        format_time(args.from),
        args.to.map_or("now".to_owned(), format_time),
    );
    // The changes of every record read are said: damage is a report.
    crate::store::damage_reported(&listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seccs_store::ContentRef;
    use seccs_store::catalog::{FileMode, Owner};

    fn version(content: u8, kind: EntryKind) -> Version {
        Version {
            number: 1,
            content_ref: ContentRef::from_bytes(&[[content; 16].as_slice(), &[0; 8]].concat())
                .expect("16-byte digest and a length"),
            time: 100,
            kind,
            stamp: None,
            mode: Some(FileMode::from_st_mode(0o644)),
            owner: None,
            xattrs: Vec::new(),
            hard_links: None,
        }
    }

    #[test]
    fn each_difference_has_its_own_change() {
        let a = version(1, EntryKind::File);
        assert_eq!(change(None, None), None);
        assert_eq!(change(Some(&a), Some(&a)), None);
        assert_eq!(change(None, Some(&a)), Some(Change::Added));
        assert_eq!(change(Some(&a), None), Some(Change::Removed));
        let other_bytes = version(2, EntryKind::File);
        assert_eq!(change(Some(&a), Some(&other_bytes)), Some(Change::Modified));
        let link = version(1, EntryKind::Symlink);
        assert_eq!(change(Some(&a), Some(&link)), Some(Change::TypeChanged));
        let chmod = Version {
            mode: Some(FileMode::from_st_mode(0o600)),
            ..a.clone()
        };
        assert_eq!(change(Some(&a), Some(&chmod)), Some(Change::Metadata));
        let chown = Version {
            owner: Some(Owner { uid: 1, gid: 1 }),
            ..a.clone()
        };
        assert_eq!(change(Some(&a), Some(&chown)), Some(Change::Metadata));
        // Another version number alone is no change.
        let renumbered = Version {
            number: 7,
            ..a.clone()
        };
        assert_eq!(change(Some(&a), Some(&renumbered)), None);
    }
}
