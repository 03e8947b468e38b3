//! Keyset pages: cursors, and each list's SQL.

use super::*;

/// The page size a request asks for, with the default and the cap applied.
pub(super) fn page_limit(request: &PageRequest) -> Result<i64> {
    match request.limit {
        Some(0) => Err(Error::validation("limit", "must be at least 1")),
        Some(n) => Ok(i64::from(n.min(MAX_PAGE_LIMIT))),
        None => Ok(i64::from(DEFAULT_PAGE_LIMIT)),
    }
}

/// Which list a cursor belongs to; a cursor of one entity is refused by the
/// others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CursorKind {
    User = 1,
    Task = 2,
    Execution = 3,
    LogLine = 4,
}

/// The sort key of the last row of a page. Tasks sort by priority first;
/// users and executions leave it 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Keyset {
    pub(super) priority: i32,
    pub(super) created_at: Timestamp,
    pub(super) id: Uuid,
}

/// The list a cursor belongs to: the entity and a hash of the list's name
/// and filter. A cursor of `list_by_user(a)` is refused by
/// `list_by_user(b)`, by `list` and by `search_by_metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListScope {
    pub(super) kind: CursorKind,
    pub(super) list: u32,
}

impl ListScope {
    /// `name` names the list (`"tasks.by_user"`); `filter` is its filter
    /// value's bytes (empty for an unfiltered list).
    pub(super) fn new(kind: CursorKind, name: &str, filter: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + 1 + filter.len());
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(filter);
        ListScope {
            kind,
            list: checksum(&bytes),
        }
    }
}

pub(super) const CURSOR_VERSION: u8 = 2;
pub(super) const CURSOR_BYTES: usize = 1 + 1 + 4 + 4 + 8 + 16 + 4;

/// Hex of version, kind, list, priority, created_at (µs), id and a
/// checksum of those. The checksum catches edits and truncation, so a
/// mangled cursor is a validation error rather than a silently wrong page;
/// it is not a signature (a cursor only ever selects rows the caller may
/// list anyway).
pub(super) fn encode_cursor(scope: ListScope, key: &Keyset) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = Vec::with_capacity(CURSOR_BYTES);
    bytes.push(CURSOR_VERSION);
    bytes.push(scope.kind as u8);
    bytes.extend_from_slice(&scope.list.to_be_bytes());
    bytes.extend_from_slice(&key.priority.to_be_bytes());
    bytes.extend_from_slice(&key.created_at.unix_micros().to_be_bytes());
    bytes.extend_from_slice(key.id.as_bytes());
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_be_bytes());
    let mut text = String::with_capacity(CURSOR_BYTES * 2);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

pub(super) fn decode_cursor(scope: ListScope, cursor: &str) -> Result<Keyset> {
    let invalid = || Error::validation("cursor", "is not a cursor returned by this list");
    if cursor.len() != CURSOR_BYTES * 2 || !cursor.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..CURSOR_BYTES)
        .map(|i| u8::from_str_radix(&cursor[2 * i..2 * i + 2], 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let (body, sum) = bytes.split_at(CURSOR_BYTES - 4);
    let field = |range: std::ops::Range<usize>| body.get(range).ok_or_else(invalid);
    if checksum(body).to_be_bytes() != sum
        || body[0] != CURSOR_VERSION
        || body[1] != scope.kind as u8
        || field(2..6)? != scope.list.to_be_bytes()
    {
        return Err(invalid());
    }
    let priority = i32::from_be_bytes(field(6..10)?.try_into().map_err(|_| invalid())?);
    let micros = i64::from_be_bytes(field(10..18)?.try_into().map_err(|_| invalid())?);
    let id = Uuid::from_slice(field(18..34)?).map_err(|_| invalid())?;
    // A cursor forged with a valid checksum may name any instant: one the
    // server cannot store is refused here, not by the server's 22008.
    if micros < crate::validate::POSTGRES_MIN_UNIX_MICROS {
        return Err(invalid());
    }
    let created_at = Timestamp::from_unix_micros(micros).ok_or_else(invalid)?;
    Ok(Keyset {
        priority,
        created_at,
        id,
    })
}

/// FNV-1a, 32 bits.
pub(super) fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// A checked [`PageRequest`]: rows to return, where to start, and the list
/// its cursors belong to.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageSpec {
    pub(super) limit: i64,
    pub(super) after: Option<Keyset>,
    pub(super) scope: ListScope,
}

