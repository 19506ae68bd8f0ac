//! Argument parsing shared by the roles: every role flag takes one value.

use std::fmt::Display;
use std::str::FromStr;

/// The `--flag value` pairs of `args`, in order.
pub fn pairs(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        out.push((flag.as_str(), value.as_str()));
    }
    Ok(out)
}

/// `value` given for `flag`, parsed; the error names the flag.
pub fn parse<T>(flag: &str, value: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse().map_err(|e| format!("{flag}: {e}"))
}

/// The error for a flag a role does not know.
pub fn unknown(flag: &str) -> String {
    format!("unknown argument {flag}")
}

/// The multi-threaded tokio runtime a role runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Runs a role's async body on [`runtime`].
pub fn block_on(role: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    runtime()?.block_on(role)
}
