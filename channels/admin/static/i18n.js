// The console's words in Chinese and English. window.kefuI18n.t("key") picks the chosen language.
(function () {
  "use strict";
  const WORDS = {
    zh: {
      title: "kefu 客服 · 商家后台", login: "登录", username: "用户名", password: "密码",
      login_failed: "用户名或密码错误", logout: "退出", faq: "知识库", unanswered: "未解答问题",
      users: "账号", owner: "店主", agent: "客服", search: "搜索问题、答案、标签…", any_language: "全部语言",
      any_status: "全部状态", any_category: "全部分类", draft: "草稿", published: "已发布", new_faq: "新建问答",
      import: "批量导入", export_csv: "导出 CSV", export_xlsx: "导出 Excel", key: "标识", category: "分类",
      tags: "标签（逗号分隔）", status: "状态", version: "版本", updated: "更新时间", question: "问题",
      questions_zh: "中文问法（每行一个）", questions_en: "英文问法（每行一个）", answer_zh: "中文答案",
      answer_en: "英文答案", save: "保存草稿", save_live: "保存（立即生效）", publish: "发布", unpublish: "撤回", delete: "删除",
      confirm_delete: "确定删除这条问答？", preview: "试问机器人", ask: "提问", preview_hint: "输入顾客可能的问法",
      history: "版本历史", restore: "恢复此版本", author: "作者", action: "操作", no_results: "没有符合条件的问答",
      saved: "已保存", published_ok: "已发布，顾客现在可以问到它了", unpublished_ok: "已撤回",
      restored: "已恢复到所选版本", deleted: "已删除", conflict: "别人刚改过这条问答，请刷新后再改",
      answered: "机器人的回答", not_answered: "机器人答不上来（低于置信度阈值）", confidence: "置信度",
      sources: "引用", passages: "检索到的段落", back: "返回列表", edit_faq: "编辑问答",
      count: "次数", first_seen: "首次", last_seen: "最近", examples: "问法", to_faq: "转为问答",
      dismiss: "忽略", inbox_empty: "没有待处理的问题", language: "语言", drafted: "已生成草稿，请补充答案后发布",
      dismissed: "已忽略", import_title: "批量导入问答（CSV / Excel / JSONL）", choose_file: "选择文件",
      publish_all: "导入后直接发布", do_import: "导入", import_ok: "导入完成", import_failed: "文件有错误，未导入任何内容",
      row: "行", column: "列", reason: "原因", cancel: "取消", forbidden: "当前账号无权执行此操作",
      only_owner: "只有店主可以修改知识库", error: "出错了", role: "角色", active: "启用", disabled: "停用",
      new_user: "新建账号", display_name: "显示名称", create: "创建", last_login: "最近登录",
      created: "已创建", language_switch: "English", total: "共", items: "条", too_many: "尝试次数过多",
      session_expired: "登录已过期，请重新登录", diff: "改动",
      inbox: "人工会话", new_handoff: "有顾客在等待人工客服", shopper: "顾客", bot: "机器人", photo: "图片",
      handoff_requested: "请求转人工", pick_conversation: "从左侧选择一个会话", queue_empty: "暂时没有顾客在等待",
      waiting: "等待接入", answering: "服务中", reply_hint: "输入回复，回车发送", take_over: "接入会话",
      hand_back: "交还机器人", orders: "顾客的订单", no_orders: "顾客尚未验证身份，暂无订单信息", conversation: "会话",
      send: "发送", status_waiting: "等待人工", status_agent: "人工服务中", status_bot: "机器人服务中",
      reason_human_agent: "顾客要求转人工", reason_complaint: "投诉", reason_fallback_twice: "机器人连续两次答不上来",
      reason_requested: "转人工", reason_defect_photo_unclear: "照片无法判断", reason_claim_window_closed: "超出售后期",
      reason_claim_failed: "售后申请失败", reason_agent_joined: "客服主动接入", reason_callback: "非工作时间留言",
      call_back: "回电",
      analytics: "数据分析", from: "从", to: "到", apply: "查询", conversations: "会话数",
      automated_resolution_rate: "机器人独立解决率", handoff_rate: "转人工率", fallback_rate: "答不上来的会话占比",
      per_message: "按消息计", coupons_issued: "发出的优惠券", checkout_links_opened: "结算链接打开 / 发出",
      first_response_s: "平均首次响应", per_day: "每日会话数", top_intents: "最常见意图", top_unanswered: "最常见未解答问题",
      no_data: "所选时间段内没有数据",
    },
    en: {
      title: "kefu · merchant console", login: "Log in", username: "Username", password: "Password",
      login_failed: "Wrong username or password", logout: "Log out", faq: "Knowledge base",
      unanswered: "Unanswered", users: "Accounts", owner: "Owner", agent: "Agent",
      search: "Search questions, answers, tags…", any_language: "Any language", any_status: "Any status",
      any_category: "Any category", draft: "Draft", published: "Published", new_faq: "New FAQ", import: "Import",
      export_csv: "Export CSV", export_xlsx: "Export Excel", key: "Key", category: "Category",
      tags: "Tags (comma separated)", status: "Status", version: "Version", updated: "Updated", question: "Question",
      questions_zh: "Chinese questions (one per line)", questions_en: "English questions (one per line)",
      answer_zh: "Chinese answer", answer_en: "English answer", save: "Save draft", save_live: "Save (live now)", publish: "Publish",
      unpublish: "Unpublish", delete: "Delete", confirm_delete: "Delete this FAQ?", preview: "Ask the bot",
      ask: "Ask", preview_hint: "Type a question a shopper might ask", history: "Version history",
      restore: "Restore this version", author: "Author", action: "Action", no_results: "No FAQ matches",
      saved: "Saved", published_ok: "Published: shoppers can ask it now", unpublished_ok: "Unpublished",
      restored: "Restored the chosen version", deleted: "Deleted",
      conflict: "Someone changed this FAQ meanwhile; reload it and edit again", answered: "The bot's answer",
      not_answered: "The bot cannot answer (below the confidence threshold)", confidence: "Confidence",
      sources: "Sources", passages: "Passages found", back: "Back to the list", edit_faq: "Edit FAQ",
      count: "Count", first_seen: "First seen", last_seen: "Last seen", examples: "Asked as", to_faq: "Make an FAQ",
      dismiss: "Dismiss", inbox_empty: "Nothing waiting", language: "Language",
      drafted: "Draft created: write the answer, then publish", dismissed: "Dismissed",
      import_title: "Import FAQs (CSV / Excel / JSONL)", choose_file: "Choose a file", publish_all: "Publish on import",
      do_import: "Import", import_ok: "Imported", import_failed: "The file has errors; nothing was imported",
      row: "Row", column: "Column", reason: "Reason", cancel: "Cancel",
      forbidden: "This account may not do that", only_owner: "Only owners can change the knowledge base",
      error: "Something went wrong", role: "Role", active: "Active", disabled: "Disabled", new_user: "New account",
      display_name: "Display name", create: "Create", last_login: "Last login", created: "Created",
      language_switch: "中文", total: "", items: "entries", too_many: "Too many attempts",
      session_expired: "Your session ended; please log in again", diff: "Changes",
      inbox: "Live chats", new_handoff: "A shopper is waiting for an agent", shopper: "Shopper", bot: "Bot", photo: "photo",
      handoff_requested: "asked for a human", pick_conversation: "Pick a conversation on the left",
      queue_empty: "No shopper is waiting", waiting: "Waiting", answering: "Answering", reply_hint: "Type a reply; Enter sends",
      take_over: "Take over", hand_back: "Hand back to the bot", orders: "Shopper's orders",
      no_orders: "The shopper has not verified who they are: no orders to show", conversation: "Conversation", send: "Send",
      status_waiting: "waiting for an agent", status_agent: "agent answering", status_bot: "bot answering",
      reason_human_agent: "asked for a human", reason_complaint: "complaint", reason_fallback_twice: "the bot could not answer twice",
      reason_requested: "handoff", reason_defect_photo_unclear: "photo unclear", reason_claim_window_closed: "claim window closed",
      reason_claim_failed: "claim failed", reason_agent_joined: "agent joined", reason_callback: "left a contact after hours",
      call_back: "Call back",
      analytics: "Analytics", from: "From", to: "To", apply: "Apply", conversations: "Conversations",
      automated_resolution_rate: "Automated resolution", handoff_rate: "Handoff rate", fallback_rate: "Conversations with a fallback",
      per_message: "per message", coupons_issued: "Coupons issued", checkout_links_opened: "Checkout links opened / sent",
      first_response_s: "Average first response", per_day: "Conversations per day", top_intents: "Top intents",
      top_unanswered: "Top unanswered questions", no_data: "No data in this date range",
    },
  };
  function initial() {
    const saved = localStorage.getItem("kefu-console-lang");
    if (saved === "zh" || saved === "en") return saved;
    return (navigator.language || "zh").toLowerCase().startsWith("zh") ? "zh" : "en";
  }
  let lang = initial();
  window.kefuI18n = {
    get lang() { return lang; },
    set(value) { lang = value === "en" ? "en" : "zh"; localStorage.setItem("kefu-console-lang", lang); },
    t(key) { return (WORDS[lang] && WORDS[lang][key]) || WORDS.en[key] || key; },
    // elements marked data-i18n="key" (text) or data-i18n-placeholder="key"
    apply(root) {
      document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
      root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = this.t(el.dataset.i18n); });
      root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = this.t(el.dataset.i18nPlaceholder); });
    },
  };
})();
