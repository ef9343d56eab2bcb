//! The pure decision step of releases through published versions and an alias (`spec.alias`): (spec, status, what
//! was observed of the alias and versions, the verdict of a judgment, now) → what to do next. Like [`crate::plan`]
//! it asks for observations lazily and is called again after each one, so every rollout step is a decision that can
//! be tested as a table.
//!
//! The spec and status say where the release should be; the alias says where traffic is. During a rollout the
//! alias is the truth: a step whose alias move landed but whose status write did not is recognised from the alias
//! and never taken twice. Outside a rollout, the released version is the truth: an alias moved out of band is put
//! back, like code drift.

use std::time::Duration;

use crate::crd::{Analysis, LambdaDeployment, RETRY_ANNOTATION, ReleaseRecord, Rollout, RolloutState, Strategy};
use crate::plan::Observed;

/// Default hold of each step.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Lambda reports metrics by the minute: steps shorter than that are judged on the minute they fall in.
const MIN_INTERVAL: Duration = Duration::from_secs(2);
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Default invocations a step must see before its error rate counts.
pub const DEFAULT_MIN_INVOCATIONS: u32 = 10;
/// A held step (too little traffic, or a judgment that could not be made) is looked at again after this long at most.
const RECHECK: Duration = Duration::from_secs(30);
/// A judgment that cannot be made (CloudWatch failing or refusing) is retried for this many intervals; then the
/// new version is rolled back, since it cannot be kept on traffic unjudged.
const UNJUDGED_INTERVALS: u32 = 3;
/// Releases kept in `status.history`.
pub const HISTORY: usize = 10;
const MAX_CANARY_STEPS: usize = 10;
const MAX_ALARMS: usize = 100;
/// Lambda's limit on a synchronous invocation's payload.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// A validated release spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    pub alias: String,
    /// Percent of traffic on the new version at each step, increasing, each below 100; empty: all at once.
    pub weights: Vec<u32>,
    pub interval: Duration,
    pub alarms: Vec<String>,
    /// Percent.
    pub max_error_rate: Option<f64>,
    pub min_invocations: u32,
    pub smoke_test_payload: Option<String>,
}

/// Checks `spec.alias`, `spec.strategy` and `spec.analysis`; `None` when the resource does not use an alias.
pub fn validate(ld: &LambdaDeployment) -> Result<Option<Release>, String> {
    let spec = &ld.spec;
    let Some(alias) = &spec.alias else {
        for (field, set) in [("strategy", spec.strategy.is_some()), ("analysis", spec.analysis.is_some())] {
            if set {
                return Err(format!("spec.{field} needs spec.alias: traffic can only be shifted through an alias"));
            }
        }
        return Ok(None);
    };
    let alias_ok = !alias.is_empty()
        && alias.len() <= 128
        && alias.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !alias.bytes().all(|b| b.is_ascii_digit());
    if !alias_ok {
        return Err(format!(
            "spec.alias: {alias:?} is not an alias name (1-128 of A-Z, a-z, 0-9, '-', '_', not only digits)"
        ));
    }
    let (weights, interval) = strategy(spec.strategy.as_ref())?;
    let analysis = spec.analysis.clone().unwrap_or_default();
    check_analysis(&analysis)?;
    Ok(Some(Release {
        alias: alias.clone(),
        weights,
        interval,
        alarms: analysis.alarms,
        max_error_rate: analysis.max_error_rate,
        min_invocations: analysis.min_invocations.unwrap_or(DEFAULT_MIN_INVOCATIONS),
        smoke_test_payload: analysis.smoke_test_payload,
    }))
}

