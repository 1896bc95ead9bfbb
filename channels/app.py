"""The gateway: the widget's WebSocket, its assets, the demo storefront and checkout pages."""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from pathlib import Path

from anyio import to_thread
from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from sqlalchemy import select

from assistant.commerce import api as commerce_api
from assistant.commerce import checkout
from assistant.commerce.db import session_factory
from assistant.commerce.models import Product
from assistant.settings import Settings
from channels import pages, protocol
from channels.admin import analytics
from channels.admin import conversations as admin_conversations
from channels.admin import routes as admin_routes
from channels.admin.auth import Access
from channels.admin.auth import install_error_handler as install_access_errors
from channels.chat import ChatHub, ChatSession
from channels.handoff import HandoffDesk
from channels.limits import SlidingWindow
from channels.photos import PhotoService
from channels.rasa_client import RasaClient
from channels.transcripts import TranscriptStore
from channels.voice.phone import PhoneCall
from channels.voice.service import VoiceService
from channels.voice.speech import Espeak
from knowledge_base import api as kb_api

STATIC = Path(__file__).with_name("static")
log = logging.getLogger("kefu.gateway")
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{16,32}")


def create_app(settings: Settings) -> FastAPI:
    sessions = session_factory(settings.db_url)
    photos = PhotoService(settings, sessions)
    voice = VoiceService(settings, sessions)
    store = TranscriptStore(sessions)
    rasa = RasaClient(settings.rasa_replicas, settings.rasa_timeout_s, in_flight=settings.rasa_in_flight,
                      queue_s=settings.rasa_queue_s)
    desk = HandoffDesk(sessions, store, rasa)
    hub = ChatHub(settings, store, rasa, photos, voice, desk)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        photos.start_loading()
        voice.start_loading()
        yield
        await hub.rasa.aclose()

    app = FastAPI(title="kefu gateway", lifespan=lifespan)
    app.state.desk = desk  # the live handoff desk (tests drive it directly)
    access = Access(settings, sessions)
    owner, staff = access.require("owner"), access.require("owner", "agent")
    tracker = analytics.tracker_engine(settings.tracker_url)  # Rasa's tracker store: intents, a shopper's events
    app.include_router(admin_routes.router(access, tracker))
    app.include_router(admin_conversations.router(access, desk, tracker))
    app.include_router(kb_api.router(settings, sessions, owner, staff))
    app.include_router(commerce_api.router(settings, sessions, owner, staff))
    kb_api.install_error_handlers(app)
    install_access_errors(app)

    def lang_of(value: str | None) -> str:
        return "en" if value == "en" else "zh"

    @app.get("/", response_class=HTMLResponse)
    async def storefront(lang: str | None = None) -> str:
        def render() -> str:
            with sessions() as session:
                return pages.storefront(session, lang_of(lang))
        return await to_thread.run_sync(render)

    @app.get("/widget.js")
    async def widget_js() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript")

    @app.get("/widget.css")
    async def widget_css() -> FileResponse:
        return FileResponse(STATIC / "widget.css", media_type="text/css")

    @app.get("/checkout/{token}", response_class=HTMLResponse)
    async def checkout_page(token: str, lang: str | None = None) -> HTMLResponse:
        language = lang_of(lang)

        def render() -> HTMLResponse:
            with sessions() as session:
                try:
                    cart = checkout.load_cart(session, settings.signing_key(), token, settings.checkout_ttl_s)
                except checkout.CheckoutError as error:
                    status = {"expired": 410, "invalid": 400, "unavailable": 409}[error.code]
                    return HTMLResponse(pages.checkout_error_page(error.code, language), status_code=status)
                checkout.record_open(session, token)
                session.commit()
                return HTMLResponse(pages.checkout_page(cart, language))
        return await to_thread.run_sync(render)

    @app.get("/shop/images/{sku}.svg")
    async def product_image(sku: str) -> Response:
        def render() -> Response:
            with sessions() as session:
                product = session.scalar(select(Product).where(Product.sku == sku))
                if product is None:
                    return JSONResponse({"error": f"no product with SKU {sku!r}"}, status_code=404)
                return Response(pages.product_svg(product), media_type="image/svg+xml",
                                headers={"Cache-Control": "public, max-age=86400"})
        return await to_thread.run_sync(render)

    async def shoppers_file(read, file_id: str, what: str) -> Response:  # type: ignore[no-untyped-def]
        """A file a shopper sent, by its unguessable id (the conversation shows or plays it)."""
        found = await to_thread.run_sync(read, file_id) if _MEDIA_ID.fullmatch(file_id) else None
        if found is None:
            return JSONResponse({"error": f"no such {what}"}, status_code=404)
        data, media_type = found
        return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=86400",
                                                              "X-Content-Type-Options": "nosniff"})

    @app.get("/photos/{photo_id}")
    async def photo(photo_id: str) -> Response:
        """A shopper's photo, metadata removed."""
        return await shoppers_file(photos.read, photo_id, "photo")

    @app.get("/audio/{clip_id}")
    async def audio(clip_id: str) -> Response:
        """A shopper's voice message, as recorded."""
        return await shoppers_file(voice.read, clip_id, "voice message")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "turns_waiting_for_rasa": rasa.waiting}

    allowed_origins = {o.strip().rstrip("/") for o in settings.widget_origins.split(",") if o.strip()}
    connections = SlidingWindow(settings.widget_connections_per_address_minute, 60)

    @app.websocket("/ws/chat")
    async def chat(websocket: WebSocket) -> None:
        """The widget. A browser page of another site not in KEFU_WIDGET_ORIGINS is refused (its
        shoppers' cookies would otherwise ride along), and so is an address opening too many."""
        origin = websocket.headers.get("origin", "").rstrip("/")
        if origin and not protocol.from_own_pages(websocket) and origin not in allowed_origins:
            log.info("widget refused: origin not allowed")
            await websocket.close(code=4403)
            return
        if not connections.allow(websocket.client.host if websocket.client else "-"):
            await websocket.close(code=4429)
            return
        await ChatSession(hub, websocket).run()

    speaker = Espeak()

    @app.websocket("/ws/voice")
    async def phone(websocket: WebSocket) -> None:
        """A phone call over the Twilio Media Streams protocol (channels/voice/phone.py)."""
        await PhoneCall(hub, websocket, speaker).run()

    return app
