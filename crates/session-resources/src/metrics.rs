//! Counters, gauges and histograms, and a small registry of them by name with a snapshot API.
//!
//! A [`Counter`] only goes up (calls started, 503s sent), a [`Gauge`] goes up and down (calls
//! up, jitter-buffer depth), and a [`Histogram`] keeps the distribution of a value (call setup
//! latency, packet sizes) in fixed log-scale buckets. Each is a cheap handle over atomics, so
//! recording is lock-free and never allocates. [`Metrics`] hands out handles by name: the same
//! name always gives the same metric, so fetch the handle once and keep it; looking a name up
//! takes a lock and is meant for setup, not for every packet. [`Metrics::snapshot`] copies
//! every value into a plain [`MetricsSnapshot`], which also prints as text.
//!
//! ```
//! use session_resources::Metrics;
//! use std::time::Duration;
//!
//! let metrics = Metrics::new();
//! let started = metrics.counter("calls_started");
//! let up = metrics.gauge("calls_up");
//! let setup = metrics.histogram("setup_latency_ns");
//! for ms in [80, 120, 95, 300] {
//!     started.inc();
//!     up.inc();
//!     setup.record_duration(Duration::from_millis(ms));
//! }
//! up.dec();
//! let snapshot = metrics.snapshot();
//! assert_eq!(snapshot.counter("calls_started"), Some(4));
//! assert_eq!(snapshot.gauge("calls_up"), Some(3));
//! let setup = snapshot.histogram("setup_latency_ns").unwrap();
//! assert_eq!(setup.count, 4);
//! assert_eq!(setup.max, 300_000_000);
//! println!("{snapshot}");
//! ```
//!
//! # Histogram buckets
//!
//! Values are `u64`; [`Histogram::record_duration`] records nanoseconds. Values below 16 have a
//! bucket each; above, every power of two is split into 8 equal buckets, so a bucket spans at
//! most 1/8 of its lower bound and 496 buckets cover all of `u64`. A quantile is reported as the
//! middle of the bucket holding the nearest-rank value, clamped to the recorded minimum and
//! maximum: within 1/16 (6.25 %) of the exact nearest-rank quantile, and exact below 16.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

/// A count that only goes up. Clones share the value.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// A counter at zero, not registered anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n` (wrapping at `u64::MAX`).
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down. Clones share the value.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// A gauge at zero, not registered anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Takes one away.
    pub fn dec(&self) {
        self.add(-1);
    }

    /// Adds `delta`, which may be negative (wrapping).
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Bits of linear sub-buckets in each power of two.
const SUB_BITS: u32 = 3;
/// Linear sub-buckets in each power of two.
const SUB: usize = 1 << SUB_BITS;
/// Buckets covering all of `u64`: values below `2 * SUB` exactly, then `SUB` per power of two
/// from `2^(SUB_BITS + 1)` to `2^63`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// The bucket of `value`.
fn bucket_index(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    // `value >> shift` is in SUB..2*SUB, so `sub` is below SUB.
    let sub = (value >> shift) as usize - SUB;
    (shift as usize + 1) * SUB + sub
}

/// The lowest and highest value of bucket `index` (both inclusive).
fn bucket_bounds(index: usize) -> (u64, u64) {
    if index < SUB {
        return (index as u64, index as u64);
    }
    let shift = (index / SUB - 1) as u32;
    let low = ((SUB + index % SUB) as u64) << shift;
    (low, low + ((1u64 << shift) - 1))
}

