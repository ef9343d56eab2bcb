//! The Lambda adapter for releases: published versions and the alias (GetFunction with a qualifier — GetFunction's
//! own quota; GetAlias, PublishVersion, CreateAlias, UpdateAlias, ListVersionsByFunction, ListAliases, DeleteFunction
//! of a version — the shared control-plane quota), and the smoke test's Invoke.

use std::collections::HashSet;
use std::sync::Arc;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::AliasRoutingConfiguration;

use crate::Error;
use crate::aws::{LambdaLimits, aws_error};
use crate::function::get_function;
use crate::ownership::Claim;
use crate::plan::Observed;
use crate::release::{AliasState, AliasView};
use crate::retry::{Attempted, Budget, Call};

pub struct Versions {
    lambda: aws_sdk_lambda::Client,
    limits: Arc<LambdaLimits>,
}

/// A function's alias as GetFunction with the alias as qualifier shows it, with the function's claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewed {
    pub view: AliasView,
    pub claim: Claim,
}

impl Versions {
    pub fn new(lambda: aws_sdk_lambda::Client, limits: Arc<LambdaLimits>) -> Self {
        Versions { lambda, limits }
    }

    /// The configuration `qualifier` (an alias or a version) resolves to: its version and CodeSha256, and the
    /// function's owner tag. `Missing` when there is no such alias or version.
    pub async fn view(&self, arn: &str, qualifier: &str, budget: Budget<'_>) -> Observed<Viewed> {
        let output = match get_function(&self.lambda, &self.limits, arn, Some(qualifier), budget).await {
            Observed::Found(output) => output,
            Observed::Missing => return Observed::Missing,
            Observed::NotObserved => return Observed::NotObserved,
            Observed::Failed(reason) => return Observed::Failed(reason),
        };
        let Some(config) = output.configuration() else {
            return Observed::Failed("GetFunction returned no configuration".into());
        };
        Observed::Found(Viewed {
            view: AliasView {
                version: config.version().unwrap_or_default().to_string(),
                code_sha256: config.code_sha256().unwrap_or_default().to_string(),
            },
            claim: Claim::from_tags(output.tags()),
        })
    }

    /// The alias's versions, weights and RevisionId (GetAlias).
    pub async fn alias(&self, arn: &str, alias: &str, budget: Budget<'_>) -> Observed<AliasState> {
        let output = budget
            .run(Call::new("lambda", "GetAlias"), Some(&self.limits.control_plane), || async {
                self.lambda
                    .get_alias()
                    .function_name(arn)
                    .name(alias)
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda", "GetAlias", e))
            })
            .await;
        match output {
            Ok(output) => Observed::Found(AliasState {
                version: output.function_version().unwrap_or_default().to_string(),
                additional: output
                    .routing_config()
                    .and_then(|routing| routing.additional_version_weights())
                    .and_then(|weights| weights.iter().next())
                    .map(|(version, weight)| (version.clone(), *weight)),
                revision_id: output.revision_id().unwrap_or_default().to_string(),
            }),
            Err(err) if err.aws_code() == Some("ResourceNotFoundException") => Observed::Missing,
            Err(err) => Observed::failed(&err),
        }
    }

    /// Publishes `$LATEST` as a version, on the condition that it runs `code_sha256` at `revision_id`. Lambda
    /// returns the last version instead of a new one when nothing changed since it was published.
    pub async fn publish(
        &self,
        arn: &str,
        code_sha256: &str,
        revision_id: &str,
        budget: Budget<'_>,
    ) -> Attempted<String> {
        let attempted = budget
            .run_write(Call::new("lambda", "PublishVersion"), Some(&self.limits.control_plane), || async {
                self.lambda
                    .publish_version()
                    .function_name(arn)
                    .code_sha256(code_sha256)
                    .revision_id(revision_id)
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda", "PublishVersion", e))
            })
            .await;
        Attempted {
            result: attempted.result.map(|output| output.version().unwrap_or_default().to_string()),
            maybe_applied: attempted.maybe_applied,
        }
    }

