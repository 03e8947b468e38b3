//! Streaming replicas: the list and its nodes, where it is read from, what
//! is refused, and the three durations that go with it.

use super::*;
use crate::config::replicas::node_of;

const MAIN: &str = "postgres://app:main-pw@primary:5432/vr";

fn base() -> DbConfig {
    DbConfig::from_url(MAIN).unwrap()
}

fn with_replicas(list: &str) -> Result<DbConfig> {
    let mut config = base();
    config.set_replicas(list)?;
    config.validate()?;
    Ok(config)
}

/// `host:port` of each node, as the driver would pair them.
fn ports(config: &DbConfig) -> Vec<(String, u16)> {
    config
        .replica_configs()
        .iter()
        .map(|c| {
            let pg = c.pg_config();
            assert_eq!(pg.get_hosts().len(), 1, "one host per node");
            let host = match &pg.get_hosts()[0] {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = match pg.get_ports() {
                [] => 5432,
                [one] => *one,
                many => panic!("{many:?}: one port per node"),
            };
            (host, port)
        })
        .collect()
}

fn pair(host: &str, port: u16) -> (String, u16) {
    (host.to_owned(), port)
}

#[test]
fn the_environment_reads_a_list_of_two_urls() {
    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", MAIN),
        (
            "VOIDRUNNER_DB_REPLICAS",
            "postgres://ro:r1-pw@replica1:5433/vr,postgresql://ro:r2-pw@replica2/vr",
        ),
    ]))
    .unwrap();
    assert_eq!(
        c.replica_targets(),
        ["replica1:5433/vr", "replica2:5432/vr"]
    );
    let configs = c.replica_configs();
    assert_eq!(configs.len(), 2);
    assert_eq!(configs[0].pg_config().get_user(), Some("ro"));
    assert_eq!(configs[1].pg_config().get_password(), Some(&b"r2-pw"[..]));
    // The primary is untouched.
    assert_eq!(c.display_target(), "primary:5432/vr");
}

#[test]
fn a_blank_value_is_no_replicas() {
    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", MAIN),
        ("VOIDRUNNER_DB_REPLICAS", "  "),
    ]))
    .unwrap();
    assert!(c.replica_targets().is_empty());
    let mut c = with_replicas("postgres://u@r1/db").unwrap();
    c.set_replicas("").unwrap();
    assert!(c.replica_configs().is_empty());
    let mut c = with_replicas("postgres://u@r1/db").unwrap();
    c.clear_replicas();
    assert!(c.replica_targets().is_empty());
}

#[test]
fn a_multi_host_url_is_one_node_per_host() {
    let c = with_replicas("postgres://u:pw@r1:5432,r2:5433,r3:6000/db").unwrap();
    assert_eq!(
        ports(&c),
        [pair("r1", 5432), pair("r2", 5433), pair("r3", 6000)]
    );
    assert_eq!(
        c.replica_targets(),
        ["r1:5432/db", "r2:5433/db", "r3:6000/db"]
    );
    for node in c.replica_configs() {
        let pg = node.pg_config();
        assert_eq!(pg.get_user(), Some("u"));
        assert_eq!(pg.get_password(), Some(&b"pw"[..]));
        assert_eq!(pg.get_dbname(), Some("db"));
    }
    // One port for all hosts, or none (5432).
    let shared = with_replicas("host=r1,r2 port=6432 user=u dbname=db").unwrap();
    assert_eq!(ports(&shared), [pair("r1", 6432), pair("r2", 6432)]);
    let default = with_replicas("postgres://u@r1,r2/db").unwrap();
    assert_eq!(default.replica_targets(), ["r1:5432/db", "r2:5432/db"]);
}

#[test]
fn a_node_keeps_every_setting_of_its_connection_string() {
    let url = "postgres://u:pw@r1:5433,r2:5434/db?options=-c%20search_path%3Dapp\
               &application_name=ro&connect_timeout=3&tcp_user_timeout=4&keepalives=0\
               &keepalives_idle=50&keepalives_interval=6&keepalives_retries=7\
               &target_session_attrs=read-only&channel_binding=require\
               &load_balance_hosts=random";
    let pg: tokio_postgres::Config = url.parse().unwrap();
    let nodes = [node_of(&pg, 0), node_of(&pg, 1)];
    for (node, (host, port)) in nodes.iter().zip([("r1", 5433), ("r2", 5434)]) {
        let single: tokio_postgres::Config = url
            .replace("r1:5433,r2:5434", &format!("{host}:{port}"))
            .parse()
            .unwrap();
        // The driver's equality covers every field: nothing was dropped.
        assert_eq!(node, &single, "{host}");
    }
}

