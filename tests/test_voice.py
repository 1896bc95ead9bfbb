"""Voice messages below the gateway: checking and decoding what arrives, and the transcriber
contract run against both Whisper backends."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from channels.voice.audio import SAMPLE_RATE, AudioError, AudioLimits, decode, is_silent, sniff, to_wav
from channels.voice.transcriber import FasterWhisper, OpenAIWhisper, Transcript, pick_language, prompt, to_simplified
from tests.voice_audio import convert, speak

SENTENCE = "Where is my order? I bought a linen shirt last week."


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


# --------------------------------------------------------------------------- checking and decoding


@pytest.mark.parametrize("kind", ["wav", "ogg", "flac", "webm"])
def test_every_recorder_format_decodes_to_16khz_mono(kind):
    data = speak(SENTENCE) if kind == "wav" else convert(speak(SENTENCE), kind)
    clip = decode(data)
    assert clip.format == kind and sniff(data) == kind
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    reference = decode(speak(SENTENCE))
    assert abs(clip.seconds - reference.seconds) < 0.15, (clip.seconds, reference.seconds)
    assert not is_silent(clip.samples) and np.abs(clip.samples).max() <= 1.0


@pytest.mark.parametrize("data, code", [
    (b"", "empty"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj", "unsupported_type"),  # a PDF named .webm
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "unsupported_type"),
    (b"OggS" + bytes(300), "corrupt"),
    (b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 4, "corrupt"),
])
def test_bad_audio_is_refused_with_a_reason(data, code):
    with pytest.raises(AudioError) as caught:
        decode(data)
    assert caught.value.code == code, caught.value


def test_a_wav_in_an_encoding_ffmpeg_cannot_decode_is_refused_not_crashed_on():
    # 36-bit PCM: a valid-looking header FFmpeg opens without a decoder (scipy's test files have such)
    import struct

    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000 * 5, 5, 36)
    samples = bytes(5 * 8000)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    with pytest.raises(AudioError) as caught:
        decode(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert caught.value.code == "unsupported_type" and "cannot be decoded" in caught.value.detail


def test_a_truncated_recording_keeps_what_can_be_heard_and_a_header_alone_is_refused():
    wav = speak(SENTENCE)
    with pytest.raises(AudioError, match="corrupt"):
        decode(wav[:60])
    half = decode(wav[: len(wav) // 2])
    assert 0.4 < half.seconds / decode(wav).seconds < 0.6
    webm = convert(wav, "webm")
    assert decode(webm[: len(webm) * 2 // 3]).seconds > 1.0


def test_size_and_length_limits():
    wav = speak(SENTENCE)
    with pytest.raises(AudioError, match="too_large"):
        decode(wav, AudioLimits(max_bytes=len(wav) - 1))
    with pytest.raises(AudioError, match="too_long"):
        decode(wav, AudioLimits(max_seconds=2))
    # a small file that decodes to far more than the limit is stopped while decoding
    long_quiet = convert(to_wav(np.full(SAMPLE_RATE * 120, 0.001, np.float32)), "flac")
    assert len(long_quiet) < 200_000
    with pytest.raises(AudioError, match="too_long"):
        decode(long_quiet, AudioLimits(max_seconds=60))


def test_silence_is_told_apart_from_speech():
    assert is_silent(np.zeros(SAMPLE_RATE, np.float32))
    assert is_silent(np.random.default_rng(0).normal(0, 0.0005, SAMPLE_RATE).astype(np.float32))
    assert not is_silent(decode(speak("hello")).samples)


# --------------------------------------------------------------------------- helpers of the transcriber


def test_chinese_comes_back_in_simplified_characters():
    assert to_simplified("我的訂單號碼是多少？") == "我的订单号码是多少？"
    assert to_simplified("where is my order") == "where is my order"


def test_digits_read_out_one_by_one_become_a_number():
    from channels.voice.transcriber import join_spoken_digits

    assert join_spoken_digits("The last four digits are five, six, seven, eight.") == "The last four digits are 5678."
    assert join_spoken_digits("1, 7, 4, 4") == "1744" and join_spoken_digits("zero-two-nine-one") == "0291"
    assert join_spoken_digits("I want two of these for 3 people") == "I want two of these for 3 people"
    assert join_spoken_digits("order KF10296356") == "order KF10296356"


def test_only_chinese_or_english_is_chosen():
    assert pick_language({"zh": 0.2, "en": 0.1, "th": 0.6}, False) == ("zh", pytest.approx(2 / 3))
    assert pick_language({"ja": 0.9, "en": 0.06, "zh": 0.04}, False)[0] == "en"
    assert pick_language({"zh": 0.9}, True) == ("en", 1.0)


def test_the_prompt_names_the_shops_products_within_whispers_budget():
    names = [f"Product number {i}" for i in range(100)]
    text = prompt("en", names)
    assert text is not None and text.startswith("A shopper reads out an order number (KF and 8 digits) or "
                                                "phone digits, or asks about products: Product number 0, ")
    assert len(text) <= 300 and "Product number 99" not in text
    assert prompt("zh", ["亚麻衬衫", "保温杯"]) == "顾客报订单号（KF加8位数字）、手机尾号，或咨询商品：亚麻衬衫，保温杯。"
    assert prompt("en", []) is None


# --------------------------------------------------------------------------- the transcriber contract


def tiny_random_whisper(path: Path) -> Path:
    """An openai-whisper checkpoint with the real multilingual vocabulary and random weights: the
    reference backend loads and runs it exactly as it would the published ``.pt`` files."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=1)
    model = Whisper(dims)
    with torch.no_grad():  # the decoder's positional embedding starts as torch.empty: give it numbers
        model.decoder.positional_embedding.normal_(0, 0.02)
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module", params=["faster-whisper tiny.en", "openai-whisper tiny random"])
def transcriber(request, tmp_path_factory):
    if request.param.startswith("faster"):
        backend = FasterWhisper("tiny.en", beam_size=5)
    else:
        backend = OpenAIWhisper(tiny_random_whisper(tmp_path_factory.mktemp("whisper") / "tiny-random.pt"),
                                beam_size=1)
    backend.warm_up()
    return backend


