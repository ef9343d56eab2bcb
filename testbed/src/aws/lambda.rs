//! Lambda's control plane, served by the layer itself (moto's Lambda has no RevisionId, never InProgress, ignores
//! S3ObjectVersion, accepts missing S3 keys, never paginates). Function code is read from moto's S3.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::moto_client::{MotoClient, xml_text};
use super::route::{decode_path, param};
use crate::identity::{ACCOUNT_ID, REGION};

/// ListFunctions/ListAliases/ListVersionsByFunction never return more than this per page.
const MAX_PAGE: usize = 50;
const S3_KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
const IAM_NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

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

    fn not_found(what: &str) -> LambdaError {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", what)
    }

    fn function_not_found(name: &str) -> LambdaError {
        Self::not_found(&format!("Function not found: {}", function_arn(name)))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> LambdaError {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", message)
    }

    fn conflict(message: impl Into<String>) -> LambdaError {
        Self::new(StatusCode::CONFLICT, "ResourceConflictException", message)
    }

    pub(crate) fn update_in_progress(name: &str) -> LambdaError {
        Self::conflict(format!(
            "The operation cannot be performed at this time. An update is in progress for resource: {}",
            function_arn(name)
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

    pub(crate) fn service(message: impl Into<String>) -> LambdaError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", message)
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

type Reply = Result<(StatusCode, Value), LambdaError>;

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
        }
    }

    /// The function's short name, if the request names one that parses.
    pub(crate) fn function(&self, body: &Value) -> Option<String> {
        let raw = match self {
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
            | Op::ListTags(n) => n,
        };
        parse_function_ref(raw).ok().map(|(name, _)| name)
    }
}

/// What a handler needs besides the operation.
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Value,
    /// How long an update started by this call stays InProgress.
    pub(crate) in_progress: Duration,
    /// How long a function created by this call stays Pending.
    pub(crate) pending: Duration,
}

pub(crate) fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}")
}

fn qualified_arn(name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("{}:{q}", function_arn(name)),
        None => function_arn(name),
    }
}

/// Name, partial ARN (`ACCOUNT:function:NAME`) or full ARN, each optionally with `:QUALIFIER`.
fn parse_function_ref(raw: &str) -> Result<(String, Option<String>), LambdaError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, qualifier, account, region) = match parts.as_slice() {
        [name] => (*name, None, ACCOUNT_ID, REGION),
        [name, q] => (*name, Some(*q), ACCOUNT_ID, REGION),
        [acct, "function", name] => (*name, None, *acct, REGION),
        [acct, "function", name, q] => (*name, Some(*q), *acct, REGION),
        ["arn", "aws", "lambda", region, acct, "function", name] => (*name, None, *acct, *region),
        ["arn", "aws", "lambda", region, acct, "function", name, q] => (*name, Some(*q), *acct, *region),
        _ => return Err(LambdaError::invalid(format!("Invalid function name or ARN: {raw}"))),
    };
    let valid_name =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let valid_qualifier = qualifier.is_none_or(|q| {
        !q.is_empty() && q.len() <= 128 && q.chars().all(|c| c.is_ascii_alphanumeric() || "-_$".contains(c))
    });
    if !valid_name || !valid_qualifier {
        return Err(LambdaError::invalid(format!("Invalid function name or ARN: {raw}")));
    }
    if account != ACCOUNT_ID || region != REGION {
        return Err(LambdaError::not_found(&format!("Function not found: {raw}")));
    }
    Ok((name.to_string(), qualifier.map(str::to_string)))
}

/// The function and qualifier a request addresses: from the name/ARN and the `Qualifier` query parameter.
fn target(raw: &str, query: &[(String, String)]) -> Result<(String, Option<String>), LambdaError> {
    let (name, from_name) = parse_function_ref(raw)?;
    let from_query = param(query, "Qualifier").map(str::to_string);
    match (from_name, from_query) {
        (Some(a), Some(b)) if a != b => Err(LambdaError::invalid(
            "The derived qualifier from the function name does not match the specified qualifier.",
        )),
        (a, b) => Ok((name, a.or(b))),
    }
}

fn now_text() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Pending,
    Active,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum UpdateStatus {
    InProgress,
    Successful,
}

