//! Input validation: every rule of the
//! [domain reference](crate::domain#validation) with its exact limit.
//!
//! Each failure is an [`Error::Validation`] naming the field. The
//! repositories run these checks before sending anything, so a bad input
//! costs no round trip and changes nothing; the schema's CHECK constraints
//! hold the same rules for rows written by other clients.
//!
//! The configurable parts are values with documented defaults:
//! [`PasswordPolicy`], [`ScriptPolicy`] and [`MetadataPolicy`], gathered in
//! [`ValidationPolicy`].

use std::sync::{Arc, LazyLock};

use aho_corasick::AhoCorasick;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use std::time::Duration;

mod json;
#[cfg(test)]
mod jsonb_round_trip_tests;
mod logs;
#[cfg(test)]
mod output_tests;
mod script;
#[cfg(test)]
mod tests;

pub use json::{metadata, metadata_filter};
pub use logs::{
    LOG_QUERY_MAX_CHARS, MAX_LOG_PARTITIONS, log_append, log_appends, log_line, log_query,
    log_retention,
};
pub(crate) use script::DenyList;
pub use script::script_content;
use script::*;

use crate::model::{
    ExecutionStatus, ExecutionUpdate, NewTask, Outcome, PasswordHash, TaskStatus, TaskUpdate,
    Timestamp,
};

/// Most characters in an email.
pub const EMAIL_MAX_CHARS: usize = 255;
/// Most characters in a user's display name.
pub const DISPLAY_NAME_MAX_CHARS: usize = 255;
/// Most characters in a password hash.
pub const PASSWORD_HASH_MAX_CHARS: usize = 255;
/// Most characters in a task name.
pub const TASK_NAME_MAX_CHARS: usize = 255;
/// Most characters in a task description.
pub const DESCRIPTION_MAX_CHARS: usize = 1000;
/// Most characters in a script.
pub const SCRIPT_MAX_CHARS: usize = 65535;
/// Task priorities, higher first.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = 0..=10;
/// Task timeouts in seconds.
pub const TIMEOUT_SECONDS_RANGE: std::ops::RangeInclusive<i32> = 1..=3600;
/// Process exit codes.
pub const RETURN_CODE_RANGE: std::ops::RangeInclusive<i32> = 0..=255;

/// The deepest metadata any [`MetadataPolicy`] may allow: serde_json,
/// which decodes `jsonb` read back from the server, refuses nesting beyond
/// 128 levels, so the crate never writes what it could not read.
pub const METADATA_DEPTH_LIMIT: usize = 100;

/// Most characters in a worker id.
pub const WORKER_ID_MAX_CHARS: usize = 255;
/// Most executions one claim takes.
pub const MAX_CLAIM: u32 = 1000;
/// Longest lease a claim or heartbeat grants.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// Password strength rules, checked on the plain password before the caller
/// hashes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasswordPolicy {
    /// Fewest characters. Default 8.
    pub min_chars: usize,
    /// Most characters. Default 128.
    pub max_chars: usize,
    /// Needs an upper-case letter. Default true.
    pub require_upper: bool,
    /// Needs a lower-case letter. Default true.
    pub require_lower: bool,
    /// Needs a digit. Default true.
    pub require_digit: bool,
    /// Needs a character that is neither a letter, a digit nor a space.
    /// Default false; [`PasswordPolicy::strict`] turns it on.
    pub require_special: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_chars: 8,
            max_chars: 128,
            require_upper: true,
            require_lower: true,
            require_digit: true,
            require_special: false,
        }
    }
}

impl PasswordPolicy {
    /// The default policy plus a required special character.
    pub fn strict() -> Self {
        PasswordPolicy {
            require_special: true,
            ..Self::default()
        }
    }
}

/// Patterns a script may not contain.
///
/// A guard against accidents, not a sandbox: matching is a case-insensitive
/// substring search, which a determined author can evade. Isolation belongs
/// to the workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScriptPolicy {
    /// Refused substrings, compared case-insensitively. Default:
    /// [`ScriptPolicy::DEFAULT_DENY`].
    pub deny_patterns: Vec<String>,
}

