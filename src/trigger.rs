//! What woke the deployer: the invocation payload decoded into a [`Trigger`].
//!
//! Recognised payloads (AWS's documented shapes):
//! - S3 event notification (`{"Records": [{"eventSource": "aws:s3", ...}]}`): every `ObjectCreated:*` record is
//!   an artifact upload; other records (e.g. `ObjectRemoved:*`) are skipped. Keys arrive URL-encoded with `+` for
//!   space and are decoded here.
//! - EventBridge `Object Created` from `aws.s3`: one upload; the key is raw (not encoded). Other `aws.s3`
//!   detail-types are skipped.
//! - EventBridge `Scheduled Event` from `aws.events`: a full sweep.
//! - Direct invoke: `{"action": "sweep"}`, or `{"action": "plan"}` with optional `namespace` and `name`.
//! - SQS messages from the deployer's own rollout queue (`{"Records": [{"eventSource": "aws:sqs", "body": ...}]}`):
//!   each body names a LambdaDeployment whose rollout step is due ([`crate::wakeup::Wakeup`]).
//!
//! Anything else is [`Error::Payload`], non-retryable, naming what was received without echoing large input.
//!
//! Decoded by hand rather than with `aws_lambda_events`' types: the deployer reads a few fields per shape, while the
//! typed records require and check fields it never reads (an S3 record's `eventTime` as a date, `userIdentity`,
//! `requestParameters`; an SQS record's `attributes`), so minimal emulator records and harmless oddities would be
//! refused. Tried: the typed version was longer, not shorter, and pulled in chrono and serde_with. The tests below pin
//! what it would have changed.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::Error;
use crate::key::quoted;

/// How many top-level keys an error message lists before saying "and N more".
const MAX_LISTED_KEYS: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Artifact uploads (S3 notification: all ObjectCreated records; EventBridge Object Created: one). Keys decoded.
    Artifacts(Vec<ArtifactEvent>),
    /// Full reconcile of every LD (EventBridge Scheduled Event, or `{"action":"sweep"}`).
    Sweep { source: SweepSource },
    /// Dry run: decide and report, change nothing. `name` without `namespace` means that name in every namespace.
    Plan { namespace: Option<String>, name: Option<String> },
    /// Rollout steps due (the deployer's own SQS messages).
    Wakeups(Vec<crate::wakeup::Wakeup>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepSource {
    Schedule,
    Direct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactSource {
    S3Notification,
    EventBridge,
}

/// One uploaded object, as the event describes it. The key is the object's real key (already decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactEvent {
    pub bucket: String,
    pub key: String,
    /// Present when the bucket is versioned.
    pub version_id: Option<String>,
    pub source: ArtifactSource,
}

impl Trigger {
    /// The trigger's name in the invocation summary and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Artifacts(_) => "artifact",
            Trigger::Sweep { source: SweepSource::Schedule } => "schedule",
            Trigger::Sweep { source: SweepSource::Direct } => "sweep",
            Trigger::Plan { .. } => "plan",
            Trigger::Wakeups(_) => "wakeup",
        }
    }
}

/// Decodes raw invocation bytes (what the fuzz target and fixture tests feed); invalid JSON is a payload error.
pub fn decode_json(bytes: &[u8]) -> Result<Trigger, Error> {
    let payload: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::Payload(format!("payload is not valid JSON: {e}")))?;
    decode(&payload)
}

/// Decodes an invocation payload into what the deployer should do.
pub fn decode(payload: &Value) -> Result<Trigger, Error> {
    let Some(object) = payload.as_object() else {
        return Err(Error::Payload(format!("expected a JSON object, got {}", json_type(payload))));
    };
    if let Some(records) = object.get("Records") {
        return decode_s3_notification(records);
    }
    if object.contains_key("source") || object.contains_key("detail-type") {
        return decode_eventbridge(object);
    }
    if let Some(action) = object.get("action") {
        return decode_direct(action, object);
    }
    Err(Error::Payload(format!(
        "expected an S3 notification (\"Records\"), an EventBridge event (\"source\", \"detail-type\") or a direct \
         invoke (\"action\"); got {}",
        describe_keys(object)
    )))
}

