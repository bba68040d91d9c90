//! What the controller counts, and the small HTTP server that shows it:
//! `/metrics` in the Prometheus text format (through the `prometheus`
//! crate, held to Prometheus' own lint rules by a test), `/healthz` and
//! `/readyz`. Three fixed read-only paths need no web framework.
//!
//! Names follow Prometheus' conventions: counters end in `_total`,
//! durations are histograms in seconds, per-App series are labelled
//! `namespace` and `name`, and the process collector gives CPU, memory and
//! file descriptors.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use airgate_core::status::RecordResult;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How one App stands, as its per-App gauges show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppGauges {
    pub ready: bool,
    pub suspended: bool,
    pub frozen: bool,
    pub drifted: bool,
    /// When its last successful sync finished (Unix seconds).
    pub last_applied: Option<i64>,
}

/// Counters, histograms and gauges, updated by the reconciler.
pub struct Metrics {
    registry: Registry,
    syncs: IntCounterVec,
    sync_seconds: Histogram,
    render_seconds: Histogram,
    drift: IntCounterVec,
    reconciles: IntCounter,
    git_fetches: IntCounter,
    /// The Syncer's fetch count when last scraped.
    fetches_seen: AtomicU64,
    app_ready: IntGaugeVec,
    app_suspended: IntGaugeVec,
    app_frozen: IntGaugeVec,
    app_drifted: IntGaugeVec,
    app_last_applied: IntGaugeVec,
    /// The Apps with series, `(namespace, name)`.
    apps: Mutex<BTreeSet<(String, String)>>,
    /// 1 while this controller holds the Lease.
    pub leader: IntGauge,
    /// 1 while the audit log is proved consistent with its last checkpoint.
    pub log_consistent: IntGauge,
    /// Records covered by the checkpoint last published.
    pub log_published: IntGauge,
    pub log_publish_failures: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Seconds, from 50 ms to about 27 minutes.
fn duration_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.05, 2.0, 16).unwrap_or_default()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new().unwrap_or_else(|e| panic!("the metrics are declared wrong: {e}"))
    }
}

