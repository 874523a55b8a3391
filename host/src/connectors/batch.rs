//! Group commit for API writes: writes that are waiting while earlier ones are
//! in flight go out together, as one sObject Collections request or one
//! ServiceNow Batch API call.
//!
//! A write alone is sent at once (no linger), so at low rates nothing waits
//! and nothing changes; under load, the queue that builds while `parallel`
//! requests are in flight is what fills the next batch (with a millisecond's
//! linger while another batch is still in flight).

use super::{ConnectorError, Result};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How long a batch waits for more writes when another one is in flight.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

type Pending<Req, Resp> = (Req, oneshot::Sender<Result<Resp>>);

pub struct Batcher<Req, Resp> {
    system: &'static str,
    tx: mpsc::UnboundedSender<Pending<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// `flush` sends one batch (at most `max_batch` writes) and returns one result per write, in order.
    pub fn new<F, Fut>(system: &'static str, max_batch: usize, parallel: usize, flush: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<Resp>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending<Req, Resp>>();
        let slots = Arc::new(Semaphore::new(parallel.max(1)));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
                // Under load (another batch still in flight), the writes being
                // made right now join this one: a millisecond, not a request's worth.
                if slots.available_permits() + 1 < parallel {
                    tokio::time::sleep(LINGER).await;
                }
                // Everything that queued up while every slot was busy goes in this batch.
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (requests, replies): (Vec<Req>, Vec<_>) = batch.into_iter().unzip();
                let sent = flush(requests);
                tokio::spawn(async move {
                    let mut results = sent.await.into_iter();
                    for reply in replies {
                        let result = results.next().unwrap_or_else(|| {
                            Err(ConnectorError::Unavailable {
                                system,
                                attempts: 1,
                                message: "the batch response had fewer results than requests".into(),
                            })
                        });
                        let _ = reply.send(result);
                    }
                    drop(permit);
                });
            }
        });
        Batcher { system, tx }
    }

    /// Queue one write and wait for its own result.
    pub async fn submit(&self, request: Req) -> Result<Resp> {
        let (reply, result) = oneshot::channel();
        let gone = || ConnectorError::Unavailable {
            system: self.system,
            attempts: 0,
            message: "the connector's batcher has stopped".into(),
        };
        self.tx.send((request, reply)).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A batcher whose flush records each batch, answers every request doubled,
    /// and waits for `gate` before answering (so batches stay in flight).
    fn doubling(
        max_batch: usize,
        parallel: usize,
        gate: Arc<Semaphore>,
        seen: Arc<Mutex<Vec<Vec<u32>>>>,
    ) -> Batcher<u32, u32> {
        Batcher::new("test", max_batch, parallel, move |batch: Vec<u32>| {
            let (gate, seen) = (gate.clone(), seen.clone());
            async move {
                seen.lock().unwrap().push(batch.clone());
                gate.acquire().await.unwrap().forget();
                batch.into_iter().map(|n| Ok(n * 2)).collect()
            }
        })
    }

    #[tokio::test]
    async fn a_write_alone_goes_at_once_and_those_waiting_behind_it_go_together_within_the_limit() {
        let (gate, seen) = (Arc::new(Semaphore::new(0)), Arc::new(Mutex::new(Vec::new())));
        let batcher = Arc::new(doubling(3, 1, gate.clone(), seen.clone()));
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.submit(1).await }
        });
        while seen.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        // Five more while the first is in flight, with its one slot taken.
        let rest: Vec<_> = (2..=6)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { b.submit(n).await })
            })
            .collect();
        tokio::task::yield_now().await;
        gate.add_permits(3);
        assert_eq!(first.await.unwrap().unwrap(), 2);
        for (n, answer) in (2..=6).zip(rest) {
            assert_eq!(answer.await.unwrap().unwrap(), n * 2, "each write gets its own result");
        }
        assert_eq!(*seen.lock().unwrap(), vec![vec![1], vec![2, 3, 4], vec![5, 6]], "at most 3 a batch, in order");
    }

    #[tokio::test]
    async fn a_batch_answered_short_fails_the_writes_it_did_not_answer() {
        let batcher: Batcher<u32, u32> =
            Batcher::new("test", 10, 1, |batch: Vec<u32>| async move { batch.into_iter().take(1).map(Ok).collect() });
        let (a, b) = tokio::join!(batcher.submit(1), batcher.submit(2));
        assert_eq!(a.unwrap(), 1);
        let err = b.unwrap_err();
        assert!(err.to_string().contains("fewer results than requests"), "{err}");
    }
}