/// The weights and the interval a strategy describes.
fn strategy(strategy: Option<&Strategy>) -> Result<(Vec<u32>, Duration), String> {
    let Some(strategy) = strategy else { return Ok((Vec::new(), DEFAULT_INTERVAL)) };
    let interval = match &strategy.interval {
        Some(text) => parse_interval(text).map_err(|e| format!("spec.strategy.interval: {e}"))?,
        None => DEFAULT_INTERVAL,
    };
    let weights = match (&strategy.canary, strategy.linear) {
        (Some(_), Some(_)) => return Err("spec.strategy: set canary or linear, not both".into()),
        (Some(steps), None) => {
            if steps.is_empty() || steps.len() > MAX_CANARY_STEPS {
                return Err(format!("spec.strategy.canary: 1 to {MAX_CANARY_STEPS} weights, got {}", steps.len()));
            }
            if let Some(bad) = steps.iter().find(|w| !(1..=99).contains(*w)) {
                return Err(format!("spec.strategy.canary: {bad} is not a percent of traffic between 1 and 99"));
            }
            if steps.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(format!("spec.strategy.canary: weights must increase, got {steps:?}"));
            }
            steps.clone()
        }
        (None, Some(step)) => {
            if !(1..=50).contains(&step) {
                return Err(format!("spec.strategy.linear: {step} is not a percent step between 1 and 50"));
            }
            (1..).map(|i| i * step).take_while(|w| *w < 100).collect()
        }
        (None, None) if strategy.interval.is_some() => {
            return Err("spec.strategy.interval needs canary or linear: all at once has no steps".into());
        }
        (None, None) => Vec::new(),
    };
    Ok((weights, interval))
}

/// `30s`, `5m`, `1h30m`, `90s`: one or more number-unit pairs (h, m, s), within 10 s and 24 h.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let mut total = 0u64;
    let mut digits = String::new();
    let mut parts = 0;
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            'h' | 'm' | 's' if !digits.is_empty() && digits.len() <= 6 => {
                let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration"))?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                digits.clear();
                parts += 1;
            }
            _ => return Err(format!("{text:?} is not a duration like 30s, 5m or 1h30m")),
        }
    }
    if parts == 0 || !digits.is_empty() {
        return Err(format!("{text:?} is not a duration like 30s, 5m or 1h30m"));
    }
    let interval = Duration::from_secs(total);
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err(format!("{text:?} is outside 2s..24h"));
    }
    Ok(interval)
}

fn check_analysis(analysis: &Analysis) -> Result<(), String> {
    if analysis.alarms.len() > MAX_ALARMS {
        return Err(format!("spec.analysis.alarms: at most {MAX_ALARMS} alarms, got {}", analysis.alarms.len()));
    }
    if let Some(bad) = analysis.alarms.iter().find(|name| name.is_empty() || name.len() > 255) {
        return Err(format!("spec.analysis.alarms: {bad:?} is not an alarm name (1-255 characters)"));
    }
    if let Some(rate) = analysis.max_error_rate
        && !(0.0..=100.0).contains(&rate)
    {
        return Err(format!("spec.analysis.maxErrorRate: {rate} is not a percent between 0 and 100"));
    }
    if analysis.min_invocations.is_some_and(|n| n > 1_000_000) {
        return Err("spec.analysis.minInvocations: at most 1000000".into());
    }
    if let Some(payload) = &analysis.smoke_test_payload {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(format!("spec.analysis.smokeTestPayload: {} bytes, Lambda takes at most 6 MB", payload.len()));
        }
        serde_json::from_str::<serde_json::Value>(payload)
            .map_err(|e| format!("spec.analysis.smokeTestPayload is not JSON: {e}"))?;
    }
    Ok(())
}

/// The alias as GetFunction with the alias as qualifier shows it (GetFunction's own quota): its main version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasView {
    pub version: String,
    pub code_sha256: String,
}

/// The alias as GetAlias shows it: main version, the additional version's weight, RevisionId.
#[derive(Clone, Debug, PartialEq)]
pub struct AliasState {
    pub version: String,
    /// The additional version and its weight (0.0–1.0).
    pub additional: Option<(String, f64)>,
    pub revision_id: String,
}

/// What judged a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// Roll back, for this reason (the alarm, or the measured rate).
    Fail(String),
    /// Not enough traffic to judge yet: hold the step.
    Hold(String),
    /// The judgment could not be made (CloudWatch failed or refused).
    Unjudged(String),
}