/// One version's configuration ($LATEST or published).
#[derive(Clone, Debug, PartialEq)]
struct Version {
    version: String,
    description: String,
    runtime: Option<String>,
    handler: Option<String>,
    role: String,
    timeout: u64,
    memory_size: u64,
    environment: Option<BTreeMap<String, String>>,
    architectures: Vec<String>,
    code_sha256: String,
    code_size: u64,
    revision_id: String,
    last_modified: String,
    state: State,
    last_update: Option<UpdateStatus>,
}

impl Version {
    /// Equal code and configuration: publishing such a $LATEST again returns the existing version.
    fn same_content(&self, other: &Version) -> bool {
        let strip = |v: &Version| Version {
            version: String::new(),
            description: String::new(),
            revision_id: String::new(),
            last_modified: String::new(),
            state: State::Active,
            last_update: None,
            ..v.clone()
        };
        strip(self) == strip(other)
    }
}

#[derive(Clone, Debug)]
struct Alias {
    name: String,
    function_version: String,
    description: String,
    revision_id: String,
    routing_config: Option<Value>,
}

#[derive(Debug)]
struct Function {
    name: String,
    latest: Version,
    versions: BTreeMap<u64, Version>,
    aliases: BTreeMap<String, Alias>,
    tags: BTreeMap<String, String>,
    code_history: Vec<String>,
    pending_until: Option<Instant>,
    in_progress_until: Option<Instant>,
}

impl Function {
    /// Applies timed transitions (Pending→Active, InProgress→Successful); each is a change with a new RevisionId.
    fn refresh(&mut self, now: Instant) {
        if self.pending_until.is_some_and(|t| t <= now) {
            self.pending_until = None;
            self.latest.state = State::Active;
            self.latest.last_update = Some(UpdateStatus::Successful);
            self.latest.revision_id = new_revision();
        }
        if self.in_progress_until.is_some_and(|t| t <= now) {
            self.in_progress_until = None;
            self.latest.last_update = Some(UpdateStatus::Successful);
            self.latest.revision_id = new_revision();
        }
    }

    /// 409 while Pending or while an update is InProgress.
    fn ensure_idle(&self) -> Result<(), LambdaError> {
        if self.latest.state == State::Pending {
            return Err(LambdaError::conflict(
                "The operation cannot be performed at this time. The function is currently in the following state: \
                 Pending",
            ));
        }
        if self.latest.last_update == Some(UpdateStatus::InProgress) {
            return Err(LambdaError::update_in_progress(&self.name));
        }
        Ok(())
    }

    fn ensure_revision(&self, body: &Value) -> Result<(), LambdaError> {
        match body.get("RevisionId").and_then(Value::as_str) {
            Some(rev) if rev != self.latest.revision_id => Err(LambdaError::precondition_failed()),
            _ => Ok(()),
        }
    }

    /// Marks $LATEST changed: new RevisionId, LastModified, and InProgress for `in_progress` (if non-zero).
    fn touch(&mut self, in_progress: Duration) {
        self.latest.revision_id = new_revision();
        self.latest.last_modified = now_text();
        if in_progress.is_zero() {
            self.latest.last_update = Some(UpdateStatus::Successful);
            self.in_progress_until = None;
        } else {
            self.latest.last_update = Some(UpdateStatus::InProgress);
            self.in_progress_until = Some(Instant::now() + in_progress);
        }
    }

    /// The configuration a qualifier selects and the qualifier its ARN carries.
    fn resolve(&self, qualifier: Option<&str>) -> Result<(&Version, Option<String>), LambdaError> {
        match qualifier {
            None => Ok((&self.latest, None)),
            Some("$LATEST") => Ok((&self.latest, Some("$LATEST".into()))),
            Some(q) => {
                let not_found =
                    || LambdaError::not_found(&format!("Function not found: {}", qualified_arn(&self.name, Some(q))));
                if let Ok(n) = q.parse::<u64>() {
                    return self.versions.get(&n).map(|v| (v, Some(q.to_string()))).ok_or_else(not_found);
                }
                let alias = self.aliases.get(q).ok_or_else(not_found)?;
                let (v, _) = self.resolve(Some(&alias.function_version))?;
                Ok((v, Some(q.to_string())))
            }
        }
    }

    fn version_exists(&self, version: &str) -> bool {
        version == "$LATEST" || version.parse::<u64>().is_ok_and(|n| self.versions.contains_key(&n))
    }

