//! The sorted task lists (migration V11): their cursors, which carry the
//! sort key of the order they belong to, and their pages, with or without
//! each task's latest execution.
//!
//! A sorted list's cursor is version 3: version, entity, the list's scope
//! (a hash of the list's name, the order, the direction and the filter),
//! the order's field, its key (a timestamp, a priority and a timestamp, or
//! a name of variable length), the id, and a checksum of all that, in hex.
//! The unsorted lists keep their fixed-size version 2 cursors
//! ([`super::pages`]). Like those, a cursor is checked, not signed: it only
//! ever selects rows the caller may list anyway.

use super::*;
use crate::model::{
    SortDirection, Task, TaskExecution, TaskFilter, TaskSort, TaskSortField, TaskWithLatest,
};
use crate::queries;

pub(super) const SORTED_CURSOR_VERSION: u8 = 3;

/// The longest name a cursor carries, in bytes: 255 characters of up to
/// four bytes (the column's limit), with room for a column an operator
/// widened. Longer cursors are refused before they are decoded.
pub(super) const MAX_NAME_BYTES: usize = 4096;

/// Version, kind, scope, field, id, checksum: what every sorted cursor
/// holds besides its key.
const FIXED_BYTES: usize = 1 + 1 + 4 + 1 + 16 + 4;
/// The largest key: a name's length and bytes.
const MAX_KEY_BYTES: usize = 2 + MAX_NAME_BYTES;
/// The longest cursor text accepted.
pub(super) const MAX_SORTED_CURSOR_LEN: usize = 2 * (FIXED_BYTES + MAX_KEY_BYTES);

/// The sort key of a row in one order (the id aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SortKey {
    /// created_at or updated_at.
    At(Timestamp),
    /// priority, then created_at.
    Priority(i32, Timestamp),
    /// The name.
    Name(String),
}

/// Where a page of a sorted list starts: strictly after this row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SortedKeyset {
    pub(super) key: SortKey,
    pub(super) id: Uuid,
}

impl SortedKeyset {
    /// The key of `task` in the order of `field`.
    pub(super) fn of(field: TaskSortField, task: &Task) -> Self {
        let key = match field {
            TaskSortField::CreatedAt => SortKey::At(task.created_at),
            TaskSortField::UpdatedAt => SortKey::At(task.updated_at),
            TaskSortField::Priority => SortKey::Priority(task.priority, task.created_at),
            TaskSortField::Name => SortKey::Name(task.name.clone()),
        };
        SortedKeyset {
            key,
            id: task.id.as_uuid(),
        }
    }
}

const fn field_tag(field: TaskSortField) -> u8 {
    match field {
        TaskSortField::CreatedAt => 1,
        TaskSortField::UpdatedAt => 2,
        TaskSortField::Priority => 3,
        TaskSortField::Name => 4,
    }
}

