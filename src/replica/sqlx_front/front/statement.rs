//! One statement through the router: routed by the router's decision, run on a connection
//! of the pool it was routed to, accounted against that node, and sent once more to the
//! primary if a replica fails a read before its first row.
//!
//! The connection is acquired here rather than by running the statement on the pool, so
//! that a statement waiting for a connection to a node stops waiting as soon as the node
//! leaves rotation (a monitor found it dead, health ejected it) instead of waiting out the
//! pool's `acquire_timeout`: it was not sent, so even a write may go elsewhere.

use super::database::{capture_position, FrontDatabase, Item};
use super::sqlstate::{is_query_fault, unavailable};
use super::sqlx;
use crate::balance::Lease;
use crate::error::Error;
use crate::policy::Pick;
use crate::replica::sqlx_front::rows::Rows;
use crate::replica::router::route::{caught_up, Route, Why};
use crate::replica::router::Shared;
use crate::replica::{Nodes, ReplicaRouter, Role, SqlClassifier};
use futures_core::Stream;
use sqlx::pool::PoolConnection;
use sqlx::{Either, Execute, Pool};
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// A router whose pools hold `Pool<DB>`s, as the sqlx front routes through.
type Router<P, R, X> = ReplicaRouter<P, R, SqlClassifier, X>;

/// Says that a returned stream holds the statement it was given, of lifetime `'q` (the
/// statement type is the database's, so the compiler cannot shorten it to the stream's).
pub(super) trait Captures<'q> {}

impl<T: ?Sized> Captures<'_> for T {}

/// What a statement fetches: every result, or only its first row (`fetch_optional`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fetch {
    Many,
    Optional,
}

/// How many times one statement may be routed: its route, a resend to the primary, and
/// nodes that left rotation while it waited for them.
const MAX_ROUTES: usize = 4;

/// The results of `query` from the session in `slot`, routed and run as a stream.
pub(super) fn results<'e, 'q: 'e, P, R, X, DB>(
    router: &'e Router<P, R, X>,
    slot: Option<usize>,
    query: impl Execute<'q, DB> + 'q,
    fetch: Fetch,
) -> impl Stream<Item = Item<DB>> + Send + Captures<'q> + 'e
where
    P: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
    R: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
    X: Send + Sync + 'static,
    DB: FrontDatabase,
{
    let statement = DB::take(query);
    Rows::new(move |results| async move {
        let ran = match statement {
            Ok(statement) => run(router, slot, statement, fetch, &results).await,
            Err(error) => Err(error),
        };
        if let Err(error) = ran {
            let _ = results.send(Err(error)).await;
        }
    })
}

/// Routes `statement`, runs it and sends its results; the error that ends it, if any.
async fn run<P, R, X, DB>(
    router: &Router<P, R, X>,
    slot: Option<usize>,
    statement: DB::Sendable<'_>,
    fetch: Fetch,
    results: &Sender<Item<DB>>,
) -> Result<(), sqlx::Error>
where
    P: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
    R: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
    X: Send + Sync + 'static,
    DB: FrontDatabase,
{
    let shared = router.shared();
    let access = DB::classify(&shared.classify, DB::text(&statement));
    let mut route = shared.decide(access, slot, true);
    // Decided once: a resend changes the route's reason, not what the read must see.
    let causal = shared.causal_reads && route.why == Why::Pinned;
    let mut statement = Some(statement);
    for _ in 0..MAX_ROUTES {
        let lease = lease(router, &mut route).await.map_err(unavailable)?;
        let acquired = match route.to {
            Role::Primary => acquire(router.primary(), &lease).await,
            Role::Replica => acquire(router.replicas(), &lease).await,
        };
        // A causal read's barrier is part of taking the connection: if it fails, the
        // statement was not sent, as when the connection could not be had.
        let acquired = match acquired {
            Acquired::Connection(mut connection) if causal => {
                match DB::causal_barrier(&mut connection).await {
                    Ok(()) => Acquired::Connection(connection),
                    Err(error) => Acquired::Failed(error),
                }
            }
            acquired => acquired,
        };
        let mut connection = match acquired {
            Acquired::Connection(connection) => connection,
            Acquired::NodeLeft => {
                // Not sent: a read moves to the primary, anything else takes its pool again
                // (which no longer offers that node).
                drop(lease);
                shared.resend(&mut route, &"the node left rotation");
                continue;
            }
            Acquired::Failed(error) => {
                fail::<X, DB>(shared, lease, &route, &error);
                if DB::worth_resending(&error) && shared.resend(&mut route, &error) {
                    continue;
                }
                route.never_sent(); // no connection (or no barrier): the statement never left
                return Err(error);
            }
        };
        // Only a read on a replica may be sent again, so only it is copied (its arguments
        // cloned): anything else is sent itself, and whatever comes of it is the answer.
        let sent = match (route.may_resend(), statement.take()) {
            (true, Some(kept)) => statement.insert(kept).clone(),
            (false, Some(last)) => last,
            (_, None) => break, // never: only the last send takes it
        };
        match execute::<DB>(&mut connection, sent, fetch, results).await {
            Ok(()) => {
                drop(connection);
                let pool = lease.service.clone();
                lease.complete(true);
                capture_position(&pool, route.mark.as_ref()).await;
                return Ok(());
            }
            Err(Failure { error, sent_any }) => {
                fail::<X, DB>(shared, lease, &route, &error);
                if !sent_any && DB::worth_resending(&error) && shared.resend(&mut route, &error) {
                    continue;
                }
                return Err(error);
            }
        }
    }
    // Every node it was routed to left before it was sent.
    route.never_sent();
    Err(unavailable(Error::NodesLeftRotation { times: MAX_ROUTES }))
}

