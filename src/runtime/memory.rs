//! Giving memory back when Pryx goes idle.
//!
//! Under load the allocator keeps what it was given, ready for reuse, and SQLite keeps its
//! page caches full. Neither is a leak (both are capped: see ARCHITECTURE.md), but after a
//! burst a personal agent that idles for hours should shrink back to its resting size. So
//! one task per runtime looks every [`CHECK_EVERY`]: finished turns' logs past their age go
//! every time; and once the process has been idle for a whole interval (it used under
//! [`IDLE_CPU`] of CPU time), SQLite frees its caches and glibc returns free pages to the
//! kernel (`malloc_trim`), once per idle period: a process that stays idle has nothing more
//! to give back, and one that is busy refills what was freed (trimming every 30 s under
//! load left the soak's RSS plateau where it was).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::store::Store;
use crate::telemetry::history::SpanHistory;

/// How often the task looks.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// CPU time under which an interval counts as idle (1 % of it).
const IDLE_CPU: Duration = Duration::from_millis(100);

/// What the task tidies: the turns' logs, the databases' caches, the allocator.
pub struct Tidy {
    pub agent: Arc<Agent>,
    pub store: Store,
    pub spans: SpanHistory,
}

impl Tidy {
    /// Run until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_cpu = process_cpu_time();
        let mut released = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.cancelled() => return,
            }
            self.agent.turns().forget_expired_turns();
            let cpu = process_cpu_time();
            let idle = matches!((last_cpu, cpu), (Some(before), Some(now)) if now.saturating_sub(before) < IDLE_CPU);
            last_cpu = cpu;
            if !idle {
                released = false;
            } else if !released {
                released = true;
                self.release().await;
            }
        }
    }

    async fn release(&self) {
        self.store.release_memory().await;
        self.spans.release_memory().await;
        let trimmed = return_free_memory();
        tracing::debug!(trimmed, "idle: caches freed and free memory returned to the system");
    }
}

/// CPU time this process has used so far (all threads, user and system).
fn process_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Some(time(usage.ru_utime) + time(usage.ru_stime))
    }
    #[cfg(not(unix))]
    None
}

/// Ask the allocator to hand free pages back to the kernel; `true` when it could.
pub fn return_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases memory that is free; no pointer is touched.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_up() {
        let before = process_cpu_time().expect("getrusage works here");
        let mut x = 0u64;
        let began = std::time::Instant::now();
        while began.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = process_cpu_time().expect("getrusage works here");
        assert!(after > before, "{before:?} → {after:?}");
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_system() {
        const PAGE: usize = 4096;
        /// How many of these pages are in memory (`mincore`: the kernel's own answer for
        /// these addresses, whatever other threads of the test process allocate meanwhile).
        fn resident(pages: &[usize]) -> usize {
            pages
                .iter()
                .filter(|&&page| {
                    let mut flag = 0u8;
                    // SAFETY: mincore only reads the page tables for this page-aligned range.
                    let status = unsafe { libc::mincore(page as *mut libc::c_void, PAGE, &mut flag) };
                    status == 0 && flag & 1 == 1
                })
                .count()
        }
        // Many small blocks (below the mmap threshold: they come from the heap and stay
        // there when freed), the last one kept so that free() alone cannot shrink the heap
        // from its top: only trimming returns the pages in the middle.
        let mut blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 4000]).collect();
        let keep = blocks.pop();
        // A page inside every tenth block (addresses only: nothing is read through them).
        let pages: Vec<usize> = blocks.iter().step_by(10).map(|b| (b.as_ptr() as usize + PAGE) & !(PAGE - 1)).collect();
        assert_eq!(resident(&pages), pages.len(), "the blocks are in memory while in use");
        drop(blocks);
        let freed = resident(&pages);
        return_free_memory();
        let trimmed = resident(&pages);
        assert!(freed > pages.len() * 9 / 10, "free() alone keeps the pages ({freed} of {})", pages.len());
        assert!(trimmed < pages.len() / 10, "trimming returns them ({trimmed} of {} still in memory)", pages.len());
        drop(keep);
    }
}
