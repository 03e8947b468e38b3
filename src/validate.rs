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

use crate::model::{
    ExecutionStatus, ExecutionUpdate, NewTask, Outcome, PasswordHash, TaskStatus, TaskUpdate,
    Timestamp,
};

/// Most characters in an email.
pub const EMAIL_MAX_CHARS: usize = 255;
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

/// Script: not blank, at most 65535 characters, no denied pattern.
pub fn script_content(script: &str, policy: &ScriptPolicy) -> Result<()> {
    no_nul("script_content", script)?;
    not_blank("script_content", script)?;
    max_chars("script_content", script, SCRIPT_MAX_CHARS)?;
    denied_pattern(script, &DenyList::shared(policy))
}

/// The script checks of [`script_content`] with the deny-list already
/// prepared: a batch prepares it once, not once per task.
fn script_content_with(script: &str, deny: &DenyList) -> Result<()> {
    no_nul("script_content", script)?;
    not_blank("script_content", script)?;
    max_chars("script_content", script, SCRIPT_MAX_CHARS)?;
    denied_pattern(script, deny)
}

fn denied_pattern(script: &str, deny: &DenyList) -> Result<()> {
    match deny.find(script)? {
        Some(pattern) => Err(Error::validation(
            "script_content",
            format!("contains the denied pattern `{pattern}`"),
        )),
        None => Ok(()),
    }
}

/// A [`ScriptPolicy`]'s patterns, compiled once into one automaton that
/// finds any of them in a single pass over the script.
///
/// A pattern is found when the lower-cased script contains the lower-cased
/// pattern (`str::to_lowercase`, Unicode rules). For a script that is all
/// ASCII, lower-casing it is ASCII lower-casing, so the automaton matches
/// ignoring ASCII case instead of building the lower-cased copy: the very
/// same decisions, without an allocation per task. (The lower-cased
/// patterns hold no ASCII upper-case letter, and neither does a
/// lower-cased script, so ignoring ASCII case changes nothing for the
/// Unicode path either.)
#[derive(Debug)]
pub(crate) struct DenyList {
    /// The non-empty patterns as configured, for the message, in the
    /// policy's order (the automaton's pattern ids index it).
    patterns: Vec<String>,
    /// `Ok(None)` without patterns; `Err` with what kept the automaton
    /// from being built (patterns too many or too long for it), which
    /// refuses every script rather than letting all through.
    automaton: std::result::Result<Option<AhoCorasick>, String>,
}

impl DenyList {
    /// The non-empty patterns of `policy` (an empty one would match every
    /// script; it is ignored, as it always was).
    pub(crate) fn new(policy: &ScriptPolicy) -> Self {
        let patterns: Vec<String> = policy
            .deny_patterns
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect();
        let automaton = if patterns.is_empty() {
            Ok(None)
        } else {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(patterns.iter().map(|p| p.to_lowercase()))
                .map(Some)
                .map_err(|e| e.to_string())
        };
        DenyList {
            patterns,
            automaton,
        }
    }

    /// `policy`'s list, shared: the default policy's is compiled once per
    /// process, so a repository made per transaction compiles nothing.
    pub(crate) fn shared(policy: &ScriptPolicy) -> Arc<Self> {
        static DEFAULT: LazyLock<Arc<DenyList>> =
            LazyLock::new(|| Arc::new(DenyList::new(&ScriptPolicy::default())));
        if policy
            .deny_patterns
            .iter()
            .eq(ScriptPolicy::DEFAULT_DENY.iter())
        {
            Arc::clone(&DEFAULT)
        } else {
            Arc::new(DenyList::new(policy))
        }
    }

