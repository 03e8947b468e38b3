//! Every statement the crate sends, each with its name: the `.sql` files of
//! this folder, embedded at build time (the way River keeps its statements
//! in `.sql` files).
//!
//! | file | what |
//! |---|---|
//! | `users.sql` | the users table |
//! | `tasks.sql` | the tasks table, but for its status |
//! | `executions.sql` | the executions table, but for its status; the lock fragments |
//! | `queue.sql` | every status write of a task or an execution: claim, rescue, prune, enqueue, heartbeat, complete, finish, delete, task status |
//! | `lists.sql` | each list's pages and count |
//! | `counts.sql` | the tasks' counts by status (V12's counters), the other tables' estimated sizes, the recount |
//! | `events.sql` | the polling event stream, the server clock it starts from |
//! | `server.sql` | the health check, the probe sent with COMMIT, the privileges checked at connect |
//!
//! A section `-- name: x` of `f.sql` becomes the constant `f::X`, a
//! [`Query`] registered as `f.x` in [`ALL`]; `-- columns: x` defines a
//! column list, which statements write as `{{x}}` (or `{{a.x}}`, each
//! column prefixed with `a.`) and the row readers take from [`columns`];
//! `-- fragment: x` defines text written once and used by many statements,
//! as `{{x}}`: the lock fragments (`lock_one`, `lock_many`) on which the
//! crate's one lock order rests. The build fails on an unknown or doubly
//! defined name (`build.rs`).
//!
//! A leaf: this module imports nothing of the crate, so every layer may use
//! it. The migrations (`migrations/`) and the migration runner's
//! bookkeeping (`migrate/`) keep their own SQL, and so does the test
//! support (`testing/`).

/// A statement of the crate: its registered name (`file.name`, the name
/// its span and slow-statement events carry) and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Query {
    /// `file.name`, unique.
    pub(crate) name: &'static str,
    /// The SQL, with its column lists and fragments written out.
    pub(crate) text: &'static str,
}

#[allow(dead_code)]
mod generated {
    use super::Query;
    include!(concat!(env!("OUT_DIR"), "/statements.rs"));
}

pub(crate) use generated::*;

/// Every statement as `(name, text)`, for the plan tests that check each
/// one. Not part of the API.
#[doc(hidden)]
pub fn __statements() -> impl Iterator<Item = (&'static str, &'static str)> {
    ALL.iter().map(|q| (q.name, q.text))
}

/// The text of statement `name` (`file.name`, as [`__statements`] lists
/// them). Not part of the API.
#[doc(hidden)]
pub fn __statement(name: &str) -> Option<&'static str> {
    ALL.iter().find(|q| q.name == name).map(|q| q.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_placeholder_was_written_out() {
        let mut names: Vec<&str> = ALL.iter().map(|q| q.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for q in ALL {
            assert!(!q.text.contains("{{"), "{}: {}", q.name, q.text);
            assert!(!q.text.contains("--"), "{} keeps a comment", q.name);
        }
    }

    #[test]
    fn fragments_and_prefixed_columns_are_expanded() {
        assert!(queue::COMPLETE.text.contains("FOR NO KEY UPDATE OF e"));
        assert!(queue::COMPLETE.text.contains("done.updated_at"));
        assert_eq!(columns::CLAIMED.len(), columns::EXECUTION.len() + 3);
        assert_eq!(columns::USER[0], "id");
    }
}