impl Metrics {
    fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let app = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["namespace", "name"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram = |name: &str, help: &str| -> prometheus::Result<Histogram> {
            let h =
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(duration_buckets()))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let labelled = |name: &str, help: &str, label: &str| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        #[rustfmt::skip]
        let metrics = Metrics {
            syncs: labelled("airgate_syncs_total", "Syncs by result.", "result")?,
            sync_seconds: histogram("airgate_sync_duration_seconds", "How long syncs took, fetch to prune.")?,
            render_seconds: histogram("airgate_render_duration_seconds", "How long renders took (plain YAML, kustomize build, helm template); renders served from the cache are not counted.")?,
            drift: labelled("airgate_drift_total", "Drift found on applied objects, by action.", "action")?,
            reconciles: counter("airgate_reconciles_total", "Reconcile passes, including those with nothing to do.")?,
            git_fetches: counter("airgate_git_fetches_total", "Fetches from Git (one per URL and ref, shared by the Apps that use it).")?,
            fetches_seen: AtomicU64::new(0),
            app_ready: app("airgate_app_ready", "1 while the App's Ready condition is True.")?,
            app_suspended: app("airgate_app_suspended", "1 while the App is suspended.")?,
            app_frozen: app("airgate_app_frozen", "1 while a change freeze window holds the App.")?,
            app_drifted: app("airgate_app_drifted", "1 while the App's Drifted condition is True.")?,
            app_last_applied: app("airgate_app_last_applied_timestamp_seconds", "When the App's last successful sync finished, in Unix seconds.")?,
            apps: Mutex::default(),
            leader: gauge("airgate_leader", "1 while this controller holds the Lease.")?,
            log_consistent: gauge("airgate_audit_log_consistent", "1 while the audit log is proved to extend its last checkpoint; 0 while the controller refuses to append.")?,
            log_published: gauge("airgate_audit_log_published_records", "Records covered by the audit log's last published checkpoint.")?,
            log_publish_failures: counter("airgate_audit_log_publish_failures_total", "Failed attempts to publish the audit log.")?,
            registry,
        };
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    pub fn sync(&self, result: RecordResult, duration_ms: u64) {
        self.syncs.with_label_values(&[result.as_str()]).inc();
        self.sync_seconds.observe(duration_ms as f64 / 1000.0);
    }

    pub fn render(&self, seconds: f64) {
        self.render_seconds.observe(seconds);
    }

    /// Sets App `namespace/name`'s gauges.
    pub fn set_app(&self, namespace: &str, name: &str, app: &AppGauges) {
        let labels = [namespace, name];
        self.app_ready
            .with_label_values(&labels)
            .set(app.ready.into());
        self.app_suspended
            .with_label_values(&labels)
            .set(app.suspended.into());
        self.app_frozen
            .with_label_values(&labels)
            .set(app.frozen.into());
        self.app_drifted
            .with_label_values(&labels)
            .set(app.drifted.into());
        if let Some(t) = app.last_applied {
            self.app_last_applied.with_label_values(&labels).set(t);
        }
        if let Ok(mut apps) = self.apps.lock() {
            apps.insert((namespace.to_string(), name.to_string()));
        }
    }

    /// Forgets Apps not in `live` (`namespace/name`).
    pub fn retain(&self, live: &BTreeSet<String>) {
        let Ok(mut apps) = self.apps.lock() else {
            return;
        };
        apps.retain(|(ns, name)| {
            if live.contains(&format!("{ns}/{name}")) {
                return true;
            }
            for g in [
                &self.app_ready,
                &self.app_suspended,
                &self.app_frozen,
                &self.app_drifted,
                &self.app_last_applied,
            ] {
                let _ = g.remove_label_values(&[ns, name]);
            }
            false
        });
    }

    pub fn drift(&self, result: RecordResult) {
        self.drift.with_label_values(&[result.as_str()]).inc();
    }

    pub fn reconcile(&self) {
        self.reconciles.inc();
    }

    /// The Prometheus text exposition. `git_fetches` is the Syncer's own
    /// count: the counter grows by what it grew since the last scrape.
    pub fn exposition(&self, git_fetches: u64) -> String {
        let before = self.fetches_seen.swap(git_fetches, Ordering::Relaxed);
        self.git_fetches.inc_by(git_fetches.saturating_sub(before));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# the metrics could not be encoded: {e}\n");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the
/// process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
) {
    let render = std::sync::Arc::new(render);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, content_type, body) = match path {
                "/metrics" => ("200 OK", prometheus::TEXT_FORMAT, render()),
                "/healthz" | "/readyz" => ("200 OK", "text/plain", "ok\n".to_string()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_app_series_come_and_go_with_the_app() {
        let m = Metrics::default();
        m.set_app(
            "shop",
            "web",
            &AppGauges {
                ready: true,
                last_applied: Some(1_700_000_000),
                ..Default::default()
            },
        );
        m.sync(RecordResult::Succeeded, 1500);
        let text = m.exposition(3);
        for want in [
            "airgate_app_ready{name=\"web\",namespace=\"shop\"} 1",
            "airgate_app_last_applied_timestamp_seconds{name=\"web\",namespace=\"shop\"} 1700000000",
            "airgate_syncs_total{result=\"succeeded\"} 1",
            "airgate_sync_duration_seconds_count 1",
            "airgate_git_fetches_total 3",
            "# TYPE airgate_sync_duration_seconds histogram",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        // Counted once, however often it is scraped.
        assert!(m.exposition(3).contains("airgate_git_fetches_total 3"));
        m.retain(&BTreeSet::new());
        assert!(!m.exposition(3).contains("airgate_app_ready{"));
    }
}
