use super::*;

fn execution(n: u128) -> Event {
    Event::Execution(ExecutionEvent {
        kind: EventKind::Enqueued,
        execution_id: ExecutionId::from_uuid(uuid::Uuid::from_u128(n)),
        task_id: TaskId::from_uuid(uuid::Uuid::from_u128(n)),
        status: ExecutionStatus::Pending,
        worker_id: None,
    })
}

fn drain(buffer: &Buffer) -> Vec<Event> {
    buffer.lock().queue.drain(..).collect()
}

#[test]
fn a_full_buffer_counts_what_it_drops_where_it_dropped_it() {
    let buffer = Buffer::new(3);
    for n in 0..3 {
        buffer.push(execution(n));
    }
    assert_eq!(buffer.free(), 0);
    for n in 3..10 {
        buffer.push(execution(n));
    }
    // Capacity plus the one Lagged, whatever arrives.
    assert_eq!(buffer.lock().queue.len(), 4);
    assert_eq!(
        buffer.lock().queue.pop_front(),
        Some(execution(0)),
        "the oldest are kept"
    );
    buffer.push(execution(10)); // still counted: the Lagged is last
    buffer.lock().queue.pop_front();
    buffer.push(execution(11)); // room again: queued after the Lagged
    buffer.reconnect_pending();
    buffer.reconnected(); // no room: counted too
    assert_eq!(
        drain(&buffer),
        vec![
            execution(2),
            Event::Lagged { missed: 8 },
            execution(11),
            Event::Lagged { missed: 1 },
        ]
    );
}

#[test]
fn reconnected_goes_out_once_before_the_first_event_of_the_new_connection() {
    let buffer = Buffer::new(8);
    buffer.push(execution(1));
    buffer.reconnect_pending();
    buffer.push(execution(2));
    buffer.reconnected();
    buffer.reconnect_pending(); // a failed attempt sends nothing...
    buffer.reconnect_pending();
    buffer.reconnected(); // ...and the next success one Reconnected
    assert_eq!(
        drain(&buffer),
        vec![
            execution(1),
            Event::Reconnected,
            execution(2),
            Event::Reconnected
        ]
    );
    buffer.close();
    buffer.push(execution(3));
    assert!(drain(&buffer).is_empty(), "nothing is queued after close");
}

#[test]
fn polling_reports_status_changes_only() {
    let t = |s: i64| Timestamp::from_unix_micros(s * 1_000_000).unwrap();
    let id = |n: u128| ExecutionId::from_uuid(uuid::Uuid::from_u128(n));
    let mut state = PollState::new(t(100));
    use ExecutionStatus::*;
    // Entered before the stream: a heartbeat is not a change.
    assert!(!state.is_change(id(1), Running, t(50)));
    assert!(!state.is_change(id(1), Running, t(50)));
    assert!(state.is_change(id(1), Completed, t(120)));
    assert!(!state.is_change(id(1), Completed, t(120)));
    assert!(state.is_change(id(2), Pending, t(101)));
    assert!(!state.is_change(id(2), Pending, t(101)));
    assert!(state.is_change(id(2), Running, t(102)));
    assert!(!state.is_change(id(2), Running, t(102)), "heartbeat");
    assert!(state.is_change(id(2), Cancelled, t(103)));
}

#[test]
fn polling_memory_is_bounded_and_forgets_without_repeating() {
    let t = |s: i64| Timestamp::from_unix_micros(s * 1_000_000).unwrap();
    let id = |n: usize| ExecutionId::from_uuid(uuid::Uuid::from_u128(n as u128));
    let mut state = PollState::new(t(0));
    let total = POLL_TRACKED_EXECUTIONS * 2 + 10;
    for n in 0..total {
        assert!(state.is_change(id(n), ExecutionStatus::Running, t(1 + n as i64)));
        assert!(state.reported.len() <= POLL_TRACKED_EXECUTIONS);
    }
    assert!(state.forgotten_until > t(0));
    // Forgotten or remembered, a heartbeat of any of them is no change.
    for n in 0..total {
        assert!(!state.is_change(id(n), ExecutionStatus::Running, t(1 + n as i64)));
    }
    // One bulk transaction: every status time equal. All forgotten at
    // once, and none reported again.
    let mut bulk = PollState::new(t(0));
    for n in 0..=POLL_TRACKED_EXECUTIONS {
        assert!(bulk.is_change(id(n), ExecutionStatus::Pending, t(5)));
    }
    assert!(bulk.reported.len() <= POLL_TRACKED_EXECUTIONS);
    assert!(!bulk.is_change(id(0), ExecutionStatus::Pending, t(5)));
    assert!(bulk.is_change(id(0), ExecutionStatus::Running, t(6)));
}

#[test]
fn payloads_are_arrays_or_single_objects() {
    let object = |n: u128, status: &str| {
        format!(
            r#"{{"execution_id" : "{}", "task_id" : "{}", "status" : "{status}", "worker_id" : null}}"#,
            uuid::Uuid::from_u128(n),
            uuid::Uuid::from_u128(n + 100),
        )
    };
    let ids = |read: &[Payload]| {
        read.iter()
            .map(|p| p.execution_id.as_uuid().as_u128())
            .collect::<Vec<_>>()
    };
    let (read, err) = parse_payload(&object(1, "pending"));
    assert!(err.is_none());
    assert_eq!(ids(&read), [1]);
    let array = format!("[{},{}]", object(2, "pending"), object(3, "running"));
    let (read, err) = parse_payload(&array);
    assert!(err.is_none());
    assert_eq!(ids(&read), [2, 3]);
    // A foreign element is skipped; the others still count.
    let mixed = format!(
        r#"[{},{{"x": 1}},{}]"#,
        object(4, "completed"),
        object(5, "failed")
    );
    let (read, err) = parse_payload(&mixed);
    assert!(err.is_some());
    assert_eq!(ids(&read), [4, 5]);
    for garbage in ["", "not json", "[", "[1, 2]", "{}", "null", "42"] {
        let (read, err) = parse_payload(garbage);
        assert!(read.is_empty() && err.is_some(), "{garbage:?}");
    }
    let (read, err) = parse_payload("[]");
    assert!(read.is_empty() && err.is_none());
}

#[test]
fn an_array_counts_each_element_against_the_buffer() {
    let buffer = Buffer::new(3);
    buffer.push_all((0..5).map(execution));
    buffer.push_all((5..7).map(execution));
    assert_eq!(
        drain(&buffer),
        vec![
            execution(0),
            execution(1),
            execution(2),
            Event::Lagged { missed: 4 },
        ]
    );
}

#[test]
fn the_listener_connection_has_keepalives() {
    let mut config = DbConfig::from_url("postgres://u@h/db?keepalives=0").unwrap();
    config.application_name = "svc".to_owned();
    let pg = listener_pg_config(&config);
    assert!(pg.get_keepalives());
    assert_eq!(pg.get_keepalives_idle(), KEEPALIVE_IDLE);
    assert_eq!(pg.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
    assert_eq!(pg.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
    assert_eq!(pg.get_application_name(), Some("svc-listener"));
    // Dead within idle + interval * retries.
    assert!(KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES <= Duration::from_secs(30));
}

#[test]
fn the_polling_query_reads_one_batch() {
    assert!(
        crate::queries::events::POLL
            .text
            .ends_with(&format!("LIMIT {POLL_BATCH}"))
    );
}
