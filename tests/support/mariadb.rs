//! Throwaway MariaDB servers on loopback ports in a temp dir, started from the system's
//! MariaDB binaries (`mariadb-install-db`, `mariadbd`): a primary with a GTID replica
//! ([`Cluster`]), or a three-node Galera cluster ([`Galera`]).
//!
//! One of each per test binary (`shared()`): starting one takes seconds. A static is never
//! dropped, so a reaper (a shell loop started with the servers) kills them and removes the
//! directory as soon as the test process is gone, whether it ended, panicked or was killed.
//! A test that kills servers starts its own primary and replica (`Cluster::start()`), stopped
//! when it is dropped (also when the test panics), and by the reaper at the latest.
//!
//! Without the binaries, `shared()` prints a loud skip notice and returns `None`, unless `CI`
//! is set: then it panics, so that CI cannot pass by skipping. As root (mariadbd refuses to
//! run as root without `--user`), the servers run as the `mysql` user through `runuser`.
#![allow(dead_code)] // each includer uses a different part

#[path = "host.rs"]
mod host;
use host::{command_as, free_ports, is_root, output_within_a_minute};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The ordinary user the tests connect as: no `SUPER`, no `READ_ONLY ADMIN`, so the
/// replica's `read_only` binds it (it does not bind SUPER).
pub const USER: &str = "app";
/// The database the ordinary user owns.
pub const DATABASE: &str = "app";

const MARIADBD: &str = "/usr/sbin/mariadbd";
const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
const GALERA: &str = "/usr/lib/galera/libgalera_smm.so";

/// A running primary and a replica applying its binlog by GTID, `read_only` on.
pub struct Cluster {
    servers: Servers,
    pub primary_port: u16,
    pub replica_port: u16,
}

impl Cluster {
    /// The test binary's cluster, started on first use; `None` (with a notice) when the
    /// MariaDB binaries are not installed and `CI` is not set.
    pub fn shared() -> Option<&'static Cluster> {
        static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
        CLUSTER.get_or_init(Cluster::start).as_ref()
    }

    /// A cluster of the caller's own, for a test that kills or promotes its servers: stopped
    /// when dropped. `None` as for [`shared`](Self::shared).
    pub fn start() -> Option<Cluster> {
        let servers = Servers::new("mariadb", &[MARIADBD, INSTALL_DB])?;
        let [primary_port, replica_port] = free_ports(2)[..] else {
            unreachable!("two ports asked")
        };
        let cluster = Cluster {
            servers,
            primary_port,
            replica_port,
        };
        let started = Instant::now();
        let replication = |id: &str| {
            vec![
                format!("--server-id={id}"),
                "--log-bin=binlog".into(),
                "--log-slave-updates".into(),
                "--gtid-strict-mode=1".into(),
                // Else a replicated `CREATE FUNCTION … MODIFIES SQL DATA` stops replication.
                "--log-bin-trust-function-creators=1".into(),
            ]
        };
        let mut replica = replication("2");
        replica.push("--read-only=ON".into());
        cluster.servers.install("primary");
        cluster.servers.install("replica");
        cluster
            .servers
            .start("primary", primary_port, &replication("1"));
        cluster.servers.start("replica", replica_port, &replica);
        cluster.primary_sql(&format!(
            "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';
             {}",
            ordinary_user()
        ));
        cluster.replica_sql(&format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary_port},
                 MASTER_USER = 'repl', MASTER_PASSWORD = 'repl', MASTER_USE_GTID = slave_pos;
             START SLAVE;"
        ));
        cluster.wait_for_replica();
        eprintln!(
            "MariaDB primary :{primary_port} and replica :{replica_port} up in {:?}",
            started.elapsed()
        );
        Some(cluster)
    }

    /// A sqlx URL for the primary, as the ordinary user.
    pub fn primary_url(&self) -> String {
        url(self.primary_port)
    }

    /// A sqlx URL for the replica, as the ordinary user.
    pub fn replica_url(&self) -> String {
        url(self.replica_port)
    }

    /// Runs `sql` on the primary as root, through the `mariadb` client.
    pub fn primary_sql(&self, sql: &str) -> String {
        client(self.primary_port, sql)
    }

    /// Runs `sql` on the replica as root, through the `mariadb` client.
    pub fn replica_sql(&self, sql: &str) -> String {
        client(self.replica_port, sql)
    }

    /// Kills the primary with SIGKILL, as a crash would.
    pub fn kill_primary(&self) {
        self.servers.kill("primary");
    }

    /// Kills the replica with SIGKILL, as a crash would.
    pub fn kill_replica(&self) {
        self.servers.kill("replica");
    }

    /// Promotes the replica as an operator does: it stops replicating, forgets its primary,
    /// and takes writes.
    pub fn promote_replica(&self) {
        self.replica_sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0");
    }

    /// Waits (bounded) until the replica has applied everything the primary has written.
    pub fn wait_for_replica(&self) {
        let position = self.primary_sql("SELECT @@gtid_binlog_pos");
        let reached = self.replica_sql(&format!(
            "SELECT MASTER_GTID_WAIT('{}', 30)",
            position.trim()
        ));
        assert_eq!(
            reached.trim(),
            "0",
            "the replica did not catch up within 30 s"
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in ["primary", "replica"] {
            self.servers.kill_if_running(server);
        }
        let _ = std::fs::remove_dir_all(&self.servers.dir);
    }
}

