//! Streaming replicas: reading the list of their connection strings, one
//! node per host, and what a configuration of replicas must hold.

use tokio_postgres::config::Host;

use super::url::parse_without_tls;
use super::*;

/// What a connection string of the URL form starts with; a list is cut
/// only before one, since a multi-host URL holds commas of its own.
const SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

impl DbConfig {
    /// Replaces the streaming replicas with those of `urls`: connection
    /// strings separated by commas (see
    /// [Streaming replicas](crate::config#streaming-replicas)), read as
    /// `VOIDRUNNER_DB_REPLICAS` is. A multi-host connection string stands
    /// for one node per host; a blank `urls` leaves no replicas.
    ///
    /// Fails with [`Error::Config`], leaving the list as it was, when a
    /// connection string does not parse, sets TLS keys of its own (the main
    /// URL's TLS settings apply to every connection), a `key=value` one is
    /// not the whole of `urls`, or a node (`host:port`) is listed twice.
    /// The error never quotes a connection string: it may hold a password.
    /// [`validate`](Self::validate) refuses more than [`MAX_REPLICAS`]
    /// nodes.
    pub fn set_replicas(&mut self, urls: &str) -> Result<()> {
        self.replicas = parse_replicas(urls)?;
        Ok(())
    }

    /// Appends the node (or, for a multi-host connection string, the nodes)
    /// of one connection string (`postgres://…` or the `key=value` form) to
    /// the streaming replicas. Fails as
    /// [`set_replicas`](Self::set_replicas) does, and also when `url` is a
    /// list or names a node already listed; the list is then unchanged.
    pub fn add_replica(&mut self, url: &str) -> Result<()> {
        let pieces = split(url);
        if pieces.len() > 1 {
            return Err(Error::config(
                "add_replica takes one connection string, and this is a list: use set_replicas",
            ));
        }
        let mut replicas = self.replicas.clone();
        replicas.extend(nodes(url.trim(), "the replica URL")?);
        no_node_twice(&replicas)?;
        self.replicas = replicas;
        Ok(())
    }

    /// Forgets every streaming replica: reads then all go to `url`.
    pub fn clear_replicas(&mut self) {
        self.replicas.clear();
    }

    /// `host:port/dbname` of each replica node, in order, for logs and
    /// messages; never includes credentials.
    pub fn replica_targets(&self) -> Vec<String> {
        self.replicas.iter().map(target_of).collect()
    }

    /// For each replica node, in order, these same settings pointed at that
    /// node: its connection string as `url`, no replicas and no direct URL
    /// of its own, and everything else (pool sizes, timeouts, TLS, pooler
    /// mode, role, `application_name`) as here. A replica URL that names
    /// its sessions (`application_name`) keeps its name, as a direct URL
    /// does. For the pool of each replica.
    pub fn replica_configs(&self) -> Vec<DbConfig> {
        let base = DbConfig {
            replicas: Vec::new(),
            direct: None,
            ..self.clone()
        };
        self.replicas
            .iter()
            .map(|node| DbConfig {
                connection: node.clone(),
                application_name: node
                    .get_application_name()
                    .unwrap_or(&self.application_name)
                    .to_owned(),
                ..base.clone()
            })
            .collect()
    }

    /// What [`validate`](Self::validate) checks of the replicas beyond
    /// their setting's own rule: each node's connection string suits the
    /// pooler mode, which applies to every node, and its own session name
    /// is one the server keeps.
    pub(super) fn validate_replicas(&self) -> Result<()> {
        for node in &self.replicas {
            let target = address_of(node);
            if !self.pooler.startup_options() && node.get_options().is_some() {
                return Err(Error::config(format!(
                    "replica {target} sets `options`, which a pooler refuses at connect (pooler \
                     mode {}): make those settings settings of the role (ALTER ROLE … SET …) \
                     instead",
                    self.pooler
                )));
            }
            if let Some(name) = node.get_application_name() {
                settings::application_name_fits(name).map_err(|message| {
                    Error::config(format!("application_name of replica {target} {message}"))
                })?;
            }
        }
        Ok(())
    }
}

