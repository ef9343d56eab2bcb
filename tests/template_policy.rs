//! The SAM template grants the deployer only what it needs, on only the resources it is configured for; the role
//! target-account.yaml creates in another account grants the same there, and nothing more.
//! Both templates use full-form intrinsics (`Ref:`, `Fn::Sub:`), so they parse as plain YAML here.

use std::collections::BTreeSet;
use std::path::Path;

use lambda_deployer::accounts::TargetRoles;
use lambda_deployer::arn::ArnGlob;
use lambda_deployer::crd::{CLUSTER_TAG, OWNER_TAG};
use lambda_deployer::deployer::Summary;
use lambda_deployer::metrics::{METRICS, NAMESPACE, emf_line};
use lambda_deployer::trigger::{SweepSource, Trigger};
use serde_json::{Map, Value, json};
use testbed::identity::DEPLOYER_GROUP;

const OWN_ACCOUNT_FUNCTIONS: &str = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:*";
const ARTIFACT_OBJECTS: &str = "arn:${AWS::Partition}:s3:::${ArtifactBucket}/*";
const ARTIFACT_BUCKET: &str = "arn:${AWS::Partition}:s3:::${ArtifactBucket}";
const THE_CLUSTER: &str = "arn:${AWS::Partition}:eks:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterName}";

fn template() -> Value {
    serde_saphyr::from_str(include_str!("../template.yaml")).expect("template.yaml parses as plain YAML")
}

fn target_template() -> Value {
    serde_saphyr::from_str(include_str!("../target-account.yaml")).expect("target-account.yaml parses as plain YAML")
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    let resources = template["Resources"].as_object().expect("template has Resources");
    resources.iter().filter(|(_, r)| r["Type"] == kind).map(|(name, r)| (name.as_str(), &r["Properties"])).collect()
}

fn the_function(template: &Value) -> &Value {
    let functions = resources_of_type(template, "AWS::Serverless::Function");
    assert_eq!(functions.len(), 1, "exactly one function");
    functions[0].1
}

fn one_or_many(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

/// Every value a resource expression can take, whichever way its `Fn::If` conditions go. A list made by
/// `Fn::Split` of a `Fn::Sub` over `Fn::Join`s of a list parameter reads as its pieces, each join as `${Parameter}`
/// (`[a, b]` joined with `":*,"` then `:*` appended is `${Parameter}:*`).
fn alternatives(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(alternatives).collect(),
        Value::Object(map) if map.get("Ref") == Some(&json!("AWS::NoValue")) => vec![],
        Value::Object(map) if map.contains_key("Fn::If") => {
            let branches = map["Fn::If"].as_array().expect("Fn::If has [condition, then, else]");
            branches[1..].iter().flat_map(alternatives).collect()
        }
        Value::Object(map) if map.contains_key("Fn::Split") => {
            let split = map["Fn::Split"].as_array().expect("Fn::Split has [separator, text]");
            let separator = split[0].as_str().expect("a separator");
            let sub = split[1]["Fn::Sub"].as_array().expect("Fn::Split of a Fn::Sub [text, variables]");
            let mut text = sub[0].as_str().expect("Fn::Sub text").to_string();
            for (variable, joined) in sub[1].as_object().expect("Fn::Sub variables") {
                let join = joined["Fn::Join"].as_array().expect("each variable joins a list parameter");
                let parameter = join[1]["Ref"].as_str().expect("the joined list is a parameter");
                text = text.replace(&format!("${{{variable}}}"), &format!("${{{parameter}}}"));
            }
            text.split(separator).map(|piece| Value::String(piece.to_string())).collect()
        }
        other => vec![other.clone()],
    }
}

/// The ARN text of a resource expression: `Ref: X` reads as `${X}`, `Fn::GetAtt: [R, A]` as `${R.A}`, the value of
/// entry N of a `key=value` list parameter X as `${X[N]}` (also as a `Fn::Sub` variable), and a `Fn::Join` of a
/// `Fn::Split` as its text with the piece replaced (`{account}` by `*` in `${TargetRoleArnTemplate}`, which has none).
fn arn_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(map) if map.contains_key("Fn::Sub") => match &map["Fn::Sub"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => {
                let mut text = parts[0].as_str().expect("Fn::Sub text").to_string();
                for (variable, value) in parts.get(1).and_then(Value::as_object).into_iter().flatten() {
                    if entry_value(value).is_some() {
                        text = text.replace(&format!("${{{variable}}}"), &arn_text(value));
                    }
                }
                text
            }
            other => panic!("unexpected Fn::Sub {other}"),
        },
        Value::Object(map) if map.contains_key("Fn::Select") => {
            let (parameter, entry) = entry_value(value).unwrap_or_else(|| panic!("cannot tell what {value} selects"));
            format!("${{{parameter}[{entry}]}}")
        }
        Value::Object(map) if map.contains_key("Fn::Join") => {
            let join = map["Fn::Join"].as_array().expect("Fn::Join [separator, list]");
            let split = join[1]["Fn::Split"].as_array().expect("a Fn::Join of a Fn::Split: text with a piece replaced");
            arn_text(&split[1]).replace(split[0].as_str().unwrap_or_default(), join[0].as_str().unwrap_or_default())
        }
        Value::Object(map) if map.contains_key("Ref") => format!("${{{}}}", map["Ref"].as_str().expect("Ref name")),
        Value::Object(map) if map.contains_key("Fn::GetAtt") => {
            let parts = map["Fn::GetAtt"].as_array().expect("Fn::GetAtt [resource, attribute]");
            format!("${{{}.{}}}", parts[0].as_str().unwrap_or_default(), parts[1].as_str().unwrap_or_default())
        }
        other => panic!("cannot tell the scope of resource {other}"),
    }
}

/// `Fn::Select: [1, Fn::Split: ["=", Fn::Select: [N, Fn::Split: [",", Fn::Sub: "${X}=,=,..."]]]]`: what follows "="
/// in entry N of the comma-separated `key=value` list X (template.yaml reads ArtifactBuckets so).
fn entry_value(value: &Value) -> Option<(String, usize)> {
    let select = |value: &Value| -> Option<(u64, Value)> {
        let select = value.get("Fn::Select")?.as_array()?;
        Some((select[0].as_u64()?, select[1].clone()))
    };
    let split = |value: &Value, separator: &str| -> Option<Value> {
        let split = value.get("Fn::Split")?.as_array()?;
        (split[0] == separator).then(|| split[1].clone())
    };
    let (1, after_equals) = select(value)? else { return None };
    let (entry, entries) = select(&split(&after_equals, "=")?)?;
    let padded = split(&entries, ",")?;
    let padded = padded.get("Fn::Sub")?.as_str()?;
    let parameter = padded.strip_prefix("${")?.split_once("}=")?.0;
    Some((parameter.to_string(), entry as usize))
}

#[derive(Debug)]
struct Statement {
    sid: String,
    /// The template condition the statement exists under (`Fn::If: [condition, statement, AWS::NoValue]`).
    only_if: Option<String>,
    actions: Vec<String>,
    /// Every ARN the statement can grant, as text.
    resources: Vec<String>,
    condition: Value,
}

impl Statement {
    fn grants(&self, service: &str) -> bool {
        self.actions.iter().any(|a| a == "*" || a.starts_with(&format!("{service}:")))
    }

    /// A grant IAM cannot scope: ListFunctions and GetAccountSettings exist only for Resource "*".
    fn is_list_functions(&self) -> bool {
        self.actions == ["lambda:ListFunctions", "lambda:GetAccountSettings"]
    }

    /// The other grant IAM cannot scope: GetMetricData supports no resource but "*".
    fn is_metric_reads(&self) -> bool {
        self.actions == ["cloudwatch:GetMetricData"]
    }
}

/// Every Allow statement of every IAM role and policy in the template.
fn allow_statements(template: &Value) -> Vec<Statement> {
    let mut documents: Vec<Value> = Vec::new();
    for (_, role) in resources_of_type(template, "AWS::IAM::Role") {
        documents.extend(one_or_many(&role["Policies"]).iter().map(|p| p["PolicyDocument"].clone()));
    }
    for kind in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        documents.extend(resources_of_type(template, kind).iter().map(|(_, p)| p["PolicyDocument"].clone()));
    }
    let statements: Vec<(Option<String>, Value)> = documents
        .iter()
        .flat_map(|d| one_or_many(&d["Statement"]))
        .flat_map(|statement| match statement.get("Fn::If").and_then(Value::as_array) {
            Some(branches) => {
                let condition = branches[0].as_str().map(String::from);
                branches[1..]
                    .iter()
                    .filter(|b| b.get("Sid").is_some())
                    .map(|b| (condition.clone(), b.clone()))
                    .collect()
            }
            None => vec![(None, statement)],
        })
        .collect();
    for (_, statement) in &statements {
        assert!(
            statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
            "NotAction/NotResource grant everything else: {statement}"
        );
    }
    statements
        .iter()
        .filter(|(_, s)| s["Effect"] == "Allow")
        .map(|(only_if, s)| Statement {
            sid: s["Sid"].as_str().unwrap_or("(no Sid)").to_string(),
            only_if: only_if.clone(),
            actions: one_or_many(&s["Action"]).iter().map(|a| a.as_str().expect("action name").to_string()).collect(),
            resources: alternatives(&s["Resource"]).iter().map(arn_text).collect(),
            condition: s["Condition"].clone(),
        })
        .collect()
}

fn statements_granting(template: &Value, service: &str) -> Vec<Statement> {
    allow_statements(template).into_iter().filter(|s| s.grants(service)).collect()
}

