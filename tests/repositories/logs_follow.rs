//! Following an execution's log (`Database::follow_logs`) while a
//! `LogWriter` streams it: every line once and in order, gaps waited for
//! while the execution runs, the rest yielded when it ends; listening and
//! polling; a lost listening connection; a missing execution.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use std::collections::HashSet;

use voidrunner_db::tokio_postgres::{self, AsyncMessage};
use voidrunner_db::{
    Error, ExecutionId, ExecutionQueue, ExecutionRepository, FollowMode, FollowOptions, LogAppend,
    LogFollow, LogRepository, LogWriter, NewExecution, NewLogLine, NewTask, Outcome, TaskExecution,
    TaskRepository, UserId,
};

use crate::{Repos, repos};

/// Longest any step of these tests may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running execution of a fresh task of a new user, claimed by worker
/// `w`.
async fn running(r: &Repos, email: &str) -> TaskExecution {
    owned_running(r, email).await.1
}

/// [`running`], and its owner.
async fn owned_running(r: &Repos, email: &str) -> (UserId, TaskExecution) {
    let user = r.user(email).await;
    let task = r.task(&user, "t").await;
    r.executions
        .create(NewExecution::new(task.id))
        .await
        .unwrap();
    (user.id, r.claim("w", 1).await.remove(0))
}

fn text(seq: u64) -> String {
    format!("line {seq} of the log")
}

/// The next item of `follow`, or a panic after [`PATIENCE`].
async fn next(follow: &mut LogFollow) -> Option<voidrunner_db::Result<voidrunner_db::LogLine>> {
    tokio::time::timeout(PATIENCE, follow.next())
        .await
        .expect("the follower hung")
}

/// The seqs `follow` yields until it ends.
async fn rest(follow: &mut LogFollow) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some(line) = next(follow).await {
        seqs.push(line.unwrap().seq);
    }
    seqs
}

