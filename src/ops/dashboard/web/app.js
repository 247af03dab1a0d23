// The dashboard page: takes the samples the server has kept (/api/history),
// then each new one as it comes (/api/events, server-sent events), fills in
// the figures and draws four uPlot charts. No other script, no network
// beyond this server.
"use strict";

const MAX_SAMPLES = 900;
const COLORS = ["#58a6ff", "#3fb68b", "#e0a43a", "#d2a8ff", "#e5534b", "#56d4dd", "#f778ba", "#a5d6ff"];
const AXIS = { stroke: "#8a99a8", grid: { stroke: "#26313d" }, ticks: { stroke: "#26313d" } };

const samples = [];
let windows = null;
const charts = {};

const $ = (selector, root = document) => root.querySelector(selector);
const integer = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));
const perSecond = (n) => (n == null ? "–" : n >= 100 ? integer(n) : n.toFixed(1));
const seconds = (s) => (s == null ? "–" : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);
const percent = (r) => (r == null ? "–" : `${(r * 100).toFixed(2)}%`);

function setText(selector, text, root) {
  const element = $(selector, root);
  if (element && element.textContent !== text) element.textContent = text;
}

// --- figures -------------------------------------------------------------

function renderCards(sample) {
  setText("#orders-published", integer(sample.orders.total));
  setText("#orders-rate", perSecond(sample.orders.per_second));
  if (windows) {
    setText("#orders-counted", integer(windows.total_orders));
    setText("#windows-count", integer(windows.windows));
    setText("#failure-rate", windows.total_orders ? percent(windows.failure_rate) : "–");
    setText("#failed-orders", integer(windows.failed_orders));
    setText("#orders-per-minute", windows.total_orders ? windows.orders_per_minute.toFixed(1) : "–");
  }
  const api = sample.api;
  $("#api-card").hidden = !api;
  if (api) {
    setText("#api-rate", perSecond(api.per_second));
    setText("#api-requests", integer(api.requests));
    setText("#api-errors", perSecond(api.server_errors_per_second));
    setText("#api-instances", integer(api.instances));
  }
  setText("#last-update", `updated ${new Date(sample.time).toLocaleTimeString("en-GB")}`);
  const problems = $("#problems");
  problems.hidden = sample.problems.length === 0;
  problems.textContent = sample.problems.join("\n");
}

function renderGroups(sample) {
  const container = $("#groups");
  for (const group of sample.groups) {
    let card = container.querySelector(`[data-group="${CSS.escape(group.group)}"]`);
    if (!card) {
      card = $("#group-template").content.firstElementChild.cloneNode(true);
      card.dataset.group = group.group;
      card.dataset.role = group.role;
      setText(".role", group.role, card);
      setText(".name", `group ${group.group} on ${group.committed.topic}`, card);
      container.appendChild(card);
    }
    const badge = $(".status", card);
    badge.dataset.status = group.status || "";
    setText(".status", group.status || "–", card);
    setText(".lag", integer(group.total_lag), card);
    setText(".lag-time", seconds(group.lag_seconds), card);
    setText(".rate", `${perSecond(group.committed.per_second)} /s`, card);
    setText(".members", integer(group.members), card);
    const rows = group.partitions
      .map((p) => `<tr data-partition="${p.partition}"><td>${p.partition}</td><td class="lag">${integer(p.lag)}</td>` +
        `<td class="lag-time">${seconds(p.lag_seconds)}</td><td class="status">${p.status || "–"}</td></tr>`)
      .join("");
    const body = $("tbody", card);
    if (body.innerHTML !== rows) body.innerHTML = rows;
  }
}

// --- charts --------------------------------------------------------------

function chartSize(element) {
  return { width: Math.max(element.clientWidth, 300), height: 240 };
}

/// Draws `data` in the chart `name`, making it anew when its series changed.
function draw(name, series, data, scales, extra = {}) {
  const element = $(`#chart-${name}`);
  const key = series.map((s) => s.label).join("|");
  let chart = charts[name];
  if (chart && chart.key !== key) {
    chart.plot.destroy();
    chart = null;
  }
  if (!chart) {
    const options = {
      ...chartSize(element),
      series: [{}, ...series],
      scales: { x: { time: true }, ...scales },
      axes: [AXIS, { ...AXIS, size: 60 }],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      ...extra,
    };
    chart = { key, plot: new uPlot(options, data, element) };
    charts[name] = chart;
    element.dataset.series = series.length;
  } else {
    chart.plot.setData(data);
  }
  element.dataset.points = data[0].length;
}

