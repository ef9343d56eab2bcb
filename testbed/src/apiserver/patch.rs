//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902, incl. `test`) and the subset of strategic merge
//! patch kubectl sends for built-in types.

use serde_json::{Map, Value};

use super::errors::{ApiError, ApiResult};

/// RFC 7386.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Strategic merge patch for built-in types, approximated: lists are replaced (kubectl's built-in types that the
/// testbed serves only have atomic lists), `$patch`/`$deleteFromPrimitiveList` directives are honoured and the
/// ordering directives are dropped.
pub(crate) fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    match p.get("$patch").and_then(|v| v.as_str()) {
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        Some("replace") => {
            let mut replaced = p.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(gone)) = (t.get_mut(field), v.as_array()) {
                items.retain(|i| !gone.contains(i));
            }
        } else if k.starts_with('$') {
            continue;
        } else if v.is_null() {
            t.remove(k);
        } else {
            let slot = t.entry(k.clone()).or_insert(Value::Null);
            strategic_merge_patch(slot, v);
            if slot.is_null() {
                t.remove(k);
            }
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn pointer_tokens(path: &str) -> ApiResult<Vec<String>> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}: must start with '/'")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(422, "Invalid", message)
}

/// Splits a pointer into (parent container, last token).
fn parent_mut<'a>(doc: &'a mut Value, path: &str) -> ApiResult<(&'a mut Value, String)> {
    let mut tokens = pointer_tokens(path)?;
    let last = tokens.pop().ok_or_else(|| unprocessable("cannot operate on the document root".into()))?;
    let mut cur = doc;
    for t in &tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| unprocessable(format!("doc is missing path: \"{path}\": missing value")))?;
    }
    Ok((cur, last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> ApiResult<()> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            let idx = if last == "-" { a.len() } else { last.parse().map_err(|_| bad_index(path))? };
            if idx > a.len() {
                return Err(bad_index(path));
            }
            a.insert(idx, value);
        }
        _ => return Err(unprocessable(format!("doc is missing path: \"{path}\": missing value"))),
    }
    Ok(())
}

fn bad_index(path: &str) -> ApiError {
    unprocessable(format!("add operation does not apply: doc is missing path: \"{path}\": invalid index"))
}

fn remove(doc: &mut Value, path: &str) -> ApiResult<Value> {
    let (parent, last) = parent_mut(doc, path)?;
    let missing = || unprocessable(format!("doc is missing path: \"{path}\": missing value"));
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let idx: usize = last.parse().map_err(|_| missing())?;
            if idx < a.len() { Ok(a.remove(idx)) } else { Err(missing()) }
        }
        _ => Err(missing()),
    }
}

fn get<'a>(doc: &'a Value, path: &str) -> ApiResult<Option<&'a Value>> {
    let tokens = pointer_tokens(path)?;
    Ok(tokens.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }))
}

/// RFC 6902. A malformed patch is 400; an operation that does not apply (incl. a failed `test`) is 422.
pub(crate) fn json_patch(doc: &mut Value, patch: &Value) -> ApiResult<()> {
    let ops = patch.as_array().ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    for op in ops {
        let kind = op["op"].as_str().ok_or_else(|| ApiError::bad_request("json patch operation without \"op\""))?;
        let path =
            op["path"].as_str().ok_or_else(|| ApiError::bad_request(format!("{kind} operation without \"path\"")))?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| ApiError::bad_request(format!("{kind} operation without \"value\"")))
        };
        let from =
            || op["from"].as_str().ok_or_else(|| ApiError::bad_request(format!("{kind} operation without \"from\"")));
        match kind {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                if get(doc, path)?.is_none() {
                    return Err(unprocessable(format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    )));
                }
                remove(doc, path)?;
                add(doc, path, value()?)?;
            }
            "move" => {
                let v = remove(doc, from()?)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = get(doc, from()?)?.cloned().ok_or_else(|| {
                    unprocessable(format!("copy operation does not apply: doc is missing from path: {path}"))
                })?;
                add(doc, path, v)?;
            }
            "test" => {
                let want = value()?;
                if get(doc, path)? != Some(&want) {
                    return Err(unprocessable(format!("testing value {path} failed: test failed")));
                }
            }
            other => return Err(ApiError::bad_request(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}
