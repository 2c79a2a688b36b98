//! Extended attributes: read from each file, directory and link a put
//! stores, given back to what a restore writes. They hold what the mode
//! bits cannot: file capabilities (`security.capability`, which lets
//! `ping` work without setuid), ACLs (`system.posix_acl_access`), SELinux
//! labels, and `user.` attributes applications keep.
//!
//! A file's owner may set its `user.` attributes and its ACLs; the rest
//! (`security.`, `trusted.`) need privileges, so a restore not run as root
//! gives back only the former (see `tree::attrs_of`), as it gives back no
//! owners. A file system without extended attributes has none to read.

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;
use seccs_store::catalog::Xattr;

/// Whether a file's owner may set `x` without privileges: a `user.`
/// attribute or an access or default ACL.
pub fn settable_by_owner(x: &Xattr) -> bool {
    let name = x.name();
    name.starts_with(b"user.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

/// The extended attributes of the open file `file`, sorted by name.
pub fn of_file(file: &File) -> io::Result<Vec<Xattr>> {
    read_all(
        |buf| rustix::fs::flistxattr(file, buf),
        |name, buf| rustix::fs::fgetxattr(file, name, buf),
    )
}

/// The extended attributes of the entry at `path` itself (a link's own,
/// not its target's), sorted by name.
pub fn of_entry(path: &Path) -> io::Result<Vec<Xattr>> {
    read_all(
        |buf| rustix::fs::llistxattr(path, buf),
        |name, buf| rustix::fs::lgetxattr(path, name, buf),
    )
}

/// Gives the open file `file` these attributes: every one that can be set,
/// and an error naming those that could not.
pub fn set_on_file(file: &File, xattrs: &[Xattr]) -> io::Result<()> {
    set_each(xattrs, |x| {
        rustix::fs::fsetxattr(file, x.name(), x.value(), XattrFlags::empty())
    })
}

/// Gives the entry at `path` itself (a link, not its target) these
/// attributes, as [`set_on_file`].
pub fn set_on_entry(path: &Path, xattrs: &[Xattr]) -> io::Result<()> {
    set_each(xattrs, |x| {
        rustix::fs::lsetxattr(path, x.name(), x.value(), XattrFlags::empty())
    })
}

fn set_each(xattrs: &[Xattr], set: impl Fn(&Xattr) -> rustix::io::Result<()>) -> io::Result<()> {
    let failed: Vec<(&Xattr, Errno)> = xattrs
        .iter()
        .filter_map(|x| set(x).err().map(|e| (x, e)))
        .collect();
    let Some(&(_, first)) = failed.first() else {
        return Ok(());
    };
    let names: Vec<_> = failed
        .iter()
        .map(|(x, _)| String::from_utf8_lossy(x.name()))
        .collect();
    Err(io::Error::new(
        io::Error::from(first).kind(),
        format!(
            "extended attribute(s) {} not set: {}",
            names.join(", "),
            io::Error::from(first)
        ),
    ))
}

fn read_all(
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&[u8], &mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<Xattr>> {
    let names = match sized(list) {
        Ok(names) => names,
        Err(e) if e == Errno::NOTSUP => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = match sized(|buf| get(name, buf)) {
            Ok(value) => value,
            // Removed since it was listed.
            Err(e) if e == Errno::NODATA => continue,
            Err(e) => return Err(e.into()),
        };
        let x = Xattr::new(name.to_vec(), value).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "extended attribute {} is beyond the bounds Linux sets",
                    String::from_utf8_lossy(name)
                ),
            )
        })?;
        out.push(x);
    }
    out.sort();
    Ok(out)
}

/// What `f` writes into a buffer large enough for it: Linux bounds a list
/// and a value to 64 KiB, so a few rounds of growth (for an attribute that
/// grew between calls) always end.
fn sized(f: impl Fn(&mut [u8]) -> rustix::io::Result<usize>) -> rustix::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    for _ in 0..6 {
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e == Errno::RANGE => {
                let longer = buf.len() * 4;
                buf.resize(longer, 0);
            }
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(name: &str, value: &[u8]) -> Xattr {
        Xattr::new(name.as_bytes().to_vec(), value.to_vec()).expect("within bounds")
    }

    #[test]
    fn attributes_are_read_back_sorted_as_set() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let file = File::create(&path)?;
        assert_eq!(of_file(&file)?, []);
        let set = [
            x("user.zeta", b"last"),
            x("user.alpha", &[0, 1, 2, 255]),
            // Longer than the first buffer; ext4 keeps a file's
            // attributes within one block.
            x("user.big", &[7; 3000]),
            x("user.empty", b""),
        ];
        set_on_file(&file, &set)?;
        let mut sorted = set.to_vec();
        sorted.sort();
        assert_eq!(of_file(&file)?, sorted);
        assert_eq!(of_entry(&path)?, sorted);
        let other = dir.path().join("dir");
        std::fs::create_dir(&other)?;
        set_on_entry(&other, &set[..1])?;
        assert_eq!(of_entry(&other)?, set[..1]);
        Ok(())
    }

    #[test]
    fn an_attribute_that_cannot_be_set_is_named_in_the_error() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = File::create(dir.path().join("f"))?;
        // No namespace: refused by every Linux file system. The others
        // are set all the same.
        let (bad, good) = (x("nonamespace", b"v"), x("user.fine", b"v"));
        let err = set_on_file(&file, &[bad, good.clone()]).expect_err("refused");
        assert!(err.to_string().contains("nonamespace"), "{err}");
        assert!(!err.to_string().contains("user.fine"), "{err}");
        assert_eq!(of_file(&file)?, [good]);
        Ok(())
    }
}
