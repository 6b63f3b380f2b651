// Live view: polls the gateway's metrics page while shown, and draws requests/s per
// tenant, p95 latency per adapter, and the error ratio by code, with tables of the
// numbers (requests/s, p50, p95 per tenant and per adapter) over the last WINDOW_S.

import { call } from "./api.js";
import { barChart, lineChart } from "./charts.js";
import { h, replace, showOutcome } from "./dom.js";
import { bucketsBy, minus, parse, quantile, sumBy } from "./prom.js";

const POLL_MS = 3000;
const WINDOW_S = 30;  // rates, quantiles and error ratios are over this much history
const KEEP = 60;  // snapshots kept for the charts: three minutes
const REQUESTS = "gateway_requests_total";
const LATENCY = "gateway_request_duration_seconds";

export class LivePage {
  constructor(section) {
    this.section = section;
    this.snapshots = [];
    this.timer = null;
    this.status = h("p", { class: "summary" });
    this.outcome = h("div", { class: "outcome", role: "status", hidden: true });
    this.body = h("div", { class: "live" });
    replace(section, h("div", { class: "page-head" }, h("h2", { id: "h-live" }, "Live")),
      h("p", { class: "help" }, `From the gateway's own metrics, read every ${POLL_MS / 1000} s ` +
        `while this page is open; numbers are over the last ${WINDOW_S} s.`),
      this.status, this.outcome, this.body);
  }

  show() {
    this.hide();
    this.snapshots = [];
    replace(this.body, h("p", { class: "empty" }, "Collecting a first interval…"));
    this.timer = setInterval(() => this.poll(), POLL_MS);
    return this.poll();
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async poll() {
    const res = await call("GET", "/admin/metrics");
    if (this.timer === null) return;  // hidden (or signed out) while it was on its way
    if (!res.ok) {
      this.outcome.hidden = false;
      showOutcome(this.outcome, "Read metrics", res);
      return;
    }
    this.outcome.hidden = true;
    this.snapshots.push(snapshot(parse(res.body), performance.now() / 1000));
    this.snapshots = this.snapshots.slice(-KEEP);
    if (this.snapshots.length >= 2) this.draw();
  }

  draw() {
    const all = this.snapshots;
    const last = all[all.length - 1];
    const base = windowStart(all, all.length - 1);
    const seconds = last.t - base.t;
    const total = (last.total - base.total) / seconds;
    const errors = minus(last.errors, base.errors);
    const requests = Math.max(last.total - base.total, 0);
    const errorRatios = [...errors].filter(([, n]) => n > 0)
      .map(([code, n]) => ({ name: code, value: requests ? n / requests : 0 }));
    const errorShare = errorRatios.reduce((sum, b) => sum + b.value, 0);
    this.status.textContent = `${total.toFixed(2)} requests/s · errors ${percent(errorShare)}` +
      ` · ${Math.round(seconds)} s window · updated ${new Date().toLocaleTimeString()}`;
    // Two columns on a wide screen, one on a phone; each chart drawn at its column's
    // width in pixels, so its text keeps the page's size.
    const columns = this.body.clientWidth >= 900 ? 2 : 1;
    this.body.classList.toggle("two-columns", columns === 2);
    const width = Math.max(280, (this.body.clientWidth - 16 * (columns - 1)) / columns - 24);
    const t0 = all[0].t;
    replace(this.body,
      lineChart("Requests/s by tenant", rateSeries(all, "byTenant", t0), (v) => v.toFixed(2),
        width),
      lineChart("p95 latency by adapter", p95Series(all, t0), seconds2, width),
      barChart(`Error ratio by code (last ${Math.round(seconds)} s)`, errorRatios, percent, width),
      table("Per tenant", "Tenant", last, base, "byTenant", "latencyByTenant"),
      table("Per adapter", "Adapter", last, base, "byAdapter", "latencyByAdapter"),
    );
  }
}

function snapshot(samples, t) {
  const isError = (labels) => labels.code !== "";
  return {
    t,
    total: [...sumBy(samples, REQUESTS, "outcome").values()].reduce((a, b) => a + b, 0),
    byTenant: sumBy(samples, REQUESTS, "tenant"),
    byAdapter: sumBy(samples, REQUESTS, "adapter"),
    errors: sumBy(samples, REQUESTS, "code", isError),
    latencyByTenant: bucketsBy(samples, LATENCY, "tenant"),
    latencyByAdapter: bucketsBy(samples, LATENCY, "adapter"),
  };
}

// The oldest snapshot at most WINDOW_S before snapshot i (the one before i at least).
function windowStart(all, i) {
  let j = i - 1;
  while (j > 0 && all[i].t - all[j - 1].t <= WINDOW_S) j -= 1;
  return all[j];
}

function rateSeries(all, key, t0) {
  const names = new Set(all.flatMap((s) => [...s[key].keys()]));
  return [...names].sort().map((name) => ({
    name,
    points: all.slice(1).map((s, i) => {
      const dt = s.t - all[i].t;
      const n = minus(s[key], all[i][key]).get(name) ?? 0;
      return [s.t - t0, n / dt];
    }),
  }));
}

function p95Series(all, t0) {
  const names = new Set(all.flatMap((s) => [...s.latencyByAdapter.keys()]));
  return [...names].sort().map((name) => ({
    name,
    points: all.slice(1).flatMap((s, i) => {
      const value = windowQuantile(0.95, s, windowStart(all, i + 1), "latencyByAdapter", name);
      return value === null ? [] : [[s.t - t0, value]];
    }),
  }));
}

function windowQuantile(q, last, base, key, name) {
  const now = last[key].get(name);
  return now ? quantile(q, minus(now, base[key].get(name))) : null;
}

function table(title, what, last, base, key, latencyKey) {
  const seconds = last.t - base.t;
  const counts = minus(last[key], base[key]);
  const rows = [...counts.keys()].sort().map((name) => {
    const p50 = windowQuantile(0.5, last, base, latencyKey, name);
    const p95 = windowQuantile(0.95, last, base, latencyKey, name);
    return h("tr", {},
      h("th", { scope: "row" }, name),
      h("td", {}, (counts.get(name) / seconds).toFixed(2)),
      h("td", {}, p50 === null ? "—" : seconds2(p50)),
      h("td", {}, p95 === null ? "—" : seconds2(p95)),
    );
  });
  return h("table", { class: "numbers" },
    h("caption", {}, title),
    h("thead", {}, h("tr", {}, [what, "Requests/s", "p50", "p95"]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows
      : h("tr", {}, h("td", { colspan: 4 }, "No requests yet."))),
  );
}

function seconds2(v) {
  return v < 1 ? `${Math.round(v * 1000)} ms` : `${v.toFixed(2)} s`;
}

function percent(v) {
  return `${(v * 100).toFixed(1)}%`;
}