    /// The first pattern (in the policy's order) `script` contains, ignoring
    /// case; `Error::Config` when the list could not be compiled.
    fn find(&self, script: &str) -> Result<Option<&str>> {
        let automaton = match &self.automaton {
            Ok(Some(automaton)) => automaton,
            Ok(None) => return Ok(None),
            Err(reason) => {
                return Err(Error::config(format!(
                    "the script deny-list cannot be used: {reason}"
                )));
            }
        };
        let lowered;
        let hay = if script.is_ascii() {
            script
        } else {
            lowered = script.to_lowercase();
            &lowered
        };
        if !automaton.is_match(hay) {
            return Ok(None);
        }
        // Denied: name the policy's first pattern found, wherever it is.
        Ok(automaton
            .find_overlapping_iter(hay)
            .map(|m| m.pattern().as_usize())
            .min()
            .and_then(|first| self.patterns.get(first))
            .map(String::as_str))
    }
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

/// Metadata: a JSON object within the size and depth limits, with no NUL in
/// any key or string (PostgreSQL's jsonb cannot store `\u0000`).
pub fn metadata(value: &serde_json::Value, policy: &MetadataPolicy) -> Result<()> {
    json_object("metadata", value, policy)
}

/// A metadata search filter: the same rules as [`metadata`].
pub fn metadata_filter(value: &serde_json::Value, policy: &MetadataPolicy) -> Result<()> {
    json_object("filter", value, policy)
}

fn json_object(
    field: &'static str,
    value: &serde_json::Value,
    policy: &MetadataPolicy,
) -> Result<()> {
    use serde_json::Value;

    if policy.max_depth > METADATA_DEPTH_LIMIT {
        return Err(Error::config(format!(
            "MetadataPolicy::max_depth {} exceeds {METADATA_DEPTH_LIMIT}, the deepest \
             metadata the crate can read back",
            policy.max_depth
        )));
    }
    if !value.is_object() {
        return Err(Error::validation(field, "must be a JSON object"));
    }
    // Iterative walk: a value built in code can nest deeper than the stack.
    // It also adds up the length of the compact JSON text (what
    // `serde_json::to_vec` would write), so the size is known without
    // writing the text.
    let mut bytes = 0usize;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > policy.max_depth {
            return Err(Error::validation(
                field,
                format!("nests deeper than {} levels", policy.max_depth),
            ));
        }
        match value {
            Value::String(s) => bytes = bytes.saturating_add(json_string_len(field, s)?),
            Value::Array(items) => {
                // `[`, `]` and a comma between items.
                bytes = bytes.saturating_add(2 + items.len().saturating_sub(1));
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            Value::Object(map) => {
                // `{`, `}`, a comma between entries, a colon in each.
                bytes = bytes.saturating_add(2 + map.len().saturating_sub(1) + map.len());
                for (key, v) in map {
                    bytes = bytes.saturating_add(json_string_len(field, key)?);
                    stack.push((v, depth + 1));
                }
            }
            Value::Number(n) => {
                number_survives_jsonb(field, n)?;
                bytes = bytes.saturating_add(json_number_len(n));
            }
            Value::Null | Value::Bool(true) => bytes = bytes.saturating_add(4),
            Value::Bool(false) => bytes = bytes.saturating_add(5),
        }
    }
    if bytes > policy.max_bytes {
        return Err(Error::validation(
            field,
            format!("is {bytes} bytes, more than {}", policy.max_bytes),
        ));
    }
    Ok(())
}

/// The length of `s` as serde_json writes it: quoted, with `"` and `\` and
/// the control characters escaped (two bytes for the short escapes, six for
/// `\u00XX`); everything else, UTF-8 included, as is. A NUL (which `jsonb`
/// cannot store) is a validation error of `field`, found in the same pass.
fn json_string_len(field: &'static str, s: &str) -> Result<usize> {
    let mut len = 2usize;
    for b in s.bytes() {
        len = len.saturating_add(match b {
            b'"' | b'\\' | b'\x08' | b'\t' | b'\n' | b'\x0c' | b'\r' => 2,
            0x00 => return Err(nul_in(field)),
            0x01..=0x1f => 6,
            _ => 1,
        });
    }
    Ok(len)
}

/// The length of `n` as serde_json writes it, which is its `Display` form
/// (itoa for integers, ryu for floats), counted without a buffer.
fn json_number_len(n: &serde_json::Number) -> usize {
    // Integers by their digits; only floats need the formatter.
    if let Some(u) = n.as_u64() {
        return u.checked_ilog10().map_or(1, |digits| digits as usize + 1);
    }
    if let Some(i) = n.as_i64() {
        return 1 + i
            .unsigned_abs()
            .checked_ilog10()
            .map_or(1, |d| d as usize + 1);
    }
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut count, format_args!("{n}"));
    count.0
}

