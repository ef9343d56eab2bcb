//! The committed CRD is what the Rust types generate, and the apiserver accepts the examples and rejects bad specs
//! naming the field (the same checks a real apiserver makes from the CRD's schema).

mod support;

use kube::api::{Patch, PatchParams};
use lambda_deployer::crd::LambdaDeployment;
use serde_json::{Value, json};
use support::World;

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed = std::fs::read_to_string("crds/lambdadeployment.yaml").unwrap();
    assert!(
        committed == lambda_deployer::crd::crd_yaml(),
        "crds/lambdadeployment.yaml is stale: run `make crds` and commit the result"
    );
}

#[tokio::test]
async fn examples_are_accepted_and_invalid_specs_are_rejected_naming_the_field() {
    let world = World::new("crd-examples").await;
    for file in ["examples/orders.yaml", "examples/artifact-override.yaml"] {
        support::apply_file(&world.admin, file).await;
    }
    let lds: kube::Api<LambdaDeployment> = kube::Api::all(world.admin.clone());
    let names: Vec<String> =
        lds.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|ld| ld.metadata.name).collect();
    for name in ["orders-preview", "orders-staging", "orders-production", "legacy-reports"] {
        assert!(names.contains(&name.to_string()), "{name} missing from {names:?}");
    }

    let valid = json!({
        "apiVersion": "lambda-deployer.dev/v1",
        "kind": "LambdaDeployment",
        "metadata": {"name": "bad", "namespace": world.namespace},
        "spec": {
            "functionARN": "arn:aws:lambda:us-east-1:123456789012:function:orders",
            "functionName": "orders",
            "commit": "abcdef1"
        }
    });
    let cases: [(&str, Value, &str); 5] = [
        ("commit", json!("HEAD"), "spec.commit"),
        ("commit", json!("abc"), "spec.commit"),
        ("functionARN", json!("arn:aws:s3:::bucket"), "spec.functionARN"),
        ("functionName", json!("../etc"), "spec.functionName"),
        ("suspend", json!("yes"), "spec.suspend"),
    ];
    let api = world.lds();
    for (field, value, named) in cases {
        let mut object = valid.clone();
        object["spec"][field] = value.clone();
        let err = api.patch("bad", &PatchParams::apply("tests"), &Patch::Apply(&object)).await.unwrap_err();
        let kube::Error::Api(status) = err else { panic!("{field}={value}: {err}") };
        assert_eq!(status.code, 422, "{field}={value}: {status:?}");
        assert!(status.message.contains(named), "{field}={value}: {}", status.message);
    }
    let mut missing = valid.clone();
    missing["spec"].as_object_mut().unwrap().remove("functionARN");
    let err = api.patch("bad", &PatchParams::apply("tests"), &Patch::Apply(&missing)).await.unwrap_err();
    assert!(err.to_string().contains("spec.functionARN"), "{err}");
}
