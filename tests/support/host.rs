//! What the server harnesses ask of the machine: whether we are root (the servers then run
//! as their own system user), and a free loopback port.

use std::net::TcpListener;
use std::process::Command;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct loopback ports free right now: each is held until all are found, as the OS
/// may hand out a port just released again (two servers of one cluster on one port).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("bound").port())
        .collect()
}

/// `program`, to be run as the system user `user` through `runuser` when given.
pub fn command_as(user: Option<&str>, program: &std::ffi::OsStr) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Runs `command` to its end with its output captured, bounded by a minute.
pub fn output_within_a_minute(mut command: Command, program: &str) -> std::process::Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{program} did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}
