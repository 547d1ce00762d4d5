//! A libpq multi-host URL (`postgresql://user@h1:5432,h2:5433/db?target_session_attrs=…`),
//! taken apart into one single-host URL per node, which sqlx parses, and the two parameters
//! that say how to route over them. No sqlx type here: each major's `PgHosts` builds its
//! pools from what this finds.

use crate::replica::Reads;
use std::fmt;
use std::str::FromStr;

/// libpq's `target_session_attrs`, for a router: which nodes take which statements. Writes
/// always go to the node a role probe finds primary; this says where reads go
/// ([`Reads`]).
///
/// ```
/// use tower_lb::replica::{Reads, TargetSessionAttrs};
///
/// let attrs: TargetSessionAttrs = "prefer-standby".parse()?;
/// assert_eq!(attrs.reads(), Reads::PreferReplicas);
/// assert_eq!("standby".parse::<TargetSessionAttrs>()?.reads(), Reads::ReplicasOnly);
/// # Ok::<(), tower_lb::replica::PgUrlError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TargetSessionAttrs {
    /// `any` (libpq's default): reads to replicas, the primary as fallback, as
    /// `prefer-standby` (a pool has every node at hand, so nothing is gained by reading from
    /// whichever answers first).
    #[default]
    Any,
    /// `read-write`: every statement on the primary ([`Reads::Primary`]).
    ReadWrite,
    /// `read-only`: reads on replicas only ([`Reads::ReplicasOnly`]); a primary fenced
    /// read-only counts as a replica.
    ReadOnly,
    /// `primary`: every statement on the primary ([`Reads::Primary`]).
    Primary,
    /// `standby`: reads on replicas only ([`Reads::ReplicasOnly`]).
    Standby,
    /// `prefer-standby`: reads to replicas, the primary as fallback
    /// ([`Reads::PreferReplicas`]).
    PreferStandby,
}

impl TargetSessionAttrs {
    /// Where the router sends reads.
    pub fn reads(self) -> Reads {
        match self {
            TargetSessionAttrs::Any | TargetSessionAttrs::PreferStandby => Reads::PreferReplicas,
            TargetSessionAttrs::ReadWrite | TargetSessionAttrs::Primary => Reads::Primary,
            TargetSessionAttrs::ReadOnly | TargetSessionAttrs::Standby => Reads::ReplicasOnly,
        }
    }
}

impl FromStr for TargetSessionAttrs {
    type Err = PgUrlError;

    fn from_str(value: &str) -> Result<Self, PgUrlError> {
        Ok(match value {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" => TargetSessionAttrs::Primary,
            "standby" => TargetSessionAttrs::Standby,
            "prefer-standby" => TargetSessionAttrs::PreferStandby,
            _ => return Err(invalid(TARGET_SESSION_ATTRS, value)),
        })
    }
}

/// libpq's `load_balance_hosts`: how reads are spread over the replicas.
///
/// ```
/// use tower_lb::replica::LoadBalanceHosts;
///
/// assert_eq!("random".parse::<LoadBalanceHosts>()?, LoadBalanceHosts::Random);
/// # Ok::<(), tower_lb::replica::PgUrlError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadBalanceHosts {
    /// `disable` (the default): power of two choices by calls in flight
    /// ([`P2c`](crate::policy::P2c)). libpq tries hosts in order because one connection goes
    /// to one host; a router's pools all stay open, so it balances by load instead.
    #[default]
    Disable,
    /// `random`: uniformly at random ([`Random`](crate::policy::Random)).
    Random,
}

impl FromStr for LoadBalanceHosts {
    type Err = PgUrlError;

    fn from_str(value: &str) -> Result<Self, PgUrlError> {
        match value {
            "disable" => Ok(LoadBalanceHosts::Disable),
            "random" => Ok(LoadBalanceHosts::Random),
            _ => Err(invalid(LOAD_BALANCE_HOSTS, value)),
        }
    }
}

