"""A shopper in headless Chromium (Debian's) uses the real widget against the real stack."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.test_chat_e2e import an_order

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 60_000


MICROPHONE_SAYS = "Can you track my order please?"  # words Whisper hears well through Opus


@pytest.fixture(scope="module")
def microphone(tmp_path_factory) -> Path:
    """What Chromium's fake microphone plays: espeak-ng asking a question (once per recording)."""
    from tests.voice_audio import speak

    recording = tmp_path_factory.mktemp("microphone") / "microphone.wav"
    recording.write_bytes(speak(MICROPHONE_SAYS))
    return recording


@pytest.fixture(scope="module")
def browser(microphone):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed: `make test` installs it (apt-get install chromium)")
    fake_microphone = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       f"--use-file-for-fake-audio-capture={microphone}"]  # played in a loop
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS + fake_microphone)
        yield browser
        browser.close()


_SHOWN = "document.querySelectorAll('.kefu-log > :not(.kefu-typing)').length"


def send(page: Page, text: str) -> None:
    """Type and send like a shopper, then wait for the echo and the bot's answer."""
    before = page.evaluate(_SHOWN)
    page.fill(".kefu-input", text)
    page.click(".kefu-send")
    wait_for_answer(page, before)


def wait_for_answer(page: Page, before: int) -> None:
    page.wait_for_function(f"{_SHOWN} >= {before + 2} && !document.querySelector('.kefu-typing')",
                           timeout=ANSWER_TIMEOUT_MS)


def test_chinese_shopper_buys_with_a_coupon(stack, browser, output_dir):
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")  # phone width
    page.goto(stack.gateway + "/")
    page.click("#kefu-launcher")
    expect(page.locator(".kefu-status")).to_have_text("在线", timeout=ANSWER_TIMEOUT_MS)

    send(page, "我想买一件羽绒服")
    cards = page.locator(".kefu-carousel .kefu-card")
    expect(cards.first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(cards.first.locator(".kefu-name")).to_contain_text("羽绒服")
    expect(cards.first.locator("img")).to_have_attribute("src", re.compile(r"/shop/images/.+\.svg$"))
    page.screenshot(path=str(output_dir / "zh-1-product-cards.png"))

    send(page, "有优惠券吗")
    coupon = page.locator(".kefu-coupon .kefu-code")
    expect(coupon).to_have_text(re.compile(r"CP[0-9A-F]{8}"), timeout=ANSWER_TIMEOUT_MS)
    code = coupon.inner_text()
    page.screenshot(path=str(output_dir / "zh-2-coupon.png"))

    before = page.evaluate(_SHOWN)
    cards.first.get_by_role("button", name="立即购买").click()
    wait_for_answer(page, before)
    link = page.locator(".kefu-checkout a")
    expect(link).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(output_dir / "zh-3-checkout-link.png"))

    with page.context.expect_page() as opened:
        link.click()
    checkout = opened.value
    checkout.wait_for_load_state()
    expect(checkout.locator("tr.discount")).to_contain_text(code)
    expect(checkout.locator("tr.discount")).to_contain_text("-¥20.00")
    subtotal = float(checkout.locator("tr.subtotal .num").inner_text().lstrip("¥").replace(",", ""))
    total = float(checkout.locator("#total").inner_text().lstrip("¥").replace(",", ""))
    assert total == pytest.approx(subtotal - 20)
    checkout.screenshot(path=str(output_dir / "zh-4-checkout-page.png"), full_page=True)
    page.close()


def test_english_shopper_tracks_own_order_and_is_refused_anothers(stack, browser, output_dir):
    own, own_digits = an_order(stack, "shipped")
    other, other_digits = an_order(stack, "delivered")
    page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="en-US")
    page.goto(stack.gateway + "/?lang=en")
    page.click("#kefu-launcher")
    expect(page.locator(".kefu-status")).to_have_text("online", timeout=ANSWER_TIMEOUT_MS)

    send(page, "where is my order")
    send(page, own)
    send(page, own_digits)
    expect(page.locator(".kefu-order")).to_contain_text(own, timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(output_dir / "en-1-own-order.png"))

    send(page, f"track order {other}")
    send(page, "0000" if other_digits != "0000" else "1111")
    expect(page.locator(".kefu-log")).to_contain_text("don't match", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator(".kefu-order")).to_have_count(1)  # nothing about the other shopper's order
    page.screenshot(path=str(output_dir / "en-2-refused.png"))

    page.reload()  # the conversation survives a page reload (resume by sequence number)
    page.click("#kefu-launcher")
    expect(page.locator(".kefu-order")).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator(".kefu-log")).to_contain_text("don't match")
    page.close()


