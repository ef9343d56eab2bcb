#!/usr/bin/env bash
# `make demo`: lambda-deployer end to end on this machine, with no AWS account.
# Starts the testbed (moto + AWS layer + Kubernetes API server), applies the CRD, RBAC and examples/orders.yaml (one
# artifact promoted to three functions) with kubectl, creates the three functions, uploads artifacts, runs the real
# deployer binary under `cargo lambda watch` (the Lambda runtime emulator) and invokes it with a plan, an S3
# notification, an EventBridge Object Created event and a scheduled sweep that corrects out-of-band drift.
# Prints `kubectl get ld -A` and each function's CodeSha256 before and after; exits non-zero unless every function
# runs its declared artifact. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.demo
example=examples/orders.yaml
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
setsid "$root/target/debug/testbed" up --dir "$demo/testbed" >"$demo/testbed.log" 2>&1 &
groups+=($!)
wait_for 120 test -s "$demo/testbed/env" || fail "the testbed did not come up (see $demo/testbed.log)"
sed -n '/^testbed up/,$p' "$demo/testbed.log"
# The deployer's environment: AWS endpoint and credentials, CLUSTER_NAME, ARTIFACT_BUCKET; KUBECONFIG for kubectl.
# shellcheck source=/dev/null
source "$demo/testbed/env"
aws() { command aws --endpoint-url "$AWS_ENDPOINT_URL" --region "$AWS_REGION" "$@"; }
account=$(aws sts get-caller-identity --query Account --output text)

step "Kubernetes: the LambdaDeployment CRD, the deployer's RBAC, and $example"
show kubectl apply -f crds/
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
echo "CLUSTER_NAME=$CLUSTER_NAME ARTIFACT_BUCKET=$ARTIFACT_BUCKET, credentials of the deployer's IAM role;"
echo "it reaches the cluster through EKS DescribeCluster and an STS-signed token, like in AWS."
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
printf '\n\033[32mEvery function runs its declared commit and every LambdaDeployment is Deployed.\033[0m\n'