/// The scope of the sorted list of `filter` in `sort`: a cursor of another
/// order, direction or filter is refused. `list_sorted` and
/// `list_with_latest` of the same order and filter are one list (the same
/// rows in the same order), and so are a scoped view's and the unscoped
/// list of its user.
pub(super) fn sorted_scope(sort: TaskSort, filter: TaskFilter) -> ListScope {
    let mut bytes = Vec::with_capacity(3 + 16 + 16);
    bytes.push(field_tag(sort.field));
    bytes.push(u8::from(sort.direction.is_descending()));
    let (user, status) = (filter.user(), filter.status());
    bytes.push(u8::from(user.is_some()) | (u8::from(status.is_some()) << 1));
    if let Some(user) = user {
        bytes.extend_from_slice(user.as_uuid().as_bytes());
    }
    if let Some(status) = status {
        bytes.extend_from_slice(status.as_str().as_bytes());
    }
    ListScope::new(CursorKind::Task, "tasks.sorted", &bytes)
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

/// The cursor of `key`. A name longer than [`MAX_NAME_BYTES`] (which only
/// a column an operator widened could hold) is an [`Error::Decode`]: a
/// cursor cut short would resume the walk at the wrong row.
pub(super) fn encode_sorted_cursor(
    scope: ListScope,
    field: TaskSortField,
    key: &SortedKeyset,
) -> Result<String> {
    let mut bytes = Vec::with_capacity(FIXED_BYTES + 16);
    bytes.push(SORTED_CURSOR_VERSION);
    bytes.push(scope.kind as u8);
    bytes.extend_from_slice(&scope.list.to_be_bytes());
    bytes.push(field_tag(field));
    match &key.key {
        SortKey::At(at) => bytes.extend_from_slice(&at.unix_micros().to_be_bytes()),
        SortKey::Priority(priority, at) => {
            bytes.extend_from_slice(&priority.to_be_bytes());
            bytes.extend_from_slice(&at.unix_micros().to_be_bytes());
        }
        SortKey::Name(name) => {
            let len = u16::try_from(name.len())
                .ok()
                .filter(|&len| usize::from(len) <= MAX_NAME_BYTES)
                .ok_or_else(|| Error::Decode {
                    entity: "task",
                    column: "name",
                    id: Some(key.id.to_string()),
                    source: format!(
                        "{} bytes: longer than a cursor of the name order carries ({MAX_NAME_BYTES})",
                        name.len()
                    )
                    .into(),
                })?;
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(name.as_bytes());
        }
    }
    bytes.extend_from_slice(key.id.as_bytes());
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_be_bytes());
    Ok(hex(&bytes))
}

fn invalid() -> Error {
    Error::validation("cursor", "is not a cursor returned by this list")
}

/// Reads `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if rest.len() < n {
        return Err(invalid());
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N]> {
    take(rest, N)?.try_into().map_err(|_| invalid())
}

fn timestamp(micros: i64) -> Result<Timestamp> {
    // A forged cursor with a valid checksum may name any instant: one the
    // server cannot store is refused here, not by the server.
    if micros < crate::validate::POSTGRES_MIN_UNIX_MICROS {
        return Err(invalid());
    }
    Timestamp::from_unix_micros(micros).ok_or_else(invalid)
}

pub(super) fn decode_sorted_cursor(
    scope: ListScope,
    field: TaskSortField,
    cursor: &str,
) -> Result<SortedKeyset> {
    if cursor.len() > MAX_SORTED_CURSOR_LEN
        || cursor.len() < 2 * FIXED_BYTES
        || !cursor.len().is_multiple_of(2)
        || !cursor.is_ascii()
    {
        return Err(invalid());
    }
    let bytes = cursor
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(invalid)
        })
        .collect::<Result<Vec<u8>>>()?;
    let (body, sum) = bytes.split_at(bytes.len() - 4);
    if checksum(body).to_be_bytes() != sum {
        return Err(invalid());
    }
    let mut rest = body;
    let [version, kind] = take_array::<2>(&mut rest)?;
    let list = take_array::<4>(&mut rest)?;
    let [tag] = take_array::<1>(&mut rest)?;
    if version != SORTED_CURSOR_VERSION
        || kind != scope.kind as u8
        || list != scope.list.to_be_bytes()
        || tag != field_tag(field)
    {
        return Err(invalid());
    }
    let micros = |rest: &mut &[u8]| -> Result<Timestamp> {
        timestamp(i64::from_be_bytes(take_array::<8>(rest)?))
    };
    let key = match field {
        TaskSortField::CreatedAt | TaskSortField::UpdatedAt => SortKey::At(micros(&mut rest)?),
        TaskSortField::Priority => {
            let priority = i32::from_be_bytes(take_array::<4>(&mut rest)?);
            SortKey::Priority(priority, micros(&mut rest)?)
        }
        TaskSortField::Name => {
            let len = usize::from(u16::from_be_bytes(take_array::<2>(&mut rest)?));
            if len > MAX_NAME_BYTES {
                return Err(invalid());
            }
            let name = String::from_utf8(take(&mut rest, len)?.to_vec()).map_err(|_| invalid())?;
            // The server's text holds no NUL: a cursor naming one was not
            // made from a row.
            if name.contains('\0') {
                return Err(invalid());
            }
            SortKey::Name(name)
        }
    };
    let id = Uuid::from_bytes(take_array::<16>(&mut rest)?);
    if !rest.is_empty() {
        return Err(invalid());
    }
    Ok(SortedKeyset { key, id })
}

