//! The checks of execution log lines and searches.

use std::collections::HashSet;

use super::{batch_size, max_chars, no_nul, not_blank, timestamp, worker_id};
use crate::error::{Error, Result};
use crate::model::{LogAppend, LogRetention, NewLogLine};

/// The most partitions of each log table a [`LogRetention`] may keep at
/// once: `keep` in units, plus `ahead`, plus the current one.
pub const MAX_LOG_PARTITIONS: u64 = 1_000;

/// The longest log search, in characters.
pub const LOG_QUERY_MAX_CHARS: usize = 1_000;

/// One append: the worker id, 1..=[`LogAppend::MAX_LINES`] lines with
/// strictly increasing `seq` (at most `i64::MAX`, what the server stores),
/// each line UTF-8 without NUL of at most [`NewLogLine::MAX_BYTES`] bytes
/// at a time the server can store. The message names the first bad line's
/// index.
pub fn log_append(append: &LogAppend) -> Result<()> {
    worker_id(&append.worker_id)?;
    if append.lines.is_empty() {
        return Err(Error::validation("lines", "must hold at least one line"));
    }
    if append.lines.len() > LogAppend::MAX_LINES {
        return Err(Error::validation(
            "lines",
            format!(
                "holds {} lines, more than the {} one append takes",
                append.lines.len(),
                LogAppend::MAX_LINES
            ),
        ));
    }
    let bytes = text_bytes(append);
    if bytes > LogAppend::MAX_BYTES {
        return Err(Error::validation(
            "lines",
            format!(
                "hold {bytes} bytes of text, more than the {} one append takes",
                LogAppend::MAX_BYTES
            ),
        ));
    }
    let mut previous: Option<u64> = None;
    for (i, line) in append.lines.iter().enumerate() {
        log_line(line).map_err(|e| at_line(e, i))?;
        if previous.is_some_and(|p| line.seq <= p) {
            return Err(Error::validation(
                "seq",
                format!(
                    "line {i}: seq {} does not follow {}",
                    line.seq,
                    previous.unwrap_or(0)
                ),
            ));
        }
        previous = Some(line.seq);
    }
    Ok(())
}

/// Many appends: each as [`log_append`], no execution twice, at most
/// [`MAX_BATCH`](super::MAX_BATCH) of them, at most
/// [`LogAppend::MAX_BYTES`] of text together.
pub fn log_appends(appends: &[LogAppend]) -> Result<()> {
    batch_size("appends", appends.len())?;
    let bytes: usize = appends
        .iter()
        .map(text_bytes)
        .fold(0, usize::saturating_add);
    if bytes > LogAppend::MAX_BYTES {
        return Err(Error::validation(
            "appends",
            format!(
                "hold {bytes} bytes of text, more than the {} one statement takes",
                LogAppend::MAX_BYTES
            ),
        ));
    }
    let mut seen = HashSet::with_capacity(appends.len());
    for append in appends {
        if !seen.insert(append.execution_id) {
            return Err(Error::validation(
                "execution_id",
                format!("{} appears twice in one batch", append.execution_id),
            ));
        }
        log_append(append)?;
    }
    Ok(())
}

/// One line: `seq` at most `i64::MAX`, text without NUL of at most
/// [`NewLogLine::MAX_BYTES`] bytes, a time the server can store.
pub fn log_line(line: &NewLogLine) -> Result<()> {
    if i64::try_from(line.seq).is_err() {
        return Err(Error::validation(
            "seq",
            format!(
                "{} is more than {}, the largest the server stores",
                line.seq,
                i64::MAX
            ),
        ));
    }
    if line.text.len() > NewLogLine::MAX_BYTES {
        return Err(Error::validation(
            "text",
            format!(
                "is {} bytes, more than {} (split the line)",
                line.text.len(),
                NewLogLine::MAX_BYTES
            ),
        ));
    }
    no_nul("text", &line.text)?;
    timestamp("logged_at", line.logged_at)
}

/// A search: not blank, no NUL, at most [`LOG_QUERY_MAX_CHARS`]
/// characters.
pub fn log_query(query: &str) -> Result<()> {
    no_nul("query", query)?;
    not_blank("query", query)?;
    max_chars("query", query, LOG_QUERY_MAX_CHARS)
}

/// A retention: `ahead` at most [`LogRetention::MAX_AHEAD`], `keep` at
/// least one partition unit and at most [`LogRetention::MAX_KEEP`], and at
/// most [`MAX_LOG_PARTITIONS`] partitions kept at once.
pub fn log_retention(retention: &LogRetention) -> Result<()> {
    if retention.ahead > LogRetention::MAX_AHEAD {
        return Err(Error::validation(
            "ahead",
            format!(
                "{} is more than {}",
                retention.ahead,
                LogRetention::MAX_AHEAD
            ),
        ));
    }
    let unit = retention.partition.nominal();
    // Partitions kept at once: each one costs every statement's planning
    // and the server a few files; an hourly unit kept for years would make
    // tens of thousands.
    let kept = retention.keep.as_secs() / unit.as_secs().max(1) + u64::from(retention.ahead) + 1;
    if kept > MAX_LOG_PARTITIONS {
        return Err(Error::validation(
            "keep",
            format!(
                "keeps {kept} partitions of one {} (keep / unit + ahead + 1), more than {MAX_LOG_PARTITIONS}",
                retention.partition.as_str()
            ),
        ));
    }
    if retention.keep < unit || retention.keep > LogRetention::MAX_KEEP {
        return Err(Error::validation(
            "keep",
            format!(
                "must be at least one {} and at most {} days",
                retention.partition.as_str(),
                LogRetention::MAX_KEEP.as_secs() / 86_400
            ),
        ));
    }
    Ok(())
}

