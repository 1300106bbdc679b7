"""RunTask count=10 through the ECS API until all ten are RUNNING, against
`docker run -d` ten times in sequence, in one run; then stopping them against
`docker stop` + `docker rm`. Prints the times and the ratios (berth / docker).

Needs a running `berth up` with its agent, boto3, and the test image
berth-test/busybox:1 (built by the agent's tests).

    python3 tests/clients/bench_run_task.py http://127.0.0.1:7171 [ROUNDS]
"""
import subprocess
import sys
import time

import boto3

IMAGE = "berth-test/busybox:1"
LOOP = "trap 'exit 0' TERM; while true; do sleep 0.2; done"


def wait(ecs, arns, status):
    while True:
        tasks = ecs.describe_tasks(tasks=arns)["tasks"]
        if all(t["lastStatus"] == status for t in tasks):
            return
        time.sleep(0.02)


def main():
    endpoint = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ecs = boto3.client("ecs", endpoint_url=endpoint)
    ecs.register_task_definition(
        family="bench-run-task",
        containerDefinitions=[{"name": "app", "image": IMAGE, "memory": 16, "command": ["sh", "-c", LOOP]}],
    )
    print("| round | berth start | docker start | ratio | berth stop | docker stop | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in range(1, rounds + 1):
        t0 = time.monotonic()
        arns = [t["taskArn"] for t in ecs.run_task(taskDefinition="bench-run-task", count=10)["tasks"]]
        assert len(arns) == 10, arns
        wait(ecs, arns, "RUNNING")
        berth_start = time.monotonic() - t0

        t0 = time.monotonic()
        ids = [
            subprocess.run(["docker", "run", "-d", "--label", "berth.bench=1", IMAGE, "sh", "-c", LOOP],
                           check=True, capture_output=True, text=True).stdout.strip()
            for _ in range(10)
        ]
        docker_start = time.monotonic() - t0

        t0 = time.monotonic()
        for a in arns:
            ecs.stop_task(task=a)
        wait(ecs, arns, "STOPPED")
        berth_stop = time.monotonic() - t0

        t0 = time.monotonic()
        for i in ids:
            subprocess.run(["docker", "stop", i], check=True, capture_output=True)
            subprocess.run(["docker", "rm", i], check=True, capture_output=True)
        docker_stop = time.monotonic() - t0
        print(f"| {r} | {berth_start*1000:.0f} ms | {docker_start*1000:.0f} ms | {berth_start/docker_start:.2f} "
              f"| {berth_stop*1000:.0f} ms | {docker_stop*1000:.0f} ms | {berth_stop/docker_stop:.2f} |")


if __name__ == "__main__":
    main()
