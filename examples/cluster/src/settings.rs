//! The guide's environment variables, their defaults, and the few extra
//! knobs the tests use (cycle durations, token interval).

use std::net::SocketAddr;
use std::time::Duration;

/// `DIRECTOR_ADDR`'s default.
pub const DEFAULT_DIRECTOR_ADDR: &str = "127.0.0.1:61000";
/// `WORKER_ADDR`'s default.
pub const DEFAULT_WORKER_ADDR: &str = "127.0.0.1:62001";
/// `WORKER_LABEL`'s default.
pub const DEFAULT_WORKER_LABEL: &str = "worker-1";

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