struct HistogramCore {
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

/// The distribution of a `u64` value in fixed log-scale buckets. Recording takes a few relaxed
/// atomic operations and no lock. Clones share the data.
///
/// Values below 16 have a bucket each; above, every power of two is split into 8 equal
/// buckets, so a bucket spans at most 1/8 of its lower bound and 496 buckets (4 KiB) cover all
/// of `u64`. A quantile is reported as the middle of the bucket holding the nearest-rank value,
/// clamped to the recorded minimum and maximum: within 1/16 (6.25 %) of the exact nearest-rank
/// quantile, exact below 16. [`record_duration`](Self::record_duration) records nanoseconds.
#[derive(Clone)]
pub struct Histogram(Arc<HistogramCore>);

impl Default for Histogram {
    fn default() -> Self {
        Self(Arc::new(HistogramCore {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }))
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Histogram").field(&self.snapshot()).finish()
    }
}

impl Histogram {
    /// An empty histogram, not registered anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value.
    pub fn record(&self, value: u64) {
        let core = &*self.0;
        // Sum and extremes first, the bucket last with `Release`: a snapshot that counts this
        // value (loading the buckets with `Acquire`) also sees it in `min` and `max`.
        core.sum.fetch_add(value, Ordering::Relaxed);
        // Plain loads first: once the extremes are set, most values change neither.
        if value < core.min.load(Ordering::Relaxed) {
            core.min.fetch_min(value, Ordering::Relaxed);
        }
        if value > core.max.load(Ordering::Relaxed) {
            core.max.fetch_max(value, Ordering::Relaxed);
        }
        core.buckets[bucket_index(value)].fetch_add(1, Ordering::Release);
    }

    /// Records a duration in nanoseconds (saturating at `u64::MAX`, about 584 years).
    pub fn record_duration(&self, duration: Duration) {
        self.record(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The values recorded so far. Taken without stopping writers: a value recorded during the
    /// snapshot may be in the sum but not yet in the count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let core = &*self.0;
        let buckets: Vec<Bucket> = core
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(index, count)| {
                let count = count.load(Ordering::Acquire);
                (count > 0).then(|| {
                    let (low, high) = bucket_bounds(index);
                    Bucket { low, high, count }
                })
            })
            .collect();
        let count = buckets.iter().map(|b| b.count).sum();
        let (min, max) = if count == 0 {
            (0, 0)
        } else {
            (
                core.min.load(Ordering::Relaxed),
                core.max.load(Ordering::Relaxed),
            )
        };
        let mut snapshot = HistogramSnapshot {
            count,
            sum: core.sum.load(Ordering::Relaxed),
            min,
            max,
            p50: 0,
            p90: 0,
            p99: 0,
            buckets,
        };
        snapshot.p50 = snapshot.quantile(0.50);
        snapshot.p90 = snapshot.quantile(0.90);
        snapshot.p99 = snapshot.quantile(0.99);
        snapshot
    }
}

/// One histogram bucket with at least one value, in a [`HistogramSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The lowest value the bucket holds.
    pub low: u64,
    /// The highest value the bucket holds (inclusive).
    pub high: u64,
    /// How many recorded values fell in it.
    pub count: u64,
}

/// A histogram's values as plain data, from [`Histogram::snapshot`]. All figures are 0 when
/// nothing was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// Values recorded.
    pub count: u64,
    /// Their sum (wrapping at `u64::MAX`).
    pub sum: u64,
    /// The smallest value recorded (exact).
    pub min: u64,
    /// The largest value recorded (exact).
    pub max: u64,
    /// Estimated median.
    pub p50: u64,
    /// Estimated 90th percentile.
    pub p90: u64,
    /// Estimated 99th percentile.
    pub p99: u64,
    /// The buckets holding at least one value, in ascending order.
    pub buckets: Vec<Bucket>,
}

