//! The release decisions, table by table.

use super::*;
use crate::crd::{LambdaDeploymentSpec, LambdaDeploymentStatus};

const COMMIT: &str = "8cc06dbec558fd94d9b40da92e347a34f454df61";
const OTHER: &str = "1111111111111111111111111111111111111111";

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_790_000_000).unwrap()
}

fn later(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_790_000_000 + seconds).unwrap()
}

fn ld(strategy: Option<Strategy>, analysis: Option<Analysis>) -> LambdaDeployment {
    let mut ld = LambdaDeployment::new(
        "orders",
        LambdaDeploymentSpec {
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:orders".into(),
            function_name: "orders".into(),
            commit: COMMIT.into(),
            alias: Some("live".into()),
            strategy,
            analysis,
            ..Default::default()
        },
    );
    ld.metadata.namespace = Some("team-a".into());
    ld
}

fn canary(steps: &[u32]) -> Option<Strategy> {
    Some(Strategy { canary: Some(steps.to_vec()), interval: Some("1m".into()), ..Default::default() })
}

fn invalid(spec: impl FnOnce(&mut LambdaDeploymentSpec)) -> String {
    let mut ld = ld(None, None);
    spec(&mut ld.spec);
    validate(&ld).unwrap_err()
}

#[test]
fn strategies_become_weights_and_bad_values_are_named() {
    let weights = |strategy| validate(&ld(strategy, None)).unwrap().unwrap().weights;
    assert_eq!(weights(None), Vec::<u32>::new());
    assert_eq!(weights(canary(&[10])), [10]);
    assert_eq!(weights(canary(&[5, 25, 50])), [5, 25, 50]);
    let linear = Some(Strategy { linear: Some(20), ..Default::default() });
    assert_eq!(weights(linear), [20, 40, 60, 80]);
    let set = |strategy: Strategy| move |spec: &mut LambdaDeploymentSpec| spec.strategy = Some(strategy);
    let cases: Vec<(Strategy, &str)> = vec![
        (Strategy { canary: Some(vec![]), ..Default::default() }, "spec.strategy.canary: 1 to 10 weights, got 0"),
        (
            Strategy { canary: Some(vec![0]), ..Default::default() },
            "spec.strategy.canary: 0 is not a percent of traffic between 1 and 99",
        ),
        (
            Strategy { canary: Some(vec![100]), ..Default::default() },
            "spec.strategy.canary: 100 is not a percent of traffic between 1 and 99",
        ),
        (
            Strategy { canary: Some(vec![50, 20]), ..Default::default() },
            "spec.strategy.canary: weights must increase, got [50, 20]",
        ),
        (
            Strategy { linear: Some(0), ..Default::default() },
            "spec.strategy.linear: 0 is not a percent step between 1 and 50",
        ),
        (
            Strategy { linear: Some(60), ..Default::default() },
            "spec.strategy.linear: 60 is not a percent step between 1 and 50",
        ),
        (
            Strategy { canary: Some(vec![10]), linear: Some(10), ..Default::default() },
            "spec.strategy: set canary or linear, not both",
        ),
        (
            Strategy { interval: Some("5m".into()), ..Default::default() },
            "spec.strategy.interval needs canary or linear: all at once has no steps",
        ),
        (
            Strategy { canary: Some(vec![10]), interval: Some("5".into()), ..Default::default() },
            "spec.strategy.interval: \"5\" is not a duration like 30s, 5m or 1h30m",
        ),
        (
            Strategy { canary: Some(vec![10]), interval: Some("1s".into()), ..Default::default() },
            "spec.strategy.interval: \"1s\" is outside 2s..24h",
        ),
        (
            Strategy { canary: Some(vec![10]), interval: Some("25h".into()), ..Default::default() },
            "spec.strategy.interval: \"25h\" is outside 2s..24h",
        ),
    ];
    for (strategy, message) in cases {
        assert_eq!(invalid(set(strategy)), message);
    }
}

