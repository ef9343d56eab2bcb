//! Lambda's control plane, served by the layer itself (moto's Lambda has no RevisionId, never InProgress, ignores
//! S3ObjectVersion, accepts missing S3 keys, never paginates), and its invocations; each account and region has its
//! own functions. Function code is read from moto's S3 with the caller's rights.

mod aliases;
mod api;
mod invoke;
mod model;
mod provisioned;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::accounts::{Caller, Place};
use super::moto_client::{MotoClient, xml_text};
use super::route::param;
use super::s3::Buckets;
use crate::aws::lock;
pub(crate) use api::{LambdaError, Op, Reply, reach};
use api::{listed, number, paginate, parse_function_ref, str_field, string_map, target};
pub(crate) use invoke::Invocation;
pub(crate) use model::UpdateFailure;
use model::{Code, Function, State, UpdateStatus, Version, code_of, new_revision, now_text};

const S3_KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
const IAM_NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// What a handler needs besides the operation.
pub(crate) struct Request {
    /// Who asks: the account and region served, and whose rights read the code from S3.
    pub(crate) caller: Caller,
    pub(crate) op: Op,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Value,
    /// An `in_progress` fault: how long the update this call starts stays InProgress, instead of a draw.
    pub(crate) in_progress: Option<Duration>,
    /// An `update_fails` fault: the update this call starts ends Failed.
    pub(crate) fails: Option<UpdateFailure>,
    /// How long a function created by this call stays Pending.
    pub(crate) pending: Duration,
}

/// A served call: its reply and, if it started an update, how long that stays InProgress (Pending for
/// CreateFunction).
pub(crate) struct Served {
    pub(crate) reply: Reply,
    pub(crate) update: Option<Duration>,
}

/// How long updates stay InProgress: `base` plus a uniform draw in [0, jitter], from a seeded generator. Drawn as
/// each update is applied, so the nth applied update gets the nth draw whatever calls were refused between.
pub(crate) struct UpdateTimes {
    base: Duration,
    jitter_ms: u64,
    rng: fastrand::Rng,
}

impl UpdateTimes {
    pub(crate) fn new(base_ms: u64, jitter_ms: u64, seed: u64) -> UpdateTimes {
        UpdateTimes { base: Duration::from_millis(base_ms), jitter_ms, rng: fastrand::Rng::with_seed(seed) }
    }

    fn draw(&mut self) -> Duration {
        self.base + Duration::from_millis(self.rng.u64(0..=self.jitter_ms))
    }
}

/// The functions of each account and region, by name.
type Store = BTreeMap<Place, BTreeMap<String, Function>>;

/// The function store and the handlers of the operations in [`Op`].
pub(crate) struct Lambda {
    functions: Mutex<Store>,
    update_times: Mutex<UpdateTimes>,
    /// Draws which version of a weighted alias runs and whether an invocation fails.
    invocations: Mutex<fastrand::Rng>,
    moto: MotoClient,
    buckets: Arc<Buckets>,
}

/// The reply of a call that may start an update, with the update's InProgress time.
type Started = Result<((StatusCode, Value), Option<Duration>), LambdaError>;

impl Lambda {
    pub(crate) fn new(moto: MotoClient, buckets: Arc<Buckets>, update_times: UpdateTimes, invoke_seed: u64) -> Lambda {
        Lambda {
            functions: Mutex::new(BTreeMap::new()),
            update_times: Mutex::new(update_times),
            invocations: Mutex::new(fastrand::Rng::with_seed(invoke_seed)),
            moto,
            buckets,
        }
    }

    /// Restarts the update-time generator and the invocation generator with new settings.
    pub(crate) fn set_generators(&self, update_times: UpdateTimes, invoke_seed: u64) {
        *lock(&self.update_times) = update_times;
        *lock(&self.invocations) = fastrand::Rng::with_seed(invoke_seed);
    }

    /// An `in_progress` fault's duration, or the next draw.
    fn update_time(&self, fault: Option<Duration>) -> Duration {
        fault.unwrap_or_else(|| lock(&self.update_times).draw())
    }

