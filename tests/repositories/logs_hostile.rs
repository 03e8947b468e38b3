//! Hostile inputs and rows of the execution logs (issue #21 §4): lines the
//! crate refuses before any SQL, rows another writer cannot store past the
//! table's checks, rows the crate cannot read (a typed `Decode`, never a
//! panic), mangled cursors, and search queries of every shape.

use tokio_postgres::error::SqlState;
use uuid::Uuid;
use voidrunner_db::{Error, LogRepository, LogScope, NewLogLine, PageRequest, ScopedLogRepository};

use crate::logs::{lines, running_task, stored};
use crate::repos;

fn assert_validation(err: &Error, field: &str) {
    match err {
        Error::Validation { field: f, .. } => assert_eq!(*f, field, "{err:?}"),
        other => panic!("expected Validation of {field}, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_and_nul_lines_are_refused_and_nothing_is_written() {
    let r = repos().await;
    let logs = r.db.db().logs();
    let user = r.user("huge@example.com").await;
    let e = running_task(&r, &user, "t", "w").await;
    let max = "é".repeat(NewLogLine::MAX_BYTES / 2);
    assert_eq!(max.len(), NewLogLine::MAX_BYTES);
    for (bad, field) in [
        (format!("{max}x"), "text"),
        ("x".repeat(1 << 20), "text"),
        ("before\0after".to_owned(), "text"),
        ("\0".to_owned(), "text"),
    ] {
        let mut batch = lines(0..3, "good");
        batch.push(NewLogLine::stderr(3, bad));
        let err = logs.append(e.id, "w", batch).await.unwrap_err();
        assert_validation(&err, field);
        assert!(err.to_string().contains("line 3"), "{err}");
        assert_eq!(stored(&r, e.id).await, (0, 0));
    }
    for (batch, field) in [
        (vec![], "lines"),
        (
            vec![NewLogLine::stdout(2, "a"), NewLogLine::stdout(1, "b")],
            "seq",
        ),
        (
            vec![NewLogLine::stdout(1, "a"), NewLogLine::stdout(1, "b")],
            "seq",
        ),
        (vec![NewLogLine::stdout(u64::MAX, "a")], "seq"),
        (
            lines(0..(voidrunner_db::LogAppend::MAX_LINES as u64 + 1), "x"),
            "lines",
        ),
    ] {
        let err = logs.append(e.id, "w", batch).await.unwrap_err();
        assert_validation(&err, field);
    }
    let err = logs.append(e.id, "", lines(0..1, "x")).await.unwrap_err();
    assert!(err.is_validation(), "{err:?}");
    assert_eq!(stored(&r, e.id).await, (0, 0));
    // The longest line is stored and read back whole.
    let added = logs
        .append(e.id, "w", vec![NewLogLine::stdout(0, max.clone())])
        .await
        .unwrap();
    assert_eq!(added, 1);
    assert_eq!(logs.tail(e.id, 1).await.unwrap()[0].text, max);
}

#[tokio::test]
async fn another_writers_bad_rows_are_refused_by_the_tables_checks() {
    let r = repos().await;
    let user = r.user("writer@example.com").await;
    let e = running_task(&r, &user, "t", "w").await;
    let raw = r.db.raw_client().await.unwrap();
    let insert = "INSERT INTO task_execution_logs \
        (execution_id, execution_created_at, user_id, seq, stream, logged_at, line) \
        SELECT id, created_at, user_id, $2, $3, now(), $4 FROM task_executions WHERE id = $1";
    let long = "x".repeat(65_537);
    for (seq, stream, line) in [
        (0i64, "bogus", "x"),
        (0, "STDOUT", "x"),
        (0, "stdout", long.as_str()),
        (-1, "stdout", "x"),
    ] {
        let err = raw
            .execute(insert, &[&e.id, &seq, &stream, &line])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION), "{err:?}");
    }
    let err = raw
        .execute(
            "INSERT INTO task_execution_log_chunks (execution_id, execution_created_at, user_id, \
               task_id, first_seq, last_seq, document) \
             SELECT id, created_at, user_id, task_id, 5, 4, ''::tsvector FROM task_executions \
             WHERE id = $1",
            &[&e.id],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION), "{err:?}");
    assert_eq!(stored(&r, e.id).await, (0, 0));
}