/// Everything one release decision depends on.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub ld: &'a LambdaDeployment,
    pub release: &'a Release,
    /// The verified artifact's CodeSha256; `None` when there is no artifact (yet) for the commit.
    pub code_sha256: Option<&'a str>,
    /// The rollout as this invocation knows it (the status's, updated by each move).
    pub rollout: Option<&'a Rollout>,
    pub view: &'a Observed<AliasView>,
    pub detail: &'a Observed<AliasState>,
    /// A published version with the artifact's code: `Missing` when none is known (one must be built).
    pub candidate: &'a Observed<String>,
    /// The smoke test's result for the version about to get its first traffic: `Ok` or the function's error.
    pub smoke: Option<&'a Result<(), String>>,
    pub verdict: Option<&'a Verdict>,
    pub now: jiff::Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// GetFunction with the alias as qualifier.
    ObserveAlias,
    /// GetAlias: weights and RevisionId, before moving the alias or to see where a rollout stands.
    ObserveAliasDetail,
    /// Look for a published version with the artifact's code (the history's, checked to exist).
    FindVersion,
    /// Bring `$LATEST` to the artifact and publish it as a version.
    BuildVersion,
    /// Invoke `version` with the smoke-test payload.
    SmokeTest {
        version: String,
        payload: String,
    },
    /// Judge `version` by the alarms and its error rate since `since`.
    Judge {
        version: String,
        since: jiff::Timestamp,
    },
    /// Point the alias at `main` (with `additional` getting that percent), guarded by `revision_id`; creates the
    /// alias when there is none. Then the rollout is `rollout`, and `finished` goes to the history. `restores`:
    /// the alias had been moved out of band from the released version, which this puts back.
    Move {
        main: String,
        additional: Option<(String, u32)>,
        revision_id: Option<String>,
        rollout: Rollout,
        finished: Option<ReleaseRecord>,
        restores: bool,
    },
    /// Nothing to move: the rollout is now `rollout` (unchanged and not yet due, held, ended by what the alias
    /// says, or adopted from it), `finished` goes to the history, and `note` says why status and alias disagreed.
    Record {
        rollout: Rollout,
        finished: Option<ReleaseRecord>,
        note: Option<String>,
    },
    /// The alias sends everything to the artifact's version.
    InSync {
        version: String,
    },
    /// This commit was rolled back and not retried: nothing to do.
    StaysRolledBack,
    /// There is no artifact to release (and no rollout of another commit to take traffic from).
    NoArtifact,
    Failed(String),
}

/// The weight a rollout at `step` (1-based) gives the new version, or 100 past the last step.
fn weight_at(release: &Release, step: u32) -> u32 {
    release.weights.get(step as usize - 1).copied().unwrap_or(100)
}

fn at(now: jiff::Timestamp, later: Duration) -> String {
    now.checked_add(jiff::SignedDuration::try_from(later).unwrap_or_default()).unwrap_or(now).to_string()
}

fn due(rollout: &Rollout, now: jiff::Timestamp) -> bool {
    rollout.next_step_at.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()).is_none_or(|t| t <= now)
}

/// A rollout that has ended (in its state, for its reason), as the history records it.
pub fn finished_record(rollout: &Rollout, now: jiff::Timestamp) -> ReleaseRecord {
    finished(rollout, rollout.state, rollout.reason.clone(), now)
}

fn finished(rollout: &Rollout, outcome: RolloutState, reason: Option<String>, now: jiff::Timestamp) -> ReleaseRecord {
    ReleaseRecord {
        commit: rollout.commit.clone(),
        version: rollout.version.clone(),
        code_sha256: rollout.code_sha256.clone(),
        started_at: rollout.started_at.clone(),
        finished_at: now.to_string(),
        outcome,
        reason,
    }
}

