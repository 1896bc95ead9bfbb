/* kefu chat widget: <script src="https://your-kefu/widget.js" data-lang="zh" defer></script>
 * Optional attributes: data-lang="zh|en", data-customer-token="<signed token from the shop>", data-open="true".
 * Speaks the /ws/chat protocol (see channels/protocol.py); resumes by sequence number after reconnects. */
(function () {
  "use strict";
  // a drawn camera, not an emoji: it looks the same on every system, fonts or not
  var CAMERA_ICON = '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" fill="none" ' +
    'stroke="currentColor" stroke-width="2" stroke-linejoin="round"><path d="M4 8h3l2-3h6l2 3h3v11H4z"/>' +
    '<circle cx="12" cy="13" r="3.5"/></svg>';
  var MIC_ICON = '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" fill="none" ' +
    'stroke="currentColor" stroke-width="2" stroke-linecap="round"><rect x="9" y="3" width="6" height="11" rx="3"/>' +
    '<path d="M5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21"/></svg>';
  var script = document.currentScript;
  var origin = new URL(script.src, location.href).origin;
  var lang = script.dataset.lang === "en" ? "en" : "zh";
  var customerToken = script.dataset.customerToken || null;
  var STORE = "kefu:" + origin;
  var UI = {
    zh: {title: "在线客服", placeholder: "输入消息…", send: "发送", open: "客服", typing: "正在输入…",
         online: "在线", offline: "重新连接中…", coupon: "优惠券", expires: "有效期至", checkout: "去结算",
         total: "实付", saved: "已优惠", stock: "库存", soldout: "缺货", order: "订单", handoff: "已为您转接人工客服", agentAnswering: "人工客服 · ",
         min: "满", off: "减", source: "来源", photo: "发送照片", sentPhoto: "您发送的照片", rma: "售后单", replacement: "换新",
         refund: "退款", "return": "退货", tooBig: "照片太大了，正在压缩…", hold: "按住说话", release: "松开发送，移开取消",
         tooShort: "说话时间太短", cancelled: "已取消发送", noMic: "这个浏览器不能录音，请打字", micDenied: "没有麦克风权限，请打字或在浏览器设置里允许",
         transcribing: "正在识别语音…", voice: "语音", play: "播放语音", retry: "重新发送"},
    en: {title: "Customer service", placeholder: "Type a message…", send: "Send", open: "Chat", typing: "typing…",
         online: "online", offline: "reconnecting…", coupon: "Coupon", expires: "Expires", checkout: "Checkout",
         total: "Total", saved: "Saved", stock: "In stock", soldout: "Sold out", order: "Order",
         handoff: "Connecting you to a human agent", agentAnswering: "Human agent · ", min: "on orders over", off: "off", source: "Source",
         photo: "Send a photo", sentPhoto: "Your photo", rma: "Return", replacement: "Replacement", refund: "Refund", "return": "Return",
         tooBig: "That photo is large; shrinking it…", hold: "Hold to talk", release: "Release to send, slide away to cancel",
         tooShort: "That was too short", cancelled: "Voice message cancelled", noMic: "This browser cannot record; please type",
         micDenied: "No microphone permission; please type, or allow it in the browser settings",
         transcribing: "Listening to your voice message…", voice: "Voice", play: "Play voice message", retry: "Send again"}
  }[lang];

  // the conversation id survives page loads; last_seq counts what this page has rendered, so a
  // new page replays the whole conversation and a reconnect only what it missed
  var stored = load();
  var state = {conversation_id: stored.conversation_id, last_seq: 0};
  // every message the shopper sent stays in `pending` (by its client id) until a reply names it
  // (reply_to); after a reconnect the unanswered ones are sent again: the gateway knows them by
  // their client id, so a message is never stored or answered twice. Typed messages and button
  // taps are kept in localStorage too, so a page reloaded during an outage still sends them.
  var ws = null, retry = 0, outbox = [], pending = stored.pending || {}, seen = {}, typingEl = null;
  var local = {};  // client id -> the shopper's bubble, shown (faded) before the gateway has stored it
  var echoed = {};  // client ids the gateway has shown back as stored
  var restored = Object.keys(pending);  // kept from an earlier page: shown once the history is replayed
  var replayUntil = null;

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch (e) { return {}; }
  }
  function save() {
    var kept = {};  // photos and voice notes are too big for localStorage: only words and taps
    Object.keys(pending).forEach(function (id) {
      if (pending[id].type === "text" || pending[id].type === "postback") kept[id] = pending[id];
    });
    try {
      localStorage.setItem(STORE, JSON.stringify({conversation_id: state.conversation_id, pending: kept}));
    } catch (e) { /* storage full or disabled: the page still works, without surviving a reload */ }
  }
  function pendingBubble(message) {
    return bubble("kefu-shopper kefu-pending", message.type === "text" ? message.text : (message.title || message.payload));
  }
  function showRestored() {  // after the replayed history, the messages that never got an answer
    if (!restored.length || replayUntil === null || state.last_seq < replayUntil) return;
    restored.forEach(function (id) {
      if (pending[id] && !echoed[id] && !local[id]) local[id] = pendingBubble(pending[id]);
    });
    restored = [];
    log.scrollTop = log.scrollHeight;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // ---- layout
  var css = el("link"); css.rel = "stylesheet"; css.href = origin + "/widget.css"; document.head.appendChild(css);
  var root = el("div", "kefu-root");
  var panel = el("div", "kefu-panel"); panel.setAttribute("role", "dialog"); panel.setAttribute("aria-label", UI.title);
  var header = el("div", "kefu-header");
  var titleBox = el("div"); titleBox.appendChild(el("div", null, UI.title));
  var status = el("div", "kefu-status", UI.offline); titleBox.appendChild(status);
  var close = el("button", "kefu-close", "×"); close.setAttribute("aria-label", "close");
  header.appendChild(titleBox); header.appendChild(close);
  var log = el("div", "kefu-log"); log.setAttribute("aria-live", "polite");
  var quick = el("div", "kefu-quick");
  var row = el("form", "kefu-input-row");
  var input = el("input", "kefu-input"); input.placeholder = UI.placeholder; input.maxLength = 2000;
  var send = el("button", "kefu-send", UI.send); send.type = "submit";
  // a photo of the problem: the phone offers its camera or the gallery
  var file = el("input"); file.type = "file"; file.accept = "image/jpeg,image/png,image/webp,image/*";
  file.className = "kefu-file"; file.setAttribute("aria-label", UI.photo);
  var attach = el("button", "kefu-attach"); attach.innerHTML = CAMERA_ICON; attach.type = "button"; attach.title = UI.photo;
  attach.setAttribute("aria-label", UI.photo);
  attach.addEventListener("click", function () { file.click(); });
  file.addEventListener("change", function () {
    var chosen = file.files && file.files[0];
    file.value = "";
    if (chosen) sendPhoto(chosen);
  });
  // hold to talk: press, speak, release to send (release away from the button to cancel)
  var mic = el("button", "kefu-mic"); mic.innerHTML = MIC_ICON; mic.type = "button"; mic.title = UI.hold;
  mic.setAttribute("aria-label", UI.hold);
  var recording = el("div", "kefu-recording"); recording.setAttribute("aria-live", "assertive");
  row.appendChild(attach); row.appendChild(file); row.appendChild(mic); row.appendChild(input); row.appendChild(send);
  row.appendChild(recording);
  panel.appendChild(header); panel.appendChild(log); panel.appendChild(quick); panel.appendChild(row);
  var launcher = el("button", "kefu-launcher", UI.open); launcher.id = "kefu-launcher";
  root.appendChild(panel); root.appendChild(launcher);
  document.body.appendChild(root);

  launcher.addEventListener("click", function () { panel.classList.add("kefu-open"); connect(); input.focus(); });
  close.addEventListener("click", function () { panel.classList.remove("kefu-open"); });
  row.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    submit({type: "text", text: text});
  });

  var MAX_PHOTO_BYTES = 8 * 1024 * 1024;
  function sendPhoto(blob) {
    // the server checks everything again; shrinking here only saves the shopper's upload time
    if (blob.size > MAX_PHOTO_BYTES && /^image\/(jpeg|png|webp)/.test(blob.type)) return shrink(blob);
    var reader = new FileReader();
    reader.onload = function () { submit({type: "image", data: String(reader.result).split(",")[1] || "", name: blob.name || ""}); };
    reader.readAsDataURL(blob);
  }
  function shrink(blob) {
    bubble("kefu-system", UI.tooBig);
    var img = new Image();
    img.onload = function () {
      var scale = Math.min(1, 2048 / Math.max(img.width, img.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(img.width * scale); canvas.height = Math.round(img.height * scale);
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      URL.revokeObjectURL(img.src);
      canvas.toBlob(function (small) { if (small) sendPhoto(small); }, "image/jpeg", 0.88);
    };
    img.src = URL.createObjectURL(blob);
  }

  // ---- voice messages (MediaRecorder: WebM/Opus in Chrome, Ogg in Firefox, MP4 in Safari)
  var MAX_VOICE_MS = 60000, MIN_VOICE_MS = 600;
  var voice = {holding: false, recorder: null, stream: null, started: 0, timer: null, cancel: false};
  function startVoice() {
    if (voice.holding) return;
    if (!navigator.mediaDevices || !window.MediaRecorder) { bubble("kefu-error", UI.noMic); return; }
    voice.holding = true; voice.cancel = false;
    navigator.mediaDevices.getUserMedia({audio: true}).then(function (stream) {
      if (!voice.holding) { stream.getTracks().forEach(function (t) { t.stop(); }); return; }  // let go already
      var chunks = [], recorder = new MediaRecorder(stream);
      voice.recorder = recorder; voice.stream = stream; voice.started = Date.now();
      recorder.ondataavailable = function (e) { if (e.data && e.data.size) chunks.push(e.data); };
      recorder.onstop = function () {
        stream.getTracks().forEach(function (t) { t.stop(); });
        var took = Date.now() - voice.started;
        if (voice.cancel) { bubble("kefu-system", UI.cancelled); return; }
        if (took < MIN_VOICE_MS) { bubble("kefu-system", UI.tooShort); return; }
        var blob = new Blob(chunks, {type: recorder.mimeType || "audio/webm"});
        var reader = new FileReader();
        reader.onload = function () { submit({type: "audio", data: String(reader.result).split(",")[1] || "", mime: blob.type}); };
        reader.readAsDataURL(blob);
      };
      recorder.start(250);
      row.classList.add("kefu-is-recording");
      tick();
      voice.timer = setInterval(tick, 250);
    }).catch(function () { voice.holding = false; bubble("kefu-error", UI.micDenied); });
  }
  function tick() {
    var seconds = Math.floor((Date.now() - voice.started) / 1000);
    recording.textContent = "● 0:" + (seconds < 10 ? "0" : "") + seconds + "  " + UI.release;
    if (Date.now() - voice.started >= MAX_VOICE_MS) stopVoice(false);
  }
  function stopVoice(cancel) {
    if (!voice.holding) return;
    voice.holding = false; voice.cancel = cancel;
    clearInterval(voice.timer);
    row.classList.remove("kefu-is-recording");
    if (voice.recorder && voice.recorder.state !== "inactive") voice.recorder.stop();
    voice.recorder = null;
  }
  mic.addEventListener("pointerdown", function (event) {
    event.preventDefault();
    try { mic.setPointerCapture(event.pointerId); } catch (e) { /* synthetic pointers */ }
    startVoice();
  });
  mic.addEventListener("pointerup", function (event) {
    var box = mic.getBoundingClientRect(), slack = 40;
    var inside = event.clientX >= box.left - slack && event.clientX <= box.right + slack &&
                 event.clientY >= box.top - slack && event.clientY <= box.bottom + slack;
    stopVoice(!inside);
  });
  mic.addEventListener("pointercancel", function () { stopVoice(true); });
  mic.addEventListener("contextmenu", function (event) { event.preventDefault(); });  // long press on phones
  mic.addEventListener("keydown", function (event) {
    if ((event.key === " " || event.key === "Enter") && !event.repeat) { event.preventDefault(); startVoice(); }
  });
  mic.addEventListener("keyup", function (event) { if (event.key === " " || event.key === "Enter") stopVoice(false); });

  // ---- connection
  function connect() {
    if (ws && (ws.readyState === 0 || ws.readyState === 1)) return;
    ws = new WebSocket(origin.replace(/^http/, "ws") + "/ws/chat");
    ws.onopen = function () {
      retry = 0;
      var first = state.conversation_id
        ? {type: "resume", conversation_id: state.conversation_id, last_seq: state.last_seq || 0, language: lang}
        : {type: "hello", language: lang};
      if (customerToken) first.customer_token = customerToken;
      ws.send(JSON.stringify(first));
    };
    ws.onmessage = function (event) { receive(JSON.parse(event.data)); };
    ws.onclose = function () {
      status.textContent = UI.offline;
      ws = null;
      if (panel.classList.contains("kefu-open")) setTimeout(connect, Math.min(8000, 500 * Math.pow(2, retry++)));
    };
  }

  function submit(message) {
    message.client_id = "k" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    pending[message.client_id] = message;
    save();
    if (message.type === "text" || message.type === "postback") {
      local[message.client_id] = pendingBubble(message);
      log.scrollTop = log.scrollHeight;
    }
    outbox.push(message);
    flush();
  }
  function flush() {
    if (!ws || ws.readyState !== 1 || !state.ready) return;
    while (outbox.length) ws.send(JSON.stringify(outbox.shift()));
  }
  function resendPending() {
    var queued = {};
    outbox.forEach(function (m) { queued[m.client_id] = true; });
    Object.keys(pending).forEach(function (id) { if (!queued[id]) outbox.push(pending[id]); });
    flush();
  }

  // ---- rendering
  function receive(msg) {
    if (msg.type === "welcome") {
      if (msg.conversation_id !== state.conversation_id) { log.textContent = ""; seen = {}; state.last_seq = 0; }
      state.conversation_id = msg.conversation_id; state.ready = true; save();
      status.textContent = UI.online;
      replayUntil = msg.seq || 0;
      showRestored();
      resendPending();
      return;
    }
    if (msg.sender === "shopper" && msg.client_id) echoed[msg.client_id] = true;
    var answered = msg.reply_to && msg.sender !== "shopper" ? pending[msg.reply_to] : null;
    if (answered) { delete pending[msg.reply_to]; save(); }
    var mine = msg.sender === "shopper" && msg.client_id ? local[msg.client_id] : (msg.reply_to ? local[msg.reply_to] : null);
    if (mine) {  // the gateway stored it (or refused it): the faded bubble is the message
      delete local[msg.client_id || msg.reply_to];
      mine.classList.remove("kefu-pending");
      if (msg.sender === "shopper") {
        seen[msg.id] = true;
        if (msg.seq) state.last_seq = Math.max(state.last_seq, msg.seq);
        mine.dataset.seq = msg.seq; mine.dataset.type = msg.type;
        return;
      }
    }
    if (msg.type === "typing") { showTyping(msg.stage === "transcribing" ? UI.transcribing : UI.typing); return; }
    if (seen[msg.id]) return;
    seen[msg.id] = true;
    if (msg.seq) state.last_seq = Math.max(state.last_seq, msg.seq);
    hideTyping();
    render(msg, answered);
    showRestored();
    log.scrollTop = log.scrollHeight;
  }

  function showTyping(text) {
    if (!typingEl) { typingEl = el("div", "kefu-typing"); log.appendChild(typingEl); }
    typingEl.textContent = text;
    log.scrollTop = log.scrollHeight;
  }
  function hideTyping() { if (typingEl) { typingEl.remove(); typingEl = null; } }

  function bubble(cls, text) { var node = el("div", "kefu-msg " + cls, text); log.appendChild(node); return node; }

  function setQuickReplies(buttons) {
    quick.textContent = "";
    (buttons || []).forEach(function (b) {
      var button = el("button", null, b.title);
      button.type = "button";
      button.addEventListener("click", function () { quick.textContent = ""; submit({type: "postback", payload: b.payload, title: b.title}); });
      quick.appendChild(button);
    });
  }

  function render(msg, answered) {
    var node;
    switch (msg.type) {
      case "text":
        if (msg.sender === "agent") {  // a human answers: the shopper sees who
          node = el("div", "kefu-msg kefu-bot kefu-agent");
          node.appendChild(el("div", "kefu-agent-name", msg.agent_name));
          node.appendChild(document.createTextNode(msg.text));
          log.appendChild(node);
          status.textContent = UI.agentAnswering + msg.agent_name;
          break;
        }
        node = bubble(msg.sender === "shopper" ? "kefu-shopper" : "kefu-bot", msg.text); break;
      case "agent_joined":
        node = bubble("kefu-system kefu-agent-joined", msg.text); status.textContent = UI.agentAnswering + msg.agent_name; break;
      case "agent_left":
        node = bubble("kefu-system kefu-agent-left", msg.text); status.textContent = UI.online; break;
      case "image":
        node = el("div", "kefu-msg kefu-shopper kefu-photo");
        var photo = el("img"); photo.src = origin + msg.url; photo.alt = UI.sentPhoto; photo.loading = "lazy";
        node.appendChild(photo);
        log.appendChild(node); break;
      case "voice":
        node = el("div", "kefu-msg kefu-shopper kefu-voice");
        var play = el("button", "kefu-play", "▶ " + Math.max(1, Math.round(msg.duration_s || 0)) + "″");
        play.type = "button"; play.setAttribute("aria-label", UI.play);
        play.addEventListener("click", function () { new Audio(origin + msg.audio_url).play(); });
        node.appendChild(play);
        node.appendChild(el("div", "kefu-heard", msg.text));
        log.appendChild(node); break;
      case "return":
        node = el("div", "kefu-order kefu-return");
        node.appendChild(el("strong", null, UI.rma + " " + msg.rma + " · " + (UI[msg.kind || "return"] || msg.kind)));
        node.appendChild(el("div", "kefu-status", UI.order + " " + msg.order_id + " · " + msg.status));
        if (msg.photo_url) { var thumb = el("img"); thumb.src = origin + msg.photo_url; thumb.alt = UI.sentPhoto; node.appendChild(thumb); }
        log.appendChild(node); break;
      case "postback":
        node = bubble("kefu-shopper", msg.text); break;
      case "buttons":
        node = bubble("kefu-bot", msg.text); setQuickReplies(msg.buttons); break;
      case "product_cards":
        node = el("div", "kefu-carousel");
        msg.products.forEach(function (p) {
          var card = el("div", "kefu-card"); card.dataset.sku = p.sku;
          var img = el("img"); img.src = p.image; img.alt = p.name; img.loading = "lazy"; card.appendChild(img);
          var body = el("div", "kefu-card-body");
          body.appendChild(el("div", "kefu-name", p.name));
          body.appendChild(el("div", "kefu-price", p.price_text));
          if (p.promotion) body.appendChild(el("div", "kefu-promo", p.promotion));
          body.appendChild(el("div", "kefu-stock", p.in_stock ? UI.stock + " " + p.stock : UI.soldout));
          (p.buttons || []).forEach(function (b) {
            var button = el("button", null, b.title); button.type = "button";
            button.addEventListener("click", function () { submit({type: "postback", payload: b.payload, title: b.title + " · " + p.name}); });
            body.appendChild(button);
          });
          card.appendChild(body); node.appendChild(card);
        });
        log.appendChild(node); break;
      case "coupon":
        node = el("div", "kefu-coupon");
        node.appendChild(el("div", null, UI.coupon + " · " + msg.title));
        node.appendChild(el("div", "kefu-code", msg.code));
        node.appendChild(el("div", "kefu-status", UI.expires + " " + msg.expires_at.replace("T", " ").replace("Z", " UTC")));
        log.appendChild(node); break;
      case "checkout":
        node = el("div", "kefu-checkout");
        msg.items.forEach(function (i) { node.appendChild(el("div", null, i.name + " · " + i.color + " · " + i.size + " × " + i.quantity)); });
        if (msg.discount) node.appendChild(el("div", "kefu-price", UI.saved + " ¥" + msg.discount));
        node.appendChild(el("div", null, UI.total + " ¥" + msg.total));
        var link = el("a", null, UI.checkout); link.href = msg.url; link.target = "_blank"; link.rel = "noopener";
        node.appendChild(link);
        log.appendChild(node); break;
      case "order":
        node = el("div", "kefu-order");
        node.appendChild(el("strong", null, UI.order + " " + msg.order_id + " · " + msg.status_text));
        var list = el("ol");
        (msg.events || []).slice().reverse().forEach(function (e) { list.appendChild(el("li", null, e.time.replace("T", " ") + " " + e.location + " " + e.status)); });
        node.appendChild(list);
        log.appendChild(node); break;
      case "handoff":
        node = bubble("kefu-system", UI.handoff); break;
      case "citations":
        node = el("div", "kefu-msg kefu-system kefu-sources");
        var names = (msg.sources || []).map(function (s) { return s.title || s.key; });
        node.appendChild(el("span", null, UI.source + ": " + (names.length ? names.join(" · ") : (msg.faq_ids || []).join(", "))));
        node.title = (msg.sources || []).map(function (s) { return s.source || ("FAQ " + s.key); }).join("\n");
        log.appendChild(node); break;
      case "error":
        node = bubble("kefu-error", msg.text);
        if (msg.retry && answered) {  // the shopper's message is kept: one tap sends it again (same client id)
          var again = el("button", "kefu-retry", UI.retry); again.type = "button";
          again.addEventListener("click", function () {
            again.remove();
            pending[answered.client_id] = answered; save(); outbox.push(answered); flush();
          });
          node.appendChild(again);
        }
        break;
      default:
        return; // stock, unanswered: their text reply is already shown
    }
    node.dataset.seq = msg.seq;
    node.dataset.type = msg.type;
  }

  if (script.dataset.open === "true") launcher.click();
  window.kefu = {open: function () { launcher.click(); }, state: state};
})();
