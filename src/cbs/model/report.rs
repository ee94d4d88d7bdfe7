//! Decoding a `GetRestoreJobReport.do` reply: the file count, size and last error or
//! warning log lines a failure alert shows.

use super::envelope::{
    as_size, as_text, get, open_envelope, snippet, ReplyError, SNIPPET_MAX_CHARS,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// At most this many log lines of a job report are kept (the last error/warning ones).
pub const REPORT_LINES_MAX: usize = 5;
/// A kept report log line is cut to this many characters.
pub const REPORT_LINE_MAX_CHARS: usize = 300;

/// What `GetRestoreJobReport.do` adds to a failure alert: file count, size and the last
/// error or warning log lines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<u64>,
    /// The last error/warning log lines, oldest first, at most [`REPORT_LINES_MAX`].
    #[serde(default)]
    pub lines: Vec<String>,
}

/// Decodes a `GetRestoreJobReport.do` reply: `Data` is one Report object. Unknown or
/// unreadable fields are left out rather than failing the report.
pub fn decode_report(body: &str) -> Result<JobReport, ReplyError> {
    let malformed = |reason: String| ReplyError::Malformed {
        reason,
        snippet: snippet(body, SNIPPET_MAX_CHARS),
    };
    let envelope = open_envelope(body)?;
    let data = match get(&envelope, &["Data"]) {
        Some(Value::Object(map)) => map,
        Some(Value::Array(items)) => match items.first() {
            Some(Value::Object(map)) => map,
            _ => return Err(malformed("Data holds no Report object".into())),
        },
        _ => return Err(malformed("Data is not a Report object".into())),
    };
    let mut report = JobReport {
        file_count: get(data, &["TotalFileCount", "FileCount"]).and_then(as_size),
        total_size: get(data, &["TotalFileSize", "FileSize"]).and_then(as_size),
        lines: Vec::new(),
    };
    let logs = match get(data, &["Logs", "Log"]) {
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    let mut kept: Vec<String> = logs.iter().filter_map(report_line).collect();
    let skip = kept.len().saturating_sub(REPORT_LINES_MAX);
    report.lines = kept.drain(skip..).collect();
    Ok(report)
}

/// One log entry as a line, if it is an error or warning. The text field's name is not
/// documented: any string field other than the type and time ones is taken.
fn report_line(entry: &Value) -> Option<String> {
    let Value::Object(map) = entry else {
        return None;
    };
    let text: Vec<&str> = map
        .iter()
        .filter(|(k, _)| {
            !["type", "time", "timestamp", "id"]
                .iter()
                .any(|skip| k.eq_ignore_ascii_case(skip))
        })
        .filter_map(|(_, v)| v.as_str())
        .filter(|s| !s.trim().is_empty())
        .collect();
    let text = text.join(" ");
    let kind = get(map, &["Type", "Level"])
        .and_then(as_text)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let lower = text.to_ascii_lowercase();
    let is_problem = ["error", "warn", "fail", "fatal"]
        .iter()
        .any(|w| kind.contains(w) || lower.contains(w));
    (is_problem && !text.is_empty()).then(|| snippet(text.trim(), REPORT_LINE_MAX_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_keeps_counts_and_last_problem_lines() {
        let logs: Vec<String> = (0..8)
            .map(|i| {
                format!(r#"{{"Type":"file","Time":1719379513000,"Msg":"[ERROR] file {i} failed"}}"#)
            })
            .chain([
                r#"{"Type":"info","Time":1719379513000,"Message":"Restore started"}"#.to_owned(),
            ])
            .collect();
        let body = format!(
            r#"{{"Status":"OK","Data":{{"ID":"2024-06-26-13-25-13","StartTime":1719379513000,"TotalFileCount":"42","TotalFileSize":1024,"Logs":[{}]}}}}"#,
            logs.join(",")
        );
        let r = decode_report(&body).unwrap();
        assert_eq!(r.file_count, Some(42));
        assert_eq!(r.total_size, Some(1024));
        assert_eq!(r.lines.len(), REPORT_LINES_MAX);
        assert_eq!(r.lines[0], "[ERROR] file 3 failed");
        assert_eq!(r.lines[4], "[ERROR] file 7 failed");
        let refused = decode_report(r#"{"Status":"Error","Message":"No permission"}"#);
        assert!(
            matches!(refused, Err(ReplyError::Api { .. })),
            "{refused:?}"
        );
        assert!(decode_report(r#"{"Status":"OK","Data":7}"#).is_err());
    }
}
