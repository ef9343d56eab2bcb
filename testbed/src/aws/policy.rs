//! IAM policy documents as AWS evaluates the ones the testbed enforces: role trust policies (STS AssumeRole) and S3
//! bucket policies. A matching `Deny` wins over any `Allow`; without a matching `Allow` the answer is no.
//!
//! Supported: `Effect`, `Principal` (`*`, or `AWS` as `*`, an account id, `arn:aws:iam::ACCOUNT:root`, a user or
//! role ARN, an assumed-role session ARN), `Action` and `Resource` with `*`/`?` wildcards, and `Condition` with
//! `StringEquals`/`StringLike` on the keys the caller supplies. A statement with `NotPrincipal`, `NotAction`,
//! `NotResource` or another condition operator never matches (so an `Allow` of that kind allows nothing: never
//! kinder than AWS; a `Deny` of that kind denies nothing).

use serde_json::Value;

/// Who asks: the fields a `Principal` element can name.
pub(crate) struct Principal<'a> {
    pub(crate) account: &'a str,
    /// The user ARN, or for a role session the role ARN.
    pub(crate) arn: &'a str,
    /// For a role session, `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`; otherwise the user ARN.
    pub(crate) session_arn: &'a str,
}

/// One request to evaluate.
pub(crate) struct Ask<'a> {
    pub(crate) principal: Principal<'a>,
    /// e.g. `s3:GetObject`, `sts:AssumeRole`.
    pub(crate) action: &'a str,
    /// None for trust policies, which name no resource.
    pub(crate) resource: Option<&'a str>,
    /// Condition keys (lower case) and their values, e.g. `("sts:externalid", "x")`.
    pub(crate) context: &'a [(&'a str, &'a str)],
}

/// Whether the policy allows the request. A document that does not parse allows nothing.
pub(crate) fn allows(document: &str, ask: &Ask) -> bool {
    let Ok(policy) = serde_json::from_str::<Value>(document) else {
        return false;
    };
    let statements = match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return false,
    };
    let matching = |effect: &str| {
        statements.iter().any(|s| s.get("Effect").and_then(Value::as_str) == Some(effect) && matches(s, ask))
    };
    !matching("Deny") && matching("Allow")
}

fn matches(statement: &Value, ask: &Ask) -> bool {
    if ["NotPrincipal", "NotAction", "NotResource"].iter().any(|k| statement.get(k).is_some()) {
        return false;
    }
    let principal_ok = statement.get("Principal").is_some_and(|p| principal_matches(p, &ask.principal));
    let action_ok =
        strings(statement.get("Action")).iter().any(|a| wildcard(&a.to_lowercase(), &ask.action.to_lowercase()));
    let resource_ok = match ask.resource {
        None => true,
        Some(resource) => strings(statement.get("Resource")).iter().any(|r| wildcard(r, resource)),
    };
    principal_ok && action_ok && resource_ok && conditions_hold(statement.get("Condition"), ask.context)
}

/// A string or a list of strings (anything else: none).
fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn principal_matches(principal: &Value, who: &Principal) -> bool {
    if principal.as_str() == Some("*") {
        return true;
    }
    let root = format!("arn:aws:iam::{}:root", who.account);
    strings(principal.get("AWS"))
        .into_iter()
        .any(|p| p == "*" || p == who.account || p == root || p == who.arn || p == who.session_arn)
}

/// Every operator's every key must hold; a key the caller does not supply never does.
fn conditions_hold(condition: Option<&Value>, context: &[(&str, &str)]) -> bool {
    let Some(condition) = condition else {
        return true;
    };
    let Some(operators) = condition.as_object() else {
        return false;
    };
    operators.iter().all(|(operator, keys)| {
        let compare: fn(&str, &str) -> bool = match operator.as_str() {
            "StringEquals" => |pattern, value| pattern == value,
            "StringLike" => wildcard,
            _ => return false,
        };
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(key, wanted)| {
                let key = key.to_lowercase();
                let value = context.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                value.is_some_and(|value| strings(Some(wanted)).iter().any(|w| compare(w, value)))
            })
        })
    })
}

/// `*` matches any run of characters, `?` any one character.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and how much of the text it has swallowed.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::210987654321:role/reader";
    const SESSION: &str = "arn:aws:sts::210987654321:assumed-role/reader/s1";

    fn ask<'a>(action: &'a str, resource: Option<&'a str>, context: &'a [(&'a str, &'a str)]) -> Ask<'a> {
        Ask {
            principal: Principal { account: "210987654321", arn: ROLE, session_arn: SESSION },
            action,
            resource,
            context,
        }
    }

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(wildcard("s3:Get*", "s3:GetObjectVersion"));
        assert!(wildcard("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b.zip"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("arn:aws:s3:::b/*", "arn:aws:s3:::bb/k"));
        assert!(!wildcard("s3:GetObject", "s3:GetObjectVersion"));
        assert!(wildcard("*", ""));
    }

    #[test]
    fn a_principal_is_matched_by_its_arn_its_session_its_account_root_or_its_account_id() {
        for principal in [ROLE, SESSION, "arn:aws:iam::210987654321:root", "210987654321", "*"] {
            let doc = format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"sts:AssumeRole"}}}}"#
            );
            assert!(allows(&doc, &ask("sts:AssumeRole", None, &[])), "{principal}");
        }
        let other = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::345678901234:root"]},
            "Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},
            "Action":"sts:AssumeRole"}]}"#;
        assert!(!allows(other, &ask("sts:AssumeRole", None, &[])));
    }

    #[test]
    fn actions_are_case_insensitive_resources_are_not_and_deny_wins() {
        let doc = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"S3:get*","Resource":"arn:aws:s3:::b/*"},
            {"Effect":"Deny","Principal":{"AWS":"*"},"Action":"s3:GetObjectVersion","Resource":"arn:aws:s3:::b/secret"}]}"#;
        assert!(allows(doc, &ask("s3:GetObject", Some("arn:aws:s3:::b/k"), &[])));
        assert!(!allows(doc, &ask("s3:GetObject", Some("arn:aws:s3:::B/k"), &[])));
        assert!(!allows(doc, &ask("s3:GetObjectVersion", Some("arn:aws:s3:::b/secret"), &[])));
        assert!(!allows("not json", &ask("s3:GetObject", Some("arn:aws:s3:::b/k"), &[])));
    }

    #[test]
    fn conditions_need_the_key_supplied_with_a_matching_value() {
        let doc = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"210987654321"},"Action":"sts:AssumeRole",
            "Condition":{"StringEquals":{"sts:ExternalId":["one","two"]}}}}"#;
        assert!(allows(doc, &ask("sts:AssumeRole", None, &[("sts:externalid", "two")])));
        assert!(!allows(doc, &ask("sts:AssumeRole", None, &[("sts:externalid", "three")])));
        assert!(!allows(doc, &ask("sts:AssumeRole", None, &[])));
        let unsupported = doc.replace("StringEquals", "ArnLike");
        assert!(!allows(&unsupported, &ask("sts:AssumeRole", None, &[("sts:externalid", "two")])));
    }
}
