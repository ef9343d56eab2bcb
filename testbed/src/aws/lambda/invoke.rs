//! Invocations: which version one runs (an alias's weights pick, from a seeded generator) and whether it fails, as
//! markers in that version's zip bytes script it.

use super::Lambda;
use super::api::{LambdaError, target};
use super::model::{Function, State};
use crate::aws::accounts::Place;
use crate::aws::lock;

/// What a version's code does when invoked. Test zips store their entries uncompressed, so the markers are plain
/// text in the bytes: `testbed:invoke-error` (every invocation fails) or `testbed:error-rate=R` (each fails with
/// probability R, 0 ≤ R ≤ 1). Without a marker every invocation succeeds and answers with its payload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Behaviour {
    error_rate: f64,
}

const INVOKE_ERROR: &[u8] = b"testbed:invoke-error";
const ERROR_RATE: &[u8] = b"testbed:error-rate=";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Behaviour {
    pub(super) fn of(bytes: &[u8]) -> Behaviour {
        if find(bytes, INVOKE_ERROR).is_some() {
            return Behaviour { error_rate: 1.0 };
        }
        let rate = find(bytes, ERROR_RATE).and_then(|at| {
            let rest = &bytes[at + ERROR_RATE.len()..];
            let len = rest.iter().take_while(|b| b.is_ascii_digit() || **b == b'.').count();
            std::str::from_utf8(&rest[..len]).ok()?.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r))
        });
        Behaviour { error_rate: rate.unwrap_or(0.0) }
    }
}

/// One invocation as Lambda runs and reports it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Invocation {
    pub(crate) function: String,
    /// The qualifier the caller named (None: unqualified).
    pub(crate) qualifier: Option<String>,
    /// The qualifier is an alias (its metrics carry `ExecutedVersion`).
    pub(crate) through_alias: bool,
    /// `$LATEST` or the version number that ran.
    pub(crate) executed_version: String,
    /// The code failed (Lambda answers 200 with `X-Amz-Function-Error: Unhandled`).
    pub(crate) failed: bool,
}

impl Lambda {
    /// Runs one invocation of `raw` (name or ARN, maybe qualified) with the `Qualifier` parameter `qualifier`.
    pub(crate) fn invoke(&self, place: &Place, raw: &str, qualifier: Option<&str>) -> Result<Invocation, LambdaError> {
        let (name, qualifier) = target(raw, &qualifier_param(qualifier))?;
        self.with(place, &name, |f| {
            ensure_invocable(f)?;
            let mut rng = lock(&self.invocations);
            let (executed_version, through_alias) = match qualifier.as_deref() {
                Some(q) if f.aliases.contains_key(q) => {
                    let alias = &f.aliases[q];
                    let version = match alias.weights.iter().next() {
                        Some((version, weight)) if rng.f64() < *weight => version.clone(),
                        _ => alias.function_version.clone(),
                    };
                    (version, true)
                }
                Some(q) => (q.to_string(), false),
                None => ("$LATEST".to_string(), false),
            };
            let behaviour = behaviour_of(f, &executed_version, qualifier.as_deref())?;
            let failed = rng.f64() < behaviour.error_rate;
            Ok(Invocation {
                function: name.clone(),
                qualifier: qualifier.clone(),
                through_alias,
                executed_version,
                failed,
            })
        })
    }

    /// What `InvocationType: DryRun` checks: the function and qualifier exist and the function can be invoked.
    pub(crate) fn invocable(&self, place: &Place, raw: &str, qualifier: Option<&str>) -> Result<(), LambdaError> {
        let (name, qualifier) = target(raw, &qualifier_param(qualifier))?;
        self.with(place, &name, |f| {
            ensure_invocable(f)?;
            f.resolve(qualifier.as_deref()).map(|_| ())
        })
    }
}

fn qualifier_param(qualifier: Option<&str>) -> Vec<(String, String)> {
    qualifier.map(|q| ("Qualifier".to_string(), q.to_string())).into_iter().collect()
}

/// As AWS answers an invocation of a function that is still being created.
fn ensure_invocable(f: &Function) -> Result<(), LambdaError> {
    if f.latest.state == State::Pending {
        return Err(LambdaError::conflict(
            "The operation cannot be performed at this time. The function is currently in the following state: \
             Pending",
        ));
    }
    Ok(())
}

/// The code `version` runs; `$LATEST` runs the previous code while an update is InProgress, as AWS does.
fn behaviour_of(f: &Function, version: &str, named: Option<&str>) -> Result<Behaviour, LambdaError> {
    if version == "$LATEST" {
        return Ok(f.running.unwrap_or(f.latest.behaviour));
    }
    let not_found = || LambdaError::function_not_found(&f.arn(named));
    let n = version.parse::<u64>().map_err(|_| not_found())?;
    f.versions.get(&n).map(|v| v.behaviour).ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_in_the_code_script_its_failures() {
        assert_eq!(Behaviour::of(b"PK\x03\x04 plain code").error_rate, 0.0);
        assert_eq!(Behaviour::of(b"PK\x03\x04 testbed:invoke-error").error_rate, 1.0);
        assert_eq!(Behaviour::of(b"PK\x03\x04 testbed:error-rate=0.25\n").error_rate, 0.25);
        assert_eq!(Behaviour::of(b"testbed:error-rate=1.5").error_rate, 0.0, "out of range: no marker");
    }
}