#[test]
fn hostaddrs_pair_with_hosts() {
    let c = with_replicas("host=r1,r2 hostaddr=10.0.0.1,10.0.0.2 port=5432,5433 user=u dbname=db")
        .unwrap();
    let addrs: Vec<_> = c
        .replica_configs()
        .iter()
        .map(|c| c.pg_config().get_hostaddrs().to_vec())
        .collect();
    assert_eq!(
        addrs,
        [
            vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()],
            vec!["10.0.0.2".parse().unwrap()]
        ]
    );
    assert_eq!(ports(&c), [pair("r1", 5432), pair("r2", 5433)]);
    // Hostaddrs alone are the nodes' addresses.
    let bare = with_replicas("hostaddr=10.0.0.1,10.0.0.2 user=u dbname=db").unwrap();
    assert_eq!(
        bare.replica_targets(),
        ["10.0.0.1:5432/db", "10.0.0.2:5432/db"]
    );
    for (list, said) in [
        (
            "host=r1,r2 hostaddr=10.0.0.1 user=u password=s3cr3t",
            "2 hosts and 1 hostaddrs",
        ),
        (
            "host=r1,r2,r3 port=1,2 user=u password=s3cr3t",
            "2 ports for 3 hosts",
        ),
        ("user=u password=s3cr3t dbname=db", "names no host"),
    ] {
        let err = with_replicas(list).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(said), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}

#[test]
fn a_list_may_mix_single_and_multi_host_urls() {
    let c = with_replicas(
        " postgres://u:pw@r1:5432,r2:5433/db ,\tpostgresql://u@r3/db,postgres://u@r4:7000,r5/db ",
    )
    .unwrap();
    assert_eq!(
        c.replica_targets(),
        [
            "r1:5432/db",
            "r2:5433/db",
            "r3:5432/db",
            "r4:7000/db",
            "r5:5432/db"
        ]
    );
}

#[test]
fn the_key_value_form_is_the_whole_value_or_nothing() {
    let c = with_replicas("host=r1,r2 port=5432,5433 user=u password=pw dbname=db").unwrap();
    assert_eq!(ports(&c), [pair("r1", 5432), pair("r2", 5433)]);
    assert_eq!(c.replica_targets(), ["r1:5432/db", "r2:5433/db"]);
    for list in [
        "host=r1 user=u password=s3cr3t, postgres://u@r2/db",
        "postgres://u@r1/db, host=r2 user=u password=s3cr3t",
        "postgres://u@r1/db,password=s3cr3t",
        "postgres://u@r1,host = r2 password=s3cr3t",
        "postgres://u@r1/db?application_name=x, password=s3cr3t",
    ] {
        let err = with_replicas(list).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("key=value"), "{list}: {text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    for list in [
        "postgres://u@r1/db,,postgres://u@r2/db",
        "postgres://u@r1/db, ",
        ",postgres://u@r1/db",
    ] {
        let err = with_replicas(list).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{list}: {err:?}");
    }
}

