// Forms marked data-confirm ask before they are sent (delete, stop).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// Copy buttons: data-copy names the field whose text they copy.
document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  const field = button && document.getElementById(button.dataset.copy);
  if (field) {
    navigator.clipboard.writeText(field.value).then(() => { button.textContent = "Copied"; }, () => field.select());
  }
});

// Playground: the answer streams in as the endpoint writes it.
document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.id !== "playground") return;
  event.preventDefault();
  const out = document.getElementById("answer");
  const button = form.querySelector("button[type=submit]");
  out.textContent = "";
  button.disabled = true;
  try {
    const response = await fetch(form.action, { method: "POST", body: new FormData(form) });
    if (!response.ok) {
      out.textContent = `[${response.status}] ` + (await response.text()).replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      out.textContent += decoder.decode(value, { stream: true });
    }
  } catch (err) {
    out.textContent += `\n[the connection broke: ${err}]`;
  } finally {
    button.disabled = false;
    out.dataset.done = "true";
  }
});

// Logs: a live tail over server-sent events, filtered by text and replica.
(() => {
  const pre = document.getElementById("log-lines");
  if (!pre) return;
  const state = document.getElementById("log-state");
  const form = document.getElementById("log-filter");
  let source = null;
  const follow = () => {
    if (source) source.close();
    pre.textContent = "";
    const params = new URLSearchParams(new FormData(form));
    source = new EventSource(`${pre.dataset.stream}?${params}`);
    source.onopen = () => { state.textContent = "Following: new lines appear as the replicas print them."; };
    source.onerror = () => { state.textContent = "Disconnected: retrying…"; };
    source.onmessage = (msg) => {
      const line = JSON.parse(msg.data);
      const at = line.time ? line.time.replace("T", " ").slice(0, 19) + " UTC" : "";
      pre.append(`${at} ${line.replica} ${line.stream}: ${line.line}\n`);
      if (pre.childNodes.length > 5000) pre.firstChild.remove();
      pre.scrollTop = pre.scrollHeight;
    };
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); follow(); });
  follow();
})();

// Monitoring: the series as uPlot charts, with the endpoint's events as dashed lines.
window.addEventListener("load", () => {
  const data = document.getElementById("series");
  if (!data || !window.uPlot) return;
  const series = JSON.parse(data.textContent);
  const xs = series.points.map((p) => Date.parse(p.time) / 1000);
  const marks = series.events.map((e) => Date.parse(e.time) / 1000);
  const events = {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#9a6700";
        ctx.setLineDash([4, 4]);
        for (const t of marks) {
          const x = u.valToPos(t, "x", true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      }],
    },
  };
  const charts = {
    "chart-requests": [["requests/s", (p) => p.requests_per_s, "#0b57d0"]],
    "chart-latency": [["p50 ms", (p) => p.latency_ms.p50, "#1a7f37"], ["p99 ms", (p) => p.latency_ms.p99, "#b42318"]],
    "chart-streams": [["TTFT p50 ms", (p) => p.ttft_ms.p50, "#0b57d0"], ["between tokens p50 ms", (p) => p.itl_ms.p50, "#1a7f37"]],
    "chart-inflight": [["running", (p) => p.requests_running, "#1a7f37"], ["waiting", (p) => p.requests_waiting, "#b42318"]],
    "chart-tokens": [["in/s", (p) => p.input_tokens_per_s, "#0b57d0"], ["out/s", (p) => p.output_tokens_per_s, "#1a7f37"]],
    "chart-replicas": [["running", (p) => p.replicas_running, "#0b57d0"], ["min", (p) => p.min_replicas, "#57606a"], ["max", (p) => p.max_replicas, "#9a6700"]],
    "chart-kv": [["KV cache %", (p) => (p.kv_cache_usage == null ? null : p.kv_cache_usage * 100), "#0b57d0"]],
    "chart-engine": [["running", (p) => p.engine_running, "#1a7f37"], ["waiting", (p) => p.engine_waiting, "#b42318"]],
  };
  // Hardware: a line per replica, on the same steps.
  const palette = ["#0b57d0", "#1a7f37", "#b42318", "#9a6700", "#8250df", "#57606a"];
  const gib = (v) => (v == null ? null : v / 2 ** 30);
  const perReplica = (get) => series.hardware.map((h, i) => {
    const at = new Map(h.points.map((p) => [p.time, get(p)]));
    return [h.replica, (p) => at.get(p.time) ?? null, palette[i % palette.length]];
  });
  charts["chart-cpu"] = perReplica((p) => p.cpu_percent);
  charts["chart-memory"] = perReplica((p) => gib(p.memory_bytes));
  charts["chart-gpu"] = perReplica((p) => p.gpu_percent);
  charts["chart-gpu-memory"] = perReplica((p) => gib(p.gpu_memory_bytes));
  const plots = [];
  const widthOf = (el) => Math.max(240, Math.min(el.parentElement.clientWidth, 1100));
  window.addEventListener("resize", () => {  // a chart follows the page's width
    for (const [plot, el] of plots) plot.setSize({ width: widthOf(el), height: 180 });
  });
  for (const [id, lines] of Object.entries(charts)) {
    const el = document.getElementById(id);
    if (!el) continue;
    const width = widthOf(el);
    const opts = {
      width, height: 180, plugins: [events],
      tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1e3), "UTC"),  // times in UTC, as the page says
      series: [{}, ...lines.map(([label, , stroke]) => ({ label, stroke, width: 2, spanGaps: true }))],
    };
    plots.push([new window.uPlot(opts, [xs, ...lines.map(([, get]) => series.points.map((p) => get(p) ?? null))], el), el]);
    el.dataset.points = String(xs.length);
  }
});

// Live status: the server sends the status block again whenever it changes (SSE).
(() => {
  const block = document.getElementById("ep-status");
  if (!block || !block.dataset.stream || !window.EventSource) return;
  const source = new EventSource(block.dataset.stream);
  source.addEventListener("status", (msg) => {
    const current = document.getElementById("ep-status");
    const next = document.createElement("template");
    next.innerHTML = msg.data;  // HTML the server rendered with every value escaped
    if (current && next.content.firstElementChild) current.replaceWith(next.content.firstElementChild);
  });
  source.addEventListener("gone", () => source.close());
})();
