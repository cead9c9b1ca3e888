// Shared by the manager and kiosk pages: language, the bearer token, masking, the API.
const LANG = document.documentElement.lang;
const T = {
  "zh-CN": {
    redeemed: "核销成功", rejected: "无法核销", duplicate: "已使用", accepted_offline: "离线已接受",
    refused_offline: "离线拒绝", unreadable: "无法识别", scan: "请扫码", queued: "待确认",
    cancelled: "已取消", review: "待复核", pending: "待确认", connected: "已连接",
    disconnected: "已断开", resolve: "处理", note: "备注", export: "导出 CSV", search: "搜索末位",
    all: "全部", summary: "今日汇总", log: "核销记录", reviewq: "待复核", scanners: "扫码枪",
    live: "实时", offline: "离线", route: "券种", total: "合计", detail: "详情",
    returned: "已退券", held: "已保留，等待付款", pay_order: "微信支付订单", hold_until: "保留至", payment_code: "付款码", id: "编号", time: "时间", state: "状态", title: "券名",
    value: "面值", order: "订单", code: "券码", scans: "扫码次数", reason: "原因", amount: "订单金额",
    cashier: "收银员", scanner: "扫码枪", kind: "类型", timeline: "处理过程", void: "整单作废",
    void_reason: "作废原因", voided: "已作废", scanned: "扫码", answered: "应答收银台", hourly: "今日每小时核销",
    by: "处理人", call: "调用", result: "结果", empty: "暂无记录", resolve_as: "处理为",
    guard: "门店认领", guard_claimed: "本机已认领", guard_unavailable: "门店未应答（本机单独处理）",
    guard_elsewhere: "另一收银台已认领", guard_abandoned: "另一收银台认领后未记录",
    quota: "微信每日接口调用次数已用完（45009）：卡券核销暂停，北京时间 0 点后恢复，待确认的记录不会丢失",
  },
  "en": {
    redeemed: "Redeemed", rejected: "Rejected", duplicate: "Already used", accepted_offline: "Accepted offline",
    refused_offline: "Refused offline", unreadable: "Unreadable", scan: "Please scan", queued: "Pending",
    cancelled: "Cancelled", review: "Review", pending: "Pending", connected: "connected",
    disconnected: "disconnected", resolve: "Resolve", note: "Note", export: "Export CSV", search: "Last digits",
    all: "All", summary: "Today", log: "Redemption log", reviewq: "Review queue", scanners: "Scanners",
    live: "live", offline: "offline", route: "Coupon", total: "Total", detail: "Detail",
    returned: "Returned", held: "Held, waiting for payment", pay_order: "WeChat Pay order", hold_until: "Held until", payment_code: "Payment code", id: "No.", time: "Time", state: "State", title: "Coupon",
    value: "Value", order: "Order", code: "Code", scans: "Scans", reason: "Reason", amount: "Sale total",
    cashier: "Cashier", scanner: "Scanner", kind: "Type", timeline: "Timeline", void: "Void sale",
    void_reason: "Why it is voided", voided: "Voided", scanned: "Scanned", answered: "Till answered", hourly: "Redeemed per hour today",
    by: "By", call: "Call", result: "Result", empty: "Nothing yet", resolve_as: "Resolve as",
    guard: "Store guard", guard_claimed: "claimed by this till", guard_unavailable: "store did not answer (this till alone)",
    guard_elsewhere: "claimed by another till", guard_abandoned: "claimed by another till, never recorded there",
    quota: "WeChat daily API quota exhausted (45009): card redemptions resume after 00:00 Asia/Shanghai; queued rows wait, nothing is lost",
  },
}[LANG] || {};
const t = (k) => T[k] || k;

// A token given as #token=... is kept for this tab only.
(function () {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { sessionStorage.setItem("redeemd-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
})();
const TOKEN = sessionStorage.getItem("redeemd-token");

function api(path, opts = {}) {
  const headers = Object.assign({ "Content-Type": "application/json" }, opts.headers || {});
  if (TOKEN) headers["Authorization"] = "Bearer " + TOKEN;
  return fetch(path, Object.assign({}, opts, { headers }));
}

function events(onOutcome, onScanner, onSettled, onState) {
  const url = "/v1/events" + (TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "");
  const es = new EventSource(url);
  es.onopen = () => onState && onState(true);
  es.onerror = () => onState && onState(false);
  es.onmessage = (e) => onOutcome && onOutcome(JSON.parse(e.data));
  es.addEventListener("scanner", (e) => onScanner && onScanner(JSON.parse(e.data)));
  es.addEventListener("settled", (e) => onSettled && onSettled(JSON.parse(e.data)));
  return es;
}

// A banner while WeChat's daily quota is used up (asked on every refresh of the page).
async function quotaBanner(box) {
  try {
    const h = await (await fetch("/healthz")).json();
    box.textContent = h.wechat_quota_exhausted ? t("quota") : "";
    box.hidden = !h.wechat_quota_exhausted;
  } catch (_) { /* the page's connection state already says it */ }
}

function mask(code) {
  if (!code) return "";
  const c = Array.from(code);
  return c.length <= 4 ? "*".repeat(c.length) : "*".repeat(c.length - 4) + c.slice(-4).join("");
}

// Fen as yuan: 1000 → "10", 1050 → "10.50".
function yuan(fen) {
  return fen % 100 === 0 ? String(fen / 100) : (fen / 100).toFixed(2);
}

// "2026-12-01T10:00:00.123+08:00" → "2026-12-01 10:00:00".
function when(ts) {
  return (ts || "").replace("T", " ").slice(0, 19);
}

// Control characters an older ledger may hold, shown as escapes rather than passed on.
function printable(s) {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => "\\u{" + c.charCodeAt(0).toString(16) + "}");
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : printable(String(c))));
  return e;
}