/// `*`, or an ARN whose region, account or resource part is a wildcard: it names a whole service, not a resource.
/// The allowed function ARNs (and their versions and aliases, `:*`) are as narrow as the operator makes them.
fn is_service_wide(arn: &str) -> bool {
    if arn == "${AllowedFunctionArns}" || arn == "${AllowedFunctionArns}:*" {
        return false;
    }
    // `${AWS::Region}` and friends hold colons of their own.
    let arn = arn.replace("${AWS::", "${AWS_");
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        [] | [_] => arn.contains('*'),
        ["arn", _, "s3", "", "", resource] => resource.starts_with('*'),
        ["arn", _, _, region, account, resource] => {
            [region, account].iter().any(|p| p.contains('*')) || resource.starts_with('*')
        }
        _ => true,
    }
}

#[test]
fn no_statement_grants_lambda_writes_or_s3_on_every_resource_or_a_whole_service() {
    let template = template();
    let statements: Vec<Statement> = allow_statements(&template)
        .into_iter()
        .filter(|s| (s.grants("lambda") && !s.is_list_functions()) || s.grants("s3"))
        .collect();
    assert!(!statements.is_empty(), "the role must grant Lambda and S3 access somewhere");
    for statement in statements {
        for action in &statement.actions {
            assert!(!action.contains('*'), "{}: wildcard action {action}", statement.sid);
        }
        for arn in &statement.resources {
            assert!(!is_service_wide(arn), "{}: {arn} is not scoped to a resource", statement.sid);
        }
    }
}

#[test]
fn listing_and_metric_reads_are_the_only_unscoped_grants_and_get_function_observation_removes_listing() {
    let template = template();
    let unscoped: Vec<Statement> =
        allow_statements(&template).into_iter().filter(|s| s.resources.iter().any(|r| r == "*")).collect();
    assert_eq!(unscoped.len(), 2, "{unscoped:?}");
    assert!(unscoped.iter().any(Statement::is_metric_reads), "GetMetricData is granted on *: {unscoped:?}");
    let listing: Vec<&Statement> = unscoped.iter().filter(|s| !s.is_metric_reads()).collect();
    assert!(listing[0].is_list_functions(), "{:?} may not be unscoped", listing[0].actions);
    assert_eq!(listing[0].only_if.as_deref(), Some("MayListFunctions"));
    assert_eq!(
        template["Conditions"]["MayListFunctions"],
        json!({ "Fn::Not": [{ "Fn::Equals": [{ "Ref": "FunctionObservation" }, "get-function"] }] })
    );
    let parameter = &template["Parameters"]["FunctionObservation"];
    assert_eq!(parameter["Default"], "auto");
    assert_eq!(parameter["AllowedValues"], json!(["auto", "get-function", "list-functions"]));
    let told = &the_function(&template)["Environment"]["Variables"]["FUNCTION_OBSERVATION"];
    assert_eq!(told, &json!({ "Ref": "FunctionObservation" }), "the deployer must list only when IAM allows it");
}

#[test]
fn the_scope_check_recognises_service_wide_arns() {
    for wide in [
        "*",
        "arn:aws:lambda:*:*:*",
        "arn:aws:lambda:us-east-1:*:function:x",
        "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:*",
        "arn:aws:s3:::*",
        "arn:${AWS::Partition}:s3:::*",
        "arn:aws:s3",
    ] {
        assert!(is_service_wide(wide), "{wide}");
    }
    for narrow in [OWN_ACCOUNT_FUNCTIONS, ARTIFACT_OBJECTS, ARTIFACT_BUCKET, THE_CLUSTER, "${AllowedFunctionArns}"] {
        assert!(!is_service_wide(narrow), "{narrow}");
    }
}

#[test]
fn every_lambda_action_including_update_function_code_is_limited_to_the_allowed_function_arns() {
    let template = template();
    let statements: Vec<Statement> =
        statements_granting(&template, "lambda").into_iter().filter(|s| !s.is_list_functions()).collect();
    let actions: Vec<&str> = statements.iter().flat_map(|s| s.actions.iter().map(String::as_str)).collect();
    for needed in [
        "lambda:GetFunction",
        "lambda:UpdateFunctionCode",
        "lambda:TagResource",
        "lambda:ListTags",
        "lambda:PublishVersion",
        "lambda:GetAlias",
        "lambda:UpdateAlias",
        "lambda:CreateAlias",
        "lambda:InvokeFunction",
    ] {
        assert!(actions.contains(&needed), "the deployer needs {needed}");
    }
    let allowed = [
        "${AllowedFunctionArns}",
        "${AllowedFunctionArns}:*",
        OWN_ACCOUNT_FUNCTIONS,
        &format!("{OWN_ACCOUNT_FUNCTIONS}:*"),
    ];
    for statement in &statements {
        for arn in &statement.resources {
            assert!(
                allowed.contains(&arn.as_str()),
                "{}: {arn} is neither the AllowedFunctionArns parameter nor its own-account default (or their versions and aliases)",
                statement.sid
            );
        }
    }
}

#[test]
fn only_versions_can_be_deleted_or_invoked_never_a_whole_function() {
    let template = template();
    let statements: Vec<Statement> = statements_granting(&template, "lambda")
        .into_iter()
        .filter(|s| s.actions.iter().any(|a| a == "lambda:DeleteFunction" || a == "lambda:InvokeFunction"))
        .collect();
    assert_eq!(statements.len(), 2, "{statements:?}");
    for statement in statements {
        assert_eq!(statement.actions.len(), 1, "{}: deleting and invoking stand alone", statement.sid);
        assert!(!statement.resources.is_empty());
        for arn in &statement.resources {
            assert!(arn.ends_with(":*"), "{}: {arn} names an unqualified function", statement.sid);
        }
    }
}

#[test]
fn judging_reads_only_this_accounts_alarms_and_metrics_and_the_queue_is_the_deployers_own() {
    let template = template();
    let cloudwatch = statements_granting(&template, "cloudwatch");
    let actions: Vec<&str> = cloudwatch.iter().flat_map(|s| s.actions.iter().map(String::as_str)).collect();
    assert_eq!(actions, ["cloudwatch:DescribeAlarms", "cloudwatch:GetMetricData"]);
    let alarms = cloudwatch.iter().find(|s| s.actions == ["cloudwatch:DescribeAlarms"]).unwrap();
    assert_eq!(alarms.resources, ["arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"]);
    let queue = allow_statements(&template)
        .into_iter()
        .find(|s| s.actions.iter().any(|a| a == "sqs:ReceiveMessage"))
        .expect("the event source mapping reads the rollout queue");
    assert_eq!(queue.resources, ["${RolloutQueue.Arn}"]);
    let variables = &the_function(&template)["Environment"]["Variables"];
    assert_eq!(variables["ROLLOUT_QUEUE_URL"], json!({ "Ref": "RolloutQueue" }));
    let events = &the_function(&template)["Events"];
    let mapping = events.as_object().unwrap().values().find(|e| e["Type"] == "SQS").expect("an SQS event");
    assert_eq!(mapping["Properties"]["Queue"], json!({ "Fn::GetAtt": ["RolloutQueue", "Arn"] }));
}

#[test]
fn the_deployer_is_told_exactly_the_function_arns_iam_allows() {
    let template = template();
    let iam_scope = allow_statements(&template)
        .into_iter()
        .find(|s| s.actions.iter().any(|a| a == "lambda:UpdateFunctionCode"))
        .expect("a statement grants UpdateFunctionCode")
        .resources;
    let env = &the_function(&template)["Environment"]["Variables"]["ALLOWED_FUNCTION_ARNS"];
    let joined = env["Fn::Join"].as_array().expect("ALLOWED_FUNCTION_ARNS joins a list");
    assert_eq!(joined[0], ",");
    let told: Vec<String> = alternatives(&joined[1]).iter().map(arn_text).collect();
    assert_eq!(told, iam_scope);
}

#[test]
fn tagging_can_only_set_the_ownership_tag() {
    let template = template();
    let tagging: Vec<Statement> = statements_granting(&template, "lambda")
        .into_iter()
        .filter(|s| s.actions.iter().any(|a| a == "lambda:TagResource"))
        .collect();
    assert!(!tagging.is_empty());
    for statement in tagging {
        assert_eq!(statement.actions, ["lambda:TagResource"], "{}: tagging needs its own condition", statement.sid);
        let claim_tags = [OWNER_TAG, CLUSTER_TAG];
        assert_eq!(statement.condition, json!({ "ForAllValues:StringEquals": { "aws:TagKeys": claim_tags } }));
    }
}

#[test]
fn s3_access_is_read_only_and_limited_to_the_artifact_bucket() {
    let template = template();
    let regional = |suffix: &str| -> Vec<String> {
        (0..ENTRIES_READ).map(|n| format!("arn:${{AWS::Partition}}:s3:::${{ArtifactBuckets[{n}]}}{suffix}")).collect()
    };
    for statement in statements_granting(&template, "s3") {
        for action in &statement.actions {
            let (own, others) = match action.as_str() {
                "s3:GetObject" | "s3:GetObjectVersion" => (ARTIFACT_OBJECTS, regional("/*")),
                "s3:ListBucket" => (ARTIFACT_BUCKET, regional("")),
                other => panic!("{}: the deployer does not need {other}", statement.sid),
            };
            match statement.only_if.as_deref() {
                None => assert_eq!(statement.resources, [own], "{}: {action}", statement.sid),
                // The bucket of each other region, only when there is one (ArtifactBuckets).
                Some("HasArtifactBuckets") => assert_eq!(statement.resources, others, "{}: {action}", statement.sid),
                Some(other) => panic!("{}: S3 access under condition {other}", statement.sid),
            }
        }
    }
}

#[test]
fn describe_cluster_is_the_only_eks_action_and_covers_only_the_configured_cluster() {
    let template = template();
    let statements = statements_granting(&template, "eks");
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0].actions, ["eks:DescribeCluster"]);
    assert_eq!(statements[0].resources, [THE_CLUSTER]);
}