impl ScriptPolicy {
    /// The default deny-list: recursive forced deletion, a fork bomb, and
    /// formatting or overwriting a block device.
    pub const DEFAULT_DENY: [&'static str; 5] =
        ["rm -rf", "rm -fr", ":(){ :|:& };:", "mkfs.", "of=/dev/sd"];

    /// A policy that allows every script.
    pub fn allow_all() -> Self {
        ScriptPolicy {
            deny_patterns: Vec::new(),
        }
    }
}

impl Default for ScriptPolicy {
    fn default() -> Self {
        ScriptPolicy {
            deny_patterns: Self::DEFAULT_DENY.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// Limits on task metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetadataPolicy {
    /// Most bytes of the compact JSON text. Default 65536.
    pub max_bytes: usize,
    /// Deepest nesting; the top-level object is depth 1. Default 16; at
    /// most [`METADATA_DEPTH_LIMIT`] (what the JSON reader decodes), a
    /// policy above it is refused with [`Error::Config`] when used.
    pub max_depth: usize,
}

impl Default for MetadataPolicy {
    fn default() -> Self {
        MetadataPolicy {
            max_bytes: 64 * 1024,
            max_depth: 16,
        }
    }
}

/// Every configurable validation rule, as the repositories use them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidationPolicy {
    /// Password strength.
    pub password: PasswordPolicy,
    /// Script deny-list.
    pub script: ScriptPolicy,
    /// Metadata limits.
    pub metadata: MetadataPolicy,
}

fn no_nul(field: &'static str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(nul_in(field));
    }
    Ok(())
}

fn nul_in(field: &'static str) -> Error {
    Error::validation(field, "must not contain a NUL character")
}

fn max_chars(field: &'static str, text: &str, max: usize) -> Result<()> {
    // Characters, not bytes: PostgreSQL's varchar(n) and char_length count
    // characters. The byte length bounds the count from above, so most
    // inputs skip the walk.
    if text.len() > max && text.chars().count() > max {
        return Err(Error::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

fn not_blank(field: &'static str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::validation(field, "must not be blank"));
    }
    Ok(())
}

/// Checks an email and returns it normalised (trimmed, lower-cased), as it
/// is stored and looked up.
pub fn email(raw: &str) -> Result<String> {
    no_nul("email", raw)?;
    // The pattern is ASCII, and so must the input be before lower-casing:
    // a few non-ASCII characters lower-case to ASCII letters (the Kelvin
    // sign to `k`), which would let a look-alike address turn into, and log
    // in as, someone else's.
    if !raw.trim().is_ascii() {
        return Err(Error::validation(
            "email",
            "is not a valid email address (only ASCII characters are allowed)",
        ));
    }
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err(Error::validation("email", "is required"));
    }
    max_chars("email", &email, EMAIL_MAX_CHARS)?;
    if !email_shape(&email) {
        return Err(Error::validation("email", "is not a valid email address"));
    }
    Ok(email)
}

/// `^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$`, the pattern of the
/// `users_email_format` constraint, without a regex engine.
fn email_shape(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    // Neither part may hold an '@', so there is exactly one. The top-level
    // label follows the last dot: letters only, at least two.
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let tld_ok = tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic());
    local_ok && host_ok && tld_ok
}

/// Checks a user's display name and returns it as it is stored: trimmed
/// (Unicode white space), 1 to [`DISPLAY_NAME_MAX_CHARS`] characters, and
/// without control characters (`char::is_control`: C0, DEL and C1, so no
/// NUL, tab or line break). The `users_display_name_valid` constraint
/// holds every row to the same rules.
pub fn display_name(raw: &str) -> Result<String> {
    no_nul("display_name", raw)?;
    let name = raw.trim();
    if name.is_empty() {
        return Err(Error::validation("display_name", "must not be blank"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::validation(
            "display_name",
            "must not contain control characters",
        ));
    }
    max_chars("display_name", name, DISPLAY_NAME_MAX_CHARS)?;
    Ok(name.to_owned())
}

/// The display name of a user created without one: the part of its
/// (normalised) email before the `@`, as migration V10 gives existing rows.
pub(crate) fn default_display_name(email: &str) -> String {
    email.split('@').next().unwrap_or(email).to_owned()
}

/// Checks a plain password against `policy`, before the caller hashes it.
/// The password never appears in the error.
pub fn password(plain: &str, policy: &PasswordPolicy) -> Result<()> {
    no_nul("password", plain)?;
    let chars = plain.chars().count();
    if chars < policy.min_chars {
        return Err(Error::validation(
            "password",
            format!("must be at least {} characters", policy.min_chars),
        ));
    }
    if chars > policy.max_chars {
        return Err(Error::validation(
            "password",
            format!("must be at most {} characters", policy.max_chars),
        ));
    }
    let rules = [
        (
            policy.require_upper,
            "an upper-case letter",
            char::is_uppercase as fn(char) -> bool,
        ),
        (
            policy.require_lower,
            "a lower-case letter",
            char::is_lowercase,
        ),
        (policy.require_digit, "a digit", |c: char| {
            c.is_ascii_digit()
        }),
        (policy.require_special, "a special character", |c: char| {
            !c.is_alphanumeric() && !c.is_whitespace()
        }),
    ];
    for (required, what, test) in rules {
        if required && !plain.chars().any(test) {
            return Err(Error::validation(
                "password",
                format!("must contain {what}"),
            ));
        }
    }
    Ok(())
}

/// Checks a password hash: not blank, at most 255 characters, no NUL.
pub fn password_hash(hash: &PasswordHash) -> Result<()> {
    let hash = hash.expose();
    no_nul("password_hash", hash)?;
    not_blank("password_hash", hash)?;
    max_chars("password_hash", hash, PASSWORD_HASH_MAX_CHARS)
}

/// Task name: not blank after trim, at most 255 characters.
pub fn task_name(name: &str) -> Result<()> {
    no_nul("name", name)?;
    not_blank("name", name)?;
    max_chars("name", name, TASK_NAME_MAX_CHARS)
}

/// Task description: at most 1000 characters.
pub fn description(description: &str) -> Result<()> {
    no_nul("description", description)?;
    max_chars("description", description, DESCRIPTION_MAX_CHARS)
}

fn in_range(field: &'static str, value: i64, range: (i64, Option<i64>)) -> Result<()> {
    let (min, max) = range;
    if value < min || max.is_some_and(|max| value > max) {
        let message = match max {
            Some(max) => format!("must be between {min} and {max}"),
            None => format!("must be at least {min}"),
        };
        return Err(Error::validation(field, message));
    }
    Ok(())
}

/// Priority: 0..=10.
pub fn priority(priority: i32) -> Result<()> {
    in_range(
        "priority",
        priority.into(),
        (
            (*PRIORITY_RANGE.start()).into(),
            Some((*PRIORITY_RANGE.end()).into()),
        ),
    )
}

/// Timeout: 1..=3600 seconds.
pub fn timeout_seconds(seconds: i32) -> Result<()> {
    in_range(
        "timeout_seconds",
        seconds.into(),
        (
            (*TIMEOUT_SECONDS_RANGE.start()).into(),
            Some((*TIMEOUT_SECONDS_RANGE.end()).into()),
        ),
    )
}

/// Return code: 0..=255.
pub fn return_code(code: i32) -> Result<()> {
    in_range(
        "return_code",
        code.into(),
        (
            (*RETURN_CODE_RANGE.start()).into(),
            Some((*RETURN_CODE_RANGE.end()).into()),
        ),
    )
}

/// Execution time: >= 0 ms.
pub fn execution_time_ms(ms: i32) -> Result<()> {
    in_range("execution_time_ms", ms.into(), (0, None))
}

/// Memory: >= 0 bytes.
pub fn memory_usage_bytes(bytes: i64) -> Result<()> {
    in_range("memory_usage_bytes", bytes, (0, None))
}

/// The earliest instant PostgreSQL's `timestamptz` holds (4714-11-24 BC,
/// 00:00 UTC), in microseconds since the Unix epoch. The latest (294276 AD)
/// is beyond what [`Timestamp`] represents, so only this bound is checked.
pub const POSTGRES_MIN_UNIX_MICROS: i64 = -210_866_803_200_000_000;

/// A timestamp the server can store: not before 4714-11-24 BC. Checked
/// before any SQL, so an out-of-range instant is a validation error naming
/// its field rather than the server's 22008.
pub fn timestamp(field: &'static str, at: Timestamp) -> Result<()> {
    if at.unix_micros() < POSTGRES_MIN_UNIX_MICROS {
        return Err(Error::validation(
            field,
            format!("{at} is before 4714-11-24 BC, the earliest time PostgreSQL stores"),
        ));
    }
    Ok(())
}

/// Cuts `output` (an execution's stdout or stderr) to its first
/// `max_bytes` bytes at a character boundary and appends a marker line
/// saying so; shorter output is left alone. See
/// [`DbConfig::max_output_bytes`](crate::DbConfig::max_output_bytes).
pub fn truncate_output(output: &mut String, max_bytes: usize) {
    if output.len() <= max_bytes {
        return;
    }
    let total = output.len();
    let mut keep = max_bytes;
    while !output.is_char_boundary(keep) {
        keep -= 1;
    }
    output.truncate(keep);
    output.push_str(&format!(
        "\n[voidrunner-db: output truncated: {keep} of {total} bytes kept]"
    ));
}

/// Worker id: not blank, at most 255 characters, no NUL.
pub fn worker_id(id: &str) -> Result<()> {
    no_nul("worker_id", id)?;
    not_blank("worker_id", id)?;
    max_chars("worker_id", id, WORKER_ID_MAX_CHARS)
}

/// Lease: more than zero, at most [`MAX_LEASE`].
pub fn lease(lease: Duration) -> Result<()> {
    if lease < Duration::from_millis(1) || lease > MAX_LEASE {
        return Err(Error::validation(
            "lease",
            format!(
                "must be between 1 ms and {} hours",
                MAX_LEASE.as_secs() / 3600
            ),
        ));
    }
    Ok(())
}

/// Longest retry delay a rescue policy may ask for.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Oldest age `prune` accepts (about a century; PostgreSQL intervals end
/// not far beyond).
pub const MAX_PRUNE_AGE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A duration the server turns into an interval: at most `max`.
pub fn duration_at_most(field: &'static str, value: Duration, max: Duration) -> Result<()> {
    if value > max {
        return Err(Error::validation(
            field,
            format!("must be at most {} seconds", max.as_secs()),
        ));
    }
    Ok(())
}

/// A duration argument within `range` (both ends included), else an
/// [`Error::Validation`] for `field` giving the range.
pub fn duration_in(
    field: &'static str,
    value: Duration,
    range: &std::ops::RangeInclusive<Duration>,
) -> Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(Error::validation(
        field,
        format!(
            "must be between {:?} and {:?}, not {value:?}",
            range.start(),
            range.end()
        ),
    ))
}

/// A task status a caller may set by hand
/// ([`TaskRepository::update_status`](crate::TaskRepository::update_status)):
/// `pending` (a retry) or `cancelled`. The others are entered only by the
/// task's execution, through the queue (claim, complete, rescue), so that a
/// task's status always agrees with its executions.
pub fn task_status_by_hand(status: TaskStatus) -> Result<()> {
    match status {
        TaskStatus::Pending | TaskStatus::Cancelled => Ok(()),
        other => Err(Error::validation(
            "status",
            format!(
                "a task becomes {} only through its execution (ExecutionQueue::claim, \
                 complete, rescue_expired); set pending (retry) or cancelled",
                other.as_str()
            ),
        )),
    }
}

/// Claim size: 1..=[`MAX_CLAIM`].
pub fn claim_limit(limit: u32) -> Result<()> {
    in_range("limit", limit.into(), (1, Some(MAX_CLAIM.into())))
}

/// Outcome of a run: an end status a worker reports (completed, failed or
/// timeout) and valid results.
pub fn outcome(outcome: &Outcome) -> Result<()> {
    if !matches!(
        outcome.status,
        ExecutionStatus::Completed | ExecutionStatus::Failed | ExecutionStatus::Timeout
    ) {
        return Err(Error::validation(
            "status",
            format!(
                "a run ends completed, failed or timeout, not {}",
                outcome.status
            ),
        ));
    }
    execution_update(&ExecutionUpdate {
        return_code: outcome.return_code,
        stdout: outcome.stdout.clone(),
        stderr: outcome.stderr.clone(),
        execution_time_ms: outcome.execution_time_ms,
        memory_usage_bytes: outcome.memory_usage_bytes,
        ..ExecutionUpdate::default()
    })
}

/// Every field of a new task.
pub fn new_task(task: &NewTask, policy: &ValidationPolicy) -> Result<()> {
    new_task_with(task, policy, &DenyList::shared(&policy.script))
}

/// [`new_task`] with `policy`'s deny-list already prepared.
pub(crate) fn new_task_with(
    task: &NewTask,
    policy: &ValidationPolicy,
    deny: &DenyList,
) -> Result<()> {
    task_name(&task.name)?;
    if let Some(d) = &task.description {
        description(d)?;
    }
    script_content_with(&task.script_content, deny)?;
    priority(task.priority)?;
    timeout_seconds(task.timeout_seconds)?;
    metadata(&task.metadata, &policy.metadata)
}

/// Most rows of one batch statement (`TaskRepository::create_many`,
/// `ExecutionQueue::enqueue_many`): a batch is one statement whose arrays the
/// server holds in memory at once. Split larger loads, or use
/// `TaskRepository::import` (COPY), which streams.
pub const MAX_BATCH: usize = 50_000;

/// A batch's size: at most [`MAX_BATCH`].
pub fn batch_size(field: &'static str, len: usize) -> Result<()> {
    if len > MAX_BATCH {
        return Err(Error::validation(
            field,
            format!("holds {len} items, more than the {MAX_BATCH} one statement takes"),
        ));
    }
    Ok(())
}

/// Every field of every task of a batch; the message of the first failure
/// names its index.
pub fn new_tasks(tasks: &[NewTask], policy: &ValidationPolicy) -> Result<()> {
    new_tasks_with(tasks, policy, &DenyList::shared(&policy.script))
}

/// [`new_tasks`] with `policy`'s deny-list already prepared.
pub(crate) fn new_tasks_with(
    tasks: &[NewTask],
    policy: &ValidationPolicy,
    deny: &DenyList,
) -> Result<()> {
    for (index, task) in tasks.iter().enumerate() {
        new_task_with(task, policy, deny).map_err(|e| match e {
            Error::Validation { field, message } => Error::Validation {
                field,
                message: format!("task {index}: {message}"),
            },
            other => other,
        })?;
    }
    Ok(())
}

/// Every field a task update sets.
pub fn task_update(update: &TaskUpdate, policy: &ValidationPolicy) -> Result<()> {
    task_update_with(update, policy, &DenyList::shared(&policy.script))
}

/// [`task_update`] with `policy`'s deny-list already prepared.
pub(crate) fn task_update_with(
    update: &TaskUpdate,
    policy: &ValidationPolicy,
    deny: &DenyList,
) -> Result<()> {
    if let Some(name) = &update.name {
        task_name(name)?;
    }
    if let Some(Some(d)) = &update.description {
        description(d)?;
    }
    if let Some(script) = &update.script_content {
        script_content_with(script, deny)?;
    }
    if let Some(p) = update.priority {
        priority(p)?;
    }
    if let Some(t) = update.timeout_seconds {
        timeout_seconds(t)?;
    }
    if let Some(m) = &update.metadata {
        metadata(m, &policy.metadata)?;
    }
    Ok(())
}

/// Every field an execution update sets.
pub fn execution_update(update: &ExecutionUpdate) -> Result<()> {
    if let Some(at) = update.started_at {
        timestamp("started_at", at)?;
    }
    if let Some(at) = update.completed_at {
        timestamp("completed_at", at)?;
    }
    if let Some(code) = update.return_code {
        return_code(code)?;
    }
    if let Some(out) = &update.stdout {
        no_nul("stdout", out)?;
    }
    if let Some(err) = &update.stderr {
        no_nul("stderr", err)?;
    }
    if let Some(ms) = update.execution_time_ms {
        execution_time_ms(ms)?;
    }
    if let Some(bytes) = update.memory_usage_bytes {
        memory_usage_bytes(bytes)?;
    }
    if let (Some(start), Some(end)) = (update.started_at, update.completed_at)
        && end < start
    {
        return Err(Error::validation(
            "completed_at",
            "must not be before started_at",
        ));
    }
    Ok(())
}

/// A concurrency cap: at most [`ConcurrencyLimit::MAX`](crate::ConcurrencyLimit::MAX)
/// (the database stores an `integer`).
pub fn concurrency_limit(limit: u32) -> Result<()> {
    in_range(
        "max_running",
        limit.into(),
        (0, Some(crate::ConcurrencyLimit::MAX.into())),
    )
}