    /// Publishes $LATEST as a new version, unless the newest version already has the same code and configuration.
    fn publish(&mut self, description: Option<&str>) -> (StatusCode, Version) {
        if let Some((_, newest)) = self.versions.last_key_value()
            && newest.same_content(&self.latest)
        {
            return (StatusCode::CREATED, newest.clone());
        }
        let n = self.versions.last_key_value().map(|(n, _)| n + 1).unwrap_or(1);
        let version = Version {
            version: n.to_string(),
            description: description.map(str::to_string).unwrap_or_else(|| self.latest.description.clone()),
            revision_id: new_revision(),
            last_modified: now_text(),
            state: State::Active,
            last_update: Some(UpdateStatus::Successful),
            ..self.latest.clone()
        };
        self.versions.insert(n, version.clone());
        (StatusCode::CREATED, version)
    }

    fn config_json(&self, v: &Version, qualifier: Option<&str>) -> Value {
        let mut c = Map::new();
        c.insert("FunctionName".into(), json!(self.name));
        c.insert("FunctionArn".into(), json!(qualified_arn(&self.name, qualifier)));
        if let Some(r) = &v.runtime {
            c.insert("Runtime".into(), json!(r));
        }
        c.insert("Role".into(), json!(v.role));
        if let Some(h) = &v.handler {
            c.insert("Handler".into(), json!(h));
        }
        c.insert("CodeSize".into(), json!(v.code_size));
        c.insert("Description".into(), json!(v.description));
        c.insert("Timeout".into(), json!(v.timeout));
        c.insert("MemorySize".into(), json!(v.memory_size));
        c.insert("LastModified".into(), json!(v.last_modified));
        c.insert("CodeSha256".into(), json!(v.code_sha256));
        c.insert("Version".into(), json!(v.version));
        if let Some(env) = &v.environment {
            c.insert("Environment".into(), json!({ "Variables": env }));
        }
        c.insert("TracingConfig".into(), json!({"Mode": "PassThrough"}));
        c.insert("RevisionId".into(), json!(v.revision_id));
        match v.state {
            State::Pending => {
                c.insert("State".into(), json!("Pending"));
                c.insert("StateReason".into(), json!("The function is being created."));
                c.insert("StateReasonCode".into(), json!("Creating"));
            }
            State::Active => {
                c.insert("State".into(), json!("Active"));
            }
        }
        match v.last_update {
            Some(UpdateStatus::InProgress) => {
                c.insert("LastUpdateStatus".into(), json!("InProgress"));
                c.insert("LastUpdateStatusReason".into(), json!("The function is being created."));
                c.insert("LastUpdateStatusReasonCode".into(), json!("Creating"));
            }
            Some(UpdateStatus::Successful) => {
                c.insert("LastUpdateStatus".into(), json!("Successful"));
            }
            None => {}
        }
        c.insert("PackageType".into(), json!("Zip"));
        c.insert("Architectures".into(), json!(v.architectures));
        c.insert("EphemeralStorage".into(), json!({"Size": 512}));
        c.insert("SnapStart".into(), json!({"ApplyOn": "None", "OptimizationStatus": "Off"}));
        c.insert(
            "LoggingConfig".into(),
            json!({"LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", self.name)}),
        );
        Value::Object(c)
    }

    fn alias_json(&self, a: &Alias) -> Value {
        let mut v = json!({
            "AliasArn": qualified_arn(&self.name, Some(&a.name)),
            "Name": a.name,
            "FunctionVersion": a.function_version,
            "Description": a.description,
            "RevisionId": a.revision_id,
        });
        if let Some(r) = &a.routing_config {
            v["RoutingConfig"] = r.clone();
        }
        v
    }
}

/// Code a request supplies, hashed the way Lambda reports it.
struct Code {
    sha256: String,
    size: u64,
}

fn code_of(bytes: &[u8]) -> Result<Code, LambdaError> {
    // A zip starts with a local file header, or (empty archive) with the end-of-central-directory record.
    let is_zip = bytes.starts_with(b"PK\x03\x04") || (bytes.len() >= 22 && bytes.starts_with(b"PK\x05\x06"));
    if !is_zip {
        return Err(LambdaError::invalid(
            "Could not unzip uploaded file. Please check your file, then try to upload again.",
        ));
    }
    Ok(Code { sha256: B64.encode(Sha256::digest(bytes)), size: bytes.len() as u64 })
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

fn string_map(v: Option<&Value>) -> Result<Option<BTreeMap<String, String>>, LambdaError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| LambdaError::invalid("Expected a map of strings to strings")),
    }
}

