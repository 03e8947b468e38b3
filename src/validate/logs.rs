//! The checks of execution log lines and searches.

use std::collections::HashSet;

use super::{batch_size, max_chars, no_nul, not_blank, timestamp, worker_id};
use crate::error::{Error, Result};
use crate::model::{LogAppend, LogRetention, NewLogLine};

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
/// [`MAX_BATCH`](super::MAX_BATCH) of them.
pub fn log_appends(appends: &[LogAppend]) -> Result<()> {
    batch_size("appends", appends.len())?;
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
/// least one partition unit and at most [`LogRetention::MAX_KEEP`].
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

/// `err` with the index of the line it is about.
fn at_line(err: Error, index: usize) -> Error {
    match err {
        Error::Validation { field, message } => {
            Error::validation(field, format!("line {index}: {message}"))
        }
        other => other,
    }
}