#[test]
fn a_tls_key_in_a_replica_url_is_refused_without_quoting_it() {
    for list in [
        "postgres://u:s3cr3t@r1/db?sslmode=require",
        "postgres://u@r0/db,postgres://u:s3cr3t@r1/db?sslrootcert=/ca.pem",
        "host=r1 user=u password=s3cr3t sslcert=/c.pem sslkey=/k.pem",
    ] {
        let err = with_replicas(list).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("TLS"), "{text}");
        assert!(text.contains("replica URL"), "{text}");
        assert!(!text.contains("s3cr3t") && !text.contains("r1"), "{text}");
        let env = DbConfig::from_lookup(lookup(&[
            ("DATABASE_URL", MAIN),
            ("VOIDRUNNER_DB_REPLICAS", list),
        ]))
        .unwrap_err();
        let text = env.to_string();
        assert!(text.contains("VOIDRUNNER_DB_REPLICAS"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    let err = with_replicas("postgres://u:s3cr3t@r1:notaport/db").unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    // The direct URL still says it is the direct one.
    let err = base()
        .set_direct_url("postgres://u@d/db?sslmode=require")
        .unwrap_err();
    assert!(
        err.to_string().contains("the direct URL sets TLS keys"),
        "{err}"
    );
}

#[test]
fn debug_never_shows_a_replica_password() {
    let c = with_replicas(
        "postgres://ro:s3cr3t-r1@r1:5433,r2/db,postgres://ro@r3/db?password=s3cr3t-r3",
    )
    .unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(
        shown.contains(r#"replica_targets: ["r1:5433/db", "r2:5432/db", "r3:5432/db"]"#),
        "{shown}"
    );
    assert!(
        shown.contains(
            r#"replica_passwords: [Some("<redacted>"), Some("<redacted>"), Some("<redacted>")]"#
        ),
        "{shown}"
    );
    let none = with_replicas("postgres://ro@r1/db").unwrap();
    assert!(
        format!("{none:?}").contains("replica_passwords: [None]"),
        "{none:?}"
    );
    for replica in c.replica_configs() {
        let shown = format!("{replica:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}

#[test]
fn a_node_listed_twice_is_refused_by_its_address() {
    for list in [
        "postgres://u@r1:5433/db,postgres://other@r1:5433/otherdb",
        "postgres://u@r1:5433,r1:5433/db",
        "postgres://u@r1/db,postgres://u@r1:5432/db",
    ] {
        let err = with_replicas(list).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains("r1:543"), "{err}");
        assert!(err.to_string().contains("twice"), "{err}");
    }
    // Another port of the same host is another node.
    with_replicas("postgres://u@r1:5432,r1:5433/db").unwrap();
    let mut c = with_replicas("postgres://u@r1/db").unwrap();
    let err = c.add_replica("host=r1 port=5432 user=u").unwrap_err();
    assert!(err.to_string().contains("r1:5432"), "{err}");
    assert_eq!(c.replica_targets(), ["r1:5432/db"], "unchanged");
    let err = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", MAIN),
        (
            "VOIDRUNNER_DB_REPLICAS",
            "postgres://u@r1/db,postgres://u@r1/db",
        ),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("VOIDRUNNER_DB_REPLICAS"), "{err}");
    assert!(err.to_string().contains("r1:5432"), "{err}");
}

#[test]
fn add_replica_appends_one_connection_string() {
    let mut c = base();
    c.add_replica("postgres://u@r1/db").unwrap();
    c.add_replica("host=r2,r3 port=1,2 user=u dbname=db")
        .unwrap();
    assert_eq!(c.replica_targets(), ["r1:5432/db", "r2:1/db", "r3:2/db"]);
    let err = c
        .add_replica("postgres://u@r4/db,postgres://u@r5/db")
        .unwrap_err();
    assert!(err.to_string().contains("set_replicas"), "{err}");
    let err = c
        .add_replica("postgres://u:s3cr3t@r4/db?sslmode=require")
        .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert_eq!(c.replica_targets().len(), 3, "unchanged by a refusal");
    // A refused list leaves the previous one.
    let err = c.set_replicas("postgres://u@r9:bad/db").unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert_eq!(c.replica_targets().len(), 3);
    c.validate().unwrap();
}

#[test]
fn at_most_max_replicas_nodes() {
    assert_eq!(MAX_REPLICAS, 64);
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("postgres://u:pw@r{i}:5432/db"))
            .collect::<Vec<_>>()
            .join(",")
    };
    with_replicas(&list(64)).unwrap();
    let err = with_replicas(&list(65)).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("replicas"), "{err}");
    assert!(err.to_string().contains("65"), "{err}");
    let err = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", MAIN),
        ("VOIDRUNNER_DB_REPLICAS", &list(65)),
    ]))
    .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    // One multi-host URL counts its hosts.
    let hosts: Vec<String> = (0..65).map(|i| format!("r{i}")).collect();
    let many = format!("postgres://u@{}/db", hosts.join(","));
    assert!(matches!(with_replicas(&many), Err(Error::Config { .. })));
    let mut c = with_replicas(&list(64)).unwrap();
    c.add_replica("postgres://u@extra/db").unwrap();
    assert!(matches!(c.validate(), Err(Error::Config { .. })));
}

