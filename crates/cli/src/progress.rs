//! Progress bars on stderr: only when stderr is a terminal and not `--quiet`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether to draw progress at all.
pub fn enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A byte-count bar with rate and ETA, hidden unless [`enabled`].
pub fn bytes(total: u64, quiet: bool) -> ProgressBar {
    if !enabled(quiet) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// A spinner with a message, hidden unless [`enabled`].
pub fn spinner(message: &'static str, quiet: bool) -> ProgressBar {
    if !enabled(quiet) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
