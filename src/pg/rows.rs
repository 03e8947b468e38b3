//! Reading rows by position: each entity's columns, located once per
//! statement.

use super::*;

/// An entity's columns, as the crate's statements return them: one after
/// another in this order, possibly after or before columns of the
/// statement's own. Rows are read by position, found once per statement
/// (the rows of one statement share their columns) rather than by a name
/// lookup per column and row.
pub(super) struct Columns {
    /// `"user"`, `"task"` or `"execution"`, for errors.
    pub(super) entity: &'static str,
    /// In the order of the entity's `columns!()` (a unit test holds them
    /// to it) and of the fields its reader reads.
    pub(super) names: &'static [&'static str],
}

impl Columns {
    /// Where these columns start in the rows of `row`'s statement: a
    /// statement that does not return them all, in order, is an
    /// [`Error::Decode`] naming the first one missing, not a misread.
    pub(super) fn locate(&'static self, row: &Row) -> Result<usize> {
        let have = row.columns();
        let starts_here = |start: usize| {
            have.len() >= start + self.names.len()
                && have[start..]
                    .iter()
                    .zip(self.names)
                    .all(|(column, name)| column.name() == *name)
        };
        (0..have.len())
            .find(|&start| starts_here(start))
            .ok_or_else(|| Error::Decode {
                entity: self.entity,
                column: self.names.first().copied().unwrap_or_default(),
                id: None,
                source: "the statement did not return the entity's columns in order".into(),
            })
    }

    /// A reader of one row, found at `start` by [`locate`](Self::locate)
    /// on a row of the same statement.
    pub(super) fn reader<'r>(&'static self, row: &'r Row, start: usize) -> RowReader<'r> {
        RowReader {
            row,
            columns: self,
            start,
            next: 0,
        }
    }

    /// Reads one row with `read`.
    pub(super) fn read_one<T>(&'static self, row: &Row, read: Read<T>) -> Result<T> {
        read(&mut self.reader(row, self.locate(row)?))
    }

    /// Reads every row of one statement with `read`, locating the columns
    /// once.
    pub(super) fn read_all<T>(&'static self, rows: &[Row], read: Read<T>) -> Result<Vec<T>> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let start = self.locate(first)?;
        rows.iter()
            .map(|row| read(&mut self.reader(row, start)))
            .collect()
    }
}

/// Reads one entity from a [`RowReader`], its fields in the order of its
/// [`Columns`].
pub(super) type Read<T> = fn(&mut RowReader<'_>) -> Result<T>;

/// Reads the columns of one row of an entity, in order and fallibly: a
/// value the crate cannot represent (written by someone else) becomes
/// [`Error::Decode`] naming the row's id and the column, never a panic or
/// a default.
pub(super) struct RowReader<'r> {
    pub(super) row: &'r Row,
    pub(super) columns: &'static Columns,
    pub(super) start: usize,
    pub(super) next: usize,
}

impl<'r> RowReader<'r> {
    /// The next column's value.
    pub(super) fn next<T: tokio_postgres::types::FromSql<'r>>(&mut self) -> Result<T> {
        let index = self.next;
        self.next += 1;
        self.row
            .try_get(self.start + index)
            .map_err(|source| Error::Decode {
                entity: self.columns.entity,
                column: self.columns.names.get(index).copied().unwrap_or_default(),
                id: self
                    .row
                    .try_get::<_, Uuid>(self.start)
                    .ok()
                    .map(|id| id.to_string()),
                source: Box::new(source),
            })
    }
}
