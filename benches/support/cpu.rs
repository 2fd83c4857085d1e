//! CPU time a process has used, summed over its threads from `/proc/PID/task/*/schedstat`
//! (nanoseconds; `/proc/PID/stat` counts 10 ms ticks, too coarse for these benchmarks).

use std::path::Path;
use std::time::Duration;

/// CPU time so far of the threads of `process` (a PID, or `self`) that `counted` accepts
/// (it is given each thread's `/proc` directory).
pub fn cpu_time(process: &str, counted: impl Fn(&Path) -> bool) -> Duration {
    let mut nanos = 0;
    for task in std::fs::read_dir(format!("/proc/{process}/task")).expect("list threads").flatten() {
        if !counted(&task.path()) {
            continue;
        }
        // A thread may end between listing and reading.
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            nanos += stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(nanos)
}
