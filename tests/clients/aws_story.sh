#!/usr/bin/env bash
# A whole story with the AWS CLI against `berth up` on the real Docker: the
# cluster, a task definition from examples/, a task (waited for with
# `aws ecs wait tasks-running`) serving its page, a service scaled and
# rolled to a new revision (`aws ecs wait services-stable`), then stopped
# and deleted. Run by tests/e2e/story.rs with BERTH_ENDPOINT and AWS_*
# credentials set, after it built the example's image.
set -euo pipefail
command -v aws >/dev/null || { echo "the AWS CLI is not installed; run: python3 -m pip install awscli" >&2; exit 1; }
ecs() { aws ecs --endpoint-url "$BERTH_ENDPOINT" --output json "$@"; }
q() { aws ecs --endpoint-url "$BERTH_ENDPOINT" --output text "$@"; }
fail() { echo "aws_story.sh: $*" >&2; exit 1; }
step() { echo "== $*"; }
# GET / on 127.0.0.1:$1 with bash alone; prints the answer.
get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    cat <&3
    exec 3<&-
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "create-cluster: with no name, ECS's is \`default\`, where berth up's instance registers"
out=$(ecs create-cluster)
grep -q '"clusterName": "default"' <<<"$out" || fail "create-cluster: $out"
grep -q '"status": "ACTIVE"' <<<"$out" || fail "create-cluster: $out"
for _ in $(seq 1 60); do
    n=$(q describe-clusters --clusters default --query 'clusters[0].registeredContainerInstancesCount')
    [ "$n" = 1 ] && break
    sleep 0.5
done
[ "$n" = 1 ] || fail "the default cluster never showed berth up's instance (count $n)"

step "register-task-definition from examples/hello-web.json"
td1=$(q register-task-definition --cli-input-json file://examples/hello-web.json --query 'taskDefinition.taskDefinitionArn')
[[ "$td1" == *":task-definition/hello-web:"* ]] || fail "register-task-definition: $td1"
rev1=${td1##*:}

step "run-task, wait tasks-running, fetch the page"
task=$(q run-task --task-definition hello-web --query 'tasks[0].taskArn')
[[ "$task" == *":task/default/"* ]] || fail "run-task placed nothing: $task"
ecs wait tasks-running --tasks "$task" || fail "wait tasks-running"
[ "$(q describe-tasks --tasks "$task" --query 'tasks[0].lastStatus')" = RUNNING ] || fail "not RUNNING after the waiter"
port=$(q describe-tasks --tasks "$task" --query 'tasks[0].containers[0].networkBindings[?containerPort==`8080`].hostPort | [0]')
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -gt 0 ] || fail "no host port for 8080: $port"
page=$(get "$port") || fail "nothing listens on host port $port"
grep -q '^HTTP/1.[01] 200' <<<"$page" || fail "GET / on $port: $page"
grep -q 'hello from berth' <<<"$page" || fail "not the example's page: $page"

step "stop-task, wait tasks-stopped"
ecs stop-task --task "$task" --reason "story: done with the one-off task" >/dev/null
ecs wait tasks-stopped --tasks "$task" || fail "wait tasks-stopped"
[ "$(q describe-tasks --tasks "$task" --query 'tasks[0].stopCode')" = UserInitiated ] || fail "stopCode"

step "create-service, wait services-stable"
ecs create-service --service-name hello --task-definition "hello-web:$rev1" --desired-count 1 >/dev/null
ecs wait services-stable --services hello || fail "wait services-stable after create-service"
[ "$(q describe-services --services hello --query 'services[0].runningCount')" = 1 ] || fail "runningCount after create"

step "update-service --desired-count 2, wait services-stable"
ecs update-service --service hello --desired-count 2 >/dev/null
ecs wait services-stable --services hello || fail "wait services-stable after scaling"
[ "$(q describe-services --services hello --query 'services[0].runningCount')" = 2 ] || fail "runningCount after scaling"
[ "$(q list-tasks --service-name hello --query 'length(taskArns)')" = 2 ] || fail "list-tasks after scaling"

step "register a new revision, update-service to it, wait services-stable"
sed 's/"hello from berth"/"hello again from berth"/' examples/hello-web.json >"$tmp/hello-web-2.json"
td2=$(q register-task-definition --cli-input-json "file://$tmp/hello-web-2.json" --query 'taskDefinition.taskDefinitionArn')
[ "${td2##*:}" = $((rev1 + 1)) ] || fail "the new revision is $td2 after $td1"
ecs update-service --service hello --task-definition "$td2" >/dev/null
ecs wait services-stable --services hello || fail "wait services-stable after the update"
svc=$(q describe-services --services hello --query 'services[0].[taskDefinition, length(deployments), deployments[0].rolloutState, runningCount]')
[ "$svc" = "$td2	1	COMPLETED	2" ] || fail "after the update (taskDefinition, deployments, rolloutState, runningCount): $svc"
tasks=$(q list-tasks --service-name hello --query 'taskArns')
# shellcheck disable=SC2086 # one argument per task ARN
tds=$(q describe-tasks --tasks $tasks --query 'tasks[?lastStatus==`RUNNING`].taskDefinitionArn' | tr '\t' '\n' | sort | uniq -c | awk '{$1=$1};1')
[ "$tds" = "2 $td2" ] || fail "the service's RUNNING tasks are not the 2 of the new revision: $tds"
# shellcheck disable=SC2086
for p in $(q describe-tasks --tasks $tasks --query 'tasks[].containers[0].networkBindings[0].hostPort'); do
    page=$(get "$p") || fail "nothing listens on host port $p"
    grep -q 'hello from berth' <<<"$page" || fail "a task of the service does not serve its page on $p: $page"
done

step "scale to 0, delete-service, wait services-inactive"
if out=$(ecs delete-service --service hello 2>&1); then fail "deleting a service still running succeeded"; fi
grep -q InvalidParameterException <<<"$out" || fail "expected InvalidParameterException, got: $out"
ecs update-service --service hello --desired-count 0 >/dev/null
ecs delete-service --service hello >/dev/null
ecs wait services-inactive --services hello || fail "wait services-inactive"
# shellcheck disable=SC2086
ecs wait tasks-stopped --tasks $tasks || fail "the service's tasks did not stop"
[ "$(q list-services --query 'length(serviceArns)')" = 0 ] || fail "list-services after the delete"
[ "$(q list-tasks --query 'length(taskArns)')" = 0 ] || fail "tasks left running"

step "delete-cluster: refused while berth up's instance is registered in it"
if out=$(ecs delete-cluster --cluster default 2>&1); then fail "deleting the cluster of a registered instance succeeded"; fi
grep -q ClusterContainsContainerInstancesException <<<"$out" || fail "expected ClusterContainsContainerInstancesException, got: $out"
echo "aws story: ok"