#[test]
fn the_access_entry_maps_the_functions_own_role_to_group_lambda_deployer() {
    let template = template();
    let entries = resources_of_type(&template, "AWS::EKS::AccessEntry");
    assert_eq!(entries.len(), 1);
    let entry = entries[0].1;
    assert_eq!(entry["KubernetesGroups"], json!([DEPLOYER_GROUP]));
    assert_eq!(entry["ClusterName"], json!({ "Ref": "ClusterName" }));
    assert_eq!(entry["PrincipalArn"], the_function(&template)["Role"], "the entry must map the function's role");
    assert!(!entry["Username"].as_str().unwrap_or_default().starts_with("system:"));
}

#[test]
fn every_grant_is_visible_because_the_function_uses_the_explicit_role() {
    let template = template();
    let function = the_function(&template);
    assert!(function.get("Policies").is_none(), "SAM policy templates would add grants this test cannot see");
    let role = arn_text(&function["Role"]);
    let role_resource = role.trim_start_matches("${").trim_end_matches(".Arn}");
    assert_eq!(template["Resources"][role_resource]["Type"], "AWS::IAM::Role");
}

#[test]
fn the_function_runs_the_deployer_binary_on_arm64_with_a_custom_runtime() {
    let template = template();
    let function = the_function(&template);
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(function["Architectures"], json!(["arm64"]));
    assert_eq!(function["Handler"], "bootstrap");
    let (_, resource) = template["Resources"]
        .as_object()
        .and_then(|r| r.iter().find(|(_, r)| r["Type"] == "AWS::Serverless::Function"))
        .expect("the function resource");
    assert_eq!(resource["Metadata"]["BuildMethod"], "rust-cargolambda");
    let binary = Path::new(env!("CARGO_BIN_EXE_lambda-deployer")).file_name().and_then(|n| n.to_str());
    assert_eq!(resource["Metadata"]["BuildProperties"]["Binary"].as_str(), binary);
}

#[test]
fn a_full_sweep_fits_in_the_timeout_and_failed_async_invocations_are_kept() {
    let template = template();
    let function = the_function(&template);
    // 1,000 LambdaDeployments at Lambda's 15 requests/s control-plane quota, with room for waits on updates.
    let sweep_seconds = 1000 / 15;
    let timeout = function["Timeout"].as_u64().expect("Timeout");
    assert!((2 * sweep_seconds..=900).contains(&timeout), "Timeout {timeout}");
    let reserved = function["ReservedConcurrentExecutions"].as_u64().expect("ReservedConcurrentExecutions");
    assert!(reserved >= 1, "reserved concurrency 0 would disable the deployer");
    let config = &function["EventInvokeConfig"];
    assert!(config["MaximumRetryAttempts"].as_u64().is_some());
    let destination = &config["DestinationConfig"]["OnFailure"]["Destination"];
    let can_send = allow_statements(&template)
        .iter()
        .any(|s| s.actions.iter().any(|a| a == "sqs:SendMessage") && s.resources == [arn_text(destination)]);
    assert!(can_send, "the role must be allowed to send to the on-failure destination {destination}");
    assert_eq!(template["Parameters"]["SweepSchedule"]["Default"], "rate(5 minutes)");
}

#[test]
fn every_setting_the_deployer_reads_is_passed_from_a_parameter() {
    let template = template();
    let variables = the_function(&template)["Environment"]["Variables"].as_object().expect("environment variables");
    for name in [
        "CLUSTER_NAME",
        "ARTIFACT_BUCKET",
        "KEY_TEMPLATE",
        "ALLOWED_FUNCTION_ARNS",
        "MAX_CONCURRENCY",
        "NAMESPACE_POLICY",
        "WATCH_NAMESPACES",
        "FUNCTION_OBSERVATION",
        "ROLLOUT_QUEUE_URL",
        "TARGET_ROLES",
        "TARGET_ROLE_ARN",
        "TARGET_EXTERNAL_ID",
        "ARTIFACT_BUCKETS",
    ] {
        assert!(variables.contains_key(name), "{name} is not set");
    }
    assert_eq!(template["Parameters"]["KeyTemplate"]["Default"], "{functionName}/{commit}.zip");
}

// ---- Other accounts and regions: the roles the deployer may assume, its regional buckets, and target-account.yaml ----

/// How many entries of ArtifactBuckets template.yaml reads one by one; its AllowedPattern admits no more.
/// (TargetRoles is granted as a whole: it has no such limit.)
const ENTRIES_READ: usize = 5;

/// The pseudo parameters the stacks below are evaluated in.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// The deployer's role as target-account.yaml is given it, and the artifact buckets.
const DEPLOYER_ROLE: &str = "arn:aws:iam::123456789012:role/lambda-deployer-DeployerRole-0123ABCD";
const ARTIFACT_BUCKETS: &str = "arn:aws:s3:::artifacts,arn:aws:s3:::artifacts-us-west-2";

/// The parameters (and their conditions) template.yaml has for other accounts and regions: a statement granted while
/// they are all empty may not mention them.
const NEW_PARAMETERS: [&str; 5] =
    ["TargetRoles", "TargetRoleArnTemplate", "TargetExternalId", "ArtifactBuckets", "HasArtifactBucket"];

/// A template deployed with parameter values, its intrinsic functions evaluated as CloudFormation evaluates them:
/// every condition up front, `Fn::If` takes the branch its condition picks, `AWS::NoValue` drops the item, and
/// `Fn::Select` past the end of a list fails. Resources and their attributes read as `${Name}` and
/// `${Name.Attribute}`.
struct Stack<'a> {
    template: &'a Value,
    parameters: Map<String, Value>,
}

impl<'a> Stack<'a> {
    /// `values` override the defaults; a later value of the same parameter wins.
    fn new(template: &'a Value, values: &[(&str, &str)]) -> Stack<'a> {
        let declared = template["Parameters"].as_object().expect("the template has Parameters");
        for (name, _) in values {
            assert!(declared.contains_key(*name), "the template has no parameter {name}");
        }
        let parameters = declared
            .iter()
            .map(|(name, declaration)| {
                let given = values.iter().rev().find(|(n, _)| n == name).map(|(_, value)| value.to_string());
                let text = given
                    .or_else(|| match &declaration["Default"] {
                        Value::Null => None,
                        Value::String(text) => Some(text.clone()),
                        other => Some(other.to_string()),
                    })
                    .unwrap_or_else(|| panic!("parameter {name} has no default: give it a value"));
                let value = if declaration["Type"] == "CommaDelimitedList" {
                    Value::Array(text.split(',').map(|item| json!(item)).collect())
                } else {
                    json!(text)
                };
                (name.clone(), value)
            })
            .collect();
        let stack = Stack { template, parameters };
        for name in template["Conditions"].as_object().into_iter().flat_map(Map::keys) {
            stack.condition(name);
        }
        stack
    }

    fn condition(&self, name: &str) -> bool {
        let condition = &self.template["Conditions"][name];
        assert!(!condition.is_null(), "the template has no condition {name}");
        self.holds(condition)
    }

    fn holds(&self, condition: &Value) -> bool {
        let (function, arguments) =
            condition.as_object().and_then(|map| map.iter().next()).expect("a condition is one function");
        let arguments = one_or_many(arguments);
        match function.as_str() {
            "Fn::Equals" => self.resolve(&arguments[0]) == self.resolve(&arguments[1]),
            "Fn::Not" => !self.holds(&arguments[0]),
            "Fn::And" => arguments.iter().all(|c| self.holds(c)),
            "Fn::Or" => arguments.iter().any(|c| self.holds(c)),
            "Condition" => self.condition(arguments[0].as_str().expect("a condition name")),
            other => panic!("{other} is not a condition function"),
        }
    }

    /// The value of an expression: `None` for `AWS::NoValue`.
    fn resolve(&self, value: &Value) -> Option<Value> {
        let map = match value {
            Value::Array(items) => return Some(Value::Array(items.iter().filter_map(|v| self.resolve(v)).collect())),
            Value::Object(map) => map,
            other => return Some(other.clone()),
        };
        let intrinsic =
            map.iter().next().filter(|(key, _)| map.len() == 1 && (*key == "Ref" || key.starts_with("Fn::")));
        let Some((function, arguments)) = intrinsic else {
            return Some(Value::Object(map.iter().filter_map(|(k, v)| Some((k.clone(), self.resolve(v)?))).collect()));
        };
        let text = |value: &Value| match self.resolve(value) {
            Some(Value::String(text)) => text,
            other => panic!("{value} is not text but {other:?}"),
        };
        let list = |value: &Value| match self.resolve(value) {
            Some(Value::Array(items)) => items,
            other => panic!("{value} is not a list but {other:?}"),
        };
        let parts = arguments.as_array().map(Vec::as_slice).unwrap_or_default();
        Some(match function.as_str() {
            "Ref" if arguments == "AWS::NoValue" => return None,
            "Ref" => self.variable(arguments.as_str().expect("Ref names a parameter or resource")),
            "Fn::If" => {
                let [condition, then, otherwise] = parts else { panic!("Fn::If has [condition, then, else]") };
                let condition = condition.as_str().expect("Fn::If names a condition");
                return self.resolve(if self.condition(condition) { then } else { otherwise });
            }
            "Fn::Sub" => match arguments {
                Value::String(text) => json!(self.substitute(text, &Map::new())),
                _ => {
                    let variables = self.resolve(&parts[1]).expect("Fn::Sub variables");
                    json!(self.substitute(parts[0].as_str().expect("Fn::Sub text"), variables.as_object().unwrap()))
                }
            },
            "Fn::Join" => {
                let items: Vec<String> =
                    list(&parts[1]).iter().map(|item| item.as_str().unwrap().to_string()).collect();
                json!(items.join(parts[0].as_str().expect("a literal separator")))
            }
            "Fn::Split" => {
                let separator = parts[0].as_str().expect("a literal separator");
                Value::Array(text(&parts[1]).split(separator).map(|piece| json!(piece)).collect())
            }
            "Fn::Select" => {
                let index = parts[0].as_u64().expect("a literal index") as usize;
                let items = list(&parts[1]);
                let selected = items.get(index).cloned();
                selected.unwrap_or_else(|| panic!("Fn::Select cannot select nonexistent value at index {index}"))
            }
            "Fn::GetAtt" => json!(format!("${{{}.{}}}", parts[0].as_str().unwrap(), parts[1].as_str().unwrap())),
            other => panic!("{other} is not evaluated here"),
        })
    }

    /// `Ref` of a pseudo parameter, a parameter, or (as `${Name}`) a resource.
    fn variable(&self, name: &str) -> Value {
        match name {
            "AWS::Partition" => json!("aws"),
            "AWS::Region" => json!(REGION),
            "AWS::AccountId" => json!(ACCOUNT),
            "AWS::URLSuffix" => json!("amazonaws.com"),
            "AWS::StackName" => json!("lambda-deployer"),
            _ => self.parameters.get(name).cloned().unwrap_or_else(|| {
                assert!(self.template["Resources"].get(name).is_some(), "{name} is no parameter and no resource");
                json!(format!("${{{name}}}"))
            }),
        }
    }

    fn substitute(&self, text: &str, variables: &Map<String, Value>) -> String {
        let (mut done, mut rest) = (String::new(), text);
        while let Some(start) = rest.find("${") {
            done.push_str(&rest[..start]);
            let (name, after) = rest[start + 2..].split_once('}').expect("a closed substitution");
            match name.strip_prefix('!') {
                Some(literal) => done.push_str(&format!("${{{literal}}}")),
                None => {
                    let value = variables.get(name).cloned().unwrap_or_else(|| match name.split_once('.') {
                        Some(_) => json!(format!("${{{name}}}")),
                        None => self.variable(name),
                    });
                    done.push_str(value.as_str().unwrap_or_else(|| panic!("${{{name}}} is not text but {value}")));
                }
            }
            rest = after;
        }
        done + rest
    }

    /// The statements of the template's one role's policies.
    fn statements(&self) -> Vec<Value> {
        let policies = self.resolve(&self.template["Resources"][the_role(self.template)]["Properties"]["Policies"]);
        one_or_many(&policies.expect("the role has policies"))
            .iter()
            .flat_map(|policy| one_or_many(&policy["PolicyDocument"]["Statement"]))
            .collect()
    }

    /// The deployer function's environment.
    fn environment(&self) -> Map<String, Value> {
        let variables = self.resolve(&the_function(self.template)["Environment"]["Variables"]);
        variables.and_then(|v| v.as_object().cloned()).expect("environment variables")
    }

    /// The configuration the deployer reads from that environment (it fails init on anything it cannot use).
    fn deployer_config(&self) -> lambda_deployer::config::Config {
        let environment = self.environment();
        let variable = |name: &str| environment.get(name).map(|v| v.as_str().expect("variables are text").to_string());
        lambda_deployer::config::Config::from_vars(variable).unwrap_or_else(|err| panic!("the deployer refuses: {err}"))
    }

    /// The bucket names the deployer's upload rule matches.
    fn buckets_whose_uploads_are_matched(&self) -> Value {
        let rule = &the_function(self.template)["Events"]["ArtifactUploaded"]["Properties"];
        self.resolve(&rule["Pattern"]["detail"]["bucket"]["name"]).expect("the rule matches bucket names")
    }
}

/// The logical id of the template's one IAM role.
fn the_role(template: &Value) -> &str {
    let roles = resources_of_type(template, "AWS::IAM::Role");
    assert_eq!(roles.len(), 1, "exactly one role");
    roles[0].0
}

fn deployer_stack<'a>(template: &'a Value, values: &[(&str, &str)]) -> Stack<'a> {
    Stack::new(template, &[&[("ClusterName", "prod"), ("ArtifactBucket", "artifacts")][..], values].concat())
}