/// A running three-node Galera cluster (MariaDB with `galera-4`): every node takes writes.
pub struct Galera {
    servers: Servers,
    nodes: Vec<GaleraNode>,
}

/// One Galera node's ports: clients, group communication, incremental and full state
/// transfer.
struct GaleraNode {
    port: u16,
    group: u16,
    ist: u16,
    sst: u16,
}

impl Galera {
    /// The test binary's cluster, started on first use (see [`Cluster::shared`]).
    pub fn shared() -> Option<&'static Galera> {
        static GALERA_CLUSTER: OnceLock<Option<Galera>> = OnceLock::new();
        GALERA_CLUSTER.get_or_init(Galera::start).as_ref()
    }

    fn start() -> Option<Galera> {
        let servers = Servers::new("galera", &[MARIADBD, INSTALL_DB, GALERA, "/usr/bin/rsync"])?;
        let nodes = free_ports(12)
            .chunks(4)
            .map(|ports| GaleraNode {
                port: ports[0],
                group: ports[1],
                ist: ports[2],
                sst: ports[3],
            })
            .collect();
        let galera = Galera { servers, nodes };
        let started = Instant::now();
        for node in 0..3 {
            galera.servers.install(&name(node));
        }
        galera.start_node(0, true);
        galera.sql(0, &ordinary_user());
        for node in 1..3 {
            galera.start_node(node, false);
        }
        eprintln!("Galera cluster of 3 up in {:?}", started.elapsed());
        Some(galera)
    }

    /// Node `node`'s client port.
    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].port
    }

    /// A sqlx URL for node `node`, as the ordinary user.
    pub fn url(&self, node: usize) -> String {
        url(self.nodes[node].port)
    }

    /// Runs `sql` on node `node` as root.
    pub fn sql(&self, node: usize, sql: &str) -> String {
        client(self.nodes[node].port, sql)
    }

    /// Node `node`'s `wsrep_local_state_comment` (`Synced`, `Joiner`, `Donor/Desynced`…), or
    /// `None` if it does not answer.
    pub fn state(&self, node: usize) -> Option<String> {
        // SHOW STATUS answers while the node refuses queries (1047) as it joins.
        let status = try_client(
            self.nodes[node].port,
            "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'",
        )?;
        Some(
            status
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// Kills node `node` with SIGKILL, as a crash would.
    pub fn kill(&self, node: usize) {
        self.servers.kill(&name(node));
    }

    /// Starts node `node` again after [`kill`](Self::kill), and returns at once: it rejoins
    /// by state transfer, answering nothing, then `SHOW STATUS` only, until it is synced.
    pub fn restart(&self, node: usize) {
        self.spawn_node(node, false);
    }

    fn start_node(&self, node: usize, new_cluster: bool) {
        self.spawn_node(node, new_cluster);
        self.servers
            .wait_for_clients(&name(node), self.nodes[node].port);
        let started = Instant::now();
        while self.state(node).as_deref() != Some("Synced") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Galera node {node} did not sync within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_node(&self, node: usize, new_cluster: bool) {
        let me = &self.nodes[node];
        let members: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.group))
            .collect();
        let mut args = vec![
            "--wsrep-on=ON".to_string(),
            format!("--wsrep-provider={GALERA}"),
            "--wsrep-cluster-name=tower-lb".into(),
            format!("--wsrep-cluster-address=gcomm://{}", members.join(",")),
            format!("--wsrep-node-address=127.0.0.1:{}", me.group),
            format!(
                "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{};\
                 ist.recv_addr=127.0.0.1:{};gcache.size=32M",
                me.group, me.ist
            ),
            "--wsrep-sst-method=rsync".into(),
            format!("--wsrep-sst-receive-address=127.0.0.1:{}", me.sst),
            "--binlog-format=ROW".into(),
            "--innodb-autoinc-lock-mode=2".into(),
            format!("--server-id={}", node + 1),
        ];
        if new_cluster {
            args.push("--wsrep-new-cluster".into());
        }
        self.servers.spawn(&name(node), me.port, &args);
    }
}

