//! A router from a libpq multi-host URL, or from a list of `PgConnectOptions`: one pool per
//! host, roles found by probing and followed afterwards.

use super::sqlx;
use super::PgRoleProbe;
use crate::error::Error;
use crate::pool::Excluder;
use crate::replica::role::ROLE_UNKNOWN;
use crate::policy::{Either, P2c, Random};
use crate::replica::sqlx_front::hosts::HostList;
use crate::replica::sqlx_front::PgRouter;
use crate::replica::{
    LoadBalanceHosts, Nodes, PgUrlError, ReplicaRouter, ReplicaRouterBuilder, RoleMonitor,
    SqlClassifier, TargetSessionAttrs, WholeRouter,
};
use crate::Balance;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// The primary pool of a router built by [`PgHosts`]: every host, keyed `host:port`, held
/// out while it is not the primary.
pub type PgHostsPrimary = Balance<String, PgPool, P2c>;

/// The replica pool of a router built by [`PgHosts`]: every host, held out while it is the
/// primary; [`P2c`] or, with `load_balance_hosts=random`, [`Random`].
pub type PgHostsReplicas = Balance<String, PgPool, Either<P2c, Random>>;

/// A router built by [`PgHosts`].
pub type PgHostsRouter<X = WholeRouter> = PgRouter<PgHostsPrimary, PgHostsReplicas, X>;

/// A [`PgRouter`] from a libpq multi-host URL, as libpq, tokio-postgres and JDBC accept it
/// (and sqlx does not): `postgresql://user@h1:5432,h2:5433,h3/db?target_session_attrs=…`.
///
/// - **One pool per host**, with the given [`PgPoolOptions`], keyed `host:port` in both of
///   the router's pools.
/// - **Roles are probed, not taken from the order of the hosts**: a [`RoleMonitor`] with
///   [`PgRoleProbe`] asks every host every second ([`probe_every`](Self::probe_every)), so
///   writes follow a promoted replica, and [`connect`](Self::connect) returns once every
///   host has answered or timed out once.
/// - **`target_session_attrs`** says where reads go ([`TargetSessionAttrs::reads`]):
///   `prefer-standby` and `any` to replicas with the primary as fallback; `standby` and
///   `read-only` to replicas only, failing with [`Error::NoReplica`] when none is in
///   rotation; `primary` and `read-write` to the primary. Writes go to the host found primary.
/// - **`load_balance_hosts=random`** spreads reads over the replicas at random; otherwise by
///   load ([`P2c`]).
/// - The other parameters are sqlx's (`sslmode`, `application_name`, `options`, …) and apply
///   to every host; `host` and `port` may list the hosts instead of the authority. A
///   parameter sqlx would ignore (`connect_timeout`, `hostaddr`, …) or a value these do not
///   take is a [`PgUrlError`] naming it.
///
/// ```no_run
/// use tower_lb::replica::PgHosts;
///
/// # async fn app() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "postgresql://app@127.0.0.1:5432,127.0.0.1:5433,127.0.0.1:5434/shop\
///            ?target_session_attrs=prefer-standby&load_balance_hosts=random";
/// let db = PgHosts::from_url(url)?.connect().await?;
/// sqlx::query("INSERT INTO orders (item) VALUES ($1)").bind(7).execute(&db).await?;
/// let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&db).await?;
/// # let _ = count; Ok(()) }
/// ```
///
/// For sessions, position mode or a read share cap, take the router's
/// [`builder`](Self::builder) instead of [`connect`](Self::connect).
#[derive(Debug, Clone)]
pub struct PgHosts {
    nodes: Vec<(String, PgConnectOptions)>,
    target_session_attrs: TargetSessionAttrs,
    load_balance_hosts: LoadBalanceHosts,
    pool: PgPoolOptions,
    probe_every: Duration,
}

