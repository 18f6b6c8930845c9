"""The page of ``grokinterp report`` (``grokinterp.viz.report``): its HTML (``PAGE``, a
``str.format`` template) and its script (``SCRIPT``).

The script inflates plotly.js and the heatmaps (zlib, base64) with the browser's
``DecompressionStream``, lays out one panel per figure (heatmap grids over the whole width, at
their own size in px), and moves every panel to the checkpoint of the slider (or of the link's
``#checkpoint=N`` / ``#epoch=E``).
"""

__all__ = ["PAGE", "SCRIPT"]

#: The report's HTML: fields title, heading, facts, notes, n_max, version, plotlyjs (deflated,
#: base64), data (the JSON payload) and script.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="grokinterp {version}">
<title>{title}</title>
<style>
  body {{ font-family: Arial, "Liberation Sans", Helvetica, sans-serif; margin: 0; color: #222; background: #fafafa; }}
  header {{ padding: 10px 18px 4px; }}
  h1 {{ font-size: 18px; margin: 0 0 4px; }}
  .facts {{ color: #555; font-size: 13px; margin: 0; }}
  .note {{ color: #8a4b00; font-size: 13px; margin: 4px 0; }}
  #controls {{ position: sticky; top: 0; z-index: 10; background: #fff; border-bottom: 1px solid #ddd;
    padding: 8px 18px; display: flex; flex-wrap: wrap; align-items: center; gap: 10px; }}
  #controls button {{ font-size: 14px; min-width: 34px; }}
  #checkpoint-slider {{ flex: 1 1 420px; }}
  #epoch-label {{ font-weight: bold; min-width: 190px; }}
  #summary {{ flex-basis: 100%; font-size: 12.5px; color: #333; }}
  main {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); grid-auto-flow: dense; gap: 12px;
    padding: 10px 18px; }}
  .panel {{ background: #fff; border: 1px solid #e3e3e3; border-radius: 4px; padding: 6px; min-width: 0; }}
  .panel.wide {{ grid-column: 1 / -1; }}
  .panel.wide .figure {{ width: fit-content; max-width: 100%; margin: 0 auto; overflow-x: auto; }}
  .panel .caption {{ font-size: 12.5px; color: #555; margin: 4px 8px 2px; line-height: 1.35; }}
  .panel .title {{ font-size: 15px; font-weight: bold; text-align: center; margin: 4px 6px 0; }}
  #error {{ color: #a00; padding: 10px 18px; }}
  footer {{ font-size: 12px; color: #777; padding: 6px 18px 16px; }}
</style>
<script type="application/octet-stream" id="plotly-js">{plotlyjs}</script>
</head>
<body>
<header>
  <h1>{heading}</h1>
  <p class="facts">{facts}</p>
  {notes}
</header>
<div id="controls">
  <button id="prev" title="previous checkpoint (left arrow)">&#9664;</button>
  <input type="range" id="checkpoint-slider" min="0" max="{n_max}" step="1" value="{n_max}"
         aria-label="checkpoint">
  <button id="next" title="next checkpoint (right arrow)">&#9654;</button>
  <button id="play" title="play through the checkpoints">play</button>
  <span id="epoch-label"></span>
  <div id="summary"></div>
</div>
<main id="panels"></main>
<p id="error" hidden></p>
<footer>Written by grokinterp {version}. Open link fragments <code>#checkpoint=N</code> (index, negative
from the end) or <code>#epoch=E</code> to start at a checkpoint. Heatmap values are stored to 8 bits of
their range; the page inflates its data with the browser's DecompressionStream.</footer>
<script type="application/json" id="report-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""

#: The report's JavaScript (run once the page is parsed).
SCRIPT = r"""
(async function () {
  "use strict";
  // Deflated base64 (zlib) -> bytes, with the browser's own inflater.
  async function inflate(b64) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  const js = document.createElement("script");
  js.textContent = new TextDecoder().decode(await inflate(document.getElementById("plotly-js").textContent));
  document.head.appendChild(js);  // defines Plotly

  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const N = DATA.epochs.length;
  const slider = document.getElementById("checkpoint-slider");
  const label = document.getElementById("epoch-label");
  const summary = document.getElementById("summary");
  const main = document.getElementById("panels");
  const CONFIG = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"]};
  const divs = {}, titles = {}, captions = {};
  let current = -1;

  const figs = [...Object.values(DATA.curves).map((c) => c.fig), ...Object.values(DATA.panels).flat()];
  const zs = figs.filter(Boolean).flatMap((f) => (f.data || []).map((t) => t.z)).filter((z) => z && z.q8 !== undefined);
  await Promise.all(zs.map(async (z) => { z.bytes = await inflate(z.q8); delete z.q8; }));

  function decodeZ(z) {
    const bin = z.bytes, rows = z.shape[0], cols = z.shape[1];
    const step = (z.hi - z.lo) / 254, out = new Array(rows);
    for (let i = 0; i < rows; i++) {
      const row = new Array(cols);
      for (let j = 0; j < cols; j++) {
        const v = bin[i * cols + j];
        row[j] = v === 255 ? null : z.lo + v * step;
      }
      out[i] = row;
    }
    return out;
  }

  const clone = (x) => JSON.parse(JSON.stringify(x));
  function materialise(fig) {
    const f = {data: [], layout: clone(DATA.layouts[fig.layout["$ref"]])};
    const t = f.layout.template;
    if (t && t["$ref"] !== undefined) f.layout.template = clone(DATA.templates[t["$ref"]]);
    for (const tr of fig.data || []) {
      const z = tr.z;
      const copy = Object.assign({}, tr);
      copy.z = z && z.bytes !== undefined ? decodeZ(z) : (z === undefined ? undefined : clone(z));
      if (copy.z === undefined) delete copy.z;
      f.data.push(copy);
    }
    return f;
  }

  for (const name of DATA.order) {
    const wide = DATA.curves[name] ? DATA.curves[name].fig.wide : (DATA.panels[name] || []).some((f) => f && f.wide);
    const box = document.createElement("section");
    box.className = wide ? "panel wide" : "panel";
    box.id = "panel-" + name;
    const title = document.createElement("div");
    title.className = "title";
    const div = document.createElement("div");
    div.className = "figure";
    const cap = document.createElement("div");
    cap.className = "caption";
    box.appendChild(title);
    box.appendChild(div);
    box.appendChild(cap);
    main.appendChild(box);
    divs[name] = div;
    titles[name] = title;
    captions[name] = cap;
  }
  // Titles are plotly's pseudo-HTML (<sub>, <sup>, <br>) written by grokinterp.viz.
  function setText(name, fig) {
    titles[name].innerHTML = (fig && fig.title_html) || "";
    captions[name].textContent = (fig && fig.caption) || DATA.captions[name] || "";
  }
  for (const [name, c] of Object.entries(DATA.curves)) {
    const f = materialise(c.fig);
    setText(name, c.fig);
    Plotly.newPlot(divs[name], f.data, f.layout, CONFIG);
  }

  function render(i) {
    i = Math.max(0, Math.min(N - 1, i | 0));
    if (i === current) return;
    current = i;
    const epoch = DATA.epochs[i];
    slider.value = String(i);
    slider.setAttribute("value", String(i));
    label.textContent = "epoch " + epoch + "  (checkpoint " + (i + 1) + "/" + N + ")";
    summary.textContent = DATA.summaries[i];
    for (const [name, c] of Object.entries(DATA.curves)) {
      if (c.cursor === null) continue;
      const upd = {};
      upd["shapes[" + c.cursor + "].x0"] = epoch;
      upd["shapes[" + c.cursor + "].x1"] = epoch;
      Plotly.relayout(divs[name], upd);
    }
    for (const [name, figs] of Object.entries(DATA.panels)) {
      const fig = figs[i];
      setText(name, fig);
      if (!fig) { Plotly.purge(divs[name]); divs[name].textContent = "not drawn at this checkpoint"; continue; }
      const f = materialise(fig);
      Plotly.react(divs[name], f.data, f.layout, CONFIG);
    }
    document.body.setAttribute("data-checkpoint", String(i));
    document.body.setAttribute("data-epoch", String(epoch));
  }

  function fromHash() {
    const h = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    if (h.has("epoch")) {
      const e = Number(h.get("epoch"));
      let best = 0;
      DATA.epochs.forEach((x, j) => { if (Math.abs(x - e) < Math.abs(DATA.epochs[best] - e)) best = j; });
      return best;
    }
    if (h.has("checkpoint")) {
      const v = h.get("checkpoint");
      if (v === "last") return N - 1;
      const k = parseInt(v, 10);
      if (!isNaN(k)) return k < 0 ? N + k : k;
    }
    return N - 1;
  }

  function go(i, updateHash) {
    render(i);
    if (updateHash) history.replaceState(null, "", "#checkpoint=" + current);
  }

  let pending = null;
  slider.addEventListener("input", () => {
    const i = Number(slider.value);
    if (pending !== null) cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => { pending = null; go(i, true); });
  });
  document.getElementById("prev").addEventListener("click", () => go(current - 1, true));
  document.getElementById("next").addEventListener("click", () => go(current + 1, true));
  let timer = null;
  const playButton = document.getElementById("play");
  playButton.addEventListener("click", () => {
    if (timer) { clearInterval(timer); timer = null; playButton.textContent = "play"; return; }
    if (current >= N - 1) go(0, true);
    playButton.textContent = "pause";
    timer = setInterval(() => {
      if (current >= N - 1) { clearInterval(timer); timer = null; playButton.textContent = "play"; return; }
      go(current + 1, true);
    }, 900);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target === slider) return;
    if (ev.key === "ArrowLeft") go(current - 1, true);
    if (ev.key === "ArrowRight") go(current + 1, true);
  });
  window.addEventListener("hashchange", () => render(fromHash()));
  render(fromHash());
  document.body.setAttribute("data-ready", "1");
})().catch((err) => {
  const box = document.getElementById("error");
  box.hidden = false;
  box.textContent = "The report could not be drawn (it needs a browser with DecompressionStream: "
    + "Chrome 80, Firefox 113, Safari 16.4 or later): " + err;
});
"""