/// A checked request for a page of a sorted list.
#[derive(Debug, Clone)]
pub(super) struct SortedSpec {
    pub(super) sort: TaskSort,
    pub(super) filter: TaskFilter,
    pub(super) limit: i64,
    pub(super) after: Option<SortedKeyset>,
    pub(super) scope: ListScope,
}

impl SortedSpec {
    /// Checks the limit and decodes the cursor, before any I/O.
    pub(super) fn parse(filter: TaskFilter, sort: TaskSort, request: &PageRequest) -> Result<Self> {
        let scope = sorted_scope(sort, filter);
        Ok(SortedSpec {
            sort,
            filter,
            limit: page_limit(request)?,
            after: request
                .cursor
                .as_deref()
                .map(|c| decode_sorted_cursor(scope, sort.field, c))
                .transpose()?,
            scope,
        })
    }

    /// The rows of the page (and the one that tells whether more follow),
    /// in list order, through `voidrunner_tasks_sorted_page`.
    async fn rows(&self, c: &Conn<'_>, sql: &Query) -> Result<Vec<Row>> {
        let (mut name, mut at, mut priority) = (None::<&str>, None::<Timestamp>, None::<i32>);
        if let Some(after) = &self.after {
            match &after.key {
                SortKey::At(t) => at = Some(*t),
                SortKey::Priority(p, t) => (priority, at) = (Some(*p), Some(*t)),
                SortKey::Name(n) => name = Some(n.as_str()),
            }
        }
        let id = self.after.as_ref().map(|after| after.id);
        let field = self.sort.field.as_str();
        let descending = self.sort.direction == SortDirection::Descending;
        let (user, status) = (self.filter.user(), self.filter.status());
        let fetch = self.limit + 1;
        c.query(
            sql,
            &[
                &field,
                &descending,
                &user,
                &status,
                &name,
                &at,
                &priority,
                &id,
                &fetch,
            ],
        )
        .await
    }

    /// The page of `items`, its cursor from the last one when more follow.
    fn page<T>(&self, mut items: Vec<T>, task: impl Fn(&T) -> &Task) -> Result<Page<T>> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|last| {
                    let key = SortedKeyset::of(self.sort.field, task(last));
                    encode_sorted_cursor(self.scope, self.sort.field, &key)
                })
                .transpose()?
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// A page of tasks.
    pub(super) async fn tasks(&self, c: &Conn<'_>) -> Result<Page<Task>> {
        let rows = self.rows(c, &queries::lists::TASKS_SORTED).await?;
        let items = super::task::COLUMN_NAMES.read_all(&rows, super::task::read_task)?;
        self.page(items, |task| task)
    }

    /// A page of tasks, each with its latest execution and count.
    pub(super) async fn with_latest(&self, c: &Conn<'_>) -> Result<Page<TaskWithLatest>> {
        let rows = self
            .rows(c, &queries::lists::TASKS_SORTED_WITH_LATEST)
            .await?;
        let items = read_with_latest(&rows)?;
        self.page(items, |item| &item.task)
    }
}