#[test]
fn replica_durations_have_defaults_and_ranges() {
    let c = base();
    assert_eq!(c.replica_max_lag, Duration::from_secs(1));
    assert_eq!(c.replica_probe_interval, Duration::from_secs(1));
    assert_eq!(c.replica_wait, Duration::from_millis(250));
    assert!(c.replica_targets().is_empty());
    assert_eq!(
        REPLICA_LAG_RANGE,
        Duration::from_millis(1)..=Duration::from_secs(24 * 3600)
    );
    assert_eq!(
        REPLICA_PROBE_INTERVAL_RANGE,
        Duration::from_millis(10)..=Duration::from_secs(24 * 3600)
    );
    assert_eq!(REPLICA_WAIT_RANGE, Duration::ZERO..=Duration::from_secs(60));
    type Set = fn(&mut DbConfig, Duration);
    let cases: [(&str, Set, &std::ops::RangeInclusive<Duration>); 3] = [
        (
            "replica_max_lag",
            |c, d| c.replica_max_lag = d,
            &REPLICA_LAG_RANGE,
        ),
        (
            "replica_probe_interval",
            |c, d| c.replica_probe_interval = d,
            &REPLICA_PROBE_INTERVAL_RANGE,
        ),
        (
            "replica_wait",
            |c, d| c.replica_wait = d,
            &REPLICA_WAIT_RANGE,
        ),
    ];
    let micro = Duration::from_micros(1);
    for (name, set, range) in cases {
        let (min, max) = (*range.start(), *range.end());
        let mut values = vec![(min, true), (max, true), (max + micro, false)];
        values.push((Duration::MAX, false));
        if !min.is_zero() {
            values.extend([(Duration::ZERO, false), (min - micro, false)]);
        }
        for (value, ok) in values {
            let mut c = base();
            set(&mut c, value);
            match c.validate() {
                Ok(()) => assert!(ok, "{name} = {value:?} was accepted"),
                Err(e) => {
                    assert!(!ok, "{name} = {value:?}: {e}");
                    assert!(matches!(e, Error::Config { .. }), "{e:?}");
                    assert!(e.to_string().contains(name), "{e}");
                }
            }
        }
    }
    let c = DbConfig::from_lookup(lookup(&[
        ("DATABASE_URL", MAIN),
        ("VOIDRUNNER_DB_REPLICA_MAX_LAG", "5s"),
        ("VOIDRUNNER_DB_REPLICA_PROBE_INTERVAL", "200ms"),
        ("VOIDRUNNER_DB_REPLICA_WAIT", "0s"),
    ]))
    .unwrap();
    assert_eq!(c.replica_max_lag, Duration::from_secs(5));
    assert_eq!(c.replica_probe_interval, Duration::from_millis(200));
    assert_eq!(c.replica_wait, Duration::ZERO);
    for (var, value) in [
        ("VOIDRUNNER_DB_REPLICA_MAX_LAG", "0s"),
        ("VOIDRUNNER_DB_REPLICA_MAX_LAG", "25h"),
        ("VOIDRUNNER_DB_REPLICA_PROBE_INTERVAL", "9ms"),
        ("VOIDRUNNER_DB_REPLICA_WAIT", "61s"),
        ("VOIDRUNNER_DB_REPLICA_WAIT", "1"),
    ] {
        let err =
            DbConfig::from_lookup(lookup(&[("DATABASE_URL", MAIN), (var, value)])).unwrap_err();
        assert!(
            matches!(err, Error::Config { .. }),
            "{var}={value}: {err:?}"
        );
        let field = var
            .strip_prefix("VOIDRUNNER_DB_")
            .unwrap()
            .to_ascii_lowercase();
        let text = err.to_string();
        assert!(text.contains(var) || text.contains(&field), "{text}");
    }
}

