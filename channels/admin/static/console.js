// The merchant console: a small single-page app over /api/admin. No framework, no build step.
// Text from shoppers and merchants is only ever set as textContent, never parsed as HTML.
(function () {
  "use strict";
  const i18n = window.kefuI18n;
  const t = (key) => i18n.t(key);
  const state = { me: null };

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else if (name === "value") node.value = value;
      else if (name === "checked") node.checked = !!value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(method, path, body, options = {}) {
    const headers = {};
    if (state.me && state.me.csrf_token) headers["X-CSRF-Token"] = state.me.csrf_token;
    let payload;
    if (options.raw !== undefined) {
      payload = options.raw;
      headers["Content-Type"] = options.contentType || "application/octet-stream";
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    const data = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
    if (response.status === 401 && !options.loginAttempt) {
      toast(t("session_expired"), true);
      setTimeout(() => { location.href = "/admin/login"; }, 800);
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  let toastTimer;
  function toast(message, isError) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.className = isError ? "toast error" : "toast";
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, isError ? 6000 : 3000);
  }

  function failed(error) {
    if (error instanceof ApiError && error.status === 403) toast(`${t("forbidden")}: ${error.message}`, true);
    else if (error instanceof ApiError && error.status === 409 && error.body.error === "conflict") toast(t("conflict"), true);
    else toast(`${t("error")}: ${error.message}`, true);
  }

  const isOwner = () => state.me && state.me.role === "owner";
  const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);
  const when = (iso) => (iso ? new Date(iso.endsWith("Z") || iso.includes("+") ? iso : iso + "Z").toLocaleString(i18n.lang === "zh" ? "zh-CN" : "en-GB") : "–");
  const badge = (status) => el("span", { className: `badge ${status}`, text: t(status) });

  function view(...children) {
    const main = document.getElementById("view");
    main.replaceChildren(...children);
    return main;
  }

  // ------------------------------------------------------------------ login page
  function loginPage() {
    i18n.apply(document);
    const form = document.getElementById("login-form");
    const error = document.getElementById("login-error");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      try {
        await api("POST", "/api/admin/auth/login", { username: form.username.value, password: form.password.value },
                  { loginAttempt: true });
        location.href = "/admin" + location.hash;  // back to the page asked for before logging in
      } catch (e) {
        error.textContent = e.status === 401 ? t("login_failed") : e.status === 429 ? `${t("too_many")}: ${e.message}` : e.message;
        error.hidden = false;
      }
    });
  }

  // ------------------------------------------------------------------ FAQ list
  const faqFilters = { q: "", language: "", status: "", category: "" };

  async function faqList() {
    const results = el("div", { className: "results" });
    const search = el("input", { type: "search", id: "faq-search", placeholder: t("search"), value: faqFilters.q });
    const select = (name, options) => el("select", { id: `faq-${name}`, onchange: (e) => { faqFilters[name] = e.target.value; load(); } },
      options.map(([value, label]) => el("option", { value, text: label, selected: faqFilters[name] === value ? "selected" : null })));
    const category = el("input", { id: "faq-category", placeholder: t("any_category"), value: faqFilters.category, list: "faq-categories" });
    const categories = el("datalist", { id: "faq-categories" });
    let timer;
    search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { faqFilters.q = search.value; load(); }, 250); });
    category.addEventListener("change", () => { faqFilters.category = category.value.trim(); load(); });

    const tools = el("div", { className: "toolbar" }, search,
      select("language", [["", t("any_language")], ["zh", "中文"], ["en", "English"]]),
      select("status", [["", t("any_status")], ["draft", t("draft")], ["published", t("published")]]),
      category, categories,
      isOwner() && el("a", { className: "button primary", href: "#/faq/new", id: "new-faq", text: t("new_faq") }),
      isOwner() && el("button", { type: "button", onclick: importDialog, text: t("import") }),
      isOwner() && el("a", { className: "button", href: "/api/admin/kb/export?format=csv", download: "faq.csv", text: t("export_csv") }),
      isOwner() && el("a", { className: "button", href: "/api/admin/kb/export?format=xlsx", download: "faq.xlsx", text: t("export_xlsx") }));
    view(el("h1", { text: t("faq") }), tools, results);

    async function load() {
      const params = new URLSearchParams({ limit: "200" });
      for (const [k, v] of Object.entries(faqFilters)) if (v) params.set(k, v);
      let data;
      try { data = await api("GET", `/api/admin/kb/faqs?${params}`); } catch (e) { failed(e); return; }
      const known = new Set(data.items.map((f) => f.category));
      categories.replaceChildren(...[...known].sort().map((c) => el("option", { value: c })));
      if (!data.items.length) { results.replaceChildren(el("p", { className: "empty", text: t("no_results") })); return; }
      const zhFirst = faqFilters.language ? faqFilters.language === "zh" : i18n.lang === "zh";
      results.replaceChildren(
        el("p", { className: "muted", text: `${t("total")} ${data.total} ${t("items")}` }),
        el("table", { className: "grid", id: "faq-table" },
          el("thead", {}, el("tr", {}, [t("key"), t("question"), t("category"), t("status"), t("version"), t("updated")].map((h) => el("th", { text: h })))),
          el("tbody", {}, data.items.map((f) => {
            const question = (zhFirst ? f.questions_zh[0] || f.questions_en[0] : f.questions_en[0] || f.questions_zh[0]) || "";
            return el("tr", { "data-key": f.key, onclick: () => { location.hash = `#/faq/${f.id}`; } },
              el("td", {}, el("a", { href: `#/faq/${f.id}`, text: f.key })), el("td", { text: question }),
              el("td", { text: f.category }), el("td", {}, badge(f.status)), el("td", { text: `v${f.version}` }),
              el("td", { text: when(f.updated_at) }));
          }))));
    }
    load();
  }

  // ------------------------------------------------------------------ import dialog
  function importDialog() {
    const file = el("input", { type: "file", id: "import-file", accept: ".csv,.xlsx,.jsonl" });
    const publish = el("input", { type: "checkbox", id: "import-publish" });
    const report = el("div", { id: "import-report" });
    const dialog = el("dialog", { className: "modal" },
      el("h2", { text: t("import_title") }), el("label", {}, t("choose_file"), file),
      el("label", { className: "inline" }, publish, t("publish_all")), report,
      el("div", { className: "actions" },
        el("button", { type: "button", className: "primary", id: "import-go", onclick: run, text: t("do_import") }),
        el("button", { type: "button", onclick: () => { dialog.close(); dialog.remove(); }, text: t("cancel") })));
    document.body.append(dialog);
    dialog.showModal();

    async function run() {
      const chosen = file.files[0];
      if (!chosen) return;
      const format = (chosen.name.split(".").pop() || "").toLowerCase();
      try {
        const stats = await api("POST", `/api/admin/kb/import?format=${encodeURIComponent(format)}&publish=${publish.checked}`,
                                undefined, { raw: await chosen.arrayBuffer() });
        report.replaceChildren(el("p", { className: "ok", id: "import-ok",
          text: `${t("import_ok")}: ${t("created_n")} ${stats.created}, ${t("updated_n")} ${stats.updated}, ${t("unchanged_n")} ${stats.unchanged}` }));
        toast(t("import_ok"));
      } catch (e) {
        if (e.body && e.body.errors) {
          report.replaceChildren(el("p", { className: "form-error", text: t("import_failed") }),
            el("table", { className: "grid", id: "import-errors" },
              el("thead", {}, el("tr", {}, [t("row"), t("column"), t("reason")].map((h) => el("th", { text: h })))),
              el("tbody", {}, e.body.errors.map((r) => el("tr", {}, el("td", { text: r.row }), el("td", { text: r.column }), el("td", { text: r.reason }))))));
        } else report.replaceChildren(el("p", { className: "form-error", text: e.message }));
      }
    }
  }

  // ------------------------------------------------------------------ FAQ editor
  async function faqEdit(id) {
    let entry = { key: "", category: "", tags: [], questions_zh: [], questions_en: [], answer_zh: "", answer_en: "", status: "draft", version: 0 };
    if (id !== "new") {
      try { entry = await api("GET", `/api/admin/kb/faqs/${id}`); } catch (e) { failed(e); location.hash = "#/faq"; return; }
    }
    const readOnly = !isOwner();
    const field = (name, label, node) => el("label", { className: `field field-${name}` }, el("span", { text: label }), node);
    const input = (name, value) => el("input", { id: `f-${name}`, name, value, disabled: readOnly });
    const area = (name, value, rows) => el("textarea", { id: `f-${name}`, name, rows, disabled: readOnly, value });
    const form = el("form", { id: "faq-form", className: "faq-form" },
      field("key", t("key"), input("key", entry.key)),
      field("category", t("category"), input("category", entry.category)),
      field("tags", t("tags"), input("tags", entry.tags.join(", "))),
      el("div", { className: "two" },
        el("div", {}, field("questions_zh", t("questions_zh"), area("questions_zh", entry.questions_zh.join("\n"), 8)),
          field("answer_zh", t("answer_zh"), area("answer_zh", entry.answer_zh, 6))),
        el("div", {}, field("questions_en", t("questions_en"), area("questions_en", entry.questions_en.join("\n"), 8)),
          field("answer_en", t("answer_en"), area("answer_en", entry.answer_en, 6)))));
    const problems = el("p", { className: "form-error", id: "faq-error", role: "alert", hidden: true });

    function content() {
      const f = form.elements;
      return { key: f.key.value.trim(), category: f.category.value.trim() || "uncategorized",
               tags: f.tags.value.split(/[,，]/).map((s) => s.trim()).filter(Boolean),
               questions_zh: lines(f.questions_zh.value), questions_en: lines(f.questions_en.value),
               answer_zh: f.answer_zh.value.trim(), answer_en: f.answer_en.value.trim() };
    }
    async function save(status) {
      problems.hidden = true;
      const body = { ...content(), status: status || entry.status };
      try {
        if (entry.id) entry = await api("PUT", `/api/admin/kb/faqs/${entry.id}`, { ...body, expected_version: entry.version });
        else entry = await api("POST", "/api/admin/kb/faqs", body);
        return true;
      } catch (e) {
        if (e.status === 400 || e.status === 409) {
          problems.textContent = e.body.error === "conflict" ? t("conflict") : e.message;
          problems.hidden = false;
        } else failed(e);
        return false;
      }
    }
    async function act(path, message) {
      try { entry = await api("POST", `/api/admin/kb/faqs/${entry.id}/${path}`); toast(message); render(); }
      catch (e) { problems.textContent = e.message; problems.hidden = false; failed(e); }
    }
    const buttons = el("div", { className: "actions" },
      el("a", { href: "#/faq", className: "button", text: t("back") }),
      !readOnly && el("button", { type: "button", id: "save", className: "primary",
        onclick: async () => { if (await save()) { toast(entry.status === "published" ? t("published_ok") : t("saved")); render(); } },
        text: entry.status === "published" ? t("save_live") : t("save") }),
      !readOnly && entry.status !== "published" && el("button", { type: "button", id: "publish",
        onclick: async () => { if (await save()) await act("publish", t("published_ok")); }, text: t("publish") }),
      !readOnly && entry.id && entry.status === "published" && el("button", { type: "button", id: "unpublish",
        onclick: () => act("unpublish", t("unpublished_ok")), text: t("unpublish") }),
      !readOnly && entry.id && el("button", { type: "button", id: "delete", className: "danger", onclick: async () => {
        if (!confirm(t("confirm_delete"))) return;
        try { await api("DELETE", `/api/admin/kb/faqs/${entry.id}`); toast(t("deleted")); location.hash = "#/faq"; } catch (e) { failed(e); }
      }, text: t("delete") }));

    const head = el("div", { className: "title-row" }, el("h1", { text: entry.id ? `${t("edit_faq")} · ${entry.key}` : t("new_faq") }),
      entry.id && badge(entry.status), entry.id && el("span", { className: "muted", text: `v${entry.version}` }),
      readOnly && el("span", { className: "muted", text: t("only_owner") }));
    const side = el("aside", { className: "side" }, previewBox(), entry.id ? historyBox(entry, () => faqEdit(entry.id)) : null);
    view(head, el("div", { className: "editor" }, el("section", {}, form, problems, buttons), side));

    function render() {
      if (entry.id && location.hash !== `#/faq/${entry.id}`) location.hash = `#/faq/${entry.id}`;
      else faqEdit(entry.id);
    }
  }

  function previewBox() {
    const question = el("input", { id: "preview-text", placeholder: t("preview_hint") });
    const language = el("select", { id: "preview-lang" }, el("option", { value: "", text: "auto" }),
      el("option", { value: "zh", text: "中文" }), el("option", { value: "en", text: "English" }));
    const out = el("div", { id: "preview-out", className: "preview-out" });
    async function ask(event) {
      event.preventDefault();
      if (!question.value.trim()) return;
      out.replaceChildren(el("p", { className: "muted", text: "…" }));
      try {
        const r = await api("POST", "/api/admin/kb/preview", { text: question.value.trim(), language: language.value || null });
        out.replaceChildren(
          el("p", { className: r.answered ? "ok" : "warn", text: r.answered ? t("answered") : t("not_answered") }),
          r.answered && el("blockquote", { id: "preview-answer", text: r.text }),
          el("p", { className: "muted", text: `${t("confidence")} ${r.confidence} / ${r.threshold}` }),
          r.answered && r.citations && r.citations.length && el("p", {}, `${t("sources")}: `,
            r.citations.map((c) => el("span", { className: "chip", text: c.key || c.title }))),
          el("details", {}, el("summary", { text: t("passages") }),
            el("ol", {}, (r.passages || []).map((p) => el("li", {}, el("b", { text: p.key || p.source || "" }), " ", p.question || p.text || "",
              el("span", { className: "muted", text: ` (${Number(p.score).toFixed(3)})` }))))));
      } catch (e) { out.replaceChildren(el("p", { className: "form-error", text: e.message })); }
    }
    return el("section", { className: "card" }, el("h2", { text: t("preview") }),
      el("form", { className: "inline-form", onsubmit: ask }, question, language, el("button", { type: "submit", id: "preview-ask", text: t("ask") })), out);
  }

  function historyBox(entry, reload) {
    const list = el("ol", { className: "history", id: "history", reversed: true });
    api("GET", `/api/admin/kb/faqs/${entry.id}/versions`).then((data) => {
      list.replaceChildren(...data.versions.slice().reverse().map((v) => el("li", {},
        el("div", { className: "history-head" }, el("b", { text: `v${v.version}` }), ` ${v.action} · ${v.author} · ${when(v.created_at)}`,
          isOwner() && v.version !== entry.version && el("button", { type: "button", className: "small restore", "data-version": v.version,
            onclick: async () => {
              try { await api("POST", `/api/admin/kb/faqs/${entry.id}/restore`, { version: v.version }); toast(t("restored")); reload(); }
              catch (e) { failed(e); }
            }, text: t("restore") })),
        Object.keys(v.diff).length > 0 && el("details", {}, el("summary", { text: `${t("diff")}: ${Object.keys(v.diff).join(", ")}` }),
          Object.entries(v.diff).map(([name, diffLines]) => el("div", { className: "diff" }, el("b", { text: name }),
            el("pre", {}, diffLines.map((line) => el("span", { className: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "", text: line + "\n" })))))))));
    }).catch(failed);
    return el("section", { className: "card" }, el("h2", { text: t("history") }), list);
  }

  // ------------------------------------------------------------------ unanswered inbox
  async function unansweredPage() {
    const language = el("select", { id: "inbox-lang", onchange: load }, el("option", { value: "", text: t("any_language") }),
      el("option", { value: "zh", text: "中文" }), el("option", { value: "en", text: "English" }));
    const results = el("div", { className: "results" });
    view(el("h1", { text: t("unanswered") }), el("div", { className: "toolbar" }, language), results);

    async function load() {
      const params = new URLSearchParams({ status: "open" });
      if (language.value) params.set("language", language.value);
      let data;
      try { data = await api("GET", `/api/admin/kb/unanswered?${params}`); } catch (e) { failed(e); return; }
      if (!data.items.length) { results.replaceChildren(el("p", { className: "empty", text: t("inbox_empty") })); return; }
      results.replaceChildren(el("table", { className: "grid", id: "inbox-table" },
        el("thead", {}, el("tr", {}, [t("question"), t("language"), t("count"), t("examples"), t("first_seen"), t("last_seen"), ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, data.items.map((g) => el("tr", { "data-group": g.id },
          el("td", { className: "question", text: g.text }), el("td", { text: g.language }), el("td", { className: "count", text: g.count }),
          el("td", {}, el("ul", { className: "examples" }, g.examples.slice(0, 5).map((x) => el("li", { text: x })))),
          el("td", { text: when(g.first_seen) }), el("td", { text: when(g.last_seen) }),
          el("td", { className: "row-actions" },
            el("button", { type: "button", className: "primary small to-faq", onclick: async () => {
              try { const draft = await api("POST", `/api/admin/kb/unanswered/${g.id}/draft`, {}); toast(t("drafted")); location.hash = `#/faq/${draft.id}`; }
              catch (e) { failed(e); }
            }, text: t("to_faq") }),
            el("button", { type: "button", className: "small dismiss", onclick: async () => {
              try { await api("POST", `/api/admin/kb/unanswered/${g.id}/dismiss`); toast(t("dismissed")); load(); } catch (e) { failed(e); }
            }, text: t("dismiss") })))))));
    }
    load();
  }

  // ------------------------------------------------------------------ live conversations (agents)
  const live = { queue: [], socket: null, listeners: new Set() };

  function connectLive() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/agent`;
    const socket = new WebSocket(url);
    live.socket = socket;
    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (data.type === "queue") {
        const before = new Set(live.queue.filter((c) => c.status === "waiting").map((c) => c.id));
        live.queue = data.conversations;
        const waiting = live.queue.filter((c) => c.status === "waiting");
        const badge = document.getElementById("queue-count");
        badge.textContent = waiting.length ? String(waiting.length) : "";
        badge.hidden = !waiting.length;
        if (waiting.some((c) => !before.has(c.id))) toast(t("new_handoff"));
      }
      live.listeners.forEach((listener) => listener(data));
    };
    socket.onclose = () => { live.socket = null; setTimeout(connectLive, 2000); };  // reconnect; the queue is resent
    setInterval(() => { if (socket.readyState === 1) socket.send("ping"); }, 25000);
  }

  function ordersCard(orders) {  // the verified shopper's recent orders, beside a transcript
    return el("section", { className: "card orders", id: "shopper-orders" }, el("h2", { text: t("orders") }),
      orders.length ? orders.map((o) => el("div", { className: "order" },
        el("b", { text: o.order_no }), ` · ${o.status} · ¥${o.total_yuan.toFixed(2)} · ${when(o.created_at)}`,
        el("ul", {}, o.items.map((i) => el("li", { text: `${i18n.lang === "zh" ? i.name : i.name_en} (${i.variant}) ×${i.quantity}` })))))
        : el("p", { className: "muted", text: t("no_orders") }));
  }

  function reasonText(reason) {
    const label = t(`reason_${reason}`);
    return label.startsWith("reason_") ? reason || "" : label;
  }

  function messageNode(m) {
    const who = m.sender === "agent" ? m.agent_name : m.sender === "shopper" ? t("shopper") : m.sender === "bot" ? t("bot") : "";
    let text = m.text || "";
    if (!text && m.type === "product_cards") text = (m.products || []).map((p) => p.name).join(" / ");
    if (!text && m.type === "image") text = `[${t("photo")}]`;
    if (!text && m.type === "handoff") text = `[${t("handoff_requested")}: ${m.reason || ""}]`;
    if (!text && m.type === "order") text = `[${t("order")} ${m.order_id || ""} ${m.status_text || m.status || ""}]`;
    if (!text && m.type === "coupon") text = `[${t("coupon")} ${m.code || ""}]`;
    if (!text && m.type === "checkout") text = `[${t("checkout_link")}]`;
    if (!text && m.type === "return") text = `[${m.rma || ""} ${m.kind || ""} ${m.status || ""}]`;
    if (!text) text = `[${m.type}]`;
    return el("div", { className: `line ${m.sender}`, "data-seq": m.seq },
      who && el("span", { className: "line-who", text: who }), el("span", { className: "line-text", text }));
  }

  async function inboxPage(match) {
    const selected = match && match[1];
    const list = el("div", { className: "queue", id: "queue" });
    const pane = el("div", { className: "chat-pane", id: "chat-pane" },
      el("p", { className: "empty", text: t("pick_conversation") }));
    view(el("h1", { text: t("inbox") }), el("div", { className: "inbox" }, list, pane));

    function drawQueue() {
      if (!live.queue.length) { list.replaceChildren(el("p", { className: "empty", text: t("queue_empty") })); return; }
      list.replaceChildren(...live.queue.map((c) => el("a", {
        href: `#/inbox/${c.id}`, className: `queue-item ${c.status}${c.id === selected ? " current" : ""}`, "data-conversation": c.id },
        el("div", {}, el("b", { text: c.status === "waiting" ? t("waiting") : `${t("answering")}: ${c.agent_name}` })),
        el("div", { className: "muted", text: `${reasonText(c.reason)} · ${c.channel}${c.caller ? " " + c.caller : ""} · ${c.language}` }),
        c.contact && el("div", { className: "contact", text: `${t("call_back")}: ${c.contact}` }),
        el("div", { className: "muted", text: when(c.requested_at) }))));
    }

    let current = null;
    let drawing = 0;  // a take-over redraws twice (its own reply and the queue push): only the newest draw lands
    async function drawConversation() {
      if (!selected) return;
      const generation = ++drawing;
      let data;
      try { data = await api("GET", `/api/admin/conversations/${selected}`); } catch (e) { failed(e); return; }
      if (generation !== drawing) return;
      current = data.conversation;
      const transcript = el("div", { className: "transcript", id: "transcript" }, data.messages.map(messageNode));
      const mine = current.status === "agent" && current.agent_user_id === state.me.id;
      const before = document.getElementById("agent-text");  // a redraw keeps what the agent was typing
      const input = el("textarea", { id: "agent-text", rows: 2, placeholder: t("reply_hint"), disabled: !mine });
      if (before && mine) input.value = before.value;
      const typing = before && mine && document.activeElement === before;
      const send = async (event) => {
        event.preventDefault();
        const box = document.getElementById("agent-text") || input;
        const text = box.value.trim();
        if (!text) return;
        try {
          await api("POST", `/api/admin/conversations/${selected}/messages`, { text });
          const now = document.getElementById("agent-text");
          if (now && now.value.trim() === text) now.value = "";
        } catch (e) { failed(e); }
      };
      input.addEventListener("keydown", (event) => { if (event.key === "Enter" && !event.shiftKey) send(event); });
      const actions = el("div", { className: "actions" },
        !mine && el("button", { type: "button", id: "take-over", className: "primary", onclick: async () => {
          try { await api("POST", `/api/admin/conversations/${selected}/take`); drawConversation(); } catch (e) { failed(e); }
        }, text: t("take_over") }),
        mine && el("button", { type: "button", id: "hand-back", onclick: async () => {
          try { await api("POST", `/api/admin/conversations/${selected}/release`); drawConversation(); } catch (e) { failed(e); }
        }, text: t("hand_back") }));
      const orders = ordersCard(data.orders);
      pane.replaceChildren(el("div", { className: "chat-main" },
        el("div", { className: "title-row" }, el("h2", { text: `${t("conversation")} ${current.id}` }),
          el("span", { className: `badge ${current.status}`, id: "conversation-status", text: t("status_" + current.status) })),
        transcript, el("form", { className: "reply", onsubmit: send }, input,
          el("button", { type: "submit", id: "agent-send", className: "primary", disabled: !mine, text: t("send") })), actions), orders);
      transcript.scrollTop = transcript.scrollHeight;
      if (typing) input.focus();
    }

    const listener = (event) => {
      if (!document.getElementById("queue")) { live.listeners.delete(listener); return; }
      if (event.type === "queue") {
        drawQueue();
        const fresh = live.queue.find((c) => c.id === selected);
        const status = fresh ? fresh.status : "bot";
        if (current && (status !== current.status || (fresh && fresh.agent_user_id !== current.agent_user_id))) drawConversation();
      }
      if (event.type === "message" && event.conversation_id === selected) {
        const transcript = document.getElementById("transcript");
        if (transcript && !transcript.querySelector(`[data-seq="${event.message.seq}"]`)) {
          transcript.append(messageNode(event.message));
          transcript.scrollTop = transcript.scrollHeight;
        }
      }
    };
    live.listeners.add(listener);
    drawQueue();
    drawConversation();
  }

  // ------------------------------------------------------------------ conversations browser
  const browseFilters = { from: "", to: "", channel: "", intent: "", q: "" };

  async function conversationsPage() {
    const today = new Date().toISOString().slice(0, 10);
    const month = new Date(Date.now() - 29 * 86400000).toISOString().slice(0, 10);
    browseFilters.from = browseFilters.from || month;
    browseFilters.to = browseFilters.to || today;
    const input = (name, attrs) => el("input", { id: `browse-${name}`, value: browseFilters[name], ...attrs,
      onchange: (e) => { browseFilters[name] = e.target.value.trim(); load(); } });
    const results = el("div", { className: "results" });
    view(el("h1", { text: t("conversations_page") }), el("div", { className: "toolbar" },
      el("label", { className: "inline" }, t("from"), input("from", { type: "date" })),
      el("label", { className: "inline" }, t("to"), input("to", { type: "date" })),
      el("select", { id: "browse-channel", onchange: (e) => { browseFilters.channel = e.target.value; load(); } },
        [["", t("any_channel")], ["widget", t("channel_widget")], ["phone", t("channel_phone")]].map(([v, l]) =>
          el("option", { value: v, text: l, selected: browseFilters.channel === v ? "selected" : null }))),
      input("intent", { placeholder: t("intent") }), input("q", { type: "search", placeholder: t("search_words") })), results);

    async function load() {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(browseFilters)) if (v) params.set(k, v);
      let data;
      try { data = await api("GET", `/api/admin/conversations?${params}`); } catch (e) { failed(e); return; }
      if (!data.items.length) { results.replaceChildren(el("p", { className: "empty", text: t("no_data") })); return; }
      results.replaceChildren(el("p", { className: "muted", text: `${t("total")} ${data.total}` }),
        el("table", { className: "grid", id: "conversations-table" },
          el("thead", {}, el("tr", {}, [t("started"), t("channel"), t("language"), t("first_words"), t("handoff"), ""].map((h) => el("th", { text: h })))),
          el("tbody", {}, data.items.map((c) => el("tr", { "data-conversation": c.id },
            el("td", { text: when(c.created_at) }), el("td", { text: `${t("channel_" + c.channel)}${c.caller ? " " + c.caller : ""}` }),
            el("td", { text: c.language }), el("td", { className: "first-words", text: c.first_message }),
            el("td", { text: c.handoff ? "✓" : "" }),
            el("td", {}, el("a", { href: `#/conversations/${c.id}`, text: t("open") })))))));
    }
    load();
  }

  async function transcriptPage(match) {
    const id = match[1];
    let data;
    try { data = await api("GET", `/api/admin/conversations/${id}`); } catch (e) { failed(e); location.hash = "#/conversations"; return; }
    const transcript = el("div", { className: "transcript", id: "transcript" }, data.messages.map(messageNode));
    const facts = el("p", { className: "muted", id: "conversation-facts",
      text: `${t("channel_" + data.conversation.channel)} · ${data.conversation.language}${data.conversation.caller ? " · " + data.conversation.caller : ""}${data.conversation.contact ? " · " + t("call_back") + " " + data.conversation.contact : ""}` });
    const reveal = isOwner() && el("button", { type: "button", id: "reveal", onclick: async () => {
      if (!confirm(t("confirm_reveal"))) return;
      try {
        const r = await api("POST", `/api/admin/conversations/${id}/reveal`);
        transcript.replaceChildren(...r.messages.map(messageNode));
        facts.textContent = `${t("channel_" + data.conversation.channel)} · ${r.caller_phone || ""} ${r.callback_contact || ""}`;
        reveal.remove();
        toast(t("revealed"));
      } catch (e) { failed(e); }
    }, text: t("reveal") });
    view(el("div", { className: "title-row" }, el("h1", { text: `${t("conversation")} ${id}` }),
      el("a", { className: "button", href: "#/conversations", text: t("back") }), reveal),
      el("div", { className: "chat-pane" }, el("div", { className: "chat-main" }, facts, transcript,
        el("p", { className: "muted", text: t("masked_note") })),
        ordersCard(data.orders)));
  }

  // ------------------------------------------------------------------ analytics (owners)
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    children.flat(Infinity).forEach((c) => { if (c !== false && c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c))); });
    return node;
  }

  function columnChart(points, id) {  // conversations per day
    const width = 900, height = 200, left = 34, bottom = 24, top = 10;
    const max = Math.max(1, ...points.map((p) => p.value));
    const step = (width - left) / Math.max(1, points.length);
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const ticks = [0, Math.ceil(max / 2), max];
    const labelEvery = Math.ceil(points.length / 10);
    return svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", id, role: "img" },
      ticks.map((v) => [svg("line", { x1: left, x2: width, y1: y(v), y2: y(v), class: "grid-line" }),
                        svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v)]),
      points.map((p, i) => svg("rect", { x: left + i * step + step * 0.15, y: y(p.value), width: step * 0.7,
                                         height: Math.max(0, height - bottom - y(p.value)), class: "bar" },
                               svg("title", {}, `${p.label}: ${p.value}`))),
      points.map((p, i) => i % labelEvery === 0 && svg("text", { x: left + i * step + step / 2, y: height - 8,
                                                                "text-anchor": "middle", class: "axis" }, p.label.slice(5))).filter(Boolean));
  }

  function barList(rows, id) {  // top intents / unanswered questions
    const max = Math.max(1, ...rows.map((r) => r.value));
    return el("div", { className: "bar-list", id }, rows.length ? rows.map((r) => el("div", { className: "bar-row" },
      el("span", { className: "bar-label", text: r.label, title: r.label }),
      el("span", { className: "bar-track" }, (() => { const b = el("span", { className: "bar-fill" }); b.style.width = `${(100 * r.value) / max}%`; return b; })()),
      el("span", { className: "bar-value", text: r.value }))) : el("p", { className: "muted", text: t("no_data") }));
  }

  async function analyticsPage() {
    const today = new Date();
    const iso = (d) => d.toISOString().slice(0, 10);
    const from = el("input", { type: "date", id: "range-from", value: iso(new Date(today.getTime() - 29 * 86400000)) });
    const to = el("input", { type: "date", id: "range-to", value: iso(today) });
    const csvLink = el("a", { className: "button", id: "analytics-csv", text: t("export_csv") });
    const body = el("div", { id: "analytics" });
    view(el("h1", { text: t("analytics") }),
      el("div", { className: "toolbar" }, el("label", { className: "inline" }, t("from"), from),
        el("label", { className: "inline" }, t("to"), to), el("button", { type: "button", className: "primary", id: "range-apply", onclick: load, text: t("apply") }), csvLink),
      body);

    async function load() {
      const params = new URLSearchParams({ from: from.value, to: to.value });
      csvLink.href = `/api/admin/analytics.csv?${params}`;
      let d;
      try { d = await api("GET", `/api/admin/analytics?${params}`); } catch (e) { failed(e); return; }
      const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);
      const tile = (key, value, hint) => el("div", { className: "tile", "data-metric": key },
        el("div", { className: "tile-value", text: value }), el("div", { className: "tile-label", text: t(key) }),
        hint && el("div", { className: "muted", text: hint }));
      body.replaceChildren(
        el("div", { className: "tiles" },
          tile("conversations", d.conversations),
          tile("automated_resolution_rate", pct(d.automated_resolution_rate)),
          tile("handoff_rate", pct(d.handoff_rate)),
          tile("fallback_rate", pct(d.fallback_rate), `${t("per_message")} ${pct(d.fallback_message_rate)}`),
          tile("coupons_issued", d.coupons_issued),
          tile("checkout_links_opened", `${d.checkout_links_opened} / ${d.checkout_links_sent}`, pct(d.checkout_open_rate)),
          tile("first_response_s", d.first_response_s === null ? "–" : `${d.first_response_s}s`)),
        el("section", { className: "card" }, el("h2", { text: t("per_day") }),
          columnChart(d.per_day.map((p) => ({ label: p.date, value: p.conversations })), "chart-per-day")),
        el("div", { className: "two" },
          el("section", { className: "card" }, el("h2", { text: t("top_intents") }),
            barList(d.top_intents.map((r) => ({ label: r.intent, value: r.count })), "top-intents")),
          el("section", { className: "card" }, el("h2", { text: t("top_unanswered") }),
            barList(d.top_unanswered.map((r) => ({ label: r.text, value: r.count })), "top-unanswered"))));
    }
    load();
  }

  // ------------------------------------------------------------------ accounts (owners)
  async function usersPage() {
    const results = el("div", { className: "results" });
    const form = el("form", { className: "inline-form", id: "user-form", onsubmit: create },
      el("input", { name: "username", placeholder: t("username"), required: true }),
      el("input", { name: "display_name", placeholder: t("display_name") }),
      el("input", { name: "password", type: "password", placeholder: t("password"), required: true, minlength: "10", autocomplete: "new-password" }),
      el("select", { name: "role" }, el("option", { value: "agent", text: t("agent") }), el("option", { value: "owner", text: t("owner") })),
      el("button", { type: "submit", className: "primary", text: t("create") }));
    view(el("h1", { text: t("users") }), el("section", { className: "card" }, el("h2", { text: t("new_user") }), form), results);

    async function create(event) {
      event.preventDefault();
      const f = form.elements;
      try {
        await api("POST", "/api/admin/users", { username: f.username.value.trim(), display_name: f.display_name.value.trim(),
                                                password: f.password.value, role: f.role.value });
        form.reset(); toast(t("created")); load();
      } catch (e) { failed(e); }
    }
    async function load() {
      let data;
      try { data = await api("GET", "/api/admin/users"); } catch (e) { failed(e); return; }
      results.replaceChildren(el("table", { className: "grid", id: "users-table" },
        el("thead", {}, el("tr", {}, [t("username"), t("display_name"), t("role"), t("status"), t("last_login"), ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, data.items.map((u) => el("tr", {},
          el("td", { text: u.username }), el("td", { text: u.display_name }), el("td", { text: t(u.role) }),
          el("td", { text: u.active ? t("active") : t("disabled") }), el("td", { text: when(u.last_login_at) }),
          el("td", {}, u.id !== state.me.id && el("button", { type: "button", className: "small", onclick: async () => {
            try { await api("PATCH", `/api/admin/users/${u.id}`, { active: !u.active }); load(); } catch (e) { failed(e); }
          }, text: u.active ? t("disabled") : t("active") })))))));
    }
    load();
  }

  // ------------------------------------------------------------------ shell and routing
  const ROUTES = [
    [/^#\/inbox(?:\/([A-Za-z0-9_-]+))?$/, inboxPage, "inbox"],
    [/^#\/faq\/(new|\d+)$/, (m) => faqEdit(m[1]), "faq"],
    [/^#\/unanswered$/, unansweredPage, "unanswered"],
    [/^#\/users$/, usersPage, "users"],
    [/^#\/analytics$/, analyticsPage, "analytics"],
    [/^#\/conversations$/, conversationsPage, "conversations"],
    [/^#\/conversations\/([A-Za-z0-9_-]+)$/, transcriptPage, "conversations"],
    [/^#\/faq$/, faqList, "faq"],
  ];

  function route() {
    const hash = location.hash || "#/faq";
    for (const [pattern, page, tab] of ROUTES) {
      const match = hash.match(pattern);
      if (match) {
        document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("current", a.dataset.page === tab));
        page(match);
        return;
      }
    }
    location.hash = "#/faq";
  }

  async function consolePage() {
    try { state.me = await api("GET", "/api/admin/auth/me", undefined, { loginAttempt: true }); }
    catch (e) { location.href = "/admin/login"; return; }
    i18n.apply(document);
    document.querySelectorAll("[data-role]").forEach((a) => { a.hidden = a.dataset.role === "owner" && !isOwner(); });
    document.getElementById("who").textContent = `${state.me.display_name} · ${t(state.me.role)}`;
    document.getElementById("logout").addEventListener("click", async () => {
      try { await api("POST", "/api/admin/auth/logout"); } finally { location.href = "/admin/login"; }
    });
    window.addEventListener("hashchange", route);
    connectLive();
    if (!location.hash) location.hash = isOwner() ? "#/faq" : "#/inbox";
    route();
  }

  document.querySelectorAll(".lang-switch").forEach((button) => button.addEventListener("click", () => {
    i18n.set(i18n.lang === "zh" ? "en" : "zh");
    i18n.apply(document);
    if (state.me) {
      document.getElementById("who").textContent = `${state.me.display_name} · ${t(state.me.role)}`;
      route();
    }
  }));

  if (document.body.classList.contains("login-page")) loginPage();
  else consolePage();
})();
