"""The demo: run the connector locally on every bundled sample incident.

Starts Azurite, the emulators and devhost on 127.0.0.1, posts each incident
in samples/incidents/ to the webhook, waits for its enrichment and prints the
objects with verdict, score and task link, the labels and the number of
indicators written. devhost keeps its state in .devhost/demo, so a second run
finds the finished instances and submits nothing new.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devhost.stack import ROOT, LocalStack, load_samples

COMPLETE_MARKER = ".demo-complete"


def _print_incident(name: str, status: dict, created: bool) -> None:
    incident = status.get("incident") or {}
    output = status.get("output") or {}
    origin = "new run" if created else "already enriched"
    print(
        f"\nIncident {incident.get('number')}: {incident.get('title')}"
        f"  [{name}, {origin}]"
    )
    print(f"  instance {status['instanceId']}: {status['runtimeStatus']}")
    for item in output.get("objects") or []:
        where = f" (on {item['host']})" if item.get("host") else ""
        if item.get("status") == "done":
            print(
                f"  {item['object']}{where}\n"
                f"      {item.get('verdict_text') or item.get('verdict')}"
                f", score {item.get('score')}, {item.get('task_url')}"
            )
        else:
            print(
                f"  {item['object']}{where}\n"
                f"      {item.get('status')}: {item.get('reason')}"
            )
    for item in output.get("skipped") or []:
        print(f"  {item['object']}\n      not analysed: {item['reason']}")
    writes = output.get("writes") or {}
    labels = output.get("labels") or []
    label_write = writes.get("labels") if isinstance(writes.get("labels"), dict) else {}
    if label_write.get("status") == "failed":
        print(f"  labels: not written: {label_write.get('reason')}")
    else:
        print(f"  labels: {', '.join(labels) if labels else '(none)'}")
    comment = writes.get("comment") if isinstance(writes.get("comment"), dict) else {}
    if comment.get("status") == "failed":
        print(f"  comment: not written: {comment.get('reason')}")
    indicators = output.get("indicators") or {}
    print(f"  indicators written: {indicators.get('uploaded', 0)}")
    alerts = (output.get("writes") or {}).get("alerts") or {}
    if alerts.get("commented") or alerts.get("already"):
        print(
            f"  Defender alerts commented: {alerts.get('commented', 0)}"
            f" (already commented: {alerts.get('already', 0)})"
        )


def main(
    argv: list[str] | None = None,
    *,
    stack_factory: Callable[..., LocalStack] = LocalStack,
) -> int:
    """Run the demo. `stack_factory` lets a test choose the stack's secrets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / ".devhost" / "demo",
        help="state folder of this demo (default .devhost/demo)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=120.0,
        help="durable and sandbox seconds per wall second (default 120)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="wall seconds to wait for each incident (default 180)",
    )
    args = parser.parse_args(argv)

    # The emulators start empty on every run, so devhost state left by an
    # interrupted run would point at tasks and actions that no longer exist.
    finished = args.data / COMPLETE_MARKER
    if args.data.exists() and not finished.exists():
        print(f"Removing {args.data}: the last demo run did not finish")
        shutil.rmtree(args.data)
    finished.unlink(missing_ok=True)

    samples = load_samples()
    print(
        f"Starting Azurite, emulators and devhost (time scale {args.time_scale:g}x) ..."
    )
    started = time.monotonic()
    with stack_factory(args.data, time_scale=args.time_scale) as stack:
        accepted = []
        for name, body in samples:
            response = stack.post_incident(body)
            if response.status_code not in (200, 202):
                print(
                    f"{name}: webhook answered {response.status_code}: {response.text}"
                )
                return 1
            accepted.append((name, response.json()["id"], response.status_code == 202))
        print(
            f"Posted {len(accepted)} sample incidents; waiting for their enrichment ..."
        )

        failures = 0
        for name, instance_id, created in accepted:
            status = stack.wait_for(instance_id, timeout=args.timeout)
            failures += status["runtimeStatus"] != "Completed"
            _print_incident(name, status, created)

        tasks = stack.emulator_state("anyrun").get("tasks") or []
        print(f"\nSandbox submissions in this run: {len(tasks)}")
        leftovers = stack.upload_blobs()
        print(f"Blobs left in the upload container: {len(leftovers)}")
        failures += len(leftovers)
        print(
            f"Done in {time.monotonic() - started:.1f} s; logs in {args.data / 'logs'}"
        )
    if not failures:
        finished.write_text("The demo finished; devhost state here is complete.\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
