//! `GaleraRoleProbe` on a real three-node Galera cluster (MariaDB with `galera-4`), driving
//! the replica router's role monitor over a multi-primary pool: all three synced nodes take
//! writes; a node killed with SIGKILL leaves the write rotation within a probe interval or
//! two, the survivors stay; restarted, it returns only once it reports itself synced.
#![cfg(feature = "sqlx-mysql")]

#[path = "support/mariadb.rs"]
mod mariadb;
#[path = "support/mysql_nodes.rs"]
mod mysql_nodes;

use mysql_nodes::multi_primary;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use std::time::{Duration, Instant};
use tower_lb::policy::P2c;
use tower_lb::replica::{GaleraRoleProbe, Role, RoleMonitor, RoleProbe};
use tower_lb::Balance;

const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn in_rotation(pool: &Balance<&'static str, MySqlPool, P2c>, key: &str) -> bool {
    pool.snapshot()
        .into_iter()
        .any(|e| e.key == key && e.excluded.is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_galera_node_leaves_writes_when_it_dies_and_returns_once_synced() {
    let Some(galera) = mariadb::Galera::shared() else {
        return;
    };
    let pools: Vec<(&str, MySqlPool)> = NODES
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let pool = MySqlPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(1))
                .connect_lazy(&galera.url(i))
                .unwrap();
            (*key, pool)
        })
        .collect();
    let probe = GaleraRoleProbe::new(pools.clone());
    for key in NODES {
        assert_eq!(probe.role(&key).await.unwrap(), Role::Primary, "{key}");
    }

    let interval = Duration::from_millis(200);
    let db = multi_primary(&pools)
        .role_monitor(RoleMonitor::new(GaleraRoleProbe::new(pools.clone())).every(interval))
        .build();
    db.ready(Duration::from_secs(10)).await.unwrap();
    assert!(
        NODES.iter().all(|key| in_rotation(db.primary(), key)),
        "all three take writes"
    );

    // Killed: out of the write rotation; the survivors stay in it.
    galera.kill(2);
    let killed = Instant::now();
    while in_rotation(db.primary(), "node3") {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "node3 still takes writes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let left = killed.elapsed();
    assert!(in_rotation(db.primary(), "node1") && in_rotation(db.primary(), "node2"));
    println!("a killed node left the write rotation after {left:?} (probes every {interval:?})");
    assert!(
        left <= interval * 2 + Duration::from_millis(200),
        "{left:?}"
    );

    // Restarted: it rejoins by state transfer, and takes writes only once synced.
    let restarted = Instant::now();
    galera.restart(2);
    let mut states_seen_while_out = Vec::new();
    // The donor of the state transfer is desynced for its length: out of writes too.
    let mut donors_out = std::collections::BTreeSet::new();
    loop {
        for donor in ["node1", "node2"] {
            if !in_rotation(db.primary(), donor) {
                donors_out.insert(donor);
            }
        }
        // Rotation first, then the state: read the other way round, the node could turn
        // synced and be readmitted between the two reads (the state is read by a client
        // process, tens of milliseconds), and a state from before the readmission would
        // look like one it was readmitted in. Once synced, it stays so here.
        let readmitted = in_rotation(db.primary(), "node3");
        let state = galera.state(2);
        if readmitted {
            // Readmitted: the node said it was synced before the monitor let it in.
            assert_eq!(
                state.as_deref(),
                Some("Synced"),
                "readmitted while {state:?}"
            );
            break;
        }
        if let Some(state) = state {
            if states_seen_while_out.last() != Some(&state) {
                states_seen_while_out.push(state);
            }
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "node3 never returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "restarted node back in the write rotation after {:?}; its states while out: \
         {states_seen_while_out:?}; survivors out of writes meanwhile (donating): {donors_out:?}",
        restarted.elapsed()
    );
    assert!(NODES.iter().all(|key| in_rotation(db.primary(), key)));
}