fn target_stack<'a>(template: &'a Value, values: &[(&str, &str)]) -> Stack<'a> {
    Stack::new(
        template,
        &[&[("DeployerRoleArn", DEPLOYER_ROLE), ("ArtifactBucketArns", ARTIFACT_BUCKETS)][..], values].concat(),
    )
}

fn actions(statement: &Value) -> Vec<String> {
    one_or_many(&statement["Action"]).iter().map(|a| a.as_str().expect("an action name").to_string()).collect()
}

/// Every resource that evaluated statements grant `action` on.
fn granted(statements: &[Value], action: &str) -> Vec<String> {
    statements
        .iter()
        .filter(|s| actions(s).iter().any(|a| a == action))
        .flat_map(|s| one_or_many(&s["Resource"]))
        .map(|r| r.as_str().expect("a resource ARN").to_string())
        .collect()
}

fn role_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

/// A TargetRoles value: each account's role of that name.
fn target_roles(accounts: &[&str], name: &str) -> String {
    accounts.iter().map(|account| role_arn(account, name)).collect::<Vec<_>>().join(",")
}

/// More accounts than ArtifactBuckets has entries: TargetRoles has no limit.
const OTHER_ACCOUNTS: [&str; 7] =
    ["210987654321", "345678901234", "456789012345", "567890123456", "678901234567", "789012345678", "890123456789"];

/// An account no TargetRoles value names.
const UNLISTED_ACCOUNT: &str = "999999999999";

/// The characters a regex character class admits, from its inside (`A-Za-z0-9+.@_-`; a `-` at either end is
/// itself).
fn class_characters(class: &str) -> BTreeSet<char> {
    let chars: Vec<char> = class.chars().collect();
    let mut admitted = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        assert!(!"\\[]^".contains(chars[i]), "{class}: escapes, nesting and negation are not read here");
        if i + 2 < chars.len() && chars[i + 1] == '-' {
            assert!(chars[i] <= chars[i + 2], "{class}: range {}-{}", chars[i], chars[i + 2]);
            admitted.extend(chars[i]..=chars[i + 2]);
            i += 3;
        } else {
            admitted.insert(chars[i]);
            i += 1;
        }
    }
    admitted
}

/// The characters TargetRoles admits in a role's path and name: its AllowedPattern must be, for each item, empty or
/// one role ARN whose path and name are 1-512 characters of one class.
fn target_role_name_characters(template: &Value) -> BTreeSet<char> {
    let pattern = template["Parameters"]["TargetRoles"]["AllowedPattern"].as_str().expect("an AllowedPattern");
    let class = pattern
        .strip_prefix("^$|^arn:aws[a-z-]*:iam::[0-9]{12}:role/[")
        .and_then(|rest| rest.strip_suffix("]{1,512}$"))
        .unwrap_or_else(|| panic!("TargetRoles admits more than empty or one role ARN per item: {pattern}"));
    class_characters(class)
}

#[test]
fn with_the_new_parameters_empty_the_deployer_has_exactly_todays_policy_environment_and_upload_rule() {
    let template = template();
    let stack = deployer_stack(&template, &[]);
    let statements = stack.statements();
    let sids: Vec<&str> = statements.iter().map(|s| s["Sid"].as_str().expect("every statement has a Sid")).collect();
    assert_eq!(
        sids,
        [
            "WriteOwnLogs",
            "ReadArtifacts",
            "TellMissingArtifactsFromForbidden",
            "ObserveAndUpdateAllowedFunctions",
            "ObserveFunctionsByThePage",
            "ReleaseThroughVersionsAndAliases",
            "DeleteOldVersions",
            "SmokeTestNewVersions",
            "JudgeByAlarms",
            "JudgeByMetrics",
            "WakeForRolloutSteps",
            "ClaimOwnershipOfAllowedFunctions",
            "FindTheCluster",
            "ParkFailedInvocations",
        ]
    );
    // Today's statements, as written before other accounts existed: none of them depends on the new parameters.
    let written = &template["Resources"][the_role(&template)]["Properties"]["Policies"][0]["PolicyDocument"];
    for statement in one_or_many(&written["Statement"]) {
        let condition = statement["Fn::If"][0].as_str();
        if condition.is_some_and(|c| !stack.condition(c)) {
            continue;
        }
        let text = statement.to_string();
        for new in NEW_PARAMETERS {
            assert!(!text.contains(new), "{new} changes a statement of the default policy: {text}");
        }
    }
    assert!(statements.iter().flat_map(actions).all(|a| !a.starts_with("sts:")), "no role to assume");
    assert_eq!(granted(&statements, "s3:GetObject"), ["arn:aws:s3:::artifacts/*"]);
    assert_eq!(granted(&statements, "s3:ListBucket"), ["arn:aws:s3:::artifacts"]);

    let variables: BTreeSet<String> = stack.environment().keys().cloned().collect();
    let today = [
        "ALLOWED_FUNCTION_ARNS",
        "ARTIFACT_BUCKET",
        "CLUSTER_NAME",
        "FUNCTION_OBSERVATION",
        "KEY_TEMPLATE",
        "MAX_CONCURRENCY",
        "ROLLOUT_QUEUE_URL",
    ];
    assert_eq!(variables, today.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>());
    assert_eq!(stack.buckets_whose_uploads_are_matched(), json!(["artifacts"]));
    let config = stack.deployer_config();
    assert_eq!(config.target_roles, TargetRoles::default(), "no other account");
    assert!(config.regional_buckets.is_empty(), "no other region");
}

