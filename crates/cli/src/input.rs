//! Inputs a command reads whole into memory (a FILE, or standard input),
//! never past a bound: a device (`/dev/zero`), a pipe that does not end or
//! the wrong file named by mistake is refused at the bound rather than read
//! until memory runs out.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

/// What [`read_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Bounded {
    /// The whole input, within the bound.
    Whole(Vec<u8>),
    /// More than the bound: `size` when the file said so before it was
    /// read, `None` when reading went past it (an input without a size).
    Over {
        /// The file's size, as its metadata gave it.
        size: Option<u64>,
    },
}

/// Reads `file` (`None`: standard input) whole, unless it holds more than
/// `max` bytes: a file whose size says so is not read at all, and one
/// without a size (a device, a pipe) is read only to one byte past `max`.
/// A failure to read names the input and the cause.
pub fn read_bounded(file: Option<&Path>, max: u64) -> anyhow::Result<Bounded> {
    match open_bounded(file, max)? {
        Opened::Within(input) => input.read(),
        Opened::Over { size } => Ok(Bounded::Over { size: Some(size) }),
    }
}

/// What [`open_bounded`] found.
pub enum Opened {
    /// An input that its size does not put over the bound (or that has
    /// none), not read yet.
    Within(BoundedInput),
    /// A file whose size is over the bound: not read.
    Over {
        /// The file's size, as its metadata gave it.
        size: u64,
    },
}

/// [`read_bounded`] in two steps: the input opened and its size checked,
/// then read ([`BoundedInput::read`]), so that a command can refuse what
/// cannot be opened before other work and read the input after it.
pub fn open_bounded(file: Option<&Path>, max: u64) -> anyhow::Result<Opened> {
    let shown = match file {
        Some(path) => path.display().to_string(),
        None => "standard input".to_owned(),
    };
    let reader: Box<dyn Read + Send> = match file {
        None => Box::new(std::io::stdin()),
        Some(path) => {
            let cannot_read = || format!("cannot read {shown}");
            let opened = std::fs::File::open(path).with_context(cannot_read)?;
            let size = opened.metadata().with_context(cannot_read)?.len();
            if size > max {
                return Ok(Opened::Over { size });
            }
            Box::new(opened)
        }
    };
    Ok(Opened::Within(BoundedInput { reader, max, shown }))
}

/// An input opened by [`open_bounded`], read only to its bound.
pub struct BoundedInput {
    reader: Box<dyn Read + Send>,
    max: u64,
    /// How errors name the input.
    shown: String,
}

impl BoundedInput {
    /// How messages name the input: its path, or "standard input".
    pub fn name(&self) -> &str {
        &self.shown
    }

    /// The whole input, or [`Bounded::Over`] once reading passes the bound.
    pub fn read(self) -> anyhow::Result<Bounded> {
        let Self { reader, max, shown } = self;
        let mut buf = Vec::new();
        reader
            .take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {shown}"))?;
        if buf.len() as u64 > max {
            return Ok(Bounded::Over { size: None });
        }
        Ok(Bounded::Whole(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file within the bound is read whole; one whose size is over it is
    /// refused by that size, unread; one without a size (a device) is read
    /// only to the bound; one that cannot be opened is named.
    #[test]
    fn inputs_are_read_whole_or_refused_at_the_bound() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("twelve");
        std::fs::write(&file, b"twelve bytes")?;
        assert_eq!(
            read_bounded(Some(&file), 12)?,
            Bounded::Whole(b"twelve bytes".to_vec())
        );
        assert_eq!(
            read_bounded(Some(&file), 11)?,
            Bounded::Over { size: Some(12) }
        );
        assert_eq!(
            read_bounded(Some(Path::new("/dev/zero")), 1000)?,
            Bounded::Over { size: None }
        );
        let missing = dir.path().join("missing");
        let err = read_bounded(Some(&missing), 12)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!("cannot read {}: ", missing.display())),
            "{err}"
        );
        Ok(())
    }
}
