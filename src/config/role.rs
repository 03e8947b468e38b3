//! [`DbConfig::role`]: what a role name may be, how it reaches the server
//! (quoted every way it is sent), and the error of a role the server
//! refuses.

use super::*;
use crate::error::SqlState;

/// Whether `role` can be set for `config`'s sessions; `Err` says why not,
/// after `role`.
pub(super) fn role_fits(
    role: &Option<String>,
    config: &DbConfig,
) -> std::result::Result<(), String> {
    let Some(role) = role else {
        return Ok(());
    };
    if role.is_empty() {
        return Err("is empty: leave it unset to run as the URL's user".to_owned());
    }
    if role.len() > ROLE_MAX_BYTES {
        return Err(format!(
            "is {} bytes; a PostgreSQL name holds at most {ROLE_MAX_BYTES} (the server would cut it, and could name another role)",
            role.len()
        ));
    }
    if role.contains('\0') {
        return Err("contains a NUL character, which no PostgreSQL name holds".to_owned());
    }
    // The server reads the value `none` as SET ROLE NONE, quoted or not:
    // the sessions would silently run as the URL's user.
    if role == "none" {
        return Err(
            "is `none`, which the server reads as no role at all (SET ROLE NONE): leave it unset instead"
                .to_owned(),
        );
    }
    if config.pooler == PoolerMode::Transaction {
        return Err(
            "cannot be used behind a transaction-mode pooler (pooler = transaction): the pooler runs \
             every statement sent outside a transaction on whichever server connection is free, \
             where no SET ROLE of this pool holds, so some statements would run as the login user. \
             Log in through the pooler as a role that is a member of it instead, or make it that \
             login's default (ALTER ROLE login SET role = '…')"
                .to_owned(),
        );
    }
    Ok(())
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `-c role=…` for the startup `options`: the server splits them at white
/// space and reads a backslash as escaping the next character, so both are
/// escaped; the value is the role's name as it is (`validate` refused a
/// NUL).
pub(super) fn startup_option(role: &str) -> String {
    let mut option = String::from("-c role=");
    for c in role.chars() {
        if c == '\\' || c.is_ascii_whitespace() || c == '\u{b}' {
            option.push('\\');
        }
        option.push(c);
    }
    option
}

impl DbConfig {
    /// `SET ROLE "…"` of [`role`](Self::role) (no `;`), for the sessions
    /// that cannot take it as a startup option: behind a session-mode
    /// pooler, and the dedicated ones (migrations, the listener), whose
    /// direct URL may be such a pooler.
    pub(crate) fn set_role_sql(&self) -> Option<String> {
        self.role
            .as_deref()
            .map(|role| format!("SET ROLE {}", quote_ident(role)))
    }

    /// `err`, met opening or setting up a session of this configuration,
    /// as the [`Error::Config`] it is when the server refused
    /// [`role`](Self::role): it does not exist (22023) or the URL's user
    /// may not take it (42501). Any other error as it is.
    pub(crate) fn role_refused(&self, err: Error) -> Error {
        let Some(role) = self.role.as_deref() else {
            return err;
        };
        let refused = err.sqlstate().is_some_and(|state| {
            *state == SqlState::INSUFFICIENT_PRIVILEGE
                || *state == SqlState::INVALID_PARAMETER_VALUE
        });
        let Error::Database { message, .. } = &err else {
            return err;
        };
        // The server names the role it refused, in double quotes as it is
        // (not escaped); a 42501 of anything else (no CONNECT on the
        // database) stays what it is.
        if !refused || !message.contains(&format!("role \"{role}\"")) {
            return err;
        }
        let grant = match self.connection.get_user() {
            Some(user) => format!("GRANT {} TO {}", quote_ident(role), quote_ident(user)),
            None => format!("GRANT {} TO the URL's user", quote_ident(role)),
        };
        Error::config(format!(
            "the server refused the role setting: {message}. The role must exist and the URL's \
             user be a member of it ({grant}); see voidrunner_db::roles"
        ))
    }
}