impl PgHosts {
    /// The hosts and routing of a multi-host URL (see [`PgHosts`]).
    ///
    /// ```
    /// use tower_lb::replica::{PgHosts, PgUrlError};
    ///
    /// let hosts = PgHosts::from_url("postgresql://app@127.0.0.1:5432,127.0.0.1:5433/shop")?;
    /// assert_eq!(hosts.keys(), ["127.0.0.1:5432", "127.0.0.1:5433"]);
    /// let error = PgHosts::from_url("postgresql://127.0.0.1/shop?connect_timeout=5").unwrap_err();
    /// assert_eq!(error, PgUrlError::UnsupportedParameter { parameter: "connect_timeout".into() });
    /// # Ok::<(), PgUrlError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, PgUrlError> {
        let list: HostList = url.parse()?;
        let nodes = (list.hosts.into_iter())
            .map(|host| match PgConnectOptions::from_str(&host.url) {
                Ok(options) => Ok((host.key, options)),
                Err(error) => Err(PgUrlError::Host {
                    host: host.key,
                    reason: error.to_string(),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(PgHosts {
            target_session_attrs: list.target_session_attrs,
            load_balance_hosts: list.load_balance_hosts,
            ..PgHosts::from_nodes(nodes)
        })
    }

    /// The hosts of `options`, one each, keyed `host:port`; routed as `any` (reads to
    /// replicas, the primary as fallback) unless told otherwise.
    ///
    /// ```
    /// use sqlx::postgres::PgConnectOptions;
    /// use tower_lb::replica::{PgHosts, TargetSessionAttrs};
    ///
    /// let node = |port| PgConnectOptions::new().host("127.0.0.1").port(port).username("app");
    /// let hosts = PgHosts::new([node(5432), node(5433)]).target_session_attrs(TargetSessionAttrs::Standby);
    /// assert_eq!(hosts.keys(), ["127.0.0.1:5432", "127.0.0.1:5433"]);
    /// ```
    pub fn new(options: impl IntoIterator<Item = PgConnectOptions>) -> Self {
        let nodes = (options.into_iter())
            .map(|o| (format!("{}:{}", o.get_host(), o.get_port()), o))
            .collect();
        PgHosts::from_nodes(nodes)
    }

    fn from_nodes(nodes: Vec<(String, PgConnectOptions)>) -> Self {
        PgHosts {
            nodes,
            target_session_attrs: TargetSessionAttrs::default(),
            load_balance_hosts: LoadBalanceHosts::default(),
            pool: PgPoolOptions::new(),
            probe_every: Duration::from_secs(1),
        }
    }

    /// The hosts' keys in the router's pools, in the order given.
    pub fn keys(&self) -> Vec<&str> {
        self.nodes.iter().map(|(key, _)| key.as_str()).collect()
    }

    /// Where reads go (the URL's `target_session_attrs`).
    pub fn target_session_attrs(mut self, attrs: TargetSessionAttrs) -> Self {
        self.target_session_attrs = attrs;
        self
    }

    /// How reads are spread over the replicas (the URL's `load_balance_hosts`).
    pub fn load_balance_hosts(mut self, balance: LoadBalanceHosts) -> Self {
        self.load_balance_hosts = balance;
        self
    }

    /// The options of each host's pool (sqlx's defaults otherwise).
    pub fn pool_options(mut self, pool: PgPoolOptions) -> Self {
        self.pool = pool;
        self
    }

    /// How often every host's role is probed (default 1 s, at least 50 ms): how soon writes
    /// follow a promoted replica, and how long [`connect`](Self::connect) waits for a host
    /// that does not answer.
    pub fn probe_every(mut self, interval: Duration) -> Self {
        self.probe_every = interval.max(Duration::from_millis(50));
        self
    }

    /// A router builder over one lazy pool per host, with the role monitor and the reads of
    /// `target_session_attrs` set: add sessions or position mode, build, and wait for
    /// [`ready`](ReplicaRouter::ready). Call it within a tokio runtime (sqlx's pools start
    /// their upkeep there); it connects to nothing itself.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_lb::replica::PgHosts;
    ///
    /// # async fn app() -> Result<(), Box<dyn std::error::Error>> {
    /// let db = PgHosts::from_url("postgresql://app@127.0.0.1:5432,127.0.0.1:5433/shop")?
    ///     .builder()?
    ///     .read_your_writes_by_position(Duration::from_secs(30))
    ///     .build();
    /// db.ready(Duration::from_secs(3)).await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(
        self,
    ) -> Result<
        ReplicaRouterBuilder<PgHostsPrimary, PgHostsReplicas, SqlClassifier, WholeRouter>,
        Error,
    > {
        let pools: Vec<(String, PgPool)> = (self.nodes.into_iter())
            .map(|(key, options)| (key, self.pool.clone().connect_lazy_with(options)))
            .collect();
        let replica_policy = match self.load_balance_hosts {
            LoadBalanceHosts::Disable => Either::Left(P2c::new()),
            LoadBalanceHosts::Random => Either::Right(Random::new()),
        };
        let primary = Balance::builder(P2c::new())
            .endpoints(pools.iter().cloned())
            .build()?;
        let replicas = Balance::builder(replica_policy)
            .endpoints(pools.iter().cloned())
            .build()?;
        let roles = RoleMonitor::new(PgRoleProbe::new(pools)).every(self.probe_every);
        Ok(ReplicaRouter::builder(primary, replicas)
            .role_monitor(roles)
            .reads(self.target_session_attrs.reads()))
    }

    /// The router, once every host has answered its first role probe or timed out: fails
    /// with [`Error::Unreachable`] only when none answered. A role no host has yet fails the
    /// statements that need it, typed ([`Error::NoPrimary`], [`Error::NoReplica`]), until a
    /// later probe finds it.
    pub async fn connect(self) -> Result<PgHostsRouter, Error> {
        let first_round = self.probe_every * 3; // each probe times out at the interval
        let db = self.builder()?.build();
        db.ready(first_round).await?;
        let nodes = db.primary().nodes();
        let answered = (nodes.iter())
            .filter(|node| node.exclusions.by(Excluder::RoleMonitor) != Some(ROLE_UNKNOWN))
            .count();
        match answered {
            0 => Err(Error::Unreachable {
                nodes: nodes.len(),
                waited: first_round,
            }),
            _ => Ok(db),
        }
    }
}
