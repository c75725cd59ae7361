// The ops page's charts: uPlot over the columns /ops/data/{source} answers, redrawn every
// REFRESH_MS. Each chart's element gets data-points (values drawn) once it has drawn, which
// the browser test reads.
(function () {
  "use strict";

  const REFRESH_MS = 15000;
  const PALETTE = ["#1f8a5b", "#d9480f", "#7048e8", "#1c7ed6", "#e8590c", "#0c8599"];
  const CHARTS = {
    throughput: { source: "throughput", series: [["finalized", "finalized /h"], ["failed", "failed /h"], ["exceptions", "exceptions /h"]] },
    success: { source: "throughput", series: [["success", "success %"]], range: [0, 100], colors: ["#1c7ed6"] },
    finality: { source: "finality", series: [["p50", "p50 s"], ["p99", "p99 s"]], colors: ["#1c7ed6", "#e8590c"] },
    gas: { source: "gas", series: [["gas_per_payout", "gas / payout"], ["fee_gwei_per_payout", "gwei / payout"]], colors: ["#495057", "#f08c00"], twoAxes: true },
    runway: { source: "runway", range: [0, 100], colors: ["#e8590c", "#1f8a5b", "#1c7ed6", "#7048e8"] },
  };
  const drawn = new Map();

  function seriesOf(spec, answer) {
    if (spec.source === "runway") {
      return Object.keys(answer.series).map((name) => [name, name === "native" ? "gas (native) %" : name + " %"]);
    }
    return spec.series;
  }

  function options(el, spec, names) {
    const colors = spec.colors || PALETTE;
    const axes = [{ stroke: "#6b7280", grid: { stroke: "#eef0f3" } }, { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, size: 56 }];
    if (spec.twoAxes) axes.push({ side: 1, scale: "right", stroke: "#f08c00", grid: { show: false }, size: 56 });
    return {
      width: Math.max(el.clientWidth, 280),
      height: 190,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      // At least a minute across, so a short run does not read in milliseconds.
      scales: { x: { time: true, range: (u, min, max) => [Math.min(min, max - 60), max] }, y: spec.range ? { range: spec.range } : { range: (u, min, max) => [0, Math.max(max, 1) * 1.1] }, right: { range: (u, min, max) => [0, Math.max(max, 1) * 1.1] } },
      axes: axes,
      series: [{}].concat(names.map(([, label], i) => ({
        label: label,
        stroke: colors[i % colors.length],
        fill: i === 0 && !spec.twoAxes ? colors[0] + "22" : undefined,
        width: 2,
        scale: spec.twoAxes && i === 1 ? "right" : "y",
        points: { show: true, size: 5 },
        spanGaps: spec.source === "finality" || spec.source === "gas",
      }))),
      hooks: {
        draw: [(u) => {
          let points = 0;
          for (let i = 1; i < u.data.length; i++) points += u.data[i].filter((v) => v !== null && v !== undefined).length;
          el.dataset.points = String(points);
        }],
      },
    };
  }

  function columns(names, answer) {
    return [answer.x].concat(names.map(([name]) => answer.series[name] || answer.x.map(() => null)));
  }

  function runwayCards(answer) {
    const box = document.getElementById("runway-cards");
    if (!box) return;
    box.replaceChildren(...answer.assets.map((a) => {
      const card = document.createElement("div");
      card.className = "tile" + (a.hours !== null && a.hours < 24 ? " low" : "");
      const hours = a.hours === null ? "no burn" : a.hours < 48 ? a.hours.toFixed(1) + " h"
        : a.hours < 24 * 365 ? (a.hours / 24).toFixed(1) + " days" : "> 1 year";
      card.innerHTML = '<span class="n"></span><span class="muted"></span>';
      card.querySelector(".n").textContent = hours;
      card.querySelector(".muted").textContent = (a.asset === "native" ? "gas" : a.asset) + " · " + a.balance + " left · burns " + a.burn_per_hour + "/h";
      return card;
    }));
  }

  async function fetchSource(source, cache) {
    if (!cache.has(source)) {
      cache.set(source, fetch("/ops/data/" + source, { credentials: "same-origin" }).then((r) => {
        if (r.status === 401) { window.location.assign("/ops/login"); }
        return r.ok ? r.json() : r.json().then((body) => Promise.reject(new Error(body.error || r.statusText)));
      }));
    }
    return cache.get(source);
  }

  async function refresh() {
    const cache = new Map();
    for (const el of document.querySelectorAll("[data-chart]")) {
      const spec = CHARTS[el.dataset.chart];
      try {
        const answer = await fetchSource(spec.source, cache);
        const names = seriesOf(spec, answer);
        if (spec.source === "runway") runwayCards(answer);
        const data = columns(names, answer);
        const old = drawn.get(el);
        if (old && old.names === names.map((n) => n[0]).join()) {
          old.plot.setData(data);
        } else {
          if (old) old.plot.destroy();
          el.replaceChildren();
          drawn.set(el, { plot: new uPlot(options(el, spec, names), data, el), names: names.map((n) => n[0]).join() });
        }
        el.removeAttribute("data-error");
      } catch (err) {
        el.dataset.error = String(err.message || err);
      }
    }
  }

  window.addEventListener("resize", () => {
    for (const [el, { plot }] of drawn) plot.setSize({ width: Math.max(el.clientWidth, 280), height: 190 });
  });
  document.addEventListener("DOMContentLoaded", () => {
    refresh();
    setInterval(refresh, REFRESH_MS);
  });
})();