#[test]
fn intervals_read_hours_minutes_and_seconds() {
    assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_interval("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
    assert!(parse_interval("m5").is_err() && parse_interval("").is_err() && parse_interval("1d").is_err());
}

#[test]
fn analysis_and_alias_values_are_checked_with_the_field_named() {
    let with = |analysis: Analysis| move |spec: &mut LambdaDeploymentSpec| spec.analysis = Some(analysis);
    assert_eq!(
        invalid(with(Analysis { max_error_rate: Some(101.0), ..Default::default() })),
        "spec.analysis.maxErrorRate: 101 is not a percent between 0 and 100"
    );
    assert!(
        invalid(with(Analysis { smoke_test_payload: Some("{not json".into()), ..Default::default() }))
            .starts_with("spec.analysis.smokeTestPayload is not JSON: ")
    );
    assert_eq!(
        invalid(with(Analysis { alarms: vec![String::new()], ..Default::default() })),
        "spec.analysis.alarms: \"\" is not an alarm name (1-255 characters)"
    );
    assert_eq!(
        invalid(|spec| spec.alias = Some("42".into())),
        "spec.alias: \"42\" is not an alias name (1-128 of A-Z, a-z, 0-9, '-', '_', not only digits)"
    );
    assert_eq!(
        invalid(|spec| {
            spec.alias = None;
            spec.strategy = canary(&[10]);
        }),
        "spec.strategy needs spec.alias: traffic can only be shifted through an alias"
    );
}

/// One decision's situation.
struct Case {
    name: &'static str,
    ld: LambdaDeployment,
    rollout: Option<Rollout>,
    view: Observed<AliasView>,
    detail: Observed<AliasState>,
    candidate: Observed<String>,
    smoke: Option<Result<(), String>>,
    verdict: Option<Verdict>,
    now: jiff::Timestamp,
    expect: Decision,
}

fn view(version: &str, code: &str) -> Observed<AliasView> {
    Observed::Found(AliasView { version: version.into(), code_sha256: code.into() })
}

fn alias(version: &str, additional: Option<(&str, f64)>) -> Observed<AliasState> {
    Observed::Found(AliasState {
        version: version.into(),
        additional: additional.map(|(v, w)| (v.into(), w)),
        revision_id: "rev".into(),
    })
}

fn case(name: &'static str, expect: Decision) -> Case {
    Case {
        name,
        ld: ld(canary(&[10, 50]), None),
        rollout: None,
        view: view("2", "OLD"),
        detail: Observed::NotObserved,
        candidate: Observed::NotObserved,
        smoke: None,
        verdict: None,
        now: now(),
        expect,
    }
}

/// A rollout of version 3 (code NEW) over stable 2, at `weight` after `step` steps, started at `now()`.
fn progressing(step: u32, weight: u32) -> Rollout {
    Rollout {
        commit: COMMIT.into(),
        code_sha256: "NEW".into(),
        version: "3".into(),
        stable_version: Some("2".into()),
        weight,
        step,
        state: RolloutState::Progressing,
        started_at: now().to_string(),
        step_started_at: now().to_string(),
        next_step_at: Some(later(60).to_string()),
        reason: None,
        retry: None,
    }
}

fn record(rollout: &Rollout, outcome: RolloutState, reason: Option<&str>, at: jiff::Timestamp) -> ReleaseRecord {
    finished(rollout, outcome, reason.map(String::from), at)
}

fn moved(main: &str, additional: Option<(&str, u32)>, rollout: Rollout, done: Option<ReleaseRecord>) -> Decision {
    Decision::Move {
        main: main.into(),
        additional: additional.map(|(v, w)| (v.into(), w)),
        revision_id: Some("rev".into()),
        rollout,
        finished: done,
        restores: false,
    }
}

#[test]
fn release_decisions_table() {
    let start = progressing(1, 10);
    let promoted =
        Rollout { step: 0, weight: 100, state: RolloutState::Promoted, next_step_at: None, ..progressing(0, 100) };
    let at_once = Rollout { stable_version: Some("2".into()), ..promoted.clone() };
    let step2 = Rollout {
        step: 2,
        weight: 50,
        step_started_at: later(61).to_string(),
        next_step_at: Some(later(121).to_string()),
        ..start.clone()
    };
    let done = Rollout {
        step: 3,
        weight: 100,
        state: RolloutState::Promoted,
        step_started_at: later(121).to_string(),
        next_step_at: None,
        ..step2.clone()
    };
    let rolled_back = |reason: &str| Rollout {
        weight: 0,
        state: RolloutState::RolledBack,
        next_step_at: None,
        reason: Some(reason.into()),
        ..start.clone()
    };
    let held = |reason: &str| Rollout {
        reason: Some(reason.into()),
        next_step_at: Some(later(91).to_string()),
        ..start.clone()
    };
    let released_before = {
        let mut ld = ld(canary(&[10, 50]), None);
        ld.status = Some(LambdaDeploymentStatus {
            history: vec![record(&promoted, RolloutState::Promoted, None, now())],
            ..Default::default()
        });
        ld
    };
    let drifted = {
        let mut ld = ld(canary(&[10, 50]), None);
        ld.status = Some(LambdaDeploymentStatus {
            version: Some("3".into()),
            rollout: Some(promoted.clone()),
            ..Default::default()
        });
        ld
    };
    let smoke = ld(canary(&[10, 50]), Some(Analysis { smoke_test_payload: Some("{}".into()), ..Default::default() }));
    let retried = |value: &str| {
        let mut ld = ld(canary(&[10, 50]), None);
        ld.metadata.annotations = Some([(RETRY_ANNOTATION.to_string(), value.to_string())].into());
        ld
    };
    let previous = Rollout { commit: OTHER.into(), code_sha256: "OTHER".into(), ..progressing(1, 10) };
    let back = rolled_back("alarm errors is in ALARM");
    let cases = vec![
        Case { view: Observed::NotObserved, ..case("the alias is looked at first", Decision::ObserveAlias) },
        Case {
            view: view("3", "NEW"),
            ..case("an alias already on the artifact's code is in sync", Decision::InSync { version: "3".into() })
        },
        case("a published version with the artifact's code is looked for", Decision::FindVersion),
        Case { candidate: Observed::Missing, ..case("without one, a version is built", Decision::BuildVersion) },
        Case {
            view: Observed::Missing,
            candidate: Observed::Found("3".into()),
            ..case(
                "a missing alias is created on the version, all at once",
                Decision::Move {
                    main: "3".into(),
                    additional: None,
                    revision_id: None,
                    rollout: Rollout { stable_version: None, ..promoted.clone() },
                    finished: Some(record(
                        &Rollout { stable_version: None, ..promoted.clone() },
                        RolloutState::Promoted,
                        None,
                        now(),
                    )),
                    restores: false,
                },
            )
        },
        Case {
            candidate: Observed::Found("3".into()),
            ..case("moving needs the alias's weights and revision", Decision::ObserveAliasDetail)
        },
        Case {
            candidate: Observed::Found("3".into()),
            detail: alias("2", None),
            ..case(
                "a canary's first step gives the new version its first weight",
                moved("2", Some(("3", 10)), start.clone(), None),
            )
        },
        Case {
            ld: ld(None, None),
            candidate: Observed::Found("3".into()),
            detail: alias("2", None),
            ..case(
                "without steps the alias moves at once",
                moved("3", None, at_once.clone(), Some(record(&at_once, RolloutState::Promoted, None, now()))),
            )
        },
        Case {
            ld: smoke.clone(),
            candidate: Observed::Found("3".into()),
            detail: alias("2", None),
            ..case(
                "the smoke test runs before any traffic moves",
                Decision::SmokeTest { version: "3".into(), payload: "{}".into() },
            )
        },
        Case {
            ld: smoke.clone(),
            candidate: Observed::Found("3".into()),
            detail: alias("2", None),
            smoke: Some(Ok(())),
            ..case("a passed smoke test lets the first step happen", moved("2", Some(("3", 10)), start.clone(), None))
        },
        Case {
            ld: smoke.clone(),
            candidate: Observed::Found("3".into()),
            detail: alias("2", None),
            smoke: Some(Err("Unhandled: boom".into())),
            ..case("a failed smoke test rolls back with no traffic moved", {
                let failed = Rollout {
                    weight: 0,
                    step: 0,
                    state: RolloutState::RolledBack,
                    next_step_at: None,
                    reason: Some("smoke test of version 3 failed: Unhandled: boom".into()),
                    ..start.clone()
                };
                Decision::Record {
                    rollout: failed.clone(),
                    finished: Some(record(&failed, RolloutState::RolledBack, failed.reason.as_deref(), now())),
                    note: None,
                }
            })
        },
        Case {
            ld: released_before,
            candidate: Observed::Found("3".into()),
            detail: alias("2", None),
            ..case(
                "a version released before is released again at once: a rollback by commit",
                moved("3", None, at_once.clone(), Some(record(&at_once, RolloutState::Promoted, None, now()))),
            )
        },
        Case {
            ld: drifted,
            candidate: Observed::Found("3".into()),
            detail: alias("2", None),
            ..case(
                "an alias moved off the released version is put back",
                Decision::Move {
                    main: "3".into(),
                    additional: None,
                    revision_id: Some("rev".into()),
                    rollout: promoted.clone(),
                    finished: None,
                    restores: true,
                },
            )
        },
        Case {
            rollout: Some(start.clone()),
            view: view("2", "OLD"),
            ..case("a rollout in progress needs the alias's weights", Decision::ObserveAliasDetail)
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("2", Some(("3", 0.1))),
            now: later(30),
            ..case(
                "a step not yet due is left as it is",
                Decision::Record { rollout: start.clone(), finished: None, note: None },
            )
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("2", Some(("3", 0.1))),
            now: later(61),
            ..case("a due step is judged on its window", Decision::Judge { version: "3".into(), since: now() })
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("2", Some(("3", 0.1))),
            now: later(61),
            verdict: Some(Verdict::Pass),
            ..case("a passed step moves to the next weight", moved("2", Some(("3", 50)), step2.clone(), None))
        },
        Case {
            rollout: Some(step2.clone()),
            detail: alias("2", Some(("3", 0.5))),
            now: later(121),
            verdict: Some(Verdict::Pass),
            ..case(
                "a passed last step promotes",
                moved("3", None, done.clone(), Some(record(&done, RolloutState::Promoted, None, later(121)))),
            )
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("2", Some(("3", 0.1))),
            now: later(61),
            verdict: Some(Verdict::Fail("alarm errors is in ALARM".into())),
            ..case(
                "a failed step rolls all traffic back to the stable version",
                moved(
                    "2",
                    None,
                    back.clone(),
                    Some(record(&back, RolloutState::RolledBack, back.reason.as_deref(), later(61))),
                ),
            )
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("2", Some(("3", 0.1))),
            now: later(61),
            verdict: Some(Verdict::Hold("3 of 10 invocations".into())),
            ..case(
                "too little traffic holds the step and looks again soon",
                Decision::Record { rollout: held("3 of 10 invocations"), finished: None, note: None },
            )
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("2", Some(("3", 0.1))),
            now: later(61),
            verdict: Some(Verdict::Unjudged("GetMetricData: AccessDenied".into())),
            ..case(
                "a judgment that cannot be made holds the step",
                Decision::Record {
                    rollout: held("cannot judge yet: GetMetricData: AccessDenied"),
                    finished: None,
                    note: None,
                },
            )
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("2", Some(("3", 0.1))),
            now: later(240),
            verdict: Some(Verdict::Unjudged("GetMetricData: AccessDenied".into())),
            ..case("a version unjudged for three intervals is rolled back", {
                let back = rolled_back("could not be judged for 3 intervals: GetMetricData: AccessDenied");
                moved(
                    "2",
                    None,
                    back.clone(),
                    Some(record(&back, RolloutState::RolledBack, back.reason.as_deref(), later(240))),
                )
            })
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("2", Some(("3", 0.5))),
            now: later(10),
            ..case(
                "the alias is the truth: a step whose status was lost is not taken again",
                Decision::Record {
                    rollout: Rollout {
                        step: 2,
                        weight: 50,
                        step_started_at: later(10).to_string(),
                        next_step_at: Some(later(70).to_string()),
                        ..start.clone()
                    },
                    finished: None,
                    note: Some(
                        "the alias gives version 3 50% of the traffic, the status said 10%: continuing from the alias"
                            .into(),
                    ),
                },
            )
        },
        Case {
            rollout: Some(start.clone()),
            detail: alias("5", None),
            now: later(10),
            ..case("an alias moved elsewhere during the rollout ends it", {
                let ended = Rollout {
                    state: RolloutState::RolledBack,
                    next_step_at: None,
                    reason: Some("alias live was changed outside the rollout (it sends traffic to 5)".into()),
                    ..start.clone()
                };
                Decision::Record {
                    rollout: ended.clone(),
                    finished: Some(record(&ended, RolloutState::RolledBack, ended.reason.as_deref(), later(10))),
                    note: None,
                }
            })
        },
        Case {
            rollout: Some(previous.clone()),
            detail: alias("2", Some(("3", 0.1))),
            ..case("a new commit supersedes the rollout: its traffic goes back to the stable version", {
                let replaced = Rollout {
                    weight: 0,
                    state: RolloutState::Superseded,
                    next_step_at: None,
                    reason: Some(format!("superseded by commit {COMMIT}")),
                    ..previous.clone()
                };
                moved(
                    "2",
                    None,
                    replaced.clone(),
                    Some(record(&replaced, RolloutState::Superseded, replaced.reason.as_deref(), now())),
                )
            })
        },
        Case {
            rollout: Some(Rollout { retry: None, ..back.clone() }),
            ..case("a rolled-back commit is not released again", Decision::StaysRolledBack)
        },
        Case {
            ld: retried("2"),
            rollout: Some(Rollout { retry: Some("1".into()), ..back.clone() }),
            ..case("a new retry annotation releases it again", Decision::FindVersion)
        },
    ];
    for c in cases {
        let release = validate(&c.ld).unwrap().unwrap();
        let input = Input {
            ld: &c.ld,
            release: &release,
            code_sha256: Some("NEW"),
            rollout: c.rollout.as_ref().or(c.ld.status.as_ref().and_then(|s| s.rollout.as_ref())),
            view: &c.view,
            detail: &c.detail,
            candidate: &c.candidate,
            smoke: c.smoke.as_ref(),
            verdict: c.verdict.as_ref(),
            now: c.now,
        };
        assert_eq!(decide(&input), c.expect, "case: {}", c.name);
    }
}
