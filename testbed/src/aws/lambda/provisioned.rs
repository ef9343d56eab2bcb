//! Provisioned concurrency on an alias or a published version (`/2019-09-30/functions/NAME/provisioned-concurrency
//! ?Qualifier=Q`). A configuration is READY as soon as it is read back (AWS takes minutes to allocate). Messages are
//! LocalStack's (`put_provisioned_concurrency_config` and neighbours, snapshot-tested against AWS) unless a comment
//! names another source.

use http::StatusCode;
use serde_json::{Value, json};

use super::aliases::{alias_not_found, weights_with_provisioned};
use super::api::{LambdaError, Reply, number, parse_function_ref};
use super::model::{Function, Provisioned, now_text};
use super::{Lambda, param};
use crate::aws::accounts::Place;

/// The qualifier a request names; `$LATEST` (or none) is refused with `latest_message`.
fn qualifier<'a>(query: &'a [(String, String)], latest_message: &str) -> Result<&'a str, LambdaError> {
    match param(query, "Qualifier") {
        None => Err(LambdaError::validation(
            "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be \
             null",
        )),
        Some("$LATEST") => Err(LambdaError::invalid(latest_message)),
        Some(q) => Ok(q),
    }
}

/// The alias or version must exist.
fn ensure_target(f: &Function, q: &str) -> Result<(), LambdaError> {
    match q.parse::<u64>() {
        Ok(n) if f.versions.contains_key(&n) => Ok(()),
        Ok(_) => Err(LambdaError::function_not_found(&f.arn(Some(q)))),
        Err(_) if f.aliases.contains_key(q) => Ok(()),
        Err(_) => Err(alias_not_found(f, q)),
    }
}

const NOT_ALIAS_OR_VERSION: &str = "The function resource provided must be an alias or a published version.";

impl Lambda {
    /// 202 and IN_PROGRESS, as AWS answers; the configuration reads READY from then on.
    pub(super) fn put_provisioned(&self, place: &Place, raw: &str, query: &[(String, String)], body: &Value) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        let q =
            qualifier(query, "Provisioned Concurrency Configs cannot be applied to unpublished function versions.")?;
        let requested = match number(body, "ProvisionedConcurrentExecutions")? {
            Some(n) if n >= 1 => n,
            other => {
                let value = other.map_or("null".to_string(), |n| format!("'{n}'"));
                return Err(LambdaError::validation(format!(
                    "1 validation error detected: Value {value} at 'provisionedConcurrentExecutions' failed to \
                     satisfy constraint: Member must have value greater than or equal to 1"
                )));
            }
        };
        self.with(place, &name, |f| {
            ensure_target(f, q)?;
            if let Some(alias) = f.aliases.get(q) {
                if !alias.weights.is_empty() {
                    return Err(weights_with_provisioned());
                }
                if f.provisioned.contains_key(&alias.function_version) {
                    return Err(LambdaError::conflict(
                        "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned \
                         version",
                    ));
                }
            } else if f.aliases.values().any(|a| a.function_version == q && f.provisioned.contains_key(&a.name)) {
                return Err(LambdaError::conflict("Version is pointed by a Provisioned Concurrency alias"));
            }
            let config = Provisioned { requested, last_modified: now_text() };
            f.provisioned.insert(q.to_string(), config.clone());
            Ok((
                StatusCode::ACCEPTED,
                json!({
                    "RequestedProvisionedConcurrentExecutions": config.requested,
                    "AvailableProvisionedConcurrentExecutions": 0,
                    "AllocatedProvisionedConcurrentExecutions": 0,
                    "Status": "IN_PROGRESS",
                    "LastModified": config.last_modified,
                }),
            ))
        })
    }

    pub(super) fn get_provisioned(&self, place: &Place, raw: &str, query: &[(String, String)]) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        let q = qualifier(query, NOT_ALIAS_OR_VERSION)?;
        self.with(place, &name, |f| {
            ensure_target(f, q)?;
            let config = f.provisioned.get(q).ok_or_else(LambdaError::no_provisioned_concurrency)?;
            Ok((
                StatusCode::OK,
                json!({
                    "RequestedProvisionedConcurrentExecutions": config.requested,
                    "AvailableProvisionedConcurrentExecutions": config.requested,
                    "AllocatedProvisionedConcurrentExecutions": config.requested,
                    "Status": "READY",
                    "LastModified": config.last_modified,
                }),
            ))
        })
    }

    /// Idempotent, as LocalStack found AWS to be.
    pub(super) fn delete_provisioned(&self, place: &Place, raw: &str, query: &[(String, String)]) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        let q = qualifier(query, NOT_ALIAS_OR_VERSION)?;
        self.with(place, &name, |f| {
            ensure_target(f, q)?;
            f.provisioned.remove(q);
            Ok((StatusCode::NO_CONTENT, Value::Null))
        })
    }
}