fn text_bytes(append: &LogAppend) -> usize {
    append
        .lines
        .iter()
        .map(|l| l.text.len())
        .fold(0, usize::saturating_add)
}

/// `err` with the index of the line it is about.
fn at_line(err: Error, index: usize) -> Error {
    match err {
        Error::Validation { field, message } => {
            Error::validation(field, format!("line {index}: {message}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{ExecutionId, LogPartitionUnit};

    fn field(result: Result<()>) -> &'static str {
        match result {
            Err(Error::Validation { field, .. }) => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn appends_are_checked_line_by_line() {
        let ok = |lines| LogAppend::new(ExecutionId::new(), "w", lines);
        assert!(
            log_append(&ok(vec![
                NewLogLine::stdout(0, "a"),
                NewLogLine::stderr(1, "")
            ]))
            .is_ok()
        );
        assert_eq!(field(log_append(&ok(vec![]))), "lines");
        let too_many = (0..=LogAppend::MAX_LINES as u64)
            .map(|i| NewLogLine::stdout(i, "x"))
            .collect();
        assert_eq!(field(log_append(&ok(too_many))), "lines");
        assert_eq!(
            field(log_append(&ok(vec![
                NewLogLine::stdout(1, "a"),
                NewLogLine::stdout(1, "b")
            ]))),
            "seq"
        );
        assert_eq!(
            field(log_append(&ok(vec![NewLogLine::stdout(u64::MAX, "a")]))),
            "seq"
        );
        assert_eq!(
            field(log_append(&ok(vec![NewLogLine::stdout(0, "a\0b")]))),
            "text"
        );
        let huge = "é".repeat(NewLogLine::MAX_BYTES / 2 + 1);
        assert_eq!(
            field(log_append(&ok(vec![NewLogLine::stdout(0, huge)]))),
            "text"
        );
        let big: Vec<NewLogLine> = (0..1_025)
            .map(|i| NewLogLine::stdout(i, "x".repeat(NewLogLine::MAX_BYTES)))
            .collect();
        assert_eq!(field(log_append(&ok(big))), "lines");
        let halves = |n: usize| {
            (0..n)
                .map(|_| {
                    LogAppend::new(
                        ExecutionId::new(),
                        "w",
                        vec![NewLogLine::stdout(0, "x".repeat(NewLogLine::MAX_BYTES))],
                    )
                })
                .collect::<Vec<_>>()
        };
        assert!(log_appends(&halves(1_024)).is_ok());
        assert_eq!(field(log_appends(&halves(1_025))), "appends");
        let exact = "x".repeat(NewLogLine::MAX_BYTES);
        assert!(log_append(&ok(vec![NewLogLine::stdout(0, exact)])).is_ok());
        assert_eq!(
            field(log_append(&LogAppend::new(
                ExecutionId::new(),
                " ",
                vec![NewLogLine::stdout(0, "a")]
            ))),
            "worker_id"
        );
        let id = ExecutionId::new();
        let twice = vec![
            LogAppend::new(id, "w", vec![NewLogLine::stdout(0, "a")]),
            LogAppend::new(id, "w", vec![NewLogLine::stdout(1, "b")]),
        ];
        assert_eq!(field(log_appends(&twice)), "execution_id");
    }

    #[test]
    fn queries_and_retentions_are_bounded() {
        assert!(log_query("connection refused").is_ok());
        for bad in ["", "  ", "a\0"] {
            assert_eq!(field(log_query(bad)), "query");
        }
        assert_eq!(
            field(log_query(&"a".repeat(LOG_QUERY_MAX_CHARS + 1))),
            "query"
        );
        assert!(log_retention(&LogRetention::default()).is_ok());
        let with = |partition, ahead, days: u64| LogRetention {
            partition,
            ahead,
            keep: Duration::from_secs(days * 86_400),
        };
        assert_eq!(
            field(log_retention(&with(LogPartitionUnit::Day, 367, 30))),
            "ahead"
        );
        assert_eq!(
            field(log_retention(&with(LogPartitionUnit::Week, 2, 6))),
            "keep"
        );
        assert_eq!(
            field(log_retention(&with(LogPartitionUnit::Day, 2, 4_000))),
            "keep"
        );
        assert_eq!(
            field(log_retention(&with(LogPartitionUnit::Hour, 2, 60))),
            "keep"
        );
        assert!(log_retention(&with(LogPartitionUnit::Hour, 24, 30)).is_ok());
        assert!(log_retention(&with(LogPartitionUnit::Month, 2, 365)).is_ok());
    }
}
