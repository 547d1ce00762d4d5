//! The MySQL router's tests' nodes: a pool per server, and a router over one primary and
//! one replica pool.
#![allow(dead_code)] // each includer uses a different part

use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use tower_lb::policy::P2c;
use tower_lb::replica::{ReplicaRouter, ReplicaRouterBuilder, SqlClassifier, WholeRouter};
use tower_lb::Balance;

/// A small pool on the server at `url`.
pub async fn pool(url: &str) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap()
}

/// One node's balancer.
pub type Node = Balance<&'static str, MySqlPool, P2c>;

/// A router over one primary and one replica pool, to be configured.
pub fn builder(
    primary: &MySqlPool,
    replica: &MySqlPool,
) -> ReplicaRouterBuilder<Node, Node, SqlClassifier, WholeRouter> {
    ReplicaRouter::builder(
        Balance::builder(P2c::new())
            .endpoint("primary", primary.clone())
            .build()
            .unwrap(),
        Balance::builder(P2c::new())
            .endpoint("replica", replica.clone())
            .build()
            .unwrap(),
    )
}

/// A router over a multi-primary cluster's nodes (Galera): every node in both pools, for the
/// role probe to sort out.
pub fn multi_primary(
    pools: &[(&'static str, MySqlPool)],
) -> ReplicaRouterBuilder<Node, Node, SqlClassifier, WholeRouter> {
    let every_node = || {
        Balance::builder(P2c::new())
            .endpoints(pools.to_vec())
            .build()
            .unwrap()
    };
    ReplicaRouter::builder(every_node(), every_node())
}
