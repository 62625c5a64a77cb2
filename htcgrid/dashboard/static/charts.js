// Inline SVG charts for the dashboard: a line chart and a histogram, no library.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 800, H = 220, L = 56, R = 12, T = 12, B = 28;

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceNumber(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  if (a >= 10) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

function axes(svg, xmin, xmax, ymax, xLabel) {
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  for (let i = 0; i <= 4; i++) {
    const y = H - B - (i / 4) * (H - B - T);
    svg.appendChild(svgEl("line", { x1: L, y1: y, x2: W - R, y2: y, class: "axis", "stroke-dasharray": "2,4" }));
    svg.appendChild(svgEl("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, niceNumber((ymax * i) / 4)));
  }
  for (let i = 0; i <= 4; i++) {
    const x = L + (i / 4) * (W - L - R);
    svg.appendChild(svgEl("text", { x: x, y: H - 8, "text-anchor": "middle" }, xLabel(xmin + ((xmax - xmin) * i) / 4)));
  }
}

// series: [{cls, points: [[x, y], ...]}]; xLabel formats an x value.
function lineChart(svg, series, xLabel, xRange) {
  svg.replaceChildren();
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
    return;
  }
  const xmin = xRange ? xRange[0] : Math.min(...all.map((p) => p[0]));
  const xmax = Math.max(xRange ? xRange[1] : -Infinity, ...all.map((p) => p[0]), xmin + 1e-9);
  const ymax = Math.max(...all.map((p) => p[1]), 1e-9) * 1.05;
  axes(svg, xmin, xmax, ymax, xLabel);
  const sx = (x) => L + ((x - xmin) / (xmax - xmin)) * (W - L - R);
  const sy = (y) => H - B - (y / ymax) * (H - B - T);
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ");
    svg.appendChild(svgEl("path", { d: d, class: s.cls }));
  }
}

// A histogram: edges (bins + 1 numbers) and counts.
function histogramChart(svg, hist) {
  svg.replaceChildren();
  if (!hist.counts.length) {
    svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
    return;
  }
  const n = hist.counts.length, ymax = Math.max(...hist.counts, 1) * 1.05;
  const lo = hist.edges[0], hi = hist.edges[n];
  axes(svg, lo, hi, ymax, niceNumber);
  const bw = (W - L - R) / n;
  hist.counts.forEach((c, i) => {
    const h = (c / ymax) * (H - B - T);
    const rect = svgEl("rect", { x: L + i * bw + 1, y: H - B - h, width: Math.max(bw - 2, 1), height: h, class: "bin" });
    rect.appendChild(svgEl("title", {}, `${niceNumber(hist.edges[i])}–${niceNumber(hist.edges[i + 1])} s: ${c}`));
    svg.appendChild(rect);
  });
}

window.charts = { lineChart, histogramChart, niceNumber };