#[test]
fn sts_assume_role_is_granted_only_on_the_declared_roles_and_only_when_some_are_declared() {
    let template = template();
    let assumable = |values: &[(&str, &str)]| -> Vec<String> {
        let statements = deployer_stack(&template, values).statements();
        for action in statements.iter().flat_map(actions).filter(|a| a.starts_with("sts:")) {
            assert_eq!(action, "sts:AssumeRole", "no session tags, no other STS action");
        }
        granted(&statements, "sts:AssumeRole")
    };
    let name = "lambda-deployer-target";
    assert_eq!(assumable(&[]), Vec::<String>::new(), "nothing declared: no AssumeRole at all");
    assert_eq!(assumable(&[("TargetExternalId", "ext-1234")]), Vec::<String>::new(), "an external id is no role");
    assert_eq!(assumable(&[("ArtifactBuckets", "us-west-2=artifacts-us-west-2")]), Vec::<String>::new());
    for count in [1, 2, ENTRIES_READ + 1, OTHER_ACCOUNTS.len()] {
        let accounts = &OTHER_ACCOUNTS[..count];
        let roles: Vec<String> = accounts.iter().map(|account| role_arn(account, name)).collect();
        assert_eq!(assumable(&[("TargetRoles", &target_roles(accounts, name))]), roles, "{count} declared");
    }
    let own_path = "arn:aws:iam::210987654321:role/team/deployer";
    assert_eq!(assumable(&[("TargetRoles", own_path)]), [own_path]);
    // A template stands for every account IAM may be asked about: its role name, in any account, and nothing else.
    let any_account = "arn:aws:iam::*:role/lambda-deployer-target";
    let arn_template = "arn:aws:iam::{account}:role/lambda-deployer-target";
    assert_eq!(assumable(&[("TargetRoleArnTemplate", arn_template)]), [any_account]);
    let both = [("TargetRoleArnTemplate", arn_template), ("TargetRoles", own_path)];
    assert_eq!(assumable(&both), [own_path, any_account]);
}

#[test]
fn every_role_the_deployer_would_assume_is_one_iam_lets_it_assume() {
    let template = template();
    let name = "lambda-deployer-target";
    let arn_template = "arn:aws:iam::{account}:role/lambda-deployer-target";
    let (all, two) = (target_roles(&OTHER_ACCOUNTS, name), target_roles(&OTHER_ACCOUNTS[..2], "special"));
    let everyone: Vec<&str> = OTHER_ACCOUNTS.iter().copied().chain([UNLISTED_ACCOUNT]).collect();
    // The parameters, and the accounts the deployer then has a role in.
    let check = |values: &[(&str, &str)], reachable: &[&str]| {
        let stack = deployer_stack(&template, values);
        let mut iam = granted(&stack.statements(), "sts:AssumeRole");
        let allowed: Vec<ArnGlob> = iam.iter().map(|arn| ArnGlob::new(arn).unwrap()).collect();
        let config = stack.deployer_config();
        let roles = &config.target_roles;
        let with_role: Vec<&str> = everyone.iter().copied().filter(|a| roles.role_for(a).is_some()).collect();
        assert_eq!(with_role, reachable, "{values:?}");
        for account in &everyone {
            let Some(role) = roles.role_for(account) else { continue };
            assert!(allowed.iter().any(|glob| glob.matches(&role)), "{values:?}: the deployer would assume {role}");
        }
        // And IAM grants no role the deployer was not given: the listed roles, and the template's in any account.
        let mut parsed: Vec<String> = roles.explicit.iter().map(|(_, role)| role.clone()).collect();
        parsed.extend(roles.template.iter().map(|template| template.replace("{account}", "*")));
        parsed.sort();
        iam.sort();
        assert_eq!(parsed, iam, "{values:?}");
        let external_id = values.iter().find(|(p, _)| *p == "TargetExternalId").map(|(_, id)| id.to_string());
        assert_eq!(roles.external_id, external_id);
    };
    check(&[("TargetRoles", &all), ("TargetExternalId", "ext-1234")], &OTHER_ACCOUNTS);
    check(&[("TargetRoleArnTemplate", arn_template)], &everyone);
    check(&[("TargetRoleArnTemplate", arn_template), ("TargetRoles", &two)], &everyone);
    check(&[], &[]);
}

#[test]
fn the_buckets_of_other_regions_are_read_like_the_artifact_bucket_and_their_uploads_matched() {
    let template = template();
    let regions = ["us-west-2", "eu-west-1", "ap-southeast-2", "eu-central-1", "sa-east-1"];
    for count in [1, 2, ENTRIES_READ] {
        let declared: Vec<(String, String)> =
            regions[..count].iter().map(|region| (region.to_string(), format!("artifacts-{region}"))).collect();
        let value: Vec<String> = declared.iter().map(|(region, bucket)| format!("{region}={bucket}")).collect();
        let stack = deployer_stack(&template, &[("ArtifactBuckets", &value.join(","))]);
        assert_eq!(stack.deployer_config().regional_buckets, declared, "the deployer reads the buckets IAM allows");
        let buckets: Vec<&str> = ["artifacts"].into_iter().chain(declared.iter().map(|(_, b)| b.as_str())).collect();
        let statements = stack.statements();
        for action in ["s3:GetObject", "s3:GetObjectVersion"] {
            let objects: Vec<String> = buckets.iter().map(|bucket| format!("arn:aws:s3:::{bucket}/*")).collect();
            assert_eq!(granted(&statements, action), objects, "{count} regions: {action}");
        }
        let listed: Vec<String> = buckets.iter().map(|bucket| format!("arn:aws:s3:::{bucket}")).collect();
        assert_eq!(granted(&statements, "s3:ListBucket"), listed, "{count} regions");
        assert_eq!(stack.buckets_whose_uploads_are_matched(), json!(buckets), "{count} regions");
    }
}

#[test]
fn the_template_reads_every_entry_its_parameter_patterns_admit_and_passes_each_parameter_on_only_when_set() {
    let template = template();
    // ArtifactBuckets: `^$|^ENTRY(,ENTRY){0,N}$`, one entry and up to N more; entry N+2 would be used by the deployer,
    // not IAM.
    let pattern = template["Parameters"]["ArtifactBuckets"]["AllowedPattern"].as_str().expect("an AllowedPattern");
    let more = pattern.strip_suffix("}$").and_then(|p| p.rsplit_once("){0,")).map(|(_, n)| n.parse::<usize>());
    assert_eq!(more, Some(Ok(ENTRIES_READ - 1)), "ArtifactBuckets: {pattern}");
    for entry in 1..=ENTRIES_READ + 1 {
        let exists = template["Conditions"].get(format!("HasArtifactBucket{entry}")).is_some();
        assert_eq!(exists, entry <= ENTRIES_READ, "HasArtifactBucket{entry}");
    }
    // TargetRoles: a list, granted whole (any number of roles), each item empty or one exact role ARN: a path and name
    // of IAM's characters, without "," and "=" (TARGET_ROLES reads them as separators) and so without wildcards.
    let parameter = &template["Parameters"]["TargetRoles"];
    assert_eq!((&parameter["Type"], &parameter["Default"]), (&json!("CommaDelimitedList"), &json!("")));
    let mut iam_role_characters = class_characters("A-Za-z0-9_+=,.@/-");
    iam_role_characters.retain(|c| !",=".contains(*c));
    assert!(target_role_name_characters(&template).is_subset(&iam_role_characters));
    let values = [
        ("TargetRoles", "TARGET_ROLES", target_roles(&OTHER_ACCOUNTS, "lambda-deployer-target")),
        ("TargetRoleArnTemplate", "TARGET_ROLE_ARN", "arn:aws:iam::{account}:role/lambda-deployer-target".into()),
        ("TargetExternalId", "TARGET_EXTERNAL_ID", "ext-1234".into()),
        ("ArtifactBuckets", "ARTIFACT_BUCKETS", "us-west-2=artifacts-us-west-2".into()),
    ];
    for (parameter, variable, value) in &values {
        let environment = deployer_stack(&template, &[(*parameter, value.as_str())]).environment();
        assert_eq!(environment.get(*variable), Some(&json!(value)), "{parameter} is passed on as {variable}");
        for (_, other, _) in values.iter().filter(|(p, ..)| p != parameter) {
            assert!(!environment.contains_key(*other), "{other} is set although only {parameter} is");
        }
    }
}