/// A JSON number the crate can read back after `jsonb` stored it.
///
/// Integers survive exactly. A float is stored as an exact `numeric`, which
/// the server prints in plain decimal notation (no exponent): very large or
/// very small floats come back as hundreds of digits that the JSON reader
/// may round to another value or to infinity, which it refuses. Rust's
/// `Display` for `f64` prints the same plain notation, so parsing it tells
/// exactly what reading the row back would give.
fn number_survives_jsonb(field: &'static str, n: &serde_json::Number) -> Result<()> {
    if n.is_i64() || n.is_u64() {
        return Ok(());
    }
    let Some(value) = n.as_f64() else {
        return Ok(());
    };
    // Checked for every float: without its `float_roundtrip` feature the
    // JSON reader may be one unit off even on 17-digit values.
    let plain = value.to_string();
    match serde_json::from_str::<serde_json::Number>(&plain) {
        Ok(back) if back.as_f64() == Some(value) => Ok(()),
        _ => Err(Error::validation(
            field,
            format!("holds the number {n}, which does not read back unchanged from jsonb"),
        )),
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::UserId;

    fn field_of(result: Result<impl std::fmt::Debug>) -> &'static str {
        match result {
            Err(Error::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("  Alice.Smith+tag@Example.COM ").unwrap(),
            "alice.smith+tag@example.com"
        );
        assert_eq!(
            email("a_b%c-d@sub-domain.example.co").unwrap(),
            "a_b%c-d@sub-domain.example.co"
        );
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@example",
            "a@example.c",
            "a@example.c0m",
            "a b@example.com",
            "a@@example.com",
            "a@b@example.com",
            "a@exa_mple.com",
            "a@.com",
            "ünï@example.com",
            "a@example.com\0",
        ] {
            assert_eq!(field_of(email(bad)), "email", "{bad:?}");
        }
        // 255 characters is the limit, counted after trimming.
        let local = "a".repeat(255 - "@example.com".len());
        assert!(email(&format!("  {local}@example.com  ")).is_ok());
        assert_eq!(field_of(email(&format!("a{local}@example.com"))), "email");
    }

    #[test]
    fn passwords() {
        let p = PasswordPolicy::default();
        assert!(password("Password123", &p).is_ok());
        assert!(password("Abcdefg1", &p).is_ok(), "8 characters is enough");
        let at_max = format!("Aa1{}", "x".repeat(125));
        assert!(password(&at_max, &p).is_ok());
        for bad in [
            "Pass1",
            "Abcdef1",
            "password123",
            "PASSWORD123",
            "Passwordxyz",
            "",
            "Password\u{0}123",
        ] {
            assert_eq!(field_of(password(bad, &p)), "password", "{bad:?}");
        }
        let too_long = format!("Aa1{}", "x".repeat(126));
        assert_eq!(too_long.chars().count(), 129);
        assert_eq!(field_of(password(&too_long, &p)), "password");
        let err = password("Pass1", &p).unwrap_err();
        assert!(!err.to_string().contains("Pass1"), "{err}");

        let strict = PasswordPolicy::strict();
        assert_eq!(field_of(password("Password123", &strict)), "password");
        assert!(password("Password123!", &strict).is_ok());
        // Limits count characters, not bytes.
        assert!(password("Äbcdefg1", &p).is_ok());
    }

    #[test]
    fn password_hashes() {
        assert!(password_hash(&PasswordHash::new("$argon2id$v=19$x")).is_ok());
        assert!(password_hash(&PasswordHash::new("h".repeat(255))).is_ok());
        for bad in ["", "  ", "a\0b"] {
            assert_eq!(
                field_of(password_hash(&PasswordHash::new(bad))),
                "password_hash"
            );
        }
        assert_eq!(
            field_of(password_hash(&PasswordHash::new("h".repeat(256)))),
            "password_hash"
        );
    }

    #[test]
    fn task_names_and_descriptions() {
        assert!(task_name("n").is_ok());
        assert!(task_name(&"n".repeat(255)).is_ok());
        assert!(task_name(&"é".repeat(255)).is_ok(), "characters, not bytes");
        for bad in [String::new(), " \t\n".into(), "n".repeat(256), "a\0".into()] {
            assert_eq!(field_of(task_name(&bad)), "name", "{bad:?}");
        }
        assert!(description("").is_ok());
        assert!(description(&"d".repeat(1000)).is_ok());
        assert_eq!(field_of(description(&"d".repeat(1001))), "description");
        assert_eq!(field_of(description("a\0")), "description");
    }

    #[test]
    fn scripts() {
        let p = ScriptPolicy::default();
        assert!(script_content("print('hello')", &p).is_ok());
        assert!(script_content(&"s".repeat(65535), &p).is_ok());
        assert_eq!(
            field_of(script_content(&"s".repeat(65536), &p)),
            "script_content"
        );
        for bad in [
            "",
            "  \n\t ",
            "x\0y",
            "rm -rf /",
            "sudo RM -RF /home",
            "echo; Rm -Rf ~",
        ] {
            assert_eq!(
                field_of(script_content(bad, &p)),
                "script_content",
                "{bad:?}"
            );
        }
        assert!(script_content("rm -rf /", &ScriptPolicy::allow_all()).is_ok());
        let custom = ScriptPolicy {
            deny_patterns: vec!["curl".into()],
        };
        assert!(script_content("rm -rf /", &custom).is_ok());
        assert_eq!(
            field_of(script_content("CURL evil", &custom)),
            "script_content"
        );
    }

    #[test]
    fn numbers() {
        for ok in [0, 10] {
            assert!(priority(ok).is_ok());
        }
        for bad in [-1, 11, i32::MIN, i32::MAX] {
            assert_eq!(field_of(priority(bad)), "priority");
        }
        for ok in [1, 3600] {
            assert!(timeout_seconds(ok).is_ok());
        }
        for bad in [0, 3601, -5] {
            assert_eq!(field_of(timeout_seconds(bad)), "timeout_seconds");
        }
        for ok in [0, 255] {
            assert!(return_code(ok).is_ok());
        }
        for bad in [-1, 256] {
            assert_eq!(field_of(return_code(bad)), "return_code");
        }
        assert!(execution_time_ms(0).is_ok());
        assert_eq!(field_of(execution_time_ms(-1)), "execution_time_ms");
        assert!(memory_usage_bytes(0).is_ok());
        assert_eq!(field_of(memory_usage_bytes(-1)), "memory_usage_bytes");
    }

    #[test]
    fn metadata_rules() {
        let p = MetadataPolicy::default();
        assert!(metadata(&json!({}), &p).is_ok());
        assert!(metadata(&json!({"a": [1, {"b": "c"}], "n": null}), &p).is_ok());
        for bad in [json!([]), json!("s"), json!(1), json!(null), json!(true)] {
            assert_eq!(field_of(metadata(&bad, &p)), "metadata", "{bad}");
        }
        assert_eq!(field_of(metadata(&json!({"a": "x\u{0}y"}), &p)), "metadata");
        assert_eq!(field_of(metadata(&json!({"k\u{0}": 1}), &p)), "metadata");

        // Depth: the top-level object is level 1.
        let nested = |levels: usize| {
            let mut v = serde_json::Value::Object(Default::default());
            for _ in 1..levels {
                v = serde_json::Value::Object([("n".to_owned(), v)].into_iter().collect());
            }
            v
        };
        assert!(metadata(&nested(16), &p).is_ok());
        assert_eq!(field_of(metadata(&nested(17), &p)), "metadata");
        // Far deeper than any stack would survive with recursion.
        // (Built with the constructors: json! would serialise its argument.)
        let mut deep = serde_json::Value::Object(Default::default());
        for _ in 0..100_000 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        let deep = serde_json::Value::Object([("d".to_owned(), deep)].into_iter().collect());
        assert_eq!(field_of(metadata(&deep, &p)), "metadata");
        std::mem::forget(deep); // serde_json's Drop recurses; not what is tested here

        // Size: the compact JSON text, {"k":"…"} is 8 bytes plus the string.
        let sized = |len: usize| json!({ "k": "x".repeat(len - 8) });
        assert!(metadata(&sized(65536), &p).is_ok());
        assert_eq!(field_of(metadata(&sized(65537), &p)), "metadata");

        assert_eq!(field_of(metadata_filter(&json!([1]), &p)), "filter");
    }

    #[test]
    fn queue_inputs() {
        assert!(worker_id("worker-1").is_ok());
        for bad in [String::new(), " ".into(), "w\0".into(), "w".repeat(256)] {
            assert_eq!(field_of(worker_id(&bad)), "worker_id", "{bad:?}");
        }
        assert!(worker_id(&"w".repeat(255)).is_ok());
        assert!(lease(Duration::from_millis(1)).is_ok());
        assert!(lease(MAX_LEASE).is_ok());
        for bad in [
            Duration::ZERO,
            Duration::from_micros(999),
            MAX_LEASE + Duration::from_millis(1),
        ] {
            assert_eq!(field_of(lease(bad)), "lease", "{bad:?}");
        }
        assert!(duration_at_most("older_than", MAX_PRUNE_AGE, MAX_PRUNE_AGE).is_ok());
        assert_eq!(
            field_of(duration_at_most("older_than", Duration::MAX, MAX_PRUNE_AGE)),
            "older_than"
        );
        assert!(claim_limit(1).is_ok() && claim_limit(MAX_CLAIM).is_ok());
        assert_eq!(field_of(claim_limit(0)), "limit");
        assert_eq!(field_of(claim_limit(MAX_CLAIM + 1)), "limit");
        assert!(outcome(&Outcome::completed(0)).is_ok());
        assert!(outcome(&Outcome::timed_out()).is_ok());
        assert_eq!(field_of(outcome(&Outcome::failed(256))), "return_code");
        let cancelled = Outcome {
            status: ExecutionStatus::Cancelled,
            ..Outcome::completed(0)
        };
        assert_eq!(field_of(outcome(&cancelled)), "status");
        let running = Outcome {
            status: ExecutionStatus::Running,
            ..Outcome::completed(0)
        };
        assert_eq!(field_of(outcome(&running)), "status");
        assert_eq!(
            field_of(outcome(&Outcome::completed(0).output("ok", "bad\0"))),
            "stderr"
        );
    }

    #[test]
    fn inputs_are_checked_whole() {
        let policy = ValidationPolicy::default();
        let user = UserId::new();
        assert!(new_task(&NewTask::new(user, "n", "print(1)"), &policy).is_ok());
        let cases = [
            (NewTask::new(user, " ", "print(1)"), "name"),
            (NewTask::new(user, "n", "rm -rf /"), "script_content"),
            (NewTask::new(user, "n", "x").priority(11), "priority"),
            (
                NewTask::new(user, "n", "x").timeout_seconds(0),
                "timeout_seconds",
            ),
            (
                NewTask::new(user, "n", "x").description("d".repeat(1001)),
                "description",
            ),
            (NewTask::new(user, "n", "x").metadata(json!([])), "metadata"),
        ];
        for (task, field) in cases {
            assert_eq!(field_of(new_task(&task, &policy)), field);
        }
        let update = TaskUpdate {
            description: Some(Some("d".repeat(1001))),
            ..TaskUpdate::default()
        };
        assert_eq!(field_of(task_update(&update, &policy)), "description");
        let clear = TaskUpdate {
            description: Some(None),
            ..TaskUpdate::default()
        };
        assert!(task_update(&clear, &policy).is_ok());

        let now = crate::model::Timestamp::now();
        let earlier = crate::model::Timestamp::from_unix_micros(now.unix_micros() - 1).unwrap();
        let backwards = ExecutionUpdate {
            started_at: Some(now),
            completed_at: Some(earlier),
            ..ExecutionUpdate::default()
        };
        assert_eq!(field_of(execution_update(&backwards)), "completed_at");
        let nul = ExecutionUpdate {
            stderr: Some("\0".into()),
            ..ExecutionUpdate::default()
        };
        assert_eq!(field_of(execution_update(&nul)), "stderr");
    }
}

