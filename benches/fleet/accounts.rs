//! (h) One deployer, three accounts: a fleet spread evenly over the deployer's own account and two target accounts
//! (reached through their roles), swept (initial, in sync, 1% drifted). Lambda's quotas are per account, so each
//! account has its own floor; the sweep's floor is the slowest account's. Calls, 429s and updates per account.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use aws_sdk_lambda::primitives::Blob;
use futures::StreamExt;
use lambda_deployer::deployer::Deployer;
use serde::Serialize;
use serde_json::{Value, json};
use testbed::aws::Call;
use testbed::identity::{ACCOUNT_ID, AwsIdentity, REGION, TARGET_ACCOUNTS};
use testbed::up::TARGET_ROLE;

use super::support::{Updates, World, commit, lambda_in, zip};
use super::{
    BenchResult, DEPLOYER_KUBE_USER, FloorInput, Quota, SETUP_CONCURRENCY, floor, set_quotas, wait_settled, writes_of,
};

pub const ACCOUNTS: [&str; 3] = [ACCOUNT_ID, TARGET_ACCOUNTS[0], TARGET_ACCOUNTS[1]];

/// One account's share of a scenario.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceFigures {
    account: String,
    lds: usize,
    functions_in_account: usize,
    floor_s: f64,
    floor: String,
    /// Lambda calls the deployer made there (with its own credentials or the role's session).
    lambda_calls: u64,
    throttled_429: u64,
    update_function_code: u64,
    /// Seconds after the scenario's first call when the account's first Lambda call went out.
    start_s: f64,
    /// Seconds after the scenario's first call when the account's last Lambda call ended.
    done_s: f64,
    /// `Operation` → Lambda calls there (all statuses).
    calls: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsScenario {
    name: String,
    wall_s: f64,
    /// The slowest account's floor.
    floor_s: f64,
    ratio_to_floor: f64,
    assume_role_calls: u64,
    status_writes: u64,
    /// The artifact bucket's listing: pages, and seconds from the first page's request to the last page's answer.
    bucket_pages: u64,
    bucket_listing_s: f64,
    places: Vec<PlaceFigures>,
    summary: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsReport {
    per_account: usize,
    setup_s: f64,
    scenarios: Vec<AccountsScenario>,
}

struct Member {
    account: &'static str,
    ld: String,
    function: String,
}

pub struct AccountsFleet {
    per_account: usize,
    world: World,
    members: Vec<Member>,
    admins: HashMap<&'static str, aws_sdk_lambda::Client>,
    setup_s: f64,
}

impl AccountsFleet {
    /// `per_account` functions in each account, their artifacts and LDs. Quotas are off during setup.
    pub async fn create(per_account: usize) -> BenchResult<AccountsFleet> {
        let started = Instant::now();
        let world = World::with_updates(&format!("accounts-{per_account}"), Updates::Realistic).await;
        set_quotas(&world, false);
        let mut admins = HashMap::new();
        for account in ACCOUNTS {
            admins.insert(account, lambda_in(world.testbed, account, REGION).await);
        }
        let members: Vec<Member> = ACCOUNTS
            .iter()
            .flat_map(|&account| {
                let world = &world;
                (0..per_account).map(move |i| Member {
                    account,
                    ld: format!("ld-{}-{i:04}", &account[..4]),
                    function: world.function_name(&format!("{}-{i:04}", &account[..4])),
                })
            })
            .collect();
        let (world_ref, admins_ref) = (&world, &admins);
        futures::stream::iter(&members)
            .map(|m| async move {
                let arn = super::support::create_function_with(
                    &admins_ref[m.account],
                    m.account,
                    REGION,
                    &m.function,
                    "placeholder",
                )
                .await;
                let c = commit(&format!("{}-1", m.function));
                world_ref
                    .upload_with_checksum(&format!("{}/{c}.zip", m.function), &format!("release 1 of {}", m.function))
                    .await;
                world_ref.apply_ld(&m.ld, &arn, &m.function, &c).await;
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
        set_quotas(&world, true);
        let setup_s = started.elapsed().as_secs_f64();
        println!(
            "\naccounts fleet: {per_account} functions, artifacts and LDs in each of {} accounts, created in {setup_s:.1} s (quotas off)",
            ACCOUNTS.len()
        );
        Ok(AccountsFleet { per_account, world, members, admins, setup_s })
    }

    async fn deployer(&self) -> Deployer {
        let template = format!("arn:aws:iam::{{account}}:role/{TARGET_ROLE}");
        let allowed = format!("arn:aws:lambda:{REGION}:*:function:*");
        self.world.deployer(&[("TARGET_ROLE_ARN", &template), ("ALLOWED_FUNCTION_ARNS", &allowed)]).await
    }

    /// Changes the code of 1% of each account's functions out of band (quotas off meanwhile); how many per account.
    async fn drift(&self) -> BenchResult<HashMap<&'static str, usize>> {
        set_quotas(&self.world, false);
        let count = self.per_account.div_ceil(100);
        let step = self.per_account / count;
        let mut drifted = HashMap::new();
        for account in ACCOUNTS {
            let lambda = &self.admins[account];
            let members = self.members.iter().filter(|m| m.account == account).step_by(step).take(count);
            for (i, m) in members.enumerate() {
                lambda
                    .update_function_code()
                    .function_name(&m.function)
                    .zip_file(Blob::new(zip(&format!("hotfix {i} of {}", m.function)).0))
                    .send()
                    .await
                    .map_err(|e| {
                        format!("drifting {}: {}", m.function, aws_sdk_lambda::error::DisplayErrorContext(e))
                    })?;
                wait_settled(lambda, &m.function).await?;
                *drifted.entry(account).or_insert(0) += 1;
            }
        }
        set_quotas(&self.world, true);
        Ok(drifted)
    }

    async fn functions_in(&self, account: &str) -> BenchResult<usize> {
        let settings = self.admins[account].get_account_settings().send().await?;
        Ok(settings.account_usage().map_or(0, |u| u.function_count().max(0) as usize))
    }

    /// One sweep, measured per account. `updates`: the UpdateFunctionCode calls each account needs; `tags`: whether
    /// the sweep claims every function (the first).
    async fn measure(
        &self,
        name: &str,
        deployer: &Deployer,
        quota: Quota,
        updates: &HashMap<&'static str, usize>,
        tags: bool,
    ) -> BenchResult<AccountsScenario> {
        set_quotas(&self.world, false);
        let mut in_account = HashMap::new();
        for account in ACCOUNTS {
            in_account.insert(account, self.functions_in(account).await?);
        }
        set_quotas(&self.world, true);
        let aws = self.world.testbed.aws();
        aws.clear_calls();
        self.world.testbed.kube().clear_requests();
        let started = Instant::now();
        let summary = deployer.handle(&json!({"action": "sweep"}), None).await?;
        let wall_s = started.elapsed().as_secs_f64();
        let log = aws.calls();
        let first_ms = log.calls.iter().map(|c| c.at_ms).min().unwrap_or_default() as f64;
        let mut keys: BTreeSet<String> =
            aws.sessions().into_iter().filter(|s| s.role_arn.ends_with(TARGET_ROLE)).map(|s| s.access_key_id).collect();
        keys.insert(AwsIdentity::deployer().access_key_id);
        let ours: Vec<_> =
            log.calls.iter().filter(|c| c.access_key_id.as_ref().is_some_and(|k| keys.contains(k))).collect();
        let mut places = Vec::new();
        for account in ACCOUNTS {
            let here: Vec<&Call> = ours
                .iter()
                .copied()
                .filter(|c| c.service == "lambda" && c.account.as_deref() == Some(account))
                .collect();
            let (writes, _) = writes_of(&here);
            let mut calls = BTreeMap::new();
            for call in &here {
                *calls.entry(call.operation.clone()).or_insert(0) += 1;
            }
            let needed = updates.get(account).copied().unwrap_or(0);
            let input = FloorInput {
                observed: self.per_account,
                in_account: in_account[account],
                updates: needed,
                tags: if tags { self.per_account } else { 0 },
                confirm: needed > 0,
                listable: true,
            };
            let (floor_s, _, floor_text) = floor(input, quota, &writes);
            let start_ms = here.iter().map(|c| c.at_ms).min().unwrap_or_default() as f64;
            let done_ms = here.iter().map(|c| c.at_ms + c.duration_ms).max().unwrap_or_default() as f64;
            places.push(PlaceFigures {
                account: account.to_string(),
                lds: self.per_account,
                functions_in_account: in_account[account],
                floor_s,
                floor: floor_text,
                lambda_calls: here.len() as u64,
                throttled_429: here.iter().filter(|c| c.status == 429).count() as u64,
                update_function_code: here.iter().filter(|c| c.operation == "UpdateFunctionCode" && c.applied).count()
                    as u64,
                start_s: (start_ms - first_ms).max(0.0) / 1000.0,
                done_s: (done_ms - first_ms).max(0.0) / 1000.0,
                calls,
            });
        }
        let floor_s = places.iter().map(|p| p.floor_s).fold(0.0, f64::max);
        let requests = self.world.testbed.kube().requests();
        let status_writes =
            requests.iter().filter(|r| r.user == DEPLOYER_KUBE_USER && r.is_status_write()).count() as u64;
        let pages: Vec<&Call> = ours.iter().copied().filter(|c| c.operation == "ListObjectsV2").collect();
        let span = |first: Option<u64>, last: Option<u64>| match (first, last) {
            (Some(first), Some(last)) => (last - first) as f64 / 1000.0,
            _ => 0.0,
        };
        let bucket_listing_s =
            span(pages.iter().map(|c| c.at_ms).min(), pages.iter().map(|c| c.at_ms + c.duration_ms).max());
        Ok(AccountsScenario {
            name: name.to_string(),
            wall_s,
            floor_s,
            ratio_to_floor: if floor_s > 0.0 { wall_s / floor_s } else { f64::NAN },
            assume_role_calls: ours.iter().filter(|c| c.operation == "AssumeRole").count() as u64,
            status_writes,
            bucket_pages: pages.len() as u64,
            bucket_listing_s,
            places,
            summary: serde_json::to_value(&summary)?,
        })
    }

    pub async fn run(&self, quota: Quota) -> BenchResult<AccountsReport> {
        let deployer = self.deployer().await;
        let all: HashMap<&'static str, usize> = ACCOUNTS.iter().map(|&a| (a, self.per_account)).collect();
        let mut scenarios = vec![self.measure("h: initial sweep, 3 accounts", &deployer, quota, &all, true).await?];
        scenarios.push(self.measure("h: sweep, all in sync", &deployer, quota, &HashMap::new(), false).await?);
        let drifted = self.drift().await?;
        let total: usize = drifted.values().sum();
        let name = format!("h: sweep, 1% drifted ({total})");
        scenarios.push(self.measure(&name, &deployer, quota, &drifted, false).await?);
        Ok(AccountsReport { per_account: self.per_account, setup_s: self.setup_s, scenarios })
    }
}

pub fn print(report: &AccountsReport) {
    println!(
        "\n== {} accounts × {} LDs/functions (setup {:.1} s): the floor is the slowest account's ==",
        ACCOUNTS.len(),
        report.per_account,
        report.setup_s
    );
    println!(
        "{:<34} {:>8} {:>8} {:>7} {:>7} {:>6}   per account: lambda calls / 429 / UFC / floor s / start s / done s",
        "scenario", "wall s", "floor s", "×floor", "assume", "status"
    );
    for s in &report.scenarios {
        let places: Vec<String> = s
            .places
            .iter()
            .map(|p| {
                format!(
                    "{}: {}/{}/{}/{:.2}/{:.2}/{:.2}",
                    p.account, p.lambda_calls, p.throttled_429, p.update_function_code, p.floor_s, p.start_s, p.done_s
                )
            })
            .collect();
        println!(
            "{:<34} {:>8.2} {:>8.3} {:>7.2} {:>7} {:>6}   {}",
            s.name,
            s.wall_s,
            s.floor_s,
            s.ratio_to_floor,
            s.assume_role_calls,
            s.status_writes,
            places.join("  ")
        );
    }
    for s in &report.scenarios {
        println!("  {}: artifact bucket listed in {} pages, {:.2} s", s.name, s.bucket_pages, s.bucket_listing_s);
        for p in &s.places {
            println!("    {} ({} functions): floor {}", p.account, p.functions_in_account, p.floor);
            let calls: Vec<String> = p.calls.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("      calls: {}", calls.join(", "));
        }
    }
    println!("\nMarkdown ({} accounts × {} LambdaDeployments):\n", ACCOUNTS.len(), report.per_account);
    println!(
        "| scenario | wall | floor (slowest account) | × floor | status writes | per account: Lambda calls, 429, UpdateFunctionCode |"
    );
    println!("|---|---|---|---|---|---|");
    for s in &report.scenarios {
        let places: Vec<String> = s
            .places
            .iter()
            .map(|p| format!("{}: {}, {}, {}", p.account, p.lambda_calls, p.throttled_429, p.update_function_code))
            .collect();
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2} | {} | {} |",
            s.name,
            s.wall_s,
            s.floor_s,
            s.ratio_to_floor,
            s.status_writes,
            places.join("; ")
        );
    }
}
