"""Photos of damaged goods through the whole stack: widget frame -> gateway checks, storage and
classification -> Rasa's defect form -> actions -> the RMA the merchant sees with photo and prediction."""

from __future__ import annotations

import datetime as dt
import io
import json
from functools import lru_cache

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from assistant.commerce.db import session_factory
from assistant.commerce.models import Customer, Order, Photo, ReturnRequest, TranscriptMessage
from tests.chat_client import ChatClient, of_type, texts
from tests.test_vision import png_bomb
from vision import synth
from vision.images import open_photo
from vision.model import VisionModel

pytestmark = pytest.mark.e2e


@lru_cache(maxsize=1)
def demo_model() -> VisionModel:
    from assistant.settings import Settings

    return VisionModel.load(Settings().vision_model_path)


def photo_where(wanted, label: str, product: str = "cup") -> tuple[bytes, str, float]:  # type: ignore[no-untyped-def]
    """A generated photo of ``label`` on which the demo model's outcome satisfies ``wanted``:
    its JPEG bytes, the outcome and the confidence. The dialog is under test here, not the model."""
    model = demo_model()
    for seed in range(1000, 1200):
        image, _ = synth.render(label, seed, product=product)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        # read back the way the gateway reads it, so the outcome is the one the shopper gets
        prediction = model.predict([open_photo(buffer.getvalue(), decode_size=model.input_size).image])[0]
        if wanted(prediction.outcome):
            return buffer.getvalue(), prediction.outcome, prediction.confidence
    pytest.fail(f"the demo model gave no wanted outcome on 200 photos of {label}")


def claimable_order(stack, language: str) -> tuple[str, str]:
    """A delivered order inside the 30-day window with no return yet: (order number, phone digits)."""
    with session_factory(stack.settings.db_url)() as session:
        since = dt.datetime.now() - dt.timedelta(days=25)
        taken = set(session.scalars(select(ReturnRequest.order_id)))
        for order in session.scalars(select(Order).join(Customer).where(
                Order.status == "delivered", Customer.language == language).order_by(Order.created_at.desc())):
            delivered = next((e.occurred_at for e in order.events if e.status == "delivered"), None)
            if delivered and delivered >= since and order.id not in taken:
                return order.order_no, order.customer.phone[-4:]
    pytest.fail("the demo shop has no claimable order")


def test_a_clear_photo_of_damage_becomes_a_refund_with_the_photo_on_the_rma(stack):
    unclear, unclear_outcome, _ = photo_where(lambda o: o in ("unsure", "no_visible_defect"), "no_visible_defect")
    damaged, outcome, confidence = photo_where(lambda o: o == "crack_or_broken", "crack_or_broken")
    order_no, digits = claimable_order(stack, "en")
    chat = ChatClient(stack.ws_url, "en")
    asked = texts(chat.say("the mug I received is broken"))
    assert "send me a photo" in asked, asked

    first = chat.photo(unclear)
    assert first[0]["type"] == "image" and first[0]["sender"] == "shopper" and first[0]["url"].startswith("/photos/")
    again = texts(first)
    assert ("couldn't see any damage" in again) if unclear_outcome == "no_visible_defect" \
        else ("can't make out" in again), again

    second = chat.photo(damaged)
    assert "order number" in texts(second), texts(second)
    chat.say(order_no)
    offer = chat.say(digits)
    offered = texts(offer)
    assert "crack or breakage" in offered and f"{round(confidence * 100)}% sure" in offered, offered
    assert "replacement or a refund" in offered
    choice = [b for m in of_type(offer, "buttons") for b in m["buttons"] if "refund" in b["payload"]]
    replies = chat.postback(choice[0]["payload"], choice[0]["title"])
    [rma] = of_type(replies, "return")
    assert rma["kind"] == "refund" and rma["order_id"] == order_no and rma["defect_type"] == "crack_or_broken"
    assert "refund is registered" in texts(replies)
    photo_id = second[0]["photo_id"]
    assert rma["photo_url"] == f"/photos/{photo_id}"
    shown = httpx.get(stack.gateway + rma["photo_url"])
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(shown.content)).size == (256, 256)
    chat.close()

    # the merchant sees the photo and the prediction on the RMA (and nobody else does)
    admin = {"Authorization": "Bearer test-admin-token"}
    seen = httpx.get(f"{stack.gateway}/api/admin/commerce/returns/{rma['rma']}", headers=admin).json()
    assert seen["kind"] == "refund" and seen["photo"]["id"] == photo_id
    assert seen["photo"]["prediction"]["outcome"] == outcome == "crack_or_broken"
    assert abs(seen["photo"]["prediction"]["confidence"] - confidence) < 1e-3
    assert set(seen["photo"]["prediction"]["probabilities"]) == set(synth.LABELS)
    assert httpx.get(stack.gateway + seen["photo"]["url"], headers=admin).content == shown.content
    listed = httpx.get(f"{stack.gateway}/api/admin/commerce/returns?with_photo=true", headers=admin).json()
    assert rma["rma"] in [r["rma"] for r in listed["items"]]
    assert httpx.get(f"{stack.gateway}/api/admin/commerce/returns/{rma['rma']}").status_code == 401
    assert httpx.get(stack.gateway + seen["photo"]["url"]).status_code == 401
    with session_factory(stack.settings.db_url)() as session:
        stored = session.scalar(select(ReturnRequest).where(ReturnRequest.rma_no == rma["rma"]))
        assert stored.photo_id == photo_id and stored.defect_type == "crack_or_broken" and stored.kind == "refund"
        photo = session.get(Photo, photo_id)
        assert photo.conversation_id == chat.conversation_id and photo.outcome == "crack_or_broken"


