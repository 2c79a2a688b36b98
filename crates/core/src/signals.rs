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

/// Listens for SIGINT, SIGTERM, and SIGHUP (a closed terminal, or an
/// operator's `kill -HUP`), each unless the process was started with it
/// ignored (`nohup` ignores SIGHUP, a shell's background job SIGINT; not
/// even listened for then, since a handler would undo that), and returns
/// what waits for the first of them: the stop of
/// a server. It listens at once, when called, not when first awaited:
/// called before a server says it is ready, a signal sent after that is
/// never missed, nor takes its default action (which would end the
/// process before its orderly stop). A signal that cannot be listened for
/// is given to `cannot_listen` with its name, and the others still stop.
///
/// Call it inside a tokio runtime (`Runtime::enter`), as tokio's signal
/// listeners need one.
#[cfg(feature = "tokio")]
pub fn stop_signals(
    cannot_listen: &mut dyn FnMut(&'static str, std::io::Error),
) -> impl std::future::Future<Output = ()> + use<> {
    use tokio::signal::unix::{SignalKind, signal};
    let ignored = ignored();
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
    ];
    let mut watched = Vec::new();
    for (kind, name) in kinds {
        if ignored.contains(&kind.as_raw_value()) {
            continue;
        }
        match signal(kind) {
            Ok(listening) => watched.push(listening),
            Err(e) => cannot_listen(name, e),
        }
    }
    std::future::poll_fn(move |cx| {
        if watched.iter_mut().any(|s| s.poll_recv(cx).is_ready()) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
}

/// Listens for SIGUSR1, with which an operator (or logrotate's
/// `postrotate`) asks a server to reopen its log at its path, unless the
/// process was started with it ignored (then `None`, and it stays
/// ignored). It listens at once, when called: called before a server says
/// it is ready, a SIGUSR1 sent after that never takes its default action
/// (which would end the process). If it cannot be listened for, that is
/// given to `cannot_listen` with its name, and `None` is returned.
///
/// Call it inside a tokio runtime, as [`stop_signals`].
#[cfg(feature = "tokio")]
pub fn reopen_signal(
    cannot_listen: &mut dyn FnMut(&'static str, std::io::Error),
) -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    // Its number as this platform has it (10 on x86 and ARM, not on all).
    let usr1 = SignalKind::user_defined1();
    if is_ignored(usr1.as_raw_value()) {
        return None;
    }
    match signal(usr1) {
        Ok(listening) => Some(listening),
        Err(e) => {
            cannot_listen("SIGUSR1", e);
            None
        }
    }
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

    /// The stop future listens from the moment it is made: a SIGTERM sent
    /// to this process before it is first awaited is neither missed nor
    /// fatal, and until a signal comes it does not resolve.
    #[cfg(feature = "tokio")]
    #[test]
    fn a_signal_sent_before_the_stop_is_awaited_still_stops() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut failed = Vec::new();
        let stop = {
            let _inside = runtime.enter();
            stop_signals(&mut |name, _| failed.push(name))
        };
        assert!(failed.is_empty(), "cannot listen for {failed:?}");
        let mut stop = Box::pin(stop);
        let quiet = runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut stop).await
        });
        assert!(quiet.is_err(), "the stop resolved with no signal sent");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let stopped = runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), stop).await
        });
        assert!(stopped.is_ok(), "SIGTERM did not resolve the stop");
    }
}
