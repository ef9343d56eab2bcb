//! The function store's model: $LATEST and published versions, aliases, the timed state transitions (Pending,
//! InProgress, and an update's end as Successful or Failed), and the configuration document Lambda returns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::api::LambdaError;
use super::invoke::Behaviour;
use crate::aws::accounts::Place;
use crate::aws::faults::LastUpdateStatusReasonCode;

pub(super) fn now_text() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

pub(super) fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum State {
    Pending,
    Active,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum UpdateStatus {
    InProgress,
    Successful,
    Failed(UpdateFailure),
}

/// Why an update ended Failed: `LastUpdateStatusReasonCode` and `LastUpdateStatusReason`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UpdateFailure {
    pub(crate) code: LastUpdateStatusReasonCode,
    pub(crate) reason: String,
}

/// One version's configuration ($LATEST or published).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Version {
    pub(super) version: String,
    pub(super) description: String,
    pub(super) runtime: Option<String>,
    pub(super) handler: Option<String>,
    pub(super) role: String,
    pub(super) timeout: u64,
    pub(super) memory_size: u64,
    pub(super) environment: Option<BTreeMap<String, String>>,
    pub(super) architectures: Vec<String>,
    pub(super) code_sha256: String,
    pub(super) code_size: u64,
    /// What the code does when invoked (from markers in its bytes).
    pub(super) behaviour: Behaviour,
    /// `DeadLetterConfig.TargetArn`.
    pub(super) dead_letter_target: Option<String>,
    pub(super) revision_id: String,
    pub(super) last_modified: String,
    pub(super) state: State,
    pub(super) last_update: Option<UpdateStatus>,
}

impl Version {
    /// Equal code and configuration: publishing such a $LATEST again returns the existing version.
    fn same_content(&self, other: &Version) -> bool {
        let strip = |v: &Version| Version {
            version: String::new(),
            description: String::new(),
            revision_id: String::new(),
            last_modified: String::new(),
            state: State::Active,
            last_update: None,
            ..v.clone()
        };
        strip(self) == strip(other)
    }
}

#[derive(Clone, Debug)]
pub(super) struct Alias {
    pub(super) name: String,
    pub(super) function_version: String,
    pub(super) description: String,
    pub(super) revision_id: String,
    /// `RoutingConfig.AdditionalVersionWeights`: at most one version and its share of the invocations.
    pub(super) weights: BTreeMap<String, f64>,
}

/// A provisioned concurrency configuration of an alias or version.
#[derive(Clone, Debug)]
pub(super) struct Provisioned {
    pub(super) requested: u64,
    pub(super) last_modified: String,
}

#[derive(Debug)]
pub(super) struct Function {
    /// The account and region it lives in.
    pub(super) place: Place,
    pub(super) name: String,
    pub(super) latest: Version,
    pub(super) versions: BTreeMap<u64, Version>,
    pub(super) aliases: BTreeMap<String, Alias>,
    pub(super) tags: BTreeMap<String, String>,
    pub(super) code_history: Vec<String>,
    pub(super) pending_until: Option<Instant>,
    pub(super) in_progress_until: Option<Instant>,
    /// An update that will end Failed, and the $LATEST it then restores.
    pub(super) failing: Option<(UpdateFailure, Version)>,
    /// While an update is InProgress: what $LATEST's invocations run (AWS keeps serving the previous code).
    pub(super) running: Option<Behaviour>,
    /// Provisioned concurrency by qualifier (alias or version).
    pub(super) provisioned: BTreeMap<String, Provisioned>,
}

impl Function {
    /// The function's ARN, qualified or not.
    pub(super) fn arn(&self, qualifier: Option<&str>) -> String {
        self.place.function_arn(&self.name, qualifier)
    }