pub fn decide(input: &Input) -> Decision {
    let (ld, release) = (input.ld, input.release);
    let view = match input.view {
        Observed::NotObserved => return Decision::ObserveAlias,
        Observed::Failed(reason) => return Decision::Failed(format!("cannot read alias {}: {reason}", release.alias)),
        Observed::Missing => None,
        Observed::Found(view) => Some(view),
    };
    if let Some(rollout) = input.rollout.filter(|r| r.state == RolloutState::Progressing) {
        return match input.code_sha256 {
            Some(code) if rollout.commit == ld.spec.commit && rollout.code_sha256 == code => progress(input, rollout),
            _ if rollout.commit == ld.spec.commit && input.code_sha256.is_none() => Decision::NoArtifact,
            _ => supersede(input, rollout),
        };
    }
    let Some(code) = input.code_sha256 else { return Decision::NoArtifact };
    let retry = ld.metadata.annotations.as_ref().and_then(|a| a.get(RETRY_ANNOTATION));
    if let Some(rollout) = input.rollout
        && rollout.state == RolloutState::RolledBack
        && rollout.commit == ld.spec.commit
        && rollout.code_sha256 == code
        && rollout.retry.as_ref() == retry
    {
        return Decision::StaysRolledBack;
    }
    if let Some(view) = view
        && view.code_sha256 == code
    {
        return Decision::InSync { version: view.version.clone() };
    }
    let candidate = match input.candidate {
        Observed::NotObserved => return Decision::FindVersion,
        Observed::Missing => return Decision::BuildVersion,
        Observed::Failed(reason) => return Decision::Failed(reason.clone()),
        Observed::Found(version) => version.clone(),
    };
    let detail = match (view, input.detail) {
        (None, _) => None,
        (Some(_), Observed::NotObserved) => return Decision::ObserveAliasDetail,
        (Some(_), Observed::Found(detail)) => Some(detail),
        (Some(_), Observed::Missing) => return Decision::ObserveAlias,
        (Some(_), Observed::Failed(reason)) => {
            return Decision::Failed(format!("cannot read alias {}: {reason}", release.alias));
        }
    };
    start(input, code, candidate, detail)
}

/// A release of `candidate` begins: straight to it when there is nothing to shift from, when it was released before
/// (a rollback by changing the commit), or without steps; else its first step, after the smoke test.
fn start(input: &Input, code: &str, candidate: String, detail: Option<&AliasState>) -> Decision {
    let (ld, release, now) = (input.ld, input.release, input.now);
    let status = ld.status.as_ref();
    let released_before =
        status.is_some_and(|s| s.history.iter().any(|h| h.version == candidate && h.outcome == RolloutState::Promoted));
    let rollout = |stable: Option<String>, weight, step, state, next: Option<String>| Rollout {
        commit: ld.spec.commit.clone(),
        code_sha256: code.to_string(),
        version: candidate.clone(),
        stable_version: stable,
        weight,
        step,
        state,
        started_at: now.to_string(),
        step_started_at: now.to_string(),
        next_step_at: next,
        reason: None,
        retry: None,
    };
    let Some(detail) = detail else {
        let promoted = rollout(None, 100, 0, RolloutState::Promoted, None);
        let record = finished(&promoted, RolloutState::Promoted, None, now);
        return Decision::Move {
            main: candidate.clone(),
            additional: None,
            revision_id: None,
            rollout: promoted,
            finished: Some(record),
            restores: false,
        };
    };
    // The alias was moved away from the version the status says it releases: put it back, no new release.
    if let Some(current) = status.and_then(|s| s.rollout.as_ref()).filter(|r| {
        r.state == RolloutState::Promoted
            && r.version == candidate
            && status.and_then(|s| s.version.as_ref()) == Some(&candidate)
    }) {
        return Decision::Move {
            main: candidate.clone(),
            additional: None,
            revision_id: Some(detail.revision_id.clone()),
            rollout: current.clone(),
            finished: None,
            restores: true,
        };
    }
    let stable = Some(detail.version.clone()).filter(|v| *v != candidate);
    if !released_before && let Some(payload) = &release.smoke_test_payload {
        match input.smoke {
            None => return Decision::SmokeTest { version: candidate.clone(), payload: payload.clone() },
            Some(Err(error)) => {
                let reason = format!("smoke test of version {candidate} failed: {error}");
                let mut failed = rollout(stable, 0, 0, RolloutState::RolledBack, None);
                failed.reason = Some(reason.clone());
                failed.retry = retry_of(ld);
                let record = finished(&failed, RolloutState::RolledBack, Some(reason), now);
                // No traffic was moved: the alias stays where it is.
                return Decision::Record { rollout: failed, finished: Some(record), note: None };
            }
            Some(Ok(())) => {}
        }
    }
    if released_before || release.weights.is_empty() || stable.is_none() {
        let promoted = rollout(stable, 100, 0, RolloutState::Promoted, None);
        let record = finished(&promoted, RolloutState::Promoted, None, now);
        return Decision::Move {
            main: candidate.clone(),
            additional: None,
            revision_id: Some(detail.revision_id.clone()),
            rollout: promoted,
            finished: Some(record),
            restores: false,
        };
    }
    let first = weight_at(release, 1);
    let progressing = rollout(stable.clone(), first, 1, RolloutState::Progressing, Some(at(now, release.interval)));
    Decision::Move {
        main: detail.version.clone(),
        additional: Some((candidate.clone(), first)),
        revision_id: Some(detail.revision_id.clone()),
        rollout: progressing,
        finished: None,
        restores: false,
    }
}