    /// Points the alias at `main`, `additional` getting that percent of the traffic (none: all on `main`), on the
    /// condition that the alias is still at `revision_id`; without one, creates the alias.
    pub async fn move_alias(
        &self,
        arn: &str,
        alias: &str,
        main: &str,
        additional: Option<(&str, u32)>,
        revision_id: Option<&str>,
        budget: Budget<'_>,
    ) -> Attempted<()> {
        let mut routing = AliasRoutingConfiguration::builder();
        if let Some((version, percent)) = additional {
            routing = routing.additional_version_weights(version, f64::from(percent) / 100.0);
        } else {
            // An empty map clears weights left from a step.
            routing = routing.set_additional_version_weights(Some(Default::default()));
        }
        let routing = routing.build();
        match revision_id {
            Some(revision_id) => {
                budget
                    .run_write(Call::new("lambda", "UpdateAlias"), Some(&self.limits.control_plane), || async {
                        self.lambda
                            .update_alias()
                            .function_name(arn)
                            .name(alias)
                            .function_version(main)
                            .routing_config(routing.clone())
                            .revision_id(revision_id)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| aws_error("lambda", "UpdateAlias", e))
                    })
                    .await
            }
            None => {
                budget
                    .run_write(Call::new("lambda", "CreateAlias"), Some(&self.limits.control_plane), || async {
                        self.lambda
                            .create_alias()
                            .function_name(arn)
                            .name(alias)
                            .function_version(main)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| aws_error("lambda", "CreateAlias", e))
                    })
                    .await
            }
        }
    }

    /// Invokes `version` with `payload`: `Ok(Ok(()))` when it answered, `Ok(Err(..))` with the function's error.
    pub async fn smoke_test(
        &self,
        arn: &str,
        version: &str,
        payload: &str,
        budget: Budget<'_>,
    ) -> Result<Result<(), String>, Error> {
        let output = budget
            .run(Call::new("lambda", "Invoke"), None, || async {
                self.lambda
                    .invoke()
                    .function_name(arn)
                    .qualifier(version)
                    .payload(Blob::new(payload.as_bytes().to_vec()))
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda", "Invoke", e))
            })
            .await?;
        Ok(match output.function_error() {
            None => Ok(()),
            Some(kind) => {
                let body =
                    output.payload().map(|p| String::from_utf8_lossy(p.as_ref()).into_owned()).unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("errorMessage").and_then(|m| m.as_str()).map(String::from))
                    .unwrap_or(body);
                Err(format!("{kind}: {}", message.chars().take(500).collect::<String>()))
            }
        })
    }

    /// Deletes the versions in `candidates` that no alias of the function points to, except those in `keep`.
    /// Returns the versions deleted.
    pub async fn prune(
        &self,
        arn: &str,
        candidates: &[String],
        keep: &HashSet<String>,
        budget: Budget<'_>,
    ) -> Result<Vec<String>, Error> {
        let referenced = self.aliased_versions(arn, budget).await?;
        let mut deleted = Vec::new();
        for version in candidates.iter().filter(|v| !keep.contains(*v) && !referenced.contains(*v)) {
            let result = budget
                .run(Call::new("lambda", "DeleteFunction"), Some(&self.limits.control_plane), || async {
                    self.lambda
                        .delete_function()
                        .function_name(arn)
                        .qualifier(version)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("lambda", "DeleteFunction", e))
                })
                .await;
            match result {
                Ok(()) => deleted.push(version.clone()),
                // Gone already, or an alias started to point to it: either way not ours to delete now.
                Err(err)
                    if matches!(err.aws_code(), Some("ResourceNotFoundException" | "ResourceConflictException")) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(deleted)
    }

    /// The function's published versions, oldest first.
    pub async fn published(&self, arn: &str, budget: Budget<'_>) -> Result<Vec<String>, Error> {
        let mut versions: Vec<u64> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = budget
                .run(Call::new("lambda", "ListVersionsByFunction"), Some(&self.limits.control_plane), || async {
                    self.lambda
                        .list_versions_by_function()
                        .function_name(arn)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map_err(|e| aws_error("lambda", "ListVersionsByFunction", e))
                })
                .await?;
            versions.extend(page.versions().iter().filter_map(|v| v.version()?.parse::<u64>().ok()));
            marker = page.next_marker().map(String::from);
            if marker.is_none() {
                versions.sort_unstable();
                return Ok(versions.into_iter().map(|v| v.to_string()).collect());
            }
        }
    }

    /// Every version an alias of the function points to (main or additional).
    async fn aliased_versions(&self, arn: &str, budget: Budget<'_>) -> Result<HashSet<String>, Error> {
        let mut versions = HashSet::new();
        let mut marker: Option<String> = None;
        loop {
            let page = budget
                .run(Call::new("lambda", "ListAliases"), Some(&self.limits.control_plane), || async {
                    self.lambda
                        .list_aliases()
                        .function_name(arn)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map_err(|e| aws_error("lambda", "ListAliases", e))
                })
                .await?;
            for alias in page.aliases() {
                versions.extend(alias.function_version().map(String::from));
                let weights = alias.routing_config().and_then(|r| r.additional_version_weights());
                versions.extend(weights.into_iter().flat_map(|w| w.keys().cloned()));
            }
            marker = page.next_marker().map(String::from);
            if marker.is_none() {
                return Ok(versions);
            }
        }
    }
}
