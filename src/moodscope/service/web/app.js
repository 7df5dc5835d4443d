// moodscope's page: send each chosen file to the API, draw its answer (plain JS + SVG).
"use strict";

(function () {
  const EMOTIONS = [
    "amazement", "solemnity", "tenderness", "nostalgia", "calmness",
    "power", "joyful_activation", "tension", "sadness",
  ];
  // Okabe & Ito's colour-blind-safe palette, plus a dark grey.
  const COLORS = {
    amazement: "#E69F00",
    solemnity: "#6A3D9A",
    tenderness: "#CC79A7",
    nostalgia: "#8C6D46",
    calmness: "#56B4E9",
    power: "#D55E00",
    joyful_activation: "#F0E442",
    tension: "#4D4D4D",
    sadness: "#0072B2",
  };
  const PARALLEL = 2; // uploads in flight at once; the server queues the rest anyway
  const SVG_NS = "http://www.w3.org/2000/svg";

  const input = document.getElementById("files");
  const drop = document.getElementById("drop");
  const results = document.getElementById("results");
  const tokenBox = document.getElementById("token-box");
  const tokenInput = document.getElementById("token");
  const modelInfo = document.getElementById("model-info");

  const waiting = [];
  let active = 0;
  let maxUploadMb = null; // from /v1/health: larger files are refused here, not uploaded
  // How a confidence is said; /v1/model sends the server's own list (the same words).
  let confidenceWords = [
    { from: 0.7, words: "sure" },
    { from: 0.5, words: "fairly sure" },
    { from: 0.35, words: "unsure" },
    { from: 0.0, words: "guessing" },
  ];

  function sureness(confidence) {
    if (confidence === null || confidence === undefined) return "not calibrated";
    const found = confidenceWords.find((w) => confidence >= w.from);
    return found ? found.words : confidenceWords[confidenceWords.length - 1].words;
  }

  function label(name) {
    return String(name).replace(/_/g, " ");
  }

  function percent(x) {
    return Math.round(x * 100) + " %";
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function ordered(emotions) {
    const known = EMOTIONS.filter((e) => e in emotions);
    const other = Object.keys(emotions).filter((e) => !EMOTIONS.includes(e));
    return known.concat(other);
  }

  function colour(name, i) {
    return COLORS[name] || `hsl(${(i * 47) % 360}, 55%, 50%)`;
  }

  function headers() {
    const token = tokenInput.value.trim();
    return token ? { Authorization: "Bearer " + token } : {};
  }

  // -- charts ---------------------------------------------------------------------------

  function barChart(emotions, top) {
    const names = ordered(emotions);
    const row = 26, left = 150, width = 460, barMax = width - left - 60;
    const height = names.length * row + 8;
    const svg = svgEl("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "bars",
      role: "img",
      "data-chart": "bars",
      "aria-label": "Shares: " + names.map((n) => `${label(n)} ${percent(emotions[n])}`).join(", "),
    });
    const peak = Math.max(...names.map((n) => emotions[n]), 1e-9);
    names.forEach((name, i) => {
      const y = 4 + i * row;
      const value = emotions[name];
      const g = svgEl("g", { class: name === top ? "bar top" : "bar" });
      g.appendChild(svgEl("text", { x: left - 8, y: y + row / 2 + 5, "text-anchor": "end" }, label(name)));
      g.appendChild(svgEl("rect", {
        x: left, y: y + 4, height: row - 8, rx: 3,
        width: Math.max(1, (value / peak) * barMax), fill: colour(name, i),
        "data-emotion": name,
      }));
      g.appendChild(svgEl("text", {
        x: left + Math.max(1, (value / peak) * barMax) + 6, y: y + row / 2 + 5, class: "value",
      }, percent(value)));
      svg.appendChild(g);
    });
    return svg;
  }

  function timelineChart(timeline) {
    const names = ordered(timeline[0].emotions);
    const width = 460, height = 180, left = 34, right = 8, top = 8, bottom = 26;
    const t0 = timeline[0].start, t1 = timeline[timeline.length - 1].end;
    const span = Math.max(t1 - t0, 1e-6);
    const x = (t) => left + ((t - t0) / span) * (width - left - right);
    const y = (v) => top + (1 - v) * (height - top - bottom);
    const svg = svgEl("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "timeline",
      role: "img",
      "data-chart": "timeline",
      "aria-label": `Emotions over time, ${timeline.length} windows from ${t0.toFixed(0)} to ${t1.toFixed(0)} s`,
    });
    // Each window holds its shares over its whole span: a stacked step chart.
    const xs = [];
    for (const seg of timeline) xs.push(seg.start, seg.end);
    let below = xs.map(() => 0);
    names.forEach((name, i) => {
      const above = [];
      timeline.forEach((seg, k) => {
        const v = seg.emotions[name] || 0;
        above.push(below[2 * k] + v, below[2 * k + 1] + v);
      });
      const upper = xs.map((t, k) => `${x(t).toFixed(1)},${y(above[k]).toFixed(1)}`);
      const lower = xs.map((t, k) => `${x(t).toFixed(1)},${y(below[k]).toFixed(1)}`).reverse();
      const area = svgEl("polygon", {
        points: upper.concat(lower).join(" "), fill: colour(name, i), "data-emotion": name,
      });
      area.appendChild(svgEl("title", {}, label(name)));
      svg.appendChild(area);
      below = above;
    });
    // Axes: shares 0-100 %, time in seconds.
    for (const v of [0, 0.5, 1]) {
      svg.appendChild(svgEl("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, (v * 100) + "%"));
    }
    const step = niceStep(span / 6);
    for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
      svg.appendChild(svgEl("line", { x1: x(t), x2: x(t), y1: y(0), y2: y(0) + 4, class: "axis" }));
      svg.appendChild(svgEl("text", { x: x(t), y: height - 8, "text-anchor": "middle", class: "tick" }, formatTime(t)));
    }
    svg.appendChild(svgEl("line", { x1: left, x2: width - right, y1: y(0), y2: y(0), class: "axis" }));
    return svg;
  }

  function niceStep(raw) {
    for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800]) if (s >= raw) return s;
    return 3600;
  }

  function formatTime(t) {
    const m = Math.floor(t / 60), s = Math.round(t - 60 * m);
    return m ? `${m}:${String(s).padStart(2, "0")}` : `${s} s`;
  }

  function legend(names) {
    const list = el("ul", { class: "legend", "aria-hidden": "true" });
    names.forEach((name, i) => {
      const item = el("li");
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colour(name, i);
      item.append(swatch, document.createTextNode(label(name)));
      list.appendChild(item);
    });
    return list;
  }

  // -- one card per file ----------------------------------------------------------------

  function newCard(file) {
    const card = el("article", { class: "card", "data-file": file.name, "data-state": "waiting" });
    card.appendChild(el("h2", { class: "file" }, file.name));
    card.appendChild(el("p", { class: "status", role: "status" }, "waiting…"));
    results.appendChild(card);
    return card;
  }

  function setStatus(card, state, text) {
    card.dataset.state = state;
    card.querySelector(".status").textContent = text;
  }

  function showError(card, status, detail) {
    setStatus(card, "error", "");
    const message = el("p", { class: "error", role: "alert", "data-status": String(status) });
    message.append(el("strong", {}, `Rejected (${status}): `), document.createTextNode(detail));
    card.appendChild(message);
  }

  function showResult(card, data) {
    setStatus(card, "done", "");
    if (data.music === false || data.top_emotion === null) {
      // Not music (silence, a tone, noise, speech): no emotions to draw.
      const why = data.not_music ? ` (${data.not_music})` : "";
      const note = el("p", { class: "top not-music", "data-not-music": data.not_music || "" });
      note.append(el("strong", {}, "Not music"), document.createTextNode(why + ": no emotions to show"));
      const facts = [data.duration === null || data.duration === undefined ? "" : `${data.duration.toFixed(1)} s`, data.model];
      card.append(note, el("p", { class: "facts" }, facts.filter(Boolean).join(" · ")));
      return;
    }
    const top = el("p", { class: "top" });
    top.append(
      document.createTextNode("Top emotion: "),
      el("strong", { class: "top-emotion", "data-emotion": data.top_emotion }, label(data.top_emotion)),
      document.createTextNode(" " + percent(data.emotions[data.top_emotion])),
    );
    // The chance that this top emotion is the one most listeners would report.
    const calibrated = data.confidence !== null && data.confidence !== undefined;
    const sure = el("p", {
      class: "confidence",
      "data-confidence": calibrated ? String(data.confidence) : "",
      "data-words": sureness(data.confidence),
    });
    sure.append(
      el("strong", {}, sureness(data.confidence)),
      document.createTextNode(calibrated
        ? ` (${percent(data.confidence)} chance that most listeners would say ${label(data.top_emotion)})`
        : ": this model carries no calibration, so it cannot say how likely it is to be right"),
    );
    const lines = [top, sure];
    if (data.top_factor) {
      const factor = el("p", { class: "factor", "data-factor": data.top_factor });
      factor.append(
        document.createTextNode("GEMS factor: "),
        el("strong", {}, data.top_factor),
        document.createTextNode(" " + percent(data.factors[data.top_factor]) + " (" +
          Object.entries(data.factors).map(([k, v]) => `${k} ${percent(v)}`).join(", ") + ")"),
      );
      lines.push(factor);
    }
    if (typeof data.arousal === "number" && typeof data.valence === "number") {
      // Russell's two dimensions, each from -1 to 1 (the model card says how they are read).
      const signed = (v) => (v >= 0 ? "+" : "\u2212") + Math.abs(v).toFixed(2);
      const mood = el("p", {
        class: "circumplex",
        "data-arousal": String(data.arousal),
        "data-valence": String(data.valence),
      });
      mood.append(
        document.createTextNode("Arousal "),
        el("strong", {}, signed(data.arousal)),
        document.createTextNode(data.arousal >= 0 ? " (energetic)" : " (calm)"),
        document.createTextNode(" \u00b7 valence "),
        el("strong", {}, signed(data.valence)),
        document.createTextNode(data.valence >= 0 ? " (positive)" : " (negative)"),
        document.createTextNode(" on a scale from \u22121 to +1"),
      );
      lines.push(mood);
    }
    const facts = [`${data.duration.toFixed(1)} s`, data.model];
    if (data.silent) facts.unshift("silent");
    if (data.truncated) facts.unshift("truncated: the file holds less than it declares");
    card.append(...lines, el("p", { class: "facts" }, facts.join(" · ")));

    const charts = el("div", { class: "charts" });
    const shares = el("figure", { class: "chart" });
    shares.append(barChart(data.emotions, data.top_emotion), el("figcaption", {}, "Share of each emotion over the whole track"));
    charts.appendChild(shares);
    if (data.timeline && data.timeline.length) {
      const over = el("figure", { class: "chart" });
      over.append(
        timelineChart(data.timeline),
        legend(ordered(data.timeline[0].emotions)),
        el("figcaption", {}, `Emotions over time (${data.timeline.length} windows)`),
      );
      charts.appendChild(over);
    }
    card.appendChild(charts);
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  async function analyse(file, card) {
    if (maxUploadMb !== null && file.size > maxUploadMb * 1048576) {
      // The server would stop reading it and answer 413; say so without sending it.
      showError(card, 413, `upload is larger than the server's limit of ${maxUploadMb} MB (--max-upload-mb)`);
      return;
    }
    setStatus(card, "running", "analysing…");
    for (let attempt = 0; ; attempt++) {
      const body = new FormData();
      body.append("file", file, file.name);
      let response, data;
      try {
        response = await fetch("v1/predict?timeline=true", { method: "POST", body, headers: headers() });
        data = await response.json().catch(() => ({}));
      } catch (err) {
        showError(card, "network", "the server could not be reached (" + err.message + ")");
        return;
      }
      if (response.status === 503 && attempt < 20) {
        const wait = Math.min(30, Number(response.headers.get("Retry-After")) || 2);
        setStatus(card, "queued", `the server is busy; trying again in ${wait} s…`);
        await sleep(wait * 1000);
        setStatus(card, "running", "analysing…");
        continue;
      }
      if (!response.ok) {
        if (response.status === 401) {
          tokenBox.open = true;
        }
        showError(card, response.status, data.detail || response.statusText || "request failed");
        return;
      }
      showResult(card, data);
      return;
    }
  }

  function pump() {
    while (active < PARALLEL && waiting.length) {
      const [file, card] = waiting.shift();
      active++;
      analyse(file, card).finally(() => {
        active--;
        pump();
      });
    }
  }

  function add(files) {
    for (const file of files) waiting.push([file, newCard(file)]);
    pump();
  }

  input.addEventListener("change", () => {
    add(Array.from(input.files));
    input.value = ""; // choosing the same file again analyses it again
  });

  // The whole page accepts a drop, the box shows where.
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) add(Array.from(e.dataTransfer.files));
  });

  tokenInput.addEventListener("change", () => {
    try { sessionStorage.setItem("moodscope-token", tokenInput.value); } catch (e) { /* private mode */ }
    loadModel();
  });
  try { tokenInput.value = sessionStorage.getItem("moodscope-token") || ""; } catch (e) { /* ignore */ }

  async function loadModel() {
    try {
      const [response, health] = await Promise.all([
        fetch("v1/model", { headers: headers() }),
        fetch("v1/health", { headers: headers() }),
      ]);
      if (response.status === 401) {
        tokenBox.open = true;
        modelInfo.textContent = "This server needs an access token.";
        return;
      }
      if (health.ok) maxUploadMb = (await health.json()).max_upload_mb;
      const m = await response.json();
      if (Array.isArray(m.confidence_words) && m.confidence_words.length) confidenceWords = m.confidence_words;
      const acc = m.crossval && m.crossval.track_accuracy;
      const listeners = m.held_out && m.held_out.listeners_words;
      modelInfo.textContent = `Model ${m.id}` + (acc
        ? ` · cross-validated track accuracy ${percent(acc.mean)}: read the distribution, the timeline and how sure it is, not only the top emotion.`
        : "") + (listeners ? ` In people: ${listeners}.` : "");
      modelInfo.dataset.listeners = listeners || "";
    } catch (err) {
      modelInfo.textContent = "";
    }
  }
  loadModel();
})();
