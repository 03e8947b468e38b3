//! Connection strings: the URL and `key=value` forms, and the TLS keys
//! they carry.

use super::*;

/// The TLS keys of a connection string; `None` where it gave none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SslSettings {
    pub(super) mode: Option<SslMode>,
    pub(super) root_cert: Option<PathBuf>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
}

impl SslSettings {
    /// Whether any TLS setting was given.
    pub(super) fn given(&self) -> bool {
        self.mode.is_some() || self.root_cert.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Records `key` (one of [`conninfo::SSL_KEYS`]) set to `value`; an
    /// empty value is no value, as for libpq.
    pub(super) fn set(&mut self, key: &str, value: String) -> Result<()> {
        let path = (!value.is_empty()).then(|| PathBuf::from(&value));
        match key {
            "sslmode" => self.mode = Some(value.parse()?),
            "sslrootcert" => self.root_cert = path,
            "sslcert" => self.cert = path,
            _ => self.key = path,
        }
        Ok(())
    }
}

/// The driver configuration and the TLS settings of a connection string.
///
/// The driver refuses `sslmode=verify-ca`, `sslmode=verify-full`,
/// `sslrootcert`, `sslcert` and `sslkey`, so those keys are taken out of
/// the string before it parses the rest.
pub(super) fn parse_url(url: &str) -> Result<(tokio_postgres::Config, SslSettings)> {
    let (rest, ssl) = conninfo::take_ssl(url)?;
    // The driver's parse error can quote the input, which may hold a
    // password: report only that it failed and how.
    let config = rest.parse::<tokio_postgres::Config>().map_err(|e| {
        let reason = e.to_string();
        let reason = if reason.contains(url) || reason.contains(rest.as_str()) {
            "malformed connection string".to_owned()
        } else {
            reason
        };
        Error::config(format!("invalid database URL: {reason}"))
    })?;
    // No host name holds '@': the driver read an unencoded '@' of the
    // password as the end of the credentials, leaving the rest of the
    // password in the host, where logs would print it.
    let leaked = config.get_hosts().iter().any(|host| match host {
        tokio_postgres::config::Host::Tcp(name) => name.contains('@'),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => false,
    });
    if leaked {
        return Err(Error::config(
            "invalid database URL: a host name contains '@'; percent-encode an '@' in the \
             user name or password as %40",
        ));
    }
    Ok((config, ssl))
}

/// The direct URL: the TLS settings of the configuration apply to it as to
/// every connection, so TLS keys of its own would be silently ignored, and
/// are refused instead.
pub(super) fn parse_direct_url(url: &str) -> Result<tokio_postgres::Config> {
    parse_without_tls(url, "the direct URL")
}

/// A connection string other than the main URL (the direct URL, a
/// replica's), which `what` names in the error: TLS keys are refused, as
/// the main URL's TLS settings apply to every connection and its own would
/// be silently ignored. Errors never quote the string.
pub(super) fn parse_without_tls(url: &str, what: &str) -> Result<tokio_postgres::Config> {
    let (config, ssl) = parse_url(url)?;
    if ssl.given() {
        return Err(Error::config(format!(
            "{what} sets TLS keys (sslmode, sslrootcert, sslcert, sslkey): the TLS \
             settings of the main URL and the VOIDRUNNER_DB_SSL* variables apply to every \
             connection, this one included; set them there"
        )));
    }
    Ok(config)
}

/// Taking the TLS keys out of a connection string, in the two forms the
/// driver parses, the way it parses them (so that what is left means to it
/// what it meant before).
mod conninfo {
    use super::SslSettings;
    use crate::error::{Error, Result};

    /// The keys the crate handles itself.
    pub(super) const SSL_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

    /// The string without its TLS keys, and their values (the last one of a
    /// key that is repeated, as for libpq). Errors never quote the input.
    pub(super) fn take_ssl(conninfo: &str) -> Result<(String, SslSettings)> {
        match ["postgres://", "postgresql://"]
            .iter()
            .find_map(|prefix| conninfo.strip_prefix(prefix).map(|rest| (*prefix, rest)))
        {
            Some((prefix, rest)) => take_from_url(prefix, rest),
            None => take_from_pairs(conninfo),
        }
    }

