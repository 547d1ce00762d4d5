//! A throwaway MariaDB primary with a GTID replica, on loopback ports in a temp dir, started
//! from the system's MariaDB binaries (`mariadb-install-db`, `mariadbd`).
//!
//! One cluster per test binary ([`Cluster::shared`]): starting one takes seconds. A static is
//! never dropped, so a reaper (a shell loop started with the servers) kills them and removes
//! the directory as soon as the test process is gone, whether it ended, panicked or was
//! killed.
//!
//! Without the binaries, [`Cluster::shared`] prints a loud skip notice and returns `None`,
//! unless `CI` is set: then it panics, so that CI cannot pass by skipping. As root (mariadbd
//! refuses to run as root without `--user`), the servers run as the `mysql` user through
//! `runuser`.
#![allow(dead_code)] // each includer uses a different part

#[path = "host.rs"]
mod host;
use host::{command_as, free_port, is_root, output_within_a_minute};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The ordinary user the tests connect as: no `SUPER`, no `READ_ONLY ADMIN`, so the
/// replica's `read_only` binds it (it does not bind SUPER).
pub const USER: &str = "app";
/// The database the ordinary user owns.
pub const DATABASE: &str = "app";

/// A running primary and a replica applying its binlog by GTID, `read_only` on.
pub struct Cluster {
    dir: PathBuf,
    run_as_mysql: bool,
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

    fn start() -> Option<Cluster> {
        if !Path::new(MARIADBD).exists() || !Path::new(INSTALL_DB).exists() {
            let notice = "MariaDB binaries not found (install mariadb-server)";
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
        let dir = std::env::temp_dir().join(format!("tower-lb-mariadb-{}", std::process::id()));
        let cluster = Cluster {
            dir,
            run_as_mysql: is_root(),
            primary_port: free_port(),
            replica_port: free_port(),
        };
        cluster.create_dir();
        cluster.start_reaper();
        let started = Instant::now();
        cluster.install("primary");
        cluster.install("replica");
        cluster.start_server("primary", cluster.primary_port, 1, &[]);
        cluster.start_server("replica", cluster.replica_port, 2, &["--read-only=ON"]);
        cluster.primary_sql(&format!(
            "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';
             CREATE DATABASE {DATABASE};
             CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{USER}';
             GRANT ALL ON {DATABASE}.* TO '{USER}'@'127.0.0.1';"
        ));
        cluster.replica_sql(&format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {},
                 MASTER_USER = 'repl', MASTER_PASSWORD = 'repl', MASTER_USE_GTID = slave_pos;
             START SLAVE;",
            cluster.primary_port
        ));
        cluster.wait_for_replica();
        eprintln!(
            "MariaDB primary :{} and replica :{} up in {:?}",
            cluster.primary_port,
            cluster.replica_port,
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
        self.client(self.primary_port, sql)
    }

    /// Runs `sql` on the replica as root, through the `mariadb` client.
    pub fn replica_sql(&self, sql: &str) -> String {
        self.client(self.replica_port, sql)
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

    fn create_dir(&self) {
        std::fs::create_dir_all(&self.dir).expect("temp dir");
        if self.run_as_mysql {
            let status = Command::new("chown")
                .args(["mysql:mysql"])
                .arg(&self.dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {}", self.dir.display());
        }
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
        let data = self.dir.join(name);
        self.run_checked(
            INSTALL_DB,
            &[
                "--no-defaults".into(),
                format!("--datadir={}", data.display()),
                "--auth-root-authentication-method=normal".into(),
                "--skip-test-db".into(),
            ],
        );
    }

    // The server is not waited for: it runs until the reaper kills it.
    #[allow(clippy::zombie_processes)]
    fn start_server(&self, name: &str, port: u16, server_id: u32, extra: &[&str]) {
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--datadir={}", self.dir.join(name).display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!(
                "--socket={}",
                self.dir.join(format!("{name}.sock")).display()
            ),
            format!(
                "--pid-file={}",
                self.dir.join(format!("{name}.pid")).display()
            ),
            format!(
                "--log-error={}",
                self.dir.join(format!("{name}.err")).display()
            ),
            format!("--server-id={server_id}"),
            "--log-bin=binlog".into(),
            "--log-slave-updates".into(),
            "--gtid-strict-mode=1".into(),
            // Else a replicated `CREATE FUNCTION … MODIFIES SQL DATA` stops replication.
            "--log-bin-trust-function-creators=1".into(),
            "--skip-name-resolve".into(),
            "--innodb-buffer-pool-size=32M".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--sync-binlog=0".into(),
            "--max-connections=100".into(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let mut command = self.command(MARIADBD);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.spawn().expect("mariadbd");
        let started = Instant::now();
        loop {
            let ping = Command::new("mariadb-admin")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    "-uroot",
                    "--connect-timeout=1",
                ])
                .arg(format!("-P{port}"))
                .arg("ping")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if ping.is_ok_and(|status| status.success()) {
                return;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.err")));
                panic!("mariadbd {name} did not start within 60 s: {log:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self, port: u16, sql: &str) -> String {
        let output = Command::new("mariadb")
            .args(["--no-defaults", "-h127.0.0.1", "-uroot", "-N", "-B"])
            .arg(format!("-P{port}"))
            .arg("-e")
            .arg(sql)
            .output()
            .expect("mariadb client");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    fn command(&self, program: &str) -> Command {
        command_as(self.run_as_mysql.then_some("mysql"), program.as_ref())
    }

    /// Runs `program` to its end, bounded by a minute.
    fn run_checked(&self, program: &str, args: &[String]) {
        let mut command = self.command(program);
        command.args(args);
        let output = output_within_a_minute(command, program);
        assert!(
            output.status.success(),
            "{program} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

const MARIADBD: &str = "/usr/sbin/mariadbd";
const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";

fn url(port: u16) -> String {
    format!("mysql://{USER}:{USER}@127.0.0.1:{port}/{DATABASE}")
}