/// What is wrong with a multi-host PostgreSQL URL.
///
/// ```
/// use tower_lb::replica::{PgUrlError, TargetSessionAttrs};
///
/// let error = "replica".parse::<TargetSessionAttrs>().unwrap_err();
/// assert!(matches!(&error, PgUrlError::InvalidValue { parameter, .. } if parameter == "target_session_attrs"));
/// assert!(error.to_string().contains("prefer-standby"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgUrlError {
    /// Not a `postgresql://` or `postgres://` URL.
    #[error("not a postgresql:// or postgres:// URL")]
    Scheme,
    /// No host, neither in the URL's authority nor in a `host` parameter.
    #[error("no host: list them as postgresql://user@host1:port1,host2:port2/db")]
    NoHost,
    /// A host that cannot be read (empty, an unclosed `[`, or given twice).
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost {
        /// The host as written.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A parameter with a value it does not take.
    #[error("invalid value {value:?} for {parameter}: expected {expected}")]
    InvalidValue {
        /// The parameter.
        parameter: String,
        /// The value given.
        value: String,
        /// What it takes.
        expected: &'static str,
    },
    /// A parameter sqlx does not apply (libpq's `connect_timeout`, `keepalives`, `hostaddr`,
    /// …): refused rather than ignored, so that a setting copied from another driver is not
    /// silently lost.
    #[error("unsupported parameter {parameter}")]
    UnsupportedParameter {
        /// The parameter.
        parameter: String,
    },
    /// One host's URL, which sqlx refused (its message).
    #[error("host {host}: {reason}")]
    Host {
        /// The host, as `host:port`.
        host: String,
        /// sqlx's error.
        reason: String,
    },
}

const TARGET_SESSION_ATTRS: &str = "target_session_attrs";
const LOAD_BALANCE_HOSTS: &str = "load_balance_hosts";

fn invalid(parameter: &str, value: &str) -> PgUrlError {
    let expected = match parameter {
        TARGET_SESSION_ATTRS => "any, read-write, read-only, primary, standby or prefer-standby",
        LOAD_BALANCE_HOSTS => "disable or random",
        _ => "a port (1-65535) for all hosts or one per host",
    };
    PgUrlError::InvalidValue {
        parameter: parameter.to_string(),
        value: value.to_string(),
        expected,
    }
}

/// The parameters sqlx's `PgConnectOptions` applies: passed on to each host's URL as written.
const SQLX_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// One node of a multi-host URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostUrl {
    /// `host:port` (`[v6]:port`): the node's key in the router's pools.
    pub(crate) key: String,
    /// A single-host URL for sqlx, with every other part of the original.
    pub(crate) url: String,
}

/// A multi-host URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostList {
    pub(crate) hosts: Vec<HostUrl>,
    pub(crate) target_session_attrs: TargetSessionAttrs,
    pub(crate) load_balance_hosts: LoadBalanceHosts,
}

impl FromStr for HostList {
    type Err = PgUrlError;