    /// Applies timed transitions (Pending→Active, InProgress→Successful or Failed); each is a change with a new
    /// RevisionId. A failed update restores the previous code and configuration, as AWS documents for Failed.
    pub(super) fn refresh(&mut self, now: Instant) {
        if self.pending_until.is_some_and(|t| t <= now) {
            self.pending_until = None;
            self.latest.state = State::Active;
            self.latest.last_update = Some(UpdateStatus::Successful);
            self.latest.revision_id = new_revision();
        }
        if self.in_progress_until.is_some_and(|t| t <= now) {
            self.in_progress_until = None;
            self.running = None;
            match self.failing.take() {
                None => self.latest.last_update = Some(UpdateStatus::Successful),
                Some((failure, previous)) => {
                    let last_modified = self.latest.last_modified.clone();
                    self.latest =
                        Version { last_modified, last_update: Some(UpdateStatus::Failed(failure)), ..previous };
                    self.code_history.push(self.latest.code_sha256.clone());
                }
            }
            self.latest.revision_id = new_revision();
        }
    }

    /// 409 while Pending or while an update is InProgress.
    pub(super) fn ensure_idle(&self) -> Result<(), LambdaError> {
        if self.latest.state == State::Pending {
            return Err(LambdaError::conflict(
                "The operation cannot be performed at this time. The function is currently in the following state: \
                 Pending",
            ));
        }
        if self.latest.last_update == Some(UpdateStatus::InProgress) {
            return Err(LambdaError::update_in_progress(&self.arn(None)));
        }
        Ok(())
    }

    pub(super) fn ensure_revision(&self, body: &Value) -> Result<(), LambdaError> {
        match body.get("RevisionId").and_then(Value::as_str) {
            Some(rev) if rev != self.latest.revision_id => Err(LambdaError::precondition_failed()),
            _ => Ok(()),
        }
    }

    /// Marks $LATEST changed from `previous`: new RevisionId, LastModified, and InProgress for `in_progress`
    /// (if non-zero, or if the update is to fail: the reply still shows it InProgress, as AWS's does).
    pub(super) fn start_update(&mut self, previous: Version, in_progress: Duration, fails: Option<UpdateFailure>) {
        self.latest.revision_id = new_revision();
        self.latest.last_modified = now_text();
        if in_progress.is_zero() && fails.is_none() {
            self.latest.last_update = Some(UpdateStatus::Successful);
            self.in_progress_until = None;
            self.running = None;
        } else {
            self.latest.last_update = Some(UpdateStatus::InProgress);
            self.in_progress_until = Some(Instant::now() + in_progress);
            self.running = Some(previous.behaviour);
        }
        self.failing = fails.map(|failure| (failure, previous));
    }

    /// The configuration a qualifier selects and the qualifier its ARN carries.
    pub(super) fn resolve(&self, qualifier: Option<&str>) -> Result<(&Version, Option<String>), LambdaError> {
        match qualifier {
            None => Ok((&self.latest, None)),
            Some("$LATEST") => Ok((&self.latest, Some("$LATEST".into()))),
            Some(q) => {
                let not_found = || LambdaError::function_not_found(&self.arn(Some(q)));
                if let Ok(n) = q.parse::<u64>() {
                    return self.versions.get(&n).map(|v| (v, Some(q.to_string()))).ok_or_else(not_found);
                }
                let alias = self.aliases.get(q).ok_or_else(not_found)?;
                let (v, _) = self.resolve(Some(&alias.function_version))?;
                Ok((v, Some(q.to_string())))
            }
        }
    }

    pub(super) fn version_exists(&self, version: &str) -> bool {
        version == "$LATEST" || version.parse::<u64>().is_ok_and(|n| self.versions.contains_key(&n))
    }

    /// Publishes $LATEST as a new version, unless the newest version already has the same code and configuration.
    pub(super) fn publish(&mut self, description: Option<&str>) -> (StatusCode, Version) {
        if let Some((_, newest)) = self.versions.last_key_value()
            && newest.same_content(&self.latest)
        {
            return (StatusCode::CREATED, newest.clone());
        }
        let n = self.versions.last_key_value().map(|(n, _)| n + 1).unwrap_or(1);
        let version = Version {
            version: n.to_string(),
            description: description.map(str::to_string).unwrap_or_else(|| self.latest.description.clone()),
            revision_id: new_revision(),
            last_modified: now_text(),
            state: State::Active,
            last_update: Some(UpdateStatus::Successful),
            ..self.latest.clone()
        };
        self.versions.insert(n, version.clone());
        (StatusCode::CREATED, version)
    }

