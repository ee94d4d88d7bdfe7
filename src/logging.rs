//! Log output: human-readable lines on stderr, colour only on a terminal that wants it, or
//! one JSON object per line for log shippers (`RESTOREWATCH_LOG_FORMAT=json`).
//!
//! Colour is off when stderr is not a terminal (`docker compose logs`, a file, a pipe) or
//! when `NO_COLOR` is set to anything non-empty (<https://no-color.org>), so no raw ANSI
//! codes end up in a log.

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// The environment variable choosing the log format.
pub const LOG_FORMAT_ENV: &str = "RESTOREWATCH_LOG_FORMAT";

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing's default single-line format.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads [`LOG_FORMAT_ENV`]'s value: unset or empty is text.
    pub fn parse_env(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(LogFormat::Text),
            Some(v) if v.eq_ignore_ascii_case("text") => Ok(LogFormat::Text),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!(
                "{LOG_FORMAT_ENV}={other:?} is not a log format (text or json); using text"
            )),
        }
    }
}

/// Whether to colour the output: only on a terminal, and not when `NO_COLOR` is set.
pub fn use_ansi(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber writing to stderr with `filter`, in the format the
/// environment asks for.
pub fn init(filter: EnvFilter) {
    let format = LogFormat::parse_env(std::env::var(LOG_FORMAT_ENV).ok().as_deref());
    let ansi = use_ansi(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        Ok(LogFormat::Json) => builder.json().init(),
        Ok(LogFormat::Text) => builder.init(),
        Err(warning) => {
            builder.init();
            tracing::warn!("{warning}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_ansi(true, None));
        assert!(use_ansi(true, Some(OsStr::new(""))));
        assert!(!use_ansi(true, Some(OsStr::new("1"))));
        assert!(!use_ansi(false, None));
    }

    #[test]
    fn log_format_from_the_environment() {
        assert_eq!(LogFormat::parse_env(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse_env(Some("")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse_env(Some("JSON")), Ok(LogFormat::Json));
        let err = LogFormat::parse_env(Some("yaml")).unwrap_err();
        assert!(err.contains("RESTOREWATCH_LOG_FORMAT=\"yaml\""), "{err}");
    }
}
