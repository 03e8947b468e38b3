use super::*;

fn key() -> Keyset {
    Keyset {
        priority: 7,
        created_at: Timestamp::now(),
        id: Uuid::now_v7(),
    }
}

fn tasks(filter: &[u8]) -> ListScope {
    ListScope::new(CursorKind::Task, "list_by_user", filter)
}

/// Rows are read by position: every page of a list returns its entity's
/// columns in its reader's order, and a list takes a filter value exactly
/// when its statements have one.
#[test]
fn lists_return_their_entitys_columns_and_take_their_filter() {
    let lists = [
        (&user::TABLE, &user::LIST),
        (&task::TABLE, &task::LIST),
        (&task::TABLE, &task::LIST_BY_USER),
        (&task::TABLE, &task::LIST_BY_STATUS),
        (&task::TABLE, &task::SEARCH_BY_METADATA),
        (&execution::TABLE, &execution::LIST),
        (&execution::TABLE, &execution::LIST_BY_TASK),
        (&execution::TABLE, &execution::LIST_BY_STATUS),
    ];
    for (table, list) in lists {
        let columns = table.read.names.join(", ");
        for page in [list.first, list.after, table.get] {
            assert!(page.text.contains(&columns), "{}", page.name);
        }
        // The first page takes the list's filter value, as its count
        // does, and the row count.
        let params = |q: crate::queries::Query| {
            (1..=9)
                .filter(|i| q.text.contains(&format!("${i}")))
                .count()
        };
        assert_eq!(
            params(list.first),
            list.filters() + 1,
            "{}",
            list.first.name
        );
        // The cursor's keys: two, or three when the order starts with priority.
        let keys = if table.by_priority { 3 } else { 2 };
        assert_eq!(
            params(list.after),
            params(list.first) + keys,
            "{}",
            list.after.name
        );
    }
}

#[test]
fn cursors_round_trip() {
    let k = key();
    let c = encode_cursor(tasks(b"a"), &k);
    assert_eq!(decode_cursor(tasks(b"a"), &c).unwrap(), k);
}

#[test]
fn tampered_cursors_are_validation_errors() {
    let c = encode_cursor(tasks(b"a"), &key());
    let mut flipped = c.clone().into_bytes();
    flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        String::new(),
        "zz".repeat(CURSOR_BYTES),
        c[..c.len() - 2].to_owned(),
        format!("{c}00"),
        flipped,
        "é".repeat(CURSOR_BYTES),
    ] {
        let err = decode_cursor(tasks(b"a"), &bad).unwrap_err();
        assert_eq!(err.field(), Some("cursor"), "{bad:?}");
    }
    // A cursor of another list, or of the same list with another
    // filter, or of another entity, is refused.
    for other in [
        tasks(b"b"),
        ListScope::new(CursorKind::Task, "list", b""),
        ListScope::new(CursorKind::User, "list_by_user", b"a"),
    ] {
        let foreign = encode_cursor(other, &key());
        assert!(decode_cursor(tasks(b"a"), &foreign).is_err());
    }
}

#[test]
fn forged_cursors_out_of_the_servers_range_are_refused() {
    let mut k = key();
    k.created_at = Timestamp::from_unix_micros(crate::validate::POSTGRES_MIN_UNIX_MICROS - 1)
        .expect("representable");
    let forged = encode_cursor(tasks(b"a"), &k);
    let err = decode_cursor(tasks(b"a"), &forged).unwrap_err();
    assert_eq!(err.field(), Some("cursor"));
}

#[test]
fn limits() {
    assert_eq!(page_limit(&PageRequest::default()).unwrap(), 20);
    assert_eq!(page_limit(&PageRequest::first(1)).unwrap(), 1);
    assert_eq!(page_limit(&PageRequest::first(100)).unwrap(), 100);
    assert_eq!(page_limit(&PageRequest::first(101)).unwrap(), 100);
    assert_eq!(
        page_limit(&PageRequest::first(0)).unwrap_err().field(),
        Some("limit")
    );
}

#[test]
fn pages_know_whether_more_follow() {
    let keys: Vec<Keyset> = (0..3).map(|_| key()).collect();
    let scope = ListScope::new(CursorKind::User, "list", b"");
    let spec = |limit| PageSpec {
        limit,
        after: None,
        scope,
    };
    let page = into_page(keys.clone(), &spec(2), |k| *k);
    assert_eq!(page.items.len(), 2);
    let next = decode_cursor(scope, page.next_cursor.as_deref().unwrap()).unwrap();
    assert_eq!(next, keys[1]);
    let last = into_page(keys, &spec(3), |k| *k);
    assert_eq!(last.next_cursor, None);
}