    pub(super) fn config_json(&self, v: &Version, qualifier: Option<&str>) -> Value {
        let mut c = Map::new();
        c.insert("FunctionName".into(), json!(self.name));
        c.insert("FunctionArn".into(), json!(self.arn(qualifier)));
        if let Some(r) = &v.runtime {
            c.insert("Runtime".into(), json!(r));
        }
        c.insert("Role".into(), json!(v.role));
        if let Some(h) = &v.handler {
            c.insert("Handler".into(), json!(h));
        }
        c.insert("CodeSize".into(), json!(v.code_size));
        c.insert("Description".into(), json!(v.description));
        c.insert("Timeout".into(), json!(v.timeout));
        c.insert("MemorySize".into(), json!(v.memory_size));
        c.insert("LastModified".into(), json!(v.last_modified));
        c.insert("CodeSha256".into(), json!(v.code_sha256));
        c.insert("Version".into(), json!(v.version));
        if let Some(env) = &v.environment {
            c.insert("Environment".into(), json!({ "Variables": env }));
        }
        if let Some(target) = &v.dead_letter_target {
            c.insert("DeadLetterConfig".into(), json!({ "TargetArn": target }));
        }
        c.insert("TracingConfig".into(), json!({"Mode": "PassThrough"}));
        c.insert("RevisionId".into(), json!(v.revision_id));
        match v.state {
            State::Pending => {
                c.insert("State".into(), json!("Pending"));
                c.insert("StateReason".into(), json!("The function is being created."));
                c.insert("StateReasonCode".into(), json!("Creating"));
            }
            State::Active => {
                c.insert("State".into(), json!("Active"));
            }
        }
        match &v.last_update {
            Some(UpdateStatus::InProgress) => {
                c.insert("LastUpdateStatus".into(), json!("InProgress"));
                c.insert("LastUpdateStatusReason".into(), json!("The function is being created."));
                c.insert("LastUpdateStatusReasonCode".into(), json!("Creating"));
            }
            Some(UpdateStatus::Successful) => {
                c.insert("LastUpdateStatus".into(), json!("Successful"));
            }
            Some(UpdateStatus::Failed(failure)) => {
                c.insert("LastUpdateStatus".into(), json!("Failed"));
                c.insert("LastUpdateStatusReason".into(), json!(failure.reason));
                c.insert("LastUpdateStatusReasonCode".into(), json!(failure.code));
            }
            None => {}
        }
        c.insert("PackageType".into(), json!("Zip"));
        c.insert("Architectures".into(), json!(v.architectures));
        c.insert("EphemeralStorage".into(), json!({"Size": 512}));
        c.insert("SnapStart".into(), json!({"ApplyOn": "None", "OptimizationStatus": "Off"}));
        c.insert(
            "LoggingConfig".into(),
            json!({"LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", self.name)}),
        );
        Value::Object(c)
    }

    pub(super) fn alias_json(&self, a: &Alias) -> Value {
        let mut v = json!({
            "AliasArn": self.arn(Some(&a.name)),
            "Name": a.name,
            "FunctionVersion": a.function_version,
            "Description": a.description,
            "RevisionId": a.revision_id,
        });
        if !a.weights.is_empty() {
            v["RoutingConfig"] = json!({ "AdditionalVersionWeights": a.weights });
        }
        v
    }
}

/// Code a request supplies, hashed the way Lambda reports it.
pub(super) struct Code {
    pub(super) sha256: String,
    pub(super) size: u64,
    pub(super) behaviour: Behaviour,
}

pub(super) fn code_of(bytes: &[u8]) -> Result<Code, LambdaError> {
    // A zip starts with a local file header, or (empty archive) with the end-of-central-directory record.
    let is_zip = bytes.starts_with(b"PK\x03\x04") || (bytes.len() >= 22 && bytes.starts_with(b"PK\x05\x06"));
    if !is_zip {
        return Err(LambdaError::invalid(
            "Could not unzip uploaded file. Please check your file, then try to upload again.",
        ));
    }
    Ok(Code { sha256: B64.encode(Sha256::digest(bytes)), size: bytes.len() as u64, behaviour: Behaviour::of(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zip_archives_are_accepted_as_code() {
        assert!(code_of(b"PK\x03\x04rest").is_ok());
        assert_eq!(code_of(b"#!/bin/sh").err().unwrap().kind, "InvalidParameterValueException");
    }
}