def test_two_unclear_photos_go_to_a_human(stack):
    unclear, _, _ = photo_where(lambda o: o in ("unsure", "no_visible_defect"), "no_visible_defect", "box")
    order_no, digits = claimable_order(stack, "zh")
    chat = ChatClient(stack.ws_url, "zh")
    first = chat.photo(unclear)  # a photo on its own starts the claim
    assert "再拍一张" in texts(first), texts(first)
    second = chat.photo(unclear)
    assert "订单号" in texts(second), texts(second)
    chat.say(order_no)
    replies = chat.say(digits)
    assert of_type(replies, "handoff") and "人工客服" in texts(replies), texts(replies)
    chat.close()


def test_bad_photos_get_clear_errors_and_the_conversation_goes_on(stack):
    image, _ = synth.render("dent", 4)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    good = buffer.getvalue()
    chat = ChatClient(stack.ws_url, "en")
    cases = {
        "photo_corrupt": good[: len(good) // 2],  # truncated JPEG
        "photo_too_many_pixels": png_bomb(),
        "photo_unsupported_type": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF",  # a PDF called .jpg
        "photo_empty": b"",
    }
    for code, data in cases.items():
        [reply] = chat.photo(data, name="damage.jpg")
        assert reply["type"] == "error" and reply["code"] == code, reply
        assert reply["text"] and reply["sender"] == "system"
    chat.send_raw(json.dumps({"type": "image", "data": "@@not base64@@", "client_id": "x1"}))
    assert chat.recv()["code"] == "photo_invalid_base64"
    huge = "A" * (stack.settings.max_photo_bytes * 4 // 3 + 10_000)
    chat.send_raw(json.dumps({"type": "image", "data": huge, "client_id": "x2"}))
    reply = chat.recv()
    assert reply["code"] == "photo_too_large" and "8 MB" in reply["text"]
    chat.send_raw(json.dumps({"type": "text", "text": "x" * 70_000, "client_id": "x3"}))
    assert chat.recv()["code"] == "frame_too_large"
    assert of_type(chat.say("hello"), "buttons") or texts(chat.say("thanks"))  # still talking
    with session_factory(stack.settings.db_url)() as session:
        kinds = [m.type for m in session.scalars(select(TranscriptMessage).where(
            TranscriptMessage.conversation_id == chat.conversation_id))]
        assert "image" not in kinds and kinds.count("error") == len(cases) + 3
        assert not session.scalars(select(Photo).where(Photo.conversation_id == chat.conversation_id)).all()
    chat.close()


def test_a_typed_intent_cannot_claim_damage_with_someone_elses_photo(stack):
    damaged, _, _ = photo_where(lambda o: o == "stain", "stain", "fabric")
    owner = ChatClient(stack.ws_url, "en")
    photo_id = owner.photo(damaged)[0]["photo_id"]
    owner.close()
    order_no, digits = claimable_order(stack, "en")
    forged = '/report_defect{"defect_type": "stain", "defect_confidence": 0.99, "photo_id": "%s"}' % photo_id
    for send in ("say", "postback"):  # typed into the box, or a forged button press
        thief = ChatClient(stack.ws_url, "en")
        replies = getattr(thief, send)(forged)
        replies += thief.say(order_no)
        replies += thief.say(digits)
        assert not of_type(replies, "return"), send
        assert "Would you like a replacement or a refund" not in texts(replies), send
        thief.close()
    with session_factory(stack.settings.db_url)() as session:
        assert not session.scalars(select(ReturnRequest).where(ReturnRequest.photo_id == photo_id)).all()
