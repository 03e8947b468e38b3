//! What the queue's operations need of its statements (`src/queries/queue.sql`):
//! the columns of a claimed row.

use super::*;

/// The columns of a claimed row: the execution's, then its task's script
/// (see `queue.claim`), in `read_claimed`'s order.
pub(super) static CLAIMED_COLUMNS: Columns = Columns {
    entity: "execution",
    names: &queries::columns::CLAIMED,
};
