//! What every seccs process does first to keep its keys in its own memory:
//! no core dump (a crash would write the store key, a KEK or a share
//! password to disk, to `/var/lib/systemd/coredump` on many systems), and
//! on Linux not dumpable, so that another process of the same user cannot
//! attach to it (`gdb`, `gcore`) or read `/proc/PID/mem`.

/// The variable that, set to `1`, leaves core dumps and tracing allowed
/// (to debug a crash).
pub const ALLOW_CORE_DUMPS: &str = "SECCS_ALLOW_CORE_DUMPS";

/// Sets RLIMIT_CORE to 0 (soft and hard, so that it cannot be raised
/// again) and, on Linux, marks the process non-dumpable, unless
/// [`ALLOW_CORE_DUMPS`] is `1`. A failure is said on standard error and
/// the command goes on: neither is refused to an unprivileged process, so
/// a failure means an unusual kernel, not an attack.
pub fn harden_process() {
    if std::env::var_os(ALLOW_CORE_DUMPS).is_some_and(|v| v == "1") {
        return;
    }
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(e) = setrlimit(Resource::Core, none) {
            errln!(
                "seccs: warning: cannot turn core dumps off ({e}): a crash may write keys to disk"
            );
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::process::{DumpableBehavior, set_dumpable_behavior};
        if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
            errln!(
                "seccs: warning: cannot mark the process non-dumpable ({e}): other processes \
                 of this user may read its memory"
            );
        }
    }
}

/// Raises this process's soft limit of open files towards `wanted`, at
/// most to its hard limit; never lowers it. Only the soft limit moves, and
/// a failure leaves it as it was: the caller fits itself to what it has
/// (the key server its connection cap) or says so when it runs out.
pub fn raise_open_file_limit(wanted: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited: nothing to raise.
    let Some(current) = limit.current else {
        return;
    };
    let raised = limit.maximum.map_or(wanted, |hard| wanted.min(hard));
    if raised > current {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        );
    }
}
