//! The fair claim's rotation (see `pg::queue`): pool-level state, kept
//! here with the pool so that transactions share it.

use crate::model::UserId;

/// Where the fair claim's rotation stands in one process: the user the
/// latest fair claim of a pool served last, after whom the next starts.
///
/// Kept in memory, not in a row every claim would update (which would make
/// every claim of the deployment wait for the one before): each process
/// rotates on its own, so each user gets a turn in every process's round,
/// and the rotations of many processes add up to one fair share each.
/// Concurrent claims of one process may start at the same user; each then
/// takes that user's next rows (SKIP LOCKED), so a user may get a turn
/// more than once in a round, never none.
#[derive(Debug, Default)]
pub(crate) struct ClaimRotation {
    last: std::sync::Mutex<Option<UserId>>,
}

impl ClaimRotation {
    pub(crate) fn position(&self) -> Option<UserId> {
        // A claim that panicked holding the lock left a valid position.
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn advance(&self, to: UserId) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(to);
    }
}