    /// Every CodeSha256 the function was ever set to, oldest first.
    pub(crate) fn history(&self, place: &Place, name: &str) -> Option<Vec<String>> {
        self.lock().get(place)?.get(name).map(|f| f.code_history.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.functions)
    }

    /// Runs `f` on the (refreshed) function of `place`, or answers 404.
    fn with<R>(
        &self,
        place: &Place,
        name: &str,
        f: impl FnOnce(&mut Function) -> Result<R, LambdaError>,
    ) -> Result<R, LambdaError> {
        let mut functions = self.lock();
        let function = functions
            .get_mut(place)
            .and_then(|in_place| in_place.get_mut(name))
            .ok_or_else(|| LambdaError::function_not_found(&place.function_arn(name, None)))?;
        function.refresh(Instant::now());
        f(function)
    }

    pub(crate) async fn handle(&self, request: Request) -> Served {
        let Request { caller, op, query, body, in_progress, fails, pending } = request;
        let place = &caller.place;
        let no_update = |reply: Reply| reply.map(|r| (r, None));
        let started: Started = match &op {
            Op::CreateFunction => self.create(&caller, &body, pending).await.map(|r| (r, Some(pending))),
            Op::UpdateFunctionCode(raw) => self.update_code(&caller, raw, &body, in_progress, fails).await,
            Op::UpdateFunctionConfiguration(raw) => {
                self.update_configuration(place, raw, &body, in_progress, fails).await
            }
            Op::ListFunctions => no_update(self.list_functions(place, &query)),
            Op::GetAccountSettings => no_update(self.account_settings(place)),
            Op::GetFunction(raw) => no_update(self.get(place, raw, &query, true)),
            Op::GetFunctionConfiguration(raw) => no_update(self.get(place, raw, &query, false)),
            Op::DeleteFunction(raw) => no_update(self.delete(place, raw, &query)),
            Op::PublishVersion(raw) => no_update(self.publish_version(place, raw, &body)),
            Op::ListVersionsByFunction(raw) => no_update(self.list_versions(place, raw, &query)),
            Op::CreateAlias(raw) => no_update(self.create_alias(place, raw, &body)),
            Op::ListAliases(raw) => no_update(self.list_aliases(place, raw, &query)),
            Op::GetAlias(raw, alias) => no_update(self.get_alias(place, raw, alias)),
            Op::UpdateAlias(raw, alias) => no_update(self.update_alias(place, raw, alias, &body)),
            Op::DeleteAlias(raw, alias) => no_update(self.delete_alias(place, raw, alias)),
            Op::TagResource(arn) => no_update(self.tag(place, arn, &body)),
            Op::UntagResource(arn) => no_update(self.untag(place, arn, &query)),
            Op::ListTags(arn) => no_update(self.list_tags(place, arn)),
            Op::PutProvisionedConcurrencyConfig(raw) => no_update(self.put_provisioned(place, raw, &query, &body)),
            Op::GetProvisionedConcurrencyConfig(raw) => no_update(self.get_provisioned(place, raw, &query)),
            Op::DeleteProvisionedConcurrencyConfig(raw) => no_update(self.delete_provisioned(place, raw, &query)),
            // Served by the HTTP side, which answers with the function's payload rather than a JSON document.
            Op::Invoke(_) => Err(LambdaError::unknown_operation()),
        };
        match started {
            Ok((reply, update)) => Served { reply: Ok(reply), update },
            Err(e) => Served { reply: Err(e), update: None },
        }
    }