def test_contract_a_transcript_says_what_language_and_how_long(transcriber):
    clip = decode(speak(SENTENCE))
    result = transcriber.transcribe(clip.samples)
    assert isinstance(result, Transcript) and isinstance(result.text, str)
    assert result.language in ("zh", "en") and 0.0 <= result.language_probability <= 1.0
    assert result.audio_seconds == pytest.approx(clip.seconds) and result.seconds > 0
    assert result.model == transcriber.name
    forced = transcriber.transcribe(clip.samples[: SAMPLE_RATE * 2], language="en")
    assert forced.language == "en"


def test_faster_whisper_hears_the_shopper():
    model = FasterWhisper("tiny.en")
    result = model.transcribe(decode(speak(SENTENCE)).samples, hotwords={"en": ["Linen shirt"]})
    assert result.language == "en"
    heard = words(result.text)
    assert {"where", "is", "my", "order", "linen", "shirt"} <= set(heard), result.text
    assert result.rtf < 2  # sanity, not a benchmark: tiny.en is far faster than real time


def test_the_multilingual_base_model_is_assembled_from_its_two_packages(tmp_path):
    model = FasterWhisper("base", models_dir=tmp_path)
    result = model.transcribe(decode(speak("Hello, I would like to return these shoes.")).samples)
    assert (tmp_path / "whisper-base" / "model.bin").stat().st_size > 100_000_000
    assert not list((tmp_path / "whisper-base").glob("*.part"))
    assert result.language == "en" and result.language_probability > 0.8
    assert {"return", "these", "shoes"} <= set(words(result.text)), result.text


# --------------------------------------------------------------------------- the telephone side


def test_mulaw_matches_g711():
    from channels.voice.telephony import ulaw_decode, ulaw_encode

    assert ulaw_encode(np.zeros(3, np.float32)) == b"\xff\xff\xff"
    assert list((ulaw_decode(bytes([0x00, 0x80, 0xFF, 0x7F])) * 32768).astype(int)) == [-32124, 32124, 0, 0]
    every_code = bytes(range(256))
    assert ulaw_encode(ulaw_decode(every_code)) == every_code.replace(b"\x7f", b"\xff")  # -0 and +0 are one
    tone = (0.6 * np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000)).astype(np.float32)
    error = np.abs(ulaw_decode(ulaw_encode(tone)) - tone)
    assert error.max() < 0.02 and error.mean() < 0.005  # 8-bit companding, about 38 dB SNR


