//! Where functions live: Lambda's quotas, clients and listings are per (account, region). The deployer reaches its
//! own account with its own role; another account through a role it assumes there (`TARGET_ROLE_ARN` with
//! `{account}`, or `TARGET_ROLES`), whose session is kept until five minutes before it expires and renewed at once
//! when a call finds it expired. Artifacts stay in the deployer's buckets: `ARTIFACT_BUCKET` in its own region, one
//! bucket per other region (`ARTIFACT_BUCKETS`), because Lambda reads code only from a bucket in the function's
//! region.
//!
//! [`TargetRoles`] and [`Place`] are configuration and pure lookups; [`Accounts`] builds each place's clients on
//! first use and keeps them for the container's life.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, future};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tokio::sync::{Mutex, Semaphore};

use crate::arn::FunctionArn;
use crate::artifact::ArtifactStore;
use crate::aws::{AssumeFailed, LambdaLimits};
use crate::function::Functions;
use crate::judge::Judge;
use crate::versions::Versions;

/// A session is renewed this long before it expires, so no call is signed with credentials about to lapse.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// An (account, region): what Lambda's quotas, clients and listings are per.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub account: String,
    pub region: String,
}

impl Place {
    pub fn of(arn: &FunctionArn) -> Place {
        Place { account: arn.account.clone(), region: arn.region.clone() }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// Which role the deployer assumes in each other account, and the artifact bucket of each other region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetRoles {
    /// `TARGET_ROLE_ARN`: a role ARN with `{account}` where the account goes.
    pub template: Option<String>,
    /// `TARGET_ROLES`: role ARNs (each for its own account), or `account=roleArn` entries; they take precedence
    /// over the template.
    pub explicit: Vec<(String, String)>,
    /// `TARGET_EXTERNAL_ID`: passed on every AssumeRole, for roles whose trust policy requires one.
    pub external_id: Option<String>,
}

impl TargetRoles {
    /// Parses the three variables (each optional), checking every ARN's shape.
    pub fn parse(
        template: Option<&str>,
        explicit: Option<&str>,
        external_id: Option<&str>,
    ) -> Result<TargetRoles, (&'static str, String)> {
        let template = template
            .map(|template| {
                if template.matches("{account}").count() != 1 {
                    return Err(format!("{template:?} must contain {{account}} once, where the account id goes"));
                }
                role_arn_shape(&template.replace("{account}", "123456789012"))?;
                Ok(template.to_string())
            })
            .transpose()
            .map_err(|reason| ("TARGET_ROLE_ARN", reason))?;
        let explicit = explicit
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .map(|entry| match entry.split_once('=') {
                        // A role ARN alone: its account is the one it is for.
                        None => Ok((role_arn_shape(entry)?, entry.to_string())),
                        Some((_, role)) => {
                            let account = account_id(entry)?;
                            let roles_account = role_arn_shape(role.trim())?;
                            if roles_account != account {
                                return Err(format!(
                                    "entry {entry:?} names a role in another account ({roles_account})"
                                ));
                            }
                            Ok((account, role.trim().to_string()))
                        }
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .transpose()
            .map_err(|reason| ("TARGET_ROLES", reason))?
            .unwrap_or_default();
        let external_id = external_id
            .map(|id| match id.len() {
                2..=1224 if id.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c)) => Ok(id.into()),
                _ => Err("must be 2-1224 characters of letters, digits and +=,.@:/-_".to_string()),
            })
            .transpose()
            .map_err(|reason| ("TARGET_EXTERNAL_ID", reason))?;
        Ok(TargetRoles { template, explicit, external_id })
    }

    /// The role to assume in `account`, if the deployer has one there.
    pub fn role_for(&self, account: &str) -> Option<String> {
        let explicit = self.explicit.iter().find(|(a, _)| a == account).map(|(_, role)| role.clone());
        explicit.or_else(|| self.template.as_ref().map(|t| t.replace("{account}", account)))
    }
}

/// The account of a `TARGET_ROLES` entry (`account=...`), checked to be 12 digits.
fn account_id(entry: &str) -> Result<String, String> {
    let account = entry.split_once('=').map_or(entry, |(account, _)| account).trim();
    if account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) {
        Ok(account.to_string())
    } else {
        Err(format!("{account:?} is not a 12-digit account id"))
    }
}