    async fn create(&self, caller: &Caller, body: &Value, pending: Duration) -> Reply {
        let place = &caller.place;
        let raw = str_field(body, "FunctionName").ok_or_else(|| LambdaError::invalid("FunctionName is required"))?;
        let (name, qualifier) = parse_function_ref(raw)?;
        if qualifier.is_some() {
            return Err(LambdaError::invalid("FunctionName must not carry a qualifier"));
        }
        let role = str_field(body, "Role").ok_or_else(|| LambdaError::invalid("Role is required"))?;
        let exists = || LambdaError::conflict(format!("Function already exist: {name}"));
        let taken = |store: &Store| store.get(place).is_some_and(|in_place| in_place.contains_key(&name));
        if taken(&self.lock()) {
            return Err(exists());
        }
        self.check_role(place, role).await?;
        let code_spec = body.get("Code").ok_or_else(|| LambdaError::invalid("Code is required"))?;
        let code = self
            .fetch_code(caller, code_spec)
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
            behaviour: code.behaviour,
            dead_letter_target: dead_letter_target(body)?.flatten(),
            revision_id: new_revision(),
            last_modified: now_text(),
            state: if pending.is_zero() { State::Active } else { State::Pending },
            last_update: pending.is_zero().then_some(UpdateStatus::Successful),
        };
        let mut function = Function {
            place: place.clone(),
            name: name.clone(),
            latest,
            versions: BTreeMap::new(),
            aliases: BTreeMap::new(),
            tags: string_map(body.get("Tags"))?.unwrap_or_default(),
            code_history: vec![code.sha256],
            pending_until: (!pending.is_zero()).then(|| Instant::now() + pending),
            in_progress_until: None,
            failing: None,
            running: None,
            provisioned: BTreeMap::new(),
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
        if taken(&functions) {
            return Err(exists());
        }
        functions.entry(place.clone()).or_default().insert(name, function);
        Ok((StatusCode::CREATED, json))
    }

    fn list_functions(&self, place: &Place, query: &[(String, String)]) -> Reply {
        let mut functions = self.lock();
        let now = Instant::now();
        let store = functions.entry(place.clone()).or_default();
        // Only the page is rendered: rendering every function for each page of 50 made a listing of 1,000
        // functions cost the testbed's CPU (and its lock) 20 times over.
        let names = store.keys().map(|name| (name.clone(), name.clone())).collect();
        let (names, next) = paginate(names, query)?;
        let mut page = Vec::with_capacity(names.len());
        for name in &names {
            if let Some(f) = store.get_mut(name) {
                f.refresh(now);
                page.push(listed(f.config_json(&f.latest, None)));
            }
        }
        let mut out = json!({ "Functions": page });
        if let Some(m) = next {
            out["NextMarker"] = json!(m);
        }
        Ok((StatusCode::OK, out))
    }