fn decode_s3_notification(records: &Value) -> Result<Trigger, Error> {
    let Some(records) = records.as_array() else {
        return Err(Error::Payload(format!("\"Records\" is {}, expected an array", json_type(records))));
    };
    if records.is_empty() {
        return Err(Error::Payload("S3 notification has an empty \"Records\" array".into()));
    }
    if records.first().and_then(|r| r.get("eventSource")).and_then(Value::as_str) == Some("aws:sqs") {
        return decode_wakeups(records);
    }
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for (index, record) in records.iter().enumerate() {
        match decode_s3_record(record) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {}
            Err(problem) => problems.push(format!("Records[{index}]: {problem}")),
        }
    }
    if events.is_empty()
        && let Some(first) = problems.first()
    {
        return Err(Error::Payload(format!("{first}{}", more_unusable(problems.len()))));
    }
    for problem in &problems {
        tracing::warn!(problem = %problem, "skipped an unusable S3 notification record");
    }
    Ok(Trigger::Artifacts(events))
}

/// `Ok(None)`: a well-formed record that is not an upload. `Err`: a record that cannot be used, with the reason.
fn decode_s3_record(record: &Value) -> Result<Option<ArtifactEvent>, String> {
    let Some(record) = record.as_object() else {
        return Err(format!("record is {}, expected an object", json_type(record)));
    };
    // SNS spells it `EventSource`; naming it tells the operator which subscription is misrouted.
    let source = record.get("eventSource").or_else(|| record.get("EventSource"));
    match source.and_then(Value::as_str) {
        Some("aws:s3") => {}
        Some(other) => return Err(format!("eventSource is {}, expected \"aws:s3\"", quoted(other))),
        None => return Err(format!("record has no eventSource; it has {}", describe_keys(record))),
    }
    let event_name = string_at(record, &["eventName"])?;
    // S3 sends `ObjectCreated:Put`; the `s3:` form is the notification-configuration spelling some emulators send.
    if !event_name.trim_start_matches("s3:").starts_with("ObjectCreated:") {
        tracing::info!(event_name = %quoted(event_name), "skipped an S3 record that is not an upload");
        return Ok(None);
    }
    let bucket = string_at(record, &["s3", "bucket", "name"])?;
    let encoded_key = string_at(record, &["s3", "object", "key"])?;
    let key = decode_s3_key(encoded_key)?;
    let version_id = optional_string_at(record, &["s3", "object", "versionId"])?;
    Ok(Some(ArtifactEvent { bucket: bucket.to_owned(), key, version_id, source: ArtifactSource::S3Notification }))
}

/// The rollout queue's messages: each body a [`crate::wakeup::Wakeup`]. A record that is not one is skipped with
/// a warning (it cannot become one by retrying); a batch with no usable record is an error.
fn decode_wakeups(records: &[Value]) -> Result<Trigger, Error> {
    let mut wakeups = Vec::new();
    let mut problems = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let decoded = record
            .as_object()
            .ok_or_else(|| format!("record is {}, expected an object", json_type(record)))
            .and_then(|record| match record.get("eventSource").and_then(Value::as_str) {
                Some("aws:sqs") => string_at(record, &["body"]).map(str::to_owned),
                other => {
                    Err(format!("eventSource is {}, expected \"aws:sqs\"", other.map_or("(missing)".into(), quoted)))
                }
            })
            .and_then(|body| {
                let wakeup = serde_json::from_str::<crate::wakeup::Wakeup>(&body)
                    .map_err(|e| format!("body is not a rollout wake-up: {e}"))?;
                if wakeup.action != "advance" {
                    return Err(format!("action {} is not \"advance\"", quoted(&wakeup.action)));
                }
                for (field, value) in [("namespace", &wakeup.namespace), ("name", &wakeup.name)] {
                    object_name(value).map_err(|what| format!("{field} {what}"))?;
                }
                wakeup.due_at().ok_or_else(|| format!("due {} is not an RFC 3339 time", quoted(&wakeup.due)))?;
                Ok(wakeup)
            });
        match decoded {
            Ok(wakeup) => wakeups.push(wakeup),
            Err(problem) => problems.push(format!("Records[{index}]: {problem}")),
        }
    }
    if wakeups.is_empty()
        && let Some(first) = problems.first()
    {
        return Err(Error::Payload(format!("{first}{}", more_unusable(problems.len()))));
    }
    for problem in &problems {
        tracing::warn!(problem = %problem, "skipped an unusable SQS record");
    }
    Ok(Trigger::Wakeups(wakeups))
}

/// ` (and N more unusable records)` after the first of `problems` problems.
fn more_unusable(problems: usize) -> String {
    match problems {
        0 | 1 => String::new(),
        n => format!(" (and {} more unusable records)", n - 1),
    }
}