/// Checks `arn:<partition>:iam::<account>:role/<path/name>`; returns the account.
fn role_arn_shape(arn: &str) -> Result<String, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if !partition.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()) =>
        {
            Ok(account.to_string())
        }
        _ => Err(format!("{arn:?} is not a role ARN (arn:<partition>:iam::<account-id>:role/<name>)")),
    }
}

/// Parses `ARTIFACT_BUCKETS`: `region=bucket` entries.
pub fn parse_regional_buckets(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (region, bucket) =
                entry.split_once('=').ok_or_else(|| format!("entry {entry:?} is not region=bucket"))?;
            let (region, bucket) = (region.trim(), bucket.trim());
            let region_shape = region.split('-').count() >= 3
                && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !region_shape {
                return Err(format!("{region:?} is not a region (e.g. us-west-2)"));
            }
            if !(3..=63).contains(&bucket.len()) {
                return Err(format!("{bucket:?} is not a bucket name"));
            }
            Ok((region.to_string(), bucket.to_string()))
        })
        .collect()
}

/// One (account, region)'s clients, quotas and acting slots.
pub struct Account {
    pub place: Place,
    /// The role assumed to reach it (`None`: the deployer's own account).
    pub role: Option<String>,
    pub functions: Functions,
    pub versions: Versions,
    pub judge: Judge,
    /// Acting holds one of these (`MAX_CONCURRENCY` per place): a slow or throttled account never takes another's.
    pub acting: Arc<Semaphore>,
}

/// Every place's [`Account`], built on first use.
pub struct Accounts {
    sdk: SdkConfig,
    own: Place,
    roles: TargetRoles,
    regional_buckets: Vec<(String, String)>,
    session_name: String,
    max_concurrency: usize,
    built: Mutex<HashMap<Place, Arc<Account>>>,
    stores: Mutex<HashMap<String, Arc<ArtifactStore>>>,
}

impl Accounts {
    pub fn new(
        sdk: &SdkConfig,
        own: Place,
        roles: TargetRoles,
        regional_buckets: Vec<(String, String)>,
        session_name: String,
        max_concurrency: usize,
    ) -> Self {
        Accounts {
            sdk: sdk.clone(),
            own,
            roles,
            regional_buckets,
            session_name,
            max_concurrency,
            built: Mutex::default(),
            stores: Mutex::default(),
        }
    }

    pub fn own(&self) -> &Place {
        &self.own
    }

    /// The place's clients. A place in another account without a role is refused before any call ([`crate::plan`]
    /// blocks such resources); reaching it here anyway uses the deployer's own credentials, which AWS refuses.
    pub async fn at(&self, place: &Place) -> Arc<Account> {
        let mut built = self.built.lock().await;
        if let Some(account) = built.get(place) {
            return account.clone();
        }
        let role = (place.account != self.own.account).then(|| self.roles.role_for(&place.account)).flatten();
        let (sdk, session) = self.sdk_for(place, role.as_deref()).await;
        let mut lambda = aws_sdk_lambda::config::Builder::from(&sdk);
        let mut cloudwatch = aws_sdk_cloudwatch::config::Builder::from(&sdk);
        if let Some(session) = session {
            lambda = lambda.interceptor(RenewExpiredSession(session.clone()));
            cloudwatch = cloudwatch.interceptor(RenewExpiredSession(session));
        }
        let lambda = aws_sdk_lambda::Client::from_conf(lambda.build());
        let limits = Arc::new(LambdaLimits::default());
        let account = Arc::new(Account {
            place: place.clone(),
            role,
            functions: Functions::new(lambda.clone(), limits.clone()),
            versions: Versions::new(lambda, limits),
            judge: Judge::new(aws_sdk_cloudwatch::Client::from_conf(cloudwatch.build())),
            acting: Arc::new(Semaphore::new(self.max_concurrency)),
        });
        built.insert(place.clone(), account.clone());
        account
    }

