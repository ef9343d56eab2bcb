//! The Lambda adapter: observe a function (GetFunction: its own 100 requests/s quota, and it returns the tags),
//! claim it with the owner tag, update its code from an exact S3 object version guarded by RevisionId, and wait
//! for the update to finish.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::{LambdaLimits, aws_error};
use crate::crd::{ArtifactStatus, CLUSTER_TAG, OWNER_TAG};
use crate::ownership::Claim;
use crate::plan::{FunctionState, Observed};
use crate::retry::{Attempted, Budget, Call};
use crate::{Error, Result};

const GET_FUNCTION: Call = Call::new("lambda", "GetFunction");
/// Between two looks at a function whose update is in flight. The confirmation limiter spreads the polls of many
/// updates; one update alone is confirmed within this much of finishing.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct Functions {
    lambda: aws_sdk_lambda::Client,
    /// Lambda's quotas are per account and region: shared with [`crate::versions::Versions`].
    limits: std::sync::Arc<LambdaLimits>,
}

impl Functions {
    pub fn new(lambda: aws_sdk_lambda::Client, limits: std::sync::Arc<LambdaLimits>) -> Self {
        Functions { lambda, limits }
    }

    pub async fn observe(&self, arn: &str, budget: Budget<'_>) -> Observed<FunctionState> {
        let output = match get_function(&self.lambda, &self.limits, arn, None, budget).await {
            Observed::Found(output) => output,
            Observed::Missing => return Observed::Missing,
            Observed::NotObserved => return Observed::NotObserved,
            Observed::Failed(reason) => return Observed::Failed(reason),
        };
        let Some(config) = output.configuration() else {
            return Observed::Failed("GetFunction returned no configuration".into());
        };
        Observed::Found(FunctionState {
            code_sha256: config.code_sha256().unwrap_or_default().to_string(),
            revision_id: config.revision_id().unwrap_or_default().to_string(),
            state: config.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            last_update_status: config.last_update_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            last_update_reason: config.last_update_status_reason().map(String::from),
            last_update_reason_code: config.last_update_status_reason_code().map(|c| c.as_str().to_string()),
            last_modified_ago: config.last_modified().and_then(age_of_lambda_time),
            claim: Claim::from_tags(output.tags()),
            detailed: true,
        })
    }

    /// How many functions the account has in this region (GetAccountSettings: one control-plane request): what
    /// a ListFunctions listing would page through.
    pub async fn count_in_account(&self, budget: Budget<'_>) -> Result<usize> {
        let call = Call::new("lambda", "GetAccountSettings");
        let settings = budget
            .run(call, Some(&self.limits.control_plane), || async {
                self.lambda
                    .get_account_settings()
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda", "GetAccountSettings", e))
            })
            .await?;
        Ok(settings.account_usage().map_or(0, |usage| usage.function_count().max(0) as usize))
    }

    /// Lists the account's functions, 50 per page (one control-plane request each), by unqualified ARN.
    pub async fn list(&self, budget: Budget<'_>, page_patience: Duration) -> Result<HashMap<String, FunctionState>> {
        let mut functions = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            // Out of time: what was listed is used, the rest is observed one by one (or by the next sweep).
            if marker.is_some() && budget.expired() {
                return Ok(functions);
            }
            let page = budget
                .until(Some(Instant::now() + page_patience))
                .run(Call::new("lambda", "ListFunctions"), Some(&self.limits.control_plane), || async {
                    self.lambda
                        .list_functions()
                        .set_marker(marker.clone())
                        .max_items(50)
                        .send()
                        .await
                        .map_err(|e| aws_error("lambda", "ListFunctions", e))
                })
                .await;
            // A page that does not come (throttled, unreachable, slow) ends the listing; the pages listed are used.
            let page = match page {
                Ok(page) => page,
                Err(err) if marker.is_some() => {
                    tracing::warn!(error = %err, listed = functions.len(), "ListFunctions stopped; the rest are observed one by one");
                    return Ok(functions);
                }
                Err(err) => return Err(err),
            };
            for config in page.functions() {
                let Some(arn) = config.function_arn() else { continue };
                functions.insert(
                    arn.to_string(),
                    FunctionState {
                        code_sha256: config.code_sha256().unwrap_or_default().to_string(),
                        revision_id: config.revision_id().unwrap_or_default().to_string(),
                        state: String::new(),
                        last_update_status: String::new(),
                        last_update_reason: None,
                        last_update_reason_code: None,
                        last_modified_ago: None,
                        claim: Claim::default(),
                        detailed: false,
                    },
                );
            }
            marker = page.next_marker().map(String::from);
            if marker.is_none() {
                return Ok(functions);
            }
        }
    }

    /// Tags the function with its owning LambdaDeployment (`namespace/name`) and the cluster it lives in. Tagging
    /// twice is harmless, so a retry after a lost answer needs no care.
    pub async fn claim(&self, arn: &str, owner: &str, cluster: &str, budget: Budget<'_>) -> Result<()> {
        budget
            .run(Call::new("lambda", "TagResource"), Some(&self.limits.control_plane), || async {
                self.lambda
                    .tag_resource()
                    .resource(arn)
                    .tags(OWNER_TAG, owner)
                    .tags(CLUSTER_TAG, cluster)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws_error("lambda", "TagResource", e))
            })
            .await
    }

    /// Starts the update. Fails with ResourceConflictException while another update runs and with
    /// PreconditionFailedException if the function changed since `revision_id` was observed — which is also what a
    /// retry meets when an earlier attempt was applied and only its answer was lost (`maybe_applied`).
    pub async fn update_code(
        &self,
        arn: &str,
        artifact: &ArtifactStatus,
        revision_id: &str,
        budget: Budget<'_>,
    ) -> Attempted<()> {
        let call = Call::new("lambda", "UpdateFunctionCode");
        budget
            .run_write(call, Some(&self.limits.control_plane), || async {
                self.lambda
                    .update_function_code()
                    .function_name(arn)
                    .s3_bucket(&artifact.bucket)
                    .s3_key(&artifact.key)
                    .set_s3_object_version(artifact.version_id.clone())
                    .revision_id(revision_id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws_error("lambda", "UpdateFunctionCode", e))
            })
            .await
    }

    /// Polls until no update or creation is in progress, or `timeout` passes (then the last observation is
    /// returned, still InProgress). Only called when the function is busy (our update, a conflict, an observed
    /// InProgress), so it waits before the first look instead of spending a GetFunction on a known answer.
    pub async fn wait_until_settled(&self, arn: &str, timeout: Duration, budget: Budget<'_>) -> Settled {
        let give_up = Instant::now() + timeout;
        let budget = budget.until(Some(give_up));
        let mut settled = Settled { last: Observed::NotObserved, applying: None };
        loop {
            tokio::time::sleep(POLL_INTERVAL.min(budget.time_left().unwrap_or(POLL_INTERVAL))).await;
            if !self.limits.confirm.acquire(budget.deadline).await {
                return settled;
            }
            settled.last = self.observe(arn, budget).await;
            let busy = match &settled.last {
                Observed::Found(f) if f.last_update_status == "InProgress" => {
                    settled.applying = Some(f.code_sha256.clone());
                    true
                }
                Observed::Found(f) => f.state == "Pending",
                _ => false,
            };
            if !busy || budget.expired() {
                return settled;
            }
        }
    }
}