#[tokio::test]
async fn rows_the_crate_cannot_read_are_a_decode_error() {
    let r = repos().await;
    let logs = r.db.db().logs();
    let user = r.user("decode@example.com").await;
    let e = running_task(&r, &user, "t", "w").await;
    logs.append(e.id, "w", lines(0..3, "fine")).await.unwrap();
    // Another application dropped the checks and wrote what they kept out.
    let raw = r.db.raw_client().await.unwrap();
    raw.batch_execute(
        "ALTER TABLE task_execution_logs DROP CONSTRAINT task_execution_logs_stream_valid; \
         ALTER TABLE task_execution_logs DROP CONSTRAINT task_execution_logs_seq_nonnegative;",
    )
    .await
    .unwrap();
    raw.execute(
        "INSERT INTO task_execution_logs \
           (execution_id, execution_created_at, user_id, seq, stream, logged_at, line) \
         SELECT id, created_at, user_id, 3, 'bogus', now(), 'fine stream' \
         FROM task_executions WHERE id = $1",
        &[&e.id],
    )
    .await
    .unwrap();
    // The search finds it through the chunk its first lines made.
    raw.execute(
        "UPDATE task_execution_log_chunks SET last_seq = 3, \
           document = document || to_tsvector('simple', 'stream') WHERE execution_id = $1",
        &[&e.id.as_uuid()],
    )
    .await
    .unwrap();
    let decode = |err: Error| {
        assert!(
            matches!(
                &err,
                Error::Decode {
                    entity: "log line",
                    ..
                }
            ),
            "{err:?}"
        );
    };
    decode(logs.read_after(e.id, None, 10).await.unwrap_err());
    decode(logs.tail(e.id, 10).await.unwrap_err());
    decode(logs.page(e.id, PageRequest::first(10)).await.unwrap_err());
    decode(
        logs.search(LogScope::User(user.id), "stream", PageRequest::first(10))
            .await
            .unwrap_err(),
    );
    // The lines before it still read.
    assert_eq!(logs.read_after(e.id, None, 3).await.unwrap().lines.len(), 3);

    raw.execute(
        "UPDATE task_execution_logs SET stream = 'stdout', seq = -5 \
         WHERE execution_id = $1 AND seq = 3",
        &[&e.id.as_uuid()],
    )
    .await
    .unwrap();
    let err = logs.tail(e.id, 10).await.unwrap_err();
    match &err {
        Error::Decode { column, id, .. } => {
            assert_eq!(*column, "seq");
            assert_eq!(id.as_deref(), Some(e.id.to_string().as_str()));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn mangled_cursors_are_refused() {
    let r = repos().await;
    let logs = r.db.db().logs();
    let user = r.user("cursor@example.com").await;
    let e = running_task(&r, &user, "t", "w").await;
    let other = running_task(&r, &user, "other", "w2").await;
    logs.append(e.id, "w", lines(0..10, "needle"))
        .await
        .unwrap();
    logs.append(other.id, "w2", lines(0..10, "needle"))
        .await
        .unwrap();
    let page_cursor = logs
        .page(e.id, PageRequest::first(2))
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    let other_cursor = logs
        .page(other.id, PageRequest::first(2))
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    let scope = LogScope::User(user.id);
    let search_cursor = logs
        .search(scope, "needle", PageRequest::first(2))
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    // A cursor walks its own list on: these are sound.
    let next = logs
        .page(e.id, PageRequest::after(page_cursor.clone(), 100))
        .await
        .unwrap();
    assert_eq!(next.items.len(), 8);
    let next = logs
        .search(
            scope,
            "needle",
            PageRequest::after(search_cursor.clone(), 100),
        )
        .await
        .unwrap();
    assert_eq!(next.items.len(), 18);

    let flip = |c: &str, at: usize| {
        let mut b = c.as_bytes().to_vec();
        b[at] = if b[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    };
    let mut bad = vec![
        String::new(),
        "x".to_owned(),
        "zz".repeat(page_cursor.len() / 2),
        page_cursor[..page_cursor.len() - 2].to_owned(),
        format!("{page_cursor}00"),
        flip(&page_cursor, 0),
        flip(&page_cursor, 20),
        flip(&page_cursor, page_cursor.len() - 1),
        format!("é{}", &page_cursor[2..]),
        other_cursor.clone(),
        search_cursor.clone(),
    ];
    for cursor in bad.drain(..) {
        let err = logs
            .page(e.id, PageRequest::after(cursor.clone(), 10))
            .await
            .unwrap_err();
        assert_validation(&err, "cursor");
    }
    for cursor in [
        page_cursor.clone(),
        flip(&search_cursor, 40),
        "0".repeat(search_cursor.len()),
    ] {
        let err = logs
            .search(scope, "needle", PageRequest::after(cursor, 10))
            .await
            .unwrap_err();
        assert_validation(&err, "cursor");
    }
    // A search cursor is the query's and the scope's own.
    for (scope, query) in [
        (scope, "other"),
        (
            LogScope::Task(voidrunner_db::TaskId::from(Uuid::new_v4())),
            "needle",
        ),
    ] {
        let err = logs
            .search(scope, query, PageRequest::after(search_cursor.clone(), 10))
            .await
            .unwrap_err();
        assert_validation(&err, "cursor");
    }
    let err = logs.page(e.id, PageRequest::first(0)).await.unwrap_err();
    assert_validation(&err, "limit");
    // Too large a page is cut to the largest, as every list's.
    let all = logs
        .page(e.id, PageRequest::first(1_000_000))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 10);
    for lines_asked in [0, 10_001] {
        assert!(
            logs.tail(e.id, lines_asked)
                .await
                .unwrap_err()
                .is_validation()
        );
        assert!(
            logs.read_after(e.id, None, lines_asked)
                .await
                .unwrap_err()
                .is_validation()
        );
    }
    let err = logs.read_after(e.id, Some(u64::MAX), 10).await.unwrap_err();
    assert_validation(&err, "after");
}

#[tokio::test]
async fn search_queries_of_every_shape() {
    let r = repos().await;
    let logs = r.db.db().logs();
    let user = r.user("query@example.com").await;
    let e = running_task(&r, &user, "t", "w").await;
    logs.append(
        e.id,
        "w",
        vec![
            NewLogLine::stdout(0, "connection refused by host"),
            NewLogLine::stderr(1, "Traceback (most recent call last):"),
            NewLogLine::stdout(2, "100% done \"quoted\" !! (paren"),
        ],
    )
    .await
    .unwrap();
    let scope = LogScope::Task(e.task_id);
    for query in [
        "".to_owned(),
        " ".to_owned(),
        "\t\n".to_owned(),
        "a\0b".to_owned(),
        "a".repeat(1_001),
    ] {
        let err = logs
            .search(scope, &query, PageRequest::first(10))
            .await
            .unwrap_err();
        assert_validation(&err, "query");
        let err =
            r.db.db()
                .scoped_logs(user.id)
                .search(&query, PageRequest::first(10))
                .await
                .unwrap_err();
        assert_validation(&err, "query");
    }
    // The longest query is accepted.
    logs.search(scope, &"a".repeat(1_000), PageRequest::first(10))
        .await
        .unwrap();
    for garbage in [
        "\"",
        "!!",
        "(",
        ")",
        "&",
        "|",
        ":*",
        "'",
        "\\",
        "-",
        "or",
        "<->",
        "!(",
        "\"\"",
        "-connection",
        "a & (b | !c",
        "é",
        "🦀",
        "%_",
        "'; DROP TABLE users; --",
    ] {
        // Found nothing, or refused for having no word to look up; never
        // the server's syntax error.
        match logs.search(scope, garbage, PageRequest::first(10)).await {
            Ok(_) => {}
            Err(err) => assert_validation(&err, "query"),
        }
    }
    // A word, a negation only, a negation in an alternative.
    for no_word in ["-connection", "!!", "\"\"", "needle or -connection"] {
        let err = logs
            .search(scope, no_word, PageRequest::first(10))
            .await
            .unwrap_err();
        assert_validation(&err, "query");
    }
    let found = |q: &'static str| {
        let logs = logs.clone();
        async move {
            logs.search(scope, q, PageRequest::first(10))
                .await
                .unwrap()
                .items
                .iter()
                .map(|m| m.line.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("REFUSED").await, [0]);
    assert_eq!(found("\"connection refused\"").await, [0]);
    assert_eq!(found("\"refused connection\"").await, Vec::<u64>::new());
    assert_eq!(found("refused or traceback").await, [1, 0]);
    assert_eq!(found("connection -host").await, Vec::<u64>::new());
    assert_eq!(found("quoted").await, [2]);
}

/// A database in SQL_ASCII, where another writer can store bytes that are
/// not UTF-8 in a text column: reading them fails with the server's
/// SQLSTATE 22021 (it will not convert them for the crate's UTF-8
/// session), never a panic or a line cut short; the lines before still
/// read.
#[tokio::test]
async fn a_line_that_is_not_utf8_fails_to_read_without_a_panic() {
    let test_db = voidrunner_db::testing::TestDatabase::builder()
        .empty()
        .config(|c| c.min_connections = 0)
        .build()
        .await
        .unwrap();
    let config = test_db.config().await.unwrap();
    let name = test_db.name().to_owned();
    test_db.db().pool().close();
    let server = voidrunner_db::testing::server_config().await.unwrap();
    let (admin, connection) = server
        .direct_pg_config()
        .unwrap_or(server.pg_config())
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'SQL_ASCII' \
               LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .await
        .unwrap();
    let db = voidrunner_db::Database::connect(config).await.unwrap();
    db.migrate().await.unwrap();
    let r = crate::Repos {
        users: voidrunner_db::PgUserRepository::new(db.clone()),
        tasks: voidrunner_db::PgTaskRepository::new(db.clone()),
        executions: voidrunner_db::PgExecutionRepository::new(db.clone()),
        queue: voidrunner_db::PgExecutionQueue::new(db.clone()),
        db: test_db,
    };
    let user = {
        use voidrunner_db::UserRepository;
        r.users
            .create(voidrunner_db::NewUser::new(
                "ascii@example.com",
                voidrunner_db::PasswordHash::new("h"),
            ))
            .await
            .unwrap()
    };
    let task = {
        use voidrunner_db::TaskRepository;
        r.tasks
            .create(voidrunner_db::NewTask::new(user.id, "t", "x"))
            .await
            .unwrap()
    };
    let e = crate::logs::running(&r, &task, "w").await;
    let logs = db.logs();
    logs.append(e.id, "w", lines(0..2, "fine")).await.unwrap();
    let client = db.client().await.unwrap();
    client
        .execute(
            "INSERT INTO task_execution_logs \
               (execution_id, execution_created_at, user_id, seq, stream, logged_at, line) \
             SELECT id, created_at, user_id, 2, 'stdout', now(), \
                    convert_from('\\x66696e6520ff'::bytea, 'SQL_ASCII') \
             FROM task_executions WHERE id = $1",
            &[&e.id],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE task_execution_log_chunks SET last_seq = 2 WHERE execution_id = $1",
            &[&e.id.as_uuid()],
        )
        .await
        .unwrap();
    drop(client);
    for err in [
        logs.tail(e.id, 10).await.unwrap_err(),
        logs.read_after(e.id, None, 10).await.unwrap_err(),
        logs.page(e.id, PageRequest::first(10)).await.unwrap_err(),
        logs.search(LogScope::User(user.id), "fine", PageRequest::first(10))
            .await
            .unwrap_err(),
    ] {
        // The server itself refuses to send the bytes to a UTF-8 client
        // (22021): an error the caller can tell, not a panic, not retried.
        assert_eq!(err.sqlstate().map(|s| s.code()), Some("22021"), "{err:?}");
        assert!(!err.is_retryable(), "{err:?}");
    }
    assert_eq!(logs.read_after(e.id, None, 2).await.unwrap().lines.len(), 2);
    db.pool().close();
}
