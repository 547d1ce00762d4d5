//! A throwaway PostgreSQL primary with one streaming replica (more on demand), on loopback ports in a temp dir,
//! started from the system's PostgreSQL binaries and stopped (directory removed) on drop, also
//! when a test panics.
//!
//! Without the binaries, [`Cluster::start`] prints a loud skip notice and returns `None`,
//! unless `CI` is set: then it panics, so that CI cannot pass by skipping. As root (initdb
//! refuses root), the server binaries run as the `postgres` user through `runuser`.
#![allow(dead_code)] // each includer uses a different part

#[path = "host.rs"]
mod host;
use host::{command_as, free_port, free_ports, is_root, output_within_a_minute};

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A running primary and streaming replica.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    run_as_postgres: bool,
    pub primary_port: u16,
    pub replica_port: u16,
    replica_running: bool,
    /// Replicas added by [`add_replica`](Cluster::add_replica): data dir names.
    more_replicas: Vec<String>,
}

impl Cluster {
    /// Starts a primary and a replica streaming from it, or `None` (with a notice) when the
    /// PostgreSQL binaries are not installed and `CI` is not set.
    pub fn start() -> Option<Cluster> {
        Cluster::start_with_apply_delay(Duration::ZERO)
    }

    /// As [`start`](Self::start), with the replica applying each commit `delay` after the
    /// primary (`recovery_min_apply_delay`): replication lag on demand.
    pub fn start_with_apply_delay(delay: Duration) -> Option<Cluster> {
        let Some(bin) = find_binaries() else {
            let notice = "PostgreSQL binaries not found (install postgresql, or set PG_BIN)";
            if std::env::var_os("CI").is_some() {
                panic!("{notice}: CI is set, so the replica tests may not be skipped");
            }
            eprintln!(
                "\n{}\nSKIPPED: {notice}\n{}\n",
                "!".repeat(72),
                "!".repeat(72)
            );
            return None;
        };
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-lb-pg-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        let run_as_postgres = is_root();
        let ports = free_ports(2);
        let mut cluster = Cluster {
            bin,
            dir,
            run_as_postgres,
            primary_port: ports[0],
            replica_port: ports[1],
            replica_running: false,
            more_replicas: Vec::new(),
        };
        cluster.create_primary();
        cluster.create_replica(delay);
        Some(cluster)
    }

    /// A connection URL for the primary.
    pub fn primary_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.primary_port
        )
    }

    /// A connection URL for the replica.
    pub fn replica_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.replica_port
        )
    }

    /// Stops the replica at once, as a crash would.
    pub fn stop_replica(&mut self) {
        if self.replica_running {
            self.pg_ctl_stop(&self.dir.join("replica"));
            self.replica_running = false;
        }
    }

    /// Stops the primary at once, as a crash would.
    pub fn stop_primary(&mut self) {
        self.pg_ctl_stop(&self.dir.join("primary"));
    }

    /// Promotes the replica to a primary (`pg_ctl promote`), as an operator's failover would.
    pub fn promote_replica(&mut self) {
        let data = self.dir.join("replica");
        self.run_checked(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-w".as_ref(),
                "promote".as_ref(),
            ],
            true,
        );
    }

    /// Starts the replica again after [`stop_replica`](Self::stop_replica).
    pub fn restart_replica(&mut self) {
        if !self.replica_running {
            self.pg_ctl_start("replica");
            self.replica_running = true;
        }
    }

    fn create_primary(&mut self) {
        let primary = self.dir.join("primary");
        self.run_checked("mkdir", &["-p".as_ref(), self.dir.as_os_str()], false);
        self.run_checked(
            "initdb",
            &[
                "-D".as_ref(),
                primary.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
            true,
        );
        self.append_config(
            &primary,
            &format!(
                "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
                 wal_level = replica\nmax_wal_senders = 4\nfsync = off\n\
                 shared_buffers = 16MB\nmax_connections = 50\n",
                self.primary_port,
                self.dir.display()
            ),
        );
        self.pg_ctl_start("primary");
    }

    /// Starts one more replica streaming from the primary; its port. Stopped on drop.
    pub fn add_replica(&mut self) -> u16 {
        let name = format!("replica-{}", self.more_replicas.len() + 2);
        let port = free_port();
        self.base_backup(&name, port, Duration::ZERO);
        self.more_replicas.push(name);
        port
    }

    fn create_replica(&mut self, apply_delay: Duration) {
        self.base_backup("replica", self.replica_port, apply_delay);
        self.replica_running = true;
    }

    fn base_backup(&self, name: &str, port: u16, apply_delay: Duration) {
        let replica = self.dir.join(name);
        self.run_checked(
            "pg_basebackup",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                self.primary_port.to_string().as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-D".as_ref(),
                replica.as_os_str(),
                "-R".as_ref(),
                "-X".as_ref(),
                "stream".as_ref(),
                "--no-sync".as_ref(),
            ],
            true,
        );
        // The copied configuration names the primary's port: a later line wins.
        self.append_config(
            &replica,
            &format!(
                "port = {}\nrecovery_min_apply_delay = '{}ms'\n",
                port,
                apply_delay.as_millis()
            ),
        );
        self.pg_ctl_start(name);
    }

    fn append_config(&self, data_dir: &Path, lines: &str) {
        let config = data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&config).expect("postgresql.conf");
        text.push_str(lines);
        std::fs::write(&config, text).expect("write postgresql.conf");
    }

    fn pg_ctl_start(&self, name: &str) {
        let data = self.dir.join(name);
        let log = self.dir.join(format!("{name}.log"));
        self.run_checked(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
            true,
        );
    }

    fn pg_ctl_stop(&self, data: &Path) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
            true,
        );
    }

    fn run_checked(&self, program: &str, args: &[&std::ffi::OsStr], postgres_binary: bool) {
        let output = self.run(program, args, postgres_binary);
        assert!(
            output.status.success(),
            "{program} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs `program` (from the PostgreSQL bin dir when `postgres_binary`), as the `postgres`
    /// user when we are root; bounded by a minute.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr], postgres_binary: bool) -> Output {
        let path = match postgres_binary {
            true => self.bin.join(program),
            false => PathBuf::from(program),
        };
        let mut command = command_as(self.run_as_postgres.then_some("postgres"), path.as_ref());
        command.args(args).env("LC_ALL", "C");
        output_within_a_minute(command, program)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_replica();
        for name in &self.more_replicas {
            self.pg_ctl_stop(&self.dir.join(name));
        }
        self.pg_ctl_stop(&self.dir.join("primary"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` with `pg_ctl`.
fn find_binaries() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(bin));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