    /// The account a function ARN names (the deployer's own for an ARN that does not parse: such a resource is
    /// refused before any call).
    pub async fn of(&self, arn: &str) -> Arc<Account> {
        let place = FunctionArn::parse(arn).map(|arn| Place::of(&arn)).unwrap_or_else(|_| self.own.clone());
        self.at(&place).await
    }

    /// The artifact store for `bucket`: in its region (one of `ARTIFACT_BUCKETS`, else the deployer's own), with
    /// the deployer's own credentials (its buckets are its own).
    pub async fn store_for(&self, bucket: &str) -> Arc<ArtifactStore> {
        let region = self.regional_buckets.iter().find(|(_, b)| b == bucket).map_or(&self.own.region, |(r, _)| r);
        self.store_in(region).await
    }

    async fn store_in(&self, region: &str) -> Arc<ArtifactStore> {
        let mut stores = self.stores.lock().await;
        if let Some(store) = stores.get(region) {
            return store.clone();
        }
        let sdk = self.sdk.to_builder().region(aws_config::Region::new(region.to_string())).build();
        // A custom endpoint (testbed, LocalStack) is addressed by IP or localhost: virtual-host buckets cannot resolve.
        let s3_config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(sdk.endpoint_url().is_some()).build();
        let store = Arc::new(ArtifactStore::new(aws_sdk_s3::Client::from_conf(s3_config)));
        stores.insert(region.to_string(), store.clone());
        store
    }

    /// The SDK configuration for a place: its region, and for another account the session of the role assumed
    /// there (which keeps its own credentials: no identity cache in front of it).
    async fn sdk_for(&self, place: &Place, role: Option<&str>) -> (SdkConfig, Option<Arc<Session>>) {
        let mut builder = self.sdk.to_builder();
        builder.set_region(Some(aws_config::Region::new(place.region.clone())));
        let Some(role) = role else { return (builder.build(), None) };
        let mut assume = AssumeRoleProvider::builder(role).session_name(&self.session_name).configure(&self.sdk);
        if let Some(external_id) = &self.roles.external_id {
            assume = assume.external_id(external_id);
        }
        let session =
            Arc::new(Session { role: role.to_string(), assume: assume.build().await, cached: Mutex::new(None) });
        builder.set_credentials_provider(Some(aws_credential_types::provider::SharedCredentialsProvider::new(
            SharedSession(session.clone()),
        )));
        builder.set_identity_cache(Some(aws_config::identity::IdentityCache::no_cache()));
        (builder.build(), Some(session))
    }
}

/// The session name the deployer's AssumeRole calls carry (CloudTrail in the target account shows it): its own
/// function's name, as STS allows (`[\w+=,.@-]`, 2-64 characters).
pub fn session_name(function_name: Option<&str>) -> String {
    let name: String = format!("lambda-deployer-{}", function_name.unwrap_or("local"))
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    name
}

/// Credentials of one assumed role, kept until [`RENEW_BEFORE_EXPIRY`] before they expire.
#[derive(Debug)]
struct Session {
    role: String,
    assume: AssumeRoleProvider,
    cached: Mutex<Option<Credentials>>,
}

impl Session {
    async fn credentials(&self) -> provider::Result {
        // Held while assuming: concurrent calls wait for one AssumeRole instead of each making one.
        let mut cached = self.cached.lock().await;
        let fresh = |c: &Credentials| c.expiry().is_none_or(|expiry| expiry > SystemTime::now() + RENEW_BEFORE_EXPIRY);
        if let Some(credentials) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(credentials.clone());
        }
        let credentials = self.assume.provide_credentials().await.map_err(|err| {
            provider::error::CredentialsError::provider_error(AssumeFailed {
                role: self.role.clone(),
                reason: aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
                transient: !refused(&err),
            })
        })?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }

    /// Forgets the credentials: the next call assumes the role again.
    fn expire(&self) {
        if let Ok(mut cached) = self.cached.try_lock() {
            *cached = None;
        }
    }
}