def test_shopper_sees_the_promotion_on_cards_and_asks_the_price(stack, browser, output_dir):
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page.goto(stack.gateway + "/")
    page.click("#kefu-launcher")
    expect(page.locator(".kefu-status")).to_have_text("在线", timeout=ANSWER_TIMEOUT_MS)
    send(page, "有什么护肤品推荐吗")
    card = page.locator(".kefu-carousel .kefu-card").first
    expect(card.locator(".kefu-promo")).to_have_text("护肤节 9折", timeout=ANSWER_TIMEOUT_MS)
    name = card.locator(".kefu-name").inner_text()
    send(page, f"{name}多少钱")
    expect(page.locator(".kefu-log")).to_contain_text("已含「护肤节 9折」优惠", timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(output_dir / "zh-5-promotion-price.png"))
    page.close()


def test_shopper_photographs_a_broken_cup_and_gets_a_refund(stack, browser, output_dir, tmp_path):
    from tests.test_photo_e2e import claimable_order, photo_where

    damaged, _, _ = photo_where(lambda o: o == "crack_or_broken", "crack_or_broken")
    photo = tmp_path / "IMG_2041.jpg"
    photo.write_bytes(damaged)
    order_no, digits = claimable_order(stack, "en")
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="en-US")
    page.goto(stack.gateway + "/?lang=en")
    page.click("#kefu-launcher")
    expect(page.locator(".kefu-status")).to_have_text("online", timeout=ANSWER_TIMEOUT_MS)

    send(page, "the cup I received is broken")
    expect(page.locator(".kefu-log")).to_contain_text("send me a photo", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator(".kefu-attach")).to_be_visible()
    before = page.evaluate(_SHOWN)
    page.set_input_files(".kefu-file", str(photo))  # what the 📷 button's file chooser does
    wait_for_answer(page, before)
    shown = page.locator(".kefu-photo img").first
    expect(shown).to_have_attribute("src", re.compile(r"/photos/[\w-]+$"), timeout=ANSWER_TIMEOUT_MS)
    expect(shown).to_have_attribute("alt", "Your photo")
    page.wait_for_function("document.querySelector('.kefu-photo img').naturalWidth > 0", timeout=ANSWER_TIMEOUT_MS)
    send(page, order_no)
    send(page, digits)
    expect(page.locator(".kefu-log")).to_contain_text("replacement or a refund", timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(output_dir / "en-3-photo-offer.png"))

    before = page.evaluate(_SHOWN)
    page.get_by_role("button", name="Refund", exact=True).last.click()
    wait_for_answer(page, before)
    rma = page.locator(".kefu-return")
    expect(rma).to_contain_text("Refund", timeout=ANSWER_TIMEOUT_MS)
    expect(rma).to_contain_text(order_no)
    expect(rma.locator("img")).to_have_attribute("src", re.compile(r"/photos/[\w-]+$"))
    page.screenshot(path=str(output_dir / "en-4-photo-refund.png"))
    page.close()


def test_shopper_holds_the_microphone_and_asks_by_voice(stack, browser, microphone, output_dir):
    """Chromium's fake microphone plays an espeak-ng recording into the real MediaRecorder."""
    from channels.voice.audio import decode

    seconds = decode(microphone.read_bytes()).seconds
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="en-US")
    page.goto(stack.gateway + "/?lang=en")
    page.click("#kefu-launcher")
    expect(page.locator(".kefu-status")).to_have_text("online", timeout=ANSWER_TIMEOUT_MS)

    mic = page.locator(".kefu-mic")
    expect(mic).to_have_attribute("aria-label", "Hold to talk")
    box = mic.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()  # the fake microphone starts playing when the recorder opens it
    expect(page.locator(".kefu-recording")).to_contain_text("Release to send")
    page.screenshot(path=str(output_dir / "en-5-voice-recording.png"))
    page.wait_for_timeout(seconds * 2000 + 900)  # whatever the loop's phase, one whole question is said
    page.mouse.up()

    heard = page.locator(".kefu-voice")
    expect(heard).to_contain_text(re.compile("track my order", re.I), timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator(".kefu-log")).to_contain_text("order number", timeout=ANSWER_TIMEOUT_MS)
    expect(heard.locator(".kefu-play")).to_be_visible()
    page.screenshot(path=str(output_dir / "en-6-voice-answered.png"))

    # a press released far away from the button is a cancelled recording: nothing is sent
    shown = page.evaluate(_SHOWN)
    page.mouse.down()
    page.wait_for_timeout(1200)
    page.mouse.move(box["x"] - 250, box["y"] - 400)
    page.mouse.up()
    expect(page.locator(".kefu-log")).to_contain_text("Voice message cancelled")
    page.wait_for_timeout(1500)
    assert page.locator(".kefu-voice").count() == 1 and page.evaluate(_SHOWN) == shown + 1
    page.close()
