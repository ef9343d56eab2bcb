//! Multi-tenancy end to end: `ALLOWED_FUNCTION_ARNS` and `NAMESPACE_POLICY` decide which namespace may deploy to
//! which function, and a function owned by one LambdaDeployment is never taken over by another namespace's.

mod support;

use std::time::Duration;

use lambda_deployer::crd::Phase;
use lambda_deployer::deployer::Deployer;
use serde_json::json;
use support::{World, commit, function_arn};
use testbed::identity::ACCOUNT_ID;

/// Phase and message of one LD.
async fn status_of(world: &World, name: &str) -> (Option<Phase>, String) {
    let status = world.ld(name).await.status.unwrap_or_default();
    (status.phase, status.message.unwrap_or_default())
}

/// Lambda calls of any kind about `function`, made with the deployer's credentials.
fn deployer_lambda_calls(world: &World, function: &str) -> usize {
    let deployer_key = testbed::identity::AwsIdentity::deployer().access_key_id;
    let log = world.testbed.aws().calls();
    log.calls
        .iter()
        .filter(|c| c.service == "lambda" && c.function.as_deref() == Some(function))
        .filter(|c| c.access_key_id.as_deref() == Some(deployer_key.as_str()))
        .count()
}

#[tokio::test]
async fn namespace_policy_and_allowed_arns_let_each_namespace_deploy_only_its_own_functions() {
    let a = World::new("tenancy-a").await;
    let b = World::new("tenancy-b").await;
    let c = World::new("tenancy-c").await;
    let outside = World::new("outside-tenancy").await;
    let allowed = format!("arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:tenancy-*");
    let policy = format!(
        "tenancy-a=arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:tenancy-a-*;\
         tenancy-b=arn:aws:lambda:*:{ACCOUNT_ID}:function:tenancy-b-*|arn:aws:lambda:*:*:function:outside-*"
    );
    let deployer = a
        .deployer(&[
            ("WATCH_NAMESPACES", "tenancy-a,tenancy-b,tenancy-c"),
            ("ALLOWED_FUNCTION_ARNS", &allowed),
            ("NAMESPACE_POLICY", &policy),
        ])
        .await;
    let release = commit("tenancy");
    let (a_arn, a_fn, a_sha) = function_with_artifact(&a, "fn", &release).await;
    let (b_arn, b_fn, b_sha) = function_with_artifact(&b, "fn", &release).await;
    let (b_private_arn, b_private_fn, _) = function_with_artifact(&b, "private", &release).await;
    let (c_arn, c_fn, _) = function_with_artifact(&c, "fn", &release).await;
    let (outside_arn, outside_fn, _) = function_with_artifact(&outside, "fn", &release).await;

    a.apply_ld("own", &a_arn, &a_fn, &release).await;
    a.apply_ld("trespass", &b_private_arn, &b_private_fn, &release).await;
    b.apply_ld("own", &b_arn, &b_fn, &release).await;
    b.apply_ld("outside", &outside_arn, &outside_fn, &release).await;
    c.apply_ld("any", &c_arn, &c_fn, &release).await;

    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!((summary.deployed, summary.blocked), (2, 3), "{:?}", summary.errors);
    assert_eq!(a.code_sha256(&a_fn).await, a_sha);
    assert_eq!(b.code_sha256(&b_fn).await, b_sha);
    assert_eq!(status_of(&a, "own").await.0, Some(Phase::Deployed));
    assert_eq!(status_of(&b, "own").await.0, Some(Phase::Deployed));
    assert_eq!(
        status_of(&a, "trespass").await,
        (Some(Phase::Blocked), format!("namespace \"tenancy-a\" may not target {b_private_arn} (NAMESPACE_POLICY)"))
    );
    assert_eq!(
        status_of(&c, "any").await,
        (Some(Phase::Blocked), "namespace \"tenancy-c\" has no entry in NAMESPACE_POLICY".to_string())
    );
    // NAMESPACE_POLICY lets tenancy-b target outside-*, but ALLOWED_FUNCTION_ARNS is the outer fence.
    assert_eq!(
        status_of(&b, "outside").await,
        (Some(Phase::Blocked), format!("{outside_arn} is not in ALLOWED_FUNCTION_ARNS ({allowed})"))
    );

    // The upload event of the trespassing LD's artifact changes nothing either.
    let key = format!("{b_private_fn}/{release}.zip");
    let version = a.s3.head_object().bucket(testbed::identity::ARTIFACT_BUCKET).key(&key).send().await.unwrap();
    let event = a.s3_event(&key, version.version_id().unwrap_or_default());
    let summary = deployer.handle(&event, None).await.unwrap();
    assert_eq!((summary.considered, summary.deployed, summary.blocked), (1, 0, 1), "{summary:?}");
    for function in [&b_private_fn, &c_fn, &outside_fn] {
        assert_eq!(deployer_lambda_calls(&a, function), 0, "{function}: a Blocked target is never called");
    }
}

