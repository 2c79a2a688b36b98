//! Which signals this process was started with ignored: a process run
//! under `nohup` ignores SIGHUP, and a shell's background job ignores
//! SIGINT. A command or server that watches signals keeps those ignored,
//! as the one who started it asked.

/// SIGHUP: a closed terminal, or an operator's `kill -HUP`.
pub const SIGHUP: i32 = 1;

/// The signals this process ignores, from the `SigIgn` mask of
/// `/proc/self/status`; none where it cannot be read.
pub fn ignored() -> Vec<i32> {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| ignored_in(&status))
        .unwrap_or_default()
}

/// The signals a `/proc/PID/status` text says are ignored: bit n-1 of
/// its `SigIgn` mask (hexadecimal) for signal n.
fn ignored_in(status: &str) -> Vec<i32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .map(|mask| (1..=64).filter(|n| mask & (1u64 << (n - 1)) != 0).collect())
        .unwrap_or_default()
}

/// Whether this process ignores `signal`.
pub fn is_ignored(signal: i32) -> bool {
    ignored().contains(&signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask is read as the kernel writes it: SIGHUP (1), SIGINT (2)
    /// and SIGPIPE (13) ignored, as under `nohup` in a background job with
    /// SIGPIPE ignored; a text without the line ignores nothing.
    #[test]
    fn the_mask_is_read_bit_by_signal() {
        let status = "Name:\tseccs\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001003\n";
        assert_eq!(ignored_in(status), [1, 2, 13]);
        assert_eq!(ignored_in("SigIgn:\t8000000000000000"), [64]);
        assert!(ignored_in("Name:\tseccs\n").is_empty());
        assert!(ignored_in("SigIgn:\tnot hex").is_empty());
    }
}
