"""After-sales on a photo: the shopper shows the damage, kefu's classifier says what it sees, and
the dialog acts on it.

Clear damage on a delivered order inside the return window -> the shopper picks a replacement or
a refund and the return request (RMA) is created with the photo and the prediction on it. An
unsure or no-damage photo -> one more photo is asked for; a second one -> a human agent.

What the photo shows is read from the database row the gateway wrote, never from the message:
a shopper typing ``/report_defect{"defect_type": ...}`` cannot invent damage, and a photo from
another conversation is not accepted.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from assistant.actions.context import language, shop_session, t
from assistant.actions.orders import _verified, _VerifiedOrderSlots
from assistant.commerce.models import Photo
from assistant.commerce.service import ShopError, check_quality_claim, create_return

log = logging.getLogger(__name__)

DAMAGE = ("scratch", "crack_or_broken", "stain", "tear_or_hole", "dent")
DEFECT_TEXT = {
    "scratch": ("划痕", "a scratch"), "crack_or_broken": ("裂痕或破损", "a crack or breakage"),
    "stain": ("污渍", "a stain"), "tear_or_hole": ("破洞或撕裂", "a tear or hole"), "dent": ("凹陷", "a dent"),
}
REMEDIES = ("replacement", "refund")
MAX_PHOTOS = 2  # unsure twice: a human looks at it
_DEFECT_SLOTS = ("defect_photo", "defect_type", "defect_confidence", "defect_attempts", "remedy")
RESET = [SlotSet(name, None) for name in _DEFECT_SLOTS] + [
    SlotSet("order_id", None), SlotSet("phone_last4", None)]


def photo_of(tracker: Tracker, photo_id: str | None) -> Photo | None:
    """The conversation's own photo with this id."""
    if not photo_id:
        return None
    with shop_session() as session:
        photo = session.get(Photo, str(photo_id))
        if photo is None or photo.conversation_id != tracker.sender_id:
            log.info("photo not found in conversation=%s", tracker.sender_id)
            return None
        session.expunge(photo)
        return photo


class ValidateDefectForm(_VerifiedOrderSlots, FormValidationAction):
    def name(self) -> str:
        return "validate_defect_form"

    def validate_defect_photo(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                              domain: dict) -> dict[str, Any]:
        photo = photo_of(tracker, value)
        attempts = int(tracker.get_slot("defect_attempts") or 0) + 1
        if photo is None:
            return {"defect_photo": None, "defect_type": None}
        outcome = photo.outcome or "unsure"
        if outcome in DAMAGE or attempts >= MAX_PHOTOS:
            return {"defect_photo": photo.id, "defect_type": outcome, "defect_confidence": photo.confidence,
                    "defect_attempts": float(attempts)}
        # unsure, or no damage to be seen: ask once more (action_ask_defect_photo says why)
        return {"defect_photo": None, "defect_type": outcome, "defect_attempts": float(attempts)}


class ActionAskDefectPhoto(Action):
    """Asks for a photo of the damage; after a photo that showed nothing clear, says so and how to
    take a better one."""

    def name(self) -> str:
        return "action_ask_defect_photo"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        previous = tracker.get_slot("defect_type")
        if previous == "no_visible_defect":
            text = t(lang, "这张照片里我没有看到明显的损坏。可以再拍一张吗？请靠近损坏的位置，光线充足一些。",
                     "I couldn't see any damage in that photo. Could you take another one, closer to the damaged "
                     "spot and in good light?")
        elif previous:
            text = t(lang, "这张照片我看不太清楚损坏情况。可以再拍一张吗？请对准损坏处，保持清晰、光线充足。",
                     "I can't make out the damage clearly in that photo. Could you take another one, focused on "
                     "the damaged spot and in good light?")
        else:
            text = t(lang, "请拍一张损坏部位的照片发给我（点击输入框旁的相机按钮），我来帮您判断并处理。",
                     "Please send me a photo of the damage (tap the camera button next to the message box) and I'll sort it out.")
        dispatcher.utter_message(text=text, buttons=[{"title": t(lang, "转人工", "Talk to an agent"),
                                                      "payload": "/human_agent"}])
        return []