#[test]
fn the_target_role_trusts_only_the_deployers_role_and_requires_the_external_id_when_one_is_given() {
    let target = target_template();
    let trust = |external_id: &str| -> Vec<Value> {
        let stack = target_stack(&target, &[("ExternalId", external_id)]);
        let role = &target["Resources"][the_role(&target)]["Properties"];
        let document = stack.resolve(&role["AssumeRolePolicyDocument"]).expect("a trust policy");
        one_or_many(&document["Statement"])
    };
    let statements = trust("");
    assert_eq!(statements.len(), 1, "{statements:?}");
    let statement = &statements[0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Principal"], json!({ "AWS": DEPLOYER_ROLE }), "the deployer's role and no one else");
    assert_eq!(statement["Action"], "sts:AssumeRole", "no session tags, no web identity");
    assert!(statement.get("Condition").is_none(), "no external id given: none required");
    assert!(statement.get("NotPrincipal").is_none() && statement.get("NotAction").is_none());
    let with_id = trust("ext-1234");
    assert_eq!(with_id[0]["Condition"], json!({ "StringEquals": { "sts:ExternalId": "ext-1234" } }));
    assert_eq!((&with_id[0]["Principal"], &with_id[0]["Action"]), (&statement["Principal"], &statement["Action"]));
    // The principal has no default (nobody is trusted by accident) and must be a role, not an account's root.
    let parameter = &target["Parameters"]["DeployerRoleArn"];
    assert!(parameter.get("Default").is_none());
    assert!(parameter["AllowedPattern"].as_str().is_some_and(|p| p.contains(":role/") && !p.contains("root")));
}

#[test]
fn the_target_role_grants_the_lambda_and_judging_statements_of_the_deployers_own_role_and_no_more() {
    let (home, away) = (template(), target_template());
    let mirrored = |statements: Vec<Value>| -> Vec<Value> {
        let mirrored_services = ["lambda:", "cloudwatch:"];
        statements
            .into_iter()
            .filter(|s| actions(s).iter().any(|a| mirrored_services.iter().any(|m| a.starts_with(m))))
            .collect()
    };
    let others = "arn:aws:lambda:us-west-2:123456789012:function:orders-*,arn:aws:lambda:eu-west-1:123456789012:function:billing";
    for (allowed, observation) in
        [("", "auto"), ("", "get-function"), (others, "list-functions"), (others, "get-function")]
    {
        let values = [("AllowedFunctionArns", allowed), ("FunctionObservation", observation)];
        let at_home = mirrored(deployer_stack(&home, &values).statements());
        let away = mirrored(target_stack(&away, &values).statements());
        assert!(at_home.iter().flat_map(actions).any(|a| a == "lambda:UpdateFunctionCode"), "{at_home:?}");
        // A role is account-wide: where the deployer's defaults name its own region, the target role's name every one.
        let at_home = serde_json::to_string(&at_home)
            .unwrap()
            .replace(&format!(":{REGION}:{ACCOUNT}:"), &format!(":*:{ACCOUNT}:"));
        let at_home: Value = serde_json::from_str(&at_home).unwrap();
        assert_eq!(json!(away), at_home, "AllowedFunctionArns {allowed:?}, FunctionObservation {observation}");
    }
    let parameter = |template: &Value, name: &str| template["Parameters"][name].clone();
    for field in ["AllowedValues", "Default"] {
        assert_eq!(parameter(&away, "FunctionObservation")[field], parameter(&home, "FunctionObservation")[field]);
    }
    assert_eq!(parameter(&away, "AllowedFunctionArns")["Default"], "", "empty means the account's functions");
}

#[test]
fn the_target_role_reads_only_the_artifact_objects_and_grants_no_other_service() {
    let target = target_template();
    let statements = target_stack(&target, &[]).statements();
    for statement in &statements {
        assert_eq!(statement["Effect"], "Allow");
        assert!(statement.get("NotAction").is_none() && statement.get("NotResource").is_none(), "{statement}");
        for action in actions(statement) {
            let service = action.split(':').next().unwrap_or_default();
            assert!(!action.contains('*'), "{}: wildcard action {action}", statement["Sid"]);
            assert!(
                ["lambda", "cloudwatch", "s3"].contains(&service),
                "{}: the role needs no {action}",
                statement["Sid"]
            );
        }
    }
    let s3: Vec<&Value> = statements.iter().filter(|s| actions(s).iter().any(|a| a.starts_with("s3:"))).collect();
    assert_eq!(s3.len(), 1, "{s3:?}");
    // What Lambda's fetch of UpdateFunctionCode's S3 object needs (a version, when one is pinned); no listing.
    assert_eq!(actions(s3[0]), ["s3:GetObject", "s3:GetObjectVersion"]);
    assert_eq!(s3[0]["Resource"], json!(["arn:aws:s3:::artifacts/*", "arn:aws:s3:::artifacts-us-west-2/*"]));
    let alarms = granted(&statements, "cloudwatch:DescribeAlarms");
    assert_eq!(alarms, [format!("arn:aws:cloudwatch:*:{ACCOUNT}:alarm:*")], "this account's alarms only");
}

#[test]
fn target_sessions_last_an_hour_the_role_arn_is_an_output_and_no_external_id_is_shown() {
    let (home, away) = (template(), target_template());
    let role = the_role(&away);
    assert_eq!(away["Resources"][role]["Properties"]["MaxSessionDuration"], 3600);
    // The role's ARN is all the deployer stack needs: it is an entry of TargetRoles.
    let outputs: Vec<&String> = away["Outputs"].as_object().expect("Outputs").keys().collect();
    assert_eq!(outputs, ["RoleArn"]);
    assert_eq!(away["Outputs"]["RoleArn"]["Value"], json!({ "Fn::GetAtt": [role, "Arn"] }));
    for (template, external_id) in [(&home, "TargetExternalId"), (&away, "ExternalId")] {
        assert_eq!(template["Parameters"][external_id]["NoEcho"], true, "{external_id}");
        assert!(!template["Outputs"].to_string().contains(external_id), "an output shows {external_id}");
    }
    let pattern = |template: &Value, name: &str| template["Parameters"][name]["AllowedPattern"].clone();
    assert_eq!(
        pattern(&away, "ExternalId"),
        pattern(&home, "TargetExternalId"),
        "the same ids are valid on both sides"
    );
    // Every role name the target stack admits makes a role ARN the deployer stack's TargetRoles admits.
    let role_name = pattern(&away, "RoleName");
    let characters = role_name.as_str().and_then(|p| p.strip_prefix("^[")).and_then(|p| p.split_once(']'));
    let (characters, _) = characters.unwrap_or_else(|| panic!("RoleName: {role_name}"));
    assert!(class_characters(characters).is_subset(&target_role_name_characters(&home)), "{role_name}");
    let default_name = away["Parameters"]["RoleName"]["Default"].as_str().expect("a default RoleName");
    let arn = role_arn(OTHER_ACCOUNTS[0], default_name);
    let config = deployer_stack(&home, &[("TargetRoles", &arn)]).deployer_config();
    assert_eq!(config.target_roles.role_for(OTHER_ACCOUNTS[0]), Some(arn));
}

// ---- Operations: logging, alarms, notifications and the dashboard ----

/// The function resource's logical name: `Ref` of it is the function's name, the `Deployer` dimension's value.
fn the_function_name(template: &Value) -> &str {
    let functions = resources_of_type(template, "AWS::Serverless::Function");
    assert_eq!(functions.len(), 1, "exactly one function");
    functions[0].0
}

/// `Ref` of the function as the dashboard writes it inside its `Fn::Sub` text.
fn function_placeholder(template: &Value) -> String {
    arn_text(&json!({ "Ref": the_function_name(template) }))
}

fn alarms(template: &Value) -> Vec<(&str, &Value)> {
    let alarms = resources_of_type(template, "AWS::CloudWatch::Alarm");
    assert!(!alarms.is_empty(), "the template defines alarms");
    alarms
}

/// What the binary emits, asked of the binary: the namespace and dimension sets of one invocation's EMF document.
fn emitted_directive() -> Value {
    let summary = Summary { trigger: "schedule".into(), ..Summary::default() };
    let line = emf_line(&summary, "deployer", "request", 0).expect("an invocation that is not a dry run emits metrics");
    let document: Value = serde_json::from_str(&line).expect("the EMF line is JSON");
    document["_aws"]["CloudWatchMetrics"][0].clone()
}

/// The dimension sets the binary emits, each as its sorted dimension names (CloudWatch matches a set, not an order).
fn emitted_dimension_sets() -> Vec<Vec<String>> {
    let directive = emitted_directive();
    assert_eq!(directive["Namespace"], NAMESPACE);
    let sets = directive["Dimensions"].as_array().expect("EMF Dimensions is a list of sets");
    sets.iter()
        .map(|set| {
            let mut names: Vec<String> =
                set.as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
            names.sort();
            names
        })
        .collect()
}

/// Every `Trigger` dimension value an invocation can emit: every trigger but the dry run, which emits nothing.
fn triggers_with_metrics() -> Vec<&'static str> {
    let all = [
        Trigger::Artifacts(vec![]),
        Trigger::Sweep { source: SweepSource::Schedule },
        Trigger::Sweep { source: SweepSource::Direct },
        Trigger::Wakeups(vec![]),
        Trigger::Plan { namespace: None, name: None },
    ];
    for trigger in &all {
        // Exhaustive on purpose: a new kind of trigger does not compile until it is listed above.
        match trigger {
            Trigger::Artifacts(_) | Trigger::Sweep { .. } | Trigger::Wakeups(_) | Trigger::Plan { .. } => {}
        }
    }
    let plan = Summary { trigger: "plan".into(), dry_run: true, ..Summary::default() };
    assert_eq!(emf_line(&plan, "deployer", "request", 0), None, "a dry run emits no metrics");
    all.iter().filter(|t| !matches!(t, Trigger::Plan { .. })).map(Trigger::kind).collect()
}

/// One metric an alarm watches: namespace, name, statistic and dimensions (name, value as `arn_text` reads it).
#[derive(Debug)]
struct Watched {
    namespace: String,
    name: String,
    statistic: String,
    dimensions: Vec<(String, String)>,
}

/// The metrics an alarm watches: its own metric, or every `MetricStat` of a metric-math alarm.
fn watched_by(alarm: &Value) -> Vec<Watched> {
    let dimensions = |metric: &Value| -> Vec<(String, String)> {
        one_or_many(&metric["Dimensions"])
            .iter()
            .map(|d| (d["Name"].as_str().expect("dimension name").to_string(), arn_text(&d["Value"])))
            .collect()
    };
    if alarm.get("Metrics").is_some() {
        return one_or_many(&alarm["Metrics"])
            .iter()
            .filter_map(|query| query.get("MetricStat"))
            .map(|stat| Watched {
                namespace: stat["Metric"]["Namespace"].as_str().unwrap_or_default().to_string(),
                name: stat["Metric"]["MetricName"].as_str().unwrap_or_default().to_string(),
                statistic: stat["Stat"].as_str().unwrap_or_default().to_string(),
                dimensions: dimensions(&stat["Metric"]),
            })
            .collect();
    }
    vec![Watched {
        namespace: alarm["Namespace"].as_str().expect("an alarm names its namespace").to_string(),
        name: alarm["MetricName"].as_str().expect("an alarm names its metric").to_string(),
        statistic: alarm["Statistic"].as_str().or(alarm["ExtendedStatistic"].as_str()).unwrap_or_default().to_string(),
        dimensions: dimensions(alarm),
    }]
}

