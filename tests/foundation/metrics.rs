//! Pool metrics through the `metrics` facade (feature `metrics`): the gauges
//! match `pool_status()`, every checkout is timed with its outcome, a wait
//! that times out is counted, and two pools stay apart.
//!
//! A global recorder, installed once for the whole test binary, so updates
//! made on any runtime thread (the reaper, spawned checkouts) are seen.
//! Other tests' pools record into it too, under their own `pool` label:
//! every pool here has an application name of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ::metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use voidrunner_db::metrics::{
    OUTCOME_LABEL, POOL_AVAILABLE, POOL_IN_USE, POOL_LABEL, POOL_MAX, POOL_SIZE, POOL_WAIT_SECONDS,
    POOL_WAIT_TIMEOUTS_TOTAL, POOL_WAITING, pool_label,
};
use voidrunner_db::testing::TestDatabase;
use voidrunner_db::{Database, TimeoutKind};

/// A metric name and its labels, sorted by key.
type Series = (String, Vec<(String, String)>);

#[derive(Default)]
struct Values {
    gauges: HashMap<Series, f64>,
    counters: HashMap<Series, u64>,
    histograms: HashMap<Series, Vec<f64>>,
}

/// What the recorder captured.
#[derive(Default)]
struct Capture(Mutex<Values>);

impl Capture {
    fn values(&self) -> std::sync::MutexGuard<'_, Values> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn gauge(&self, name: &str, pool: &str) -> Option<f64> {
        self.values()
            .gauges
            .get(&series(name, &[(POOL_LABEL, pool)]))
            .copied()
    }

    fn counter(&self, name: &str, pool: &str) -> Option<u64> {
        self.values()
            .counters
            .get(&series(name, &[(POOL_LABEL, pool)]))
            .copied()
    }

    fn waits(&self, pool: &str, outcome: &str) -> Vec<f64> {
        self.values()
            .histograms
            .get(&series(
                POOL_WAIT_SECONDS,
                &[(POOL_LABEL, pool), (OUTCOME_LABEL, outcome)],
            ))
            .cloned()
            .unwrap_or_default()
    }

    /// The label keys of every series of `pool`.
    fn label_keys(&self, pool: &str) -> Vec<(String, Vec<String>)> {
        let values = self.values();
        let all = values
            .gauges
            .keys()
            .chain(values.counters.keys())
            .chain(values.histograms.keys());
        let mut keys: Vec<_> = all
            .filter(|(_, labels)| labels.iter().any(|(k, v)| k == POOL_LABEL && v == pool))
            .map(|(name, labels)| {
                (
                    name.clone(),
                    labels.iter().map(|(k, _)| k.clone()).collect(),
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

fn key_series(key: &Key) -> Series {
    let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
    series(key.name(), &labels)
}

/// One registered series: updates go straight into the capture.
struct Handle {
    capture: Arc<Capture>,
    series: Series,
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        *self
            .capture
            .values()
            .counters
            .entry(self.series.clone())
            .or_default() += value;
    }

    fn absolute(&self, value: u64) {
        let mut values = self.capture.values();
        let counter = values.counters.entry(self.series.clone()).or_default();
        *counter = (*counter).max(value);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        *self
            .capture
            .values()
            .gauges
            .entry(self.series.clone())
            .or_default() += value;
    }

    fn decrement(&self, value: f64) {
        *self
            .capture
            .values()
            .gauges
            .entry(self.series.clone())
            .or_default() -= value;
    }

    fn set(&self, value: f64) {
        self.capture
            .values()
            .gauges
            .insert(self.series.clone(), value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.capture
            .values()
            .histograms
            .entry(self.series.clone())
            .or_default()
            .push(value);
    }
}

struct CaptureRecorder(Arc<Capture>);

impl CaptureRecorder {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        Arc::new(Handle {
            capture: Arc::clone(&self.0),
            series: key_series(key),
        })
    }
}

impl Recorder for CaptureRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

/// The capture of the process-wide recorder, installed on first use.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Arc<Capture>> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Arc::new(Capture::default());
        ::metrics::set_global_recorder(CaptureRecorder(Arc::clone(&capture)))
            .unwrap_or_else(|_| panic!("another global metrics recorder is installed"));
        capture
    })
}

/// The five gauges of `pool` equal `db.pool_status()`.
#[track_caller]
fn assert_gauges_match(db: &Database, pool: &str) {
    let status = db.pool_status();
    let gauges = [
        POOL_SIZE,
        POOL_AVAILABLE,
        POOL_IN_USE,
        POOL_WAITING,
        POOL_MAX,
    ]
    .map(|name| capture().gauge(name, pool));
    let expected = [
        status.size,
        status.idle,
        status.in_use,
        status.waiting,
        status.max,
    ]
    .map(|value| Some(value as f64));
    assert_eq!(gauges, expected, "{status:?}");
}

