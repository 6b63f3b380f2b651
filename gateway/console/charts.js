// Small SVG charts: lines over time and horizontal bars. Colours come from CSS classes
// (s0..s7), sizes from the viewBox, so the charts scale with the page and need no
// inline style (which the page's Content-Security-Policy forbids).

import { h } from "./dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = 8;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) {
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return el;
}

function legend(names) {
  return h("ul", { class: "legend" }, names.map((name, i) =>
    h("li", {}, h("span", { class: `swatch s${i % COLOURS}`, "aria-hidden": "true" }), name)));
}

function figure(title, chart, names) {
  return h("figure", { class: "chart" }, h("figcaption", {}, title), chart,
    names.length ? legend(names) : null);
}

// The axis top at or above `max` (1, 2, 2.5 or 5 times a power of ten) and how many
// steps divide it into round numbers.
function niceScale(max) {
  if (!(max > 0)) return [1, 4];
  const power = 10 ** Math.floor(Math.log10(max));
  const [factor, steps] = [[1, 4], [2, 4], [2.5, 5], [5, 5], [10, 5]]
    .find(([f]) => max <= f * power);
  return [factor * power, steps];
}

// series: [{name, points: [[seconds, value], ...]}]; format: value -> label text.
// width: the chart's width in CSS pixels, so text keeps its size on a phone.
export function lineChart(title, allSeries, format, width) {
  const series = allSeries.filter((s) => s.points.length > 0);
  const height = 200;
  const pad = { left: 64, right: 12, top: 10, bottom: 26 };
  const points = series.flatMap((s) => s.points);
  if (points.length === 0) return figure(title, h("p", { class: "empty" }, "No data yet."), []);
  const times = points.map(([t]) => t);
  const t0 = Math.min(...times);
  const t1 = Math.max(t0 + 1, ...times);
  const [top, steps] = niceScale(Math.max(...points.map(([, v]) => v)));
  const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
  const grid = Array.from({ length: steps + 1 }, (_, i) => i / steps).map((f) => [
    svg("line", { class: "gridline", x1: pad.left, x2: width - pad.right, y1: y(top * f),
      y2: y(top * f) }),
    svg("text", { class: "tick", x: pad.left - 6, y: y(top * f) + 4, "text-anchor": "end" },
      format(top * f)),
  ]);
  const axis = [
    svg("text", { class: "tick", x: pad.left, y: height - 6 }, `${Math.round(t1 - t0)} s ago`),
    svg("text", { class: "tick", x: width - pad.right, y: height - 6, "text-anchor": "end" },
      "now"),
  ];
  const lines = series.map((s, i) => {
    const coords = s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    const [lastT, lastV] = s.points[s.points.length - 1];
    return svg("g", { class: `series s${i % COLOURS}` },
      svg("polyline", { points: coords.join(" "), fill: "none" }),
      svg("circle", { cx: x(lastT), cy: y(lastV), r: 3 }),
    );
  });
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": title, preserveAspectRatio: "xMidYMid meet" },
    svg("title", {}, title), grid, axis, lines);
  return figure(title, chart, series.map((s) => s.name));
}

// bars: [{name, value}], drawn longest first; format: value -> label text.
export function barChart(title, bars, format, width) {
  if (bars.length === 0) return figure(title, h("p", { class: "empty" }, "No errors."), []);
  const rowHeight = 28;
  const height = bars.length * rowHeight + 8;
  const left = Math.min(180, width * 0.4);
  const top = Math.max(...bars.map((b) => b.value)) || 1;
  const rows = [...bars].sort((a, b) => b.value - a.value).map((bar, i) => {
    const length = ((width - left - 80) * bar.value) / top;
    const y = 4 + i * rowHeight;
    return svg("g", { class: `series s${i % COLOURS}` },
      svg("text", { class: "tick", x: left - 8, y: y + 17, "text-anchor": "end" }, bar.name),
      svg("rect", { x: left, y: y + 4, width: Math.max(length, 1), height: rowHeight - 10 }),
      svg("text", { class: "tick", x: left + Math.max(length, 1) + 6, y: y + 17 },
        format(bar.value)),
    );
  });
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title },
    svg("title", {}, title), rows);
  return figure(title, chart, []);
}
