//! Label selectors, field selectors and the small JSONPath subset CRDs use (printer columns, selectable fields).

use serde_json::Value;

use super::errors::{ApiError, ApiResult};
use super::store::ResourceDef;

#[derive(Debug, Clone, PartialEq)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
    Gt(i64),
    Lt(i64),
}

/// A parsed `labelSelector` (equality- and set-based requirements, ANDed).
#[derive(Debug, Clone, Default)]
pub(crate) struct LabelSelector(Vec<(String, LabelOp)>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut parts = vec![];
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

fn set_values(rest: &str, req: &str) -> ApiResult<Vec<String>> {
    let inner =
        rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(|| {
            ApiError::bad_request(format!("unable to parse requirement: found '{req}', expected: '('"))
        })?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = vec![];
        for req in split_top(s) {
            let bad = || ApiError::bad_request(format!("unable to parse requirement: invalid label selector: {req:?}"));
            let parsed = if let Some(key) = req.strip_prefix('!') {
                (key.trim().to_string(), LabelOp::NotExists)
            } else if let Some((k, rest)) = req.split_once(" notin ") {
                (k.trim().to_string(), LabelOp::NotIn(set_values(rest, &req)?))
            } else if let Some((k, rest)) = req.split_once(" in ") {
                (k.trim().to_string(), LabelOp::In(set_values(rest, &req)?))
            } else if let Some((k, v)) = req.split_once("!=") {
                (k.trim().to_string(), LabelOp::NotEq(v.trim().to_string()))
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                (k.trim().to_string(), LabelOp::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = req.split_once('>') {
                (k.trim().to_string(), LabelOp::Gt(v.trim().parse().map_err(|_| bad())?))
            } else if let Some((k, v)) = req.split_once('<') {
                (k.trim().to_string(), LabelOp::Lt(v.trim().parse().map_err(|_| bad())?))
            } else {
                (req.clone(), LabelOp::Exists)
            };
            if parsed.0.is_empty() || parsed.0.contains(' ') {
                return Err(bad());
            }
            reqs.push(parsed);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.0.iter().all(|(key, op)| {
            let v = labels.get(key).and_then(|v| v.as_str());
            match op {
                LabelOp::Eq(want) => v == Some(want),
                LabelOp::NotEq(want) => v != Some(want),
                LabelOp::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                LabelOp::NotIn(set) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
                LabelOp::Exists => v.is_some(),
                LabelOp::NotExists => v.is_none(),
                LabelOp::Gt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|x| x > *n),
                LabelOp::Lt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|x| x < *n),
            }
        })
    }
}

/// A parsed `fieldSelector`: `field=value`, `field==value`, `field!=value`, ANDed.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

impl FieldSelector {
    /// Parses and checks every field label against what the resource supports (unsupported → 400, like kube-apiserver).
    pub fn parse(s: &str, def: &ResourceDef) -> ApiResult<Self> {
        let mut reqs = vec![];
        for req in split_top(s) {
            let (field, eq, value) = if let Some((f, v)) = req.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{req}'")));
            };
            let field = canonical_field(def, field.trim())
                .ok_or_else(|| ApiError::bad_request(format!("field label not supported: {}", field.trim())))?;
            reqs.push((field, eq, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, want)| (field_string(obj, field) == *want) == *eq)
    }
}

/// The stored-form path of a supported field label, or None.
fn canonical_field(def: &ResourceDef, field: &str) -> Option<String> {
    if field == "metadata.name" || field == "metadata.namespace" {
        return Some(field.into());
    }
    if let Some(c) = &def.custom {
        return c.selectable_fields.iter().any(|f| f == field).then(|| field.to_string());
    }
    if def.is_event() {
        let core = if let Some(rest) = field.strip_prefix("regarding.") {
            format!("involvedObject.{rest}")
        } else if field == "reportingController" {
            "reportingComponent".into()
        } else {
            field.to_string()
        };
        return EVENT_FIELDS.contains(&core.as_str()).then_some(core);
    }
    if def.plural == "namespaces" && def.group.is_empty() && field == "status.phase" {
        return Some(field.into());
    }
    None
}

/// The value a field selector compares with: strings as-is, other scalars printed, absent → "".
fn field_string(obj: &Value, path: &str) -> String {
    let v = path.split('.').try_fold(obj, |cur, k| cur.get(k));
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    All,
    Filter { path: Vec<String>, eq: bool, value: Value },
}

/// The JSONPath subset used by CRD printer columns: `.a.b`, `['a']`, `[0]`, `[-1]`, `[*]`, `[?(@.type=="Ready")]`.
pub(crate) fn jsonpath(obj: &Value, expr: &str) -> Option<Vec<Value>> {
    let steps = parse_path(expr)?;
    let mut cur = vec![obj.clone()];
    for step in &steps {
        let mut next = vec![];
        for v in &cur {
            match step {
                Step::Key(k) => next.extend(v.get(k.as_str()).cloned()),
                Step::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)).cloned());
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter().cloned()),
                    Value::Object(m) => next.extend(m.values().cloned()),
                    _ => {}
                },
                Step::Filter { path, eq, value } => {
                    for item in v.as_array().into_iter().flatten() {
                        let got = path.iter().try_fold(item, |c, k| c.get(k.as_str()));
                        if got.is_some_and(|g| (g == value) == *eq) {
                            next.push(item.clone());
                        }
                    }
                }
            }
        }
        cur = next;
    }
    Some(cur)
}

fn parse_path(expr: &str) -> Option<Vec<Step>> {
    let e = expr.trim();
    let e = e.strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or(e);
    let e = e.strip_prefix('$').unwrap_or(e);
    let chars: Vec<char> = e.chars().collect();
    let mut steps = vec![];
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let key: String = chars[start..i].iter().collect();
                if key == "*" {
                    steps.push(Step::All);
                } else if !key.is_empty() {
                    steps.push(Step::Key(key));
                }
            }
            '[' => {
                let close = chars[i..].iter().position(|c| *c == ']')? + i;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                steps.push(if inner == "*" {
                    Step::All
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    parse_filter(f)?
                } else if let Some(q) = inner.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
                    Step::Key(q.to_string())
                } else {
                    Step::Index(inner.parse().ok()?)
                });
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

fn parse_filter(f: &str) -> Option<Step> {
    let (lhs, eq, rhs) = if let Some((l, r)) = f.split_once("!=") {
        (l, false, r)
    } else {
        f.split_once("==").map(|(l, r)| (l, true, r))?
    };
    let path = lhs.trim().strip_prefix("@.")?.split('.').map(String::from).collect();
    let rhs = rhs.trim();
    let value = if let Some(s) = rhs.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Value::String(s.into())
    } else if let Some(s) = rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Value::String(s.into())
    } else {
        serde_json::from_str(rhs).ok()?
    };
    Some(Step::Filter { path, eq, value })
}
