//! The loop both monitors run: probe every node once per interval, act on each answer.

use super::lag::BoxFuture;
use crate::error::BoxError;
use std::time::Duration;
use tokio::sync::Notify;

/// Probes every node `nodes` lists, once per `interval` or at once when `early` is notified,
/// each with the interval as timeout, and hands each answer to `apply`. Ends when `nodes` or
/// `apply` returns `None` (the pools are gone). Missed ticks are delayed, not bunched: a slow
/// round is not followed by a burst.
pub(crate) async fn probe_rounds<K, T>(
    interval: Duration,
    early: &Notify,
    mut nodes: impl FnMut() -> Option<Vec<K>>,
    probe: impl Fn(&K) -> BoxFuture<Result<T, BoxError>>,
    mut apply: impl FnMut(&K, Result<T, BoxError>) -> Option<()>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = early.notified() => ticks.reset(),
        }
        let Some(nodes) = nodes() else { return };
        for node in nodes {
            let answer = match tokio::time::timeout(interval, probe(&node)).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("no answer within {interval:?}").into()),
            };
            if apply(&node, answer).is_none() {
                return;
            }
        }
    }
}
