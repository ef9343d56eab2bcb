//! Lambda's wire contract: operations and the functions they address, errors in the REST-JSON shape, request
//! fields, listings and their pages.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::aws::accounts::{Caller, Place};
use crate::aws::route::{decode_path, param};

/// ListFunctions/ListAliases/ListVersionsByFunction never return more than this per page.
const MAX_PAGE: usize = 50;

/// A Lambda error in the REST-JSON wire shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LambdaError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    /// Seconds, for 429 (sent as `Retry-After`).
    pub(crate) retry_after: Option<u64>,
}

impl LambdaError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> LambdaError {
        LambdaError { status, kind, message: message.into(), retry_after: None }
    }

    pub(crate) fn not_found(what: &str) -> LambdaError {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", what)
    }

    /// `arn`: the function's ARN (qualified if the request was).
    pub(crate) fn function_not_found(arn: &str) -> LambdaError {
        Self::not_found(&format!("Function not found: {arn}"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> LambdaError {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", message)
    }

    /// A request outside the API model's constraints (aws-sdk-lambda does not model it: an unhandled error).
    pub(crate) fn validation(message: impl Into<String>) -> LambdaError {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    /// Invoke's answer to a payload that is not JSON.
    pub(crate) fn invalid_content(message: impl Into<String>) -> LambdaError {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestContentException", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> LambdaError {
        Self::new(StatusCode::CONFLICT, "ResourceConflictException", message)
    }

    pub(crate) fn update_in_progress(arn: &str) -> LambdaError {
        Self::conflict(format!(
            "The operation cannot be performed at this time. An update is in progress for resource: {arn}"
        ))
    }

    pub(crate) fn precondition_failed() -> LambdaError {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailedException",
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to \
             retrieve the latest Revision Id",
        )
    }

    pub(crate) fn throttled(retry_after: Duration) -> LambdaError {
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        LambdaError {
            retry_after: Some(secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate exceeded")
        }
    }

    pub(crate) fn access_denied(operation: &str) -> LambdaError {
        Self::new(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            format!(
                "User is not authorized to perform: lambda:{operation} on resource: * because no identity-based \
                 policy allows the lambda:{operation} action"
            ),
        )
    }

    /// A function of another account, which no resource-based policy opens to the caller.
    fn cross_account(caller: &Caller, action: &str, resource: &str) -> LambdaError {
        Self::new(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: lambda:{action} on resource: {resource} because no \
                 resource-based policy allows the lambda:{action} action",
                caller.arn
            ),
        )
    }

    /// What Lambda answers an ARN of another region (aws-lambda-power-tuning#18, Fraudmarc/fraudmarc-ce#21).
    fn not_reachable(region: &str, from: &str) -> LambdaError {
        Self::not_found(&format!("Functions from '{region}' are not reachable in this region ('{from}')"))
    }

    /// The caller may not get the code's object (403: SWO-GS/auto-tag#105; wording: awslabs/lambda-streams-to-firehose#21).
    pub(crate) fn code_access_denied(bucket: &str, key: &str) -> LambdaError {
        Self::new(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            format!(
                "Your access has been denied by S3, please make sure your request credentials have permission to \
                 GetObject for {bucket}/{key}. S3 Error Code: AccessDenied. S3 Error Message: Access Denied"
            ),
        )
    }

    pub(crate) fn service(message: impl Into<String>) -> LambdaError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", message)
    }

    pub(crate) fn no_provisioned_concurrency() -> LambdaError {
        // LocalStack's wording (its snapshot tests run against AWS).
        Self::new(
            StatusCode::NOT_FOUND,
            "ProvisionedConcurrencyConfigNotFoundException",
            "No Provisioned Concurrency Config found for this function",
        )
    }

    pub(crate) fn unknown_operation() -> LambdaError {
        Self::new(StatusCode::NOT_FOUND, "UnknownOperationException", "Unknown operation")
    }

    /// The JSON body: `Type` (User/Service), `message`, `__type`, and for throttling `Reason`.
    pub(crate) fn body(&self) -> Value {
        let mut body = json!({
            "Type": if self.status.is_server_error() { "Service" } else { "User" },
            "message": self.message,
            "__type": self.kind,
        });
        if let Some(secs) = self.retry_after {
            body["Reason"] = json!("CallerRateLimitExceeded");
            body["retryAfterSeconds"] = json!(secs.to_string());
        }
        body
    }
}

pub(crate) type Reply = Result<(StatusCode, Value), LambdaError>;

/// A Lambda API operation, with the function (name or ARN, as sent) and alias it addresses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    CreateFunction,
    ListFunctions,
    GetAccountSettings,
    GetFunction(String),
    GetFunctionConfiguration(String),
    DeleteFunction(String),
    UpdateFunctionCode(String),
    UpdateFunctionConfiguration(String),
    PublishVersion(String),
    ListVersionsByFunction(String),
    CreateAlias(String),
    ListAliases(String),
    GetAlias(String, String),
    UpdateAlias(String, String),
    DeleteAlias(String, String),
    TagResource(String),
    UntagResource(String),
    ListTags(String),
    PutProvisionedConcurrencyConfig(String),
    GetProvisionedConcurrencyConfig(String),
    DeleteProvisionedConcurrencyConfig(String),
    Invoke(String),
}

