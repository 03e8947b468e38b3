//! A migration's SQL cut into statements, for the migrations that run
//! outside a transaction one statement at a time.

/// One statement of a script, as [`split_statements`] found it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Statement<'a> {
    pub(super) sql: &'a str,
    /// 1-based line of the statement's first character.
    pub(super) line: usize,
}

/// Splits a script at its top-level semicolons, skipping what is only
/// whitespace and comments. Understands `--` and nested `/* */` comments,
/// `'…'` (and `E'…'` with backslash escapes), `"…"` and `$tag$…$tag$`;
/// not `BEGIN ATOMIC … END` bodies.
pub(super) fn split_statements(sql: &str) -> Vec<Statement<'_>> {
    fn ident(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
    }
    fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash: bool) -> usize {
        let mut j = open + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' if backslash => j += 2,
                q if q == quote && bytes.get(j + 1) == Some(&quote) => j += 2,
                q if q == quote => return j + 1,
                _ => j += 1,
            }
        }
        bytes.len()
    }
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut start: Option<usize> = None;
    let mut push = |start: usize, end: usize| {
        statements.push(Statement {
            sql: sql[start..end].trim_end(),
            line: sql[..start].matches('\n').count() + 1,
        });
    };
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == b'-' && next == Some(b'-') {
            i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            continue;
        }
        if c == b'/' && next == Some(b'*') {
            let mut depth = 0usize;
            while i < bytes.len() {
                if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if c == b';' {
            if let Some(s) = start.take() {
                push(s, i);
            }
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        start.get_or_insert(i);
        let after_ident = i > 0 && ident(bytes[i - 1]);
        i = match c {
            b'\'' => {
                let escape_string = after_ident
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && !(i > 1 && ident(bytes[i - 2]));
                skip_quoted(bytes, i, b'\'', escape_string)
            }
            b'"' => skip_quoted(bytes, i, b'"', false),
            b'$' if !after_ident => {
                let tag_end = bytes[i + 1..]
                    .iter()
                    .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80))
                    .map(|n| i + 1 + n)
                    .filter(|&j| bytes[j] == b'$' && !bytes[i + 1].is_ascii_digit());
                match tag_end {
                    Some(j) => {
                        let tag = &sql[i..=j];
                        sql[j + 1..]
                            .find(tag)
                            .map_or(bytes.len(), |n| j + 1 + n + tag.len())
                    }
                    None => i + 1,
                }
            }
            _ => i + 1,
        };
    }
    if let Some(s) = start {
        push(s, bytes.len());
    }
    statements
}