/// A function and its artifact for `release`, so nothing but policy stands between an LD and a deploy.
async fn function_with_artifact(world: &World, label: &str, release: &str) -> (String, String, String) {
    let arn = world.create_function(label, "initial").await;
    let name = world.function_name(label);
    let (_, sha) = world.upload(&format!("{name}/{release}.zip"), &format!("{name} release")).await;
    (arn, name, sha)
}

/// Sweeps and an artifact event for the rival's upload, each leaving the owner's code and update count untouched.
async fn assert_never_taken_over(
    deployers: &[&Deployer],
    rival: &World,
    owner: &World,
    function: &str,
    owner_sha: &str,
) {
    let rival_key = format!("{}/{}.zip", rival.function_name("app"), commit("owner-b"));
    let version =
        rival.s3.head_object().bucket(testbed::identity::ARTIFACT_BUCKET).key(&rival_key).send().await.unwrap();
    let event = rival.s3_event(&rival_key, version.version_id().unwrap_or_default());
    let owned = format!("function {} is owned by LambdaDeployment owner-a/app", function_arn(function));
    for (round, deployer) in deployers.iter().enumerate() {
        let sweep = json!({"action": "sweep"});
        let (swept, evented) = tokio::join!(deployer.handle(&sweep, None), deployer.handle(&event, None));
        let (swept, evented) = (swept.unwrap(), evented.unwrap());
        assert_eq!(swept.deployed + evented.deployed, 0, "round {round}: {swept:?} {evented:?}");
        assert_eq!(owner.successful_updates(function), 1, "round {round}: the owner's function is not updated again");
        assert_eq!(owner.code_sha256(function).await, owner_sha, "round {round}: the owner's code stays");
        assert_eq!(status_of(rival, "app").await, (Some(Phase::Blocked), owned.clone()), "round {round}");
    }
    assert_eq!(status_of(owner, "app").await.0, Some(Phase::Deployed));
}

#[tokio::test]
async fn a_function_owned_in_one_namespace_is_blocked_for_another_and_never_flaps() {
    let owner = World::new("owner-a").await;
    let rival = World::new("owner-b").await;
    let arn = owner.create_function("shared", "initial").await;
    let function = owner.function_name("shared");
    let (owner_commit, rival_commit) = (commit("owner-a"), commit("owner-b"));
    let (_, owner_sha) = owner.upload(&format!("{function}/{owner_commit}.zip"), "owner release").await;
    let rival_fn = rival.function_name("app");
    rival.upload(&format!("{rival_fn}/{rival_commit}.zip"), "rival release").await;
    owner.apply_ld("app", &arn, &function, &owner_commit).await;
    // creationTimestamp has second resolution: make the owner unambiguously older.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rival.apply_ld("app", &arn, &rival_fn, &rival_commit).await;

    let both = owner.deployer(&[("WATCH_NAMESPACES", "owner-a,owner-b")]).await;
    let summary = both.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!((summary.deployed, summary.blocked), (1, 1), "{:?}", summary.errors);
    assert_eq!(owner.code_sha256(&function).await, owner_sha);
    assert_eq!(
        status_of(&rival, "app").await,
        (Some(Phase::Blocked), format!("function {arn} is owned by LambdaDeployment owner-a/app"))
    );

    // Three more rounds, one from a deployer that sees only the rival's namespace: the owner tag alone decides.
    let rival_only = rival.deployer(&[]).await;
    assert_never_taken_over(&[&both, &rival_only, &both], &rival, &owner, &function, &owner_sha).await;
}

#[tokio::test]

async fn a_namespace_forbidden_to_target_a_function_cannot_block_the_namespace_allowed_to() {
    let allowed_ns = World::new("policy-owner").await;
    let forbidden_ns = World::new("policy-squatter").await;
    let arn = allowed_ns.create_function("fn", "initial").await;
    let function = allowed_ns.function_name("fn");
    let release = commit("policy-owner");
    let (_, sha) = allowed_ns.upload(&format!("{function}/{release}.zip"), "release").await;
    // The squatter's LD comes first; policy forbids it from ever deploying there.
    forbidden_ns.apply_ld("squat", &arn, &function, &release).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    allowed_ns.apply_ld("app", &arn, &function, &release).await;
    let policy = format!(
        "policy-owner=arn:aws:lambda:*:{ACCOUNT_ID}:function:policy-owner-*;policy-squatter=arn:aws:lambda:*:{ACCOUNT_ID}:function:policy-squatter-*"
    );
    let deployer = allowed_ns
        .deployer(&[("WATCH_NAMESPACES", "policy-owner,policy-squatter"), ("NAMESPACE_POLICY", &policy)])
        .await;

    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(status_of(&forbidden_ns, "squat").await.0, Some(Phase::Blocked));
    assert_eq!(summary.deployed, 1, "{:?}", summary.errors);
    assert_eq!(allowed_ns.code_sha256(&function).await, sha);
}