fn name(node: usize) -> String {
    format!("node{}", node + 1)
}

/// The ordinary user and its database.
fn ordinary_user() -> String {
    format!(
        "CREATE DATABASE {DATABASE};
         CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{USER}';
         GRANT ALL ON {DATABASE}.* TO '{USER}'@'127.0.0.1';"
    )
}

/// The servers of one cluster: their directory, and how they are run.
struct Servers {
    dir: PathBuf,
    run_as_mysql: bool,
}

impl Servers {
    /// A directory for servers of `kind`, reaped with this process; `None` (with a notice)
    /// when a binary is missing and `CI` is not set.
    fn new(kind: &str, binaries: &[&str]) -> Option<Servers> {
        if let Some(missing) = binaries.iter().find(|binary| !Path::new(binary).exists()) {
            let notice =
                format!("{missing} not found (install mariadb-server, galera-4 and rsync)");
            if std::env::var_os("CI").is_some() {
                panic!("{notice}: CI is set, so the MariaDB tests may not be skipped");
            }
            eprintln!(
                "\n{}\nSKIPPED: {notice}\n{}\n",
                "!".repeat(72),
                "!".repeat(72)
            );
            return None;
        }
        static CLUSTERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tower-lb-{kind}-{}-{n}", std::process::id()));
        let servers = Servers {
            dir,
            run_as_mysql: is_root(),
        };
        // A dir left by an earlier process with the same pid (killed before
        // its Drop ran) would make mariadb-install-db refuse the data dir.
        let _ = std::fs::remove_dir_all(&servers.dir);
        std::fs::create_dir_all(&servers.dir).expect("temp dir");
        if servers.run_as_mysql {
            let status = Command::new("chown")
                .args(["mysql:mysql"])
                .arg(&servers.dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {}", servers.dir.display());
        }
        servers.start_reaper();
        Some(servers)
    }

    /// Kills the servers and removes the directory once this process has gone.
    // Never waited for, by design: it outlives this process (init reaps it then).
    #[allow(clippy::zombie_processes)]
    fn start_reaper(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; \
             for f in '{dir}'/*.pid; do [ -f \"$f\" ] && kill -9 \"$(cat \"$f\")\" 2>/dev/null; done; \
             sleep 0.2; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("reaper");
    }

    fn install(&self, name: &str) {
        // One install at a time in a process: two clusters of one test binary once failed to
        // install side by side ("Installation of system tables failed"), never one alone.
        static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = INSTALLING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut command = self.command(INSTALL_DB);
        command.args([
            "--no-defaults".to_string(),
            format!("--datadir={}", self.dir.join(name).display()),
            "--auth-root-authentication-method=normal".into(),
            "--skip-test-db".into(),
        ]);
        let output = output_within_a_minute(command, INSTALL_DB);
        if !output.status.success() {
            // The server's own log says why; the directory is removed with the cluster.
            let logs: String = std::fs::read_dir(self.dir.join(name))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "err"))
                .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
                .collect();
            panic!(
                "{INSTALL_DB} failed: {}\n{}\n{logs}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Starts server `name` on `port` with `extra` arguments; returns once it answers.
    fn start(&self, name: &str, port: u16, extra: &[String]) {
        self.spawn(name, port, extra);
        self.wait_for_clients(name, port);
    }

    // The server is not waited for: it runs until it is killed, or the reaper kills it.
    #[allow(clippy::zombie_processes)]
    fn spawn(&self, name: &str, port: u16, extra: &[String]) {
        let file = |suffix: &str| self.dir.join(format!("{name}.{suffix}"));
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--datadir={}", self.dir.join(name).display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={}", file("sock").display()),
            format!("--pid-file={}", file("pid").display()),
            format!("--log-error={}", file("err").display()),
            "--skip-name-resolve".into(),
            "--innodb-buffer-pool-size=32M".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--sync-binlog=0".into(),
            "--max-connections=100".into(),
        ];
        args.extend(extra.iter().cloned());
        self.command(MARIADBD)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
    }

    fn wait_for_clients(&self, name: &str, port: u16) {
        let started = Instant::now();
        while try_client(port, "SELECT 1").is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.err")));
                panic!("mariadbd {name} did not start within 60 s: {log:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills server `name` with SIGKILL and waits (bounded) until it is gone.
    fn kill(&self, name: &str) {
        assert!(self.kill_if_running(name), "{name} is not running");
    }

    /// [`kill`](Self::kill), if it runs; whether it did.
    fn kill_if_running(&self, name: &str) -> bool {
        let pid_file = self.dir.join(format!("{name}.pid"));
        let Ok(pid) = std::fs::read_to_string(&pid_file) else {
            return false;
        };
        let pid = pid.trim();
        let _ = Command::new("kill").args(["-9", pid]).status();
        let started = Instant::now();
        while Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
        {
            assert!(started.elapsed() < Duration::from_secs(10), "{name} lives");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(pid_file);
        true
    }

    fn command(&self, program: &str) -> Command {
        command_as(self.run_as_mysql.then_some("mysql"), program.as_ref())
    }
}

fn url(port: u16) -> String {
    format!("mysql://{USER}:{USER}@127.0.0.1:{port}/{DATABASE}")
}

/// Runs `sql` as root through the `mariadb` client; panics if it fails.
fn client(port: u16, sql: &str) -> String {
    let output = client_output(port, sql);
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// `client`, or `None` if the server does not answer or refuses.
fn try_client(port: u16, sql: &str) -> Option<String> {
    let output = client_output(port, sql);
    output
        .status
        .success()
        .then(|| String::from_utf8(output.stdout).expect("utf-8"))
}

fn client_output(port: u16, sql: &str) -> std::process::Output {
    let mut command = Command::new("mariadb");
    command
        .args(["--no-defaults", "-h127.0.0.1", "-uroot", "-N", "-B"])
        .arg("--connect-timeout=2")
        .arg(format!("-P{port}"))
        .arg("-e")
        .arg(sql);
    output_within_a_minute(command, "mariadb")
}
