//! Who may deploy a function: the LambdaDeployment its tags name, for as long as that resource lives.
//!
//! A function is claimed with two tags: `lambda-deployer.dev/owner` (`namespace/name`) and
//! `lambda-deployer.dev/cluster` (the cluster that resource lives in). A claim ends when its resource is gone from
//! that cluster — deleted, being deleted, or pointed at another function — and only the deployer of that cluster
//! can see that: a claim of another cluster is never taken over, nor one whose resource cannot be read (a namespace
//! the deployer may not read answers 403, not 404), nor one made before claims named their cluster (it may be
//! another cluster's). No finalizer: deleting a LambdaDeployment never waits for the deployer, so nothing is
//! stuck when the deployer is uninstalled first, and the function's code is left as it is.
//!
//! [`decide`] is pure; [`Worker::check_owner`] finds out whether a claim still holds.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::Error;
use crate::accounts::Account;
use crate::arn::FunctionArn;
use crate::crd::{CLUSTER_TAG, OWNER_TAG};
use crate::reconcile::Worker;
use crate::report::Outcome;
use crate::resources::{self, Listed};

/// The claim a function's tags make.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// `namespace/name` of the owning LambdaDeployment.
    pub owner: Option<String>,
    /// The cluster it lives in (absent on claims made before claims named their cluster).
    pub cluster: Option<String>,
}

impl Claim {
    pub fn from_tags(tags: Option<&HashMap<String, String>>) -> Claim {
        Claim {
            owner: tags.and_then(|tags| tags.get(OWNER_TAG)).cloned(),
            cluster: tags.and_then(|tags| tags.get(CLUSTER_TAG)).cloned(),
        }
    }
}

/// Whether the LambdaDeployment a claim names still holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerCheck {
    NotChecked,
    /// It exists and targets this function.
    Holds,
    /// It no longer claims the function; why (e.g. "no longer exists").
    Ended(String),
    /// It could not be read; why. The claim stands.
    Unknown(String),
}

/// Everything an ownership decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// `namespace/name` of the LambdaDeployment deciding.
    pub me: &'a str,
    pub arn: &'a str,
    pub claim: &'a Claim,
    /// This deployer's cluster.
    pub cluster: &'a str,
    /// An older eligible LambdaDeployment of this invocation targeting the same function: it owns an unclaimed one.
    pub rival: Option<&'a str>,
    pub check: &'a OwnerCheck,
    /// The claim was read (GetFunction); a listing shows no tags.
    pub detailed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// This resource may deploy; `claim`: tag the function first (unclaimed, its claim ended, or the claim does
    /// not name its cluster yet).
    Mine {
        claim: bool,
    },
    Blocked(String),
    /// Find out whether the named owner still holds the claim ([`Worker::check_owner`]), then decide again.
    Check(String),
}

pub fn decide(input: &Input) -> Ownership {
    let Input { me, arn, claim, cluster, rival, check, detailed } = *input;
    // One message for a tagged owner and a preferred rival, so a rival's status does not change when the owner's
    // tag lands in the middle of a sweep.
    let owned_by = |owner: &str| format!("function {arn} is owned by LambdaDeployment {owner}");
    let unclaimed = || match rival {
        Some(rival) if rival != me => Ownership::Blocked(owned_by(rival)),
        // A listed function's tags are unknown; it already runs our artifact, so there is nothing to claim now.
        _ => Ownership::Mine { claim: detailed },
    };
    let Some(owner) = claim.owner.as_deref() else { return unclaimed() };
    match claim.cluster.as_deref() {
        Some(theirs) if theirs != cluster => {
            return Ownership::Blocked(format!("{} of cluster {theirs}", owned_by(owner)));
        }
        named => {
            if owner == me {
                return Ownership::Mine { claim: named.is_none() };
            }
        }
    }
    match check {
        OwnerCheck::NotChecked => Ownership::Check(owner.to_string()),
        OwnerCheck::Holds => Ownership::Blocked(owned_by(owner)),
        OwnerCheck::Unknown(reason) => Ownership::Blocked(format!(
            "{}, which cannot be read ({reason}): its claim stands while it may exist",
            owned_by(owner)
        )),
        OwnerCheck::Ended(why) if claim.cluster.is_none() => Ownership::Blocked(format!(
            "{}, which {why}; the claim names no cluster (made by an earlier deployer version), so it may be \
             another cluster's: remove tag {OWNER_TAG} from the function to hand it over",
            owned_by(owner)
        )),
        OwnerCheck::Ended(_) => unclaimed(),
    }
}