/// Reads a task, its latest execution (none when the execution's id is
/// NULL) and its count from each row.
fn read_with_latest(rows: &[Row]) -> Result<Vec<TaskWithLatest>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let tasks = &super::task::COLUMN_NAMES;
    let executions = &super::execution::COLUMN_NAMES;
    let (task_at, execution_at) = (tasks.locate(first)?, executions.locate(first)?);
    let count_at = execution_at + executions.names.len();
    rows.iter()
        .map(|row| {
            let task = super::task::read_task(&mut tasks.reader(row, task_at))?;
            let latest: Option<TaskExecution> =
                match row.try_get::<_, Option<Uuid>>(execution_at)? {
                    None => None,
                    Some(_) => Some(super::execution::read_execution(
                        &mut executions.reader(row, execution_at),
                    )?),
                };
            let execution_count: i64 = row.try_get(count_at)?;
            Ok(TaskWithLatest::new(task, latest, execution_count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TaskStatus, UserId};

    fn keys() -> Vec<(TaskSortField, SortedKeyset)> {
        let at = Timestamp::from_unix_micros(1_700_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        vec![
            (
                TaskSortField::CreatedAt,
                SortedKeyset {
                    key: SortKey::At(at),
                    id,
                },
            ),
            (
                TaskSortField::UpdatedAt,
                SortedKeyset {
                    key: SortKey::At(at),
                    id,
                },
            ),
            (
                TaskSortField::Priority,
                SortedKeyset {
                    key: SortKey::Priority(7, at),
                    id,
                },
            ),
            (
                TaskSortField::Name,
                SortedKeyset {
                    key: SortKey::Name("naïve 名前 🦀 \u{200d}\u{202e}x".to_owned()),
                    id,
                },
            ),
        ]
    }

    fn filters() -> Vec<TaskFilter> {
        let (a, b) = (UserId::new(), UserId::new());
        vec![
            TaskFilter::All,
            TaskFilter::User(a),
            TaskFilter::User(b),
            TaskFilter::Status(TaskStatus::Pending),
            TaskFilter::Status(TaskStatus::Failed),
            TaskFilter::UserStatus(a, TaskStatus::Pending),
            TaskFilter::UserStatus(b, TaskStatus::Pending),
            TaskFilter::UserStatus(a, TaskStatus::Failed),
        ]
    }

    #[test]
    fn round_trip_in_every_order_and_filter() {
        for (field, key) in keys() {
            for direction in SortDirection::ALL {
                for filter in filters() {
                    let scope = sorted_scope(TaskSort::new(field, direction), filter);
                    let cursor = encode_sorted_cursor(scope, field, &key).unwrap();
                    assert!(cursor.len() <= MAX_SORTED_CURSOR_LEN);
                    assert_eq!(decode_sorted_cursor(scope, field, &cursor).unwrap(), key);
                }
            }
        }
    }

    #[test]
    fn refused_by_another_order_direction_filter_or_list() {
        let sorts: Vec<TaskSort> = TaskSort::all().collect();
        for (field, key) in keys() {
            for direction in SortDirection::ALL {
                for filter in filters() {
                    let sort = TaskSort::new(field, direction);
                    let cursor =
                        encode_sorted_cursor(sorted_scope(sort, filter), field, &key).unwrap();
                    for other_sort in &sorts {
                        for other_filter in filters() {
                            if (*other_sort, other_filter) == (sort, filter) {
                                continue;
                            }
                            let scope = sorted_scope(*other_sort, other_filter);
                            let err =
                                decode_sorted_cursor(scope, other_sort.field, &cursor).unwrap_err();
                            assert_eq!(err.field(), Some("cursor"));
                        }
                    }
                    // Nor is it a cursor of the unsorted lists, nor theirs one
                    // of a sorted list.
                    let task_list = ListScope::new(CursorKind::Task, "list", &[]);
                    assert!(decode_cursor(task_list, &cursor).is_err());
                }
            }
        }
        let keyset = Keyset {
            priority: 3,
            created_at: Timestamp::now(),
            id: Uuid::now_v7(),
        };
        let v2 = encode_cursor(ListScope::new(CursorKind::Task, "list", &[]), &keyset);
        for sort in TaskSort::all() {
            let scope = sorted_scope(sort, TaskFilter::All);
            assert!(decode_sorted_cursor(scope, sort.field, &v2).is_err());
        }
    }

    #[test]
    fn mangled_cursors_are_refused_without_panicking() {
        let scope = sorted_scope(TaskSort::ascending(TaskSortField::Name), TaskFilter::All);
        let field = TaskSortField::Name;
        let (_, key) = keys().pop().unwrap();
        let cursor = encode_sorted_cursor(scope, field, &key).unwrap();
        // Every single-character edit, every truncation.
        for i in 0..cursor.len() {
            let mut edited = cursor.clone().into_bytes();
            edited[i] = if edited[i] == b'0' { b'1' } else { b'0' };
            let edited = String::from_utf8(edited).unwrap();
            assert!(decode_sorted_cursor(scope, field, &edited).is_err(), "{i}");
            assert!(decode_sorted_cursor(scope, field, &cursor[..i]).is_err());
        }
        let huge = "0".repeat(10 * 1024 * 1024);
        for hostile in [
            "",
            "zz",
            "é",
            "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé",
            &format!("{cursor}00"),
            &huge,
        ] {
            assert!(decode_sorted_cursor(scope, field, hostile).is_err());
        }
    }

    /// A cursor forged with a correct checksum: its fields, whatever they
    /// say, are checked.
    fn forge(scope: ListScope, tag: u8, key: &[u8]) -> String {
        let mut bytes = vec![SORTED_CURSOR_VERSION, scope.kind as u8];
        bytes.extend_from_slice(&scope.list.to_be_bytes());
        bytes.push(tag);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(Uuid::nil().as_bytes());
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum.to_be_bytes());
        hex(&bytes)
    }

    #[test]
    fn forged_keys_are_checked() {
        let name = TaskSort::ascending(TaskSortField::Name);
        let scope = sorted_scope(name, TaskFilter::All);
        let good = forge(scope, 4, &[0, 2, b'h', b'i']);
        assert!(decode_sorted_cursor(scope, name.field, &good).is_ok());
        for key in [
            vec![0, 2, 0xff, 0xfe], // not UTF-8
            vec![0, 2, b'a', 0],    // a NUL
            vec![0, 9, b'a'],       // longer than it is
            vec![0xff, 0xff, b'a'], // longer than any name
            vec![0, 1, b'a', b'b'], // shorter than it is
        ] {
            assert!(decode_sorted_cursor(scope, name.field, &forge(scope, 4, &key)).is_err());
        }
        let at = TaskSort::ascending(TaskSortField::CreatedAt);
        let scope = sorted_scope(at, TaskFilter::All);
        for micros in [
            i64::MIN,
            i64::MAX,
            crate::validate::POSTGRES_MIN_UNIX_MICROS - 1,
        ] {
            let forged = forge(scope, 1, &micros.to_be_bytes());
            assert!(decode_sorted_cursor(scope, at.field, &forged).is_err());
        }
        // A key of another field under this field's tag.
        assert!(decode_sorted_cursor(scope, at.field, &forge(scope, 4, &[0, 0])).is_err());
        assert!(decode_sorted_cursor(scope, at.field, &forge(scope, 1, &[0; 12])).is_err());
    }

    #[test]
    fn an_overlong_name_is_a_decode_error_not_a_cut_cursor() {
        let sort = TaskSort::descending(TaskSortField::Name);
        let scope = sorted_scope(sort, TaskFilter::All);
        let longest = SortedKeyset {
            key: SortKey::Name("é".repeat(MAX_NAME_BYTES / 2)),
            id: Uuid::nil(),
        };
        let cursor = encode_sorted_cursor(scope, sort.field, &longest).unwrap();
        assert!(cursor.len() <= MAX_SORTED_CURSOR_LEN);
        assert_eq!(
            decode_sorted_cursor(scope, sort.field, &cursor).unwrap(),
            longest
        );
        let longer = SortedKeyset {
            key: SortKey::Name("x".repeat(MAX_NAME_BYTES + 1)),
            id: Uuid::nil(),
        };
        assert!(
            encode_sorted_cursor(scope, sort.field, &longer)
                .unwrap_err()
                .is_decode()
        );
    }
}
