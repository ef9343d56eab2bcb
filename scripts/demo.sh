#!/usr/bin/env bash
# `make demo`: lambda-deployer end to end on this machine, with no AWS account.
# Starts the testbed (moto + AWS layer + Kubernetes API server), applies the CRD, RBAC and examples/orders.yaml (one
# artifact promoted to three functions) with kubectl, creates the three functions, uploads artifacts, runs the real
# deployer binary under `cargo lambda watch` (the Lambda runtime emulator) and invokes it with a plan, an S3
# notification, an EventBridge Object Created event and a scheduled sweep that corrects out-of-band drift.
# Then a guarded release (examples/canary.yaml): a good commit promoted through a canary judged by its own error rate,
# and a bad one rolled back by itself, the deployer waking itself through its SQS queue.
# Prints `kubectl get ld -A` and each function's CodeSha256 before and after; exits non-zero unless every function
# runs its declared artifact and the canaries ended as they should. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.demo
example=examples/orders.yaml
canary=examples/canary.yaml
export PATH="$root/.venv/bin:$PATH"
export RUST_LOG="${RUST_LOG:-info}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
fail() { printf '\033[31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }

# Background processes run in process groups of their own so that cleanup stops their children too.
groups=()
cleanup() {
    for pid in "${groups[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${groups[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# Runs `$2...` once a second until it succeeds, for at most $1 seconds.
wait_for() {
    local seconds=$1
    shift
    for ((i = 0; i < seconds; i++)); do
        if "$@" 2>/dev/null; then return 0; fi
        sleep 1
    done
    return 1
}

step "Building the testbed and the deployer (the first run compiles for a few minutes)"
cargo build -q -p testbed --bin testbed -p lambda-deployer --bin lambda-deployer

rm -rf "$demo"
mkdir -p "$demo/artifacts"

step "Starting the testbed: moto, the AWS layer and a Kubernetes API server, all on 127.0.0.1"
# Lambda reports invocation metrics by the minute; the demo's canary judges after 5 s, so metrics show after 1 s.
setsid "$root/target/debug/testbed" up --dir "$demo/testbed" --metrics-delay-ms 1000 >"$demo/testbed.log" 2>&1 &
groups+=($!)
wait_for 120 test -s "$demo/testbed/env" || fail "the testbed did not come up (see $demo/testbed.log)"
sed -n '/^testbed up/,$p' "$demo/testbed.log"
# The deployer's environment: AWS endpoint and credentials, CLUSTER_NAME, ARTIFACT_BUCKET; KUBECONFIG for kubectl.
# shellcheck source=/dev/null
source "$demo/testbed/env"
aws() { command aws --endpoint-url "$AWS_ENDPOINT_URL" --region "$AWS_REGION" "$@"; }
account=$(aws sts get-caller-identity --query Account --output text)

step "Kubernetes: the LambdaDeployment CRD, the deployer's RBAC, and $example"
show kubectl apply -k crds
show kubectl apply -f "$example"

# What the example declares: namespace, name, function ARN, artifact name and commit of each LambdaDeployment.
declare -a lds=()
declare -A fn artifact commit before
while read -r ns name function_arn artifact_name desired; do
    ld=$ns/$name
    lds+=("$ld")
    fn[$ld]=${function_arn##*:function:} artifact[$ld]=$artifact_name commit[$ld]=$desired
done < <(kubectl get ld -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name} {.spec.functionARN} {.spec.functionName} {.spec.commit}{"\n"}{end}')
((${#lds[@]})) || fail "$example declares no LambdaDeployment"

# A zip holding a `bootstrap` that says what it is.
make_zip() {
    python3 - "$@" <<'EOF'
import sys, zipfile
out, text = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("bootstrap", date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = 0o755 << 16
    z.writestr(info, f"#!/bin/sh\necho '{text}'\n")
EOF
}
sha256_b64() { python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"; }
code_sha() { aws lambda get-function --function-name "$1" --query Configuration.CodeSha256 --output text; }
key_of() { echo "${artifact[$1]}/${commit[$1]}.zip"; }
zip_of() { echo "$demo/artifacts/${artifact[$1]}-${commit[$1]}.zip"; }

step "AWS: the functions the example targets, running their initial code (account $account)"
make_zip "$demo/artifacts/initial.zip" "initial code"
for ld in "${lds[@]}"; do
    aws lambda create-function --function-name "${fn[$ld]}" --runtime provided.al2023 --architectures arm64 \
        --handler bootstrap --role "arn:aws:iam::$account:role/testbed-function" \
        --zip-file "fileb://$demo/artifacts/initial.zip" --query FunctionArn --output text
    before[$ld]=$(code_sha "${fn[$ld]}")
    make_zip "$(zip_of "$ld")" "${artifact[$ld]} at ${commit[$ld]}"
done

# Uploads an artifact as CI would (with a SHA-256 checksum) and prints the object's version id.
upload() {
    local key=$1 file=$2
    printf '\033[2m$ aws s3api put-object --bucket %s --key %s --checksum-algorithm SHA256 ...\033[0m\n' "$ARTIFACT_BUCKET" "$key" >&2
    aws s3api put-object --bucket "$ARTIFACT_BUCKET" --key "$key" --body "$file" --checksum-algorithm SHA256 \
        --query VersionId --output text
}

# Writes the event S3 sends for an uploaded object, from a fixture in AWS's documented shape.
render_event() {
    local fixture=$1 out=$2 key=$3 version=$4 size etag
    read -r size etag < <(aws s3api head-object --bucket "$ARTIFACT_BUCKET" --key "$key" --version-id "$version" \
        --query '[ContentLength, ETag]' --output text)
    python3 - "$fixture" "$out" "$ARTIFACT_BUCKET" "$key" "$version" "$size" "${etag//\"/}" <<'EOF'
import json, sys
from urllib.parse import quote_plus
fixture, out, bucket, key, version, size, etag = sys.argv[1:]
event = json.load(open(fixture))
if "Records" in event:  # classic S3 notification: keys are URL-encoded
    for record in event["Records"]:
        record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
        record["s3"]["object"].update(key=quote_plus(key, safe="/"), versionId=version, size=int(size), eTag=etag)
else:  # EventBridge Object Created: raw key
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"].update({"key": key, "version-id": version, "size": int(size), "etag": etag})
json.dump(event, open(out, "w"), indent=2)
EOF
}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
invoke() {
    printf '\033[2m$ cargo lambda invoke lambda-deployer --data-file %s\033[0m\n' "${1#"$root"/}"
    cargo lambda invoke lambda-deployer --invoke-address 127.0.0.1 --invoke-port "$port" --data-file "$1" \
        --output-format json | python3 -m json.tool
}

step "The deployer: the real lambda-deployer binary under the Lambda runtime emulator (cargo lambda watch)"
# Its own queue: a canary's next step is a message to itself, delayed until the step is due.
ROLLOUT_QUEUE_URL=$(aws sqs create-queue --queue-name lambda-deployer-rollouts --query QueueUrl --output text)
export ROLLOUT_QUEUE_URL
echo "CLUSTER_NAME=$CLUSTER_NAME ARTIFACT_BUCKET=$ARTIFACT_BUCKET ROLLOUT_QUEUE_URL=$ROLLOUT_QUEUE_URL,"
echo "credentials of the deployer's IAM role; it reaches the cluster through EKS DescribeCluster and an STS-signed"
echo "token, like in AWS."
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" --ignore-changes --quiet \
    >"$demo/deployer.log" 2>&1 &
groups+=($!)
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port"); }
wait_for 120 listening || fail "cargo lambda watch did not start (see $demo/deployer.log)"
echo "listening on 127.0.0.1:$port; the deployer's JSON logs: ${demo#"$root"/}/deployer.log"

step "Plan: what would a sweep do? (changes nothing; no artifact is uploaded yet)"
invoke tests/fixtures/direct-plan.json

# The example's first LambdaDeployment's artifact arrives through a classic S3 notification, every other commit through
# EventBridge; LambdaDeployments sharing an artifact are deployed by the same event.
declare -A uploaded
fixture=tests/fixtures/s3-object-created-put.json
for ld in "${lds[@]}"; do
    key=$(key_of "$ld")
    [[ -z ${uploaded[$key]:-} ]] || continue
    uploaded[$key]=1
    step "CI uploads s3://$ARTIFACT_BUCKET/$key; S3 tells the deployer ($(basename "$fixture" .json))"
    version=$(upload "$key" "$(zip_of "$ld")")
    render_event "$fixture" "$demo/event-${#uploaded[@]}.json" "$key" "$version"
    invoke "$demo/event-${#uploaded[@]}.json"
    fixture=tests/fixtures/eventbridge-object-created.json
done

drifted=${lds[0]}
step "Someone changes ${fn[$drifted]} by hand; the scheduled sweep puts the declared artifact back"
make_zip "$demo/artifacts/hotfix.zip" "hand-made hotfix"
show aws lambda update-function-code --function-name "${fn[$drifted]}" --zip-file "fileb://$demo/artifacts/hotfix.zip" \
    --query CodeSha256 --output text
update_finished() {
    [[ $(aws lambda get-function --function-name "$1" --query Configuration.LastUpdateStatus --output text) == Successful ]]
}
wait_for 30 update_finished "${fn[$drifted]}" || fail "the hand-made update did not finish"
invoke tests/fixtures/eventbridge-scheduled-event.json

step "A guarded release ($canary): function payments, alias live, canary 20% for 5 s judged by its own error rate"
show kubectl apply -f "$canary"
aws lambda create-function --function-name payments --runtime provided.al2023 --architectures arm64 \
    --handler bootstrap --role "arn:aws:iam::$account:role/testbed-function" \
    --zip-file "fileb://$demo/artifacts/initial.zip" --query FunctionArn --output text
# What an SQS event source mapping does: wake the deployer when a step is due.
setsid "$root/target/debug/testbed" deliver-queue --queue-url "$ROLLOUT_QUEUE_URL" \
    --invoke-url "http://127.0.0.1:$port/2015-03-31/functions/lambda-deployer/invocations" >"$demo/queue.log" 2>&1 &
groups+=($!)
# A zip the testbed's Lambda runs with a scripted behaviour (markers in its bytes).
release() {
    local commit=$1 text=$2
    local file="$demo/artifacts/payments-$commit.zip"
    make_zip "$file" "$text"
    local version
    version=$(upload "payments/$commit.zip" "$file")
    render_event tests/fixtures/eventbridge-object-created.json "$demo/event-payments-$commit.json" "payments/$commit.zip" "$version"
    invoke "$demo/event-payments-$commit.json" >/dev/null
}
phase_of() { kubectl get ld payments -n team-payments -o jsonpath='{.status.phase}'; }
phase_is() { [[ $(phase_of) == "$1" ]]; }
first=$(kubectl get ld payments -n team-payments -o jsonpath='{.spec.commit}')
echo "the first release creates alias live on version 1:"
release "$first" "payments at $first"
show aws lambda get-alias --function-name payments --name live --query '[FunctionVersion, RoutingConfig]' --output text
echo "traffic through the alias: 50 invocations a second, split as its weights say"
show curl -s -X POST "$AWS_ENDPOINT_URL/_testbed/traffic" -d '{"function":"payments","qualifier":"live","per_second":50}' -o /dev/null -w '%{http_code}\n'

good=1d6f3a0b8c2e4d5f7a9b1c3e5d7f9a0b2c4d6e8f
step "A good commit: version 2 gets 20% of the traffic, is judged after 5 s, then gets all of it"
show kubectl patch ld payments -n team-payments --type merge -p "{\"spec\":{\"commit\":\"$good\"}}"
release "$good" "payments at $good"
show kubectl get ld payments -n team-payments
wait_for 30 phase_is Deployed || fail "the good canary was not promoted (phase $(phase_of))"
show kubectl get ld payments -n team-payments
show aws lambda get-alias --function-name payments --name live --query '[FunctionVersion, RoutingConfig]' --output text

bad=9f8e7d6c5b4a39281706f5e4d3c2b1a098765432
step "A bad commit: version 3 fails half its invocations; judged after 5 s, rolled back by itself"
show kubectl patch ld payments -n team-payments --type merge -p "{\"spec\":{\"commit\":\"$bad\"}}"
release "$bad" "payments at $bad testbed:error-rate=0.5"
show kubectl get ld payments -n team-payments
wait_for 30 phase_is RolledBack || fail "the bad canary was not rolled back (phase $(phase_of))"
show kubectl get ld payments -n team-payments
show kubectl get ld payments -n team-payments -o jsonpath='{.status.message}{"\n"}'
show aws lambda get-alias --function-name payments --name live --query '[FunctionVersion, RoutingConfig]' --output text
show kubectl get events -n team-payments --sort-by=.eventTime -o custom-columns=REASON:.reason,MESSAGE:.message
[[ $(aws lambda get-alias --function-name payments --name live --query FunctionVersion --output text) == 2 ]] \
    || fail "alias live does not send everything to version 2"
echo "release history (kubectl get ld payments -o yaml, .status.history):"
show kubectl get ld payments -n team-payments -o jsonpath='{range .status.history[*]}{.version} {.commit} {.outcome}{"\n"}{end}'

step "Result"
show kubectl get ld -A
last=${lds[-1]}
echo "CI can wait for its commit to be live:"
show kubectl wait "ld/${last#*/}" -n "${last%%/*}" --for=jsonpath='{.status.deployedCommit}'="${commit[$last]}" --timeout=10s || true
printf '\n%-30s %-46s %-46s %s\n' LAMBDADEPLOYMENT "CODESHA256 BEFORE" "CODESHA256 AFTER" "RUNS ITS COMMIT"
ok=true
for ld in "${lds[@]}"; do
    after=$(code_sha "${fn[$ld]}")
    phase=$(kubectl get ld "${ld#*/}" -n "${ld%%/*}" -o jsonpath='{.status.phase}')
    runs=no
    if [[ $after == "$(sha256_b64 "$(zip_of "$ld")")" && $phase == Deployed ]]; then runs="yes (${commit[$ld]:0:7})"; else ok=false; fi
    printf '%-30s %-46s %-46s %s\n' "$ld" "${before[$ld]}" "$after" "$runs"
done
$ok || fail "not every function runs its declared artifact (deployer log: $demo/deployer.log)"
printf '\n\033[32mEvery function runs its declared commit and every LambdaDeployment is Deployed; payments kept\n'
printf 'version 2 live after its bad commit was rolled back.\033[0m\n'