/// A worker streams `total` lines through a `LogWriter`, `per_append` at a
/// time with several appends in flight, while a follower started before
/// the first line reads them. The follower has every line, once and in
/// order, before the execution ends, does not end while it runs, and ends
/// once it completes.
async fn stream_and_follow(mode: FollowMode, total: u64, per_append: u64) -> bool {
    let r = repos().await;
    let execution = running(&r, "stream@example.com").await;
    let db = r.db.db().clone();
    let mut follow = db
        .follow_logs(
            execution.id,
            FollowOptions {
                mode,
                poll_interval: (mode == FollowMode::Poll).then_some(Duration::from_millis(10)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let listens = follow.listens();
    let seen = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicBool::new(false));
    let reader = {
        let (seen, ended) = (Arc::clone(&seen), Arc::clone(&ended));
        tokio::spawn(async move {
            let mut expected = 0u64;
            while let Some(line) = next(&mut follow).await {
                let line = line.unwrap();
                assert_eq!(line.seq, expected, "out of order or twice");
                assert_eq!(line.text, text(line.seq));
                expected += 1;
                seen.store(expected, Ordering::SeqCst);
            }
            ended.store(true, Ordering::SeqCst);
            expected
        })
    };
    let writer = LogWriter::new(Arc::new(db.logs())).unwrap();
    // Appends handed over without waiting for the previous ones: the
    // writer keeps an execution's appends in order, one batch at a time.
    let mut in_flight = std::collections::VecDeque::new();
    for start in (0..total).step_by(per_append as usize) {
        let lines: Vec<NewLogLine> = (start..(start + per_append).min(total))
            .map(|seq| NewLogLine::stdout(seq, text(seq)))
            .collect();
        let count = lines.len() as u64;
        in_flight.push_back((writer.append(execution.id, "w", lines), count));
        if in_flight.len() >= 8 {
            let (append, count) = in_flight.pop_front().unwrap();
            assert_eq!(append.await.unwrap(), count);
        }
    }
    for (append, count) in in_flight {
        assert_eq!(append.await.unwrap(), count);
    }
    writer.shutdown().await;
    // Every line reaches the follower while the execution still runs.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.load(Ordering::SeqCst) < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower saw {} of {total} lines",
            seen.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !ended.load(Ordering::SeqCst),
        "the follower ended while the execution ran"
    );
    r.queue
        .complete(execution.id, "w", Outcome::completed(0))
        .await
        .unwrap();
    let yielded = tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("the follower did not end with the execution")
        .unwrap();
    assert_eq!(yielded, total);
    listens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_follower_sees_a_hundred_thousand_streamed_lines_once_in_order() {
    assert!(stream_and_follow(FollowMode::Listen, 100_000, 1_000).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_follower_sees_every_streamed_line_once_in_order() {
    assert!(!stream_and_follow(FollowMode::Poll, 20_000, 250).await);
}

/// Lines after a gap wait for it while the execution runs, and come out
/// in order once it is filled; when the execution ends, the lines after a
/// gap that will never be filled come out too, and the follower ends.
#[tokio::test]
async fn a_gap_waits_until_filled_and_the_end_yields_the_rest() {
    for mode in [FollowMode::Listen, FollowMode::Poll] {
        let r = repos().await;
        let execution = running(&r, "gap@example.com").await;
        let logs = r.db.db().logs();
        let append = |seqs: &[u64]| {
            let lines = seqs
                .iter()
                .map(|&seq| NewLogLine::stdout(seq, text(seq)))
                .collect();
            logs.append(execution.id, "w", lines)
        };
        append(&[0, 1]).await.unwrap();
        let mut follow =
            r.db.db()
                .follow_logs(
                    execution.id,
                    FollowOptions {
                        mode,
                        // Listening, an hour: only the notifications of
                        // the lines and of the end wake the follower.
                        poll_interval: Some(if mode == FollowMode::Listen {
                            Duration::from_secs(3600)
                        } else {
                            Duration::from_millis(5)
                        }),
                        read_lines: 2,
                    },
                )
                .await
                .unwrap();
        assert_eq!(next(&mut follow).await.unwrap().unwrap().seq, 0);
        assert_eq!(next(&mut follow).await.unwrap().unwrap().seq, 1);
        append(&[3, 4]).await.unwrap();
        // Reads see 3 and 4 behind the gap in this time (woken by their
        // notification, or polls every 5 ms); none may yield them.
        let early = tokio::time::timeout(Duration::from_millis(300), follow.next()).await;
        assert!(early.is_err(), "{mode:?}: yielded across a gap: {early:?}");
        append(&[2]).await.unwrap();
        for seq in 2..=4 {
            assert_eq!(next(&mut follow).await.unwrap().unwrap().seq, seq);
        }
        append(&[5, 7, 9]).await.unwrap();
        assert_eq!(next(&mut follow).await.unwrap().unwrap().seq, 5);
        r.queue
            .complete(execution.id, "w", Outcome::completed(0))
            .await
            .unwrap();
        assert_eq!(rest(&mut follow).await, [7, 9], "{mode:?}");
        // An ended execution's log is read to its end at once.
        let mut again =
            r.db.db()
                .follow_logs(execution.id, FollowOptions::default())
                .await
                .unwrap();
        assert_eq!(rest(&mut again).await, [0, 1, 2, 3, 4, 5, 7, 9]);
    }
}

#[tokio::test]
async fn following_a_missing_or_another_users_execution_is_not_found() {
    let r = repos().await;
    let db = r.db.db();
    let missing = ExecutionId::new();
    for mode in [FollowMode::Auto, FollowMode::Listen, FollowMode::Poll] {
        let options = FollowOptions {
            mode,
            ..Default::default()
        };
        let err = db.follow_logs(missing, options).await.unwrap_err();
        assert!(err.is_not_found(), "{mode:?}: {err:?}");
    }
    let (owner, execution) = owned_running(&r, "owner@example.com").await;
    r.db.db()
        .logs()
        .append(execution.id, "w", vec![NewLogLine::stdout(0, text(0))])
        .await
        .unwrap();
    let stranger = UserId::new();
    let err = db
        .follow_scoped_logs(stranger, execution.id, FollowOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let mut follow = db
        .follow_scoped_logs(owner, execution.id, FollowOptions::default())
        .await
        .unwrap();
    assert_eq!(next(&mut follow).await.unwrap().unwrap().text, text(0));
    let err = db
        .follow_logs(
            execution.id,
            FollowOptions {
                read_lines: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Validation {
                field: "read_lines",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Listening connections of this test's database.
async fn listeners(r: &Repos) -> i64 {
    r.db.raw_client()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name LIKE '%-listener'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A follower whose listening connection is killed goes on (it reads at
/// its interval and listens again) and loses no line; a dropped follower
/// closes its connection.
#[tokio::test]
async fn a_lost_listening_connection_loses_no_line_and_a_dropped_follower_closes_its_own() {
    let r = repos().await;
    let execution = running(&r, "lost@example.com").await;
    let logs = r.db.db().logs();
    let mut follow =
        r.db.db()
            .follow_logs(
                execution.id,
                FollowOptions {
                    mode: FollowMode::Listen,
                    poll_interval: Some(Duration::from_millis(50)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    logs.append(execution.id, "w", vec![NewLogLine::stdout(0, text(0))])
        .await
        .unwrap();
    assert_eq!(next(&mut follow).await.unwrap().unwrap().seq, 0);
    let killed: i64 =
        r.db.raw_client()
            .await
            .unwrap()
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name LIKE '%-listener'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(killed, 1);
    for seq in 1..=3 {
        logs.append(execution.id, "w", vec![NewLogLine::stdout(seq, text(seq))])
            .await
            .unwrap();
        assert_eq!(next(&mut follow).await.unwrap().unwrap().seq, seq);
    }
    // It listens again.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while listeners(&r).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never listened again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(follow);
    while listeners(&r).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dropped follower kept its connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One append statement sends one notification per 200 executions on
/// `voidrunner_logs`, each a JSON array of distinct ids under 8000 bytes;
/// a retry that adds no line sends none.
#[tokio::test]
async fn an_append_statement_notifies_its_executions_in_payloads_that_fit() {
    let r = repos().await;
    let user = r.user("many@example.com").await;
    let tasks = r
        .tasks
        .create_many(
            (0..250)
                .map(|i| NewTask::new(user.id, format!("t{i}"), "print(1)"))
                .collect(),
        )
        .await
        .unwrap();
    for task in &tasks {
        r.executions
            .create(NewExecution::new(task.id))
            .await
            .unwrap();
    }
    let executions = r.claim("w", 250).await;
    assert_eq!(executions.len(), 250);
    // LISTEN goes to the server itself, not through a transaction-mode
    // pooler the harness may have put in front of it.
    let config = r.db.config().await.unwrap();
    let config = config.direct_config().unwrap_or(config);
    let (client, mut connection) = config
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(AsyncMessage::Notification(n)) = message {
                let _ = sender.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    client
        .batch_execute("LISTEN voidrunner_logs")
        .await
        .unwrap();
    let appends = |seq: u64| -> Vec<LogAppend> {
        executions
            .iter()
            .map(|e| LogAppend::new(e.id, "w", vec![NewLogLine::stdout(seq, text(seq))]))
            .collect()
    };
    let logs = r.db.db().logs();
    for result in logs.append_many(appends(0)).await.unwrap() {
        assert_eq!(result.unwrap(), 1);
    }
    let mut named = HashSet::new();
    let mut payloads = 0;
    while named.len() < executions.len() {
        let (channel, payload) = tokio::time::timeout(PATIENCE, received.recv())
            .await
            .expect("notified")
            .unwrap();
        assert_eq!(channel, "voidrunner_logs");
        assert!(payload.len() < 8000, "{} bytes", payload.len());
        let ids: Vec<ExecutionId> = serde_json::from_str(&payload).unwrap();
        for id in ids {
            assert!(named.insert(id), "{id} named twice");
        }
        payloads += 1;
    }
    assert_eq!(payloads, 2);
    let expected: HashSet<ExecutionId> = executions.iter().map(|e| e.id).collect();
    assert_eq!(named, expected);
    // The retry adds nothing and sends nothing: the next notification is
    // the next append's.
    for result in logs.append_many(appends(0)).await.unwrap() {
        assert_eq!(result.unwrap(), 0);
    }
    logs.append(executions[7].id, "w", vec![NewLogLine::stdout(1, text(1))])
        .await
        .unwrap();
    let (_, payload) = tokio::time::timeout(PATIENCE, received.recv())
        .await
        .expect("notified")
        .unwrap();
    let ids: Vec<ExecutionId> = serde_json::from_str(&payload).unwrap();
    assert_eq!(ids, [executions[7].id]);
}

/// A follower whose `Database` is closed says so, and ends, in either mode.
#[tokio::test]
async fn a_follower_of_a_closed_database_says_so_and_ends() {
    let r = repos().await;
    let execution = running(&r, "closed@example.com").await;
    for mode in [FollowMode::Listen, FollowMode::Poll] {
        let db = voidrunner_db::Database::connect(r.db.config().await.unwrap())
            .await
            .unwrap();
        let options = FollowOptions {
            mode,
            poll_interval: Some(Duration::from_millis(5)),
            ..Default::default()
        };
        let mut follow = db.follow_logs(execution.id, options).await.unwrap();
        db.close(Duration::from_secs(5)).await;
        let err = next(&mut follow).await.unwrap().unwrap_err();
        assert!(
            err.is_unavailable() && err.to_string().contains("closed"),
            "{mode:?}: {err:?}"
        );
        assert!(next(&mut follow).await.is_none(), "{mode:?}");
    }
}
