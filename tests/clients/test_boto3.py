#!/usr/bin/env python3
"""boto3 against a running berth: paginators, modelled exceptions, tasks.

Run by tests/e2e/api.rs with BERTH_ENDPOINT and AWS_* credentials set.
"""
import os
import sys

try:
    import boto3
    from botocore.exceptions import ClientError
except ImportError as e:  # CI installs it; say so instead of a bare traceback
    sys.exit(f"boto3 is not installed ({e}); run: python3 -m pip install boto3")


def main():
    ecs = boto3.client("ecs", endpoint_url=os.environ["BERTH_ENDPOINT"])

    ecs.create_cluster(clusterName="py")
    arns = ecs.list_clusters()["clusterArns"]
    assert any(a.endswith(":cluster/py") for a in arns), arns

    # More than one page of task definitions: 105 revisions over 2 families.
    container = {"name": "app", "image": "berth/app:1", "cpu": 64, "memory": 32}
    for i in range(105):
        ecs.register_task_definition(family=f"pyfam-{i % 2}", containerDefinitions=[container])
    pages = list(ecs.get_paginator("list_task_definitions").paginate(familyPrefix="pyfam-0"))
    arns = [a for p in pages for a in p["taskDefinitionArns"]]
    assert len(arns) == 53, len(arns)
    all_pages = list(ecs.get_paginator("list_task_definitions").paginate())
    all_arns = [a for p in all_pages for a in p["taskDefinitionArns"]]
    assert len(all_pages) >= 2, f"{len(all_pages)} page(s) for 105 task definitions"
    assert len(all_arns) == 105 and len(set(all_arns)) == 105, len(all_arns)
    small = list(ecs.get_paginator("list_task_definitions").paginate(PaginationConfig={"PageSize": 10}))
    assert len(small) == 11, len(small)
    latest = ecs.describe_task_definition(taskDefinition="pyfam-1")["taskDefinition"]
    assert latest["revision"] == 52, latest["revision"]
    # Timestamps arrive as epoch seconds and botocore turns them into datetimes.
    assert latest["registeredAt"].year >= 2024, latest["registeredAt"]

    # Modelled exceptions are caught by class.
    try:
        ecs.delete_cluster(cluster="does-not-exist")
    except ecs.exceptions.ClusterNotFoundException as e:
        assert "does-not-exist" in str(e), str(e)
    else:
        raise AssertionError("deleting a missing cluster succeeded")
    try:
        ecs.run_task(cluster="py", taskDefinition="pyfam-0", count=11)
    except ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidParameterException", e.response
    else:
        raise AssertionError("count=11 was accepted")

    # A task placed on a registered instance, described and stopped.
    ci = ecs.register_container_instance(
        cluster="py",
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024},
        ],
        attributes=[{"name": "stack", "value": "py"}],
    )["containerInstance"]
    run = ecs.run_task(cluster="py", taskDefinition="pyfam-0", count=3,
                       placementConstraints=[{"type": "memberOf", "expression": "attribute:stack == py"}])
    assert len(run["tasks"]) == 3 and not run["failures"], run
    task = ecs.describe_tasks(cluster="py", tasks=[run["tasks"][0]["taskArn"]])["tasks"][0]
    assert task["containerInstanceArn"] == ci["containerInstanceArn"], task
    assert task["createdAt"].year >= 2024
    ecs.stop_task(cluster="py", task=task["taskArn"], reason="boto3 test")
    running = [a for p in ecs.get_paginator("list_tasks").paginate(cluster="py") for a in p["taskArns"]]
    assert len(running) == 2, running
    filtered = ecs.list_container_instances(cluster="py", filter="attribute:stack == py")
    assert filtered["containerInstanceArns"] == [ci["containerInstanceArn"]], filtered
    print("boto3: ok")


if __name__ == "__main__":
    main()