#[test]
fn a_serde_source_reads_the_replica_settings() {
    let c: DbConfig = serde_json::from_value(serde_json::json!({
        "url": MAIN,
        "replicas": "postgres://ro:pw@r1:5433,r2/vr, postgres://ro@r3/vr",
        "replica_max_lag": "2s",
        "replica_probe_interval": "500ms",
        "replica_wait": "0s",
    }))
    .unwrap();
    assert_eq!(
        c.replica_targets(),
        ["r1:5433/vr", "r2:5432/vr", "r3:5432/vr"]
    );
    assert_eq!(c.replica_max_lag, Duration::from_secs(2));
    assert_eq!(c.replica_probe_interval, Duration::from_millis(500));
    assert_eq!(c.replica_wait, Duration::ZERO);
    let none: DbConfig =
        serde_json::from_value(serde_json::json!({"url": MAIN, "replicas": null})).unwrap();
    assert!(none.replica_targets().is_empty());
    let err = serde_json::from_value::<DbConfig>(serde_json::json!({
        "url": MAIN,
        "replicas": "postgres://u:s3cr3t@r1/db?sslmode=require",
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("replicas"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    let err = serde_json::from_value::<DbConfig>(serde_json::json!({
        "url": MAIN,
        "replica_wait": "2m",
    }))
    .unwrap()
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("replica_wait"), "{err}");
}

#[test]
fn replica_configs_copy_the_settings_and_drop_replicas_and_direct() {
    let mut c = DbConfig::from_url("postgres://app:pw@pgbouncer:6432/vr?sslmode=disable").unwrap();
    c.pooler = PoolerMode::Transaction;
    c.set_direct_url("postgres://app:pw@primary:5432/vr")
        .unwrap();
    c.set_replicas("postgres://app:pw@bouncer-r1:6432,bouncer-r2:6433/vr")
        .unwrap();
    c.max_connections = 9;
    c.min_connections = 1;
    c.wait_timeout = Duration::from_millis(1234);
    c.statement_timeout = Some(Duration::from_secs(7));
    c.application_name = "svc".to_owned();
    c.replica_wait = Duration::ZERO;
    // Replicas behind a transaction-mode pooler are fine: each URL points
    // at the PgBouncer in front of its node.
    c.validate().unwrap();
    let configs = c.replica_configs();
    assert_eq!(configs.len(), 2);
    for (replica, target) in configs
        .iter()
        .zip(["bouncer-r1:6432/vr", "bouncer-r2:6433/vr"])
    {
        assert_eq!(replica.display_target(), target);
        assert!(replica.replica_targets().is_empty());
        assert!(replica.direct_pg_config().is_none());
        assert_eq!(replica.pooler, PoolerMode::Transaction);
        assert_eq!(replica.ssl_mode, SslMode::Disable);
        assert_eq!(replica.max_connections, 9);
        assert_eq!(replica.min_connections, 1);
        assert_eq!(replica.wait_timeout, Duration::from_millis(1234));
        assert_eq!(replica.statement_timeout, Some(Duration::from_secs(7)));
        assert_eq!(replica.application_name, "svc");
        assert_eq!(replica.replica_wait, Duration::ZERO);
        assert_eq!(replica.role, None);
        replica.validate().unwrap();
        let pg = replica.pooled_pg_config();
        assert_eq!(pg.get_application_name(), Some("svc"));
    }
    let mut with_role = base();
    with_role.role = Some("reader".to_owned());
    with_role.set_replicas("postgres://u@r1/db").unwrap();
    assert_eq!(
        with_role.replica_configs()[0].role.as_deref(),
        Some("reader")
    );
    // A replica URL that names its sessions keeps its name.
    let named = with_replicas("postgres://u@r1/db?application_name=reader-1").unwrap();
    assert_eq!(named.replica_configs()[0].application_name, "reader-1");
    assert_eq!(named.application_name, "voidrunner-db");
}

#[test]
fn behind_a_pooler_a_replica_url_may_not_set_options() {
    let mut c = base();
    c.pooler = PoolerMode::Session;
    c.set_replicas("postgres://u:s3cr3t@r1/db?options=-c%20search_path%3Dx")
        .unwrap();
    let err = c.validate().unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("r1:5432") && text.contains("options"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    c.pooler = PoolerMode::Direct;
    c.validate().unwrap();
}

#[test]
fn with_dbname_applies_to_every_replica() {
    let c = with_replicas("postgres://u@r1:5433,r2/vr,postgres://u@r3").unwrap();
    let other = c.with_dbname("other");
    assert_eq!(
        other.replica_targets(),
        ["r1:5433/other", "r2:5432/other", "r3:5432/other"]
    );
    assert_eq!(other.display_target(), "primary:5432/other");
    for replica in other.replica_configs() {
        assert_eq!(replica.dbname(), Some("other"));
    }
    // The original is untouched.
    assert_eq!(c.replica_targets()[0], "r1:5433/vr");
}
