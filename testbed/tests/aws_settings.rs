//! `POST /_testbed/config` changes a running layer (its own Testbed: the settings are global).

mod aws_support;

use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::LastUpdateStatus;
use aws_support::*;
use serde_json::json;
use testbed::up::{Testbed, TestbedOptions};

#[tokio::test]
async fn posted_settings_change_quotas_and_the_in_progress_time_of_a_running_layer() {
    // The fast model (a fixed 300 ms), so posting 1.5 s without jitter is a change the update shows.
    let tb = Testbed::start(TestbedOptions::fast()).await.unwrap();
    let lambda = lambda(&tb).await;
    let (status, _) =
        control(&tb, "POST", "/_testbed/config", Some(json!({"quotas": false, "update_in_progress_ms": 1500}))).await;
    assert_eq!(status, 200);
    for _ in 0..40 {
        lambda.list_functions().send().await.expect("no quota: never throttled");
    }
    let name = unique("settings");
    create_function(&lambda, &name, &zip("one")).await;
    let started = Instant::now();
    let out = lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.unwrap();
    assert_eq!(out.last_update_status(), Some(&LastUpdateStatus::InProgress));
    settled(&lambda, &name).await;
    assert!(started.elapsed() >= Duration::from_millis(1500));

    let (_, config) =
        control(&tb, "POST", "/_testbed/config", Some(json!({"quotas": true, "control_plane_per_second": 2.0}))).await;
    assert_eq!(config["update_in_progress_ms"], json!(1500), "fields not posted keep their values");
    let results: Vec<bool> = {
        let mut r = Vec::new();
        for _ in 0..3 {
            r.push(lambda.list_functions().send().await.is_ok());
        }
        r
    };
    assert_eq!(results, [true, true, false], "a burst of 2 at 2 req/s, then 429");
}
