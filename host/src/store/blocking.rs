//! SQLite off the tokio workers. A journal read waits on the disk and a
//! commit waits for its sync; on one of the runtime's few worker threads
//! either stalls every task scheduled there (intake's acknowledgements, the
//! other processors). Serving code reaches the journal through
//! [`Journal::run`](super::Journal::run) (the blocking pool) or its async
//! writes (the group-commit thread), and every connection the journal hands
//! out checks where it is: a call made on a worker is counted
//! ([`Journal::calls_on_workers`](super::Journal::calls_on_workers), exported
//! as a metric), and the first one is logged with its place in the code.

use std::cell::Cell;

thread_local! {
    /// Set while [`off_worker`] runs its closure: this thread may block.
    static MAY_BLOCK: Cell<bool> = const { Cell::new(false) };
}

/// Run `work` on tokio's blocking pool and wait for it without holding a worker.
/// A panic in `work` resumes in the caller.
pub async fn off_worker<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let ran = tokio::task::spawn_blocking(move || may_block(work)).await;
    match ran {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a journal call on the blocking pool was cancelled: {e}"),
    }
}

/// Run `work` as blocking code. Only for a thread the runtime schedules no
/// tasks on: inside `spawn_blocking` (where a caller wants its own handling of
/// the join) or a thread of seam's own.
pub fn may_block<T>(work: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            MAY_BLOCK.set(self.0);
        }
    }
    let _restore = Restore(MAY_BLOCK.replace(true));
    work()
}

/// Whether this thread is one the runtime schedules tasks on: inside a
/// runtime's context and not in [`off_worker`]. The group-commit thread and
/// command-line code outside a runtime are not; a bare `spawn_blocking` is
/// taken for a worker, so every journal call in serving code goes through
/// `off_worker`.
pub(crate) fn on_worker() -> bool {
    !MAY_BLOCK.get() && tokio::runtime::Handle::try_current().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_nothing_is_a_worker() {
        assert!(!on_worker());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_runs_on_a_worker_and_off_worker_does_not() {
        assert!(on_worker(), "a task's own thread is a worker");
        assert!(!off_worker(on_worker).await, "off_worker's closure runs where it may block");
        assert!(tokio::task::spawn_blocking(on_worker).await.unwrap(), "a bare spawn_blocking is not trusted");
        assert!(on_worker(), "the flag does not leak back to the worker");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_journal_counts_the_calls_made_on_a_worker_and_not_those_made_through_run() {
        let dir = std::env::temp_dir().join(format!("seam-blocking-{}", std::process::id()));
        let journal = std::sync::Arc::new(crate::store::Journal::open(&dir.join("journal.db")).unwrap());
        journal.run(|j| j.count("demo")).await.unwrap();
        journal.run(|j| j.watermark("demo", "x")).await.unwrap();
        journal.set_watermark("demo", "x", "1").await.unwrap();
        assert_eq!(journal.calls_on_workers(), 0);
        journal.count("demo").unwrap();
        journal.watermark("demo", "x").unwrap();
        assert_eq!(journal.calls_on_workers(), 2, "two reads on this task's worker");
        drop(journal);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_panic_in_off_worker_reaches_the_caller() {
        let caught = tokio::spawn(off_worker(|| panic!("boom"))).await.unwrap_err();
        assert!(caught.is_panic());
    }
}
