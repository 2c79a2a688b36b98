//! What kind of file a path holds, in words, for errors that refuse it:
//! the key service, the share server and the store open some files only as
//! regular files, and say what they found instead.
//!
//! The kind comes from std's [`FileType`] ([`Kind::of`]) or from a raw
//! `st_mode` ([`Kind::of_mode`], for callers that `stat` through a
//! descriptor, as the key service does), and both are said by
//! [`Kind::in_words`], so that every refusal names a kind alike.

use std::fs::FileType;

/// The kinds of file a refusal tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    RegularFile,
    /// A directory.
    Directory,
    /// A symbolic link (not followed).
    SymbolicLink,
    /// A named pipe (FIFO).
    NamedPipe,
    /// A Unix domain socket.
    Socket,
    /// A block or character device.
    Device,
    /// None of the above (a kind this platform adds).
    Other,
}

/// The file-type bits of `st_mode` and their values. They are the same on
/// every Unix Rust runs on (the historical V7 layout); the test of
/// [`Kind::of_mode`] checks them against what std says of real files.
#[cfg(unix)]
mod mode {
    pub(super) const FORMAT: u32 = 0o170_000;
    pub(super) const SOCKET: u32 = 0o140_000;
    pub(super) const SYMBOLIC_LINK: u32 = 0o120_000;
    pub(super) const REGULAR_FILE: u32 = 0o100_000;
    pub(super) const BLOCK_DEVICE: u32 = 0o060_000;
    pub(super) const DIRECTORY: u32 = 0o040_000;
    pub(super) const CHARACTER_DEVICE: u32 = 0o020_000;
    pub(super) const NAMED_PIPE: u32 = 0o010_000;
}

impl Kind {
    /// The kind std's `kind` says.
    pub fn of(kind: FileType) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if kind.is_fifo() {
                return Self::NamedPipe;
            }
            if kind.is_socket() {
                return Self::Socket;
            }
            if kind.is_block_device() || kind.is_char_device() {
                return Self::Device;
            }
        }
        if kind.is_symlink() {
            Self::SymbolicLink
        } else if kind.is_dir() {
            Self::Directory
        } else if kind.is_file() {
            Self::RegularFile
        } else {
            Self::Other
        }
    }

    /// The kind a raw `st_mode` says (its permission bits are ignored), as
    /// `stat` gives it (`rustix::fs::Stat::st_mode`,
    /// `std::os::unix::fs::MetadataExt::mode`).
    #[cfg(unix)]
    pub fn of_mode(st_mode: u32) -> Self {
        match st_mode & mode::FORMAT {
            mode::REGULAR_FILE => Self::RegularFile,
            mode::DIRECTORY => Self::Directory,
            mode::SYMBOLIC_LINK => Self::SymbolicLink,
            mode::NAMED_PIPE => Self::NamedPipe,
            mode::SOCKET => Self::Socket,
            mode::BLOCK_DEVICE | mode::CHARACTER_DEVICE => Self::Device,
            _ => Self::Other,
        }
    }

    /// The kind in words: `a regular file`, `a directory`, `a symbolic
    /// link`, `a named pipe`, `a socket`, `a device`, or `not a regular
    /// file`.
    pub fn in_words(self) -> &'static str {
        match self {
            Self::RegularFile => "a regular file",
            Self::Directory => "a directory",
            Self::SymbolicLink => "a symbolic link",
            Self::NamedPipe => "a named pipe",
            Self::Socket => "a socket",
            Self::Device => "a device",
            Self::Other => "not a regular file",
        }
    }
}

/// `kind` in words, as [`Kind::in_words`] says it.
pub fn in_words(kind: FileType) -> &'static str {
    Kind::of(kind).in_words()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("f");
        std::fs::write(&file, b"x")?;
        assert_eq!(
            in_words(std::fs::metadata(&file)?.file_type()),
            "a regular file"
        );
        assert_eq!(
            in_words(std::fs::metadata(dir.path())?.file_type()),
            "a directory"
        );
        #[cfg(unix)]
        {
            let link = dir.path().join("l");
            std::os::unix::fs::symlink(&file, &link)?;
            assert_eq!(
                in_words(std::fs::symlink_metadata(&link)?.file_type()),
                "a symbolic link"
            );
            assert_eq!(
                in_words(std::fs::metadata("/dev/null")?.file_type()),
                "a device"
            );
        }
        Ok(())
    }

    /// Every kind has its words, and each kind is one a raw mode names.
    #[cfg(unix)]
    #[test]
    fn every_kind_of_mode_is_named() {
        for (st_mode, kind, words) in [
            (0o100_644, Kind::RegularFile, "a regular file"),
            (0o040_755, Kind::Directory, "a directory"),
            (0o120_777, Kind::SymbolicLink, "a symbolic link"),
            (0o010_600, Kind::NamedPipe, "a named pipe"),
            (0o140_755, Kind::Socket, "a socket"),
            (0o060_660, Kind::Device, "a device"),
            (0o020_666, Kind::Device, "a device"),
            // No file-type bits, or a pattern no Unix uses for a file.
            (0o000_644, Kind::Other, "not a regular file"),
            (0o170_000, Kind::Other, "not a regular file"),
        ] {
            assert_eq!(Kind::of_mode(st_mode), kind, "{st_mode:o}");
            assert_eq!(kind.in_words(), words, "{kind:?}");
        }
    }

    /// Of real files of every kind this test can make without privilege,
    /// the raw mode and std's file type say the same kind: the mode bits
    /// above are this platform's.
    #[cfg(unix)]
    #[test]
    fn the_mode_and_the_file_type_of_real_files_agree() -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("file");
        std::fs::write(&file, b"x")?;
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link)?;
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket)?;
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(made.success(), "mkfifo: {made}");
        let mut seen = Vec::new();
        for (path, kind) in [
            (file.as_path(), Kind::RegularFile),
            (dir.path(), Kind::Directory),
            (link.as_path(), Kind::SymbolicLink),
            (socket.as_path(), Kind::Socket),
            (fifo.as_path(), Kind::NamedPipe),
            (std::path::Path::new("/dev/null"), Kind::Device),
        ] {
            let meta = std::fs::symlink_metadata(path)?;
            assert_eq!(Kind::of(meta.file_type()), kind, "{}", path.display());
            assert_eq!(Kind::of_mode(meta.mode()), kind, "{}", path.display());
            seen.push(kind);
        }
        assert!(!seen.contains(&Kind::Other));
        Ok(())
    }
}
