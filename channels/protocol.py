"""The widget's WebSocket protocol (``/ws/chat``), parsed at the edge into typed messages.

Client -> server (JSON text frames):
  {"type": "hello",    "language": "zh"|"en", "customer_token"?: str}             start a conversation
  {"type": "resume",   "conversation_id": str, "last_seq": int, "language"?: ...}  reconnect; replays seq > last_seq
  {"type": "text",     "text": str (1-2000 chars), "client_id": str}
  {"type": "postback", "payload": "/intent{...}", "title": str, "client_id": str}
  {"type": "image",    "data": base64 JPEG/PNG/WebP, "client_id": str}            a photo (checked, classified)
  {"type": "audio",    "data": base64 WebM/Ogg/MP4/WAV/..., "client_id": str}     a voice message (<= 60 s), transcribed

Server -> client: every message has "id", "seq" (per conversation, increasing; a message is
stored before it is sent), "type" and "sender" ("shopper" | "bot" | "agent" | "system"). Types: welcome,
text (from an agent: with agent_name), image (the shopper's photo: photo_id, url), voice (the shopper's voice
message: text heard, audio_url, duration_s, language), buttons, product_cards, coupon, checkout, order, stock,
return, citations, unanswered, handoff, agent_joined / agent_left (a human agent took the conversation over or
handed it back: text, agent_name), error; and "typing", which is not stored and repeats the last seq.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from starlette.websockets import WebSocket, WebSocketDisconnect

Language = Literal["zh", "en"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Hello(_Message):
    type: Literal["hello"]
    language: Language = "zh"
    customer_token: str | None = Field(None, max_length=2048)


class Resume(_Message):
    type: Literal["resume"]
    conversation_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    last_seq: int = Field(0, ge=0)
    language: Language | None = None
    customer_token: str | None = Field(None, max_length=2048)


class Text(_Message):
    type: Literal["text"]
    text: str = Field(min_length=1)
    client_id: str = Field(min_length=1, max_length=64)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the text is blank")
        return value


class Postback(_Message):
    type: Literal["postback"]
    payload: str = Field(min_length=2, max_length=500, pattern=r"^/")
    title: str = Field("", max_length=200)
    client_id: str = Field(min_length=1, max_length=64)


class ImageMessage(_Message):
    type: Literal["image"]
    data: str  # base64 (a data: URL prefix is accepted); empty is refused as photo_empty
    client_id: str = Field(min_length=1, max_length=64)
    name: str = Field("", max_length=200)  # the file name, never trusted for the type


class AudioMessage(_Message):
    type: Literal["audio"]
    data: str  # base64 (a data: URL prefix is accepted); the format is sniffed from the bytes
    client_id: str = Field(min_length=1, max_length=64)
    mime: str = Field("", max_length=100)  # what the recorder said it made; never trusted


ClientMessage = Annotated[Hello | Resume | Text | Postback | ImageMessage | AudioMessage, Field(discriminator="type")]
client_message = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("hello", "resume", "text", "postback", "image", "audio")

async def receive_frame(websocket: WebSocket) -> str | None:
    """The next text frame; None for a binary frame (neither protocol uses them)."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    return message.get("text")


def from_own_pages(websocket: WebSocket) -> bool:
    """Whether the browser page that opened the socket was served by this host (its Origin)."""
    origin = websocket.headers.get("origin", "").rstrip("/")
    return bool(origin) and origin.split("://", 1)[-1] == websocket.headers.get("host", "")


def parse_json(frame: str) -> Any:
    """The frame's JSON value; ValueError for anything that is not JSON, nested too deep included."""
    try:
        return json.loads(frame)
    except RecursionError as error:  # "[[[[…": the decoder's recursion limit, not a server fault
        raise ValueError("JSON nested too deeply") from error


# error codes the widget knows how to show (message text is in the shopper's language)
ERROR_TEXT: dict[str, tuple[str, str]] = {
    "malformed_json": ("消息格式错误，已忽略。", "That message was not valid JSON and was ignored."),
    "binary_frame": ("不支持二进制消息，已忽略。", "Binary frames aren't supported; that one was ignored."),
    "frame_too_large": ("消息太大了，已忽略。", "That message was too large and was ignored."),
    "unknown_type": ("不支持的消息类型。", "That kind of message isn't supported."),
    "invalid_message": ("消息内容不完整或格式不对。", "That message was incomplete or malformed."),
    "text_too_long": ("消息太长了（最多{limit}字），请分几次发送。",
                      "That message is too long (at most {limit} characters); please split it."),
    "not_started": ("请先建立会话。", "Please start the conversation first."),
    "unknown_conversation": ("会话已失效，已为您开始新的会话。", "That conversation has expired; a new one has started."),
    "audio_invalid_base64": ("语音数据损坏，请重新录制。", "The voice message was damaged on the way; please record it again."),
    "audio_empty": ("语音是空的，请按住麦克风按钮说话。", "That voice message was empty; hold the microphone button while you speak."),
    "audio_too_large": ("语音文件太大了（最大{limit_mb}MB）。", "That voice message is too large (at most {limit_mb} MB)."),
    "audio_unsupported_type": ("无法识别这种语音格式，请直接在网页里录音。",
                               "That isn't a sound format I can play; please record in the chat window."),
    "audio_corrupt": ("语音已损坏或不完整，请重新录制。", "That voice message is damaged or incomplete; please record it again."),
    "audio_too_long": ("语音太长了（最多{limit_s}秒），请分几段说。",
                       "That voice message is too long (at most {limit_s} seconds); please split it up."),
    "audio_silent": ("抱歉，我没有听到声音，请靠近麦克风再说一次。",
                     "Sorry, I could not hear anything; please speak closer to the microphone."),
    "audio_no_speech": ("抱歉，我没有听清，请再说一次或直接打字。",
                        "Sorry, I could not make that out; please say it again or type it."),
    "audio_unavailable": ("语音识别暂时不可用，请打字告诉我。",
                          "Voice recognition isn't available right now; please type your message."),
    "photo_invalid_base64": ("图片数据损坏，请重新发送。", "The photo's data was damaged on the way; please send it again."),
    "photo_empty": ("图片是空的，请重新选择一张照片。", "That photo was empty; please choose another one."),
    "photo_too_large": ("图片太大了（最大{limit_mb}MB），请压缩后再发。",
                        "That photo is too large (at most {limit_mb} MB); please send a smaller one."),
    "photo_unsupported_type": ("只支持 JPG、PNG 或 WebP 格式的照片。",
                               "Only JPEG, PNG or WebP photos can be sent."),
    "photo_too_many_pixels": ("图片分辨率太高了，请发送普通照片。",
                              "That image has far too many pixels; please send a normal photo."),
    "photo_too_small": ("图片太小了，看不清，请拍一张清晰的照片。", "That image is too small to see anything; please take a clear photo."),
    "photo_corrupt": ("图片已损坏或不完整，无法打开，请重新发送。",
                      "That photo is damaged or incomplete and can't be opened; please send it again."),
    "rate_limited": ("您发送得太快了，请稍等一下再发。", "You're sending messages too fast; please wait a moment."),
    "upstream_unavailable": ("抱歉，系统有点忙，请稍后重试。您的消息已保存。",
                             "Sorry, I'm having trouble right now; please try again. Your message is saved."),
}
