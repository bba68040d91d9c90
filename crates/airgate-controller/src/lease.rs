//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! controllers exactly one applies.
//!
//! Guarantees: a controller starts reconciling only once it holds the Lease,
//! and it stops (the process ends) if it cannot renew it within two thirds
//! of the lease duration: before anyone else may take the Lease over.
//! Assumptions: a follower takes over only after the holder's record has
//! not changed for a whole lease duration, measured on the follower's own
//! clock (so clocks need not agree). Writes use the Lease's resourceVersion,
//! so two candidates cannot both win one round.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::log;

#[derive(Clone, Debug)]
pub struct Election {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// What a follower last saw of the holder, and when it first saw it.
struct Observed {
    record: (Option<String>, Option<MicroTime>),
    since: Instant,
}

/// An error in one line: the API server's message rather than its whole
/// Status.
pub fn brief(e: &anyhow::Error) -> String {
    match e.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s)) => s.message.clone(),
        _ => format!("{e:#}"),
    }
}

impl Election {
    fn namespace(&self) -> String {
        self.api.namespace().unwrap_or_default().to_string()
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(15)),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: Ok(true) when this controller holds the Lease afterwards.
    async fn try_acquire(&self, observed: &mut Option<Observed>) -> Result<bool> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
            return Ok(self.renew_from(lease).await?.is_some());
        }
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let expired = match observed {
            Some(o) if o.record == record => o.since.elapsed() >= self.duration,
            _ => {
                *observed = Some(Observed {
                    record,
                    since: Instant::now(),
                });
                spec.holder_identity.is_none()
            }
        };
        if !expired {
            return Ok(false);
        }
        lease.spec = Some(self.spec(spec.lease_transitions.unwrap_or(0) + 1, None));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a fresh renewTime; `None` when the Lease changed since
    /// `lease` was read (someone else wrote it).
    async fn renew_from(&self, mut lease: Lease) -> Result<Option<Lease>> {
        let spec = lease.spec.clone().unwrap_or_default();
        lease.spec = Some(self.spec(
            spec.lease_transitions.unwrap_or(0),
            spec.acquire_time.clone(),
        ));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => Ok(Some(written)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this controller holds the Lease.
    pub async fn acquire(&self) -> Result<()> {
        let mut observed = None;
        let mut announced = false;
        let mut last_error = String::new();
        loop {
            match self.try_acquire(&mut observed).await {
                Ok(true) => {
                    log::info(
                        "leader elected",
                        json!({"lease": self.name, "identity": self.identity}),
                    );
                    return Ok(());
                }
                Ok(false) => {
                    if !announced {
                        let holder = observed
                            .as_ref()
                            .and_then(|o| o.record.0.clone())
                            .unwrap_or_default();
                        log::info(
                            "waiting for leadership",
                            json!({"lease": self.name, "identity": self.identity, "holder": holder}),
                        );
                        announced = true;
                    }
                }
                Err(e) => {
                    let message = brief(&e);
                    if message != last_error {
                        log::warn(
                            "lease not reachable",
                            json!({"lease": self.name, "namespace": self.namespace(), "error": message}),
                        );
                        last_error = message;
                    }
                }
            }
            tokio::time::sleep(self.duration / 5).await;
        }
    }

    /// Renews the Lease every third of its duration; returns (with the
    /// reason) once it could not be renewed for two thirds of it, or when
    /// another controller holds it.
    ///
    /// A renewal is one write: the Lease this controller wrote last is
    /// written again with its resourceVersion, so a conflict means someone
    /// else wrote it. Only after an error is the Lease read first.
    pub async fn hold(&self) -> anyhow::Error {
        let mut last_renewed = Instant::now();
        let mut current: Option<Lease> = None;
        loop {
            tokio::time::sleep(self.duration / 3).await;
            // Ok(None): renewed; Ok(Some(why)): lost for good; Err: try again.
            let result: Result<Option<String>> = async {
                let lease = match current.take() {
                    Some(l) => l,
                    None => {
                        let lease = self
                            .api
                            .get(&self.name)
                            .await
                            .context("reading the Lease")?;
                        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
                        if holder.as_deref() != Some(self.identity.as_str()) {
                            return Ok(Some(format!(
                                "Lease {} is now held by {}",
                                self.name,
                                holder.unwrap_or_default()
                            )));
                        }
                        lease
                    }
                };
                match self.renew_from(lease).await? {
                    Some(written) => {
                        current = Some(written);
                        Ok(None)
                    }
                    None => Ok(Some(format!(
                        "Lease {} was written by another controller while renewing it",
                        self.name
                    ))),
                }
            }
            .await;
            match result {
                Ok(None) => last_renewed = Instant::now(),
                Ok(Some(lost)) => return anyhow::anyhow!(lost),
                Err(e) => {
                    log::warn(
                        "lease renewal failed",
                        json!({"lease": self.name, "error": brief(&e)}),
                    );
                    if last_renewed.elapsed() >= self.duration * 2 / 3 {
                        return e.context(format!(
                            "could not renew Lease {} for {}s",
                            self.name,
                            last_renewed.elapsed().as_secs()
                        ));
                    }
                }
            }
        }
    }
}
