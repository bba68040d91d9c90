//! The controller's logs: one line per event on stderr, JSON for log
//! collectors by default, plain text for people. Fields are data; the
//! message is a short, stable phrase to grep for.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Plain lines for people.
    Text,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Millisecond)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Writes one log line. `fields` should be a JSON object.
pub fn emit(level: &str, msg: &str, fields: Value) {
    let format = FORMAT.get().copied().unwrap_or(LogFormat::Json);
    let fields = match fields {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => Map::from_iter([("data".to_string(), other)]),
    };
    let line = match format {
        LogFormat::Json => {
            let mut out = Map::new();
            out.insert("ts".into(), Value::String(now()));
            out.insert("level".into(), Value::String(level.into()));
            out.insert("msg".into(), Value::String(msg.into()));
            out.extend(fields);
            Value::Object(out).to_string()
        }
        LogFormat::Text => {
            let mut line = format!("{} {level:5} {msg}", now());
            for (k, v) in fields {
                match v {
                    Value::String(s) => line.push_str(&format!(" {k}={s}")),
                    other => line.push_str(&format!(" {k}={other}")),
                }
            }
            line
        }
    };
    eprintln!("{line}");
}

pub fn info(msg: &str, fields: Value) {
    emit("info", msg, fields)
}

pub fn warn(msg: &str, fields: Value) {
    emit("warn", msg, fields)
}

pub fn error(msg: &str, fields: Value) {
    emit("error", msg, fields)
}
