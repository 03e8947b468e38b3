//! Hostile inputs through every public read and write method (issue #8,
//! "Tests"): NUL characters, 1 MiB and 20 MiB strings, odd Unicode,
//! injection strings, JSON with NUL, deep and wide JSON, numbers at the
//! i32/i64/f64 bounds, out-of-range timestamps, tampered and foreign
//! cursors, zero and huge sizes and durations, and rows another client wrote
//! through raw SQL that pass every CHECK.
//!
//! Every case asserts its exact outcome: either the exact error (variant,
//! and the `field()` of a validation error, the constraint, entity or
//! transition where there is one) and that nothing was written (every row of
//! every table fingerprinted before and after), or an exact round trip (the
//! stored value read back through the crate's own getters equals what was
//! sent). Cases are table-driven; each prints its label (`case: …`) before
//! it runs and every assertion names it, so a failure, or a panic inside the
//! crate, names its case.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use time::{Date, Month, PrimitiveDateTime, Time};
use uuid::Uuid;
use voidrunner_db::fixtures;
use voidrunner_db::model::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use voidrunner_db::validate::{
    MAX_BATCH, MAX_CLAIM, MAX_LEASE, MAX_PRUNE_AGE, MAX_RETRY_DELAY, METADATA_DEPTH_LIMIT,
    MetadataPolicy, POSTGRES_MIN_UNIX_MICROS, ValidationPolicy,
};
use voidrunner_db::{
    Error, ExecutionId, ExecutionQueue, ExecutionRepository, ExecutionStatus, ExecutionUpdate,
    LeaseLostReason, NewExecution, NewTask, NewUser, Outcome, Page, PageRequest, PasswordHash,
    PgTaskRepository, RescuePolicy, ScriptType, Task, TaskExecution, TaskId, TaskRepository,
    TaskStatus, TaskUpdate, Timestamp, User, UserId, UserRepository, UserUpdate,
};

use crate::{LEASE, Repos, repos};

type R<T> = voidrunner_db::Result<T>;

// ---------------------------------------------------------------------------
// Expected outcomes
// ---------------------------------------------------------------------------