impl HistogramSnapshot {
    /// Estimates the `q` quantile (`0.0..=1.0`, clamped; NaN counts as 0): the middle of the
    /// bucket holding the nearest-rank value, clamped to [`min`](Self::min) and
    /// [`max`](Self::max). Within 1/16 of the exact value; exact below 16 and for the first and
    /// last rank (the minimum and maximum).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        // Nearest rank: the smallest value with at least q * count values at or below it.
        // The float-to-int cast saturates, and the rank is clamped to 1..=count.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        // The extremes are known exactly.
        if rank == 1 {
            return self.min;
        }
        if rank == self.count {
            return self.max;
        }
        let mut seen = 0;
        for bucket in &self.buckets {
            seen += bucket.count;
            if seen >= rank {
                let middle = bucket.low + (bucket.high - bucket.low) / 2;
                return middle.clamp(self.min, self.max.max(self.min));
            }
        }
        // Only reachable if the buckets sum to less than `count`, which `snapshot` rules out.
        self.max
    }

    /// The mean, or 0 when empty.
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }
}

impl fmt::Display for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "count={} min={} p50={} p90={} p99={} max={} mean={}",
            self.count,
            self.min,
            self.p50,
            self.p90,
            self.p99,
            self.max,
            self.mean()
        )
    }
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<String, Counter>,
    gauges: BTreeMap<String, Gauge>,
    histograms: BTreeMap<String, Histogram>,
}

/// A registry of counters, gauges and histograms by name. Cheap to clone: clones share the
/// registry. Counters, gauges and histograms have separate names spaces, but giving two kinds
/// the same name makes the text output hard to read.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self.registry.read();
        f.debug_struct("Metrics")
            .field("counters", &registry.counters.len())
            .field("gauges", &registry.gauges.len())
            .field("histograms", &registry.histograms.len())
            .finish()
    }
}

/// The metric named `name` in `map`, made with `Default` if there is none yet.
fn get_or_insert<T: Clone + Default>(
    registry: &RwLock<Registry>,
    name: &str,
    map: impl Fn(&mut Registry) -> &mut BTreeMap<String, T>,
    map_ref: impl Fn(&Registry) -> &BTreeMap<String, T>,
) -> T {
    if let Some(metric) = map_ref(&registry.read()).get(name) {
        return metric.clone();
    }
    let mut registry = registry.write();
    map(&mut registry)
        .entry(name.to_owned())
        .or_default()
        .clone()
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter named `name`, created at zero on first use.
    pub fn counter(&self, name: &str) -> Counter {
        get_or_insert(&self.registry, name, |r| &mut r.counters, |r| &r.counters)
    }

    /// The gauge named `name`, created at zero on first use.
    pub fn gauge(&self, name: &str) -> Gauge {
        get_or_insert(&self.registry, name, |r| &mut r.gauges, |r| &r.gauges)
    }

    /// The histogram named `name`, created empty on first use. Name histograms of durations
    /// with their unit (`setup_latency_ns`): the text output prints bare numbers.
    pub fn histogram(&self, name: &str) -> Histogram {
        get_or_insert(
            &self.registry,
            name,
            |r| &mut r.histograms,
            |r| &r.histograms,
        )
    }

    /// Every metric's current value, sorted by name within each kind.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let registry = self.registry.read();
        MetricsSnapshot {
            counters: registry
                .counters
                .iter()
                .map(|(name, c)| (name.clone(), c.get()))
                .collect(),
            gauges: registry
                .gauges
                .iter()
                .map(|(name, g)| (name.clone(), g.get()))
                .collect(),
            histograms: registry
                .histograms
                .iter()
                .map(|(name, h)| (name.clone(), h.snapshot()))
                .collect(),
        }
    }
}

/// Every metric of a [`Metrics`] registry as plain data, from [`Metrics::snapshot`]. `Display`
/// prints one line per metric: `counter NAME VALUE`, `gauge NAME VALUE` and
/// `histogram NAME count=.. min=.. p50=.. p90=.. p99=.. max=.. mean=..`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Counters by name, sorted.
    pub counters: Vec<(String, u64)>,
    /// Gauges by name, sorted.
    pub gauges: Vec<(String, i64)>,
    /// Histograms by name, sorted.
    pub histograms: Vec<(String, HistogramSnapshot)>,
}