/// Takes a node for `route` from its pool; in position mode, first asks the replicas which
/// has replayed the session's write.
async fn lease<P, R, X, DB>(
    router: &Router<P, R, X>,
    route: &mut Route<SqlClassifier, X>,
) -> Result<Lease<Pool<DB>>, Error>
where
    P: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
    R: Nodes<Service = Pool<DB>, Policy: Pick<()>>,
    DB: FrontDatabase,
{
    let mut caught_up = match (route.to, route.position()) {
        (Role::Replica, Some(position)) => {
            let reached = |replica: &Pool<DB>, budget| {
                let replica = replica.clone();
                async move { DB::reached(&replica, position, budget).await }
            };
            let wait = router
                .shared()
                .sessions
                .positions()
                .map_or(Duration::ZERO, |p| p.wait());
            let search = caught_up(router.replicas(), wait, reached);
            Some(router.shared().position_wait(search).await)
        }
        _ => None,
    };
    router
        .shared()
        .take(route, |role| match (role, caught_up.take()) {
            (Role::Primary, _) => router.primary().lease(&(), &[]),
            (Role::Replica, None) => router.replicas().lease(&(), &[]),
            (Role::Replica, Some(replica)) => replica.ok_or(Error::NoEndpoints),
        })
}

/// A connection to the leased node, unless it leaves rotation first.
enum Acquired<DB: sqlx::Database> {
    Connection(PoolConnection<DB>),
    NodeLeft,
    Failed(sqlx::Error),
}

async fn acquire<N: Nodes, DB: sqlx::Database>(pool: &N, lease: &Lease<Pool<DB>>) -> Acquired<DB> {
    tokio::select! {
        biased;
        connection = lease.service.acquire() => match connection {
            Ok(connection) => Acquired::Connection(connection),
            Err(error) => Acquired::Failed(error),
        },
        () = pool.out_of_rotation(lease.endpoint()) => {
            tracing::debug!("the node left rotation while a statement waited for it");
            Acquired::NodeLeft
        }
    }
}

/// A statement's failure, and whether any of its results had been handed on (then it is
/// not sent again: half a read is not answered twice).
struct Failure {
    error: sqlx::Error,
    sent_any: bool,
}

/// Runs `statement` on `connection`, sending each result on.
async fn execute<DB: FrontDatabase>(
    connection: &mut PoolConnection<DB>,
    statement: DB::Sendable<'_>,
    fetch: Fetch,
    results: &Sender<Item<DB>>,
) -> Result<(), Failure> {
    let failed = |error, sent_any| Failure { error, sent_any };
    if fetch == Fetch::Optional {
        return match DB::fetch_optional(&mut **connection, statement).await {
            Ok(Some(row)) => {
                let _ = results.send(Ok(Either::Right(row))).await;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => Err(failed(error, false)),
        };
    }
    let mut rows = DB::fetch_many(&mut **connection, statement);
    let mut sent_any = false;
    while let Some(result) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
        match result {
            Ok(result) => {
                sent_any = true;
                if results.send(Ok(result)).await.is_err() {
                    return Ok(()); // the caller dropped the stream
                }
            }
            Err(error) => return Err(failed(error, sent_any)),
        }
    }
    Ok(())
}

/// Accounts for a statement that failed: against its node only for a connection-level
/// error (not the statement's own); a write refused as read-only (SQLSTATE 25006) wakes the
/// role monitor, since the node believed primary is not (any more).
fn fail<X, DB: FrontDatabase>(
    shared: &Shared<SqlClassifier, X>,
    lease: Lease<Pool<DB>>,
    route: &Route<SqlClassifier, X>,
    error: &sqlx::Error,
) {
    if let (Why::Write, true, Some(reprobe)) =
        (route.why, DB::is_read_only(error), &shared.reprobe_roles)
    {
        tracing::warn!("a write reached a read-only node: re-probing roles");
        reprobe.notify_one();
    }
    lease.complete(is_query_fault(error));
}
