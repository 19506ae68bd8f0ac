//! The guide's environment variables, their defaults, and the few extra
//! knobs the tests use (cycle durations, token interval); and the
//! variables for running the example elsewhere than on loopback (an
//! admin endpoint, advertised addresses, the director's address by name),
//! which change nothing while unset.

use std::net::SocketAddr;
use std::time::Duration;

use rpcnet::cluster::MemberAddr;

/// `DIRECTOR_ADDR`'s default.
pub const DEFAULT_DIRECTOR_ADDR: &str = "127.0.0.1:61000";
/// `WORKER_ADDR`'s default.
pub const DEFAULT_WORKER_ADDR: &str = "127.0.0.1:62001";
/// `WORKER_LABEL`'s default.
pub const DEFAULT_WORKER_LABEL: &str = "worker-1";

/// The director's advertised address (`host[:port]`); unset: the bound one.
pub const DIRECTOR_ADVERTISE: &str = "DIRECTOR_ADVERTISE";
/// A worker's advertised address (`host[:port]`); unset: the bound one.
pub const WORKER_ADVERTISE: &str = "WORKER_ADVERTISE";
/// Where workers and the client reach the director (`host:port`, the host
/// an IP address or a DNS name); unset: `DIRECTOR_ADDR`.
pub const DIRECTOR_SEED: &str = "DIRECTOR_SEED";
/// The admin endpoint's address (`rpcnet::admin::ADMIN_ADDR_ENV`); unset:
/// no admin endpoint.
pub const ADMIN_ADDR: &str = rpcnet::admin::ADMIN_ADDR_ENV;
/// The variables above: a supervisor (the demo, the tests) passes them to
/// a child only when it means to, not from its own environment.
pub const DEPLOYMENT_VARS: [&str; 4] = [
    DIRECTOR_ADVERTISE,
    WORKER_ADVERTISE,
    DIRECTOR_SEED,
    ADMIN_ADDR,
];

/// A variable that is set but unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSetting {
    /// The variable.
    pub name: &'static str,
    /// What it holds.
    pub value: String,
    /// What was expected.
    pub expected: &'static str,
}

impl std::fmt::Display for BadSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={:?} is not {}", self.name, self.value, self.expected)
    }
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl std::error::Error for BadSetting {}

/// A socket address from `name`, or `default`.
///
/// # Errors
/// When the variable is not an address like `127.0.0.1:61000`.
pub fn addr(name: &'static str, default: &str) -> Result<SocketAddr, BadSetting> {
    let value = var(name).unwrap_or_else(|| default.to_owned());
    value.trim().parse().map_err(|_| BadSetting {
        name,
        value,
        expected: "an address like 127.0.0.1:61000",
    })
}

/// The text of `name` (trimmed), if set and not blank.
pub fn optional(name: &'static str) -> Option<String> {
    var(name).map(|v| v.trim().to_owned())
}

/// An advertised address from `name` (`host[:port]`: an IP address or a
/// DNS name, with the bound port when none is given), if set.
/// `ClusterMembership::new` refuses port 0 and unspecified addresses.
///
/// # Errors
/// When the variable is set to something that is not `host[:port]`.
pub fn advertise(name: &'static str) -> Result<Option<String>, BadSetting> {
    optional(name)
        .map(|value| advertised(name, value))
        .transpose()
}

/// `value` of the variable `name` if it reads as `host[:port]`, as the
/// library reads an advertised address (`host` takes the bound port).
fn advertised(name: &'static str, value: String) -> Result<String, BadSetting> {
    let readable = [value.clone(), format!("{value}:1"), format!("[{value}]:1")]
        .iter()
        .any(|text| text.parse::<MemberAddr>().is_ok());
    if !readable {
        return Err(BadSetting {
            name,
            value,
            expected: "host[:port] (like 10.0.0.2, 10.0.0.2:62001 or worker-a.example)",
        });
    }
    Ok(value)
}

/// `ClusterMembership::new`'s error for a node bound to `bound` (from the
/// variable `bind`) that advertises `advertised` (from the variable
/// `advertise`), naming the variable to change.
pub fn membership_error(
    error: rpcnet::RpcError,
    bind: &str,
    bound: SocketAddr,
    advertise: &str,
    advertised: Option<&str>,
) -> String {
    match (&error, advertised) {
        (rpcnet::RpcError::ConfigError(_), None) if bound.ip().is_unspecified() => format!(
            "{bind} binds {bound}, which peers cannot dial: set {advertise} to the address \
             they reach this node at"
        ),
        (rpcnet::RpcError::ConfigError(_), Some(value)) => {
            format!("{advertise}={value:?}: {error}")
        }
        _ => error.to_string(),
    }
}