async fn test_db(application_name: &str, max: usize, wait: Duration) -> TestDatabase {
    capture();
    TestDatabase::with_config(|c| {
        c.application_name = application_name.to_owned();
        c.min_connections = 1;
        c.max_connections = max;
        c.wait_timeout = wait;
        c.idle_timeout = None;
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_follow_the_pool_and_every_checkout_is_timed() {
    const POOL: &str = "vrdb-metrics-checkouts";
    let wait = Duration::from_millis(500);
    let db = test_db(POOL, 2, wait).await;
    assert_eq!(pool_label(db.db().config()), POOL);

    // Published at connect; the timeout counter exists before any timeout.
    assert_gauges_match(&db, POOL);
    assert_eq!(capture().gauge(POOL_SIZE, POOL), Some(1.0));
    assert_eq!(capture().counter(POOL_WAIT_TIMEOUTS_TOTAL, POOL), Some(0));

    let first = db.client().await.unwrap();
    assert_gauges_match(&db, POOL);
    let second = db.client().await.unwrap();
    assert_gauges_match(&db, POOL);
    assert_eq!(capture().gauge(POOL_IN_USE, POOL), Some(2.0));
    assert_eq!(capture().waits(POOL, "ok").len(), 2);

    // The pool is exhausted: the next checkout waits and gives up.
    let err = db.client().await.unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::PoolWait), "{err:?}");
    assert_eq!(capture().counter(POOL_WAIT_TIMEOUTS_TOTAL, POOL), Some(1));
    let timeouts = capture().waits(POOL, "timeout");
    assert_eq!(timeouts.len(), 1);
    assert!(
        timeouts[0] >= wait.as_secs_f64() * 0.9 && timeouts[0] < 30.0,
        "{timeouts:?}"
    );
    assert_gauges_match(&db, POOL);

    // A waiting checkout shows in the waiting gauge on demand.
    let waiter = tokio::spawn({
        let db = db.db().clone();
        async move { db.client().await.map(drop) }
    });
    let mut polls = 0;
    while db.pool_status().waiting == 0 {
        polls += 1;
        assert!(polls < 200, "the checkout never queued");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    db.record_pool_metrics();
    assert_eq!(capture().gauge(POOL_WAITING, POOL), Some(1.0));
    assert_gauges_match(&db, POOL);
    drop(first);
    waiter.await.unwrap().unwrap();
    assert_eq!(capture().waits(POOL, "ok").len(), 3);
    assert_eq!(capture().counter(POOL_WAIT_TIMEOUTS_TOTAL, POOL), Some(1));

    // A returned connection shows once published.
    drop(second);
    db.record_pool_metrics();
    assert_gauges_match(&db, POOL);
    assert_eq!(capture().gauge(POOL_IN_USE, POOL), Some(0.0));
    assert_eq!(capture().gauge(POOL_AVAILABLE, POOL), Some(2.0));

    // A checkout its caller gives up on is recorded too.
    let held = [db.client().await.unwrap(), db.client().await.unwrap()];
    let gave_up = tokio::time::timeout(Duration::from_millis(50), db.client()).await;
    assert!(gave_up.is_err(), "no connection was free");
    assert_eq!(capture().waits(POOL, "cancelled").len(), 1);
    assert_eq!(capture().counter(POOL_WAIT_TIMEOUTS_TOTAL, POOL), Some(1));
    drop(held);

    // A closed pool: the checkout fails at once, as an error; close
    // publishes the emptied pool.
    assert!(db.close(Duration::from_secs(5)).await);
    assert_eq!(capture().gauge(POOL_SIZE, POOL), Some(0.0));
    assert!(db.client().await.unwrap_err().is_unavailable());
    assert_eq!(capture().waits(POOL, "error").len(), 1);
    assert_gauges_match(&db, POOL);

    let samples: Vec<f64> = ["ok", "timeout", "cancelled", "error"]
        .into_iter()
        .flat_map(|outcome| capture().waits(POOL, outcome))
        .collect();
    assert!(
        samples.iter().all(|s| s.is_finite() && *s >= 0.0),
        "{samples:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_stay_apart_and_labels_hold_no_target() {
    const SMALL: &str = "vrdb-metrics-small";
    const LARGE: &str = "vrdb-metrics-large";
    let small = test_db(SMALL, 2, Duration::from_secs(5)).await;
    let large = test_db(LARGE, 4, Duration::from_secs(5)).await;

    let held = small.client().await.unwrap();
    small.record_pool_metrics();
    large.record_pool_metrics();
    assert_gauges_match(&small, SMALL);
    assert_gauges_match(&large, LARGE);
    assert_eq!(capture().gauge(POOL_MAX, SMALL), Some(2.0));
    assert_eq!(capture().gauge(POOL_MAX, LARGE), Some(4.0));
    assert_eq!(capture().gauge(POOL_IN_USE, SMALL), Some(1.0));
    assert_eq!(capture().gauge(POOL_IN_USE, LARGE), Some(0.0));
    assert_eq!(capture().waits(SMALL, "ok").len(), 1);
    assert!(capture().waits(LARGE, "ok").is_empty());
    drop(held);

    // Only `pool` (and the histogram's `outcome`) label the series: no URL,
    // host, database or user.
    for (name, keys) in capture().label_keys(SMALL) {
        let expected: &[&str] = if name == POOL_WAIT_SECONDS {
            &[OUTCOME_LABEL, POOL_LABEL]
        } else {
            &[POOL_LABEL]
        };
        assert_eq!(keys, expected, "{name}");
    }
    let target = small.db().config().display_target();
    let values = capture().values();
    let all_labels = values
        .gauges
        .keys()
        .chain(values.counters.keys())
        .chain(values.histograms.keys())
        .flat_map(|(_, labels)| labels);
    for (_, value) in all_labels {
        assert!(!value.contains(small.name()), "{value}");
        assert!(!value.contains(&target), "{value}");
    }
}
