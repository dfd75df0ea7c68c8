//! The adaptive controller: per upstream, it watches p95 latency and the share of 5xx and
//! connection errors over a sliding window, and scales every rule's rate for that upstream:
//! down multiplicatively (to a floor) while the upstream is above its targets, back up
//! additively while it is healthy (AIMD, as TCP congestion control). A cap on requests in
//! flight per upstream sheds the excess at once with `503` instead of queueing it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::policy::schema::AdaptiveSpec;
use crate::policy::Diagnostics;

/// Upper bounds of the latency buckets, in milliseconds (the last one is open).
const LATENCY_BOUNDS_MS: [u64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 150, 250, 400, 600, 1000, 1500, 2500, 5000, 10_000,
];

/// The validated `rate_limits.adaptive` section.
#[derive(Debug, Clone)]
pub struct AdaptiveSettings {
    pub latency_target: Duration,
    pub error_ratio_target: f64,
    pub min_factor: f64,
    pub decrease: f64,
    pub increase: f64,
    pub window: Duration,
    pub interval: Duration,
    pub min_requests: u64,
    pub max_in_flight: usize,
}

impl AdaptiveSettings {
    pub fn compile(spec: &AdaptiveSpec, diag: &mut Diagnostics) -> AdaptiveSettings {
        let settings = AdaptiveSettings {
            latency_target: spec.latency_target.unwrap_or(Duration::from_millis(250)),
            error_ratio_target: spec.error_ratio_target.unwrap_or(0.05),
            min_factor: spec.min_factor.unwrap_or(0.2),
            decrease: spec.decrease.unwrap_or(0.5),
            increase: spec.increase.unwrap_or(0.05),
            window: spec.window.unwrap_or(Duration::from_secs(10)),
            interval: spec.interval.unwrap_or(Duration::from_secs(1)),
            min_requests: spec.min_requests.unwrap_or(20),
            max_in_flight: spec.max_in_flight.unwrap_or(1024),
        };
        let path = |f: &str| format!("rate_limits.adaptive.{f}");
        if !(0.0..=1.0).contains(&settings.error_ratio_target) {
            diag.error(path("error_ratio_target"), "a share between 0 and 1");
        }
        if !(settings.min_factor > 0.0 && settings.min_factor <= 1.0) {
            diag.error(path("min_factor"), "between 0 (excluded) and 1");
        }
        if !(settings.decrease > 0.0 && settings.decrease < 1.0) {
            diag.error(
                path("decrease"),
                "between 0 and 1 (excluded): the factor is multiplied by it",
            );
        }
        if !(settings.increase > 0.0 && settings.increase <= 1.0) {
            diag.error(
                path("increase"),
                "between 0 (excluded) and 1: added to the factor",
            );
        }
        if settings.interval.is_zero() || settings.window < settings.interval {
            diag.error(
                path("window"),
                "the window must be at least one interval, and the interval more than 0",
            );
        }
        if settings.max_in_flight == 0 {
            diag.error(path("max_in_flight"), "must be at least 1");
        }
        settings
    }
}

/// One time slice of the sliding window.
#[derive(Debug, Clone)]
struct Slice {
    started: Instant,
    requests: u64,
    errors: u64,
    latency: [u64; LATENCY_BOUNDS_MS.len() + 1],
}

impl Slice {
    fn new(started: Instant) -> Self {
        Slice {
            started,
            requests: 0,
            errors: 0,
            latency: [0; LATENCY_BOUNDS_MS.len() + 1],
        }
    }
}

/// What the window says about an upstream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Health {
    pub requests: u64,
    pub error_ratio: f64,
    /// Upper bound of the bucket holding the 95th percentile.
    pub p95: Duration,
}

/// The live state of one upstream: factor, requests in flight, recent outcomes.
#[derive(Debug)]
pub struct UpstreamLoad {
    pub name: String,
    factor_bits: AtomicU64,
    in_flight: AtomicUsize,
    slices: Mutex<VecDeque<Slice>>,
}