fn retry_of(ld: &LambdaDeployment) -> Option<String> {
    ld.metadata.annotations.as_ref().and_then(|a| a.get(RETRY_ANNOTATION)).cloned()
}

/// Where the alias says a rollout is: the weight on the new version, or `None` when the alias was moved outside
/// the rollout (to a version that is neither, or the new version's traffic taken away).
fn position(rollout: &Rollout, alias: &AliasState) -> Option<u32> {
    let stable = rollout.stable_version.as_deref();
    match &alias.additional {
        None if alias.version == rollout.version => Some(100),
        None if Some(alias.version.as_str()) == stable && rollout.weight == 0 => Some(0),
        Some((version, weight)) if *version == rollout.version && Some(alias.version.as_str()) == stable => {
            Some((weight * 100.0).round() as u32)
        }
        _ => None,
    }
}

fn progress(input: &Input, rollout: &Rollout) -> Decision {
    let (release, now) = (input.release, input.now);
    let detail = match input.detail {
        Observed::NotObserved => return Decision::ObserveAliasDetail,
        Observed::Found(detail) => detail,
        Observed::Missing => {
            return roll_back(input, rollout, None, format!("alias {} was deleted during the rollout", release.alias));
        }
        Observed::Failed(reason) => return Decision::Failed(format!("cannot read alias {}: {reason}", release.alias)),
    };
    let Some(weight) = position(rollout, detail) else {
        let reason = format!(
            "alias {} was changed outside the rollout (it sends traffic to {}{})",
            release.alias,
            detail.version,
            detail.additional.as_ref().map(|(v, w)| format!(" and {:.0}% to {v}", w * 100.0)).unwrap_or_default()
        );
        let back = ended(input, rollout, RolloutState::RolledBack, reason.clone());
        let record = finished(&back, RolloutState::RolledBack, Some(reason), now);
        return Decision::Record { rollout: back, finished: Some(record), note: None };
    };
    // The alias is the truth: a move whose status write was lost is not made again.
    if weight != rollout.weight {
        let mut adopted = rollout.clone();
        adopted.weight = weight;
        adopted.step = release.weights.iter().take_while(|w| **w <= weight).count() as u32;
        if weight == 100 {
            adopted.state = RolloutState::Promoted;
            adopted.next_step_at = None;
        } else {
            adopted.step_started_at = now.to_string();
            adopted.next_step_at = Some(at(now, release.interval));
        }
        let note = format!(
            "the alias gives version {} {weight}% of the traffic, the status said {}%: continuing from the alias",
            rollout.version, rollout.weight
        );
        let record = (weight == 100).then(|| finished(&adopted, RolloutState::Promoted, None, now));
        return Decision::Record { rollout: adopted, finished: record, note: Some(note) };
    }
    if !due(rollout, now) {
        return Decision::Record { rollout: rollout.clone(), finished: None, note: None };
    }
    let verdict = match input.verdict {
        None => {
            let since = rollout.step_started_at.parse().unwrap_or(now);
            return Decision::Judge { version: rollout.version.clone(), since };
        }
        Some(verdict) => verdict,
    };
    match verdict {
        Verdict::Fail(reason) => roll_back(input, rollout, Some(detail), reason.clone()),
        Verdict::Hold(reason) => hold(input, rollout, reason.clone(), RECHECK.min(release.interval)),
        Verdict::Unjudged(reason) => {
            let started = rollout.step_started_at.parse().unwrap_or(now);
            let unjudged_for = now.duration_since(started).unsigned_abs();
            if unjudged_for >= release.interval * (UNJUDGED_INTERVALS + 1) {
                let reason = format!("could not be judged for {} intervals: {reason}", UNJUDGED_INTERVALS);
                return roll_back(input, rollout, Some(detail), reason);
            }
            hold(input, rollout, format!("cannot judge yet: {reason}"), RECHECK.min(release.interval))
        }
        Verdict::Pass => {
            let next = weight_at(release, rollout.step + 1);
            let mut moved = rollout.clone();
            moved.step += 1;
            moved.weight = next;
            moved.step_started_at = now.to_string();
            moved.reason = None;
            if next == 100 {
                moved.state = RolloutState::Promoted;
                moved.next_step_at = None;
                let record = finished(&moved, RolloutState::Promoted, None, now);
                return Decision::Move {
                    main: rollout.version.clone(),
                    additional: None,
                    revision_id: Some(detail.revision_id.clone()),
                    rollout: moved,
                    finished: Some(record),
                    restores: false,
                };
            }
            moved.next_step_at = Some(at(now, release.interval));
            Decision::Move {
                main: detail.version.clone(),
                additional: Some((rollout.version.clone(), next)),
                revision_id: Some(detail.revision_id.clone()),
                rollout: moved,
                finished: None,
                restores: false,
            }
        }
    }
}

