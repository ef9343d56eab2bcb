//! The AWS identities, accounts and regions the testbed knows. moto does not check signatures, so the testbed is
//! the only place where credentials mean something: the Kubernetes server verifies EKS tokens with these secrets,
//! and the AWS layer decides from an access key which account a request acts in and answers STS
//! GetCallerIdentity with these ARNs.

/// moto's default account: the deployer's.
pub const ACCOUNT_ID: &str = "123456789012";
/// Accounts the deployer deploys into besides its own; each has the role `up::TARGET_ROLE` trusting the deployer.
pub const TARGET_ACCOUNTS: [&str; 2] = ["210987654321", "345678901234"];
pub const REGION: &str = "us-east-1";
pub const SECOND_REGION: &str = "us-west-2";
/// The regions the testbed serves; a request scoped to any other finds no endpoint.
pub const REGIONS: [&str; 2] = [REGION, SECOND_REGION];
pub const CLUSTER_NAME: &str = "testbed";
pub const ARTIFACT_BUCKET: &str = "lambda-artifacts";
/// The deployer account's versioned artifact bucket in [`SECOND_REGION`] (Lambda reads code only from a bucket in
/// the function's region).
pub const SECOND_REGION_ARTIFACT_BUCKET: &str = "lambda-artifacts-us-west-2";
/// The Kubernetes group the deployer's IAM role is mapped to (as the SAM template's access entry does).
pub const DEPLOYER_GROUP: &str = "lambda-deployer";

/// One set of AWS credentials and who they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsIdentity {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The ARN STS GetCallerIdentity returns (for a role: the assumed-role session ARN).
    pub caller_arn: String,
    /// The ARN access entries match (for an assumed-role session: the role ARN, as EKS does).
    pub principal_arn: String,
}

/// Maps an IAM principal to a Kubernetes user and groups, like an EKS access entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    pub principal_arn: String,
    pub username: String,
    pub groups: Vec<String>,
}

impl AwsIdentity {
    /// The deployer's role, assumed: what a Lambda function's execution role looks like from the inside.
    pub fn deployer() -> Self {
        let role = format!("arn:aws:iam::{ACCOUNT_ID}:role/lambda-deployer");
        AwsIdentity {
            access_key_id: "ASIATESTBEDDEPLOYER1".into(),
            secret_access_key: "testbed-deployer-secret-key-0000000000000".into(),
            caller_arn: format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/lambda-deployer/lambda-deployer-session"),
            principal_arn: role,
        }
    }

    /// A CI/admin user: uploads artifacts and creates functions in tests. Has no access entry.
    pub fn admin() -> Self {
        let arn = format!("arn:aws:iam::{ACCOUNT_ID}:user/testbed-admin");
        AwsIdentity {
            access_key_id: "AKIATESTBEDADMIN0001".into(),
            secret_access_key: "testbed-admin-secret-key-00000000000000000".into(),
            caller_arn: arn.clone(),
            principal_arn: arn,
        }
    }

    /// An admin user of `account` (the same as [`AwsIdentity::admin`] for [`ACCOUNT_ID`]): creates functions,
    /// roles, buckets and alarms there in tests. Its access key is what tells the layer the account.
    pub fn admin_of(account: &str) -> Self {
        if account == ACCOUNT_ID {
            return Self::admin();
        }
        let arn = format!("arn:aws:iam::{account}:user/testbed-admin");
        AwsIdentity {
            access_key_id: format!("AKIAADMN{account}"),
            secret_access_key: format!("testbed-admin-secret-key-of-{account}"),
            caller_arn: arn.clone(),
            principal_arn: arn,
        }
    }

    /// The account the identity belongs to (from its ARN).
    pub fn account(&self) -> &str {
        self.caller_arn.split(':').nth(4).unwrap_or_default()
    }

    /// An identity with valid credentials but no access entry: authenticates, then is forbidden everything.
    pub fn outsider() -> Self {
        let arn = format!("arn:aws:iam::{ACCOUNT_ID}:user/outsider");
        AwsIdentity {
            access_key_id: "AKIATESTBEDOUTSIDER1".into(),
            secret_access_key: "testbed-outsider-secret-key-000000000000".into(),
            caller_arn: arn.clone(),
            principal_arn: arn,
        }
    }

    /// The deployer, the outsider and every account's admin.
    pub fn all() -> Vec<AwsIdentity> {
        let mut all = vec![Self::deployer(), Self::admin(), Self::outsider()];
        all.extend(TARGET_ACCOUNTS.iter().map(|account| Self::admin_of(account)));
        all
    }
}

impl AccessEntry {
    /// The access entry the SAM template creates for the deployer's role.
    pub fn deployer() -> Self {
        AccessEntry {
            principal_arn: AwsIdentity::deployer().principal_arn,
            username: "lambda-deployer".into(),
            groups: vec![DEPLOYER_GROUP.into()],
        }
    }

    /// The outsider authenticates as a user with no groups: every request is decided by RBAC alone.
    pub fn outsider() -> Self {
        AccessEntry {
            principal_arn: AwsIdentity::outsider().principal_arn,
            username: "outsider".into(),
            groups: vec![],
        }
    }
}
