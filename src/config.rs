//! Configuration from the environment, validated once at start-up: a bad value fails the container's init with
//! a message naming the variable, instead of failing every invocation later.

use std::time::Duration;

use crate::accounts::{TargetRoles, parse_regional_buckets};
use crate::arn::ArnGlob;
use crate::key::KeyTemplate;
use crate::{Error, Result};

/// How the deployer reaches the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterAccess {
    /// EKS: DescribeCluster + a presigned STS token (production).
    Eks { cluster_name: String },
    /// A kubeconfig file (local use).
    Kubeconfig { path: String },
}

#[derive(Clone, Debug)]
pub struct Config {
    pub cluster: ClusterAccess,
    pub artifact_bucket: String,
    pub key_template: KeyTemplate,
    /// `None`: only the deployer's own account and region (resolved from its identity at start-up).
    pub allowed_function_arns: Option<Vec<ArnGlob>>,
    pub namespace_policy: Option<NamespacePolicy>,
    pub max_concurrency: usize,
    /// `None`: all namespaces.
    pub watch_namespaces: Option<Vec<String>>,
    /// No new LD is started when less than this remains before the invocation's deadline.
    pub deadline_margin: Duration,
    /// How long to wait for one started update to finish before reporting it as still Deploying.
    pub update_timeout: Duration,
    /// How sweeps read the functions' code.
    pub function_observation: FunctionObservation,
    /// One attempt of any AWS or Kubernetes call that has not answered after this long is given up (and retried
    /// while the deadline allows).
    pub call_timeout: Duration,
    /// The deployer's own SQS queue, to wake itself when a rollout step is due; `None`: sweeps take due steps.
    pub rollout_queue_url: Option<String>,
    /// The roles assumed in other accounts (`TARGET_ROLE_ARN`, `TARGET_ROLES`, `TARGET_EXTERNAL_ID`).
    pub target_roles: TargetRoles,
    /// `ARTIFACT_BUCKETS`: the artifact bucket of each region other than the deployer's.
    pub regional_buckets: Vec<(String, String)>,
}

/// How a sweep observes the functions it targets. Events always use GetFunction: they target one or two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionObservation {
    /// Whichever is quicker for the fleet: ListFunctions pages when the account's functions (GetAccountSettings)
    /// fit in fewer pages than the targets' GetFunction calls take; GetFunction when listing is not allowed.
    Auto,
    /// One GetFunction per target; never ListFunctions (the least-privilege choice).
    GetFunction,
    /// Always ListFunctions pages.
    ListFunctions,
}

impl FunctionObservation {
    fn parse(text: &str) -> Result<FunctionObservation, String> {
        match text {
            "auto" => Ok(FunctionObservation::Auto),
            "get-function" => Ok(FunctionObservation::GetFunction),
            "list-functions" => Ok(FunctionObservation::ListFunctions),
            other => Err(format!("{other:?} is not auto, get-function or list-functions")),
        }
    }
}

/// Which namespaces may target which function ARNs: `team-a=arn:...:function:a-*|arn:...;team-b=...`.
/// When set, a namespace without an entry may target nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespacePolicy(Vec<(String, Vec<ArnGlob>)>);

impl NamespacePolicy {
    pub fn parse(text: &str) -> Result<NamespacePolicy, String> {
        let mut entries = Vec::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (namespace, globs) =
                entry.split_once('=').ok_or_else(|| format!("entry {entry:?} is not namespace=pattern|pattern"))?;
            let globs = globs.split('|').map(ArnGlob::new).collect::<Result<Vec<_>, _>>()?;
            entries.push((namespace.trim().to_string(), globs));
        }
        Ok(NamespacePolicy(entries))
    }

    /// The patterns a namespace may target, or None when the policy has no entry for it.
    pub fn patterns_for(&self, namespace: &str) -> Option<&[ArnGlob]> {
        self.0.iter().find(|(ns, _)| ns == namespace).map(|(_, globs)| globs.as_slice())
    }
}