    fn from_str(url: &str) -> Result<Self, PgUrlError> {
        let rest = ["postgresql://", "postgres://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .ok_or(PgUrlError::Scheme)?;
        let rest = rest.split_once('#').map_or(rest, |(rest, _)| rest);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (userinfo, host_list) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };

        let mut list = HostList {
            hosts: Vec::new(),
            target_session_attrs: TargetSessionAttrs::default(),
            load_balance_hosts: LoadBalanceHosts::default(),
        };
        let (mut host_parameter, mut port_parameter) = (None, None);
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, decoded) = (percent_decode(name), percent_decode(value));
            match name.as_str() {
                TARGET_SESSION_ATTRS => list.target_session_attrs = decoded.parse()?,
                LOAD_BALANCE_HOSTS => list.load_balance_hosts = decoded.parse()?,
                "host" => host_parameter = Some(decoded),
                "port" => port_parameter = Some(decoded),
                known if SQLX_PARAMETERS.contains(&known) || is_option_entry(known) => {
                    kept.push(pair)
                }
                _ => return Err(PgUrlError::UnsupportedParameter { parameter: name }),
            }
        }

        let written: Vec<String> = match (host_list.is_empty(), host_parameter) {
            (false, None) => host_list.split(',').map(percent_decode).collect(),
            (true, Some(hosts)) => hosts.split(',').map(str::to_string).collect(),
            (true, None) => return Err(PgUrlError::NoHost),
            (false, Some(hosts)) => {
                return Err(PgUrlError::InvalidHost {
                    host: hosts,
                    reason: "hosts are listed in the URL's authority already",
                })
            }
        };
        let ports = port_parameter
            .map(|ports| parse_ports(&ports, written.len()))
            .transpose()?;
        let userinfo = userinfo.map_or(String::new(), |u| format!("{u}@"));
        for (i, written) in written.iter().enumerate() {
            let (host, own_port) = split_host(written)?;
            let port = match (own_port, &ports) {
                (Some(port), _) => port,
                (None, Some(ports)) => ports[i.min(ports.len() - 1)],
                (None, None) => 5432,
            };
            let bracketed = match host.contains(':') {
                true => format!("[{host}]"),
                false => host.to_string(),
            };
            let key = format!("{bracketed}:{port}");
            if list.hosts.iter().any(|h| h.key == key) {
                return Err(PgUrlError::InvalidHost {
                    host: key,
                    reason: "listed twice",
                });
            }
            let mut query = kept.clone();
            // A Unix socket directory goes where sqlx reads one: the `host` parameter.
            let socket = host
                .starts_with('/')
                .then(|| format!("host={}", encode(host)));
            query.extend(socket.as_deref());
            let authority = match host.starts_with('/') {
                true => format!("localhost:{port}"),
                false => key.clone(),
            };
            let query = match query.is_empty() {
                true => String::new(),
                false => format!("?{}", query.join("&")),
            };
            let url = format!("postgresql://{userinfo}{authority}{path}{query}");
            list.hosts.push(HostUrl { key, url });
        }
        Ok(list)
    }
}

/// `options[name]=value`, sqlx's way of setting one server option.
fn is_option_entry(name: &str) -> bool {
    name.starts_with("options[") && name.ends_with(']')
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host(written: &str) -> Result<(&str, Option<u16>), PgUrlError> {
    let bad = |reason| PgUrlError::InvalidHost {
        host: written.to_string(),
        reason,
    };
    let (host, port) = match written.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or(bad("unclosed ["))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(after.strip_prefix(':').ok_or(bad("text after ]"))?),
                ),
            }
        }
        None => match written.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (written, None),
        },
    };
    if host.is_empty() {
        return Err(bad("empty"));
    }
    let port = port
        .map(|port| match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(bad("the port is not a number in 1-65535")),
        })
        .transpose()?;
    Ok((host, port))
}