impl PageSpec {
    /// Checks the limit and decodes the cursor, before any I/O.
    pub(super) fn parse(scope: ListScope, request: &PageRequest) -> Result<Self> {
        Ok(PageSpec {
            limit: page_limit(request)?,
            after: request
                .cursor
                .as_deref()
                .map(|c| decode_cursor(scope, c))
                .transpose()?,
            scope,
        })
    }

    /// `LIMIT` for the query: one extra row tells whether a next page exists.
    pub(super) fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// What the three repositories share about their table: the entity's
/// columns and name (for errors), its keyset order, and its statement by
/// primary key (`src/queries/`).
pub(super) struct Table {
    /// The entity's columns, by name and in order, to read its rows.
    pub(super) read: &'static Columns,
    pub(super) cursor: CursorKind,
    /// Whether the order starts with `priority DESC` (tasks) before
    /// `created_at DESC, id DESC`.
    pub(super) by_priority: bool,
    /// `SELECT` of the columns `WHERE id = $1`.
    pub(super) get: Query,
}

/// The pages of one list (`src/queries/lists.sql`). Its count, when it
/// has one, is a statement of its own: the tasks' are read from counters
/// (`counts.sql`).
pub(super) struct ListSql {
    /// The first page.
    pub(super) first: Query,
    /// A page after a cursor.
    pub(super) after: Query,
}

impl ListSql {
    /// How many filter values the list takes, as `$1`… of its statements:
    /// the first page takes them, then the row count.
    pub(super) fn filters(&self) -> usize {
        (1..=9)
            .take_while(|i| self.first.text.contains(&format!("${i}")))
            .count()
            - 1
    }
}

impl Table {
    /// The scope of this table's list `name` filtered by `filter`.
    pub(super) fn scope(&self, name: &str, filter: &[u8]) -> ListScope {
        ListScope::new(self.cursor, name, filter)
    }

    /// The row with primary key `id`; `NotFound` when there is none.
    pub(super) async fn get_row<I>(&self, c: &Conn<'_>, id: I) -> Result<Row>
    where
        I: Param + std::fmt::Display,
    {
        c.query_opt(&self.get, &[&id])
            .await?
            .ok_or_else(|| Error::not_found(self.read.entity, id))
    }

    /// One page of the rows matching `list`'s filter values, as `T`s.
    pub(super) async fn page<T>(
        &self,
        c: &Conn<'_>,
        list: &ListSql,
        filters: &[&dyn Param],
        page: &PageSpec,
        read: Read<T>,
        key_of: fn(&T) -> Keyset,
    ) -> Result<Page<T>> {
        let rows = self.page_rows(c, list, filters, page).await?;
        // One undecodable row fails the page with its Decode error: a page
        // that silently skipped rows would hide them from every walk.
        Ok(into_page(self.read.read_all(&rows, read)?, page, key_of))
    }

    /// The rows of one page, in list order: the first, or those strictly
    /// after the cursor's row, so rows inserted meanwhile neither repeat nor
    /// shift rows already seen.
    pub(super) async fn page_rows(
        &self,
        c: &Conn<'_>,
        list: &ListSql,
        filters: &[&dyn Param],
        page: &PageSpec,
    ) -> Result<Vec<Row>> {
        debug_assert_eq!(list.filters(), filters.len());
        let mut params: Vec<&dyn Param> = Vec::with_capacity(6);
        params.extend_from_slice(filters);
        let sql = match &page.after {
            Some(key) => {
                if self.by_priority {
                    params.push(&key.priority);
                }
                params.extend([&key.created_at as &dyn Param, &key.id]);
                &list.after
            }
            None => &list.first,
        };
        let fetch = page.fetch();
        params.push(&fetch);
        c.query(sql, &params).await
    }

    /// The value of `count` (a `count(*)` of a list's rows) for the list's
    /// filter values.
    pub(super) async fn count(
        &self,
        c: &Conn<'_>,
        count: &Query,
        filters: &[&dyn Param],
    ) -> Result<i64> {
        let row = c.query_one(count, filters).await?;
        Ok(row.try_get(0)?)
    }
}

/// Builds a page from up to `limit + 1` rows: the extra row only says that
/// another page exists.
pub(super) fn into_page<T>(
    mut items: Vec<T>,
    page: &PageSpec,
    key_of: impl Fn(&T) -> Keyset,
) -> Page<T> {
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|last| encode_cursor(page.scope, &key_of(last)))
    } else {
        None
    };
    Page { items, next_cursor }
}