fn hold(input: &Input, rollout: &Rollout, reason: String, recheck: Duration) -> Decision {
    let mut held = rollout.clone();
    held.reason = Some(reason);
    held.next_step_at = Some(at(input.now, recheck));
    Decision::Record { rollout: held, finished: None, note: None }
}

/// A rollout that ends without a move (the alias already says so): its record for status and history.
fn ended(input: &Input, rollout: &Rollout, state: RolloutState, reason: String) -> Rollout {
    let mut ended = rollout.clone();
    ended.state = state;
    ended.reason = Some(reason);
    ended.next_step_at = None;
    ended.retry = retry_of(input.ld);
    ended
}

/// All traffic back to the stable version.
fn roll_back(input: &Input, rollout: &Rollout, detail: Option<&AliasState>, reason: String) -> Decision {
    let mut back = ended(input, rollout, RolloutState::RolledBack, reason.clone());
    back.weight = 0;
    let record = finished(&back, RolloutState::RolledBack, Some(reason), input.now);
    match (&rollout.stable_version, detail) {
        (Some(stable), Some(detail)) => Decision::Move {
            main: stable.clone(),
            additional: None,
            revision_id: Some(detail.revision_id.clone()),
            rollout: back,
            finished: Some(record),
            restores: false,
        },
        _ => Decision::Record { rollout: back, finished: Some(record), note: None },
    }
}

/// A newer commit replaces an unfinished rollout: its version gets no more traffic; the next decision starts the
/// new commit's release from the stable version.
fn supersede(input: &Input, rollout: &Rollout) -> Decision {
    let detail = match input.detail {
        Observed::NotObserved => return Decision::ObserveAliasDetail,
        Observed::Found(detail) => detail,
        Observed::Missing => return Decision::ObserveAlias,
        Observed::Failed(reason) => {
            return Decision::Failed(format!("cannot read alias {}: {reason}", input.release.alias));
        }
    };
    let reason = format!("superseded by commit {}", input.ld.spec.commit);
    let mut replaced = ended(input, rollout, RolloutState::Superseded, reason.clone());
    replaced.weight = 0;
    let record = finished(&replaced, RolloutState::Superseded, Some(reason), input.now);
    let stable = rollout.stable_version.clone().unwrap_or_else(|| detail.version.clone());
    Decision::Move {
        main: stable,
        additional: None,
        revision_id: Some(detail.revision_id.clone()),
        rollout: replaced,
        finished: Some(record),
        restores: false,
    }
}

#[cfg(test)]
mod tests;