    fn take_from_url(prefix: &str, rest: &str) -> Result<(String, SslSettings)> {
        let mut ssl = SslSettings::default();
        // As the driver: the credentials run to the first `@`, wherever it
        // is; the parameters start at the first `?` after them.
        let after_credentials = rest.find('@').map_or(0, |at| at + 1);
        let Some(question) = rest[after_credentials..]
            .find('?')
            .map(|q| after_credentials + q)
        else {
            return Ok((format!("{prefix}{rest}"), ssl));
        };
        let mut params = &rest[question + 1..];
        let mut kept: Vec<&str> = Vec::new();
        while !params.is_empty() {
            // `key=value`, the value running to the next `&`; without an
            // `=` the driver reports the error, so the rest is left to it.
            let Some(eq) = params.find('=') else {
                kept.push(params);
                break;
            };
            let end = params[eq + 1..]
                .find('&')
                .map_or(params.len(), |a| eq + 1 + a);
            let (pair, key, value) = (&params[..end], &params[..eq], &params[eq + 1..end]);
            params = params.get(end + 1..).unwrap_or("");
            let key = percent_decode(key, "a parameter name")?;
            if SSL_KEYS.contains(&key.as_str()) {
                let value = percent_decode(value, &key)?;
                ssl.set(&key, value)?;
            } else {
                kept.push(pair);
            }
        }
        let mut url = format!("{prefix}{}", &rest[..question]);
        if !kept.is_empty() {
            url.push('?');
            url.push_str(&kept.join("&"));
        }
        Ok((url, ssl))
    }

    /// `%XX` decoded, leniently as the driver does (a `%` not followed by
    /// two hex digits stays as it is); the result must be UTF-8.
    fn percent_decode(text: &str, what: &str) -> Result<String> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if bytes[i] == b'%'
                && let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                )
            {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).map_err(|_| {
            Error::config(format!(
                "invalid database URL: {what} is not UTF-8 once percent-decoded"
            ))
        })
    }

    /// The `key=value` form: keys and values separated by whitespace,
    /// spaces allowed around `=`, values either plain or single-quoted, with
    /// backslash escapes in both.
    fn take_from_pairs(conninfo: &str) -> Result<(String, SslSettings)> {
        let mut ssl = SslSettings::default();
        let mut kept: Vec<&str> = Vec::new();
        let mut scanner = Scanner {
            text: conninfo,
            at: 0,
        };
        loop {
            scanner.skip_whitespace();
            let start = scanner.at;
            let key = scanner.take_while(|c| !c.is_whitespace() && c != '=');
            if key.is_empty() {
                if scanner.at < conninfo.len() {
                    // A stray `=`: stopping here would drop the rest of
                    // the string, its TLS keys included, where the driver
                    // refuses the whole string.
                    return Err(Error::config(
                        "invalid database URL: a `=` without a key in the key=value form",
                    ));
                }
                break;
            }
            scanner.skip_whitespace();
            let Some(value) = scanner.eat('=').and_then(|()| {
                scanner.skip_whitespace();
                scanner.value()
            }) else {
                // Malformed: the driver reports it, on the string as given.
                return Ok((conninfo.to_owned(), SslSettings::default()));
            };
            if SSL_KEYS.contains(&key) {
                ssl.set(key, value)?;
            } else {
                kept.push(&conninfo[start..scanner.at]);
            }
        }
        Ok((kept.join(" "), ssl))
    }

    struct Scanner<'a> {
        text: &'a str,
        at: usize,
    }

    impl<'a> Scanner<'a> {
        fn peek(&self) -> Option<char> {
            self.text[self.at..].chars().next()
        }

        fn next(&mut self) -> Option<char> {
            let c = self.peek()?;
            self.at += c.len_utf8();
            Some(c)
        }

        fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
            let start = self.at;
            while self.peek().is_some_and(&keep) {
                self.next();
            }
            &self.text[start..self.at]
        }

        fn skip_whitespace(&mut self) {
            self.take_while(char::is_whitespace);
        }

        fn eat(&mut self, expected: char) -> Option<()> {
            (self.next()? == expected).then_some(())
        }

        /// A plain or quoted value, unescaped; `None` if malformed.
        fn value(&mut self) -> Option<String> {
            let quoted = self.peek() == Some('\'');
            if quoted {
                self.next();
            }
            let mut value = String::new();
            loop {
                match self.peek() {
                    None if quoted => return None,
                    None => break,
                    Some('\'') if quoted => {
                        self.next();
                        return Some(value);
                    }
                    Some(c) if c.is_whitespace() && !quoted => break,
                    Some(_) => {}
                }
                match self.next()? {
                    '\\' => value.extend(self.next()),
                    c => value.push(c),
                }
            }
            // As the driver: a plain value must not be empty.
            (!value.is_empty()).then_some(value)
        }
    }
}