    /// AWS's default limits, and the account's usage: what a client needs to size a ListFunctions listing.
    fn account_settings(&self, place: &Place) -> Reply {
        let store = self.lock();
        let functions = store.get(place);
        let code_size: u64 = functions.iter().flat_map(|f| f.values()).map(|f| f.latest.code_size).sum();
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
                "AccountUsage": { "TotalCodeSize": code_size, "FunctionCount": functions.map_or(0, BTreeMap::len) }
            }),
        ))
    }

    fn get(&self, place: &Place, raw: &str, query: &[(String, String)], with_code: bool) -> Reply {
        let (name, qualifier) = target(raw, query)?;
        self.with(place, &name, |f| {
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
                        "https://awslambda-{region}-tasks.s3.{region}.amazonaws.com/snapshots/{}/{name}-{}",
                        place.account,
                        v.revision_id,
                        region = place.region,
                    ),
                },
            });
            if !f.tags.is_empty() {
                out["Tags"] = json!(f.tags);
            }
            Ok((StatusCode::OK, out))
        })
    }

    fn delete(&self, place: &Place, raw: &str, query: &[(String, String)]) -> Reply {
        let (name, qualifier) = target(raw, query)?;
        let mut store = self.lock();
        let functions = store.entry(place.clone()).or_default();
        let function = functions
            .get_mut(&name)
            .ok_or_else(|| LambdaError::function_not_found(&place.function_arn(&name, None)))?;
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
                let users: Vec<&str> = function
                    .aliases
                    .values()
                    .filter(|a| a.function_version == q || a.weights.contains_key(q))
                    .map(|a| a.name.as_str())
                    .collect();
                if !users.is_empty() {
                    return Err(LambdaError::conflict(format!(
                        "Unable to delete version because the following aliases reference it: [{}]",
                        users.join(", ")
                    )));
                }
                function.versions.remove(&n).ok_or_else(|| LambdaError::function_not_found(&function.arn(Some(q))))?;
                function.provisioned.remove(q);
            }
        }
        Ok((StatusCode::NO_CONTENT, Value::Null))
    }

    async fn update_code(
        &self,
        caller: &Caller,
        raw: &str,
        body: &Value,
        in_progress: Option<Duration>,
        fails: Option<UpdateFailure>,
    ) -> Started {
        let (name, _) = parse_function_ref(raw)?;
        let precheck = |f: &mut Function| {
            f.ensure_idle()?;
            f.ensure_revision(body)
        };
        let place = &caller.place;
        self.with(place, &name, precheck)?;
        let code = self
            .fetch_code(caller, body)
            .await?
            .ok_or_else(|| LambdaError::invalid("Please provide a source for function code."))?;
        self.with(place, &name, |f| {
            // Re-checked: another writer may have changed the function while its code was read.
            precheck(f)?;
            if body.get("DryRun").and_then(Value::as_bool) == Some(true) {
                return Ok(((StatusCode::OK, f.config_json(&f.latest, None)), None));
            }
            let previous = f.latest.clone();
            f.latest.code_sha256 = code.sha256.clone();
            f.latest.code_size = code.size;
            f.latest.behaviour = code.behaviour;
            f.code_history.push(code.sha256);
            let time = self.update_time(in_progress);
            f.start_update(previous, time, fails);
            Ok((Self::reply_maybe_published(f, body)?, Some(time)))
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

    async fn update_configuration(
        &self,
        place: &Place,
        raw: &str,
        body: &Value,
        in_progress: Option<Duration>,
        fails: Option<UpdateFailure>,
    ) -> Started {
        let (name, _) = parse_function_ref(raw)?;
        let precheck = |f: &mut Function| {
            f.ensure_idle()?;
            f.ensure_revision(body)
        };
        self.with(place, &name, precheck)?;
        if let Some(role) = str_field(body, "Role") {
            self.check_role(place, role).await?;
        }
        let environment = string_map(body.get("Environment").and_then(|e| e.get("Variables")))?;
        let dead_letter = dead_letter_target(body)?;
        let timeout = number(body, "Timeout")?;
        let memory_size = number(body, "MemorySize")?;
        self.with(place, &name, |f| {
            precheck(f)?;
            let previous = f.latest.clone();
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
            if let Some(target) = dead_letter {
                v.dead_letter_target = target;
            }
            v.timeout = timeout.unwrap_or(v.timeout);
            v.memory_size = memory_size.unwrap_or(v.memory_size);
            let time = self.update_time(in_progress);
            f.start_update(previous, time, fails);
            Ok(((StatusCode::OK, f.config_json(&f.latest, None)), Some(time)))
        })
    }

    fn publish_version(&self, place: &Place, raw: &str, body: &Value) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        self.with(place, &name, |f| {
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

    fn list_versions(&self, place: &Place, raw: &str, query: &[(String, String)]) -> Reply {
        let (name, _) = parse_function_ref(raw)?;
        self.with(place, &name, |f| {
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

    /// Tags live on the unqualified function.
    fn tag_target(arn: &str) -> Result<String, LambdaError> {
        match parse_function_ref(arn)? {
            (name, None) => Ok(name),
            (_, Some(_)) => Err(LambdaError::invalid("Tags are not supported on function versions or aliases")),
        }
    }

    fn tag(&self, place: &Place, arn: &str, body: &Value) -> Reply {
        let name = Self::tag_target(arn)?;
        let tags = string_map(body.get("Tags"))?.ok_or_else(|| LambdaError::invalid("Tags is required"))?;
        self.with(place, &name, |f| {
            f.ensure_idle()?;
            f.tags.extend(tags);
            Ok((StatusCode::NO_CONTENT, Value::Null))
        })
    }

    fn untag(&self, place: &Place, arn: &str, query: &[(String, String)]) -> Reply {
        let name = Self::tag_target(arn)?;
        self.with(place, &name, |f| {
            for (k, v) in query {
                if k == "tagKeys" {
                    f.tags.remove(v);
                }
            }
            Ok((StatusCode::NO_CONTENT, Value::Null))
        })
    }

    fn list_tags(&self, place: &Place, arn: &str) -> Reply {
        let name = Self::tag_target(arn)?;
        self.with(place, &name, |f| Ok((StatusCode::OK, json!({ "Tags": f.tags }))))
    }

    /// The role must exist in IAM (moto) in the function's account, as Lambda checks it can assume it.
    async fn check_role(&self, place: &Place, role_arn: &str) -> Result<(), LambdaError> {
        let cannot_assume = || LambdaError::invalid("The role defined for the function cannot be assumed by Lambda.");
        let prefix = format!("arn:aws:iam::{}:role/", place.account);
        let role_name = role_arn.strip_prefix(&prefix).and_then(|p| p.rsplit('/').next()).ok_or_else(cannot_assume)?;
        let form = format!("Action=GetRole&Version=2010-05-08&RoleName={}", utf8_percent_encode(role_name, IAM_NAME));
        let (status, _) = self
            .moto
            .at(&place.account, &place.region)
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
    /// Lambda reads S3 with the caller's rights, from the function's region only.
    async fn fetch_code(&self, caller: &Caller, spec: &Value) -> Result<Option<Code>, LambdaError> {
        if let Some(zip) = str_field(spec, "ZipFile") {
            let bytes = B64.decode(zip).map_err(|_| LambdaError::invalid("ZipFile is not valid base64"))?;
            return code_of(&bytes).map(Some);
        }
        let (bucket, key) = match (str_field(spec, "S3Bucket"), str_field(spec, "S3Key")) {
            (None, None) => return Ok(None),
            (Some(b), Some(k)) => (b, k),
            _ => return Err(LambdaError::invalid("Both S3Bucket and S3Key are required")),
        };
        let version = str_field(spec, "S3ObjectVersion");
        let owner = self.check_code_access(caller, bucket, key, version).await?;
        let mut path = format!("/{}/{}", utf8_percent_encode(bucket, S3_KEY), utf8_percent_encode(key, S3_KEY));
        if let Some(v) = version {
            path.push_str(&format!("?versionId={}", utf8_percent_encode(v, NON_ALPHANUMERIC)));
        }
        let (status, bytes) = self
            .moto
            .at(&owner, &caller.place.region)
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

    /// What Lambda checks before it reads code from S3: the bucket is in the function's region, and a bucket of
    /// another account lets the caller get the object (its version, if named). Returns the account to read it as;
    /// a bucket no account has is left to S3's NoSuchBucket.
    async fn check_code_access(
        &self,
        caller: &Caller,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<String, LambdaError> {
        let s3_unreachable = |e: std::io::Error| LambdaError::service(format!("S3 GetObject failed: {e}"));
        let Some(found) = self.buckets.find(bucket).await.map_err(s3_unreachable)? else {
            return Ok(caller.place.account.clone());
        };
        if found.region != caller.place.region {
            // As users met it: GetObject (hashicorp/terraform#16821, aws/serverless-application-model#1993);
            // GetObjectVersion (hashicorp/terraform-provider-aws#43568).
            return Err(LambdaError::invalid(match version {
                None => format!(
                    "Error occurred while GetObject. S3 Error Code: PermanentRedirect. S3 Error Message: The bucket \
                     is in this region: {}. Please use this region to retry the request",
                    found.region
                ),
                Some(_) => "Error occurred while GetObjectVersion. S3 Error Code: PermanentRedirect. S3 Error \
                            Message: The bucket you are attempting to access must be addressed using the specified \
                            endpoint. Please send all future requests to this endpoint."
                    .to_string(),
            }));
        }
        let action = if version.is_some() { "s3:GetObjectVersion" } else { "s3:GetObject" };
        let resource = format!("arn:aws:s3:::{bucket}/{key}");
        if !self.buckets.allows(caller, bucket, &found, action, &resource).await.map_err(s3_unreachable)? {
            return Err(LambdaError::code_access_denied(bucket, key));
        }
        Ok(found.owner)
    }
}

/// `DeadLetterConfig.TargetArn`: None if the request does not set it, `Some(None)` if it clears it (an empty ARN or
/// no `TargetArn`).
fn dead_letter_target(body: &Value) -> Result<Option<Option<String>>, LambdaError> {
    match body.get("DeadLetterConfig") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(config)) => {
            Ok(Some(config.get("TargetArn").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string)))
        }
        Some(_) => Err(LambdaError::invalid("DeadLetterConfig must be an object")),
    }
}