fn find<'a, T>(entries: &'a [(String, T)], name: &str) -> Option<&'a T> {
    entries
        .binary_search_by(|entry| entry.0.as_str().cmp(name))
        .ok()
        .map(|index| &entries[index].1)
}

impl MetricsSnapshot {
    /// The counter named `name`, if registered.
    pub fn counter(&self, name: &str) -> Option<u64> {
        find(&self.counters, name).copied()
    }

    /// The gauge named `name`, if registered.
    pub fn gauge(&self, name: &str) -> Option<i64> {
        find(&self.gauges, name).copied()
    }

    /// The histogram named `name`, if registered.
    pub fn histogram(&self, name: &str) -> Option<&HistogramSnapshot> {
        find(&self.histograms, name)
    }
}

impl MetricsSnapshot {
    /// The snapshot in the Prometheus text exposition format 0.0.4: a `# TYPE` line and the
    /// samples of each metric, counters first, then gauges, then histograms. Every name is
    /// `prefix` followed by the metric's name (give the separator in `prefix`: `"sip_"`), with
    /// any character outside `[a-zA-Z0-9_:]` replaced by `_` (and a `_` in front of a leading
    /// digit). A histogram has one cumulative `_bucket` line per bucket holding values, with
    /// the bucket's highest value as its `le` bound, then `le="+Inf"`, `_sum` and `_count`.
    ///
    /// ```
    /// use session_resources::Metrics;
    ///
    /// let metrics = Metrics::new();
    /// metrics.counter("calls_total").add(2);
    /// assert_eq!(
    ///     metrics.snapshot().to_prometheus("sip_"),
    ///     "# TYPE sip_calls_total counter\nsip_calls_total 2\n"
    /// );
    /// ```
    pub fn to_prometheus(&self, prefix: &str) -> String {
        use fmt::Write as _;
        let mut out = String::with_capacity(
            64 * (self.counters.len() + self.gauges.len())
                + self
                    .histograms
                    .iter()
                    .map(|(_, h)| 128 + 48 * h.buckets.len())
                    .sum::<usize>(),
        );
        // Writing into a String cannot fail.
        for (name, value) in &self.counters {
            let name = prometheus_name(prefix, name);
            let _ = write!(out, "# TYPE {name} counter\n{name} {value}\n");
        }
        for (name, value) in &self.gauges {
            let name = prometheus_name(prefix, name);
            let _ = write!(out, "# TYPE {name} gauge\n{name} {value}\n");
        }
        for (name, histogram) in &self.histograms {
            let name = prometheus_name(prefix, name);
            let _ = writeln!(out, "# TYPE {name} histogram");
            let mut cumulative = 0u64;
            for bucket in &histogram.buckets {
                cumulative = cumulative.saturating_add(bucket.count);
                let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", bucket.high);
            }
            let _ = write!(
                out,
                "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n",
                count = histogram.count,
                sum = histogram.sum,
            );
        }
        out
    }
}