/// S3 notification keys are form-encoded: `+` is a space (a real `+` arrives as `%2B`), then %-escapes.
fn decode_s3_key(encoded: &str) -> Result<String, String> {
    let spaced = encoded.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| format!("s3.object.key {} is not valid UTF-8 once URL-decoded", quoted(encoded)))
}

fn decode_eventbridge(event: &Map<String, Value>) -> Result<Trigger, Error> {
    let field = |name: &str| event.get(name).and_then(Value::as_str);
    match (field("source"), field("detail-type")) {
        (Some("aws.events"), Some("Scheduled Event")) => Ok(Trigger::Sweep { source: SweepSource::Schedule }),
        (Some("aws.s3"), Some("Object Created")) => {
            let event = decode_eventbridge_object_created(event).map_err(Error::Payload)?;
            Ok(Trigger::Artifacts(vec![event]))
        }
        (Some("aws.s3"), Some(other)) => {
            tracing::info!(detail_type = %quoted(other), "skipped an S3 EventBridge event that is not an upload");
            Ok(Trigger::Artifacts(Vec::new()))
        }
        (source, detail_type) => Err(Error::Payload(format!(
            "EventBridge event with source {} and detail-type {} is neither an S3 \"Object Created\" nor a \
             \"Scheduled Event\" from \"aws.events\"",
            source.map_or_else(|| "(missing)".to_owned(), quoted),
            detail_type.map_or_else(|| "(missing)".to_owned(), quoted),
        ))),
    }
}

fn decode_eventbridge_object_created(event: &Map<String, Value>) -> Result<ArtifactEvent, String> {
    let prefix = |problem: String| format!("S3 \"Object Created\" event: {problem}");
    let bucket = string_at(event, &["detail", "bucket", "name"]).map_err(prefix)?;
    // EventBridge carries the key as is: decoding it would corrupt keys containing `+` or `%`.
    let key = string_at(event, &["detail", "object", "key"]).map_err(prefix)?;
    let version_id = optional_string_at(event, &["detail", "object", "version-id"]).map_err(prefix)?;
    Ok(ArtifactEvent {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id,
        source: ArtifactSource::EventBridge,
    })
}

fn decode_direct(action: &Value, invoke: &Map<String, Value>) -> Result<Trigger, Error> {
    let (allowed, trigger): (&[&str], _) = match action.as_str() {
        Some("sweep") => (&["action"], Trigger::Sweep { source: SweepSource::Direct }),
        Some("plan") => (
            &["action", "namespace", "name"],
            Trigger::Plan {
                namespace: optional_object_name(invoke, "namespace")?,
                name: optional_object_name(invoke, "name")?,
            },
        ),
        Some(other) => {
            return Err(Error::Payload(format!(
                "direct invoke with unknown action {}; expected \"sweep\" or \"plan\"",
                quoted(other)
            )));
        }
        None => {
            return Err(Error::Payload(format!(
                "direct invoke \"action\" is {}, expected \"sweep\" or \"plan\"",
                json_type(action)
            )));
        }
    };
    // Refusing unknown fields catches typos (e.g. "namesapce") that would otherwise widen a plan to everything.
    let unknown: Vec<&String> = invoke.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
    if !unknown.is_empty() {
        return Err(Error::Payload(format!(
            "direct invoke {:?} does not take {}; it takes only {}",
            trigger.kind(),
            quoted_list(&unknown),
            allowed.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(trigger)
}

/// A namespace or name to scope a plan: a Kubernetes object name (lowercase RFC 1123, at most 253 characters).
fn optional_object_name(invoke: &Map<String, Value>, field: &str) -> Result<Option<String>, Error> {
    let Some(value) = invoke.get(field) else { return Ok(None) };
    let invalid = |what: String| Error::Payload(format!("direct invoke \"plan\": {field:?} {what}"));
    let Some(text) = value.as_str() else {
        return Err(invalid(format!("is {}, expected a string", json_type(value))));
    };
    object_name(text).map_err(invalid)?;
    Ok(Some(text.to_owned()))
}

/// A Kubernetes object name (lowercase RFC 1123, at most 253 characters), or what is wrong with it.
fn object_name(text: &str) -> Result<(), String> {
    let valid_chars = text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if text.is_empty() || text.len() > 253 || !valid_chars {
        return Err(format!("{} is not a Kubernetes object name (1-253 of a-z, 0-9, '-', '.')", quoted(text)));
    }
    Ok(())
}

/// The string at `path`, or a reason naming the path.
fn string_at<'a>(object: &'a Map<String, Value>, path: &[&str]) -> Result<&'a str, String> {
    match value_at(object, path) {
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(format!("{} is {}, expected a string", path.join("."), json_type(other))),
        None => Err(format!("{} is missing", path.join("."))),
    }
}

/// An optional string at `path`: absent, null and "" all mean none (S3 documents null for unversioned buckets).
fn optional_string_at(object: &Map<String, Value>, path: &[&str]) -> Result<Option<String>, String> {
    match value_at(object, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("{} is {}, expected a string", path.join("."), json_type(other))),
    }
}

fn value_at<'a>(object: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(object.get(*first)?, |value, step| value.get(step))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe_keys(object: &Map<String, Value>) -> String {
    if object.is_empty() {
        return "an empty object".into();
    }
    format!("an object with keys {}", quoted_list(&object.keys().collect::<Vec<_>>()))
}