/// The one alarm on `namespace`/`metric`, with its properties.
fn alarm_on<'a>(template: &'a Value, namespace: &str, metric: &str) -> (&'a str, &'a Value) {
    let found: Vec<(&str, &Value)> = alarms(template)
        .into_iter()
        .filter(|(_, alarm)| watched_by(alarm).iter().any(|w| w.namespace == namespace && w.name == metric))
        .collect();
    assert_eq!(found.len(), 1, "exactly one alarm on {namespace} {metric}: {found:?}");
    found[0]
}

fn number(value: &Value, what: &str) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{what} is a whole number, not {value}"))
}

/// `rate(N minutes)` (or hour/hours, minute, day/days) in seconds.
fn rate_seconds(schedule: &str) -> u64 {
    let inner = schedule.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')).expect("a rate() expression");
    let (count, unit) = inner.split_once(' ').expect("rate(N unit)");
    let count: u64 = count.parse().expect("a whole number of units");
    let unit_seconds = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        other => panic!("unknown rate unit {other}"),
    };
    count * unit_seconds
}

/// The dashboard's body: the `Fn::Sub` text parsed as JSON. Substitutions (`${DeployerFunction}`,
/// `${DeployerFailureQueue.QueueName}`, `${AWS::Region}`) stay in it as placeholder strings.
fn dashboard_body(template: &Value) -> Value {
    let dashboards = resources_of_type(template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "exactly one dashboard");
    let body = arn_text(&dashboards[0].1["DashboardBody"]);
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("DashboardBody is not JSON ({err}):\n{body}"))
}

/// Every `${...}` substitution in a `Fn::Sub` text (`${!Literal}` is not one).
fn substitutions(text: &str) -> Vec<String> {
    text.split("${")
        .skip(1)
        .filter(|rest| !rest.starts_with('!'))
        .map(|rest| rest.split_once('}').expect("a closed substitution").0.to_string())
        .collect()
}

/// One line of a dashboard metric widget, shorthand resolved: `"."` repeats the previous line's item there.
#[derive(Debug, Clone)]
struct Drawn {
    namespace: String,
    name: String,
    dimensions: Vec<(String, String)>,
    /// The line's own `stat`, else the widget's.
    stat: String,
}

fn drawn_metrics(widget: &Value) -> Vec<Drawn> {
    let properties = &widget["properties"];
    let mut previous: Vec<String> = Vec::new();
    let mut drawn = Vec::new();
    for line in properties["metrics"].as_array().expect("a metric widget lists metrics") {
        let items = line.as_array().expect("a metric line is a list");
        if items.first().is_some_and(Value::is_object) {
            continue; // a math expression: it draws the lines it refers to, which are listed themselves
        }
        let (options, texts): (Vec<&Value>, Vec<&Value>) = items.iter().partition(|item| item.is_object());
        let texts: Vec<String> = texts
            .iter()
            .enumerate()
            .map(|(i, item)| match item.as_str().expect("a metric line's items are text") {
                "." => previous.get(i).cloned().expect("\".\" with nothing above it"),
                text => text.to_string(),
            })
            .collect();
        assert!(texts.len() >= 2 && texts.len().is_multiple_of(2), "namespace, metric, then name/value pairs: {line}");
        let stat = options.first().and_then(|o| o["stat"].as_str()).or(properties["stat"].as_str());
        drawn.push(Drawn {
            namespace: texts[0].clone(),
            name: texts[1].clone(),
            dimensions: texts[2..].chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect(),
            stat: stat.unwrap_or("Average").to_string(),
        });
        previous = texts;
    }
    drawn
}

fn dashboard_widgets(template: &Value) -> Vec<Value> {
    dashboard_body(template)["widgets"].as_array().expect("the dashboard has widgets").clone()
}

fn drawn_metrics_if_any(widget: &Value) -> Vec<Drawn> {
    if widget["type"] == "metric" { drawn_metrics(widget) } else { vec![] }
}

fn everything_drawn(template: &Value) -> Vec<Drawn> {
    dashboard_widgets(template).iter().flat_map(drawn_metrics_if_any).collect()
}

/// The queue the function's failed async invocations go to.
fn failure_queue(template: &Value) -> String {
    let destination = &the_function(template)["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"];
    destination["Fn::GetAtt"][0].as_str().expect("the on-failure destination is a queue of this stack").to_string()
}

#[test]
fn every_alarm_on_the_deployers_namespace_names_an_emitted_metric_with_exactly_the_deployer_dimension() {
    let template = template();
    let deployer = function_placeholder(&template);
    let emitted_sets = emitted_dimension_sets();
    let mut checked = 0;
    for (name, alarm) in alarms(&template) {
        for watched in watched_by(alarm).into_iter().filter(|w| w.namespace == NAMESPACE) {
            assert!(
                METRICS.iter().any(|m| m.name == watched.name),
                "{name}: the deployer emits no metric {:?}",
                watched.name
            );
            assert_eq!(watched.dimensions, [("Deployer".to_string(), deployer.clone())], "{name}");
            assert!(emitted_sets.contains(&vec!["Deployer".to_string()]), "the binary emits the Deployer set");
            checked += 1;
        }
    }
    assert!(checked >= 2, "the Failed and RolledBack alarms watch the deployer's own metrics");
}

#[test]
fn every_deployer_metric_the_dashboard_draws_is_emitted_with_a_dimension_set_the_binary_emits() {
    let template = template();
    let deployer = function_placeholder(&template);
    let emitted_sets = emitted_dimension_sets();
    let triggers = triggers_with_metrics();
    let ours: Vec<Drawn> = everything_drawn(&template).into_iter().filter(|d| d.namespace == NAMESPACE).collect();
    assert!(!ours.is_empty(), "the dashboard draws the deployer's metrics");
    for line in &ours {
        assert!(METRICS.iter().any(|m| m.name == line.name), "the deployer emits no metric {:?}", line.name);
        let mut names: Vec<String> = line.dimensions.iter().map(|(name, _)| name.clone()).collect();
        names.sort();
        assert!(emitted_sets.contains(&names), "{}: dimension set {names:?} is not one the binary emits", line.name);
        for (dimension, value) in &line.dimensions {
            match dimension.as_str() {
                "Deployer" => assert_eq!(value, &deployer, "{}: another deployer's metrics", line.name),
                "Trigger" => assert!(triggers.contains(&value.as_str()), "{}: no trigger is called {value}", line.name),
                other => panic!("{}: dimension {other}", line.name),
            }
        }
    }
}

#[test]
fn the_dashboard_draws_deploys_problems_retries_and_the_duration_of_every_trigger() {
    let template = template();
    let deployer = function_placeholder(&template);
    let drawn = everything_drawn(&template);
    let draws = |namespace: &str, name: &str, dimensions: &[(&str, &str)], stat: Option<&str>| {
        drawn.iter().any(|d| {
            d.namespace == namespace
                && d.name == name
                && d.dimensions.iter().map(|(n, v)| (n.as_str(), v.as_str())).eq(dimensions.iter().copied())
                && stat.is_none_or(|s| d.stat == s)
        })
    };
    let by_deployer = [("Deployer", deployer.as_str())];
    for name in [
        "Deployed",
        "DriftCorrected",
        "Promoted",
        "RolledBack",
        "Failed",
        "Blocked",
        "WaitingForArtifact",
        "Skipped",
        "Retries",
        "Throttles",
    ] {
        assert!(draws(NAMESPACE, name, &by_deployer, None), "the dashboard does not draw {name}");
    }
    for trigger in triggers_with_metrics() {
        for stat in ["p50", "p99", "Maximum"] {
            let dimensions = [("Deployer", deployer.as_str()), ("Trigger", trigger)];
            assert!(draws(NAMESPACE, "Duration", &dimensions, Some(stat)), "Duration {stat} of trigger {trigger}");
        }
    }
    let by_function = [("FunctionName", deployer.as_str())];
    for name in ["Errors", "Throttles", "Duration"] {
        assert!(draws("AWS/Lambda", name, &by_function, None), "the deployer function's own {name}");
    }
    let failure_queue = arn_text(&json!({ "Fn::GetAtt": [failure_queue(&template), "QueueName"] }));
    let by_queue = [("QueueName", failure_queue.as_str())];
    assert!(draws("AWS/SQS", "ApproximateNumberOfMessagesVisible", &by_queue, None), "the failure queue's depth");

    // Durations are drawn against the function's own timeout.
    let timeout_ms = number(&the_function(&template)["Timeout"], "Timeout") * 1000;
    for widget in dashboard_widgets(&template) {
        if drawn_metrics_if_any(&widget).iter().any(|d| d.name == "Duration") {
            let lines = widget["properties"]["annotations"]["horizontal"].as_array().cloned().unwrap_or_default();
            let marked: Vec<u64> = lines.iter().filter_map(|l| l["value"].as_u64()).collect();
            assert_eq!(marked, [timeout_ms], "{}: the timeout line", widget["properties"]["title"]);
        }
    }
}

#[test]
fn the_dashboard_shows_every_alarm_and_substitutes_only_what_the_template_defines() {
    let template = template();
    let shown: Vec<Value> = dashboard_widgets(&template)
        .iter()
        .filter(|w| w["type"] == "alarm")
        .flat_map(|w| one_or_many(&w["properties"]["alarms"]))
        .collect();
    for (name, _) in alarms(&template) {
        assert!(shown.contains(&json!(format!("${{{name}.Arn}}"))), "the dashboard does not show alarm {name}");
    }
    let dashboard = resources_of_type(&template, "AWS::CloudWatch::Dashboard")[0].1;
    for substitution in substitutions(&arn_text(&dashboard["DashboardBody"])) {
        let defined = substitution.starts_with("AWS::") || {
            let name = substitution.split('.').next().unwrap_or_default();
            template["Resources"].get(name).is_some() || template["Parameters"].get(name).is_some()
        };
        assert!(defined, "the dashboard substitutes ${{{substitution}}}, which the template does not define");
    }
    let url = arn_text(&template["Outputs"]["DashboardUrl"]["Value"]);
    assert!(url.ends_with("#dashboards/dashboard/${DeployerDashboard}"), "{url}");
}