/// The exact error a refused call must return.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// `Error::Validation` whose `field()` is this.
    Validation(&'static str),
    /// `Error::Validation` of a batch: this field, and the message names the
    /// index of the bad item (`task {index}: …`).
    BatchValidation(&'static str, usize),
    /// `Error::NotFound` of this entity.
    NotFound(&'static str),
    /// `Error::Conflict` on this constraint.
    Conflict(&'static str),
    /// `Error::ForeignKey` on this constraint.
    ForeignKey(&'static str),
    /// `Error::InvalidTransition { entity, from, to }`.
    Transition(&'static str, &'static str, &'static str),
    /// `Error::LeaseLost` with this reason.
    LeaseLost(LeaseLostReason),
    /// `Error::Config`.
    Config,
}

fn assert_error(label: &str, err: &Error, want: Want) {
    let matched = match (want, err) {
        (Want::Validation(field), Error::Validation { .. }) => err.field() == Some(field),
        (Want::BatchValidation(field, index), Error::Validation { message, .. }) => {
            err.field() == Some(field) && message.starts_with(&format!("task {index}:"))
        }
        (Want::NotFound(entity), Error::NotFound { entity: e, .. }) => *e == entity,
        (Want::Conflict(c), Error::Conflict { .. }) => err.constraint() == Some(c),
        (Want::ForeignKey(c), Error::ForeignKey { .. }) => err.constraint() == Some(c),
        (
            Want::Transition(entity, from, to),
            Error::InvalidTransition {
                entity: e,
                from: f,
                to: t,
            },
        ) => (*e, *f, *t) == (entity, from, to),
        (Want::LeaseLost(reason), Error::LeaseLost { .. }) => {
            err.lease_lost_reason() == Some(reason)
        }
        (Want::Config, Error::Config { .. }) => true,
        _ => false,
    };
    assert!(
        matched,
        "{label}: expected {want:?}, got {} ({err})",
        brief(err)
    );
}

/// The `Debug` form of `value`, cut short: values here hold up to 20 MiB.
fn brief(value: &impl Debug) -> String {
    let text = format!("{value:?}");
    if text.len() <= 600 {
        return text;
    }
    let head: String = text.chars().take(300).collect();
    format!("{head}… ({} bytes of Debug output)", text.len())
}

/// Asserts `got == want`, printing both only briefly.
fn same<T: PartialEq + Debug>(label: &str, got: &T, want: &T) {
    if got != want {
        panic!(
            "{label}: read back\n    {}\nexpected\n    {}",
            brief(got),
            brief(want)
        );
    }
}

/// Every row version of every table: the count and an md5 of each row's id
/// and `xmin` (the transaction that wrote that version) in id order. Any
/// INSERT, DELETE or UPDATE, even one that sets the same values, changes it
/// (row locks do not); equal before and after a call means the call wrote
/// nothing.
#[derive(Debug, PartialEq)]
struct Snapshot(Vec<(&'static str, i64, Option<String>)>);

async fn snapshot(r: &Repos) -> Snapshot {
    let client = r.db.raw_client().await.unwrap();
    let mut tables = Vec::new();
    for table in ["users", "tasks", "task_executions"] {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), md5(string_agg(t.id::text || ':' || t.xmin::text, ',' \
                     ORDER BY t.id)) FROM {table} t"
                ),
                &[],
            )
            .await
            .unwrap();
        tables.push((table, row.get(0), row.get(1)));
    }
    Snapshot(tables)
}

/// Runs `call`, which must be refused with `want` and write nothing.
async fn refused<T: Debug>(r: &Repos, label: &str, want: Want, call: impl Future<Output = R<T>>) {
    eprintln!("case: {label}");
    let before = snapshot(r).await;
    match call.await {
        Ok(value) => panic!("{label}: expected {want:?}, got Ok({})", brief(&value)),
        Err(err) => assert_error(label, &err, want),
    }
    let after = snapshot(r).await;
    assert!(
        after == before,
        "{label}: refused, yet the database changed: {before:?} -> {after:?}"
    );
}

/// Runs `call`, which must succeed.
async fn ok<T>(label: &str, call: impl Future<Output = R<T>>) -> T {
    eprintln!("case: {label}");
    match call.await {
        Ok(value) => value,
        Err(err) => panic!("{label}: expected success, got {} ({err})", brief(&err)),
    }
}

/// Runs `call`, which must succeed and write nothing (a read, or a no-op).
async fn ok_unchanged<T>(r: &Repos, label: &str, call: impl Future<Output = R<T>>) -> T {
    let before = snapshot(r).await;
    let value = ok(label, call).await;
    assert!(
        snapshot(r).await == before,
        "{label}: should have written nothing"
    );
    value
}

// ---------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------

/// Texts that are valid wherever text is stored (not blank, no NUL, at most
/// 255 characters, no denied script pattern): they must round-trip.
fn hostile_texts() -> Vec<(&'static str, String)> {
    [
        ("sql injection", "'; DROP TABLE users; --"),
        ("sql injection with a quote", "\" OR '1'='1' --"),
        ("stacked statements", "x'); COMMIT; DELETE FROM tasks; --"),
        ("placeholder $1", "$1"),
        (
            "placeholders and dollar quotes",
            "$1 $2 $$ $body$ :name ? %s {} {0}",
        ),
        ("backslashes", r"\ \\ \' \x00 \N E'\\' \."),
        ("escaped NUL as text", r"\u0000 \0 %00"),
        (
            "escaped lone surrogates as text",
            r"\uD800 \uDFFF \uD83D\uDE00",
        ),
        ("like wildcards", "%_%\\%"),
        ("json text", r#"{"a": [1, "\u0000"], "$1": null}"#),
        (
            "combining marks",
            "e\u{301}\u{302}\u{303}\u{304} a\u{20DD} Z\u{336}\u{337}\u{338}",
        ),
        (
            "bidi overrides",
            "\u{202E}gnp.exe\u{202C} \u{200F}abc\u{200E} \u{2066}x\u{2069}",
        ),
        ("emoji", "👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇺🇳"),
        ("astral plane", "𝕳𝖊𝖑𝖑𝖔 𐍈 \u{10FFFF}"),
        ("zero width and BOM", "\u{FEFF}a\u{200B}b\u{2060}c\u{200D}d"),
        ("noncharacters", "\u{FFFE}\u{FFFF}\u{FDD0}\u{1FFFE}"),
        ("private use", "\u{E000}\u{F8FF}\u{F0000}"),
        (
            "control characters",
            "a\u{1}\u{7}\u{8}\u{1B}[31mred\u{7F}\u{9B}",
        ),
        ("line breaks", "a\r\nb\rc\u{2028}d\u{2029}e\u{85}f"),
        (
            "mixed scripts",
            "Ελληνικά Кириллица 中文 العربية עברית हिन्दी",
        ),
        ("only U+200B (not blank to either side)", "\u{200B}"),
        ("only U+180E (not blank to either side)", "\u{180E}"),
        ("only U+001C (not blank to either side)", "\u{1C}"),
    ]
    .into_iter()
    .map(|(label, text)| (label, text.to_owned()))
    .collect()
}

/// Texts with a NUL, which PostgreSQL's text cannot store: refused.
fn nul_texts() -> Vec<(&'static str, String)> {
    [
        ("NUL alone", "\0"),
        ("NUL inside", "a\0b"),
        ("NUL at the end", "abc\0"),
        ("NUL after a quote", "'\0'; DROP TABLE users; --"),
    ]
    .into_iter()
    .map(|(label, text)| (label, text.to_owned()))
    .collect()
}

/// Texts that are blank to Rust's `trim` (so refused where a field must not
/// be blank).
fn blank_texts() -> Vec<(&'static str, String)> {
    [
        ("empty", ""),
        ("spaces", "   "),
        ("tabs and newlines", "\t\r\n\u{B}\u{C}"),
        ("ideographic space", "\u{3000}"),
        ("no-break space", "\u{A0}"),
        ("next line U+0085", "\u{85}"),
        ("line and paragraph separators", "\u{2028}\u{2029}"),
    ]
    .into_iter()
    .map(|(label, text)| (label, text.to_owned()))
    .collect()
}

/// Exactly `bytes` bytes of text mixing one- to four-byte characters,
/// quotes, backslashes and bidi overrides.
fn big(bytes: usize) -> String {
    const PATTERN: &str = "aé€😀'\\\u{202E}$1 ";
    let mut text = String::with_capacity(bytes);
    while text.len() + PATTERN.len() <= bytes {
        text.push_str(PATTERN);
    }
    while text.len() < bytes {
        text.push('x');
    }
    text
}

const MIB: usize = 1 << 20;

/// `n` characters, each `c`.
fn chars(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// `n` characters mixing widths: combining marks count as characters.
fn mixed_chars(n: usize) -> String {
    "e\u{301}😀中\u{202E}'".chars().cycle().take(n).collect()
}

// Timestamps.

fn at(year: i32, month: Month, day: u8) -> Timestamp {
    PrimitiveDateTime::new(
        Date::from_calendar_date(year, month, day).unwrap(),
        Time::MIDNIGHT,
    )
    .assume_utc()
    .into()
}

/// 4714-11-24 BC, the earliest instant PostgreSQL stores.
fn pg_min() -> Timestamp {
    Timestamp::from_unix_micros(POSTGRES_MIN_UNIX_MICROS).unwrap()
}

/// The `time` crate's earliest instant, -9999-01-01.
fn time_min() -> Timestamp {
    PrimitiveDateTime::MIN.assume_utc().into()
}

/// The `time` crate's latest instant, 9999-12-31T23:59:59.999999 once
/// truncated to microseconds.
fn time_max() -> Timestamp {
    PrimitiveDateTime::MAX.assume_utc().into()
}

fn epoch() -> Timestamp {
    Timestamp::from_unix_micros(0).unwrap()
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_unix_micros(t.unix_micros() + i64::try_from(d.as_micros()).unwrap()).unwrap()
}

/// Instants PostgreSQL cannot store: refused as validation errors.
fn unstorable_times() -> Vec<(&'static str, Timestamp)> {
    vec![
        ("time's minimum, year -9999", time_min()),
        ("year -7537", at(-7537, Month::January, 1)),
        (
            "1 µs before 4714-11-24 BC",
            Timestamp::from_unix_micros(POSTGRES_MIN_UNIX_MICROS - 1).unwrap(),
        ),
    ]
}

/// The extremes PostgreSQL and `Timestamp` both hold: they round-trip.
fn extreme_times() -> Vec<(&'static str, Timestamp)> {
    vec![
        ("4714-11-24 BC, PostgreSQL's minimum", pg_min()),
        ("the Unix epoch", epoch()),
        ("9999-12-31T23:59:59.999999, time's maximum", time_max()),
    ]
}

fn hash() -> PasswordHash {
    PasswordHash::new("$argon2id$v=19$m=19456$hostile")
}

/// A user with a unique email.
async fn new_user(r: &Repos) -> User {
    r.users
        .create(NewUser::new(
            format!("u{}@example.com", Uuid::new_v4().simple()),
            hash(),
        ))
        .await
        .unwrap()
}

fn base_task(user: UserId) -> NewTask {
    NewTask::new(user, "base", "print(1)")
}

async fn fresh_task(r: &Repos, user: &User) -> Task {
    r.tasks.create(base_task(user.id)).await.unwrap()
}

/// A task as the input that would create it.
fn as_input(task: &Task) -> NewTask {
    let mut input = NewTask::new(task.user_id, &task.name, &task.script_content)
        .script_type(task.script_type)
        .priority(task.priority)
        .timeout_seconds(task.timeout_seconds)
        .metadata(task.metadata.clone());
    input.description.clone_from(&task.description);
    input
}

/// A new pending execution of a new task of `user`.
async fn pending_execution(r: &Repos, user: &User) -> TaskExecution {
    let task = fresh_task(r, user).await;
    r.queue.enqueue(task.id, None).await.unwrap()
}

/// A new execution claimed by `worker`. No other execution may be pending.
async fn running_execution(r: &Repos, user: &User, worker: &str) -> TaskExecution {
    let queued = pending_execution(r, user).await;
    let claimed = r.queue.claim(worker, 1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "{}", brief(&claimed));
    assert_eq!(claimed[0].execution.id, queued.id);
    claimed.into_iter().next().unwrap().execution
}

/// Ids that name no row: nil, max, a random v4, a new v7.
fn missing_ids() -> Vec<(&'static str, Uuid)> {
    vec![
        ("nil uuid", Uuid::nil()),
        ("max uuid", Uuid::max()),
        ("random v4", Uuid::new_v4()),
        ("fresh v7", Uuid::now_v7()),
    ]
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

#[tokio::test]
async fn users_over_the_corpus() {
    let r = repos().await;
    let existing = new_user(&r).await;

    // Emails refused before any SQL, by create, get_by_email and update.
    let mut bad_emails: Vec<(String, String)> = vec![
        ("sql injection".into(), "'; DROP TABLE users; --".into()),
        (
            "injection in the local part".into(),
            "x'; DROP TABLE users; --@example.com".into(),
        ),
        ("placeholder".into(), "$1@example.com".into()),
        ("backslash".into(), "a\\b@example.com".into()),
        ("quote".into(), "o'brien@example.com".into()),
        ("combining mark".into(), "e\u{301}@example.com".into()),
        ("bidi override".into(), "\u{202E}a@example.com".into()),
        ("emoji local part".into(), "😀@example.com".into()),
        ("emoji domain".into(), "a@😀.com".into()),
        ("fullwidth letter".into(), "ａ@example.com".into()),
        ("dotted capital I".into(), "\u{130}@example.com".into()),
        (
            "256 characters".into(),
            format!("{}@example.com", "a".repeat(256 - 12)),
        ),
        ("1 MiB".into(), big(MIB)),
        (
            "1 MiB of a valid shape".into(),
            format!("{}@example.com", "a".repeat(MIB)),
        ),
    ];
    for (label, text) in nul_texts()
        .into_iter()
        .chain(blank_texts())
        .chain([("NUL after a valid email", "a@example.com\0".to_owned())])
    {
        bad_emails.push((label.into(), text));
    }
    for (label, email) in &bad_emails {
        refused(
            &r,
            &format!("users.create email {label}"),
            Want::Validation("email"),
            r.users.create(NewUser::new(email.clone(), hash())),
        )
        .await;
        refused(
            &r,
            &format!("users.get_by_email {label}"),
            Want::Validation("email"),
            r.users.get_by_email(email),
        )
        .await;
        refused(
            &r,
            &format!("users.update email {label}"),
            Want::Validation("email"),
            r.users.update(
                existing.id,
                UserUpdate {
                    email: Some(email.clone()),
                    ..UserUpdate::default()
                },
            ),
        )
        .await;
    }

    // Emails accepted, stored trimmed and lower-cased, found in any case.
    let local_243 = "b".repeat(243);
    let good_emails: Vec<(&str, String, String)> = vec![
        (
            "mixed case, all allowed punctuation, spaces around",
            "  MiXeD.Case+Tag%x_y-z@Sub-Domain.Example.COM \t".into(),
            "mixed.case+tag%x_y-z@sub-domain.example.com".into(),
        ),
        (
            "255 characters",
            format!("{}@example.com", "a".repeat(243)),
            format!("{}@example.com", "a".repeat(243)),
        ),
        (
            "255 characters after trimming",
            format!("\t {local_243}@EXAMPLE.com \n"),
            format!("{local_243}@example.com"),
        ),
        (
            "Unicode spaces around",
            "\u{A0}\u{3000}nbsp@example.com\u{2003}\u{85}".into(),
            "nbsp@example.com".into(),
        ),
        (
            "percent and underscores",
            "%_%@ex-ample.co".into(),
            "%_%@ex-ample.co".into(),
        ),
        (
            "dots everywhere",
            "..a..@..a.co".into(),
            "..a..@..a.co".into(),
        ),
    ];
    for (label, input, stored) in &good_emails {
        let l = format!("users.create email {label}");
        let user = ok(&l, r.users.create(NewUser::new(input.clone(), hash()))).await;
        same(&l, &user.email, stored);
        same(&l, &r.users.get(user.id).await.unwrap(), &user);
        let l = format!("users.get_by_email {label}");
        same(&l, &ok(&l, r.users.get_by_email(input)).await, &user);
        same(
            &l,
            &ok(&l, r.users.get_by_email(&stored.to_uppercase())).await,
            &user,
        );
        refused(
            &r,
            &format!("users.create email {label}, again in upper case"),
            Want::Conflict("users_email_key"),
            r.users.create(NewUser::new(stored.to_uppercase(), hash())),
        )
        .await;
        refused(
            &r,
            &format!("users.update another user to email {label}"),
            Want::Conflict("users_email_key"),
            r.users.update(
                existing.id,
                UserUpdate {
                    email: Some(input.clone()),
                    ..UserUpdate::default()
                },
            ),
        )
        .await;
    }
    // An email change round-trips too.
    let l = "users.update email to mixed case with spaces";
    let updated = ok(
        l,
        r.users.update(
            existing.id,
            UserUpdate {
                email: Some("  Changed+1@Example.ORG ".into()),
                ..UserUpdate::default()
            },
        ),
    )
    .await;
    same(l, &updated.email, &"changed+1@example.org".to_owned());
    same(l, &r.users.get(existing.id).await.unwrap(), &updated);

    // Password hashes refused.
    let mut bad_hashes: Vec<(String, String)> = vec![
        ("256 characters".into(), "h".repeat(256)),
        ("256 emoji".into(), chars('😀', 256)),
        ("256 mixed characters".into(), mixed_chars(256)),
        ("1 MiB".into(), big(MIB)),
    ];
    for (label, text) in nul_texts().into_iter().chain(blank_texts()) {
        bad_hashes.push((label.into(), text));
    }
    for (label, text) in &bad_hashes {
        refused(
            &r,
            &format!("users.create password_hash {label}"),
            Want::Validation("password_hash"),
            r.users.create(NewUser::new(
                "fresh@example.com",
                PasswordHash::new(text.clone()),
            )),
        )
        .await;
        refused(
            &r,
            &format!("users.update password_hash {label}"),
            Want::Validation("password_hash"),
            r.users.update(
                existing.id,
                UserUpdate {
                    password_hash: Some(PasswordHash::new(text.clone())),
                    ..UserUpdate::default()
                },
            ),
        )
        .await;
    }
    // An invalid email and a valid hash, or the reverse: refused whole.
    refused(
        &r,
        "users.update valid hash with a NUL email",
        Want::Validation("email"),
        r.users.update(
            existing.id,
            UserUpdate {
                email: Some("a\0@example.com".into()),
                password_hash: Some(hash()),
                display_name: None,
            },
        ),
    )
    .await;
    refused(
        &r,
        "users.update valid email with a blank hash",
        Want::Validation("password_hash"),
        r.users.update(
            existing.id,
            UserUpdate {
                email: Some("valid@example.com".into()),
                password_hash: Some(PasswordHash::new(" ")),
                display_name: None,
            },
        ),
    )
    .await;

    // Password hashes stored exactly as given.
    let mut good_hashes: Vec<(String, String)> = vec![
        ("255 characters".into(), "h".repeat(255)),
        ("255 emoji".into(), chars('😀', 255)),
        ("255 mixed characters".into(), mixed_chars(255)),
        ("spaces around".into(), "  $argon2id$  ".into()),
    ];
    for (label, text) in hostile_texts() {
        good_hashes.push((label.into(), text));
    }
    for (i, (label, text)) in good_hashes.iter().enumerate() {
        let l = format!("users.create password_hash {label}");
        let user = ok(
            &l,
            r.users.create(NewUser::new(
                format!("hash{i}@example.com"),
                PasswordHash::new(text.clone()),
            )),
        )
        .await;
        same(&l, &user.password_hash.expose().to_owned(), text);
        same(&l, &r.users.get(user.id).await.unwrap(), &user);
        let l = format!("users.update password_hash {label}");
        let updated = ok(
            &l,
            r.users.update(
                existing.id,
                UserUpdate {
                    password_hash: Some(PasswordHash::new(text.clone())),
                    ..UserUpdate::default()
                },
            ),
        )
        .await;
        same(&l, &updated.password_hash.expose().to_owned(), text);
        same(&l, &updated.email, &"changed+1@example.org".to_owned());
        same(&l, &r.users.get(existing.id).await.unwrap(), &updated);
    }

    // Ids that name nobody: a task's id among them.
    let task = fresh_task(&r, &existing).await;
    let mut ids = missing_ids();
    ids.push(("the id of a task", task.id.as_uuid()));
    for (label, id) in ids {
        let id = UserId::from(id);
        refused(
            &r,
            &format!("users.get {label}"),
            Want::NotFound("user"),
            r.users.get(id),
        )
        .await;
        refused(
            &r,
            &format!("users.update {label}"),
            Want::NotFound("user"),
            r.users.update(
                id,
                UserUpdate {
                    email: Some("nobody@example.com".into()),
                    password_hash: Some(hash()),
                    display_name: None,
                },
            ),
        )
        .await;
        refused(
            &r,
            &format!("users.update {label} with an empty update"),
            Want::NotFound("user"),
            r.users.update(id, UserUpdate::default()),
        )
        .await;
        refused(
            &r,
            &format!("users.delete {label}"),
            Want::NotFound("user"),
            r.users.delete(id),
        )
        .await;
    }
    refused(
        &r,
        "users.get_by_email of nobody",
        Want::NotFound("user"),
        r.users.get_by_email("nobody@example.com"),
    )
    .await;
    let l = "users.update with an empty update";
    same(
        l,
        &ok_unchanged(&r, l, r.users.update(existing.id, UserUpdate::default())).await,
        &updated_user(&r, existing.id).await,
    );

    let l = "users.count";
    same(
        l,
        &ok(l, r.users.count()).await,
        &r.count_rows("users").await,
    );

    // Deleting the user with a hostile hash takes its tasks with it.
    let l = "users.delete";
    ok(l, r.users.delete(existing.id)).await;
    refused(&r, l, Want::NotFound("user"), r.users.get(existing.id)).await;
    refused(&r, l, Want::NotFound("task"), r.tasks.get(task.id)).await;
    same(
        l,
        &ok(l, r.users.count()).await,
        &r.count_rows("users").await,
    );
}

async fn updated_user(r: &Repos, id: UserId) -> User {
    r.users.get(id).await.unwrap()
}

// ---------------------------------------------------------------------------
// Tasks: every field through create, create_many, import and update
// ---------------------------------------------------------------------------

/// One field of a task set to a value.
#[derive(Debug, Clone)]
enum Set {
    Name(String),
    Description(String),
    Script(String),
    Priority(i32),
    Timeout(i32),
    Metadata(Value),
}

impl Set {
    fn apply(&self, task: NewTask) -> NewTask {
        match self.clone() {
            Set::Name(v) => task.name(v),
            Set::Description(v) => task.description(v),
            Set::Script(v) => task.script_content(v),
            Set::Priority(v) => task.priority(v),
            Set::Timeout(v) => task.timeout_seconds(v),
            Set::Metadata(v) => task.metadata(v),
        }
    }

    fn update(&self) -> TaskUpdate {
        let none = TaskUpdate::default();
        match self.clone() {
            Set::Name(v) => TaskUpdate {
                name: Some(v),
                ..none
            },
            Set::Description(v) => TaskUpdate {
                description: Some(Some(v)),
                ..none
            },
            Set::Script(v) => TaskUpdate {
                script_content: Some(v),
                ..none
            },
            Set::Priority(v) => TaskUpdate {
                priority: Some(v),
                ..none
            },
            Set::Timeout(v) => TaskUpdate {
                timeout_seconds: Some(v),
                ..none
            },
            Set::Metadata(v) => TaskUpdate {
                metadata: Some(v),
                ..none
            },
        }
    }
}

/// Sends `set` through `create`, `create_many` (as item 1 of 2), `import`
/// (item 1 of 2) and `update` of `tasks`.
///
/// `want` None: each stores exactly what was sent, read back by `get` (by
/// `list_by_user` after `import`); returns the four tasks holding the
/// value. `want` Some: each is refused with it (a validation error of a
/// batch naming item 1) and writes nothing.
async fn task_case(
    r: &Repos,
    tasks: &PgTaskRepository,
    label: &str,
    set: &Set,
    want: Option<Want>,
) -> Vec<Task> {
    let owner = new_user(r).await;
    let importer = new_user(r).await;
    let target = fresh_task(r, &owner).await;
    let one = set.apply(base_task(owner.id));
    let batch = vec![base_task(owner.id), set.apply(base_task(owner.id))];
    let imported = vec![base_task(importer.id), set.apply(base_task(importer.id))];
    let Some(want) = want else {
        let mut holders = Vec::new();

        let l = format!("{label}: create");
        let created = ok(&l, tasks.create(one.clone())).await;
        same(&l, &as_input(&created), &one);
        same(&l, &created.status, &TaskStatus::Pending);
        same(&l, &r.tasks.get(created.id).await.unwrap(), &created);
        holders.push(created);

        let l = format!("{label}: create_many");
        let many = ok(&l, tasks.create_many(batch.clone())).await;
        same(&l, &many.iter().map(as_input).collect::<Vec<_>>(), &batch);
        for task in &many {
            same(&l, &r.tasks.get(task.id).await.unwrap(), task);
        }
        holders.push(many[1].clone());

        let l = format!("{label}: import");
        same(&l, &ok(&l, tasks.import(imported.clone())).await, &2);
        let page = r
            .tasks
            .list_by_user(importer.id, PageRequest::first(10))
            .await
            .unwrap();
        let mut unmatched: Vec<&Task> = page.items.iter().collect();
        for input in &imported {
            let at = unmatched
                .iter()
                .position(|t| as_input(t) == *input)
                .unwrap_or_else(|| panic!("{l}: {} not among {}", brief(input), brief(&unmatched)));
            let task = unmatched.remove(at);
            same(&l, &task.status, &TaskStatus::Pending);
            if input == &imported[1] {
                holders.push(task.clone());
            }
        }
        assert!(unmatched.is_empty(), "{l}: {}", brief(&unmatched));

        let l = format!("{label}: update");
        let updated = ok(&l, tasks.update(target.id, set.update())).await;
        same(&l, &as_input(&updated), &set.apply(as_input(&target)));
        same(&l, &r.tasks.get(target.id).await.unwrap(), &updated);
        holders.push(updated);
        return holders;
    };
    let batch_want = match want {
        Want::Validation(field) => Want::BatchValidation(field, 1),
        other => other,
    };
    refused(r, &format!("{label}: create"), want, tasks.create(one)).await;
    refused(
        r,
        &format!("{label}: create_many"),
        batch_want,
        tasks.create_many(batch),
    )
    .await;
    refused(
        r,
        &format!("{label}: import"),
        batch_want,
        tasks.import(imported),
    )
    .await;
    refused(
        r,
        &format!("{label}: update"),
        want,
        tasks.update(target.id, set.update()),
    )
    .await;
    Vec::new()
}

#[tokio::test]
async fn task_texts_over_the_corpus() {
    let r = repos().await;
    type Make = fn(String) -> Set;
    let fields: [(&str, Make); 3] = [
        ("name", Set::Name),
        ("description", Set::Description),
        ("script_content", Set::Script),
    ];
    for (field, make) in fields {
        let mut cases: Vec<(String, String, bool)> = Vec::new();
        for (label, text) in hostile_texts() {
            cases.push((label.into(), text, true));
        }
        for (label, text) in nul_texts() {
            cases.push((label.into(), text, false));
        }
        // Blank: refused where the field must not be blank.
        for (label, text) in blank_texts() {
            cases.push((label.into(), text, field == "description"));
        }
        let max = match field {
            "name" => 255,
            "description" => 1000,
            _ => 65535,
        };
        cases.extend([
            (format!("{max} ASCII characters"), "n".repeat(max), true),
            (format!("{max} emoji"), chars('😀', max), true),
            (format!("{max} mixed characters"), mixed_chars(max), true),
            (
                format!("{} ASCII characters", max + 1),
                "n".repeat(max + 1),
                false,
            ),
            (format!("{} emoji", max + 1), chars('😀', max + 1), false),
            ("1 MiB".into(), big(MIB), false),
        ]);
        if field == "script_content" {
            cases.extend([
                ("denied pattern".into(), "sudo rm -rf /".into(), false),
                (
                    "denied pattern in capitals".into(),
                    "RM -RF /home".into(),
                    false,
                ),
                ("fork bomb".into(), ":(){ :|:& };:".into(), false),
                ("mkfs".into(), "mkfs.ext4 /dev/sda1".into(), false),
            ]);
        }
        for (label, text, accepted) in cases {
            let want = (!accepted).then_some(Want::Validation(field));
            task_case(
                &r,
                &r.tasks,
                &format!("task {field} {label}"),
                &make(text),
                want,
            )
            .await;
        }
    }
    // Clearing and emptying a description.
    let user = new_user(&r).await;
    let task = r
        .tasks
        .create(base_task(user.id).description("to be cleared"))
        .await
        .unwrap();
    let l = "tasks.update description Some(None) clears it";
    let cleared = ok(
        l,
        r.tasks.update(
            task.id,
            TaskUpdate {
                description: Some(None),
                ..TaskUpdate::default()
            },
        ),
    )
    .await;
    same(l, &cleared.description, &None);
    same(l, &r.tasks.get(task.id).await.unwrap(), &cleared);
    // Every script type.
    for script_type in ScriptType::ALL {
        let l = format!("tasks.create script_type {script_type}");
        let input = base_task(user.id).script_type(script_type);
        let created = ok(&l, r.tasks.create(input.clone())).await;
        same(&l, &as_input(&created), &input);
        let l = format!("tasks.update script_type {script_type}");
        let updated = ok(
            &l,
            r.tasks.update(
                task.id,
                TaskUpdate {
                    script_type: Some(script_type),
                    ..TaskUpdate::default()
                },
            ),
        )
        .await;
        same(&l, &updated.script_type, &script_type);
        same(&l, &r.tasks.get(task.id).await.unwrap(), &updated);
    }
}

#[tokio::test]
async fn task_numbers_at_the_bounds() {
    let r = repos().await;
    let priorities = [
        (i32::MIN, false),
        (-1, false),
        (0, true),
        (10, true),
        (11, false),
        (i32::MAX, false),
    ];
    for (value, accepted) in priorities {
        task_case(
            &r,
            &r.tasks,
            &format!("task priority {value}"),
            &Set::Priority(value),
            (!accepted).then_some(Want::Validation("priority")),
        )
        .await;
    }
    let timeouts = [
        (i32::MIN, false),
        (-1, false),
        (0, false),
        (1, true),
        (3600, true),
        (3601, false),
        (i32::MAX, false),
    ];
    for (value, accepted) in timeouts {
        task_case(
            &r,
            &r.tasks,
            &format!("task timeout_seconds {value}"),
            &Set::Timeout(value),
            (!accepted).then_some(Want::Validation("timeout_seconds")),
        )
        .await;
    }
}

/// Metadata `depth` levels deep (the top-level object is level 1) holding
/// the marker `case`.
fn deep_object(case: &str, depth: usize) -> Value {
    let object = |entries: Vec<(&str, Value)>| {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    };
    let mut inner = object(Vec::new());
    for _ in 2..depth {
        inner = object(vec![("n", inner)]);
    }
    object(vec![("case", json!(case)), ("n", inner)])
}

/// An object holding the marker `case` whose compact JSON is exactly
/// `bytes` long.
fn sized_object(case: &str, bytes: usize) -> Value {
    let overhead = serde_json::to_vec(&json!({ "case": case, "pad": "" }))
        .unwrap()
        .len();
    let value = json!({ "case": case, "pad": "x".repeat(bytes - overhead) });
    assert_eq!(serde_json::to_vec(&value).unwrap().len(), bytes);
    value
}

/// An object holding the marker `case` and `keys` more keys.
fn wide_object(case: &str, keys: usize) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("case".into(), json!(case));
    for i in 0..keys {
        map.insert(format!("k{i}"), json!(i));
    }
    Value::Object(map)
}

fn json_bytes(value: &Value) -> usize {
    serde_json::to_vec(value).unwrap().len()
}

#[tokio::test]
async fn metadata_over_the_corpus() {
    let r = repos().await;
    let deepest_policy = ValidationPolicy {
        metadata: MetadataPolicy {
            max_depth: METADATA_DEPTH_LIMIT,
            max_bytes: 4 * MIB,
        },
        ..ValidationPolicy::default()
    };
    let too_loose_policy = ValidationPolicy {
        metadata: MetadataPolicy {
            max_depth: METADATA_DEPTH_LIMIT + 1,
            max_bytes: 4 * MIB,
        },
        ..ValidationPolicy::default()
    };
    let default_repo = r.tasks.clone();
    let deepest_repo = PgTaskRepository::with_policy(r.db.db().clone(), deepest_policy);
    let too_loose_repo = PgTaskRepository::with_policy(r.db.db().clone(), too_loose_policy);

    #[derive(Clone, Copy)]
    enum Policy {
        Default,
        Deepest,
        TooLoose,
    }
    let invalid = Some(Want::Validation("metadata"));
    let mut cases: Vec<(String, Value, Policy, Option<Want>)> = Vec::new();
    let mut case = |label: &str, make: &dyn Fn(&str) -> Value, policy, want| {
        let marker = format!("case {}", cases.len());
        cases.push((label.to_owned(), make(&marker), policy, want));
    };

    case(
        "just the marker",
        &|m| json!({ "case": m }),
        Policy::Default,
        None,
    );
    case(
        "odd Unicode and injection in keys and values",
        &|m| {
            json!({
                "case": m,
                "\u{202E}rtl": "e\u{301}\u{302}",
                "👩‍👩‍👧‍👦": ["😀", "\u{FEFF}", "\u{10FFFF}"],
                "": "the empty key",
                "'; DROP TABLE tasks; --": "$1",
                "\\": "\\\\'",
                "\u{FFFE}": null,
                "\u{1}\u{1B}[0m": "\u{7F}",
            })
        },
        Policy::Default,
        None,
    );
    case(
        "\\u0000 as text, not as a NUL",
        &|m| json!({ "case": m, "a": "\\u0000", "\\u0000": "\\0" }),
        Policy::Default,
        None,
    );
    case(
        "integers at the i64 and u64 bounds",
        &|m| {
            json!({
                "case": m, "i64_min": i64::MIN, "i64_max": i64::MAX, "u64_max": u64::MAX,
                "i32_min": i32::MIN, "i32_max": i32::MAX, "zero": 0,
            })
        },
        Policy::Default,
        None,
    );
    case(
        "floats at the f64 bounds",
        &|m| {
            json!({
                "case": m, "max": f64::MAX, "min": f64::MIN, "min_positive": f64::MIN_POSITIVE,
                "smallest_subnormal": 5e-324, "epsilon": f64::EPSILON, "tenth": 0.1,
                "negative_zero": -0.0, "big": 1e300, "one_and_a_half": 1.5,
            })
        },
        Policy::Default,
        None,
    );
    case(
        "floats with an integral value that serde_json prints in full (1e15, -2.0)",
        &|m| json!({ "case": m, "a": 1e15, "b": -2.0, "c": 2e19 }),
        Policy::Default,
        None,
    );
    case(
        "booleans, nulls, empty containers",
        &|m| json!({ "case": m, "t": true, "f": false, "n": null, "a": [null, true, [], {}], "o": {} }),
        Policy::Default,
        None,
    );
    case(
        "depth 16, the default limit",
        &|m| deep_object(m, 16),
        Policy::Default,
        None,
    );
    case(
        "65536 bytes, the default size limit",
        &|m| sized_object(m, 64 * 1024),
        Policy::Default,
        None,
    );
    case(
        "wide: 4000 keys",
        &|m| {
            let v = wide_object(m, 4000);
            assert!(json_bytes(&v) < 64 * 1024);
            v
        },
        Policy::Default,
        None,
    );
    case(
        "big array: 20000 numbers",
        &|m| json!({ "case": m, "a": (0..20_000).map(|i| i % 10).collect::<Vec<_>>() }),
        Policy::Default,
        None,
    );
    // Refused by the default policy.
    for (label, value) in [
        ("an array", json!([])),
        ("a string", json!("s")),
        ("a number", json!(1)),
        ("null", json!(null)),
        ("true", json!(true)),
    ] {
        case(label, &move |_| value.clone(), Policy::Default, invalid);
    }
    case(
        "NUL in a key",
        &|m| json!({ "case": m, "k\u{0}": 1 }),
        Policy::Default,
        invalid,
    );
    case(
        "NUL in a value",
        &|m| json!({ "case": m, "a": "x\u{0}y" }),
        Policy::Default,
        invalid,
    );
    case(
        "NUL deep inside",
        &|m| json!({ "case": m, "a": [{ "b": ["ok", "\u{0}"] }] }),
        Policy::Default,
        invalid,
    );
    case(
        "NUL in a nested key",
        &|m| json!({ "case": m, "a": { "b": { "\u{0}": true } } }),
        Policy::Default,
        invalid,
    );
    case(
        "depth 17, one over the default limit",
        &|m| deep_object(m, 17),
        Policy::Default,
        invalid,
    );
    case(
        "depth 500 of arrays, past serde_json's 128 too",
        &|m| {
            // Built with the constructors: json! would serialise `v`
            // recursively.
            let mut v = Value::Array(Vec::new());
            for _ in 0..500 {
                v = Value::Array(vec![v]);
            }
            let mut map = serde_json::Map::new();
            map.insert("case".into(), json!(m));
            map.insert("d".into(), v);
            Value::Object(map)
        },
        Policy::Default,
        invalid,
    );
    case(
        "65537 bytes, one over the default size limit",
        &|m| sized_object(m, 64 * 1024 + 1),
        Policy::Default,
        invalid,
    );
    case(
        "wide: 20000 keys, 4 times the size limit",
        &|m| {
            let v = wide_object(m, 20_000);
            assert!(json_bytes(&v) > 4 * 64 * 1024);
            v
        },
        Policy::Default,
        invalid,
    );
    case(
        "big array: 200000 numbers",
        &|m| json!({ "case": m, "a": vec![7; 200_000] }),
        Policy::Default,
        invalid,
    );
    case(
        "1 MiB string value",
        &|m| json!({ "case": m, "s": big(MIB) }),
        Policy::Default,
        invalid,
    );
    // The deepest policy a repository may have: METADATA_DEPTH_LIMIT levels,
    // 4 MiB.
    case(
        "depth METADATA_DEPTH_LIMIT under a policy at the limit",
        &|m| deep_object(m, METADATA_DEPTH_LIMIT),
        Policy::Deepest,
        None,
    );
    case(
        "depth METADATA_DEPTH_LIMIT + 1 under a policy at the limit",
        &|m| deep_object(m, METADATA_DEPTH_LIMIT + 1),
        Policy::Deepest,
        invalid,
    );
    case(
        "1 MiB string value under a 4 MiB policy",
        &|m| json!({ "case": m, "s": big(MIB) }),
        Policy::Deepest,
        None,
    );
    case(
        "wide: 20000 keys under a 4 MiB policy",
        &|m| wide_object(m, 20_000),
        Policy::Deepest,
        None,
    );
    // A policy deeper than the reader: refused as a configuration error.
    case(
        "any metadata under a policy deeper than METADATA_DEPTH_LIMIT",
        &|m| json!({ "case": m }),
        Policy::TooLoose,
        Some(Want::Config),
    );

    for (label, value, policy, want) in cases {
        let tasks = match policy {
            Policy::Default => &default_repo,
            Policy::Deepest => &deepest_repo,
            Policy::TooLoose => &too_loose_repo,
        };
        let label = format!("task metadata {label}");
        let holders = task_case(&r, tasks, &label, &Set::Metadata(value.clone()), want).await;
        let l = format!("{label}: search_by_metadata");
        match want {
            None => {
                // Only the four tasks holding the value contain its marker.
                let page = ok(
                    &l,
                    tasks.search_by_metadata(value.clone(), PageRequest::first(100)),
                )
                .await;
                let mut found: Vec<TaskId> = page.items.iter().map(|t| t.id).collect();
                let mut expected: Vec<TaskId> = holders.iter().map(|t| t.id).collect();
                found.sort();
                expected.sort();
                same(&l, &found, &expected);
                for task in &page.items {
                    same(&l, &task.metadata, &value);
                }
            }
            Some(want) => {
                let want = match want {
                    Want::Validation("metadata") => Want::Validation("filter"),
                    other => other,
                };
                refused(
                    &r,
                    &l,
                    want,
                    tasks.search_by_metadata(value, PageRequest::first(100)),
                )
                .await;
            }
        }
    }

    // The marker of a value found by parts of it: a nested object, an array
    // element, a number at the f64 bound.
    let user = new_user(&r).await;
    let stored = json!({ "team": "'; DROP TABLE tasks; --", "n": { "x": [1, f64::MAX, "😀"] } });
    let task = r
        .tasks
        .create(base_task(user.id).metadata(stored.clone()))
        .await
        .unwrap();
    for (label, filter) in [
        (
            "the injection string",
            json!({ "team": "'; DROP TABLE tasks; --" }),
        ),
        (
            "f64::MAX inside an array",
            json!({ "n": { "x": [f64::MAX] } }),
        ),
        ("an emoji inside an array", json!({ "n": { "x": ["😀"] } })),
    ] {
        let l = format!("tasks.search_by_metadata by {label}");
        let page = ok(
            &l,
            r.tasks.search_by_metadata(filter, PageRequest::first(100)),
        )
        .await;
        same(&l, &page.items, &vec![task.clone()]);
    }
}

/// An email is valid when it matches the ASCII pattern of the
/// `users_email_format` constraint (see the domain reference, the module
/// `voidrunner_db::domain`); the crate lower-cases it to store it. U+212A KELVIN SIGN is the one character
/// outside ASCII whose lower case is ASCII (`k`): an address that does not
/// match the pattern must not be accepted because its lower case does, and
/// silently become somebody else's address (the case-mapping collision of
/// password-reset attacks).
#[tokio::test]
async fn emails_that_match_only_once_lower_cased_are_refused() {
    let r = repos().await;
    let kelvin = r.user("kelvin@example.com").await;
    let other = new_user(&r).await;
    for (label, email) in [
        ("Kelvin sign K", "\u{212A}elvin@example.com"),
        ("Kelvin sign K of a free address", "\u{212A}@example.com"),
    ] {
        refused(
            &r,
            &format!("users.create email {label}"),
            Want::Validation("email"),
            r.users.create(NewUser::new(email, hash())),
        )
        .await;
        refused(
            &r,
            &format!("users.get_by_email {label}"),
            Want::Validation("email"),
            r.users.get_by_email(email),
        )
        .await;
        refused(
            &r,
            &format!("users.update email {label}"),
            Want::Validation("email"),
            r.users.update(
                other.id,
                UserUpdate {
                    email: Some(email.into()),
                    ..UserUpdate::default()
                },
            ),
        )
        .await;
    }
    same(
        "kelvin untouched",
        &r.users.get(kelvin.id).await.unwrap(),
        &kelvin,
    );
}

/// Metadata floats read back equal to what was sent. serde_json prints a
/// float of 1e16 or more as `1e16`; jsonb stores that as the integer
/// 10000000000000000, which reads back as an integer `Number`, not equal to
/// the float sent. The crate documents that no finite float is refused and
/// that metadata floats read back exactly (README; `validate`'s
/// `every_finite_float_reads_back_unchanged`), so the value must come back
/// as sent.
#[tokio::test]
async fn metadata_floats_of_integral_value_read_back_as_sent() {
    let r = repos().await;
    for value in [1e16, 1.5e16, -1e17, 1e18, -9.2e18, 1.8e19] {
        let label = format!("task metadata float {value:e}");
        let metadata = json!({ "case": label, "v": value });
        let set = Set::Metadata(metadata.clone());
        let holders = task_case(&r, &r.tasks, &label, &set, None).await;
        let l = format!("{label}: search_by_metadata");
        let page = ok(
            &l,
            r.tasks
                .search_by_metadata(metadata.clone(), PageRequest::first(100)),
        )
        .await;
        same(&l, &page.items.len(), &holders.len());
        for task in &page.items {
            same(&l, &task.metadata, &metadata);
        }
    }
}

// ---------------------------------------------------------------------------
// Batches: empty, over the limit, one bad item
// ---------------------------------------------------------------------------

#[tokio::test]
async fn batches_empty_over_the_limit_and_with_one_bad_item() {
    let r = repos().await;
    let user = new_user(&r).await;

    let l = "tasks.create_many of 0 tasks";
    same(
        l,
        &ok_unchanged(&r, l, r.tasks.create_many(Vec::new())).await,
        &Vec::new(),
    );
    let l = "tasks.import of 0 tasks";
    same(
        l,
        &ok_unchanged(&r, l, r.tasks.import(Vec::new())).await,
        &0,
    );
    let l = "queue.enqueue_many of 0 tasks";
    same(
        l,
        &ok_unchanged(&r, l, r.queue.enqueue_many(Vec::new(), None)).await,
        &Vec::new(),
    );
    for (label, at) in unstorable_times() {
        refused(
            &r,
            &format!("queue.enqueue_many of 0 tasks, run_after {label}"),
            Want::Validation("run_after"),
            r.queue.enqueue_many(Vec::new(), Some(at)),
        )
        .await;
    }

    let over: Vec<NewTask> = (0..=MAX_BATCH)
        .map(|i| NewTask::new(user.id, format!("t{i}"), "print(1)"))
        .collect();
    refused(
        &r,
        "tasks.create_many of MAX_BATCH + 1 tasks",
        Want::Validation("tasks"),
        r.tasks.create_many(over.clone()),
    )
    .await;
    refused(
        &r,
        "queue.enqueue_many of MAX_BATCH + 1 tasks",
        Want::Validation("task_ids"),
        r.queue
            .enqueue_many((0..=MAX_BATCH).map(|_| TaskId::new()).collect(), None),
    )
    .await;

    // One bad item anywhere refuses the batch: validation names its index.
    let good = |i: usize| NewTask::new(user.id, format!("good {i}"), "print(1)");
    for (label, bad, field) in [
        (
            "a blank name",
            NewTask::new(user.id, " ", "print(1)"),
            "name",
        ),
        (
            "a NUL in the script",
            NewTask::new(user.id, "n", "a\0"),
            "script_content",
        ),
        ("priority i32::MAX", good(9).priority(i32::MAX), "priority"),
        (
            "metadata with a NUL key",
            good(9).metadata(json!({"\u{0}": 1})),
            "metadata",
        ),
    ] {
        for index in [0, 2] {
            let mut batch: Vec<NewTask> = (0..3).map(good).collect();
            batch[index] = bad.clone();
            refused(
                &r,
                &format!("tasks.create_many with {label} at {index}"),
                Want::BatchValidation(field, index),
                r.tasks.create_many(batch.clone()),
            )
            .await;
            refused(
                &r,
                &format!("tasks.import with {label} at {index}"),
                Want::BatchValidation(field, index),
                r.tasks.import(batch),
            )
            .await;
        }
    }
    // A user that does not exist, in the middle: the foreign key refuses the
    // whole statement.
    let mut batch: Vec<NewTask> = (0..3).map(good).collect();
    batch[1].user_id = UserId::new();
    refused(
        &r,
        "tasks.create_many with a missing user in the middle",
        Want::ForeignKey("tasks_user_id_fkey"),
        r.tasks.create_many(batch.clone()),
    )
    .await;
    refused(
        &r,
        "tasks.import with a missing user in the middle",
        Want::ForeignKey("tasks_user_id_fkey"),
        r.tasks.import(batch),
    )
    .await;
    refused(
        &r,
        "tasks.create of a missing user",
        Want::ForeignKey("tasks_user_id_fkey"),
        r.tasks.create(base_task(UserId::new())),
    )
    .await;

    // import streams: it takes more than MAX_BATCH, and stores every row.
    let l = "tasks.import of MAX_BATCH + 1 tasks";
    let importer = new_user(&r).await;
    let names: Vec<String> = (0..=MAX_BATCH).map(|i| format!("t{i} '$1\\")).collect();
    let n = ok(
        l,
        r.tasks.import(
            names
                .iter()
                .map(|name| NewTask::new(importer.id, name.clone(), "print(1)"))
                .collect(),
        ),
    )
    .await;
    same(l, &n, &(MAX_BATCH as u64 + 1));
    same(
        l,
        &r.tasks.count_by_user(importer.id).await.unwrap(),
        &(MAX_BATCH as i64 + 1),
    );
    let stored: i64 =
        r.db.raw_client()
            .await
            .unwrap()
            .query_one(
                "SELECT count(DISTINCT name) FROM tasks WHERE user_id = $1 AND name = ANY($2) \
             AND status = 'pending' AND script_content = 'print(1)'",
                &[&importer.id, &names],
            )
            .await
            .unwrap()
            .get(0);
    same(l, &stored, &(MAX_BATCH as i64 + 1));

    // enqueue_many: a missing task or one that cannot be queued refuses the
    // batch; a task named twice is queued once.
    let t: Vec<Task> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(fresh_task(&r, &user).await);
        }
        v
    };
    for (label, missing) in missing_ids() {
        refused(
            &r,
            &format!("queue.enqueue_many with a missing task ({label}) in the middle"),
            Want::NotFound("task"),
            r.queue
                .enqueue_many(vec![t[0].id, TaskId::from(missing), t[1].id], None),
        )
        .await;
    }
    refused(
        &r,
        "queue.enqueue_many naming a user id as a task",
        Want::NotFound("task"),
        r.queue
            .enqueue_many(vec![t[0].id, TaskId::from(user.id.as_uuid())], None),
    )
    .await;
    let done = running_execution(&r, &user, "w").await;
    r.queue
        .complete(done.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    refused(
        &r,
        "queue.enqueue_many with a completed task",
        Want::Transition("task", "completed", "pending"),
        r.queue
            .enqueue_many(vec![t[0].id, done.task_id, t[1].id], None),
    )
    .await;
    let l = "queue.enqueue_many naming a task twice";
    let queued = ok(
        l,
        r.queue.enqueue_many(vec![t[0].id, t[0].id, t[2].id], None),
    )
    .await;
    same(l, &queued.len(), &3);
    same(l, &queued[0], &queued[1]);
    same(
        l,
        &queued.iter().map(|e| e.task_id).collect::<Vec<_>>(),
        &vec![t[0].id, t[0].id, t[2].id],
    );
    same(l, &r.executions.count_by_task(t[0].id).await.unwrap(), &1);
    for e in &queued {
        same(l, &r.executions.get(e.id).await.unwrap(), e);
    }
}

// ---------------------------------------------------------------------------
// Ids that name nothing, and status changes by hand
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_ids_and_status_changes_by_hand() {
    let r = repos().await;
    let user = new_user(&r).await;
    let task = fresh_task(&r, &user).await;
    let done = running_execution(&r, &user, "w").await;
    let done = r
        .queue
        .complete(done.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let pending = pending_execution(&r, &user).await;
    let mut ids = missing_ids();
    ids.push(("the id of a user", user.id.as_uuid()));
    for (label, id) in &ids {
        let (task_id, execution_id) = (TaskId::from(*id), ExecutionId::from(*id));
        let nf = |entity| Want::NotFound(entity);
        refused(
            &r,
            &format!("tasks.get {label}"),
            nf("task"),
            r.tasks.get(task_id),
        )
        .await;
        refused(
            &r,
            &format!("tasks.update {label}"),
            nf("task"),
            r.tasks.update(task_id, Set::Name("x".into()).update()),
        )
        .await;
        refused(
            &r,
            &format!("tasks.update {label} with an empty update"),
            nf("task"),
            r.tasks.update(task_id, TaskUpdate::default()),
        )
        .await;
        for status in [TaskStatus::Pending, TaskStatus::Cancelled] {
            refused(
                &r,
                &format!("tasks.update_status {label} to {status}"),
                nf("task"),
                r.tasks.update_status(task_id, status),
            )
            .await;
        }
        refused(
            &r,
            &format!("tasks.delete {label}"),
            nf("task"),
            r.tasks.delete(task_id),
        )
        .await;
        let owner = if *id == user.id.as_uuid() {
            // A task's id as a user's: nobody.
            UserId::from(task.id.as_uuid())
        } else {
            UserId::from(*id)
        };
        let l = format!("tasks.count_by_user {label}");
        same(&l, &ok(&l, r.tasks.count_by_user(owner)).await, &0);
        let l = format!("tasks.list_by_user {label}");
        let page = ok(&l, r.tasks.list_by_user(owner, PageRequest::default())).await;
        same(&l, &(page.items.len(), page.next_cursor), &(0, None));

        refused(
            &r,
            &format!("executions.create {label}"),
            nf("task"),
            r.executions.create(NewExecution::new(task_id)),
        )
        .await;
        refused(
            &r,
            &format!("executions.get {label}"),
            nf("execution"),
            r.executions.get(execution_id),
        )
        .await;
        refused(
            &r,
            &format!("executions.update {label}"),
            nf("execution"),
            r.executions.update(
                execution_id,
                ExecutionUpdate {
                    return_code: Some(0),
                    ..ExecutionUpdate::default()
                },
            ),
        )
        .await;
        refused(
            &r,
            &format!("executions.update {label} with an empty update"),
            nf("execution"),
            r.executions
                .update(execution_id, ExecutionUpdate::default()),
        )
        .await;
        for status in ExecutionStatus::ALL {
            refused(
                &r,
                &format!("executions.update_status {label} to {status}"),
                nf("execution"),
                r.executions.update_status(execution_id, status),
            )
            .await;
        }
        refused(
            &r,
            &format!("executions.delete {label}"),
            nf("execution"),
            r.executions.delete(execution_id),
        )
        .await;
        let l = format!("executions.latest_for_task {label}");
        same(
            &l,
            &ok(&l, r.executions.latest_for_task(task_id)).await,
            &None,
        );
        let l = format!("executions.count_by_task {label}");
        same(&l, &ok(&l, r.executions.count_by_task(task_id)).await, &0);
        let l = format!("executions.list_by_task {label}");
        let page = ok(
            &l,
            r.executions.list_by_task(task_id, PageRequest::default()),
        )
        .await;
        same(&l, &(page.items.len(), page.next_cursor), &(0, None));

        refused(
            &r,
            &format!("queue.enqueue {label}"),
            nf("task"),
            r.queue.enqueue(task_id, None),
        )
        .await;
        refused(
            &r,
            &format!("queue.heartbeat {label}"),
            nf("execution"),
            r.queue.heartbeat(execution_id, "w", LEASE),
        )
        .await;
        refused(
            &r,
            &format!("queue.complete {label}"),
            nf("execution"),
            r.queue.complete(execution_id, "w", Outcome::completed(0)),
        )
        .await;
        refused(
            &r,
            &format!("queue.cancel {label}"),
            nf("execution"),
            r.queue.cancel(execution_id),
        )
        .await;
    }

    // Statuses a task enters only through its execution: refused, even for
    // a task that does not exist (validation comes first).
    for status in [
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Timeout,
    ] {
        for (label, id) in [
            ("an existing task", task.id),
            ("a missing task", TaskId::new()),
        ] {
            refused(
                &r,
                &format!("tasks.update_status of {label} to {status}"),
                Want::Validation("status"),
                r.tasks.update_status(id, status),
            )
            .await;
        }
    }
    let l = "tasks.update_status pending -> pending is a no-op";
    same(
        l,
        &ok_unchanged(&r, l, r.tasks.update_status(task.id, TaskStatus::Pending)).await,
        &task,
    );
    let l = "tasks.update with an empty update";
    same(
        l,
        &ok_unchanged(&r, l, r.tasks.update(task.id, TaskUpdate::default())).await,
        &task,
    );
    let l = "executions.update with an empty update";
    same(
        l,
        &ok_unchanged(
            &r,
            l,
            r.executions.update(pending.id, ExecutionUpdate::default()),
        )
        .await,
        &pending,
    );

    // Executions: running only through a claim; end states are final.
    refused(
        &r,
        "executions.update_status pending -> running",
        Want::Validation("status"),
        r.executions
            .update_status(pending.id, ExecutionStatus::Running),
    )
    .await;
    for to in [
        ExecutionStatus::Pending,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
    ] {
        refused(
            &r,
            &format!("executions.update_status pending -> {to}"),
            Want::Transition("execution", "pending", to.as_str()),
            r.executions.update_status(pending.id, to),
        )
        .await;
    }
    for to in ExecutionStatus::ALL {
        refused(
            &r,
            &format!("executions.update_status completed -> {to}"),
            Want::Transition("execution", "completed", to.as_str()),
            r.executions.update_status(done.id, to),
        )
        .await;
    }
    refused(
        &r,
        "queue.cancel of a completed execution",
        Want::Transition("execution", "completed", "cancelled"),
        r.queue.cancel(done.id),
    )
    .await;
    for to in [TaskStatus::Pending, TaskStatus::Cancelled] {
        refused(
            &r,
            &format!("tasks.update_status completed -> {to}"),
            Want::Transition("task", "completed", to.as_str()),
            r.tasks.update_status(done.task_id, to),
        )
        .await;
    }
    refused(
        &r,
        "queue.enqueue of a completed task",
        Want::Transition("task", "completed", "pending"),
        r.queue.enqueue(done.task_id, None),
    )
    .await;
    refused(
        &r,
        "executions.create of a completed task",
        Want::Transition("task", "completed", "pending"),
        r.executions.create(NewExecution::new(done.task_id)),
    )
    .await;

    // Counts agree with the rows.
    same(
        "tasks.count",
        &r.tasks.count().await.unwrap(),
        &r.count_rows("tasks").await,
    );
    same(
        "executions.count",
        &r.executions.count().await.unwrap(),
        &r.count_rows("task_executions").await,
    );
    for status in TaskStatus::ALL {
        let l = format!("tasks.count_by_status {status}");
        let n: i64 =
            r.db.raw_client()
                .await
                .unwrap()
                .query_one(
                    "SELECT count(*) FROM tasks WHERE status = $1",
                    &[&status.as_str()],
                )
                .await
                .unwrap()
                .get(0);
        same(&l, &ok(&l, r.tasks.count_by_status(status)).await, &n);
    }
    for status in ExecutionStatus::ALL {
        let l = format!("executions.count_by_status {status}");
        let n: i64 =
            r.db.raw_client()
                .await
                .unwrap()
                .query_one(
                    "SELECT count(*) FROM task_executions WHERE status = $1",
                    &[&status.as_str()],
                )
                .await
                .unwrap()
                .get(0);
        same(&l, &ok(&l, r.executions.count_by_status(status)).await, &n);
    }
}

// ---------------------------------------------------------------------------
// Executions: results recorded by update
// ---------------------------------------------------------------------------

/// What the crate stores of an execution's stdout or stderr, as
/// `DbConfig::max_output_bytes` documents it: output up to `max` bytes as
/// is; longer output cut to its first `max` bytes at a character boundary,
/// followed by the line `[voidrunner-db: output truncated: N of M bytes
/// kept]`.
fn stored_output(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut keep = max;
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(
        "{}\n[voidrunner-db: output truncated: {keep} of {} bytes kept]",
        &text[..keep],
        text.len()
    )
}

/// The output cap of the test database's configuration.
fn max_output(r: &Repos) -> usize {
    r.db.db().config().max_output_bytes
}

/// Output at the cap, just over it, and over it with a character that
/// straddles the cut.
fn outputs_at_the_cap(max: usize) -> Vec<(String, String)> {
    vec![
        ("exactly max_output_bytes".into(), big(max)),
        ("max_output_bytes + 1".into(), big(max + 1)),
        (
            "max_output_bytes + 1 ending in a 2-byte character across the cut".into(),
            "x".repeat(max - 1) + "é",
        ),
        (
            "max_output_bytes + 3 ending in a 4-byte character across the cut".into(),
            "x".repeat(max - 1) + "😀",
        ),
        ("2 × max_output_bytes".into(), big(2 * max)),
    ]
}

/// One result of an execution set to a value.
#[derive(Debug, Clone)]
enum Record {
    Stdout(String),
    Stderr(String),
    ReturnCode(i32),
    Time(i32),
    Memory(i64),
    Started(Timestamp),
    Completed(Timestamp),
}

impl Record {
    fn field(&self) -> &'static str {
        match self {
            Record::Stdout(_) => "stdout",
            Record::Stderr(_) => "stderr",
            Record::ReturnCode(_) => "return_code",
            Record::Time(_) => "execution_time_ms",
            Record::Memory(_) => "memory_usage_bytes",
            Record::Started(_) => "started_at",
            Record::Completed(_) => "completed_at",
        }
    }

    fn update(&self) -> ExecutionUpdate {
        let mut u = ExecutionUpdate::default();
        self.clone().apply_to_update(&mut u);
        u
    }

    fn apply_to_update(self, u: &mut ExecutionUpdate) {
        match self {
            Record::Stdout(v) => u.stdout = Some(v),
            Record::Stderr(v) => u.stderr = Some(v),
            Record::ReturnCode(v) => u.return_code = Some(v),
            Record::Time(v) => u.execution_time_ms = Some(v),
            Record::Memory(v) => u.memory_usage_bytes = Some(v),
            Record::Started(v) => u.started_at = Some(v),
            Record::Completed(v) => u.completed_at = Some(v),
        }
    }

    /// `e` as it must read back after this record, output longer than
    /// `max_output` bytes truncated as documented.
    fn applied(&self, e: &TaskExecution, max_output: usize) -> TaskExecution {
        let mut e = e.clone();
        match self.clone() {
            Record::Stdout(v) => e.stdout = Some(stored_output(&v, max_output)),
            Record::Stderr(v) => e.stderr = Some(stored_output(&v, max_output)),
            Record::ReturnCode(v) => e.return_code = Some(v),
            Record::Time(v) => e.execution_time_ms = Some(v),
            Record::Memory(v) => e.memory_usage_bytes = Some(v),
            Record::Started(v) => e.started_at = Some(v),
            Record::Completed(v) => e.completed_at = Some(v),
        }
        e
    }
}

/// Records `record` on `e`: accepted, exactly it changed (and `updated_at`),
/// read back by `get`; refused with `want`, nothing written. Returns the
/// execution as stored afterwards.
async fn record_case(
    r: &Repos,
    label: &str,
    e: &TaskExecution,
    record: &Record,
    want: Option<Want>,
) -> TaskExecution {
    let l = format!("executions.update {} {label}", record.field());
    match want {
        None => {
            let got = ok(&l, r.executions.update(e.id, record.update())).await;
            let mut expected = record.applied(e, max_output(r));
            expected.updated_at = got.updated_at;
            same(&l, &got, &expected);
            same(&l, &r.executions.get(e.id).await.unwrap(), &got);
            got
        }
        Some(want) => {
            refused(r, &l, want, r.executions.update(e.id, record.update())).await;
            e.clone()
        }
    }
}

#[tokio::test]
async fn execution_results_over_the_corpus() {
    let r = repos().await;
    let user = new_user(&r).await;
    let mut e = pending_execution(&r, &user).await;

    type Make = fn(String) -> Record;
    for (field, make) in [
        ("stdout", Record::Stdout as Make),
        ("stderr", Record::Stderr),
    ] {
        let mut cases: Vec<(String, String, bool)> = Vec::new();
        for (label, text) in hostile_texts().into_iter().chain(blank_texts()) {
            cases.push((label.into(), text, true));
        }
        for (label, text) in nul_texts() {
            cases.push((label.into(), text, false));
        }
        cases.push(("65536 emoji".into(), chars('😀', 65536), true));
        cases.push(("1 MiB".into(), big(MIB), true));
        for (label, text) in outputs_at_the_cap(max_output(&r)) {
            cases.push((label, text, true));
        }
        // Validation sees the whole text, before any truncation.
        cases.push((
            "NUL past max_output_bytes".into(),
            big(max_output(&r)) + "\0",
            false,
        ));
        for (label, text, accepted) in cases {
            let want = (!accepted).then_some(Want::Validation(field));
            e = record_case(&r, &label, &e, &make(text), want).await;
        }
    }

    let numbers: Vec<(Record, bool)> = vec![
        (Record::ReturnCode(i32::MIN), false),
        (Record::ReturnCode(-1), false),
        (Record::ReturnCode(0), true),
        (Record::ReturnCode(255), true),
        (Record::ReturnCode(256), false),
        (Record::ReturnCode(i32::MAX), false),
        (Record::Time(i32::MIN), false),
        (Record::Time(-1), false),
        (Record::Time(0), true),
        (Record::Time(i32::MAX), true),
        (Record::Memory(i64::MIN), false),
        (Record::Memory(-1), false),
        (Record::Memory(0), true),
        (Record::Memory(i64::MAX), true),
    ];
    for (record, accepted) in numbers {
        let label = brief(&record);
        let want = (!accepted).then_some(Want::Validation(record.field()));
        e = record_case(&r, &label, &e, &record, want).await;
    }

    // Times: each case on an execution of its own, with no time stored.
    type MakeTime = fn(Timestamp) -> Record;
    for make in [Record::Started as MakeTime, Record::Completed] {
        for (label, at) in unstorable_times() {
            let fresh = pending_execution(&r, &user).await;
            let record = make(at);
            let want = Some(Want::Validation(record.field()));
            record_case(&r, label, &fresh, &record, want).await;
        }
        for (label, at) in extreme_times() {
            let fresh = pending_execution(&r, &user).await;
            record_case(&r, label, &fresh, &make(at), None).await;
        }
    }
    // Both times at once: completed before started is refused, equal and
    // the widest span round-trip.
    let both = |started, completed| ExecutionUpdate {
        started_at: Some(started),
        completed_at: Some(completed),
        ..ExecutionUpdate::default()
    };
    let fresh = pending_execution(&r, &user).await;
    refused(
        &r,
        "executions.update completed_at 1 µs before started_at",
        Want::Validation("completed_at"),
        r.executions.update(
            fresh.id,
            both(epoch(), Timestamp::from_unix_micros(-1).unwrap()),
        ),
    )
    .await;
    for (label, started, completed) in [
        ("started_at = completed_at", epoch(), epoch()),
        (
            "from PostgreSQL's minimum to time's maximum",
            pg_min(),
            time_max(),
        ),
    ] {
        let l = format!("executions.update {label}");
        let fresh = pending_execution(&r, &user).await;
        let got = ok(&l, r.executions.update(fresh.id, both(started, completed))).await;
        same(
            &l,
            &(got.started_at, got.completed_at),
            &(Some(started), Some(completed)),
        );
        same(&l, &r.executions.get(fresh.id).await.unwrap(), &got);
    }
    // Against the times already stored (issue #8 §3: Validation, not the
    // CHECK's 23514).
    let stored = pending_execution(&r, &user).await;
    let stored = r
        .executions
        .update(stored.id, both(epoch(), epoch()))
        .await
        .unwrap();
    refused(
        &r,
        "executions.update started_at after the stored completed_at",
        Want::Validation("started_at"),
        r.executions
            .update(stored.id, Record::Started(time_max()).update()),
    )
    .await;
    refused(
        &r,
        "executions.update completed_at before the stored started_at",
        Want::Validation("completed_at"),
        r.executions
            .update(stored.id, Record::Completed(pg_min()).update()),
    )
    .await;
    // A valid result with an invalid one: refused whole.
    refused(
        &r,
        "executions.update valid stdout with return_code 256",
        Want::Validation("return_code"),
        r.executions.update(
            e.id,
            ExecutionUpdate {
                stdout: Some("fine".into()),
                return_code: Some(256),
                ..ExecutionUpdate::default()
            },
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------
// The queue: run_after, claims, leases, completions, rescue, prune
// ---------------------------------------------------------------------------

#[tokio::test]
async fn enqueue_times_out_of_range_and_at_the_extremes() {
    let r = repos().await;
    let user = new_user(&r).await;
    for (label, at) in unstorable_times() {
        let task = fresh_task(&r, &user).await;
        let other = fresh_task(&r, &user).await;
        refused(
            &r,
            &format!("queue.enqueue run_after {label}"),
            Want::Validation("run_after"),
            r.queue.enqueue(task.id, Some(at)),
        )
        .await;
        refused(
            &r,
            &format!("queue.enqueue_many run_after {label}"),
            Want::Validation("run_after"),
            r.queue.enqueue_many(vec![task.id, other.id], Some(at)),
        )
        .await;
    }
    let mut claimable = Vec::new();
    let mut not_yet = Vec::new();
    for (label, at) in extreme_times() {
        let l = format!("queue.enqueue run_after {label}");
        let task = fresh_task(&r, &user).await;
        let queued = ok(&l, r.queue.enqueue(task.id, Some(at))).await;
        same(&l, &queued.run_after, &at);
        same(&l, &queued.status, &ExecutionStatus::Pending);
        same(&l, &r.executions.get(queued.id).await.unwrap(), &queued);

        let l = format!("queue.enqueue_many run_after {label}");
        let (a, b) = (fresh_task(&r, &user).await, fresh_task(&r, &user).await);
        let many = ok(&l, r.queue.enqueue_many(vec![a.id, b.id], Some(at))).await;
        same(
            &l,
            &many
                .iter()
                .map(|e| (e.task_id, e.run_after))
                .collect::<Vec<_>>(),
            &vec![(a.id, at), (b.id, at)],
        );
        for e in &many {
            same(&l, &r.executions.get(e.id).await.unwrap(), e);
        }
        let ids = [queued.id, many[0].id, many[1].id];
        if at < Timestamp::now() {
            claimable.extend(ids);
        } else {
            not_yet.extend(ids);
        }
    }
    // Claimable exactly when their time has come.
    let l = "queue.claim after enqueues at the extremes";
    let mut claimed: Vec<ExecutionId> = ok(l, r.queue.claim("w", MAX_CLAIM, LEASE))
        .await
        .into_iter()
        .map(|c| c.execution.id)
        .collect();
    claimed.sort();
    claimable.sort();
    same(l, &claimed, &claimable);
    for id in not_yet {
        same(
            l,
            &r.executions.get(id).await.unwrap().status,
            &ExecutionStatus::Pending,
        );
    }
}

/// Worker ids refused by claim, heartbeat and complete.
fn bad_worker_ids() -> Vec<(String, String)> {
    let mut ids: Vec<(String, String)> = vec![
        ("256 characters".into(), "w".repeat(256)),
        ("256 emoji".into(), chars('😀', 256)),
        ("1 MiB".into(), big(MIB)),
    ];
    for (label, text) in nul_texts().into_iter().chain(blank_texts()) {
        ids.push((label.into(), text));
    }
    ids
}

/// Leases refused by claim and heartbeat: zero, under 1 ms, over
/// MAX_LEASE, Duration::MAX.
fn bad_leases() -> Vec<(&'static str, Duration)> {
    vec![
        ("zero", Duration::ZERO),
        ("1 ns", Duration::from_nanos(1)),
        ("999 µs", Duration::from_micros(999)),
        ("MAX_LEASE + 1 µs", MAX_LEASE + Duration::from_micros(1)),
        ("Duration::MAX", Duration::MAX),
    ]
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap()
}

#[tokio::test]
async fn claims_and_heartbeats_with_hostile_workers_sizes_and_leases() {
    let r = repos().await;
    let user = new_user(&r).await;
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(pending_execution(&r, &user).await);
    }

    for (label, worker) in bad_worker_ids() {
        refused(
            &r,
            &format!("queue.claim worker_id {label}"),
            Want::Validation("worker_id"),
            r.queue.claim(&worker, 1, LEASE),
        )
        .await;
    }
    for limit in [0, MAX_CLAIM + 1, u32::MAX] {
        refused(
            &r,
            &format!("queue.claim limit {limit}"),
            Want::Validation("limit"),
            r.queue.claim("w", limit, LEASE),
        )
        .await;
    }
    for (label, lease) in bad_leases() {
        refused(
            &r,
            &format!("queue.claim lease {label}"),
            Want::Validation("lease"),
            r.queue.claim("w", 1, lease),
        )
        .await;
    }

    // The largest claim, the longest lease, a worker id of 255 emoji.
    let worker = chars('😀', 255);
    let l = "queue.claim MAX_CLAIM for MAX_LEASE by a worker of 255 emoji";
    let claimed = ok(l, r.queue.claim(&worker, MAX_CLAIM, MAX_LEASE)).await;
    let mut ids: Vec<ExecutionId> = claimed.iter().map(|c| c.execution.id).collect();
    let mut expected: Vec<ExecutionId> = queued.iter().map(|e| e.id).collect();
    ids.sort();
    expected.sort();
    same(l, &ids, &expected);
    for c in &claimed {
        let e = &c.execution;
        same(l, &e.worker_id, &Some(worker.clone()));
        same(l, &e.status, &ExecutionStatus::Running);
        same(l, &e.attempt, &1);
        let started = e.started_at.expect("started_at");
        same(l, &e.lease_expires_at, &Some(plus(started, MAX_LEASE)));
        same(
            l,
            &(c.script_content.as_str(), c.timeout_seconds),
            &("print(1)", 10),
        );
        same(l, &r.executions.get(e.id).await.unwrap(), e);
    }

    // Worker ids stored exactly, a lease of exactly 1 ms.
    for (label, worker) in hostile_texts() {
        let l = format!("queue.claim by worker_id {label} for 1 ms");
        let e = pending_execution(&r, &user).await;
        let claimed = ok(&l, r.queue.claim(&worker, 1, Duration::from_millis(1))).await;
        same(&l, &claimed.len(), &1);
        let got = &claimed[0].execution;
        same(&l, &got.id, &e.id);
        same(&l, &got.worker_id, &Some(worker.clone()));
        same(
            &l,
            &got.lease_expires_at,
            &Some(plus(got.started_at.unwrap(), Duration::from_millis(1))),
        );
        same(&l, &r.executions.get(e.id).await.unwrap(), got);
    }
    let l = "queue.claim with nothing to claim";
    same(
        l,
        &ok_unchanged(&r, l, r.queue.claim("w", MAX_CLAIM, MAX_LEASE)).await,
        &Vec::new(),
    );

    // Heartbeats of the execution the 255-emoji worker owns.
    let owned = claimed[0].execution.clone();
    for (label, bad) in bad_worker_ids() {
        refused(
            &r,
            &format!("queue.heartbeat worker_id {label}"),
            Want::Validation("worker_id"),
            r.queue.heartbeat(owned.id, &bad, LEASE),
        )
        .await;
    }
    for (label, lease) in bad_leases() {
        refused(
            &r,
            &format!("queue.heartbeat lease {label}"),
            Want::Validation("lease"),
            r.queue.heartbeat(owned.id, &worker, lease),
        )
        .await;
    }
    for (label, other) in hostile_texts() {
        refused(
            &r,
            &format!("queue.heartbeat by another worker, {label}"),
            Want::LeaseLost(LeaseLostReason::NotOwner),
            r.queue.heartbeat(owned.id, &other, LEASE),
        )
        .await;
    }
    refused(
        &r,
        "queue.heartbeat by the owner's id with one emoji less",
        Want::LeaseLost(LeaseLostReason::NotOwner),
        r.queue.heartbeat(owned.id, &chars('😀', 254), LEASE),
    )
    .await;
    for (label, lease) in [("1 ms", Duration::from_millis(1)), ("MAX_LEASE", MAX_LEASE)] {
        let l = format!("queue.heartbeat lease {label}");
        let until = ok(&l, r.queue.heartbeat(owned.id, &worker, lease)).await;
        let got = r.executions.get(owned.id).await.unwrap();
        same(&l, &got.lease_expires_at, &Some(until));
        same(
            &l,
            &(until.unix_micros() - got.heartbeat_at.unwrap().unix_micros()),
            &micros(lease),
        );
        same(
            &l,
            &(got.status, got.worker_id.clone()),
            &(ExecutionStatus::Running, Some(worker.clone())),
        );
    }
}

#[tokio::test]
async fn completions_over_the_corpus() {
    let r = repos().await;
    let user = new_user(&r).await;
    let worker = "worker '; DROP TABLE task_executions; --";
    let mut running = running_execution(&r, &user, worker).await;

    // Refused: nothing changes, the execution stays running.
    let outcome = |status| Outcome::new(status).return_code(0);
    let mut cases: Vec<(String, Outcome, Want)> = Vec::new();
    for status in [
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::Cancelled,
    ] {
        cases.push((
            format!("status {status}"),
            outcome(status),
            Want::Validation("status"),
        ));
    }
    for code in [i32::MIN, -1, 256, i32::MAX] {
        cases.push((
            format!("return_code {code}"),
            Outcome::failed(code),
            Want::Validation("return_code"),
        ));
    }
    for ms in [i32::MIN, -1] {
        cases.push((
            format!("execution_time_ms {ms}"),
            Outcome::completed(0).usage(ms, 0),
            Want::Validation("execution_time_ms"),
        ));
    }
    for bytes in [i64::MIN, -1] {
        cases.push((
            format!("memory_usage_bytes {bytes}"),
            Outcome::completed(0).usage(0, bytes),
            Want::Validation("memory_usage_bytes"),
        ));
    }
    cases.push((
        "stderr with a NUL past max_output_bytes".into(),
        Outcome::failed(1).output("", big(max_output(&r)) + "\0"),
        Want::Validation("stderr"),
    ));
    for (label, text) in nul_texts() {
        cases.push((
            format!("stdout {label}"),
            Outcome::completed(0).output(text.clone(), ""),
            Want::Validation("stdout"),
        ));
        cases.push((
            format!("stderr {label}"),
            Outcome::completed(0).output("", text),
            Want::Validation("stderr"),
        ));
    }
    for (label, outcome, want) in cases {
        refused(
            &r,
            &format!("queue.complete {label}"),
            want,
            r.queue.complete(running.id, worker, outcome),
        )
        .await;
    }
    for (label, bad) in bad_worker_ids() {
        refused(
            &r,
            &format!("queue.complete worker_id {label}"),
            Want::Validation("worker_id"),
            r.queue.complete(running.id, &bad, Outcome::completed(0)),
        )
        .await;
    }
    refused(
        &r,
        "queue.complete by another worker",
        Want::LeaseLost(LeaseLostReason::NotOwner),
        r.queue.complete(
            running.id,
            "'; DROP TABLE task_executions; --",
            Outcome::completed(0),
        ),
    )
    .await;

    // Accepted: every result stored exactly, the task follows.
    let mut outcomes: Vec<(String, Outcome)> = vec![
        ("completed 0, no output".into(), Outcome::completed(0)),
        (
            "completed 255 at the usage bounds".into(),
            Outcome::completed(255).usage(i32::MAX, i64::MAX),
        ),
        (
            "failed 255, zero usage".into(),
            Outcome::failed(255).usage(0, 0),
        ),
        ("failed 0".into(), Outcome::failed(0)),
        ("timed out, nothing else".into(), Outcome::timed_out()),
        ("empty output".into(), Outcome::completed(0).output("", "")),
        (
            "blank output".into(),
            Outcome::failed(1).output(" \t\n", "\u{3000}"),
        ),
        (
            "1 MiB output".into(),
            Outcome::completed(0).output(big(MIB), big(MIB)),
        ),
    ];
    for (label, text) in outputs_at_the_cap(max_output(&r)) {
        outcomes.push((
            format!("stdout {label}"),
            Outcome::completed(0).output(text.clone(), "ok"),
        ));
        outcomes.push((
            format!("stderr {label}"),
            Outcome::failed(1).output("", text),
        ));
    }
    for (label, text) in hostile_texts() {
        outcomes.push((
            format!("output {label}"),
            Outcome::failed(2).output(text.clone(), text),
        ));
    }
    for (label, outcome) in outcomes {
        let l = format!("queue.complete {label}");
        let done = ok(&l, r.queue.complete(running.id, worker, outcome.clone())).await;
        let mut expected = running.clone();
        expected.status = outcome.status;
        expected.return_code = outcome.return_code;
        expected.stdout = outcome
            .stdout
            .as_deref()
            .map(|t| stored_output(t, max_output(&r)));
        expected.stderr = outcome
            .stderr
            .as_deref()
            .map(|t| stored_output(t, max_output(&r)));
        expected.execution_time_ms = outcome.execution_time_ms;
        expected.memory_usage_bytes = outcome.memory_usage_bytes;
        expected.lease_expires_at = None;
        expected.completed_at = done.completed_at;
        expected.updated_at = done.updated_at;
        same(&l, &done, &expected);
        assert!(done.completed_at >= done.started_at, "{l}");
        same(&l, &r.executions.get(running.id).await.unwrap(), &done);
        let task_status: TaskStatus = outcome.status.as_str().parse().unwrap();
        same(
            &l,
            &r.tasks.get(done.task_id).await.unwrap().status,
            &task_status,
        );
        same(
            &l,
            &r.executions.latest_for_task(done.task_id).await.unwrap(),
            &Some(done.clone()),
        );

        // Once ended, every worker call is refused and changes nothing.
        let reason = LeaseLostReason::Finished;
        refused(
            &r,
            &format!("{l}, then again"),
            Want::LeaseLost(reason),
            r.queue.complete(running.id, worker, outcome),
        )
        .await;
        refused(
            &r,
            &format!("{l}, then a heartbeat"),
            Want::LeaseLost(reason),
            r.queue.heartbeat(running.id, worker, LEASE),
        )
        .await;
        refused(
            &r,
            &format!("{l}, then cancel"),
            Want::Transition("execution", done.status.as_str(), "cancelled"),
            r.queue.cancel(running.id),
        )
        .await;
        running = running_execution(&r, &user, worker).await;
    }

    // Cancelled: the worker learns it.
    let l = "queue.cancel of a running execution";
    let cancelled = ok(l, r.queue.cancel(running.id)).await;
    same(l, &cancelled.status, &ExecutionStatus::Cancelled);
    same(
        l,
        &r.tasks.get(cancelled.task_id).await.unwrap().status,
        &TaskStatus::Cancelled,
    );
    let reason = LeaseLostReason::Cancelled;
    refused(
        &r,
        "queue.heartbeat after cancel",
        Want::LeaseLost(reason),
        r.queue.heartbeat(running.id, worker, LEASE),
    )
    .await;
    refused(
        &r,
        "queue.complete after cancel",
        Want::LeaseLost(reason),
        r.queue.complete(running.id, worker, Outcome::completed(0)),
    )
    .await;
}

#[tokio::test]
async fn rescue_and_prune_with_zero_and_huge_sizes_and_durations() {
    let r = repos().await;
    let user = new_user(&r).await;
    // An execution whose 1 ms lease has expired.
    let first = pending_execution(&r, &user).await;
    let claimed = r
        .queue
        .claim("w", 1, Duration::from_millis(1))
        .await
        .unwrap();
    same("setup", &claimed[0].execution.id, &first.id);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = r.executions.get(first.id).await.unwrap();

    let policy = RescuePolicy::default();
    let policies: Vec<(&str, RescuePolicy, Want)> = vec![
        (
            "batch_size 0",
            RescuePolicy {
                batch_size: 0,
                ..policy
            },
            Want::Validation("batch_size"),
        ),
        (
            "batch_size MAX_CLAIM + 1",
            RescuePolicy {
                batch_size: MAX_CLAIM + 1,
                ..policy
            },
            Want::Validation("batch_size"),
        ),
        (
            "batch_size u32::MAX",
            RescuePolicy {
                batch_size: u32::MAX,
                ..policy
            },
            Want::Validation("batch_size"),
        ),
        (
            "max_attempts -1",
            RescuePolicy {
                max_attempts: -1,
                ..policy
            },
            Want::Validation("max_attempts"),
        ),
        (
            "max_attempts i32::MIN",
            RescuePolicy {
                max_attempts: i32::MIN,
                ..policy
            },
            Want::Validation("max_attempts"),
        ),
        (
            "retry_delay MAX_RETRY_DELAY + 1 µs",
            RescuePolicy {
                retry_delay: MAX_RETRY_DELAY + Duration::from_micros(1),
                ..policy
            },
            Want::Validation("retry_delay"),
        ),
        (
            "retry_delay Duration::MAX",
            RescuePolicy {
                retry_delay: Duration::MAX,
                ..policy
            },
            Want::Validation("retry_delay"),
        ),
    ];
    for (label, policy, want) in policies {
        refused(
            &r,
            &format!("queue.rescue_expired {label}"),
            want,
            r.queue.rescue_expired(policy),
        )
        .await;
    }

    // The widest policy: MAX_CLAIM, i32::MAX attempts, the longest delay.
    let l = "queue.rescue_expired MAX_CLAIM, max_attempts i32::MAX, retry_delay MAX_RETRY_DELAY";
    let report = ok(
        l,
        r.queue.rescue_expired(RescuePolicy {
            max_attempts: i32::MAX,
            retry_delay: MAX_RETRY_DELAY,
            batch_size: MAX_CLAIM,
        }),
    )
    .await;
    same(l, &report.timed_out, &vec![first.id]);
    same(l, &report.retried.len(), &1);
    let timed_out = r.executions.get(first.id).await.unwrap();
    same(l, &timed_out.status, &ExecutionStatus::Timeout);
    let retry = r.executions.get(report.retried[0]).await.unwrap();
    same(
        l,
        &(retry.status, retry.task_id, retry.attempt, retry.run_after),
        &(
            ExecutionStatus::Pending,
            first.task_id,
            1,
            plus(timed_out.completed_at.unwrap(), MAX_RETRY_DELAY),
        ),
    );
    same(
        l,
        &r.tasks.get(first.task_id).await.unwrap().status,
        &TaskStatus::Pending,
    );

    // The narrowest: one at a time, no retry.
    let second = pending_execution(&r, &user).await;
    let claimed = r
        .queue
        .claim("w", 1, Duration::from_millis(1))
        .await
        .unwrap();
    same("setup", &claimed[0].execution.id, &second.id);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let l = "queue.rescue_expired batch_size 1, max_attempts 0, retry_delay 0";
    let report = ok(
        l,
        r.queue.rescue_expired(RescuePolicy {
            max_attempts: 0,
            retry_delay: Duration::ZERO,
            batch_size: 1,
        }),
    )
    .await;
    same(
        l,
        &(report.timed_out, report.retried),
        &(vec![second.id], Vec::new()),
    );
    same(
        l,
        &r.tasks.get(second.task_id).await.unwrap().status,
        &TaskStatus::Timeout,
    );
    let l = "queue.rescue_expired with nothing expired";
    same(
        l,
        &ok_unchanged(&r, l, r.queue.rescue_expired(RescuePolicy::default())).await,
        &Default::default(),
    );

    // Prune.
    for (label, older_than, batch, want) in [
        (
            "batch_size 0",
            Duration::ZERO,
            0,
            Want::Validation("batch_size"),
        ),
        (
            "older_than MAX_PRUNE_AGE + 1 s",
            MAX_PRUNE_AGE + Duration::from_secs(1),
            1,
            Want::Validation("older_than"),
        ),
        (
            "older_than Duration::MAX",
            Duration::MAX,
            u32::MAX,
            Want::Validation("older_than"),
        ),
    ] {
        refused(
            &r,
            &format!("queue.prune {label}"),
            want,
            r.queue.prune(older_than, batch),
        )
        .await;
    }
    let l = "queue.prune older_than MAX_PRUNE_AGE, batch_size u32::MAX";
    same(
        l,
        &ok_unchanged(&r, l, r.queue.prune(MAX_PRUNE_AGE, u32::MAX)).await,
        &0,
    );
    // More ended executions, then everything ended goes, one per batch.
    let cancelled = pending_execution(&r, &user).await;
    r.queue.cancel(cancelled.id).await.unwrap();
    let active_before: i64 =
        r.db.raw_client()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM task_executions WHERE status IN ('pending', 'running')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    let ended = r.count_rows("task_executions").await - active_before;
    same("setup", &ended, &3);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let l = "queue.prune older_than 0, batch_size 1";
    same(
        l,
        &ok(l, r.queue.prune(Duration::ZERO, 1)).await,
        &(ended as u64),
    );
    same(l, &r.count_rows("task_executions").await, &active_before);
    let l = "queue.prune older_than 0, batch_size u32::MAX, nothing left";
    same(
        l,
        &ok_unchanged(&r, l, r.queue.prune(Duration::ZERO, u32::MAX)).await,
        &0,
    );
}

// ---------------------------------------------------------------------------
// Pages: tampered and foreign cursors, zero and huge limits
// ---------------------------------------------------------------------------

/// Every list method, with its filter.
#[derive(Debug, Clone, PartialEq)]
enum List {
    Users,
    Tasks,
    TasksOfUser(UserId),
    TasksInStatus(TaskStatus),
    TasksMatching(Value),
    Executions,
    ExecutionsOfTask(TaskId),
    ExecutionsInStatus(ExecutionStatus),
}

/// One page of `list`: the ids and the next cursor.
async fn page_of(r: &Repos, list: &List, request: PageRequest) -> R<(Vec<Uuid>, Option<String>)> {
    fn ids<T>(page: Page<T>, id: fn(&T) -> Uuid) -> (Vec<Uuid>, Option<String>) {
        (page.items.iter().map(id).collect(), page.next_cursor)
    }
    let task_id = |t: &Task| t.id.as_uuid();
    let execution_id = |e: &TaskExecution| e.id.as_uuid();
    Ok(match list {
        List::Users => ids(r.users.list(request).await?, |u| u.id.as_uuid()),
        List::Tasks => ids(r.tasks.list(request).await?, task_id),
        List::TasksOfUser(user) => ids(r.tasks.list_by_user(*user, request).await?, task_id),
        List::TasksInStatus(status) => {
            ids(r.tasks.list_by_status(*status, request).await?, task_id)
        }
        List::TasksMatching(filter) => ids(
            r.tasks.search_by_metadata(filter.clone(), request).await?,
            task_id,
        ),
        List::Executions => ids(r.executions.list(request).await?, execution_id),
        List::ExecutionsOfTask(task) => ids(
            r.executions.list_by_task(*task, request).await?,
            execution_id,
        ),
        List::ExecutionsInStatus(status) => ids(
            r.executions.list_by_status(*status, request).await?,
            execution_id,
        ),
    })
}

/// Every row of `list`, walked in pages of `limit`.
async fn walk(r: &Repos, list: &List, limit: u32) -> Vec<Uuid> {
    let mut request = PageRequest::first(limit);
    let mut all = Vec::new();
    loop {
        let (ids, next) = page_of(r, list, request.clone()).await.unwrap();
        all.extend(ids);
        match next {
            Some(cursor) => request = PageRequest::after(cursor, limit),
            None => return all,
        }
    }
}

/// The rows of `list` in its order, by raw SQL.
async fn expected_order(r: &Repos, list: &List) -> Vec<Uuid> {
    let tasks = "ORDER BY priority DESC, created_at DESC, id DESC";
    let others = "ORDER BY created_at DESC, id DESC";
    let client = r.db.raw_client().await.unwrap();
    let rows = match list {
        List::Users => {
            client
                .query(&format!("SELECT id FROM users {others}"), &[])
                .await
        }
        List::Tasks => {
            client
                .query(&format!("SELECT id FROM tasks {tasks}"), &[])
                .await
        }
        List::TasksOfUser(u) => {
            client
                .query(
                    &format!("SELECT id FROM tasks WHERE user_id = $1 {tasks}"),
                    &[u],
                )
                .await
        }
        List::TasksInStatus(s) => {
            client
                .query(
                    &format!("SELECT id FROM tasks WHERE status = $1 {tasks}"),
                    &[&s.as_str()],
                )
                .await
        }
        List::TasksMatching(f) => {
            client
                .query(
                    &format!("SELECT id FROM tasks WHERE metadata @> $1 {tasks}"),
                    &[f],
                )
                .await
        }
        List::Executions => {
            client
                .query(&format!("SELECT id FROM task_executions {others}"), &[])
                .await
        }
        List::ExecutionsOfTask(t) => {
            client
                .query(
                    &format!("SELECT id FROM task_executions WHERE task_id = $1 {others}"),
                    &[t],
                )
                .await
        }
        List::ExecutionsInStatus(s) => {
            client
                .query(
                    &format!("SELECT id FROM task_executions WHERE status = $1 {others}"),
                    &[&s.as_str()],
                )
                .await
        }
    };
    rows.unwrap().iter().map(|row| row.get(0)).collect()
}

// A cursor is hex of 38 bytes: version, kind, list (4), priority (4),
// created_at in µs (8), id (16), then an FNV-1a checksum (4) of those.
const CURSOR_BYTES: usize = 38;
const CURSOR_BODY: usize = 34;

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `cursor` with its body edited and its checksum made to match again: a
/// forgery the checksum cannot catch.
fn forged(cursor: &str, edit: impl FnOnce(&mut [u8])) -> String {
    let mut bytes = unhex(cursor);
    assert_eq!(
        bytes.len(),
        CURSOR_BYTES,
        "the cursor format changed; update this forger"
    );
    let (body, sum) = bytes.split_at_mut(CURSOR_BODY);
    assert_eq!(
        fnv1a(body).to_be_bytes(),
        *sum,
        "the cursor format changed; update this forger"
    );
    edit(body);
    let fixed = fnv1a(body).to_be_bytes();
    sum.copy_from_slice(&fixed);
    hex(&bytes)
}

fn set_priority(body: &mut [u8], priority: i32) {
    body[6..10].copy_from_slice(&priority.to_be_bytes());
}

fn set_micros(body: &mut [u8], micros: i64) {
    body[10..18].copy_from_slice(&micros.to_be_bytes());
}

fn set_id(body: &mut [u8], id: Uuid) {
    body[18..34].copy_from_slice(id.as_bytes());
}

/// `cursor` with the hex digit at `at` changed.
fn flipped(cursor: &str, at: usize) -> String {
    let mut bytes = cursor.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn cursors_tampered_foreign_and_forged() {
    let r = repos().await;
    // Two of everything, so every list below has a second page.
    let a = new_user(&r).await;
    let b = new_user(&r).await;
    let mut a_tasks = Vec::new();
    for (i, user) in [&a, &a, &b, &b].into_iter().enumerate() {
        let task = r
            .tasks
            .create(base_task(user.id).metadata(json!({ "team": "x", "i": i })))
            .await
            .unwrap();
        if user.id == a.id {
            a_tasks.push(task);
        } else {
            r.tasks
                .update_status(task.id, TaskStatus::Cancelled)
                .await
                .unwrap();
        }
    }
    // Each of a's tasks: a cancelled execution, then a pending one.
    for task in &a_tasks {
        let first = r.queue.enqueue(task.id, None).await.unwrap();
        r.queue.cancel(first.id).await.unwrap();
        r.queue.enqueue(task.id, None).await.unwrap();
    }
    let lists = vec![
        List::Users,
        List::Tasks,
        List::TasksOfUser(a.id),
        List::TasksOfUser(b.id),
        List::TasksInStatus(TaskStatus::Pending),
        List::TasksInStatus(TaskStatus::Cancelled),
        List::TasksMatching(json!({ "team": "x" })),
        List::TasksMatching(json!({})),
        List::Executions,
        List::ExecutionsOfTask(a_tasks[0].id),
        List::ExecutionsOfTask(a_tasks[1].id),
        List::ExecutionsInStatus(ExecutionStatus::Pending),
        List::ExecutionsInStatus(ExecutionStatus::Cancelled),
    ];
    // The first page of 1 of every list, and its cursor.
    let mut cursors = Vec::new();
    for list in &lists {
        let all = expected_order(&r, list).await;
        assert!(all.len() >= 2, "{list:?}: {all:?}");
        same(
            &format!("{list:?}: walk in pages of 1"),
            &walk(&r, list, 1).await,
            &all,
        );
        let (first, cursor) = page_of(&r, list, PageRequest::first(1)).await.unwrap();
        same(&format!("{list:?}: first page"), &first, &all[..1].to_vec());
        let cursor = cursor.expect("a second page");
        same(
            &format!("{list:?}: the forger reproduces the cursor"),
            &forged(&cursor, |_| {}),
            &cursor,
        );
        cursors.push((list.clone(), cursor, all));
    }

    let invalid = Want::Validation("cursor");
    for (list, cursor, all) in &cursors {
        let after = |c: String| PageRequest::after(c, 100);
        let mut tampered: Vec<(String, String)> = vec![
            ("empty".into(), String::new()),
            (
                "truncated by one byte".into(),
                cursor[..cursor.len() - 2].to_owned(),
            ),
            (
                "truncated by one digit".into(),
                cursor[..cursor.len() - 1].to_owned(),
            ),
            ("one byte appended".into(), format!("{cursor}00")),
            ("a newline appended".into(), format!("{cursor}\n")),
            ("a space in front".into(), format!(" {}", &cursor[1..])),
            ("not hex, right length".into(), "zz".repeat(CURSOR_BYTES)),
            (
                "non-ASCII, right byte length".into(),
                "é".repeat(CURSOR_BYTES),
            ),
            ("NUL, right length".into(), "\0".repeat(2 * CURSOR_BYTES)),
            ("sql injection".into(), "'; DROP TABLE users; --".into()),
            ("10 KB of garbage".into(), "A'\\$1".repeat(2048)),
            ("10 KB of hex".into(), "0123456789abcdef".repeat(640)),
            ("10 KB: the cursor repeated".into(), cursor.repeat(135)),
            ("1 MiB".into(), big(MIB)),
        ];
        // One hex digit changed in each part: version, kind, list,
        // priority, created_at, id, checksum.
        for (part, at) in [
            ("version", 1),
            ("kind", 3),
            ("list", 6),
            ("priority", 15),
            ("created_at", 30),
            ("id", 50),
            ("checksum", 75),
        ] {
            tampered.push((
                format!("a digit of the {part} flipped"),
                flipped(cursor, at),
            ));
        }
        // Forgeries with a valid checksum.
        tampered.extend([
            (
                "forged: another version".into(),
                forged(cursor, |b| b[0] = b[0].wrapping_add(1)),
            ),
            (
                "forged: another kind".into(),
                forged(cursor, |b| b[1] = b[1] % 3 + 1),
            ),
            (
                "forged: another list".into(),
                forged(cursor, |b| b[2] ^= 0xff),
            ),
            (
                "forged: created_at in year -7537".into(),
                forged(cursor, |b| {
                    set_micros(b, at(-7537, Month::January, 1).unix_micros())
                }),
            ),
            (
                "forged: created_at 1 µs before PostgreSQL's minimum".into(),
                forged(cursor, |b| set_micros(b, POSTGRES_MIN_UNIX_MICROS - 1)),
            ),
            (
                "forged: created_at 1 µs after time's maximum".into(),
                forged(cursor, |b| set_micros(b, time_max().unix_micros() + 1)),
            ),
            (
                "forged: created_at i64::MIN".into(),
                forged(cursor, |b| set_micros(b, i64::MIN)),
            ),
            (
                "forged: created_at i64::MAX".into(),
                forged(cursor, |b| set_micros(b, i64::MAX)),
            ),
        ]);
        for (label, bad) in tampered {
            refused(
                &r,
                &format!("{list:?} with a cursor {label}"),
                invalid,
                page_of(&r, list, after(bad)),
            )
            .await;
        }
        // The cursor of every other list, or of the same list with another
        // filter.
        for (other, foreign, _) in &cursors {
            if other == list {
                continue;
            }
            refused(
                &r,
                &format!("{list:?} with the cursor of {other:?}"),
                invalid,
                page_of(&r, list, after(foreign.clone())),
            )
            .await;
        }
        // Its own cursor, and forgeries the server can store: exact pages.
        let l = format!("{list:?} after its own cursor");
        same(
            &l,
            &ok(&l, page_of(&r, list, after(cursor.clone()))).await,
            &(all[1..].to_vec(), None),
        );
        let l = format!("{list:?} after a forged cursor beyond every row");
        let past_all = forged(cursor, |b| {
            set_priority(b, i32::MAX);
            set_micros(b, time_max().unix_micros());
            set_id(b, Uuid::max());
        });
        same(
            &l,
            &ok(&l, page_of(&r, list, after(past_all))).await,
            &(all.clone(), None),
        );
        let l = format!("{list:?} after a forged cursor before every row");
        let before_all = forged(cursor, |b| {
            set_priority(b, i32::MIN);
            set_micros(b, POSTGRES_MIN_UNIX_MICROS);
            set_id(b, Uuid::nil());
        });
        same(
            &l,
            &ok(&l, page_of(&r, list, after(before_all))).await,
            &(Vec::new(), None),
        );
    }
}

#[tokio::test]
async fn page_limits_zero_and_huge() {
    let r = repos().await;
    let extra = MAX_PAGE_LIMIT as usize + 5;
    for _ in 0..extra {
        new_user(&r).await;
    }
    let a = new_user(&r).await;
    let tasks = r
        .tasks
        .create_many(
            (0..extra)
                .map(|i| {
                    base_task(a.id)
                        .priority((i % 11) as i32)
                        .metadata(json!({ "i": i % 2 }))
                })
                .collect(),
        )
        .await
        .unwrap();
    r.queue
        .enqueue_many(tasks.iter().map(|t| t.id).collect(), None)
        .await
        .unwrap();
    let lists = vec![
        List::Users,
        List::Tasks,
        List::TasksOfUser(a.id),
        List::TasksInStatus(TaskStatus::Pending),
        List::TasksMatching(json!({})),
        List::TasksMatching(json!({ "i": 1 })),
        List::Executions,
        List::ExecutionsOfTask(tasks[0].id),
        List::ExecutionsInStatus(ExecutionStatus::Pending),
    ];
    for list in &lists {
        let all = expected_order(&r, list).await;
        refused(
            &r,
            &format!("{list:?} limit 0"),
            Want::Validation("limit"),
            page_of(&r, list, PageRequest::first(0)),
        )
        .await;
        let (first, cursor) = page_of(&r, list, PageRequest::first(1)).await.unwrap();
        if let Some(cursor) = cursor {
            refused(
                &r,
                &format!("{list:?} limit 0 after a valid cursor"),
                Want::Validation("limit"),
                page_of(&r, list, PageRequest::after(cursor, 0)),
            )
            .await;
        }
        same(&format!("{list:?} limit 1"), &first, &all[..1].to_vec());
        let capped = all.len().min(MAX_PAGE_LIMIT as usize);
        for (label, request) in [
            ("u32::MAX", PageRequest::first(u32::MAX)),
            ("MAX_PAGE_LIMIT + 1", PageRequest::first(MAX_PAGE_LIMIT + 1)),
            ("MAX_PAGE_LIMIT", PageRequest::first(MAX_PAGE_LIMIT)),
        ] {
            let l = format!("{list:?} limit {label}");
            let (ids, next) = ok(&l, page_of(&r, list, request)).await;
            same(&l, &ids, &all[..capped].to_vec());
            same(&l, &next.is_some(), &(all.len() > capped));
        }
        let l = format!("{list:?} default limit");
        let (ids, _) = ok(&l, page_of(&r, list, PageRequest::default())).await;
        same(
            &l,
            &ids,
            &all[..all.len().min(DEFAULT_PAGE_LIMIT as usize)].to_vec(),
        );
        same(
            &format!("{list:?} walked with limit u32::MAX"),
            &walk(&r, list, u32::MAX).await,
            &all,
        );
    }
}

// ---------------------------------------------------------------------------
// Rows another client wrote, passing every CHECK
// ---------------------------------------------------------------------------

/// JSON nested `depth` levels deep, as text.
fn deep_json_text(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth - 1), "}".repeat(depth - 1))
}

#[tokio::test]
async fn rows_written_by_raw_sql_read_back_exactly() {
    let r = repos().await;
    let client = r.db.raw_client().await.unwrap();

    // Users.
    let user_rows: Vec<(&str, String, String, Timestamp, Timestamp)> = vec![
        (
            "255-character email, injection hash, the extreme times",
            format!("{}@example.com", "a".repeat(243)),
            "'; DROP TABLE users; --".into(),
            pg_min(),
            time_max(),
        ),
        (
            "every allowed punctuation, 255-emoji hash",
            "o.k+%_-@sub-domain.example.co".into(),
            chars('😀', 255),
            epoch(),
            epoch(),
        ),
        (
            "hash of odd Unicode with surrounding spaces",
            "x@y.zz".into(),
            " \u{202E}e\u{301}\u{FEFF}\u{10FFFF} ".into(),
            time_max(),
            pg_min(),
        ),
    ];
    let mut users = Vec::new();
    for (label, email, hash, created_at, updated_at) in &user_rows {
        let id = Uuid::now_v7();
        // Any name the users_display_name_valid constraint lets through.
        let display_name = format!("{label} \u{202E}名\u{FEFF}\u{10FFFF}");
        client
            .execute(
                "INSERT INTO users (id, email, password_hash, created_at, updated_at, display_name) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id, email, hash, created_at, updated_at, &display_name],
            )
            .await
            .unwrap_or_else(|e| panic!("insert user {label}: {e}"));
        let user = fixtures::user()
            .id(UserId::from(id))
            .email(email.clone())
            .display_name(display_name)
            .password_hash(PasswordHash::new(hash.clone()))
            .created_at(*created_at)
            .updated_at(*updated_at)
            .build();
        let l = format!("raw user {label}: users.get");
        same(&l, &ok(&l, r.users.get(user.id)).await, &user);
        let l = format!("raw user {label}: users.get_by_email in upper case with spaces");
        same(
            &l,
            &ok(
                &l,
                r.users
                    .get_by_email(&format!("  {}\t", email.to_uppercase())),
            )
            .await,
            &user,
        );
        users.push(user);
    }
    let owner = users[1].clone();
    let mut all_users = users.clone();
    all_users.sort_by_key(|x| std::cmp::Reverse((x.created_at, x.id)));
    let l = "raw users: users.list";
    same(
        l,
        &ok(l, r.users.list(PageRequest::first(100))).await.items,
        &all_users,
    );
    same(
        "raw users: users.count",
        &r.users.count().await.unwrap(),
        &3,
    );

    // Tasks: one per hostile text in every text column, then the extremes.
    struct RawTask {
        label: String,
        name: String,
        description: Option<String>,
        script: String,
        script_type: ScriptType,
        status: TaskStatus,
        priority: i32,
        timeout: i32,
        metadata: String,
        created_at: Timestamp,
    }
    let mut raw_tasks = Vec::new();
    for (i, (label, text)) in hostile_texts().into_iter().enumerate() {
        raw_tasks.push(RawTask {
            label: format!("{label} in every text column"),
            name: text.clone(),
            description: Some(text.clone()),
            script: text.clone(),
            script_type: ScriptType::ALL[i % 4],
            status: TaskStatus::ALL[i % 6],
            priority: (i % 11) as i32,
            timeout: [1, 3600, 10][i % 3],
            metadata: json!({ "label": label, "k": text, text.clone(): [text, i] }).to_string(),
            created_at: Timestamp::from_unix_micros(i as i64 * 1_000_001).unwrap(),
        });
    }
    let big_metadata = {
        let mut map = serde_json::Map::new();
        map.insert("label".into(), json!("big"));
        for i in 0..40_000 {
            map.insert(format!("k{i} \u{202E}"), json!(format!("v{i} 😀")));
        }
        Value::Object(map).to_string()
    };
    assert!(big_metadata.len() > MIB);
    raw_tasks.extend([
        RawTask {
            label: "the longest texts, 1 MiB of metadata, time's maximum".into(),
            name: chars('😀', 255),
            description: Some(mixed_chars(1000)),
            script: mixed_chars(65535),
            script_type: ScriptType::Go,
            status: TaskStatus::Completed,
            priority: 10,
            timeout: 3600,
            metadata: big_metadata,
            created_at: time_max(),
        },
        RawTask {
            label: "NULL description, the smallest numbers, PostgreSQL's minimum time".into(),
            name: "n".into(),
            description: None,
            script: "x".into(),
            script_type: ScriptType::Bash,
            status: TaskStatus::Running,
            priority: 0,
            timeout: 1,
            metadata: "{}".into(),
            created_at: pg_min(),
        },
        RawTask {
            label: "a script the crate's deny-list refuses, an empty description".into(),
            name: "cleanup".into(),
            description: Some(String::new()),
            script: "rm -rf / # written by another client".into(),
            script_type: ScriptType::Bash,
            status: TaskStatus::Failed,
            priority: 5,
            timeout: 60,
            metadata: json!({ "label": "denied" }).to_string(),
            created_at: epoch(),
        },
        RawTask {
            label: "numbers at the i64, u64 and f64 bounds in metadata".into(),
            name: "numbers".into(),
            description: None,
            script: "x".into(),
            script_type: ScriptType::Python,
            status: TaskStatus::Pending,
            priority: 3,
            timeout: 10,
            metadata: r#"{"label": "numbers", "i64_min": -9223372036854775808,
                "i64_max": 9223372036854775807, "u64_max": 18446744073709551615,
                "f64_max": 1.7976931348623157e308, "f64_min": -1.7976931348623157e308,
                "min_positive": 2.2250738585072014e-308, "subnormal": 5e-324,
                "tenth": 0.1, "big": 1e300, "scaled": 2.50, "a": [0, -1, 1.5]}"#
                .into(),
            created_at: epoch(),
        },
        RawTask {
            label: "metadata METADATA_DEPTH_LIMIT deep".into(),
            name: "deep".into(),
            description: None,
            script: "x".into(),
            script_type: ScriptType::Javascript,
            status: TaskStatus::Timeout,
            priority: 1,
            timeout: 10,
            metadata: format!(
                "{{\"label\": \"deep\", \"d\": {}}}",
                deep_json_text(METADATA_DEPTH_LIMIT - 1)
            ),
            created_at: epoch(),
        },
    ]);
    let mut tasks = Vec::new();
    for raw in &raw_tasks {
        let id = Uuid::now_v7();
        client
            .execute(
                "INSERT INTO tasks (id, user_id, name, description, script_content, script_type, \
                 status, priority, timeout_seconds, metadata, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11, $11)",
                &[
                    &id,
                    &owner.id,
                    &raw.name,
                    &raw.description,
                    &raw.script,
                    &raw.script_type.as_str(),
                    &raw.status.as_str(),
                    &raw.priority,
                    &raw.timeout,
                    &raw.metadata,
                    &raw.created_at,
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("insert task {}: {e}", raw.label));
        let mut task = fixtures::task()
            .id(TaskId::from(id))
            .user_id(owner.id)
            .name(raw.name.clone())
            .script_content(raw.script.clone())
            .script_type(raw.script_type)
            .status(raw.status)
            .priority(raw.priority)
            .timeout_seconds(raw.timeout)
            .metadata(serde_json::from_str(&raw.metadata).unwrap())
            .created_at(raw.created_at)
            .updated_at(raw.created_at)
            .build();
        task.description.clone_from(&raw.description);
        let l = format!("raw task {}: tasks.get", raw.label);
        same(&l, &ok(&l, r.tasks.get(task.id)).await, &task);
        let l = format!(
            "raw task {}: tasks.search_by_metadata by its label",
            raw.label
        );
        let label = task.metadata.get("label").cloned();
        if let Some(label) = label {
            let page = ok(
                &l,
                r.tasks
                    .search_by_metadata(json!({ "label": label }), PageRequest::first(100)),
            )
            .await;
            same(&l, &page.items, &vec![task.clone()]);
        }
        tasks.push(task);
    }
    let order = |list: &mut Vec<Task>| {
        list.sort_by_key(|x| std::cmp::Reverse((x.priority, x.created_at, x.id)))
    };
    let mut all_tasks = tasks.clone();
    order(&mut all_tasks);
    async fn walk_tasks(
        label: &str,
        mut next: impl AsyncFnMut(PageRequest) -> R<Page<Task>>,
    ) -> Vec<Task> {
        let mut request = PageRequest::first(7);
        let mut all = Vec::new();
        loop {
            let page = ok(label, next(request.clone())).await;
            all.extend(page.items);
            match page.next_cursor {
                Some(cursor) => request = PageRequest::after(cursor, 7),
                None => return all,
            }
        }
    }
    let l = "raw tasks: tasks.list";
    same(
        l,
        &walk_tasks(l, async |p| r.tasks.list(p).await).await,
        &all_tasks,
    );
    let l = "raw tasks: tasks.list_by_user";
    same(
        l,
        &walk_tasks(l, async |p| r.tasks.list_by_user(owner.id, p).await).await,
        &all_tasks,
    );
    let l = "raw tasks: tasks.search_by_metadata {}";
    same(
        l,
        &walk_tasks(l, async |p| r.tasks.search_by_metadata(json!({}), p).await).await,
        &all_tasks,
    );
    for status in TaskStatus::ALL {
        let l = format!("raw tasks: tasks.list_by_status {status}");
        let expected: Vec<Task> = all_tasks
            .iter()
            .filter(|t| t.status == status)
            .cloned()
            .collect();
        same(
            &l,
            &walk_tasks(&l, async |p| r.tasks.list_by_status(status, p).await).await,
            &expected,
        );
        let l = format!("raw tasks: tasks.count_by_status {status}");
        same(
            &l,
            &ok(&l, r.tasks.count_by_status(status)).await,
            &(expected.len() as i64),
        );
    }
    same(
        "raw tasks: tasks.count",
        &r.tasks.count().await.unwrap(),
        &(tasks.len() as i64),
    );
    same(
        "raw tasks: tasks.count_by_user",
        &r.tasks.count_by_user(owner.id).await.unwrap(),
        &(tasks.len() as i64),
    );

    // Executions: one per status, nullable columns NULL or at their bounds.
    // Every nullable column NULL, the times at the epoch.
    let run = |task: &Task, status| {
        fixtures::execution()
            .task_id(task.id)
            .status(status)
            .created_at(epoch())
            .run_after(epoch())
            .updated_at(epoch())
    };
    let all_text: String = hostile_texts()
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n");
    let executions: Vec<(&str, TaskExecution)> = vec![
        (
            "pending, every nullable column NULL, the extreme times",
            run(&tasks[0], ExecutionStatus::Pending)
                .run_after(time_max())
                .created_at(pg_min())
                .updated_at(time_max())
                .build(),
        ),
        (
            "running with an injection worker id and i32::MAX attempts",
            run(&tasks[1], ExecutionStatus::Running)
                .started_at(epoch())
                .worker_id("'; DROP TABLE task_executions; --")
                .lease_expires_at(time_max())
                .heartbeat_at(epoch())
                .attempt(i32::MAX)
                .priority(10)
                .created_at(plus(epoch(), Duration::from_secs(1)))
                .build(),
        ),
        (
            "completed at every upper bound, 1 MiB stdout, 255-emoji worker",
            run(&tasks[2], ExecutionStatus::Completed)
                .return_code(0)
                .stdout(big(MIB))
                .stderr(String::new())
                .execution_time_ms(i32::MAX)
                .memory_usage_bytes(i64::MAX)
                .started_at(pg_min())
                .completed_at(time_max())
                .worker_id(chars('😀', 255))
                .heartbeat_at(pg_min())
                .attempt(1)
                .created_at(plus(epoch(), Duration::from_secs(2)))
                .build(),
        ),
        (
            "failed 255, every hostile text in stderr, zero usage",
            run(&tasks[2], ExecutionStatus::Failed)
                .return_code(255)
                .stderr(all_text.clone())
                .execution_time_ms(0)
                .memory_usage_bytes(0)
                .started_at(epoch())
                .completed_at(epoch())
                .worker_id(all_text.chars().take(255).collect::<String>())
                .created_at(plus(epoch(), Duration::from_secs(3)))
                .build(),
        ),
        (
            "timeout keeping its expired lease",
            run(&tasks[3], ExecutionStatus::Timeout)
                .started_at(epoch())
                .completed_at(plus(epoch(), Duration::from_secs(60)))
                .worker_id("\u{202E}w")
                .lease_expires_at(plus(epoch(), Duration::from_secs(30)))
                .attempt(3)
                .created_at(plus(epoch(), Duration::from_secs(4)))
                .build(),
        ),
        (
            "cancelled before it started",
            run(&tasks[3], ExecutionStatus::Cancelled)
                .completed_at(pg_min())
                .created_at(plus(epoch(), Duration::from_secs(5)))
                .build(),
        ),
    ];
    for (label, e) in &executions {
        client
            .execute(
                "INSERT INTO task_executions (id, task_id, status, return_code, stdout, stderr, \
                 execution_time_ms, memory_usage_bytes, started_at, completed_at, created_at, \
                 priority, run_after, attempt, worker_id, lease_expires_at, heartbeat_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18)",
                &[
                    &e.id,
                    &e.task_id,
                    &e.status.as_str(),
                    &e.return_code,
                    &e.stdout,
                    &e.stderr,
                    &e.execution_time_ms,
                    &e.memory_usage_bytes,
                    &e.started_at,
                    &e.completed_at,
                    &e.created_at,
                    &e.priority,
                    &e.run_after,
                    &e.attempt,
                    &e.worker_id,
                    &e.lease_expires_at,
                    &e.heartbeat_at,
                    &e.updated_at,
                ],
            )
            .await
            .unwrap_or_else(|err| panic!("insert execution {label}: {err}"));
        let l = format!("raw execution {label}: executions.get");
        same(&l, &ok(&l, r.executions.get(e.id)).await, e);
    }
    let mut all_executions: Vec<TaskExecution> =
        executions.iter().map(|(_, e)| e.clone()).collect();
    all_executions.sort_by_key(|x| std::cmp::Reverse((x.created_at, x.id)));
    async fn walk_executions(
        label: &str,
        mut next: impl AsyncFnMut(PageRequest) -> R<Page<TaskExecution>>,
    ) -> Vec<TaskExecution> {
        let mut request = PageRequest::first(2);
        let mut all = Vec::new();
        loop {
            let page = ok(label, next(request.clone())).await;
            all.extend(page.items);
            match page.next_cursor {
                Some(cursor) => request = PageRequest::after(cursor, 2),
                None => return all,
            }
        }
    }
    let l = "raw executions: executions.list";
    same(
        l,
        &walk_executions(l, async |p| r.executions.list(p).await).await,
        &all_executions,
    );
    for status in ExecutionStatus::ALL {
        let l = format!("raw executions: executions.list_by_status {status}");
        let expected: Vec<TaskExecution> = all_executions
            .iter()
            .filter(|e| e.status == status)
            .cloned()
            .collect();
        same(
            &l,
            &walk_executions(&l, async |p| r.executions.list_by_status(status, p).await).await,
            &expected,
        );
        let l = format!("raw executions: executions.count_by_status {status}");
        same(
            &l,
            &ok(&l, r.executions.count_by_status(status)).await,
            &(expected.len() as i64),
        );
    }
    for task in &tasks[..4] {
        let expected: Vec<TaskExecution> = all_executions
            .iter()
            .filter(|e| e.task_id == task.id)
            .cloned()
            .collect();
        let l = format!("raw executions: executions.list_by_task {}", task.id);
        same(
            &l,
            &walk_executions(&l, async |p| r.executions.list_by_task(task.id, p).await).await,
            &expected,
        );
        let l = format!("raw executions: executions.latest_for_task {}", task.id);
        same(
            &l,
            &ok(&l, r.executions.latest_for_task(task.id)).await,
            &expected.first().cloned(),
        );
        let l = format!("raw executions: executions.count_by_task {}", task.id);
        same(
            &l,
            &ok(&l, r.executions.count_by_task(task.id)).await,
            &(expected.len() as i64),
        );
    }
    same(
        "raw executions: executions.count",
        &r.executions.count().await.unwrap(),
        &(executions.len() as i64),
    );
    // The running one is a worker's to heartbeat; nothing is claimable.
    let (_, running) = &executions[1];
    let worker = running.worker_id.clone().unwrap();
    let l = "raw running execution: queue.heartbeat by its injection worker id";
    let until = ok(l, r.queue.heartbeat(running.id, &worker, LEASE)).await;
    same(
        l,
        &r.executions.get(running.id).await.unwrap().lease_expires_at,
        &Some(until),
    );
    let l = "raw rows: queue.claim";
    same(
        l,
        &ok(l, r.queue.claim("w", MAX_CLAIM, LEASE)).await,
        &Vec::new(),
    );
}

// ---------------------------------------------------------------------------
// 20 MiB strings: a few calls
// ---------------------------------------------------------------------------

#[tokio::test]
async fn twenty_mib_strings() {
    let r = repos().await;
    let huge = big(20 * MIB);
    let user = new_user(&r).await;
    let task = fresh_task(&r, &user).await;

    refused(
        &r,
        "users.create email of 20 MiB",
        Want::Validation("email"),
        r.users.create(NewUser::new(huge.clone(), hash())),
    )
    .await;
    refused(
        &r,
        "tasks.create name of 20 MiB",
        Want::Validation("name"),
        r.tasks
            .create(NewTask::new(user.id, huge.clone(), "print(1)")),
    )
    .await;
    refused(
        &r,
        "tasks.update script of 20 MiB",
        Want::Validation("script_content"),
        r.tasks.update(task.id, Set::Script(huge.clone()).update()),
    )
    .await;
    refused(
        &r,
        "tasks.search_by_metadata with a 20 MiB string",
        Want::Validation("filter"),
        r.tasks
            .search_by_metadata(json!({ "s": huge }), PageRequest::first(1)),
    )
    .await;
    refused(
        &r,
        "queue.claim worker id of 20 MiB",
        Want::Validation("worker_id"),
        r.queue.claim(&huge, 1, LEASE),
    )
    .await;

    // Output beyond DbConfig::max_output_bytes is truncated with a marker.
    assert!(max_output(&r) < 20 * MIB);
    let e = pending_execution(&r, &user).await;
    let recorded = record_case(&r, "of 20 MiB", &e, &Record::Stdout(huge.clone()), None).await;
    let l = "executions.list_by_task with a 20 MiB row";
    same(
        l,
        &ok(
            l,
            r.executions.list_by_task(e.task_id, PageRequest::first(10)),
        )
        .await
        .items,
        &vec![recorded],
    );
    r.queue.cancel(e.id).await.unwrap();

    let running = running_execution(&r, &user, "w").await;
    let l = "queue.complete with 20 MiB of stderr";
    let done = ok(
        l,
        r.queue
            .complete(running.id, "w", Outcome::failed(1).output("", huge.clone())),
    )
    .await;
    same(l, &done.stderr, &Some(stored_output(&huge, max_output(&r))));
    same(l, &r.executions.get(running.id).await.unwrap(), &done);
}