/// Where workers and the client reach the director.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectorSeed {
    /// `DIRECTOR_ADDR` (`DIRECTOR_SEED` unset): the guide's address, joined
    /// and dialed as it is.
    Addr(SocketAddr),
    /// `DIRECTOR_SEED`: `host:port`, resolved at every attempt; a worker's
    /// membership remembers it and resolves it again while the worker
    /// reaches no member (`ClusterMembership::join_named`).
    Named(String),
}

impl DirectorSeed {
    /// `DIRECTOR_SEED` if set, else `DIRECTOR_ADDR` (default `127.0.0.1:61000`).
    ///
    /// # Errors
    /// When the variable read is not an address (`DIRECTOR_ADDR`), or not
    /// `host:port` (`DIRECTOR_SEED`).
    pub fn from_env() -> Result<Self, BadSetting> {
        match optional(DIRECTOR_SEED) {
            Some(value) => Self::named(value),
            None => addr("DIRECTOR_ADDR", DEFAULT_DIRECTOR_ADDR).map(Self::Addr),
        }
    }

    /// `DIRECTOR_SEED`'s `value`, if it is `host:port`.
    fn named(value: String) -> Result<Self, BadSetting> {
        match value.parse::<MemberAddr>() {
            Ok(_) => Ok(Self::Named(value)),
            Err(_) => Err(BadSetting {
                name: DIRECTOR_SEED,
                value,
                expected: "host:port (like 10.0.0.1:61000 or director.example:61000)",
            }),
        }
    }

    /// The addresses it stands for now (a name is looked up).
    ///
    /// # Errors
    /// When a name does not resolve.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Self::Addr(addr) => Ok(vec![*addr]),
            Self::Named(name) => {
                let found: Vec<SocketAddr> =
                    tokio::net::lookup_host(name.as_str()).await?.collect();
                if found.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{name} resolves to no address"),
                    ));
                }
                Ok(found)
            }
        }
    }
}

impl std::fmt::Display for DirectorSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Addr(addr) => addr.fmt(f),
            Self::Named(name) => f.write_str(name),
        }
    }
}

/// A string from `name`, or `default`.
pub fn string(name: &'static str, default: &str) -> String {
    var(name).unwrap_or_else(|| default.to_owned())
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`) from `name`, or `default`.
///
/// # Errors
/// For any other value.
pub fn flag(name: &'static str, default: bool) -> Result<bool, BadSetting> {
    let Some(value) = var(name) else {
        return Ok(default);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(BadSetting {
            name,
            value,
            expected: "true or false",
        }),
    }
}

/// A duration in milliseconds from `name`, or `default`; at most a day.
///
/// # Errors
/// When the variable is not a whole number of milliseconds up to 86,400,000.
pub fn millis(name: &'static str, default: Duration) -> Result<Duration, BadSetting> {
    let Some(value) = var(name) else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(ms) if ms <= 86_400_000 => Ok(Duration::from_millis(ms)),
        _ => Err(BadSetting {
            name,
            value,
            expected: "a number of milliseconds (at most a day)",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advertised_address_is_a_host_with_an_optional_port() {
        for good in [
            "127.0.0.1",
            "10.0.0.2:62001",
            "worker-a.example",
            "worker-a.example:7000",
            "::1",
            "[::1]:7000",
        ] {
            assert_eq!(advertised(WORKER_ADVERTISE, good.into()), Ok(good.into()));
        }
        for bad in ["10.0.0.2:port", ":7000", "two words", "a:b:c"] {
            let refused = advertised(WORKER_ADVERTISE, bad.into()).unwrap_err();
            assert_eq!(
                (refused.name, refused.value.as_str()),
                (WORKER_ADVERTISE, bad)
            );
        }
    }

    #[test]
    fn a_director_seed_is_host_and_port() {
        for good in [
            "director.example:61000",
            "localhost:61000",
            "10.0.0.1:61000",
            "[::1]:61000",
        ] {
            assert_eq!(
                DirectorSeed::named(good.into()),
                Ok(DirectorSeed::Named(good.into()))
            );
        }
        for bad in ["director.example", "10.0.0.1", ":61000", "director:port"] {
            let refused = DirectorSeed::named(bad.into()).unwrap_err();
            assert_eq!((refused.name, refused.value.as_str()), (DIRECTOR_SEED, bad));
        }
    }

    #[tokio::test]
    async fn a_seed_resolves_to_its_addresses() {
        let addr: SocketAddr = "127.0.0.1:61000".parse().unwrap();
        assert_eq!(
            DirectorSeed::Addr(addr).resolve().await.unwrap(),
            vec![addr]
        );
        let named = DirectorSeed::Named("localhost:61000".into());
        assert!(named
            .resolve()
            .await
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 61000));
        assert_eq!(named.to_string(), "localhost:61000");
    }
}