/// The `port` parameter: one port for every host, or one per host.
fn parse_ports(ports: &str, hosts: usize) -> Result<Vec<u16>, PgUrlError> {
    let parsed: Option<Vec<u16>> = ports
        .split(',')
        .map(|port| port.parse::<u16>().ok().filter(|&p| p > 0))
        .collect();
    match parsed {
        Some(parsed) if parsed.len() == 1 || parsed.len() == hosts => Ok(parsed),
        _ => Err(invalid("port", ports)),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn encode(text: &str) -> impl fmt::Display + '_ {
    struct Encoded<'a>(&'a str);
    impl fmt::Display for Encoded<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for byte in self.0.bytes() {
                match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        write!(f, "{}", byte as char)?
                    }
                    _ => write!(f, "%{byte:02X}")?,
                }
            }
            Ok(())
        }
    }
    Encoded(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &str) -> Vec<(String, String)> {
        let list: HostList = url.parse().unwrap();
        list.hosts.into_iter().map(|h| (h.key, h.url)).collect()
    }

    #[test]
    fn one_url_per_host_with_everything_else_kept() {
        let url = "postgresql://app:s%40cret@db1:5433,db2,[::1]:6000/shop?sslmode=disable&target_session_attrs=standby&application_name=web";
        let list: HostList = url.parse().unwrap();
        assert_eq!(list.target_session_attrs, TargetSessionAttrs::Standby);
        assert_eq!(list.load_balance_hosts, LoadBalanceHosts::Disable);
        let q = "?sslmode=disable&application_name=web";
        assert_eq!(
            hosts(url),
            [
                (
                    "db1:5433",
                    format!("postgresql://app:s%40cret@db1:5433/shop{q}")
                ),
                (
                    "db2:5432",
                    format!("postgresql://app:s%40cret@db2:5432/shop{q}")
                ),
                (
                    "[::1]:6000",
                    format!("postgresql://app:s%40cret@[::1]:6000/shop{q}")
                ),
            ]
            .map(|(k, u)| (k.to_string(), u))
        );
    }

    #[test]
    fn hosts_and_ports_as_parameters() {
        let url = "postgres:///db?host=a,b,c&port=5001,5002,5003&load_balance_hosts=random";
        let list: HostList = url.parse().unwrap();
        assert_eq!(list.load_balance_hosts, LoadBalanceHosts::Random);
        let keys: Vec<_> = list.hosts.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["a:5001", "b:5002", "c:5003"]);
        let one_port: HostList = "postgres://?host=a,b&port=7000".parse().unwrap();
        assert_eq!(one_port.hosts[1].url, "postgresql://b:7000");
        let socket: HostList = "postgres://u@%2Frun%2Fpg:5433/db".parse().unwrap();
        assert_eq!(
            socket.hosts[0].url,
            "postgresql://u@localhost:5433/db?host=%2Frun%2Fpg"
        );
    }

    #[test]
    fn every_bad_part_is_named() {
        let error = |url: &str| url.parse::<HostList>().unwrap_err();
        assert_eq!(error("mysql://h/db"), PgUrlError::Scheme);
        assert_eq!(error("postgresql:///db"), PgUrlError::NoHost);
        assert!(matches!(
            error("postgresql://a,,b/db"),
            PgUrlError::InvalidHost {
                reason: "empty",
                ..
            }
        ));
        assert!(matches!(
            error("postgresql://a:0/db"),
            PgUrlError::InvalidHost { .. }
        ));
        assert!(matches!(
            error("postgresql://a:x/db"),
            PgUrlError::InvalidHost { .. }
        ));
        assert!(matches!(
            error("postgresql://[::1/db"),
            PgUrlError::InvalidHost {
                reason: "unclosed [",
                ..
            }
        ));
        assert!(matches!(
            error("postgresql://a:1,a:1/db"),
            PgUrlError::InvalidHost {
                reason: "listed twice",
                ..
            }
        ));
        assert!(matches!(
            error("postgresql://a/db?host=b"),
            PgUrlError::InvalidHost { .. }
        ));
        assert!(matches!(
            error("postgresql://a/db?target_session_attrs=replica"),
            PgUrlError::InvalidValue { parameter, value, .. } if parameter == "target_session_attrs" && value == "replica"
        ));
        assert!(matches!(
            error("postgresql://a/db?load_balance_hosts=round-robin"),
            PgUrlError::InvalidValue { parameter, .. } if parameter == "load_balance_hosts"
        ));
        assert!(matches!(
            error("postgresql://?host=a,b,c&port=1,2"),
            PgUrlError::InvalidValue { parameter, .. } if parameter == "port"
        ));
        for unsupported in ["connect_timeout", "hostaddr", "keepalives"] {
            assert_eq!(
                error(&format!("postgresql://a/db?{unsupported}=1")),
                PgUrlError::UnsupportedParameter {
                    parameter: unsupported.to_string()
                }
            );
        }
    }

    #[test]
    fn server_options_pass_through() {
        let list: HostList = "postgresql://a/db?options[search_path]=app&options=-c%20x%3D1"
            .parse()
            .unwrap();
        assert_eq!(
            list.hosts[0].url,
            "postgresql://a:5432/db?options[search_path]=app&options=-c%20x%3D1"
        );
    }
}