/// `prefix` and `name` joined, every character outside `[a-zA-Z0-9_:]` replaced by `_`, and a
/// `_` in front when the result would start with a digit (or be empty).
fn prometheus_name(prefix: &str, name: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + name.len() + 1);
    for c in prefix.chars().chain(name.chars()) {
        if out.is_empty() && c.is_ascii_digit() {
            out.push('_');
        }
        out.push(if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

impl fmt::Display for MetricsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.counters {
            writeln!(f, "counter {name} {value}")?;
        }
        for (name, value) in &self.gauges {
            writeln!(f, "gauge {name} {value}")?;
        }
        for (name, histogram) in &self.histograms {
            writeln!(f, "histogram {name} {histogram}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_value_space() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(15), 15);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_bounds(BUCKETS - 1).1, u64::MAX);
        // Consecutive buckets are adjacent, and every bound maps back to its bucket.
        let mut next_low = 0;
        for index in 0..BUCKETS {
            let (low, high) = bucket_bounds(index);
            assert_eq!(low, next_low, "bucket {index}");
            assert!(high >= low);
            assert_eq!(bucket_index(low), index);
            assert_eq!(bucket_index(high), index);
            // At most 1/8 of the lower bound wide (above the exact range).
            if low >= 16 {
                assert!(high - low < low / 8, "bucket {index}: {low}..={high}");
            } else {
                assert_eq!(low, high);
            }
            next_low = high.wrapping_add(1);
        }
        assert_eq!(next_low, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn quantiles_of_known_data() {
        let h = Histogram::new();
        for value in 1..=1000 {
            h.record(value);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 1000);
        assert_eq!(s.sum, 500_500);
        assert_eq!((s.min, s.max), (1, 1000));
        assert_eq!(s.mean(), 500);
        for (q, exact, estimate) in [(0.5, 500, s.p50), (0.9, 900, s.p90), (0.99, 990, s.p99)] {
            let error = estimate.abs_diff(exact);
            assert!(error <= exact / 16, "q{q}: {estimate} vs {exact}");
            assert_eq!(estimate, s.quantile(q));
        }
        // Edges: q = 0 is the minimum, q = 1 the maximum (clamped to exact extremes).
        assert_eq!(s.quantile(0.0), 1);
        assert_eq!(s.quantile(1.0), 1000);
        assert_eq!(s.quantile(f64::NAN), 1);
        assert_eq!(s.quantile(7.0), 1000);
    }

    #[test]
    fn small_values_are_exact() {
        let h = Histogram::new();
        for value in [3, 1, 4, 1, 5, 9, 2, 6, 5, 3] {
            h.record(value);
        }
        let s = h.snapshot();
        // Sorted: 1 1 2 3 3 4 5 5 6 9.
        assert_eq!((s.p50, s.p90, s.p99), (3, 6, 9));
        assert_eq!(s.quantile(0.1), 1);
        assert_eq!(s.quantile(0.3), 2);
        assert_eq!(
            s.buckets.first(),
            Some(&Bucket {
                low: 1,
                high: 1,
                count: 2
            })
        );
        assert_eq!(s.buckets.len(), 7, "one per distinct value");
    }

    #[test]
    fn skewed_latencies() {
        // 98 fast setups at 100 ms and 2 slow ones at 2 s: p50 and p90 fast, p99 slow.
        let h = Histogram::new();
        for _ in 0..98 {
            h.record_duration(Duration::from_millis(100));
        }
        h.record_duration(Duration::from_secs(2));
        h.record_duration(Duration::from_secs(2));
        let s = h.snapshot();
        let close = |estimate: u64, exact: u64| estimate.abs_diff(exact) <= exact / 16;
        assert!(close(s.p50, 100_000_000), "{}", s.p50);
        assert!(close(s.p90, 100_000_000), "{}", s.p90);
        assert!(close(s.p99, 2_000_000_000), "{}", s.p99);
        assert_eq!(s.min, 100_000_000);
        assert_eq!(s.max, 2_000_000_000);
        assert_eq!(s.mean(), 138_000_000);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let s = Histogram::new().snapshot();
        assert_eq!((s.count, s.sum, s.min, s.max), (0, 0, 0, 0));
        assert_eq!((s.p50, s.p90, s.p99, s.mean()), (0, 0, 0, 0));
        assert!(s.buckets.is_empty());
        assert_eq!(
            s.to_string(),
            "count=0 min=0 p50=0 p90=0 p99=0 max=0 mean=0"
        );
    }

    #[test]
    fn extreme_values() {
        let h = Histogram::new();
        h.record(u64::MAX);
        h.record(0);
        h.record_duration(Duration::MAX);
        let s = h.snapshot();
        assert_eq!((s.min, s.max, s.count), (0, u64::MAX, 3));
        assert_eq!(s.p99, u64::MAX);
    }

    #[test]
    fn registry_returns_the_same_metric_per_name() {
        let metrics = Metrics::new();
        metrics.counter("calls").inc();
        metrics.counter("calls").add(2);
        metrics.gauge("up").set(5);
        metrics.gauge("up").dec();
        metrics.histogram("setup_ns").record(10);
        let other = metrics.clone();
        other.counter("a_first").inc();
        let s = metrics.snapshot();
        assert_eq!(
            s.counters,
            vec![("a_first".to_owned(), 1), ("calls".to_owned(), 3)]
        );
        assert_eq!(s.counter("calls"), Some(3));
        assert_eq!(s.counter("missing"), None);
        assert_eq!(s.gauge("up"), Some(4));
        assert_eq!(s.histogram("setup_ns").map(|h| h.count), Some(1));
        assert_eq!(
            s.to_string(),
            "counter a_first 1\ncounter calls 3\ngauge up 4\n\
             histogram setup_ns count=1 min=10 p50=10 p90=10 p99=10 max=10 mean=10\n"
        );
    }

    #[test]
    fn prometheus_text_of_a_small_registry() {
        let metrics = Metrics::new();
        metrics.counter("calls_total").add(3);
        metrics.gauge("calls-active").set(-2);
        let setup = metrics.histogram("setup_ms");
        for value in [5, 5, 40] {
            setup.record(value);
        }
        assert_eq!(
            metrics.snapshot().to_prometheus("sip_"),
            "# TYPE sip_calls_total counter\n\
             sip_calls_total 3\n\
             # TYPE sip_calls_active gauge\n\
             sip_calls_active -2\n\
             # TYPE sip_setup_ms histogram\n\
             sip_setup_ms_bucket{le=\"5\"} 2\n\
             sip_setup_ms_bucket{le=\"43\"} 3\n\
             sip_setup_ms_bucket{le=\"+Inf\"} 3\n\
             sip_setup_ms_sum 50\n\
             sip_setup_ms_count 3\n"
        );
    }

    #[test]
    fn prometheus_buckets_are_cumulative() {
        let metrics = Metrics::new();
        let h = metrics.histogram("latency_us");
        for value in [1, 100, 100, 10_000, 1_000_000] {
            h.record(value);
        }
        let text = metrics.snapshot().to_prometheus("");
        let buckets: Vec<(String, u64)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("latency_us_bucket{le=\""))
            .map(|rest| {
                let (le, count) = rest.split_once("\"} ").unwrap();
                (le.to_owned(), count.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets.len(), 5, "{text}");
        assert_eq!(
            buckets.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
            [1, 3, 4, 5, 5]
        );
        assert_eq!(buckets.last().unwrap().0, "+Inf");
        // The bounds ascend and each holds its values.
        let bounds: Vec<u64> = buckets[..4]
            .iter()
            .map(|(le, _)| le.parse().unwrap())
            .collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        assert_eq!(bounds[0], 1);
        assert!(bounds[1] >= 100 && bounds[2] >= 10_000 && bounds[3] >= 1_000_000);
        assert!(text.contains("latency_us_count 5\n"));
        assert!(text.contains("latency_us_sum 1010201\n"));
    }

    #[test]
    fn prometheus_names_are_sanitised() {
        assert_eq!(prometheus_name("", "calls.total"), "calls_total");
        assert_eq!(prometheus_name("", "9lives"), "_9lives");
        assert_eq!(prometheus_name("a:b-", "c d"), "a:b_c_d");
        assert_eq!(prometheus_name("", ""), "_");
        assert_eq!(prometheus_name("sip_", "é"), "sip__");
    }

    #[test]
    fn gauges_go_negative_and_counters_are_shared() {
        let g = Gauge::new();
        g.dec();
        g.add(-2);
        assert_eq!(g.get(), -3);
        let c = Counter::new();
        let c2 = c.clone();
        c2.inc();
        assert_eq!(c.get(), 1);
    }
}