const line = (label, i, extra = {}) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, ...extra });
const bars = (label, i) => ({
  label,
  stroke: COLORS[i],
  fill: `${COLORS[i]}99`,
  paths: uPlot.paths.bars({ size: [0.7, 40] }),
  points: { show: false },
});

function renderWindowCharts() {
  const recent = windows ? windows.recent : [];
  const starts = recent.map((w) => w[0] / 1000);
  // Half a window of room either side, so the first and last bars show whole.
  const x = { time: true, range: (u, min, max) => [min - 30, max + 30] };
  // Event time is UTC, as in the report.
  const utc = { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") };
  draw("orders", [bars("orders", 0), bars("rejected", 4)],
    [starts, recent.map((w) => w[1]), recent.map((w) => w[2])],
    { x, y: { range: (u, min, max) => [0, max * 1.1 || 1] } }, utc);
  draw("failures", [line("failure rate %", 2, { points: { show: true, size: 5 } })],
    [starts, recent.map((w) => (w[1] ? (100 * w[2]) / w[1] : null))],
    { x, y: { range: (u, min, max) => [0, Math.max(max * 1.2, 1)] } }, utc);
}

function renderTimeCharts() {
  const times = samples.map((s) => s.time / 1000);
  // One line per group and partition, as the latest sample lists them.
  const latest = samples[samples.length - 1];
  const lagSeries = [];
  const lagData = [times];
  for (const group of latest.groups) {
    for (const p of group.partitions) {
      lagSeries.push(line(`${group.role} p${p.partition}`, lagSeries.length));
      lagData.push(samples.map((s) => {
        const g = s.groups.find((x) => x.group === group.group);
        const q = g && g.partitions.find((x) => x.partition === p.partition);
        return q && q.lag != null ? q.lag : null;
      }));
    }
  }
  draw("lag", lagSeries, lagData, { y: { range: (u, min, max) => [0, Math.max(max * 1.1, 10)] } });

  const throughputSeries = [line("orders published", 0)];
  const throughputData = [times, samples.map((s) => s.orders.per_second)];
  latest.groups.forEach((group, i) => {
    throughputSeries.push(line(group.role, i + 1));
    throughputData.push(samples.map((s) => {
      const g = s.groups.find((x) => x.group === group.group);
      return g ? g.committed.per_second : null;
    }));
  });
  if (latest.api) {
    throughputSeries.push(line("API requests", latest.groups.length + 1));
    throughputData.push(samples.map((s) => (s.api ? s.api.per_second : null)));
  }
  draw("throughput", throughputSeries, throughputData, { y: { range: (u, min, max) => [0, Math.max(max * 1.1, 10)] } });
}

function render() {
  if (samples.length === 0) return;
  const latest = samples[samples.length - 1];
  renderCards(latest);
  renderGroups(latest);
  renderWindowCharts();
  renderTimeCharts();
  document.body.dataset.samples = samples.length;
}

function setConnection(state) {
  const element = $("#connection");
  element.dataset.state = state;
  element.textContent = state === "live" ? "live" : "connection lost, retrying…";
}

function resize() {
  for (const [name, chart] of Object.entries(charts)) {
    chart.plot.setSize(chartSize($(`#chart-${name}`)));
  }
}

async function start() {
  const history = await (await fetch("/api/history")).json();
  samples.push(...history.samples.slice(-MAX_SAMPLES));
  windows = history.windows;
  render();
  const events = new EventSource("/api/events");
  events.onopen = () => setConnection("live");
  events.onerror = () => setConnection("lost");
  events.addEventListener("sample", (event) => {
    const update = JSON.parse(event.data);
    samples.push(update.sample);
    if (samples.length > MAX_SAMPLES) samples.shift();
    windows = update.windows;
    setConnection("live");
    render();
  });
  window.addEventListener("resize", resize);
}

start();