impl UpstreamLoad {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(UpstreamLoad {
            name: name.to_owned(),
            factor_bits: AtomicU64::new(1.0f64.to_bits()),
            in_flight: AtomicUsize::new(0),
            slices: Mutex::new(VecDeque::new()),
        })
    }

    /// The factor applied to the rates of this upstream's routes (1 = as written).
    pub fn factor(&self) -> f64 {
        f64::from_bits(self.factor_bits.load(Ordering::Relaxed))
    }

    fn set_factor(&self, factor: f64) {
        self.factor_bits.store(factor.to_bits(), Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight, or `None` when `max` are already.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<InFlight> {
        let previous = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if previous >= max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight(Arc::clone(self)))
    }

    /// Records one finished exchange with the upstream.
    pub fn record(&self, latency: Duration, error: bool, now: Instant, slice: Duration) {
        let mut slices = self.slices.lock();
        let fresh = slices
            .back()
            .is_none_or(|s| now.duration_since(s.started) >= slice);
        if fresh {
            slices.push_back(Slice::new(now));
        }
        if let Some(current) = slices.back_mut() {
            current.requests += 1;
            current.errors += u64::from(error);
            let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
            let bucket = LATENCY_BOUNDS_MS
                .iter()
                .position(|&b| ms <= b)
                .unwrap_or(LATENCY_BOUNDS_MS.len());
            current.latency[bucket] += 1;
        }
    }

    /// The window's health, dropping slices older than `window`.
    pub fn health(&self, now: Instant, window: Duration) -> Health {
        let mut slices = self.slices.lock();
        while slices
            .front()
            .is_some_and(|s| now.duration_since(s.started) > window)
        {
            slices.pop_front();
        }
        let mut requests = 0;
        let mut errors = 0;
        let mut latency = [0u64; LATENCY_BOUNDS_MS.len() + 1];
        for slice in slices.iter() {
            requests += slice.requests;
            errors += slice.errors;
            for (total, count) in latency.iter_mut().zip(slice.latency.iter()) {
                *total += count;
            }
        }
        let rank = (requests * 95).div_ceil(100);
        let mut seen = 0;
        let mut p95 = Duration::ZERO;
        for (i, count) in latency.iter().enumerate() {
            seen += count;
            if seen >= rank && rank > 0 {
                let ms = LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(u64::MAX / 2);
                p95 = Duration::from_millis(ms);
                break;
            }
        }
        Health {
            requests,
            error_ratio: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p95,
        }
    }

    /// One controller step: AIMD on the factor. Returns the new factor.
    pub fn tick(&self, settings: &AdaptiveSettings, now: Instant) -> f64 {
        let health = self.health(now, settings.window);
        let factor = self.factor();
        let next = if health.requests < settings.min_requests {
            // Too little traffic to judge: recover towards 1.
            (factor + settings.increase).min(1.0)
        } else if health.p95 > settings.latency_target
            || health.error_ratio > settings.error_ratio_target
        {
            (factor * settings.decrease).max(settings.min_factor)
        } else {
            (factor + settings.increase).min(1.0)
        };
        if (next - factor).abs() > f64::EPSILON {
            tracing::info!(
                upstream = self.name.as_str(),
                factor = next,
                p95_ms = health.p95.as_millis() as u64,
                error_ratio = health.error_ratio,
                "adaptive factor changed"
            );
        }
        self.set_factor(next);
        next
    }

    /// Keeps the factor of the same upstream in a policy being replaced.
    pub fn adopt(&self, previous: &UpstreamLoad) {
        self.set_factor(previous.factor());
    }
}

/// A request in flight to an upstream; counted until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<UpstreamLoad>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AdaptiveSettings {
        let mut diag = Diagnostics::default();
        let s = AdaptiveSettings::compile(&AdaptiveSpec::default(), &mut diag);
        assert!(!diag.has_errors());
        s
    }

    #[test]
    fn slow_or_failing_upstreams_lower_the_factor_and_healthy_ones_raise_it() {
        let s = settings();
        let load = UpstreamLoad::new("api");
        let t0 = Instant::now();
        for _ in 0..100 {
            load.record(Duration::from_millis(900), false, t0, s.interval);
        }
        assert_eq!(load.health(t0, s.window).p95, Duration::from_millis(1000));
        assert_eq!(load.tick(&s, t0), 0.5);
        assert_eq!(load.tick(&s, t0), 0.25);
        assert_eq!(load.tick(&s, t0), 0.2, "the floor");
        // The slow slice leaves the window; healthy traffic comes back.
        let later = t0 + Duration::from_secs(11);
        for _ in 0..100 {
            load.record(Duration::from_millis(5), false, later, s.interval);
        }
        let f = load.tick(&s, later);
        assert!((f - 0.25).abs() < 1e-9, "{f}: additive increase");

        let failing = UpstreamLoad::new("backend");
        for i in 0..100 {
            failing.record(Duration::from_millis(5), i % 10 == 0, t0, s.interval);
        }
        assert_eq!(failing.tick(&s, t0), 0.5, "10% errors > 5%");
    }

    #[test]
    fn the_in_flight_cap_sheds_and_releases() {
        let load = UpstreamLoad::new("api");
        let a = load.try_acquire(2).expect("1");
        let _b = load.try_acquire(2).expect("2");
        assert!(load.try_acquire(2).is_none());
        drop(a);
        assert!(load.try_acquire(2).is_some());
    }

    #[test]
    fn bad_settings_are_reported() {
        let spec: AdaptiveSpec =
            serde_yaml::from_str("{min_factor: 0, decrease: 1.5, max_in_flight: 0}").expect("spec");
        let mut diag = Diagnostics::default();
        AdaptiveSettings::compile(&spec, &mut diag);
        let paths: Vec<_> = diag.errors().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "rate_limits.adaptive.min_factor",
                "rate_limits.adaptive.decrease",
                "rate_limits.adaptive.max_in_flight"
            ]
        );
    }
}
