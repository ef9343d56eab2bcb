//! The CloudWatch adapter that judges a new version: the alarms the resource names (DescribeAlarms), and the new
//! version's own error rate through the alias (GetMetricData on AWS/Lambda `Errors` and `Invocations` with
//! dimensions `FunctionName`, `Resource=<function>:<alias>`, `ExecutedVersion=<version>`: the stable version's
//! errors do not count against it).

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StateValue};

use crate::Error;
use crate::aws::{RateLimiter, aws_error};
use crate::release::{Release, Verdict};
use crate::retry::{Budget, Call};

/// Lambda's metrics have one-minute resolution: a window is widened to whole minutes.
const PERIOD_SECONDS: i32 = 60;
/// DescribeAlarms takes at most this many names per request.
const ALARMS_PER_REQUEST: usize = 100;

pub struct Judge {
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// CloudWatch's own quotas (DescribeAlarms 9/s, GetMetricData 50/s by default): one pace for both, under the
    /// lower.
    limiter: RateLimiter,
}

impl Judge {
    pub fn new(cloudwatch: aws_sdk_cloudwatch::Client) -> Self {
        Judge { cloudwatch, limiter: RateLimiter::per_second(9, 8) }
    }

    /// Which of `names` do not exist.
    pub async fn missing_alarms(&self, names: &[String], budget: Budget<'_>) -> Result<Vec<String>, Error> {
        let states = self.alarm_states(names, budget).await?;
        Ok(names.iter().filter(|name| !states.iter().any(|(found, _)| found == *name)).cloned().collect())
    }

    /// The judgment of `version` of `function` through `release.alias` since `since`.
    pub async fn judge(
        &self,
        function: &str,
        version: &str,
        release: &Release,
        since: jiff::Timestamp,
        budget: Budget<'_>,
    ) -> Verdict {
        if !release.alarms.is_empty() {
            let states = match self.alarm_states(&release.alarms, budget).await {
                Ok(states) => states,
                Err(err) => return Verdict::Unjudged(err.to_string()),
            };
            let missing: Vec<&String> =
                release.alarms.iter().filter(|name| !states.iter().any(|(found, _)| found == *name)).collect();
            if !missing.is_empty() {
                return Verdict::Fail(format!("alarm {} does not exist", quoted(&missing)));
            }
            let firing: Vec<&String> =
                states.iter().filter(|(_, state)| *state == StateValue::Alarm).map(|(name, _)| name).collect();
            if !firing.is_empty() {
                return Verdict::Fail(format!("alarm {} is in ALARM", quoted(&firing)));
            }
        }
        let Some(max_rate) = release.max_error_rate else { return Verdict::Pass };
        let (invocations, errors) = match self.counts(function, &release.alias, version, since, budget).await {
            Ok(counts) => counts,
            Err(err) => return Verdict::Unjudged(err.to_string()),
        };
        if invocations < f64::from(release.min_invocations) || invocations == 0.0 {
            return Verdict::Hold(format!(
                "{invocations:.0} of the {} invocations of version {version} needed to judge its error rate",
                release.min_invocations
            ));
        }
        let rate = 100.0 * errors / invocations;
        if rate > max_rate {
            return Verdict::Fail(format!(
                "error rate of version {version} is {rate:.1}% ({errors:.0} errors in {invocations:.0} invocations), above {max_rate}%"
            ));
        }
        Verdict::Pass
    }

    async fn alarm_states(&self, names: &[String], budget: Budget<'_>) -> Result<Vec<(String, StateValue)>, Error> {
        let mut states = Vec::new();
        for chunk in names.chunks(ALARMS_PER_REQUEST) {
            let output = budget
                .run(Call::new("cloudwatch", "DescribeAlarms"), Some(&self.limiter), || async {
                    self.cloudwatch
                        .describe_alarms()
                        .set_alarm_names(Some(chunk.to_vec()))
                        .send()
                        .await
                        .map_err(|e| aws_error("cloudwatch", "DescribeAlarms", e))
                })
                .await?;
            for alarm in output.metric_alarms() {
                if let (Some(name), Some(state)) = (alarm.alarm_name(), alarm.state_value()) {
                    states.push((name.to_string(), state.clone()));
                }
            }
            for alarm in output.composite_alarms() {
                if let (Some(name), Some(state)) = (alarm.alarm_name(), alarm.state_value()) {
                    states.push((name.to_string(), state.clone()));
                }
            }
        }
        Ok(states)
    }

    /// Invocations and errors of `version` through the alias since `since` (whole minutes), summed.
    async fn counts(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        since: jiff::Timestamp,
        budget: Budget<'_>,
    ) -> Result<(f64, f64), Error> {
        let dimension = |name: &str, value: String| Dimension::builder().name(name).value(value).build();
        let query = |id: &str, metric: &str| {
            let metric = Metric::builder()
                .namespace("AWS/Lambda")
                .metric_name(metric)
                .dimensions(dimension("FunctionName", function.to_string()))
                .dimensions(dimension("Resource", format!("{function}:{alias}")))
                .dimensions(dimension("ExecutedVersion", version.to_string()))
                .build();
            let stat = MetricStat::builder().metric(metric).period(PERIOD_SECONDS).stat("Sum").build();
            MetricDataQuery::builder().id(id).metric_stat(stat).return_data(true).build()
        };
        let minute = i64::from(PERIOD_SECONDS);
        let start = since.as_second().div_euclid(minute) * minute;
        let end = (jiff::Timestamp::now().as_second().div_euclid(minute) + 1) * minute;
        let mut sums = [0.0, 0.0];
        let mut token: Option<String> = None;
        loop {
            let output = budget
                .run(Call::new("cloudwatch", "GetMetricData"), Some(&self.limiter), || async {
                    self.cloudwatch
                        .get_metric_data()
                        .metric_data_queries(query("invocations", "Invocations"))
                        .metric_data_queries(query("errors", "Errors"))
                        .start_time(DateTime::from_secs(start))
                        .end_time(DateTime::from_secs(end))
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| aws_error("cloudwatch", "GetMetricData", e))
                })
                .await?;
            for result in output.metric_data_results() {
                let index = usize::from(result.id() == Some("errors"));
                sums[index] += result.values().iter().sum::<f64>();
            }
            token = output.next_token().map(String::from);
            if token.is_none() {
                return Ok((sums[0], sums[1]));
            }
        }
    }
}

fn quoted(names: &[&String]) -> String {
    names.iter().map(|name| format!("{name:?}")).collect::<Vec<_>>().join(", ")
}