fn number(body: &Value, key: &str) -> Result<Option<u64>, LambdaError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| LambdaError::invalid(format!("{key} must be a number"))),
    }
}

/// List operations return a subset of the configuration: AWS documents that ListFunctions leaves out the state
/// fields (a deployer must call GetFunction/GetFunctionConfiguration to see them).
fn listed(mut config: Value) -> Value {
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
fn paginate<T>(items: Vec<(String, T)>, query: &[(String, String)]) -> Result<(Vec<T>, Option<String>), LambdaError> {
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

/// The function store and the handlers of the operations in [`Op`].
pub(crate) struct Lambda {
    functions: Mutex<BTreeMap<String, Function>>,
    moto: MotoClient,
}

impl Lambda {
    pub(crate) fn new(moto: MotoClient) -> Lambda {
        Lambda { functions: Mutex::new(BTreeMap::new()), moto }
    }

    /// Every CodeSha256 the function was ever set to, oldest first.
    pub(crate) fn history(&self, name: &str) -> Option<Vec<String>> {
        self.lock().get(name).map(|f| f.code_history.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Function>> {
        self.functions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the (refreshed) function, or answers 404.
    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Function) -> Result<R, LambdaError>) -> Result<R, LambdaError> {
        let mut functions = self.lock();
        let function = functions.get_mut(name).ok_or_else(|| LambdaError::function_not_found(name))?;
        function.refresh(Instant::now());
        f(function)
    }

    pub(crate) async fn handle(&self, request: Request) -> Reply {
        let Request { op, query, body, in_progress, pending } = request;
        match &op {
            Op::CreateFunction => self.create(&body, pending).await,
            Op::ListFunctions => self.list_functions(&query),
            Op::GetAccountSettings => self.account_settings(),
            Op::GetFunction(raw) => self.get(raw, &query, true),
            Op::GetFunctionConfiguration(raw) => self.get(raw, &query, false),
            Op::DeleteFunction(raw) => self.delete(raw, &query),
            Op::UpdateFunctionCode(raw) => self.update_code(raw, &body, in_progress).await,
            Op::UpdateFunctionConfiguration(raw) => self.update_configuration(raw, &body, in_progress).await,
            Op::PublishVersion(raw) => self.publish_version(raw, &body),
            Op::ListVersionsByFunction(raw) => self.list_versions(raw, &query),
            Op::CreateAlias(raw) => self.create_alias(raw, &body),
            Op::ListAliases(raw) => self.list_aliases(raw, &query),
            Op::GetAlias(raw, alias) => self.get_alias(raw, alias),
            Op::UpdateAlias(raw, alias) => self.update_alias(raw, alias, &body),
            Op::DeleteAlias(raw, alias) => self.delete_alias(raw, alias),
            Op::TagResource(arn) => self.tag(arn, &body),
            Op::UntagResource(arn) => self.untag(arn, &query),
            Op::ListTags(arn) => self.list_tags(arn),
        }
    }

    async fn create(&self, body: &Value, pending: Duration) -> Reply {
        let raw = str_field(body, "FunctionName").ok_or_else(|| LambdaError::invalid("FunctionName is required"))?;
        let (name, qualifier) = parse_function_ref(raw)?;
        if qualifier.is_some() {
            return Err(LambdaError::invalid("FunctionName must not carry a qualifier"));
        }
        let role = str_field(body, "Role").ok_or_else(|| LambdaError::invalid("Role is required"))?;
        let exists = || LambdaError::conflict(format!("Function already exist: {name}"));
        if self.lock().contains_key(&name) {
            return Err(exists());
        }
        self.check_role(role).await?;
        let code_spec = body.get("Code").ok_or_else(|| LambdaError::invalid("Code is required"))?;
        let code = self
            .fetch_code(code_spec)
            .await?
            .ok_or_else(|| LambdaError::invalid("Please provide a source for function code."))?;
        let architectures = match body.get("Architectures") {
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| LambdaError::invalid("Invalid Architectures"))?,
            None => vec!["x86_64".to_string()],
        };
        let latest = Version {
            version: "$LATEST".into(),
            description: str_field(body, "Description").unwrap_or_default().to_string(),
            runtime: str_field(body, "Runtime").map(str::to_string),
            handler: str_field(body, "Handler").map(str::to_string),
            role: role.to_string(),
            timeout: number(body, "Timeout")?.unwrap_or(3),
            memory_size: number(body, "MemorySize")?.unwrap_or(128),
            environment: string_map(body.get("Environment").and_then(|e| e.get("Variables")))?,
            architectures,
            code_sha256: code.sha256.clone(),
            code_size: code.size,
            revision_id: new_revision(),
            last_modified: now_text(),
            state: if pending.is_zero() { State::Active } else { State::Pending },
            last_update: pending.is_zero().then_some(UpdateStatus::Successful),
        };
        let mut function = Function {
            name: name.clone(),
            latest,
            versions: BTreeMap::new(),
            aliases: BTreeMap::new(),
            tags: string_map(body.get("Tags"))?.unwrap_or_default(),
            code_history: vec![code.sha256],
            pending_until: (!pending.is_zero()).then(|| Instant::now() + pending),
            in_progress_until: None,
        };
        let (config, qualifier) = if body.get("Publish").and_then(Value::as_bool) == Some(true) {
            let (_, v) = function.publish(None);
            let q = v.version.clone();
            (v, Some(q))
        } else {
            (function.latest.clone(), None)
        };
        let json = function.config_json(&config, qualifier.as_deref());
        let mut functions = self.lock();
        if functions.contains_key(&name) {
            return Err(exists());
        }
        functions.insert(name, function);
        Ok((StatusCode::CREATED, json))
    }

    fn list_functions(&self, query: &[(String, String)]) -> Reply {
        let mut functions = self.lock();
        let now = Instant::now();
        let items = functions
            .values_mut()
            .map(|f| {
                f.refresh(now);
                (f.name.clone(), listed(f.config_json(&f.latest, None)))
            })
            .collect();
        let (page, next) = paginate(items, query)?;
        let mut out = json!({ "Functions": page });
        if let Some(m) = next {
            out["NextMarker"] = json!(m);
        }
        Ok((StatusCode::OK, out))
    }

    /// AWS's default limits, and the account's usage: what a client needs to size a ListFunctions listing.
    fn account_settings(&self) -> Reply {
        let functions = self.lock();
        let code_size: u64 = functions.values().map(|f| f.latest.code_size).sum();
        Ok((
            StatusCode::OK,
            json!({
                "AccountLimit": {
                    "TotalCodeSize": 80_530_636_800u64,
                    "CodeSizeUnzipped": 262_144_000u64,
                    "CodeSizeZipped": 52_428_800u64,
                    "ConcurrentExecutions": 1000,
                    "UnreservedConcurrentExecutions": 1000
                },
                "AccountUsage": { "TotalCodeSize": code_size, "FunctionCount": functions.len() }
            }),
        ))
    }

    fn get(&self, raw: &str, query: &[(String, String)], with_code: bool) -> Reply {
        let (name, qualifier) = target(raw, query)?;
        self.with(&name, |f| {
            let (v, q) = f.resolve(qualifier.as_deref())?;
            let config = f.config_json(v, q.as_deref());
            if !with_code {
                return Ok((StatusCode::OK, config));
            }
            let mut out = json!({
                "Configuration": config,
                "Code": {
                    "RepositoryType": "S3",
                    "Location": format!(
                        "https://awslambda-{REGION}-tasks.s3.{REGION}.amazonaws.com/snapshots/{ACCOUNT_ID}/{name}-{}",
                        v.revision_id
                    ),
                },
            });
            if !f.tags.is_empty() {
                out["Tags"] = json!(f.tags);
            }
            Ok((StatusCode::OK, out))
        })
    }

    fn delete(&self, raw: &str, query: &[(String, String)]) -> Reply {
        let (name, qualifier) = target(raw, query)?;
        let mut functions = self.lock();
        let function = functions.get_mut(&name).ok_or_else(|| LambdaError::function_not_found(&name))?;
        match qualifier.as_deref() {
            None => {
                functions.remove(&name);
            }
            Some("$LATEST") => {
                return Err(LambdaError::invalid("$LATEST version cannot be deleted without deleting the function."));
            }
            Some(q) => {
                let n =
                    q.parse::<u64>().map_err(|_| LambdaError::invalid("Deletion of aliases is not supported here"))?;
                let users: Vec<&str> =
                    function.aliases.values().filter(|a| a.function_version == q).map(|a| a.name.as_str()).collect();
                if !users.is_empty() {
                    return Err(LambdaError::conflict(format!(
                        "Unable to delete version because the following aliases reference it: {users:?}"
                    )));
                }
                function.versions.remove(&n).ok_or_else(|| {
                    LambdaError::not_found(&format!("Function not found: {}", qualified_arn(&name, Some(q))))
                })?;
            }
        }
        Ok((StatusCode::NO_CONTENT, Value::Null))
    }

    async fn update_code(&self, raw: &str, body: &Value, in_progress: Duration) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        let precheck = |f: &mut Function| {
            f.ensure_idle()?;
            f.ensure_revision(body)
        };
        self.with(&name, precheck)?;
        let code = self
            .fetch_code(body)
            .await?
            .ok_or_else(|| LambdaError::invalid("Please provide a source for function code."))?;
        self.with(&name, |f| {
            // Re-checked: another writer may have changed the function while its code was read.
            precheck(f)?;
            if body.get("DryRun").and_then(Value::as_bool) == Some(true) {
                return Ok((StatusCode::OK, f.config_json(&f.latest, None)));
            }
            f.latest.code_sha256 = code.sha256.clone();
            f.latest.code_size = code.size;
            f.code_history.push(code.sha256);
            f.touch(in_progress);
            Self::reply_maybe_published(f, body)
        })
    }

    /// After an update: `$LATEST`'s configuration, or with `Publish: true` the configuration of the new version.
    fn reply_maybe_published(f: &mut Function, body: &Value) -> Reply {
        if body.get("Publish").and_then(Value::as_bool) == Some(true) {
            let (_, v) = f.publish(None);
            let q = v.version.clone();
            return Ok((StatusCode::OK, f.config_json(&v, Some(&q))));
        }
        Ok((StatusCode::OK, f.config_json(&f.latest, None)))
    }

    async fn update_configuration(&self, raw: &str, body: &Value, in_progress: Duration) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        let precheck = |f: &mut Function| {
            f.ensure_idle()?;
            f.ensure_revision(body)
        };
        self.with(&name, precheck)?;
        if let Some(role) = str_field(body, "Role") {
            self.check_role(role).await?;
        }
        let environment = string_map(body.get("Environment").and_then(|e| e.get("Variables")))?;
        let timeout = number(body, "Timeout")?;
        let memory_size = number(body, "MemorySize")?;
        self.with(&name, |f| {
            precheck(f)?;
            let v = &mut f.latest;
            if let Some(d) = str_field(body, "Description") {
                v.description = d.to_string();
            }
            if let Some(h) = str_field(body, "Handler") {
                v.handler = Some(h.to_string());
            }
            if let Some(r) = str_field(body, "Runtime") {
                v.runtime = Some(r.to_string());
            }
            if let Some(r) = str_field(body, "Role") {
                v.role = r.to_string();
            }
            if body.get("Environment").is_some() {
                v.environment = environment;
            }
            v.timeout = timeout.unwrap_or(v.timeout);
            v.memory_size = memory_size.unwrap_or(v.memory_size);
            f.touch(in_progress);
            Ok((StatusCode::OK, f.config_json(&f.latest, None)))
        })
    }

    fn publish_version(&self, raw: &str, body: &Value) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        self.with(&name, |f| {
            f.ensure_idle()?;
            f.ensure_revision(body)?;
            if let Some(sha) = str_field(body, "CodeSha256")
                && sha != f.latest.code_sha256
            {
                return Err(LambdaError::invalid(format!(
                    "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with \
                     the CodeSHA256 in $LATEST.",
                    f.latest.code_sha256
                )));
            }
            let (status, v) = f.publish(str_field(body, "Description"));
            let q = v.version.clone();
            Ok((status, f.config_json(&v, Some(&q))))
        })
    }

    fn list_versions(&self, raw: &str, query: &[(String, String)]) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        self.with(&name, |f| {
            // Keys sort $LATEST first, then versions in numeric order.
            let mut items = vec![("0".to_string(), listed(f.config_json(&f.latest, Some("$LATEST"))))];
            items.extend(
                f.versions.iter().map(|(n, v)| (format!("1{n:020}"), listed(f.config_json(v, Some(&v.version))))),
            );
            let (page, next) = paginate(items, query)?;
            let mut out = json!({ "Versions": page });
            if let Some(m) = next {
                out["NextMarker"] = json!(m);
            }
            Ok((StatusCode::OK, out))
        })
    }

    fn create_alias(&self, raw: &str, body: &Value) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        let alias = str_field(body, "Name").ok_or_else(|| LambdaError::invalid("Name is required"))?;
        if alias.is_empty() || alias.parse::<u64>().is_ok() || alias == "$LATEST" {
            return Err(LambdaError::invalid(format!("Invalid alias name: {alias}")));
        }
        let version =
            str_field(body, "FunctionVersion").ok_or_else(|| LambdaError::invalid("FunctionVersion is required"))?;
        self.with(&name, |f| {
            if !f.version_exists(version) {
                return Err(LambdaError::not_found(&format!(
                    "Function not found: {}",
                    qualified_arn(&name, Some(version))
                )));
            }
            if f.aliases.contains_key(alias) {
                return Err(LambdaError::conflict(format!(
                    "Alias already exists: {}",
                    qualified_arn(&name, Some(alias))
                )));
            }
            let a = Alias {
                name: alias.to_string(),
                function_version: version.to_string(),
                description: str_field(body, "Description").unwrap_or_default().to_string(),
                revision_id: new_revision(),
                routing_config: body.get("RoutingConfig").cloned(),
            };
            let out = f.alias_json(&a);
            f.aliases.insert(a.name.clone(), a);
            Ok((StatusCode::CREATED, out))
        })
    }

    fn alias_not_found(name: &str, alias: &str) -> LambdaError {
        LambdaError::not_found(&format!("Alias not found: {}", qualified_arn(name, Some(alias))))
    }

    fn get_alias(&self, raw: &str, alias: &str) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        self.with(&name, |f| {
            let a = f.aliases.get(alias).ok_or_else(|| Self::alias_not_found(&name, alias))?;
            Ok((StatusCode::OK, f.alias_json(a)))
        })
    }

    fn update_alias(&self, raw: &str, alias: &str, body: &Value) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        self.with(&name, |f| {
            let version = str_field(body, "FunctionVersion");
            if let Some(v) = version
                && !f.version_exists(v)
            {
                return Err(LambdaError::not_found(&format!("Function not found: {}", qualified_arn(&name, Some(v)))));
            }
            let mut a = f.aliases.get(alias).cloned().ok_or_else(|| Self::alias_not_found(&name, alias))?;
            if str_field(body, "RevisionId").is_some_and(|r| r != a.revision_id) {
                return Err(LambdaError::precondition_failed());
            }
            if let Some(v) = version {
                a.function_version = v.to_string();
            }
            if let Some(d) = str_field(body, "Description") {
                a.description = d.to_string();
            }
            if let Some(r) = body.get("RoutingConfig") {
                a.routing_config = Some(r.clone());
            }
            a.revision_id = new_revision();
            let out = f.alias_json(&a);
            f.aliases.insert(alias.to_string(), a);
            Ok((StatusCode::OK, out))
        })
    }

    fn delete_alias(&self, raw: &str, alias: &str) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        self.with(&name, |f| {
            f.aliases.remove(alias);
            Ok((StatusCode::NO_CONTENT, Value::Null))
        })
    }

    fn list_aliases(&self, raw: &str, query: &[(String, String)]) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        let only = param(query, "FunctionVersion");
        self.with(&name, |f| {
            let items = f
                .aliases
                .values()
                .filter(|a| only.is_none_or(|v| v == a.function_version))
                .map(|a| (a.name.clone(), f.alias_json(a)))
                .collect();
            let (page, next) = paginate(items, query)?;
            let mut out = json!({ "Aliases": page });
            if let Some(m) = next {
                out["NextMarker"] = json!(m);
            }
            Ok((StatusCode::OK, out))
        })
    }

    /// Tags live on the unqualified function.
    fn tag_target(arn: &str) -> Result<String, LambdaError> {
        match parse_function_ref(arn)? {
            (name, None) => Ok(name),
            (_, Some(_)) => Err(LambdaError::invalid("Tags are not supported on function versions or aliases")),
        }
    }

    fn tag(&self, arn: &str, body: &Value) -> Reply {
        let name = Self::tag_target(arn)?;
        let tags = string_map(body.get("Tags"))?.ok_or_else(|| LambdaError::invalid("Tags is required"))?;
        self.with(&name, |f| {
            f.ensure_idle()?;
            f.tags.extend(tags);
            Ok((StatusCode::NO_CONTENT, Value::Null))
        })
    }

    fn untag(&self, arn: &str, query: &[(String, String)]) -> Reply {
        let name = Self::tag_target(arn)?;
        self.with(&name, |f| {
            for (k, v) in query {
                if k == "tagKeys" {
                    f.tags.remove(v);
                }
            }
            Ok((StatusCode::NO_CONTENT, Value::Null))
        })
    }

    fn list_tags(&self, arn: &str) -> Reply {
        let name = Self::tag_target(arn)?;
        self.with(&name, |f| Ok((StatusCode::OK, json!({ "Tags": f.tags }))))
    }

    /// The role must exist in IAM (moto), as Lambda checks it can assume it.
    async fn check_role(&self, role_arn: &str) -> Result<(), LambdaError> {
        let cannot_assume = || LambdaError::invalid("The role defined for the function cannot be assumed by Lambda.");
        let prefix = format!("arn:aws:iam::{ACCOUNT_ID}:role/");
        let role_name = role_arn.strip_prefix(&prefix).and_then(|p| p.rsplit('/').next()).ok_or_else(cannot_assume)?;
        let form = format!("Action=GetRole&Version=2010-05-08&RoleName={}", utf8_percent_encode(role_name, IAM_NAME));
        let (status, _) = self
            .moto
            .call("iam", Method::POST, "/", Some("application/x-www-form-urlencoded"), form)
            .await
            .map_err(|e| LambdaError::service(format!("IAM GetRole failed: {e}")))?;
        match status {
            StatusCode::OK => Ok(()),
            s if s.is_client_error() => Err(cannot_assume()),
            s => Err(LambdaError::service(format!("IAM GetRole answered {s}"))),
        }
    }

    /// The code a request supplies (`ZipFile`, or `S3Bucket`/`S3Key`/`S3ObjectVersion`), or None if it names none.
    async fn fetch_code(&self, spec: &Value) -> Result<Option<Code>, LambdaError> {
        if let Some(zip) = str_field(spec, "ZipFile") {
            let bytes = B64.decode(zip).map_err(|_| LambdaError::invalid("ZipFile is not valid base64"))?;
            return code_of(&bytes).map(Some);
        }
        let (bucket, key) = match (str_field(spec, "S3Bucket"), str_field(spec, "S3Key")) {
            (None, None) => return Ok(None),
            (Some(b), Some(k)) => (b, k),
            _ => return Err(LambdaError::invalid("Both S3Bucket and S3Key are required")),
        };
        let mut path = format!("/{}/{}", utf8_percent_encode(bucket, S3_KEY), utf8_percent_encode(key, S3_KEY));
        if let Some(v) = str_field(spec, "S3ObjectVersion") {
            path.push_str(&format!("?versionId={}", utf8_percent_encode(v, NON_ALPHANUMERIC)));
        }
        let (status, bytes) = self
            .moto
            .call("s3", Method::GET, &path, None, bytes::Bytes::new())
            .await
            .map_err(|e| LambdaError::service(format!("S3 GetObject failed: {e}")))?;
        if status != StatusCode::OK {
            let xml = String::from_utf8_lossy(&bytes);
            let code = xml_text(&xml, "Code").unwrap_or("UnknownError");
            let message = xml_text(&xml, "Message").unwrap_or("Unknown error");
            return Err(LambdaError::invalid(format!(
                "Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {message}"
            )));
        }
        code_of(&bytes).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_partial_and_full_arns_address_the_same_function() {
        let full = format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:f1");
        assert_eq!(parse_function_ref("f1").unwrap(), ("f1".into(), None));
        assert_eq!(parse_function_ref(&format!("{ACCOUNT_ID}:function:f1")).unwrap(), ("f1".into(), None));
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

    #[test]
    fn only_zip_archives_are_accepted_as_code() {
        assert!(code_of(b"PK\x03\x04rest").is_ok());
        assert_eq!(code_of(b"#!/bin/sh").err().unwrap().kind, "InvalidParameterValueException");
    }
}