def test_turns_are_cut_at_pauses_and_speech_start_is_reported_at_once():
    from channels.voice.telephony import FRAME_SAMPLES, PHONE_RATE, TurnDetector, resample

    speech = resample(decode(speak(SENTENCE)).samples, SAMPLE_RATE, PHONE_RATE)
    silence = np.zeros(PHONE_RATE, np.float32)
    stream = np.concatenate([silence, speech, silence, speech[: PHONE_RATE // 2]])
    detector = TurnDetector()
    events = []
    for i in range(0, len(stream) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        event = detector.push(stream[i:i + FRAME_SAMPLES])
        if event is not None:
            events.append((i / PHONE_RATE, event))
    started = [t for t, e in events if isinstance(e, str)]
    turns = [(t, e) for t, e in events if not isinstance(e, str)]
    assert len(started) == 2 and abs(started[0] - 1.0) < 0.4  # reported within a few frames of the voice
    assert len(turns) == 1  # espeak's short pauses between words do not end the turn
    seconds = len(turns[0][1]) / PHONE_RATE
    assert len(speech) / PHONE_RATE < seconds < len(speech) / PHONE_RATE + 1.2
    rest = detector.flush()  # the call ended mid-sentence: what was said is kept
    assert rest is not None and len(rest) / PHONE_RATE > 0.3


def test_espeak_speaks_both_languages():
    from channels.voice.speech import Espeak, sentences

    speaker = Espeak()
    english, rate = speaker.speak("Your order has shipped.", "en")
    chinese, _ = speaker.speak("您的订单已发货。", "zh")
    assert rate == SAMPLE_RATE and len(english) / rate > 0.8 and len(chinese) / rate > 0.8
    assert not is_silent(english) and not is_silent(chinese)
    assert sentences("Hello. How can I help? 好的。谢谢！") == ["Hello.", "How can I help?", "好的。", "谢谢！"]


def test_replies_are_read_out_the_way_a_person_would():
    from channels.voice.phone import speakable

    text = speakable("text", {"text": "Order KF10296356: shipped, total ¥199.00."}, "en")
    assert text == "Order K F, 1 0 2 9, 6 3 5 6: shipped, total 199.00 yuan."
    assert speakable("text", {"text": "订单KF10296356：已发货"}, "zh") == "订单K F, 1 0 2 9, 6 3 5 6：已发货"
    assert speakable("text", {"text": "SF895822569267"}, "en") == "S F, 8 9 5 8, 2 2 5 6, 9 2 6 7"
    buttons = speakable("buttons", {"text": "Replacement or refund?", "buttons": [
        {"title": "Replacement", "payload": "/x"}, {"title": "Refund", "payload": "/y"}]}, "en")
    assert buttons == "Replacement or refund? You can say: Replacement, Refund"
    cards = speakable("product_cards", {"products": [{"name": "Down jacket", "price_text": "¥599"}]}, "en")
    assert cards == "I found: Down jacket 599 yuan"
    assert speakable("order", {"order_id": "KF1"}, "en") is None  # its text reply says it


def test_a_callers_number_is_masked_for_logs():
    from assistant.privacy import mask_phone

    assert mask_phone("+86 139-1234-5678") == "+*********5678"
    assert mask_phone("13912345678") == "*******5678"
    assert mask_phone("") == "-"


def test_a_long_message_goes_through_whispers_30_second_windows():
    """Up to 28 s of speech is decoded in one fitted window; a minute-long message in 30 s windows."""
    one = decode(speak(SENTENCE)).samples
    long_message = np.concatenate([one, np.zeros(SAMPLE_RATE // 2, np.float32)] * 9)
    assert len(long_message) / SAMPLE_RATE > 30
    result = FasterWhisper("tiny.en").transcribe(long_message)
    assert words(result.text).count("shirt") >= 7, result.text