impl Op {
    pub(crate) fn parse(method: &Method, path: &str) -> Option<Op> {
        let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(decode_path).collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let m = method.as_str();
        let f = |name: &str| name.to_string();
        Some(match (m, s.as_slice()) {
            ("POST", ["2015-03-31", "functions"]) => Op::CreateFunction,
            ("GET", ["2015-03-31", "functions"]) => Op::ListFunctions,
            ("GET", ["2016-08-19", "account-settings"]) => Op::GetAccountSettings,
            ("GET", ["2015-03-31", "functions", n]) => Op::GetFunction(f(n)),
            ("DELETE", ["2015-03-31", "functions", n]) => Op::DeleteFunction(f(n)),
            ("GET", ["2015-03-31", "functions", n, "configuration"]) => Op::GetFunctionConfiguration(f(n)),
            ("PUT", ["2015-03-31", "functions", n, "configuration"]) => Op::UpdateFunctionConfiguration(f(n)),
            ("PUT", ["2015-03-31", "functions", n, "code"]) => Op::UpdateFunctionCode(f(n)),
            ("POST", ["2015-03-31", "functions", n, "versions"]) => Op::PublishVersion(f(n)),
            ("GET", ["2015-03-31", "functions", n, "versions"]) => Op::ListVersionsByFunction(f(n)),
            ("POST", ["2015-03-31", "functions", n, "aliases"]) => Op::CreateAlias(f(n)),
            ("GET", ["2015-03-31", "functions", n, "aliases"]) => Op::ListAliases(f(n)),
            ("GET", ["2015-03-31", "functions", n, "aliases", a]) => Op::GetAlias(f(n), f(a)),
            ("PUT", ["2015-03-31", "functions", n, "aliases", a]) => Op::UpdateAlias(f(n), f(a)),
            ("DELETE", ["2015-03-31", "functions", n, "aliases", a]) => Op::DeleteAlias(f(n), f(a)),
            ("POST", ["2017-03-31", "tags", arn]) => Op::TagResource(f(arn)),
            ("DELETE", ["2017-03-31", "tags", arn]) => Op::UntagResource(f(arn)),
            ("GET", ["2017-03-31", "tags", arn]) => Op::ListTags(f(arn)),
            ("PUT", ["2019-09-30", "functions", n, "provisioned-concurrency"]) => {
                Op::PutProvisionedConcurrencyConfig(f(n))
            }
            ("GET", ["2019-09-30", "functions", n, "provisioned-concurrency"]) => {
                Op::GetProvisionedConcurrencyConfig(f(n))
            }
            ("DELETE", ["2019-09-30", "functions", n, "provisioned-concurrency"]) => {
                Op::DeleteProvisionedConcurrencyConfig(f(n))
            }
            ("POST", ["2015-03-31", "functions", n, "invocations"]) => Op::Invoke(f(n)),
            _ => return None,
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::CreateFunction => "CreateFunction",
            Op::ListFunctions => "ListFunctions",
            Op::GetAccountSettings => "GetAccountSettings",
            Op::GetFunction(_) => "GetFunction",
            Op::GetFunctionConfiguration(_) => "GetFunctionConfiguration",
            Op::DeleteFunction(_) => "DeleteFunction",
            Op::UpdateFunctionCode(_) => "UpdateFunctionCode",
            Op::UpdateFunctionConfiguration(_) => "UpdateFunctionConfiguration",
            Op::PublishVersion(_) => "PublishVersion",
            Op::ListVersionsByFunction(_) => "ListVersionsByFunction",
            Op::CreateAlias(_) => "CreateAlias",
            Op::ListAliases(_) => "ListAliases",
            Op::GetAlias(..) => "GetAlias",
            Op::UpdateAlias(..) => "UpdateAlias",
            Op::DeleteAlias(..) => "DeleteAlias",
            Op::TagResource(_) => "TagResource",
            Op::UntagResource(_) => "UntagResource",
            Op::ListTags(_) => "ListTags",
            Op::PutProvisionedConcurrencyConfig(_) => "PutProvisionedConcurrencyConfig",
            Op::GetProvisionedConcurrencyConfig(_) => "GetProvisionedConcurrencyConfig",
            Op::DeleteProvisionedConcurrencyConfig(_) => "DeleteProvisionedConcurrencyConfig",
            Op::Invoke(_) => "Invoke",
        }
    }

    /// The IAM action that authorizes the operation: its name, except Invoke's.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Op::Invoke(_) => "InvokeFunction",
            op => op.name(),
        }
    }

    /// The function's short name, if the request names one that parses.
    pub(crate) fn function(&self, body: &Value) -> Option<String> {
        parse_function_ref(self.function_ref(body)?).ok().map(|(name, _)| name)
    }

    /// The function name or ARN as the request gives it.
    pub(crate) fn function_ref<'a>(&'a self, body: &'a Value) -> Option<&'a str> {
        Some(match self {
            Op::CreateFunction => body.get("FunctionName")?.as_str()?,
            Op::ListFunctions | Op::GetAccountSettings => return None,
            Op::GetFunction(n)
            | Op::GetFunctionConfiguration(n)
            | Op::DeleteFunction(n)
            | Op::UpdateFunctionCode(n)
            | Op::UpdateFunctionConfiguration(n)
            | Op::PublishVersion(n)
            | Op::ListVersionsByFunction(n)
            | Op::CreateAlias(n)
            | Op::ListAliases(n)
            | Op::GetAlias(n, _)
            | Op::UpdateAlias(n, _)
            | Op::DeleteAlias(n, _)
            | Op::TagResource(n)
            | Op::UntagResource(n)
            | Op::ListTags(n)
            | Op::PutProvisionedConcurrencyConfig(n)
            | Op::GetProvisionedConcurrencyConfig(n)
            | Op::DeleteProvisionedConcurrencyConfig(n)
            | Op::Invoke(n) => n,
        })
    }
}

