//! The SAM template grants the deployer only what it needs, on only the resources it is configured for.
//! template.yaml uses full-form intrinsics (`Ref:`, `Fn::Sub:`), so it parses as plain YAML here.

use std::path::Path;

use lambda_deployer::crd::OWNER_TAG;
use serde_json::{Value, json};
use testbed::identity::DEPLOYER_GROUP;

const OWN_ACCOUNT_FUNCTIONS: &str = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:*";
const ARTIFACT_OBJECTS: &str = "arn:${AWS::Partition}:s3:::${ArtifactBucket}/*";
const ARTIFACT_BUCKET: &str = "arn:${AWS::Partition}:s3:::${ArtifactBucket}";
const THE_CLUSTER: &str = "arn:${AWS::Partition}:eks:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterName}";

fn template() -> Value {
    serde_saphyr::from_str(include_str!("../template.yaml")).expect("template.yaml parses as plain YAML")
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

/// The ARN text of a resource expression: `Ref: X` reads as `${X}`, `Fn::GetAtt: [R, A]` as `${R.A}`.
fn arn_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(map) if map.contains_key("Fn::Sub") => match &map["Fn::Sub"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts[0].as_str().expect("Fn::Sub text").to_string(),
            other => panic!("unexpected Fn::Sub {other}"),
        },
        Value::Object(map) if map.contains_key("Ref") => format!("${{{}}}", map["Ref"].as_str().expect("Ref name")),
        Value::Object(map) if map.contains_key("Fn::GetAtt") => {
            let parts = map["Fn::GetAtt"].as_array().expect("Fn::GetAtt [resource, attribute]");
            format!("${{{}.{}}}", parts[0].as_str().unwrap_or_default(), parts[1].as_str().unwrap_or_default())
        }
        other => panic!("cannot tell the scope of resource {other}"),
    }
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
        assert_eq!(statement.condition, json!({ "ForAllValues:StringEquals": { "aws:TagKeys": [OWNER_TAG] } }));
    }
}

#[test]
fn s3_access_is_read_only_and_limited_to_the_artifact_bucket() {
    let template = template();
    for statement in statements_granting(&template, "s3") {
        for action in &statement.actions {
            let expected = match action.as_str() {
                "s3:GetObject" | "s3:GetObjectVersion" => ARTIFACT_OBJECTS,
                "s3:ListBucket" => ARTIFACT_BUCKET,
                other => panic!("{}: the deployer does not need {other}", statement.sid),
            };
            assert_eq!(statement.resources, [expected], "{}: {action}", statement.sid);
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
        "RUST_LOG",
    ] {
        assert!(variables.contains_key(name), "{name} is not set");
    }
    assert_eq!(template["Parameters"]["KeyTemplate"]["Default"], "{functionName}/{commit}.zip");
}
