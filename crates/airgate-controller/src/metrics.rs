//! What the controller counts, and the small HTTP server that shows it:
//! `/metrics` in the Prometheus text format and `/healthz`. Two fixed
//! read-only paths need no web framework.

use airgate_core::status::RecordResult;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counters and gauges, updated by the reconciler.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Syncs by result (succeeded, failed, blocked).
    syncs: Mutex<BTreeMap<String, u64>>,
    /// Drift found, by action (corrected, warned).
    drift: Mutex<BTreeMap<String, u64>>,
    reconciles: AtomicU64,
    sync_seconds_sum_ms: AtomicU64,
    /// Per App: is it Ready?
    ready: Mutex<BTreeMap<String, bool>>,
    pub leader: AtomicBool,
    /// 1 while the audit log is proved consistent with its last checkpoint.
    pub log_consistent: AtomicBool,
    /// Records covered by the checkpoint last published.
    pub log_published: AtomicU64,
    pub log_publish_failures: AtomicU64,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key.to_string()).or_default() += 1;
    }
}

impl Metrics {
    pub fn sync(&self, result: RecordResult, duration_ms: u64) {
        bump(&self.syncs, result.as_str());
        self.sync_seconds_sum_ms
            .fetch_add(duration_ms, Ordering::Relaxed);
    }

    pub fn set_ready(&self, app: &str, ready: bool) {
        if let Ok(mut m) = self.ready.lock() {
            m.insert(app.to_string(), ready);
        }
    }

    /// Forgets Apps not in `live`.
    pub fn retain(&self, live: &std::collections::BTreeSet<String>) {
        if let Ok(mut m) = self.ready.lock() {
            m.retain(|app, _| live.contains(app));
        }
    }

    pub fn drift(&self, result: RecordResult) {
        bump(&self.drift, result.as_str());
    }

    pub fn reconcile(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, git_fetches: u64) -> String {
        let labelled = |map: &Mutex<BTreeMap<String, u64>>, label: &str| -> Vec<(String, String)> {
            map.lock()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), v.to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let one = |value: String| vec![(String::new(), value)];
        let sync_count: u64 = self
            .syncs
            .lock()
            .map(|m| m.values().sum())
            .unwrap_or_default();
        let sync_seconds = self.sync_seconds_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let (apps, ready) = self
            .ready
            .lock()
            .map(|m| (m.len(), m.values().filter(|r| **r).count()))
            .unwrap_or_default();
        let leader = u8::from(self.leader.load(Ordering::Relaxed));
        let consistent = u8::from(self.log_consistent.load(Ordering::Relaxed));
        let published = self.log_published.load(Ordering::Relaxed);
        let publish_failures = self.log_publish_failures.load(Ordering::Relaxed);
        #[rustfmt::skip]
        let families = [
            ("airgate_syncs_total", "counter", "Syncs by result.", labelled(&self.syncs, "result")),
            ("airgate_sync_duration_seconds_sum", "counter", "Total time spent in syncs.", one(format!("{sync_seconds:.3}"))),
            ("airgate_sync_duration_seconds_count", "counter", "Number of syncs timed.", one(sync_count.to_string())),
            ("airgate_drift_total", "counter", "Drift found on applied objects, by action.", labelled(&self.drift, "action")),
            ("airgate_reconciles_total", "counter", "Reconcile passes, including those with nothing to do.", one(self.reconciles.load(Ordering::Relaxed).to_string())),
            ("airgate_git_fetches_total", "counter", "Fetches from Git (one per URL and ref, shared by the Apps that use it).", one(git_fetches.to_string())),
            ("airgate_apps", "gauge", "Apps this controller reconciles.", one(apps.to_string())),
            ("airgate_apps_ready", "gauge", "Apps whose Ready condition is True.", one(ready.to_string())),
            ("airgate_leader", "gauge", "1 while this controller holds the Lease.", one(leader.to_string())),
            ("airgate_audit_log_consistent", "gauge", "1 while the audit log is proved to extend its last checkpoint; 0 while the controller refuses to append.", one(consistent.to_string())),
            ("airgate_audit_log_published_records", "gauge", "Records covered by the audit log's last published checkpoint.", one(published.to_string())),
            ("airgate_audit_log_publish_failures_total", "counter", "Failed attempts to publish the audit log.", one(publish_failures.to_string())),
        ];
        let mut out = String::new();
        for (name, kind, help, samples) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in samples {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the process ends.
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
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", render()),
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
