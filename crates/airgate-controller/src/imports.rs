//! The imports inbox: an import is recorded in the audit log when it is
//! pushed, not only when an App first deploys one of its images.
//!
//! Why an inbox: `bundle push` runs on an operator's machine and cannot
//! append to the log (one writer, or the log forks), so with
//! `--log-repository` it leaves the import's files in `REPO/imports`
//! ([`airgate_oci::imports::leave`]). The leader looks there every
//! [`EVERY`], checks each import it has not recorded as any reader would
//! ([`airgate_core::provenance::verify_statement`]) and appends its record.
//! An import that does not verify, or whose bundle was not signed (its
//! statement would be anyone's claim), is logged once and left out.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use airgate_core::Digest;
use airgate_core::provenance::verify_statement;
use airgate_oci::imports::{INBOX, take, waiting};
use airgate_store::Store;
use serde_json::json;

use super::audit::AuditLog;
use super::log;

/// How often the leader looks in the inbox.
pub const EVERY: Duration = Duration::from_secs(3);

/// Looks in the inbox beside the published log until the controller
/// stops; does nothing when the log is not published.
pub async fn record_forever(audit: &AuditLog, store: &Mutex<Store>, changed: impl Fn()) {
    let Some(inbox) = audit.repository().map(|r| r.beside(INBOX)) else {
        return;
    };
    let mut seen: HashSet<Digest> = HashSet::new();
    loop {
        tokio::time::sleep(EVERY).await;
        if audit.refused().is_some() {
            continue;
        }
        let ids = match waiting(&inbox).await {
            Ok(ids) => ids,
            Err(e) => {
                log::warn(
                    "imports inbox not read",
                    json!({"inbox": inbox.location(), "error": e.to_string()}),
                );
                continue;
            }
        };
        let fresh: Vec<Digest> = ids.into_iter().filter(|id| !seen.contains(id)).collect();
        for id in fresh {
            let evidence = match take(&inbox, &id).await {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    log::warn(
                        "import not read",
                        json!({"import": id, "error": e.to_string()}),
                    );
                    continue;
                }
            };
            seen.insert(id.clone());
            let verified = match verify_statement(&evidence) {
                Ok(v) if v.id == id && v.signed_by.is_some() => v,
                Ok(v) => {
                    let why = if v.id != id {
                        "its statement is not the one its name says"
                    } else {
                        "the bundle was not signed: anyone who may push to the inbox could write such a statement, so only signed imports are recorded from it"
                    };
                    log::warn("import refused", json!({"import": id, "error": why}));
                    continue;
                }
                Err(e) => {
                    log::warn(
                        "import refused",
                        json!({"import": id, "error": e.to_string()}),
                    );
                    continue;
                }
            };
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            match audit.append_with_imports(store, &[verified], None, now) {
                Ok(n) if n > 0 => {
                    log::info("import recorded", json!({"import": id}));
                    changed();
                }
                Ok(_) => {}
                Err(e) => {
                    seen.remove(&id);
                    log::warn("import not recorded", json!({"import": id, "error": e}));
                }
            }
        }
    }
}