impl Place {
    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`
    pub(crate) fn function_arn(&self, name: &str, qualifier: Option<&str>) -> String {
        let arn = format!("arn:aws:lambda:{}:{}:function:{name}", self.region, self.account);
        match qualifier {
            Some(q) => format!("{arn}:{q}"),
            None => arn,
        }
    }
}

/// A function reference's parts: name, qualifier, and the account and region an ARN names.
type RefParts<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// Name, partial ARN (`ACCOUNT:function:NAME`) or full ARN, each optionally with `:QUALIFIER`.
fn ref_parts(raw: &str) -> Option<RefParts<'_>> {
    let parts: Vec<&str> = raw.split(':').collect();
    Some(match parts.as_slice() {
        [name] => (*name, None, None, None),
        [name, q] => (*name, Some(*q), None, None),
        [acct, "function", name] => (*name, None, Some(*acct), None),
        [acct, "function", name, q] => (*name, Some(*q), Some(*acct), None),
        ["arn", "aws", "lambda", region, acct, "function", name] => (*name, None, Some(*acct), Some(*region)),
        ["arn", "aws", "lambda", region, acct, "function", name, q] => (*name, Some(*q), Some(*acct), Some(*region)),
        _ => return None,
    })
}

/// Whether the caller can reach the function a reference names: an ARN of another region is not reachable from
/// this region's endpoint; one of another account is denied (the testbed's functions have no resource-based
/// policies). References that do not parse are left to the operation, which refuses them.
pub(crate) fn reach(raw: &str, caller: &Caller, action: &str) -> Result<(), LambdaError> {
    let Some((name, qualifier, account, region)) = ref_parts(raw) else {
        return Ok(());
    };
    let here = &caller.place;
    if let Some(region) = region.filter(|r| *r != here.region) {
        return Err(LambdaError::not_reachable(region, &here.region));
    }
    match account.filter(|a| *a != here.account) {
        Some(account) => {
            let resource = Place::new(account, &here.region).function_arn(name, qualifier);
            Err(LambdaError::cross_account(caller, action, &resource))
        }
        None => Ok(()),
    }
}

/// The function name and qualifier a reference names (after [`reach`], in the caller's account and region).
pub(crate) fn parse_function_ref(raw: &str) -> Result<(String, Option<String>), LambdaError> {
    let invalid = || LambdaError::invalid(format!("Invalid function name or ARN: {raw}"));
    let (name, qualifier, _, _) = ref_parts(raw).ok_or_else(invalid)?;
    let valid_name =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let valid_qualifier = qualifier.is_none_or(|q| {
        !q.is_empty() && q.len() <= 128 && q.chars().all(|c| c.is_ascii_alphanumeric() || "-_$".contains(c))
    });
    if !valid_name || !valid_qualifier {
        return Err(invalid());
    }
    Ok((name.to_string(), qualifier.map(str::to_string)))
}

/// The function and qualifier a request addresses: from the name/ARN and the `Qualifier` query parameter.
pub(crate) fn target(raw: &str, query: &[(String, String)]) -> Result<(String, Option<String>), LambdaError> {
    let (name, from_name) = parse_function_ref(raw)?;
    let from_query = param(query, "Qualifier").map(str::to_string);
    match (from_name, from_query) {
        (Some(a), Some(b)) if a != b => Err(LambdaError::invalid(
            "The derived qualifier from the function name does not match the specified qualifier.",
        )),
        (a, b) => Ok((name, a.or(b))),
    }
}

pub(crate) fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

pub(crate) fn string_map(v: Option<&Value>) -> Result<Option<BTreeMap<String, String>>, LambdaError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| LambdaError::invalid("Expected a map of strings to strings")),
    }
}

pub(crate) fn number(body: &Value, key: &str) -> Result<Option<u64>, LambdaError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| LambdaError::invalid(format!("{key} must be a number"))),
    }
}

/// List operations return a subset of the configuration: AWS documents that ListFunctions leaves out the state
/// fields (a deployer must call GetFunction/GetFunctionConfiguration to see them).
pub(crate) fn listed(mut config: Value) -> Value {
    if let Some(c) = config.as_object_mut() {
        for field in [
            "State",
            "StateReason",
            "StateReasonCode",
            "LastUpdateStatus",
            "LastUpdateStatusReason",
            "LastUpdateStatusReasonCode",
        ] {
            c.remove(field);
        }
    }
    config
}

/// One page of `items` (sorted by key) after `Marker`, at most min(MaxItems, 50) long.
pub(crate) fn paginate<T>(
    items: Vec<(String, T)>,
    query: &[(String, String)],
) -> Result<(Vec<T>, Option<String>), LambdaError> {
    let max = match param(query, "MaxItems") {
        None => MAX_PAGE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n.min(MAX_PAGE),
            _ => return Err(LambdaError::invalid(format!("MaxItems must be between 1 and 10000, got {s}"))),
        },
    };
    let after = match param(query, "Marker") {
        None => None,
        Some(m) => Some(
            B64.decode(m)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| LambdaError::invalid("Invalid Marker"))?,
        ),
    };
    let mut rest: Vec<(String, T)> =
        items.into_iter().filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_str() > a.as_str())).collect();
    let more = rest.len() > max;
    rest.truncate(max);
    let next = if more { rest.last().map(|(k, _)| B64.encode(k)) } else { None };
    Ok((rest.into_iter().map(|(_, v)| v).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_partial_and_full_arns_address_the_same_function() {
        let full = Place::default().function_arn("f1", None);
        assert_eq!(parse_function_ref("f1").unwrap(), ("f1".into(), None));
        assert_eq!(parse_function_ref("123456789012:function:f1").unwrap(), ("f1".into(), None));
        assert_eq!(parse_function_ref(&full).unwrap(), ("f1".into(), None));
        assert_eq!(parse_function_ref(&format!("{full}:live")).unwrap(), ("f1".into(), Some("live".into())));
        assert_eq!(parse_function_ref("bad/name").unwrap_err().kind, "InvalidParameterValueException");
    }

    #[test]
    fn pages_are_capped_at_fifty_and_resume_after_the_marker() {
        let items: Vec<(String, usize)> = (0..120).map(|i| (format!("f{i:03}"), i)).collect();
        let (page, next) = paginate(items.clone(), &[]).unwrap();
        assert_eq!(page.len(), 50);
        let marker = next.unwrap();
        let (page, next) = paginate(items, &[("Marker".into(), marker), ("MaxItems".into(), "100".into())]).unwrap();
        assert_eq!(page.first(), Some(&50));
        assert_eq!(page.len(), 50);
        assert!(next.is_some());
    }
}