#[test]
fn the_deployer_errors_the_failure_queue_failed_deploys_and_rollbacks_each_have_an_alarm() {
    let template = template();
    let deployer = function_placeholder(&template);
    let fires_from_one = |alarm: &Value| {
        alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" && alarm["Threshold"].as_f64() == Some(1.0)
    };

    let (name, errors) = alarm_on(&template, "AWS/Lambda", "Errors");
    let watched = &watched_by(errors)[0];
    assert_eq!(watched.dimensions, [("FunctionName".to_string(), deployer.clone())], "{name}: the deployer's own");
    assert_eq!(watched.statistic, "Sum", "{name}");
    assert!(fires_from_one(errors), "{name}");
    // One transient error whose retry succeeds is one period with errors: it must not page; errors over longer do.
    let evaluated = number(&errors["EvaluationPeriods"], "EvaluationPeriods");
    let needed = number(&errors["DatapointsToAlarm"], "DatapointsToAlarm");
    assert!((2..=evaluated).contains(&needed), "{name}: {needed} of {evaluated} periods");
    assert!(number(&errors["Period"], "Period") * evaluated <= 3600, "{name}: sustained errors page within an hour");

    let (name, parked) = alarm_on(&template, "AWS/SQS", "ApproximateNumberOfMessagesVisible");
    let queue = arn_text(&json!({ "Fn::GetAtt": [failure_queue(&template), "QueueName"] }));
    assert_eq!(watched_by(parked)[0].dimensions, [("QueueName".to_string(), queue)], "{name}: the failure queue");
    assert_eq!(watched_by(parked)[0].statistic, "Maximum", "{name}");
    assert!(fires_from_one(parked), "{name}: one parked message is enough");

    let (name, failed) = alarm_on(&template, NAMESPACE, "Failed");
    assert_eq!(watched_by(failed)[0].statistic, "Maximum", "{name}: a count of states, not of events");
    assert!(fires_from_one(failed), "{name}");

    let (name, rolled_back) = alarm_on(&template, NAMESPACE, "RolledBack");
    assert_eq!(watched_by(rolled_back)[0].statistic, "Sum", "{name}: rollbacks made, each counted once");
    assert!(fires_from_one(rolled_back), "{name}");
}

#[test]
fn the_failed_deploys_alarm_window_always_holds_a_scheduled_sweep() {
    let template = template();
    let (name, failed) = alarm_on(&template, NAMESPACE, "Failed");
    let period = number(&failed["Period"], "Period");
    let evaluated = failed.get("EvaluationPeriods").map_or(1, |v| number(v, "EvaluationPeriods"));
    let needed = failed.get("DatapointsToAlarm").map_or(evaluated, |v| number(v, "DatapointsToAlarm"));
    assert_eq!(needed, 1, "{name}: any period in the window that saw a Failed one is enough");
    // Sweeps start every schedule interval and report when they end, up to the timeout later: two reports can be
    // as far apart as the interval plus the timeout.
    let sweep_every = rate_seconds(template["Parameters"]["SweepSchedule"]["Default"].as_str().expect("a default"));
    let timeout = number(&the_function(&template)["Timeout"], "Timeout");
    assert!(period * evaluated >= sweep_every + timeout, "{name}: {period} s x {evaluated} can miss every sweep");
}

#[test]
fn every_alarm_says_what_it_means_and_what_to_do_and_treats_missing_data_as_not_breaching() {
    let template = template();
    for (name, alarm) in alarms(&template) {
        let description = arn_text(&alarm["AlarmDescription"]);
        assert!((150..=1024).contains(&description.len()), "{name}: {} characters of description", description.len());
        assert_eq!(alarm["TreatMissingData"], "notBreaching", "{name}");
    }
}

#[test]
fn alarms_notify_the_topic_only_when_an_alarm_email_is_set() {
    let template = template();
    assert_eq!(template["Parameters"]["AlarmEmail"]["Default"], "");
    assert_eq!(
        template["Conditions"]["HasAlarmEmail"],
        json!({ "Fn::Not": [{ "Fn::Equals": [{ "Ref": "AlarmEmail" }, ""] }] })
    );
    let topics = resources_of_type(&template, "AWS::SNS::Topic");
    assert_eq!(topics.len(), 1, "one alarm topic");
    let (topic, properties) = topics[0];
    assert_eq!(template["Resources"][topic]["Condition"], "HasAlarmEmail", "no address, no topic");
    assert_eq!(properties["Subscription"], json!([{ "Protocol": "email", "Endpoint": { "Ref": "AlarmEmail" } }]));
    let notify = json!({ "Fn::If": ["HasAlarmEmail", [{ "Ref": topic }], { "Ref": "AWS::NoValue" }] });
    for (name, alarm) in alarms(&template) {
        assert_eq!(alarm["AlarmActions"], notify, "{name}: AlarmActions");
        assert_eq!(alarm["OKActions"], notify, "{name}: OKActions");
    }
    let output = &template["Outputs"]["AlarmTopicArn"];
    assert_eq!((&output["Condition"], &output["Value"]), (&json!("HasAlarmEmail"), &json!({ "Ref": topic })));
}

#[test]
fn the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use_only_for_this_stacks_alarms() {
    let template = template();
    let (_, topic) = resources_of_type(&template, "AWS::SNS::Topic")[0];
    // CloudWatch cannot publish to a topic under the AWS-managed alias/aws/sns: its policy cannot be changed.
    let key =
        topic["KmsMasterKeyId"]["Fn::GetAtt"][0].as_str().expect("the topic is encrypted with a key of the stack");
    let key = &template["Resources"][key];
    assert_eq!(key["Type"], "AWS::KMS::Key");
    assert_eq!(key["Condition"], "HasAlarmEmail");
    let statements = one_or_many(&key["Properties"]["KeyPolicy"]["Statement"]);
    let cloudwatch: Vec<&Value> =
        statements.iter().filter(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com").collect();
    assert_eq!(cloudwatch.len(), 1, "{statements:?}");
    assert_eq!(cloudwatch[0]["Action"], json!(["kms:Decrypt", "kms:GenerateDataKey*"]));
    assert_eq!(cloudwatch[0]["Condition"]["StringEquals"]["aws:SourceAccount"], json!({ "Ref": "AWS::AccountId" }));
    let alarm_arns = arn_text(&cloudwatch[0]["Condition"]["ArnLike"]["aws:SourceArn"]);
    assert_eq!(
        alarm_arns,
        "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:${AWS::StackName}-*"
    );
    // Which holds only if every alarm's name starts with the stack's.
    for (name, alarm) in alarms(&template) {
        assert!(
            arn_text(&alarm["AlarmName"]).starts_with("${AWS::StackName}-"),
            "{name}: named outside the key's grant"
        );
    }
    for statement in statements.iter().filter(|s| s["Principal"].get("Service").is_some()) {
        assert_eq!(statement, cloudwatch[0], "no other service may use the key");
    }
}

#[test]
fn every_queue_is_encrypted_and_repeated_failures_end_in_the_alarmed_failure_queue() {
    let template = template();
    let failure_queue = failure_queue(&template);
    let (_, parked) = alarm_on(&template, "AWS/SQS", "ApproximateNumberOfMessagesVisible");
    let alarmed = &parked["Dimensions"][0]["Value"]["Fn::GetAtt"][0];
    assert_eq!(alarmed, &json!(failure_queue));
    for (name, queue) in resources_of_type(&template, "AWS::SQS::Queue") {
        assert!(
            queue["SqsManagedSseEnabled"] == true || queue.get("KmsMasterKeyId").is_some(),
            "{name} is not encrypted"
        );
        if name != failure_queue {
            let dead_letters = &queue["RedrivePolicy"]["deadLetterTargetArn"];
            assert_eq!(
                dead_letters,
                &json!({ "Fn::GetAtt": [failure_queue, "Arn"] }),
                "{name}: messages failing repeatedly"
            );
            assert!(queue["RedrivePolicy"]["maxReceiveCount"].as_u64().is_some_and(|n| n >= 2), "{name}");
        }
    }
}

#[test]
fn the_function_logs_json_at_the_level_of_the_log_level_parameter_and_no_longer_sets_rust_log() {
    let template = template();
    let function = the_function(&template);
    let logging = &function["LoggingConfig"];
    assert_eq!(logging["LogFormat"], "JSON", "Lambda filters by level only JSON logs");
    assert_eq!(logging["ApplicationLogLevel"], json!({ "Ref": "LogLevel" }));
    assert_eq!(logging["SystemLogLevel"], "WARN");
    assert_eq!(
        logging["LogGroup"],
        json!({ "Ref": "DeployerLogGroup" }),
        "the stack's own log group, with its retention"
    );
    assert!(template["Resources"]["DeployerLogGroup"]["Properties"]["RetentionInDays"].as_u64().is_some());
    let parameter = &template["Parameters"]["LogLevel"];
    // Lambda files the metrics line (no level) as INFO: a level above INFO would drop the metrics the alarms watch.
    assert_eq!(parameter["AllowedValues"], json!(["TRACE", "DEBUG", "INFO"]));
    assert_eq!(parameter["Default"], "INFO");
    let variables = function["Environment"]["Variables"].as_object().expect("environment variables");
    for name in ["RUST_LOG", "AWS_LAMBDA_LOG_LEVEL"] {
        assert!(!variables.contains_key(name), "{name}: the level comes from LoggingConfig (AWS_LAMBDA_LOG_LEVEL)");
    }
}
