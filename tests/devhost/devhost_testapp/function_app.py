"""A small Durable Functions app that the devhost tests run.

Each orchestrator exercises one feature of the engine. Activities record
their calls in `CALLS` so tests can count attempts.
"""

import asyncio
import threading
import time
from collections import Counter
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

# Activity call counts by key; tests reset it.
CALLS: Counter = Counter()
_CALLS_LOCK = threading.Lock()

# Switched by the non-determinism test between two episodes.
USE_SECOND_ACTIVITY = False


def _count(key: str) -> int:
    with _CALLS_LOCK:
        CALLS[key] += 1
        return CALLS[key]


# Activities ---------------------------------------------------------------


@app.activity_trigger(input_name="value")
def add_one(value: int) -> int:
    _count("add_one")
    return value + 1


@app.activity_trigger(input_name="value")
async def async_double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


@app.activity_trigger(input_name="payload")
def flaky(payload: dict) -> str:
    attempt = _count(f"flaky:{payload['key']}")
    if attempt <= payload["fail_times"]:
        raise ValueError(f"flaky attempt {attempt} failed")
    return f"ok after {attempt}"


@app.activity_trigger(input_name="seconds")
def sleep_for(seconds: float) -> float:
    _count("sleep_for")
    time.sleep(seconds)
    return seconds


@app.activity_trigger(input_name="name")
def first(name: str) -> str:
    return f"first {name}"


@app.activity_trigger(input_name="name")
def second(name: str) -> str:
    return f"second {name}"


# Orchestrators ------------------------------------------------------------


@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext):
    value = context.get_input()
    value = yield context.call_activity("add_one", value)
    value = yield context.call_activity("add_one", value)
    value = yield context.call_activity("async_double", value)
    return value


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext):
    hours = context.get_input()
    started = context.current_utc_datetime
    yield context.create_timer(started + timedelta(hours=hours))
    waited = context.current_utc_datetime - started
    return waited.total_seconds()


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    context.set_custom_status("waiting")
    decision = yield context.wait_for_external_event("Approve")
    context.set_custom_status("decided")
    return decision


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(
        first_retry_interval_in_milliseconds=60_000, max_number_of_attempts=3
    )
    return (
        yield context.call_activity_with_retry("flaky", options, context.get_input())
    )


@app.orchestration_trigger(context_name="context")
def retry_pair(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(
        first_retry_interval_in_milliseconds=1_000, max_number_of_attempts=2
    )
    results = yield context.task_all(
        [
            context.call_activity_with_retry("flaky", options, context.get_input()),
            context.call_activity("add_one", 1),
        ]
    )
    return results


@app.orchestration_trigger(context_name="context")
def race(context: df.DurableOrchestrationContext):
    deadline = context.current_utc_datetime + timedelta(hours=1)
    timer = context.create_timer(deadline)
    work = context.call_activity("add_one", 41)
    winner = yield context.task_any([work, timer])
    if winner == work:
        timer.cancel()
        return work.result
    return "timed out"


@app.orchestration_trigger(context_name="context")
def race_then_wait(context: df.DurableOrchestrationContext):
    timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    work = context.call_activity("add_one", 1)
    winner = yield context.task_any([work, timer])
    if winner == work:
        timer.cancel()
    return (yield context.wait_for_external_event("Done"))


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    results = yield context.task_all(
        [context.call_activity("add_one", i) for i in range(count)]
    )
    return sum(results)


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    children = [
        context.call_sub_orchestrator(
            "chain", i, instance_id=f"{context.instance_id}:child:{i}"
        )
        for i in range(2)
    ]
    return (yield context.task_all(children))


@app.orchestration_trigger(context_name="context")
def failing_child(context: df.DurableOrchestrationContext):
    yield context.call_activity("add_one", 1)
    raise RuntimeError("child gave up")


@app.orchestration_trigger(context_name="context")
def parent_of_failing(context: df.DurableOrchestrationContext):
    try:
        yield context.call_sub_orchestrator(
            "failing_child", None, instance_id=f"{context.instance_id}:child"
        )
    except Exception as exc:  # noqa: BLE001 - the test reads the message
        return str(exc)
    return "no error"


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("flaky", context.get_input()))


@app.orchestration_trigger(context_name="context")
def parent_with_retry(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(
        first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=3
    )
    return (
        yield context.call_sub_orchestrator_with_retry(
            "flaky_child",
            options,
            context.get_input(),
            instance_id=f"{context.instance_id}:child",
        )
    )


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    state = context.get_input()
    if state["count"] >= state["limit"]:
        return state["count"]
    yield context.call_activity("add_one", 0)
    context.continue_as_new({"count": state["count"] + 1, "limit": state["limit"]})


@app.orchestration_trigger(context_name="context")
def event_loop(context: df.DurableOrchestrationContext):
    received = context.get_input() or []
    if len(received) == 3:
        return received
    value = yield context.wait_for_external_event("tick")
    context.continue_as_new([*received, value])


@app.orchestration_trigger(context_name="context")
def progress(context: df.DurableOrchestrationContext):
    context.set_custom_status({"step": 1})
    yield context.call_activity("add_one", 1)
    context.set_custom_status({"step": 2})
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=5))
    return "done"


@app.orchestration_trigger(context_name="context")
def switchable(context: df.DurableOrchestrationContext):
    name = "second" if USE_SECOND_ACTIVITY else "first"
    return (yield context.call_activity(name, "x"))


@app.orchestration_trigger(context_name="context")
def broken(context: df.DurableOrchestrationContext):
    yield context.call_activity("add_one", 1)
    raise ValueError("broken on purpose")


@app.orchestration_trigger(context_name="context")
def missing_activity(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("no_such_activity", 1))


@app.orchestration_trigger(context_name="context")
def oversized_status(context: df.DurableOrchestrationContext):
    context.set_custom_status("x" * 9000)
    yield context.call_activity("add_one", 1)
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def slow(context: df.DurableOrchestrationContext):
    seconds = context.get_input()
    yield context.call_activity("sleep_for", seconds)
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=30))
    yield context.call_activity("sleep_for", seconds)
    return "slow done"


# Entry points -------------------------------------------------------------


@app.route(route="orchestrators/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start_orchestration(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(
        req.route_params["name"], client_input=req.get_json() if body else None
    )
    return client.create_check_status_response(req, instance_id)


@app.route(route="status/{instance_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def read_status(req: func.HttpRequest, client) -> func.HttpResponse:
    status = await client.get_status(req.route_params["instance_id"])
    return func.HttpResponse(
        body=status.runtime_status.value if status else "unknown",
        status_code=200 if status else 404,
    )


@app.route(route="items/{id:int}/{label?}", methods=["GET"], auth_level="anonymous")
def item(req: func.HttpRequest) -> func.HttpResponse:
    label = req.route_params.get("label", "none")
    return func.HttpResponse(
        f"{req.route_params['id']}:{label}:{req.params.get('q', '')}",
        headers={"X-Item": "yes"},
    )


@app.event_grid_trigger(arg_name="event")
@app.durable_client_input(client_name="client")
async def on_blob_created(event: func.EventGridEvent, client) -> None:
    data = event.get_json()
    await client.start_new("chain", instance_id=data["id"], client_input=data["value"])


@app.event_grid_trigger(arg_name="event")
@app.durable_client_input(client_name="client")
async def on_upload(event: func.EventGridEvent, client) -> None:
    blob_name = event.subject.rsplit("/blobs/", 1)[1]
    size = event.get_json()["contentLength"]
    await client.start_new("chain", instance_id=blob_name, client_input=size)
