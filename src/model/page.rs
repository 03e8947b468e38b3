use serde::{Deserialize, Serialize};

/// Items per page when a [`PageRequest`] names no limit.
pub const DEFAULT_PAGE_LIMIT: u32 = 20;
/// The largest page a repository returns; larger limits are capped to it.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// Which page of a list to return.
///
/// Pages are keyset pages: [`Page::next_cursor`] encodes the sort key and id
/// of the last row returned, and the next page starts strictly after it. So
/// walking every page returns every row exactly once, even while rows are
/// inserted, and page 1,000 costs what page 1 costs.
///
/// Not `#[non_exhaustive]`, on purpose: it is written as a struct literal
/// (`PageRequest { limit: Some(50), ..Default::default() }`); a new field
/// would come in a major release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Rows per page: [`DEFAULT_PAGE_LIMIT`] when `None`, capped at
    /// [`MAX_PAGE_LIMIT`]; 0 is refused.
    pub limit: Option<u32>,
    /// The [`next_cursor`](Page::next_cursor) of the previous page; `None`
    /// for the first page. Opaque: a cursor that was altered is refused with
    /// [`Error::Validation`](crate::Error::Validation) on the field `cursor`.
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The first page, of `limit` rows.
    pub fn first(limit: u32) -> Self {
        PageRequest {
            limit: Some(limit),
            cursor: None,
        }
    }

    /// The page after `cursor`, of `limit` rows.
    pub fn after(cursor: impl Into<String>, limit: u32) -> Self {
        PageRequest {
            limit: Some(limit),
            cursor: Some(cursor.into()),
        }
    }

    /// The request for the page after `page`, or `None` after the last page.
    pub fn next<T>(&self, page: &Page<T>) -> Option<Self> {
        page.next_cursor.as_ref().map(|cursor| PageRequest {
            limit: self.limit,
            cursor: Some(cursor.clone()),
        })
    }
}

/// One page of a list.
///
/// Serialises and deserialises as `{"items": [...], "next_cursor": ...}`.
/// Not `#[non_exhaustive]`, on purpose: a mock of a repository builds its
/// pages as `Page { items, next_cursor: None }` (or with [`Page::last`]);
/// a new field would come in a major release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The rows, in the list's order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` when this is the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The last page: `items` and no next cursor. What a mock of a list
    /// method returns when the caller should not page further.
    pub fn last(items: Vec<T>) -> Self {
        Page {
            items,
            next_cursor: None,
        }
    }
}
