//! The controller's logs: one line per event on stderr, JSON for log
//! collectors by default, plain text for people, through `tracing`: the
//! controller's events and kube's own (client requests, the watcher, the
//! runtime) share one subscriber, filtered by `--log-level`.
//!
//! Each line has `ts`, `level` and `msg`, then the fields of the spans it
//! happened in (a reconcile pass: `controller`, `namespace`, `name`,
//! `reconcileID`, and `revision` once known), then its own. The message is
//! a short, stable phrase to grep for; fields are data.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Plain lines for people.
    Text,
}

/// Where the controller's own events go (`--log-level` names it).
pub const TARGET: &str = "airgate";

/// Installs the subscriber: `level` is a level (`info`: the controller at
/// info, everything else at warn) or tracing's target directives
/// (`info,kube=debug`). An error names what does not parse.
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let filter: Targets = if level.contains('=') || level.contains(',') {
        level
            .parse()
            .map_err(|e| format!("--log-level '{level}': {e}"))?
    } else {
        let level: Level = level.parse().map_err(|_| {
            format!("--log-level '{level}' is not a level (error, warn, info, debug, trace) or target=level list")
        })?;
        Targets::new()
            .with_target(TARGET, level)
            .with_default(level.min(Level::WARN))
    };
    Registry::default()
        .with(Lines { format }.with_filter(filter))
        .try_init()
        .map_err(|e| e.to_string())
}

/// The layer that writes the lines.
struct Lines {
    format: LogFormat,
}

/// A span's fields, kept in its extensions.
struct SpanFields(Map<String, Value>);

/// Collects fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Millisecond)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Lines {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Fields(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut own = Map::new();
        event.record(&mut Fields(&mut own));
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(now()));
        line.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_ascii_lowercase()),
        );
        let msg = own
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        line.insert("msg".into(), msg);
        if meta.target() != TARGET {
            line.insert("target".into(), Value::String(meta.target().into()));
        }
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        // The controller's own events carry their data as one JSON object.
        if let Some(Value::String(data)) = own.remove("fields")
            && let Ok(Value::Object(fields)) = serde_json::from_str(&data)
        {
            line.extend(fields);
        }
        line.extend(own);
        eprintln!("{}", self.render(line));
    }
}

impl Lines {
    fn render(&self, line: Map<String, Value>) -> String {
        match self.format {
            LogFormat::Json => Value::Object(line).to_string(),
            LogFormat::Text => {
                let text = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut out = format!(
                    "{} {:5} {}",
                    line.get("ts").map(text).unwrap_or_default(),
                    line.get("level").map(text).unwrap_or_default(),
                    line.get("msg").map(text).unwrap_or_default()
                );
                for (k, v) in line
                    .iter()
                    .filter(|(k, _)| !["ts", "level", "msg"].contains(&k.as_str()))
                {
                    let _ = write!(out, " {k}={}", text(v));
                }
                out
            }
        }
    }
}

/// Writes one event of the controller. `fields` should be a JSON object.
pub fn emit(level: Level, msg: &str, fields: Value) {
    let fields = match fields {
        Value::Object(m) => Value::Object(m),
        Value::Null => Value::Object(Map::new()),
        other => Value::Object(Map::from_iter([("data".to_string(), other)])),
    }
    .to_string();
    match level {
        Level::ERROR => tracing::error!(target: TARGET, fields, "{msg}"),
        Level::WARN => tracing::warn!(target: TARGET, fields, "{msg}"),
        Level::INFO => tracing::info!(target: TARGET, fields, "{msg}"),
        Level::DEBUG => tracing::debug!(target: TARGET, fields, "{msg}"),
        _ => tracing::trace!(target: TARGET, fields, "{msg}"),
    }
}

pub fn info(msg: &str, fields: Value) {
    emit(Level::INFO, msg, fields)
}

pub fn warn(msg: &str, fields: Value) {
    emit(Level::WARN, msg, fields)
}

pub fn error(msg: &str, fields: Value) {
    emit(Level::ERROR, msg, fields)
}

/// The span one reconcile pass of App `namespace/name` runs in; its
/// `revision` is recorded once the pass knows it ([`revision`]).
pub fn reconcile_span(namespace: &str, name: &str) -> tracing::Span {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PASSES: AtomicU64 = AtomicU64::new(0);
    // Unique within this process, and across restarts: the process start
    // and a counter.
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default()
    });
    let id = format!("{start:x}-{:x}", PASSES.fetch_add(1, Ordering::Relaxed) + 1);
    tracing::info_span!(
        target: TARGET,
        "reconcile",
        controller = "app",
        namespace = namespace,
        name = name,
        reconcileID = id.as_str(),
        revision = tracing::field::Empty
    )
}

/// Records the revision a reconcile pass works on in its span.
pub fn revision(revision: &str) {
    tracing::Span::current().record("revision", revision);
}