class ActionDefectClaim(Action):
    """After the form: offer a replacement or a refund for clear damage on an eligible order, or
    hand the photos to a human."""

    def name(self) -> str:
        return "action_defect_claim"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        photo = photo_of(tracker, tracker.get_slot("defect_photo"))
        outcome = photo.outcome if photo else None
        if outcome not in DAMAGE:
            dispatcher.utter_message(text=t(
                lang, "照片里的情况需要人工客服帮您确认，我已把照片和订单信息转给客服，请稍候。",
                "A human agent needs to look at your photos; I've passed them and your order on. Please hold on."))
            dispatcher.utter_message(json_message={"type": "handoff", "reason": "defect_photo_unclear"})
            return RESET
        with shop_session() as session:
            try:
                order = _verified(tracker, session)
                delivered = check_quality_claim(session, order)
            except ShopError as error:
                messages = {
                    "return_exists": ("这个订单已经有售后单 {d} 了，进度可以随时问我。",
                                      "This order already has return {d}; ask me any time how it's going."),
                    "not_delivered": ("订单还没有签收，签收后如有损坏再来找我。",
                                      "That order hasn't been delivered yet; if it arrives damaged, come back to me."),
                    "cancelled": ("这个订单已经取消了。", "That order is cancelled."),
                    "window_closed": ("订单于{d}签收，已超过30天的质量问题售后期。我帮您转人工客服看看。",
                                      "The order was delivered on {d}, more than 30 days ago, outside the window "
                                      "for quality claims. Let me get an agent to look at it."),
                }
                zh, en = messages.get(error.code, ("无法验证该订单。", "I couldn't verify that order."))
                dispatcher.utter_message(text=t(lang, zh, en, d=error.detail))
                if error.code == "window_closed":
                    dispatcher.utter_message(json_message={"type": "handoff", "reason": "claim_window_closed"})
                return RESET
            order_no = order.order_no
        zh, en = DEFECT_TEXT[outcome]
        dispatcher.utter_message(
            text=t(lang, "照片里能看到{d}（把握度{p}%）。订单 {no} 于{day}签收，在30天质量问题售后期内，"
                         "运费由我们承担。您想要换新还是退款？",
                   "I can see {d} in the photo ({p}% sure). Order {no} was delivered on {day}, inside the 30-day "
                   "window for quality problems, and we pay the shipping. Would you like a replacement or a refund?",
                   d=zh if lang == "zh" else en, p=round(100 * (photo.confidence or 0)), no=order_no,
                   day=delivered.date().isoformat()),
            buttons=[{"title": t(lang, "换新", "Replacement"), "payload": '/inform{"remedy": "replacement"}'},
                     {"title": t(lang, "退款", "Refund"), "payload": '/inform{"remedy": "refund"}'},
                     {"title": t(lang, "转人工", "Talk to an agent"), "payload": "/human_agent"}])
        return [SlotSet("verified_order", order_no)]


class ActionCreateDefectReturn(Action):
    """The shopper's choice after ``action_defect_claim``: the RMA with the photo and prediction."""

    def name(self) -> str:
        return "action_create_defect_return"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        remedy = tracker.get_slot("remedy")
        photo = photo_of(tracker, tracker.get_slot("defect_photo"))
        if remedy not in REMEDIES or photo is None or photo.outcome not in DAMAGE:
            dispatcher.utter_message(text=t(lang, "请选择换新或退款，或者转人工客服。",
                                            "Please choose a replacement or a refund, or talk to an agent."))
            return [SlotSet("remedy", None)]
        with shop_session() as session:
            try:
                order = _verified(tracker, session)
                check_quality_claim(session, order)
                zh, en = DEFECT_TEXT[photo.outcome]
                rma = create_return(session, order, f"quality: {en} (photo)", tracker.sender_id, kind=remedy,
                                    photo=photo)
            except ShopError as error:
                dispatcher.utter_message(text=t(lang, "售后单没能创建（{c}），我帮您转人工客服。",
                                                "I couldn't register the claim ({c}); let me get an agent.",
                                                c=error.code))
                dispatcher.utter_message(json_message={"type": "handoff", "reason": "claim_failed"})
                return RESET
            if remedy == "replacement":
                text = t(lang, "已为您登记换新，售后单号 {rma}。快递员会上门取回损坏的商品，新的商品会尽快发出，运费由我们承担。",
                         "Your replacement is registered as {rma}. A courier will collect the damaged item and "
                         "the new one ships right away; we pay the shipping.", rma=rma.rma_no)
            else:
                text = t(lang, "已为您登记退款，售后单号 {rma}。快递员上门取件后1个工作日内原路退款，运费由我们承担。",
                         "Your refund is registered as {rma}. A courier will collect the item and the money goes "
                         "back to your payment method within 1 working day; we pay the shipping.", rma=rma.rma_no)
            dispatcher.utter_message(text=text)
            dispatcher.utter_message(json_message={
                "type": "return", "rma": rma.rma_no, "order_id": order.order_no, "status": rma.status,
                "kind": remedy, "defect_type": photo.outcome, "photo_url": f"/photos/{photo.id}"})
        return RESET
