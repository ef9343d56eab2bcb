//! Who sent a request and where it is served: the account its access key belongs to (a testbed identity, or a
//! session STS AssumeRole issued) and the region of its credential scope. moto keeps a separate state per account
//! and takes the account from the `x-moto-account-id` header, which the layer sets on everything it sends to moto.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::lock;
use super::policy;
use super::route::Scope;
use crate::identity::{ACCOUNT_ID, AwsIdentity, REGION, REGIONS};

/// An account and a region: what Lambda's functions, quotas and metrics are kept per.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Place {
    pub(crate) account: String,
    pub(crate) region: String,
}

impl Default for Place {
    /// The deployer's account in the main region.
    fn default() -> Self {
        Place { account: ACCOUNT_ID.into(), region: REGION.into() }
    }
}

impl Place {
    pub(crate) fn new(account: &str, region: &str) -> Place {
        Place { account: account.into(), region: region.into() }
    }
}

/// Why a request is refused before any service sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Refusal {
    /// Its region is not one the testbed serves: there is no endpoint to answer.
    NoEndpoint,
    /// Its session's `Expiration` has passed.
    ExpiredToken,
    /// Its session token is not the one issued with the access key.
    InvalidToken,
}

/// The sender of one request.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) place: Place,
    /// A testbed identity or an issued session; other keys act in the deployer's account, unnamed.
    pub(crate) known: bool,
    /// GetCallerIdentity's `Arn` (for a role session: `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`).
    pub(crate) arn: String,
    /// The ARN policies name: a role session's role, otherwise `arn`.
    pub(crate) principal_arn: String,
    /// GetCallerIdentity's `UserId`.
    pub(crate) user_id: String,
    pub(crate) refusal: Option<Refusal>,
}

impl Caller {
    pub(crate) fn principal(&self) -> policy::Principal<'_> {
        policy::Principal { account: &self.place.account, arn: &self.principal_arn, session_arn: &self.arn }
    }

    /// Credentials of an assumed role: assuming a role with them is role chaining.
    pub(crate) fn is_role_session(&self) -> bool {
        self.arn.contains(":assumed-role/")
    }
}

/// A session STS AssumeRole issued (its secret and token are never shown).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub access_key_id: String,
    /// The role's account, where the session acts.
    pub account: String,
    pub role_arn: String,
    pub session_name: String,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`
    pub arn: String,
    pub external_id: Option<String>,
    /// RFC 3339, as AssumeRole returned it (or the moment a control expired it).
    pub expiration: String,
    pub expired: bool,
}

/// What the layer keeps of an issued session.
pub(crate) struct Issued {
    pub(crate) session: Session,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: String,
    /// `ROLEID:SESSION`
    pub(crate) user_id: String,
    pub(crate) expires: jiff::Timestamp,
}

/// The testbed's identities and the sessions issued so far.
pub(crate) struct Accounts {
    identities: Vec<AwsIdentity>,
    sessions: Mutex<BTreeMap<String, Issued>>,
}

impl Accounts {
    pub(crate) fn new(identities: Vec<AwsIdentity>) -> Accounts {
        Accounts { identities, sessions: Mutex::default() }
    }

    /// Every account a testbed identity belongs to (where buckets may be).
    pub(crate) fn all(&self) -> Vec<String> {
        let mut accounts: Vec<String> = self.identities.iter().map(|i| i.account().to_string()).collect();
        accounts.sort();
        accounts.dedup();
        accounts
    }

    /// Who a request's scope and session token (`X-Amz-Security-Token`) say sent it. Unsigned requests and unknown
    /// keys act in the deployer's account in the main region.
    pub(crate) fn caller(&self, scope: Option<&Scope>, token: Option<&str>, now: jiff::Timestamp) -> Caller {
        let region = scope.map_or(REGION, |s| s.region.as_str());
        let no_endpoint = (!REGIONS.contains(&region)).then_some(Refusal::NoEndpoint);
        let key = scope.map(|s| s.access_key_id.as_str());
        if let Some(identity) = self.identities.iter().find(|i| Some(i.access_key_id.as_str()) == key) {
            return Caller {
                place: Place::new(identity.account(), region),
                known: true,
                arn: identity.caller_arn.clone(),
                principal_arn: identity.principal_arn.clone(),
                user_id: user_id_of(identity),
                refusal: no_endpoint,
            };
        }
        if let Some(key) = key
            && let Some(issued) = lock(&self.sessions).get(key)
        {
            let refusal = no_endpoint.or(if token != Some(issued.session_token.as_str()) {
                Some(Refusal::InvalidToken)
            } else {
                (now >= issued.expires).then_some(Refusal::ExpiredToken)
            });
            return Caller {
                place: Place::new(&issued.session.account, region),
                known: true,
                arn: issued.session.arn.clone(),
                principal_arn: issued.session.role_arn.clone(),
                user_id: issued.user_id.clone(),
                refusal,
            };
        }
        let arn = format!("arn:aws:iam::{ACCOUNT_ID}:user/unknown");
        Caller {
            place: Place::new(ACCOUNT_ID, region),
            known: false,
            arn: arn.clone(),
            principal_arn: arn,
            user_id: String::new(),
            refusal: no_endpoint,
        }
    }

    pub(crate) fn issue(&self, issued: Issued) {
        lock(&self.sessions).insert(issued.session.access_key_id.clone(), issued);
    }

    /// Every issued session, `expired` as of `now`.
    pub(crate) fn sessions(&self, now: jiff::Timestamp) -> Vec<Session> {
        lock(&self.sessions).values().map(|i| Session { expired: now >= i.expires, ..i.session.clone() }).collect()
    }

    /// Every issued session's secret access key and session token.
    pub(crate) fn secrets(&self) -> Vec<String> {
        lock(&self.sessions).values().flat_map(|i| [i.secret_access_key.clone(), i.session_token.clone()]).collect()
    }

    /// Ends the sessions `which` selects at `now` (those already expired keep their expiration); how many it ended.
    pub(crate) fn expire(&self, which: impl Fn(&Session) -> bool, now: jiff::Timestamp) -> usize {
        let mut ended = 0;
        for issued in lock(&self.sessions).values_mut().filter(|i| now < i.expires && which(&i.session)) {
            issued.expires = now;
            issued.session.expiration = rfc3339(now);
            ended += 1;
        }
        ended
    }
}

/// Seconds precision with `Z`, as STS writes `Expiration`.
pub(crate) fn rfc3339(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A role session's user id is `ROLEID:SESSION`, a user's its own id; both derive from the key's unique part.
fn user_id_of(identity: &AwsIdentity) -> String {
    let unique = identity.access_key_id.get(4..).unwrap_or(&identity.access_key_id);
    match identity.caller_arn.rsplit_once('/') {
        Some((_, session)) if identity.caller_arn.contains(":assumed-role/") => format!("AROA{unique}:{session}"),
        _ => format!("AIDA{unique}"),
    }
}
