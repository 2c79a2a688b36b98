//! What kind of file a path holds, in words, for errors that refuse it:
//! the key service, the share server and the store open some files only as
//! regular files, and say what they found instead.

use std::fs::FileType;

/// `kind` in words: `a symbolic link`, `a directory`, `a regular file`,
/// `a named pipe`, `a socket`, `a device`.
pub fn in_words(kind: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a named pipe";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
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
}
