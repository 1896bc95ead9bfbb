"""The gateway's Rasa client: replicas, failover, and what a failed turn means (no stack needed:
httpx's MockTransport stands in for the replicas; tests/test_no_loss.py and test_scaleout.py do
the same against real processes)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from channels.rasa_client import RasaClient, RasaUnavailable

A, B = "http://rasa-a:5005", "http://rasa-b:5005"


def client_with(handler) -> RasaClient:  # type: ignore[no-untyped-def]
    client = RasaClient([A, B], timeout_s=5)
    client._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return client


def send(client: RasaClient, resend: bool = False) -> list[tuple[str, dict]]:
    return asyncio.run(client.send("c1", "hi", {"language": "en"}, message_id="k1", resend=resend))


def test_a_replica_that_refuses_connections_is_skipped_and_the_retry_is_marked_resent() -> None:
    seen: list[tuple[str, dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.host, body))
        if request.url.host == "rasa-a":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=[{"recipient_id": "c1", "text": "hello"}])

    client = client_with(handler)
    for _ in range(3):  # whichever replica comes first in turn, the answer comes from B
        assert send(client) == [("text", {"text": "hello"})]
    assert all(body["message_id"] == "k1" for _, body in seen)
    after_failure = [body["resend"] for host, body in seen if host == "rasa-b"]
    assert True in after_failure, "a message that may have reached a dying replica is sent as a resend"
    assert [host for host, _ in seen[-1:]] == ["rasa-b"] and len(seen) <= 4, "A is skipped while it cools down"


def test_a_turn_abandoned_for_the_nlu_or_action_server_is_an_error_with_its_cause() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "action_server_unavailable"})

    with pytest.raises(RasaUnavailable) as failure:
        send(client_with(handler))
    assert failure.value.code == "action_server_unavailable"


def test_a_replica_still_loading_its_model_passes_the_turn_to_the_next() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "rasa-a":
            return httpx.Response(503, json={"error": "not_ready"})
        return httpx.Response(200, json=[{"recipient_id": "c1", "custom": {"type": "coupon", "code": "CP1"}}])

    client = client_with(handler)
    assert send(client) == [("coupon", {"code": "CP1"})]
    assert send(client) == [("coupon", {"code": "CP1"})]


def test_no_replica_reachable_is_rasa_unavailable_and_garbage_is_an_error() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(RasaUnavailable) as failure:
        send(client_with(down))
    assert failure.value.code == "rasa_unavailable"

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>proxy error</html>")

    with pytest.raises(RasaUnavailable) as failure:
        send(client_with(garbage))
    assert failure.value.code == "rasa_error"


def test_at_least_one_replica_is_needed() -> None:
    with pytest.raises(ValueError):
        RasaClient([], timeout_s=1)


def test_turns_beyond_the_in_flight_limit_queue_in_order_and_give_up_after_the_queue_time() -> None:
    """A crowd waits in the gateway, not inside Rasa (where waiting would count against the reply
    timeout): at most ``in_flight`` turns per replica reach Rasa at once, in arrival order; one that
    waits longer than ``queue_s`` becomes a retry error."""
    at_rasa, most, order, work_s = 0, 0, [], 0.05

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal at_rasa, most
        at_rasa += 1
        most = max(most, at_rasa)
        order.append(json.loads(request.content)["message_id"])
        await asyncio.sleep(work_s)
        at_rasa -= 1
        return httpx.Response(200, json=[{"recipient_id": "c1", "text": "ok"}])

    async def crowd(client: RasaClient, n: int) -> list:
        async def one(i: int):  # type: ignore[no-untyped-def]
            try:
                return await client.send(f"c{i}", "hi", {}, message_id=f"m{i}")
            except RasaUnavailable as error:
                return error.code
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0)  # arrive one after the other
        return await asyncio.gather(*tasks)

    client = RasaClient([A], timeout_s=5, in_flight=2, queue_s=30)
    client._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    results = asyncio.run(crowd(client, 10))
    assert results == [[("text", {"text": "ok"})]] * 10 and most == 2
    assert order == [f"m{i}" for i in range(10)], "served in the order they came"
    assert client.waiting == 0

    at_rasa, most, order, work_s = 0, 0, [], 0.2  # wide margins: a loaded machine oversleeps
    impatient = RasaClient([A], timeout_s=5, in_flight=1, queue_s=0.3)
    impatient._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    results = asyncio.run(crowd(impatient, 4))
    assert results[:2] == [[("text", {"text": "ok"})]] * 2  # the second waited 0.2 s: within its patience
    assert results[3] == "rasa_busy" and most == 1