/// What this invocation's listing showed of a LambdaDeployment: the function it targets (`None`: its spec does not
/// decode) and whether it is being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub function_arn: Option<String>,
    pub deleting: bool,
}

impl Seen {
    pub fn of(listed: &Listed) -> Seen {
        Seen {
            function_arn: match listed {
                Listed::Valid(ld) => Some(ld.spec.function_arn.clone()),
                Listed::Undecodable { .. } => None,
            },
            deleting: listed.metadata().deletion_timestamp.is_some(),
        }
    }

    /// Whether the resource seen still claims `arn`.
    fn claims(&self, arn: &str) -> OwnerCheck {
        let same_function = |target: &str| match (FunctionArn::parse(target), FunctionArn::parse(arn)) {
            (Ok(target), Ok(arn)) => target == arn,
            _ => target == arn,
        };
        match self.function_arn.as_deref() {
            _ if self.deleting => OwnerCheck::Ended("is being deleted".into()),
            Some(target) if !same_function(target) => OwnerCheck::Ended(format!("now targets {target}")),
            // A spec that does not decode may still name this function.
            _ => OwnerCheck::Holds,
        }
    }
}

impl Worker<'_> {
    /// Claims `arn` for `me` in this cluster. `Err`: the outcome to report (`Skipped` when out of time).
    pub(crate) async fn claim(&self, account: &Account, arn: &str, me: &str) -> Result<(), Outcome> {
        match account.functions.claim(arn, me, self.cluster, self.work).await {
            Ok(()) => Ok(()),
            Err(Error::Deadline { .. }) => Err(Outcome::Skipped),
            Err(err) => Err(Outcome::Failed { message: format!("cannot tag {arn} as owned by {me}: {err}") }),
        }
    }

    /// Whether `me` may act on `arn`, whose claim was read: `Ok(true)` when it must claim it first. `Err`: Blocked,
    /// or Skipped when out of time.
    pub(crate) async fn owns(&self, me: &str, arn: &str, claim: &Claim, rival: Option<&str>) -> Result<bool, Outcome> {
        let mut check = OwnerCheck::NotChecked;
        loop {
            let input = Input { me, arn, claim, cluster: self.cluster, rival, check: &check, detailed: true };
            match decide(&input) {
                Ownership::Mine { claim } => return Ok(claim),
                Ownership::Blocked(message) => return Err(Outcome::Blocked { message }),
                Ownership::Check(owner) => match self.check_owner(&owner, arn).await {
                    Some(checked) => check = checked,
                    None => return Err(Outcome::Skipped),
                },
            }
        }
    }

    /// Whether `owner` (`namespace/name`) still claims `arn`: from this invocation's listing when it is there, else
    /// read. `None`: out of time.
    pub(crate) async fn check_owner(&self, owner: &str, arn: &str) -> Option<OwnerCheck> {
        let checked = match self.seen.get(owner) {
            Some(seen) => seen.claims(arn),
            None => {
                let Some((namespace, name)) =
                    owner.split_once('/').filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                else {
                    return Some(OwnerCheck::Unknown(format!("tag {OWNER_TAG} is {owner:?}, not namespace/name")));
                };
                let metadata =
                    ObjectMeta { namespace: Some(namespace.into()), name: Some(name.into()), ..Default::default() };
                match resources::get(self.client, &metadata, self.work).await {
                    Ok(Some(listed)) => Seen::of(&listed).claims(arn),
                    Ok(None) => OwnerCheck::Ended("no longer exists".into()),
                    Err(Error::Deadline { .. }) => return None,
                    Err(err) => OwnerCheck::Unknown(err.to_string()),
                }
            }
        };
        if let OwnerCheck::Ended(why) = &checked {
            tracing::info!(owner, function = arn, why = %why, "the function's claim has ended; it may be claimed anew");
        }
        Some(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:orders";
    const HERE: &str = "arn:aws:eks:us-east-1:123456789012:cluster/prod";

    fn claim(owner: Option<&str>, cluster: Option<&str>) -> Claim {
        Claim { owner: owner.map(String::from), cluster: cluster.map(String::from) }
    }

    fn decide_for(claim: &Claim, rival: Option<&str>, check: &OwnerCheck) -> Ownership {
        decide(&Input { me: "team-a/orders", arn: ARN, claim, cluster: HERE, rival, check, detailed: true })
    }

    #[test]
    fn ownership_table() {
        let ended = OwnerCheck::Ended("no longer exists".into());
        let owned = |owner: &str| Ownership::Blocked(format!("function {ARN} is owned by LambdaDeployment {owner}"));
        let cases: Vec<(&str, Claim, Option<&str>, OwnerCheck, Ownership)> = vec![
            ("unclaimed: claim it", claim(None, None), None, OwnerCheck::NotChecked, Ownership::Mine { claim: true }),
            (
                "unclaimed with an older rival: the rival's",
                claim(None, None),
                Some("team-b/first"),
                OwnerCheck::NotChecked,
                owned("team-b/first"),
            ),
            (
                "ours, here",
                claim(Some("team-a/orders"), Some(HERE)),
                None,
                OwnerCheck::NotChecked,
                Ownership::Mine { claim: false },
            ),
            (
                "ours, made before claims named their cluster: completed",
                claim(Some("team-a/orders"), None),
                None,
                OwnerCheck::NotChecked,
                Ownership::Mine { claim: true },
            ),
            (
                "the tag beats creation order",
                claim(Some("team-a/orders"), Some(HERE)),
                Some("team-b/first"),
                OwnerCheck::NotChecked,
                Ownership::Mine { claim: false },
            ),
            (
                "another's here: check it",
                claim(Some("team-b/x"), Some(HERE)),
                None,
                OwnerCheck::NotChecked,
                Ownership::Check("team-b/x".into()),
            ),
            ("another's that holds", claim(Some("team-b/x"), Some(HERE)), None, OwnerCheck::Holds, owned("team-b/x")),
            (
                "another's that ended: claim it",
                claim(Some("team-b/x"), Some(HERE)),
                None,
                ended.clone(),
                Ownership::Mine { claim: true },
            ),
            (
                "another's that ended, with an older rival: the rival's",
                claim(Some("team-b/x"), Some(HERE)),
                Some("team-c/y"),
                ended.clone(),
                owned("team-c/y"),
            ),
            (
                "another cluster's: never checked, never taken",
                claim(Some("team-b/x"), Some("arn:aws:eks:us-east-1:123456789012:cluster/staging")),
                None,
                OwnerCheck::NotChecked,
                Ownership::Blocked(format!(
                    "function {ARN} is owned by LambdaDeployment team-b/x of cluster arn:aws:eks:us-east-1:123456789012:cluster/staging"
                )),
            ),
            (
                "ours by name, in another cluster: not ours",
                claim(Some("team-a/orders"), Some("other")),
                None,
                OwnerCheck::NotChecked,
                Ownership::Blocked(format!(
                    "function {ARN} is owned by LambdaDeployment team-a/orders of cluster other"
                )),
            ),
        ];
        for (name, claim, rival, check, expected) in cases {
            assert_eq!(decide_for(&claim, rival, &check), expected, "{name}");
        }
    }

    #[test]
    fn a_claim_that_cannot_be_read_or_names_no_cluster_is_never_taken_over() {
        let unreadable = decide_for(&claim(Some("team-b/x"), Some(HERE)), None, &OwnerCheck::Unknown("403".into()));
        assert!(matches!(&unreadable, Ownership::Blocked(m) if m.contains("cannot be read (403)")), "{unreadable:?}");
        let legacy = decide_for(&claim(Some("team-b/x"), None), None, &OwnerCheck::Ended("no longer exists".into()));
        assert!(
            matches!(&legacy, Ownership::Blocked(m) if m.contains("which no longer exists") && m.contains("remove tag lambda-deployer.dev/owner")),
            "{legacy:?}"
        );
    }

    #[test]
    fn a_listed_function_is_claimed_only_once_read_in_detail() {
        let listed = decide(&Input {
            me: "team-a/orders",
            arn: ARN,
            claim: &Claim::default(),
            cluster: HERE,
            rival: None,
            check: &OwnerCheck::NotChecked,
            detailed: false,
        });
        assert_eq!(listed, Ownership::Mine { claim: false });
    }
}