/// How long ago a Lambda timestamp (`2026-12-06T11:00:00.000+0000`) was; `None` if unreadable or in the future.
fn age_of_lambda_time(text: &str) -> Option<Duration> {
    let then = jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%.f%z", text).ok()?.to_timestamp().ok()?;
    jiff::Timestamp::now().duration_since(then).try_into().ok()
}

/// What waiting for a busy function saw.
pub struct Settled {
    /// The last observation: settled, or still busy when the wait gave up.
    pub last: Observed<FunctionState>,
    /// The CodeSha256 an update in progress was applying when last seen (during an update CodeSha256 already names
    /// the new code): whoever sent it, that is the code a failure then reported failed.
    pub applying: Option<String>,
}

/// GetFunction of the function or of one of its versions or aliases (`qualifier`): GetFunction's own quota.
/// `Missing` when there is no such function, version or alias.
pub(crate) async fn get_function(
    lambda: &aws_sdk_lambda::Client,
    limits: &LambdaLimits,
    arn: &str,
    qualifier: Option<&str>,
    budget: Budget<'_>,
) -> Observed<aws_sdk_lambda::operation::get_function::GetFunctionOutput> {
    // The first call each resource makes to its account: where an unreachable one is found, and then skipped.
    if let Some(reason) = limits.unreachable.reason() {
        return Observed::Failed(reason);
    }
    let output = budget
        .run(GET_FUNCTION, Some(&limits.get_function), || async {
            lambda
                .get_function()
                .function_name(arn)
                .set_qualifier(qualifier.map(String::from))
                .send()
                .await
                .map_err(|e| aws_error("lambda", "GetFunction", e))
        })
        .await;
    match output {
        Ok(output) => {
            limits.unreachable.answered();
            Observed::Found(output)
        }
        Err(err) if err.aws_code() == Some("ResourceNotFoundException") => {
            limits.unreachable.answered();
            Observed::Missing
        }
        Err(err) => {
            if err.unreachable() {
                limits.unreachable.failed(arn, &err);
            }
            Observed::failed(&err)
        }
    }
}

/// Whether an error from UpdateFunctionCode means "someone else changed or is changing the function":
/// re-observe and decide again instead of failing.
pub fn lost_race(err: &Error) -> bool {
    matches!(err.aws_code(), Some("ResourceConflictException" | "PreconditionFailedException"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_timestamps_are_read_as_an_age() {
        let minute_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
        let text = minute_ago.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
        let age = age_of_lambda_time(&text).expect("Lambda's LastModified format");
        assert!((59..=61).contains(&age.as_secs()), "{age:?}");
        assert_eq!(age_of_lambda_time("yesterday"), None);
        let future =
            (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)).strftime("%Y-%m-%dT%H:%M:%S%.3f+0000");
        assert_eq!(age_of_lambda_time(&future.to_string()), None, "a clock ahead gives no age");
    }
}