/// `"a", "b" and 3 more` — bounded however many keys the input has.
fn quoted_list(keys: &[&String]) -> String {
    let shown: Vec<String> = keys.iter().take(MAX_LISTED_KEYS).map(|k| quoted(k)).collect();
    match keys.len().checked_sub(MAX_LISTED_KEYS) {
        Some(more) if more > 0 => format!("{} and {more} more", shown.join(", ")),
        _ => shown.join(", "),
    }
}

/// Only what the deployer reads is checked, and every problem names the record and the field.
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn payload_error(payload: Value) -> String {
        match decode(&payload) {
            Err(Error::Payload(message)) => message,
            other => panic!("expected a payload error, got {other:?}"),
        }
    }

    /// An S3 record with only the fields the deployer reads (emulators send no more).
    fn s3_record() -> Value {
        json!({
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "artifacts"}, "object": {"key": "orders-api/3c4e9a1.zip"}}
        })
    }

    fn s3_upload(version_id: Option<&str>) -> Trigger {
        Trigger::Artifacts(vec![ArtifactEvent {
            bucket: "artifacts".into(),
            key: "orders-api/3c4e9a1.zip".into(),
            version_id: version_id.map(Into::into),
            source: ArtifactSource::S3Notification,
        }])
    }

    fn object_created(detail: Value) -> Value {
        json!({"source": "aws.s3", "detail-type": "Object Created", "detail": detail})
    }

    fn sqs_record(body: Value) -> Value {
        json!({"eventSource": "aws:sqs", "body": body})
    }

    const WAKEUP: &str = r#"{"action":"advance","namespace":"team-a","name":"orders","due":"2026-12-02T14:05:00Z"}"#;

    #[test]
    fn an_s3_record_needs_only_the_fields_the_deployer_reads() {
        assert_eq!(decode(&json!({"Records": [s3_record()]})).unwrap(), s3_upload(None));
        let mut record = s3_record();
        record["eventName"] = json!("s3:ObjectCreated:Post");
        assert_eq!(decode(&json!({"Records": [record]})).unwrap(), s3_upload(None));
    }

    #[test]
    fn fields_the_deployer_does_not_read_are_not_checked() {
        let mut record = s3_record();
        record["eventTime"] = json!("yesterday");
        record["responseElements"] = json!({"x-amz-request-id": 7});
        record["s3"]["object"]["size"] = json!("large");
        assert_eq!(decode(&json!({"Records": [record]})).unwrap(), s3_upload(None));

        let mut event =
            object_created(json!({"bucket": {"name": "artifacts"}, "object": {"key": "k", "size": "large"}}));
        event["time"] = json!("yesterday");
        assert!(matches!(decode(&event), Ok(Trigger::Artifacts(events)) if events.len() == 1));

        let schedule = json!({"source": "aws.events", "detail-type": "Scheduled Event", "time": "yesterday"});
        assert_eq!(decode(&schedule).unwrap(), Trigger::Sweep { source: SweepSource::Schedule });

        let mut message = sqs_record(json!(WAKEUP));
        message["messageAttributes"] = json!("none");
        assert!(matches!(decode(&json!({"Records": [message]})), Ok(Trigger::Wakeups(w)) if w.len() == 1));
    }

    #[test]
    fn empty_and_null_version_ids_mean_unversioned() {
        for version_id in [json!(null), json!("")] {
            let mut record = s3_record();
            record["s3"]["object"]["versionId"] = version_id.clone();
            assert_eq!(decode(&json!({"Records": [record]})).unwrap(), s3_upload(None));
            let detail = json!({"bucket": {"name": "b"}, "object": {"key": "k", "version-id": version_id}});
            let Ok(Trigger::Artifacts(events)) = decode(&object_created(detail)) else { panic!("not decoded") };
            assert_eq!(events[0].version_id, None);
        }
        let mut record = s3_record();
        record["s3"]["object"]["versionId"] = json!("v1");
        assert_eq!(decode(&json!({"Records": [record]})).unwrap(), s3_upload(Some("v1")));
    }

    #[test]
    fn a_record_that_is_not_an_upload_is_skipped_whatever_else_it_holds() {
        let removal = json!({"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete", "s3": 7});
        assert_eq!(decode(&json!({"Records": [removal]})).unwrap(), Trigger::Artifacts(vec![]));
    }

    #[test]
    fn s3_record_problems_name_the_record_and_the_field() {
        let with = |path: &[&str], value: Value| {
            let mut record = s3_record();
            *path.iter().fold(&mut record, |value, step| &mut value[*step]) = value;
            // The removal is skipped, so the bad record is the one reported, by its index.
            let removal = json!({"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete"});
            payload_error(json!({"Records": [removal, record]}))
        };
        assert_eq!(
            with(&["s3", "object", "key"], json!(7)),
            "Records[1]: s3.object.key is a number, expected a string"
        );
        assert_eq!(with(&["s3", "bucket"], json!({})), "Records[1]: s3.bucket.name is missing");
        assert_eq!(with(&["s3"], json!(null)), "Records[1]: s3.bucket.name is missing");
        assert_eq!(
            with(&["s3", "object", "versionId"], json!([])),
            "Records[1]: s3.object.versionId is an array, expected a string"
        );
        assert_eq!(with(&["eventName"], json!(null)), "Records[1]: eventName is null, expected a string");
        assert_eq!(
            payload_error(json!({"Records": [7, {"EventSource": "aws:sns"}]})),
            "Records[0]: record is a number, expected an object (and 1 more unusable records)"
        );
    }

    #[test]
    fn object_created_problems_name_the_field() {
        assert_eq!(
            payload_error(object_created(json!({"object": {"key": "k"}}))),
            "S3 \"Object Created\" event: detail.bucket.name is missing"
        );
        assert_eq!(
            payload_error(object_created(json!({"bucket": {"name": "b"}, "object": {"key": 7}}))),
            "S3 \"Object Created\" event: detail.object.key is a number, expected a string"
        );
        assert_eq!(
            payload_error(object_created(json!({"bucket": {"name": "b"}, "object": {"key": "k", "version-id": 7}}))),
            "S3 \"Object Created\" event: detail.object.version-id is a number, expected a string"
        );
        assert_eq!(
            payload_error(json!({"source": "aws.s3"})),
            "EventBridge event with source \"aws.s3\" and detail-type (missing) is neither an S3 \"Object Created\" \
             nor a \"Scheduled Event\" from \"aws.events\""
        );
    }

    #[test]
    fn sqs_record_problems_name_the_record_and_the_field() {
        assert_eq!(
            payload_error(json!({"Records": [sqs_record(json!(7))]})),
            "Records[0]: body is a number, expected a string"
        );
        assert_eq!(payload_error(json!({"Records": [{"eventSource": "aws:sqs"}]})), "Records[0]: body is missing");
        let records =
            json!({"Records": [sqs_record(json!(WAKEUP)), {"eventSource": "aws:s3"}, sqs_record(json!("{}"))]});
        let Ok(Trigger::Wakeups(wakeups)) = decode(&records) else { panic!("the good record should be kept") };
        assert_eq!(wakeups.len(), 1);
        assert_eq!(
            payload_error(json!({"Records": [sqs_record(json!("{}")), {"body": WAKEUP}]})),
            "Records[0]: body is not a rollout wake-up: missing field `action` at line 1 column 2 (and 1 more unusable \
             records)"
        );
        let undated = WAKEUP.replace("2026-12-02T14:05:00Z", "tomorrow");
        assert_eq!(
            payload_error(json!({"Records": [sqs_record(json!(undated))]})),
            "Records[0]: due \"tomorrow\" is not an RFC 3339 time"
        );
    }
}