/// Whether STS refused the assumption (a 4xx other than throttling): retrying cannot help.
fn refused(err: &provider::error::CredentialsError) -> bool {
    type StsError = aws_sdk_sts::error::SdkError<
        aws_sdk_sts::operation::assume_role::AssumeRoleError,
        aws_smithy_runtime_api::http::Response,
    >;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if let Some(StsError::ServiceError(answer)) = err.downcast_ref::<StsError>() {
            let status = answer.raw().status().as_u16();
            let throttled = aws_sdk_sts::error::ProvideErrorMetadata::code(answer.err()) == Some("Throttling");
            return (400..500).contains(&status) && status != 429 && !throttled;
        }
        source = err.source();
    }
    matches!(err, provider::error::CredentialsError::InvalidConfiguration(_))
}

#[derive(Clone, Debug)]
struct SharedSession(Arc<Session>);

impl ProvideCredentials for SharedSession {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.0.credentials())
    }
}

/// Renews the session when AWS says its credentials expired (revoked, or a clock off): the retry then signs with
/// a new session instead of failing every remaining call of the account.
#[derive(Debug)]
struct RenewExpiredSession(Arc<Session>);

impl Intercept for RenewExpiredSession {
    fn name(&self) -> &'static str {
        "RenewExpiredSession"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let response = context.response();
        let error_type = response.headers().get("x-amzn-errortype").unwrap_or_default();
        let body = response.body().bytes().unwrap_or_default();
        if error_type.starts_with("ExpiredToken") || String::from_utf8_lossy(body).contains("ExpiredToken") {
            self.0.expire();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_explicit_list_first_then_the_template() {
        let roles = TargetRoles::parse(
            Some("arn:aws:iam::{account}:role/lambda-deployer-target"),
            Some("210987654321=arn:aws:iam::210987654321:role/special, arn:aws:iam::456789012345:role/plain"),
            None,
        )
        .unwrap();
        assert_eq!(roles.role_for("456789012345").as_deref(), Some("arn:aws:iam::456789012345:role/plain"));
        assert_eq!(roles.role_for("210987654321").as_deref(), Some("arn:aws:iam::210987654321:role/special"));
        assert_eq!(
            roles.role_for("345678901234").as_deref(),
            Some("arn:aws:iam::345678901234:role/lambda-deployer-target")
        );
        assert_eq!(TargetRoles::default().role_for("345678901234"), None, "no role: no other account");
    }

    #[test]
    fn bad_role_settings_name_the_variable_and_the_problem() {
        let cases = [
            (Some("arn:aws:iam::123456789012:role/fixed"), None, None, "TARGET_ROLE_ARN", "{account}"),
            (Some("arn:aws:lambda:{account}:x"), None, None, "TARGET_ROLE_ARN", "not a role ARN"),
            (None, Some("21098765432=arn:aws:iam::21098765432:role/x"), None, "TARGET_ROLES", "12-digit"),
            (None, Some("210987654321=arn:aws:iam::210987654321:user/x"), None, "TARGET_ROLES", "not a role ARN"),
            (None, Some("210987654321=arn:aws:iam::345678901234:role/x"), None, "TARGET_ROLES", "another account"),
            (None, Some("210987654321"), None, "TARGET_ROLES", "not a role ARN"),
            (None, None, Some("x"), "TARGET_EXTERNAL_ID", "2-1224"),
        ];
        for (template, explicit, external_id, variable, says) in cases {
            let (named, reason) = TargetRoles::parse(template, explicit, external_id).unwrap_err();
            assert_eq!(named, variable, "{reason}");
            assert!(reason.contains(says), "{variable}: {reason}");
        }
    }

    #[test]
    fn regional_buckets_are_region_bucket_pairs() {
        assert_eq!(
            parse_regional_buckets("us-west-2=artifacts-usw2, eu-west-1=artifacts-euw1").unwrap(),
            [("us-west-2".into(), "artifacts-usw2".into()), ("eu-west-1".into(), "artifacts-euw1".into())]
        );
        assert!(parse_regional_buckets("uswest2=b").unwrap_err().contains("not a region"));
        assert!(parse_regional_buckets("us-west-2").unwrap_err().contains("region=bucket"));
    }
}