/// The nodes of a list of replica connection strings; none when blank.
/// Errors name a connection string by its place in the list, never by its
/// text.
pub(super) fn parse_replicas(list: &str) -> Result<Vec<tokio_postgres::Config>> {
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    let pieces = split(list);
    let several = pieces.len() > 1;
    let mut replicas = Vec::new();
    for (index, piece) in pieces.into_iter().enumerate() {
        let what = if several {
            format!("replica URL {} of the list", index + 1)
        } else {
            "the replica URL".to_owned()
        };
        if piece.is_empty() {
            return Err(Error::config(format!("{what} is empty")));
        }
        if several && !SCHEMES.iter().any(|scheme| piece.starts_with(scheme)) {
            // Such a piece would swallow the commas of the next one.
            return Err(Error::config(format!(
                "{what} is in the key=value form, which can only be the whole list: list \
                 several replicas as postgres:// URLs"
            )));
        }
        replicas.extend(nodes(piece, &what)?);
    }
    no_node_twice(&replicas)?;
    Ok(replicas)
}

/// `list` cut before each comma that a `postgres://` or `postgresql://`
/// follows (after optional white space), each piece trimmed.
fn split(list: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (comma, _) in list.match_indices(',') {
        let next = list[comma + 1..].trim_start();
        if SCHEMES.iter().any(|scheme| next.starts_with(scheme)) {
            pieces.push(list[start..comma].trim());
            start = comma + 1;
        }
    }
    pieces.push(list[start..].trim());
    pieces
}

/// Whether `url`, of the URL form, holds a comma followed by `key=`: a
/// `key=value` connection string listed after it, which the driver would
/// read into the URL's database name or a parameter (where a password in
/// it would show in the target and in logs).
fn swallows_pairs(url: &str) -> bool {
    SCHEMES.iter().any(|scheme| url.starts_with(scheme))
        && url.match_indices(',').any(|(comma, _)| {
            let next = url[comma + 1..].trim_start();
            let key = next
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(next, |end| &next[..end]);
            !key.is_empty() && next[key.len()..].trim_start().starts_with('=')
        })
}

/// The nodes of one connection string, which `what` names in errors: one
/// per host, or the connection string itself when it names one.
fn nodes(url: &str, what: &str) -> Result<Vec<tokio_postgres::Config>> {
    if url.ends_with(',') {
        // The driver would read the comma into the database name.
        return Err(Error::config(format!(
            "{what} ends with a comma that no connection string follows"
        )));
    }
    if swallows_pairs(url) {
        return Err(Error::config(format!(
            "{what} is followed by one in the key=value form, which can only be the whole \
             list: list several replicas as postgres:// URLs"
        )));
    }
    let pg = parse_without_tls(url, what).map_err(|e| {
        let message = without_prefix(e);
        if message.starts_with(what) {
            Error::config(message)
        } else {
            Error::config(format!("{what}: {message}"))
        }
    })?;
    let (hosts, hostaddrs, ports) = (pg.get_hosts(), pg.get_hostaddrs(), pg.get_ports());
    let count = hosts.len().max(hostaddrs.len());
    // The driver would refuse these at every connect; refused here, where
    // the message can say which connection string is wrong.
    if count == 0 {
        return Err(Error::config(format!("{what} names no host")));
    }
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(Error::config(format!(
            "{what} names {} hosts and {} hostaddrs: give one hostaddr per host, or none",
            hosts.len(),
            hostaddrs.len()
        )));
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(Error::config(format!(
            "{what} names {} ports for {count} hosts: give one port per host, or one for all",
            ports.len()
        )));
    }
    let empty_host = hosts
        .iter()
        .any(|host| matches!(host, Host::Tcp(name) if name.is_empty()));
    if empty_host {
        return Err(Error::config(format!("{what} has an empty host name")));
    }
    if count == 1 {
        return Ok(vec![pg]);
    }
    Ok((0..count).map(|i| node_of(&pg, i)).collect())
}