impl Config {
    /// Reads the configuration through `var` (the process environment in production, a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let non_empty = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let cluster = match (non_empty("CLUSTER_NAME"), non_empty("KUBECONFIG")) {
            (Some(cluster_name), _) => ClusterAccess::Eks { cluster_name },
            (None, Some(path)) => ClusterAccess::Kubeconfig { path },
            (None, None) => {
                return Err(Error::config("CLUSTER_NAME", "set CLUSTER_NAME (EKS) or KUBECONFIG (local use)"));
            }
        };
        let artifact_bucket = non_empty("ARTIFACT_BUCKET")
            .ok_or_else(|| Error::config("ARTIFACT_BUCKET", "required: the S3 bucket CI uploads artifacts to"))?;
        let key_template = match non_empty("KEY_TEMPLATE") {
            Some(template) => KeyTemplate::parse(&template)?,
            None => KeyTemplate::default(),
        };
        let allowed_function_arns = non_empty("ALLOWED_FUNCTION_ARNS")
            .map(|list| {
                list.split(',').filter(|p| !p.trim().is_empty()).map(ArnGlob::new).collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|reason| Error::config("ALLOWED_FUNCTION_ARNS", reason))?;
        let namespace_policy = non_empty("NAMESPACE_POLICY")
            .map(|text| NamespacePolicy::parse(&text))
            .transpose()
            .map_err(|reason| Error::config("NAMESPACE_POLICY", reason))?;
        let max_concurrency = parse_number(non_empty("MAX_CONCURRENCY"), "MAX_CONCURRENCY", 8, 1..=64)? as usize;
        let watch_namespaces = non_empty("WATCH_NAMESPACES")
            .map(|list| list.split(',').map(str::trim).filter(|ns| !ns.is_empty()).map(String::from).collect());
        let deadline_margin = Duration::from_secs(parse_number(
            non_empty("DEADLINE_MARGIN_SECONDS"),
            "DEADLINE_MARGIN_SECONDS",
            20,
            0..=600,
        )?);
        let update_timeout = Duration::from_secs(parse_number(
            non_empty("UPDATE_TIMEOUT_SECONDS"),
            "UPDATE_TIMEOUT_SECONDS",
            60,
            1..=600,
        )?);
        let call_timeout =
            Duration::from_secs(parse_number(non_empty("CALL_TIMEOUT_SECONDS"), "CALL_TIMEOUT_SECONDS", 10, 1..=120)?);
        let function_observation = non_empty("FUNCTION_OBSERVATION")
            .map(|text| FunctionObservation::parse(&text))
            .transpose()
            .map_err(|reason| Error::config("FUNCTION_OBSERVATION", reason))?
            .unwrap_or(FunctionObservation::Auto);
        let target_roles = TargetRoles::parse(
            non_empty("TARGET_ROLE_ARN").as_deref(),
            non_empty("TARGET_ROLES").as_deref(),
            non_empty("TARGET_EXTERNAL_ID").as_deref(),
        )
        .map_err(|(variable, reason)| Error::config(variable, reason))?;
        let regional_buckets = non_empty("ARTIFACT_BUCKETS")
            .map(|list| parse_regional_buckets(&list))
            .transpose()
            .map_err(|reason| Error::config("ARTIFACT_BUCKETS", reason))?
            .unwrap_or_default();
        Ok(Config {
            target_roles,
            regional_buckets,
            function_observation,
            cluster,
            artifact_bucket,
            key_template,
            allowed_function_arns,
            namespace_policy,
            max_concurrency,
            watch_namespaces,
            deadline_margin,
            update_timeout,
            call_timeout,
            rollout_queue_url: non_empty("ROLLOUT_QUEUE_URL"),
        })
    }

    pub fn from_env() -> Result<Config> {
        Config::from_vars(|name| std::env::var(name).ok())
    }
}

fn parse_number(
    value: Option<String>,
    variable: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64> {
    let Some(value) = value else { return Ok(default) };
    let number: u64 = value.parse().map_err(|_| Error::config(variable, format!("{value:?} is not a number")))?;
    if !range.contains(&number) {
        return Err(Error::config(variable, format!("{number} is outside {}..={}", range.start(), range.end())));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn minimal_configuration_uses_documented_defaults() {
        let config = config(&[("CLUSTER_NAME", "prod"), ("ARTIFACT_BUCKET", "artifacts")]).unwrap();
        assert_eq!(config.cluster, ClusterAccess::Eks { cluster_name: "prod".into() });
        assert_eq!(config.key_template.render("orders", "abcdef1"), "orders/abcdef1.zip");
        assert_eq!(config.max_concurrency, 8);
        assert_eq!(config.function_observation, FunctionObservation::Auto);
        assert!(config.allowed_function_arns.is_none() && config.watch_namespaces.is_none());
    }

    #[test]
    fn kubeconfig_is_used_when_no_cluster_name_is_set() {
        let config = config(&[("KUBECONFIG", "/tmp/kc"), ("ARTIFACT_BUCKET", "a")]).unwrap();
        assert_eq!(config.cluster, ClusterAccess::Kubeconfig { path: "/tmp/kc".into() });
    }

    #[test]
    fn each_invalid_variable_is_named_in_the_error() {
        let base = [("CLUSTER_NAME", "c"), ("ARTIFACT_BUCKET", "b")];
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[("FUNCTION_OBSERVATION", "list")], "FUNCTION_OBSERVATION"),
            (&[("ARTIFACT_BUCKET", "b")], "CLUSTER_NAME"),
            (&[("CLUSTER_NAME", "c")], "ARTIFACT_BUCKET"),
            (&[("MAX_CONCURRENCY", "0")], "MAX_CONCURRENCY"),
            (&[("MAX_CONCURRENCY", "lots")], "MAX_CONCURRENCY"),
            (&[("ALLOWED_FUNCTION_ARNS", "orders-*")], "ALLOWED_FUNCTION_ARNS"),
            (&[("NAMESPACE_POLICY", "team-a")], "NAMESPACE_POLICY"),
        ];
        for (overrides, variable) in cases {
            let mut vars: Vec<(&str, &str)> =
                if overrides.iter().any(|(k, _)| *k == "CLUSTER_NAME" || *k == "ARTIFACT_BUCKET") {
                    Vec::new()
                } else {
                    base.to_vec()
                };
            vars.extend_from_slice(overrides);
            let err = config(&vars).unwrap_err().to_string();
            assert!(err.contains(variable), "{overrides:?}: {err}");
        }
    }

    #[test]
    fn namespace_policy_lists_patterns_per_namespace() {
        let policy = NamespacePolicy::parse(
            "team-a=arn:aws:lambda:*:111111111111:function:a-*|arn:aws:lambda:*:111111111111:function:shared; team-b=arn:aws:lambda:*:*:function:b-*",
        )
        .unwrap();
        assert_eq!(policy.patterns_for("team-a").map(<[_]>::len), Some(2));
        assert!(
            policy.patterns_for("team-b").unwrap()[0].matches("arn:aws:lambda:us-east-1:222222222222:function:b-x")
        );
        assert!(policy.patterns_for("team-c").is_none());
    }
}
