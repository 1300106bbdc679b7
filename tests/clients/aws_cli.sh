#!/usr/bin/env bash
# The AWS CLI against a running berth. Run by tests/e2e/api.rs with
# BERTH_ENDPOINT and AWS_* credentials set.
set -euo pipefail
command -v aws >/dev/null || { echo "the AWS CLI is not installed; run: python3 -m pip install awscli" >&2; exit 1; }
ecs() { aws ecs --endpoint-url "$BERTH_ENDPOINT" --output json "$@"; }
fail() { echo "aws_cli.sh: $*" >&2; exit 1; }

ecs create-cluster --cluster-name cli | grep -q '"status": "ACTIVE"' || fail "create-cluster"
ecs describe-clusters --clusters cli | grep -q '"clusterName": "cli"' || fail "describe-clusters"
ecs list-clusters | grep -q 'cluster/cli"' || fail "list-clusters"
ecs register-task-definition --cli-input-json file://examples/hello-web.json \
    | grep -q '"taskDefinitionArn": ".*task-definition/hello-web:1"' || fail "register-task-definition"
ecs list-task-definitions | grep -q 'hello-web:1' || fail "list-task-definitions"
ecs register-container-instance --cluster cli \
    --total-resources name=CPU,type=INTEGER,integerValue=1024 name=MEMORY,type=INTEGER,integerValue=2048 >/dev/null \
    || fail "register-container-instance"
[ "$(ecs list-container-instances --cluster cli --query 'length(containerInstanceArns)')" = 1 ] || fail "list-container-instances"
task=$(ecs run-task --cluster cli --task-definition hello-web --query 'tasks[0].taskArn' --output text)
[ -n "$task" ] && [ "$task" != None ] || fail "run-task placed nothing"
ecs describe-tasks --cluster cli --tasks "$task" | grep -q '"desiredStatus": "RUNNING"' || fail "describe-tasks"
ecs stop-task --cluster cli --task "$task" | grep -q '"desiredStatus": "STOPPED"' || fail "stop-task"
if out=$(ecs delete-cluster --cluster no-such-cluster 2>&1); then fail "delete of a missing cluster succeeded"; fi
grep -q ClusterNotFoundException <<<"$out" || fail "expected ClusterNotFoundException, got: $out"
echo "aws cli: ok"