#[cfg(test)]
mod output_tests {
    use super::*;

    #[test]
    fn output_is_cut_at_a_character_boundary_with_a_marker() {
        let mut short = "ok".to_owned();
        truncate_output(&mut short, 2);
        assert_eq!(short, "ok");
        let mut long = "aé".repeat(10); // 30 bytes
        truncate_output(&mut long, 4); // "aéa" is 4 bytes; "aé" + 1 byte of é is not a boundary
        assert_eq!(
            long,
            "aéa\n[voidrunner-db: output truncated: 4 of 30 bytes kept]"
        );
        let mut odd = "é".repeat(3); // 6 bytes
        truncate_output(&mut odd, 3);
        assert!(odd.starts_with("é\n"), "{odd}");
        let mut nothing = "é".to_owned();
        truncate_output(&mut nothing, 0);
        assert!(nothing.starts_with("\n[voidrunner-db"), "{nothing}");
    }
}

#[cfg(test)]
mod jsonb_round_trip_tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> serde_json::Value {
        let mut v = json!(1);
        for _ in 1..depth {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn the_deepest_allowed_metadata_decodes() {
        // What the reader of a jsonb column does with the server's text.
        let deepest = nested(METADATA_DEPTH_LIMIT);
        let text = serde_json::to_vec(&deepest).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, deepest);
        let policy = MetadataPolicy {
            max_depth: METADATA_DEPTH_LIMIT,
            max_bytes: usize::MAX,
        };
        metadata(&deepest, &policy).unwrap();
        // A policy looser than the reader is refused, not obeyed.
        let loose = MetadataPolicy {
            max_depth: METADATA_DEPTH_LIMIT + 1,
            ..policy
        };
        assert!(matches!(
            metadata(&json!({}), &loose),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn every_finite_float_reads_back_unchanged() {
        // With serde_json's float_roundtrip (Cargo.toml), the full decimal
        // expansion the server prints parses back to the same float, even at
        // the extremes, so no finite float is refused.
        let policy = MetadataPolicy::default();
        for value in [
            0.0,
            -0.5,
            0.1,
            0.30000000000000004,
            123456789.12345679,
            1e-7,
            1.5e20,
            1e308,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            metadata(&json!({ "a": value }), &policy).unwrap_or_else(|e| panic!("{value:e}: {e}"));
        }
        metadata(&json!({ "a": i64::MIN, "b": u64::MAX }), &policy).unwrap();
    }

    /// What `script_content` matched before the deny-list was prepared
    /// once: both sides lower-cased per task and pattern.
    fn denied_by_lowercasing<'p>(script: &str, policy: &'p ScriptPolicy) -> Option<&'p str> {
        let lowered = script.to_lowercase();
        policy
            .deny_patterns
            .iter()
            .find(|p| !p.is_empty() && lowered.contains(&p.to_lowercase()))
            .map(String::as_str)
    }

    /// A deny-list that could not be compiled refuses every script with a
    /// configuration error: it never lets them all through.
    #[test]
    fn a_deny_list_that_cannot_be_compiled_fails_closed() {
        let broken = DenyList {
            patterns: vec!["rm -rf".to_owned()],
            automaton: Err("too many patterns".to_owned()),
        };
        for script in ["echo ok", "rm -rf /"] {
            let err = script_content_with(script, &broken).unwrap_err();
            assert!(
                matches!(&err, Error::Config { message } if message.contains("too many patterns")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn deny_list_decides_as_lowercasing_both_sides() {
        let policy = ScriptPolicy {
            deny_patterns: [
                "",
                "RM -RF",
                "mkfs.",
                "Straße",
                "\u{212a}ill",
                "İx",
                "ΣΑΣ",
                "é",
                "a\u{0}b",
            ]
            .iter()
            .map(|p| p.to_string())
            .collect(),
        };
        let scripts = [
            "",
            "echo ok",
            "rm -rf /",
            "sudo RM -Rf /",
            "rm  -rf",
            "r",
            "MKFS.ext4 /dev/sda",
            "mkfs",
            "STRASSE",
            "straße",
            "STRAẞE",
            "kill -9 1",
            "KILL",
            "\u{212a}ILL",
            "i\u{307}x",
            "İX",
            "σας",
            "ΣΑΣ",
            "É",
            "e\u{301}",
            "a\u{0}B",
            "ab",
        ];
        let deny = DenyList::new(&policy);
        for script in scripts {
            assert_eq!(
                deny.find(script).unwrap(),
                denied_by_lowercasing(script, &policy),
                "{script:?}"
            );
        }
        // Patterns earlier in the list win, as before.
        assert_eq!(deny.find("mkfs. rm -rf").unwrap(), Some("RM -RF"));
        // No pattern, or only an empty one: everything passes.
        assert_eq!(
            DenyList::new(&ScriptPolicy::allow_all())
                .find("rm -rf")
                .unwrap(),
            None
        );
        let empty = ScriptPolicy {
            deny_patterns: vec![String::new()],
        };
        assert_eq!(DenyList::new(&empty).find("rm -rf").unwrap(), None);
        // The default list, through the public function.
        let default = ScriptPolicy::default();
        assert!(script_content("RM -Rf /tmp/x", &default).is_err());
        assert!(script_content("echo Mkfs.EXT4", &default).is_err());
        assert!(script_content("echo fine", &default).is_ok());
    }

    /// The length the walk adds up, taken with a limit of zero bytes from
    /// the error message ("is N bytes, more than 0").
    fn measured_len(value: &serde_json::Value) -> usize {
        let policy = MetadataPolicy {
            max_bytes: 0,
            max_depth: METADATA_DEPTH_LIMIT,
        };
        let Err(Error::Validation { message, .. }) = metadata(value, &policy) else {
            panic!("every object is more than 0 bytes: {value}");
        };
        message
            .strip_prefix("is ")
            .and_then(|m| m.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message {message:?}"))
    }

    #[test]
    fn metadata_size_is_the_serialised_length() {
        use serde_json::{Map, Number, Value};

        let float = |f: f64| Value::Number(Number::from_f64(f).expect("finite"));
        let mut values = vec![
            serde_json::json!({}),
            serde_json::json!({"a": null, "b": true, "c": false}),
            serde_json::json!({"": "", "k": [], "o": {}}),
            serde_json::json!({"q": "\"quoted\" and \\ back\\slash"}),
            serde_json::json!({"ctl": "\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f} end"}),
            serde_json::json!({"uni": "é ß 漢字 🦀 \u{2028}\u{2029}", "é🦀": 1}),
            serde_json::json!({"ints": [0, -1, 1, i64::MIN, i64::MAX, u64::MAX, 1234567]}),
            serde_json::json!({"edges": [9, 10, 99, 100, -9, -10, -99, -100, 999_999, 1_000_000]}),
            serde_json::json!({"deep": {"a": [1, [2, [3, {"b": [null, {"c": "d"}]}]]]}}),
            serde_json::json!({"mixed": [1, "two", 3.5, {"four": [true]}, [], {}]}),
        ];
        let mut floats = Map::new();
        for (i, f) in [
            0.0,
            -0.0,
            0.1,
            -2.5,
            1e21,
            1e-7,
            123456789.125,
            f64::MIN_POSITIVE,
            f64::MAX,
            1.0 / 3.0,
            5e-324,
        ]
        .into_iter()
        .enumerate()
        {
            floats.insert(format!("f{i}"), float(f));
        }
        values.push(Value::Object(floats));
        for value in &values {
            let written = serde_json::to_vec(value).expect("serialises").len();
            assert_eq!(measured_len(value), written, "{value}");
        }
        // The limit is inclusive, as before: exactly max_bytes passes.
        let value = serde_json::json!({"team": "a\"b", "n": [1.5, 2]});
        let len = serde_json::to_vec(&value).expect("serialises").len();
        let at = |max_bytes| MetadataPolicy {
            max_bytes,
            max_depth: 16,
        };
        assert!(metadata(&value, &at(len)).is_ok());
        assert!(metadata(&value, &at(len - 1)).is_err());
    }
}