/// The `i`-th node of a multi-host driver configuration: its host,
/// hostaddr and port, paired as the driver pairs them (the `i`-th, or the
/// only port, or none for 5432), and every other setting as in `pg`.
pub(super) fn node_of(pg: &tokio_postgres::Config, i: usize) -> tokio_postgres::Config {
    // The driver cannot remove hosts from a configuration, so the node is
    // built anew, setting by setting.
    let mut node = tokio_postgres::Config::new();
    if let Some(user) = pg.get_user() {
        node.user(user);
    }
    if let Some(password) = pg.get_password() {
        node.password(password);
    }
    if let Some(dbname) = pg.get_dbname() {
        node.dbname(dbname);
    }
    if let Some(options) = pg.get_options() {
        node.options(options);
    }
    if let Some(name) = pg.get_application_name() {
        node.application_name(name);
    }
    if let Some(timeout) = pg.get_connect_timeout() {
        node.connect_timeout(*timeout);
    }
    if let Some(timeout) = pg.get_tcp_user_timeout() {
        node.tcp_user_timeout(*timeout);
    }
    if let Some(interval) = pg.get_keepalives_interval() {
        node.keepalives_interval(interval);
    }
    if let Some(retries) = pg.get_keepalives_retries() {
        node.keepalives_retries(retries);
    }
    node.ssl_mode(pg.get_ssl_mode())
        .ssl_negotiation(pg.get_ssl_negotiation())
        .keepalives(pg.get_keepalives())
        .keepalives_idle(pg.get_keepalives_idle())
        .target_session_attrs(pg.get_target_session_attrs())
        .channel_binding(pg.get_channel_binding())
        .load_balance_hosts(pg.get_load_balance_hosts());
    match pg.get_hosts().get(i) {
        Some(Host::Tcp(name)) => {
            node.host(name);
        }
        #[cfg(unix)]
        Some(Host::Unix(path)) => {
            node.host_path(path);
        }
        None => {}
    }
    if let Some(hostaddr) = pg.get_hostaddrs().get(i) {
        node.hostaddr(*hostaddr);
    }
    match pg.get_ports() {
        [] => {}
        [one] => {
            node.port(*one);
        }
        many => {
            node.port(many[i]);
        }
    }
    node
}

/// `host:port` of a replica node (which has one host).
fn address_of(node: &tokio_postgres::Config) -> String {
    addresses_of(node).swap_remove(0)
}

/// Fails with [`Error::Config`] naming the first `host:port` listed twice.
fn no_node_twice(replicas: &[tokio_postgres::Config]) -> Result<()> {
    match twice(replicas) {
        Some(address) => Err(Error::config(format!(
            "replica {address} is listed twice: list each node once"
        ))),
        None => Ok(()),
    }
}

/// The first `host:port` of `replicas` listed twice, if any.
fn twice(replicas: &[tokio_postgres::Config]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    replicas
        .iter()
        .map(address_of)
        .find(|address| !seen.insert(address.clone()))
}

/// The rule of the `replicas` setting: at most [`MAX_REPLICAS`] nodes, each
/// once. Reading a list already refuses a node twice; checked again here
/// because `validate` is what every configuration passes through.
pub(super) fn replicas_fit(replicas: &[tokio_postgres::Config]) -> std::result::Result<(), String> {
    if replicas.len() > MAX_REPLICAS {
        return Err(format!(
            "name {} nodes; at most {MAX_REPLICAS} are accepted",
            replicas.len()
        ));
    }
    match twice(replicas) {
        Some(address) => Err(format!("name {address} twice: list each node once")),
        None => Ok(()),
    }
}
