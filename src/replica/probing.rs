//! The loop both monitors run: probe every node once per interval, act on each answer.

use super::lag::BoxFuture;
use crate::background::{answer_within, NoAnswer};
use crate::error::BoxError;
use std::time::Duration;
use tokio::sync::Notify;

/// How many rounds a monitor has finished: [`ReplicaRouter::ready`](super::ReplicaRouter::ready)
/// waits for the first.
pub(crate) type Rounds = tokio::sync::watch::Sender<u64>;

/// Probes every node `nodes` lists, once per `interval` or at once when `early` is notified,
/// each with the interval as timeout, and hands each answer to `apply`; counts each round
/// it finishes in `rounds`. Ends when `nodes` or
/// `apply` returns `None` (the pools are gone). Missed ticks are delayed, not bunched: a slow
/// round is not followed by a burst. A probe that panics answers with an error, as one that
/// fails: the monitor keeps probing the other nodes, and that one next round.
pub(crate) async fn probe_rounds<K, T>(
    interval: Duration,
    early: &Notify,
    mut nodes: impl FnMut() -> Option<Vec<K>>,
    probe: impl Fn(&K) -> BoxFuture<Result<T, BoxError>>,
    mut apply: impl FnMut(&K, Result<T, BoxError>) -> Option<()>,
    rounds: &Rounds,
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
            let answer = match answer_within(interval, || probe(&node)).await {
                Ok(answer) => answer,
                Err(NoAnswer::Panicked(panic)) => {
                    Err(format!("the probe panicked: {panic}").into())
                }
                Err(NoAnswer::TimedOut) => Err(format!("no answer within {interval:?}").into()),
            };
            if apply(&node, answer).is_none() {
                return;
            }
        }
        rounds.send_modify(|finished| *finished += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_panics_answers_with_an_error_and_runs_again() {
        let mut round = 0;
        let rounds = Rounds::new(0);
        let mut answers = Vec::new();
        probe_rounds(
            Duration::from_secs(1),
            &Notify::new(),
            || {
                round += 1;
                (round <= 2).then(|| vec![0_u8, 1])
            },
            |&node| {
                // Node 0 panics while its probe starts; node 1 once its probe runs.
                if node == 0 {
                    panic!("cannot start");
                }
                Box::pin(async move {
                    if node == 1 {
                        panic!("broke");
                    }
                    Ok(())
                })
            },
            |&node, answer: Result<(), BoxError>| {
                answers.push((node, answer.map_err(|error| error.to_string())));
                Some(())
            },
            &rounds,
        )
        .await;
        assert_eq!(*rounds.borrow(), 2, "two rounds finished");
        let failed = |message: &str| Err(format!("the probe panicked: {message}"));
        let round = [(0, failed("cannot start")), (1, failed("broke"))];
        assert_eq!(answers, [round.clone(), round].concat());
    }
}

/// The connection pools a database probe asks, by the nodes' keys in the router's pools.
#[cfg_attr(
    not(any(
        feature = "sqlx-postgres",
        feature = "sqlx-0_8",
        feature = "sqlx-mysql"
    )),
    allow(dead_code)
)]
#[derive(Debug)]
pub(crate) struct PoolsByKey<K, S>(std::collections::HashMap<K, S>);

#[cfg_attr(
    not(any(
        feature = "sqlx-postgres",
        feature = "sqlx-0_8",
        feature = "sqlx-mysql"
    )),
    allow(dead_code)
)]
impl<K: Eq + std::hash::Hash, S: Clone> PoolsByKey<K, S> {
    pub(crate) fn new(pools: impl IntoIterator<Item = (K, S)>) -> Self {
        PoolsByKey(pools.into_iter().collect())
    }

    /// The pool of `key`, to take into a probe's future; why not, if it has none.
    pub(crate) fn of(&self, key: &K) -> Result<S, &'static str> {
        self.0
            .get(key)
            .cloned()
            .ok_or("no connection pool for this node")
    }
}
