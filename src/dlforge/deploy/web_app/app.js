// dlforge web package: runs the bundle's model.onnx in the page with onnxruntime-web (wasm).
// Preprocessing mirrors dlforge's Python Predictor (Pillow): same resize algorithm (bilinear
// with Pillow's support and fixed-point rounding), same normalisation, same postprocessing,
// so the page gives the same answer as the SDK. Nothing is fetched from the network.
/* global ort */
"use strict";

const state = { manifest: null, session: null, tokenizer: null };
const $ = (id) => document.getElementById(id);

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
  if (isError) document.body.dataset.state = "error";
}

// ---------------------------------------------------------------------------------------------
// Images: decode to raw RGBA, convert like Pillow, resize like Pillow, normalise to NCHW.

async function decodeImage(blob) {
  // No colour management or premultiplication, so pixels equal what Pillow decodes.
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
    imageOrientation: "from-image",
  });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return { rgba, width: bitmap.width, height: bitmap.height, bitmap };
}

// Pixels as planes of uint8 (channels 3: RGB, 1: Pillow's "L" luma).
function toChannels(img, channels) {
  const n = img.width * img.height;
  const planes = [];
  for (let c = 0; c < channels; c++) planes.push(new Uint8ClampedArray(n));
  for (let i = 0; i < n; i++) {
    const r = img.rgba[4 * i], g = img.rgba[4 * i + 1], b = img.rgba[4 * i + 2];
    if (channels === 1) {
      planes[0][i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    } else {
      planes[0][i] = r; planes[1][i] = g; planes[2][i] = b;
    }
  }
  return { planes, width: img.width, height: img.height };
}

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

// Pillow's precompute_coeffs for the bilinear (triangle) filter, in fixed point.
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const k = [];
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1.0 ? 1.0 - t : 0.0;
      k.push(w);
      ww += w;
    }
    const kk = k.map((w) => {
      const v = ww !== 0 ? w / ww : w;
      return Math.trunc(v < 0 ? v * ONE - 0.5 : v * ONE + 0.5);
    });
    out.push({ xmin, kk });
  }
  return out;
}

function clip8(ss) {
  const v = Math.floor((ss + ONE / 2) / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// Resize one uint8 plane (w x h) to (ow x oh): horizontal pass, then vertical, like Pillow.
function resizePlane(src, w, h, ow, oh) {
  let cur = src, cw = w;
  if (ow !== w) {
    const co = coefficients(w, ow);
    const tmp = new Uint8ClampedArray(ow * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < ow; x++) {
        const { xmin, kk } = co[x];
        let ss = 0;
        for (let i = 0; i < kk.length; i++) ss += cur[y * cw + xmin + i] * kk[i];
        tmp[y * ow + x] = clip8(ss);
      }
    }
    cur = tmp; cw = ow;
  }
  if (oh !== h) {
    const co = coefficients(h, oh);
    const tmp = new Uint8ClampedArray(cw * oh);
    for (let y = 0; y < oh; y++) {
      const { xmin, kk } = co[y];
      for (let x = 0; x < cw; x++) {
        let ss = 0;
        for (let i = 0; i < kk.length; i++) ss += cur[(xmin + i) * cw + x] * kk[i];
        tmp[y * cw + x] = clip8(ss);
      }
    }
    cur = tmp;
  }
  return cur;
}

function resizeImage(img, ow, oh) {
  return {
    planes: img.planes.map((p) => resizePlane(p, img.width, img.height, ow, oh)),
    width: ow,
    height: oh,
  };
}

function cropImage(img, left, top, w, h) {
  const planes = img.planes.map((p) => {
    const out = new Uint8ClampedArray(w * h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = p[(y + top) * img.width + x + left];
    return out;
  });
  return { planes, width: w, height: h };
}

// Resize to the model size with the manifest's mode; keep the geometry for boxes and masks.
function fitImage(img, spec) {
  const [h, w] = spec.size;
  const w0 = img.width, h0 = img.height;
  const mode = spec.resize || "stretch";
  if (mode === "letterbox") {
    const s = Math.min(w / w0, h / h0);
    const nw = Math.max(1, Math.round(w0 * s)), nh = Math.max(1, Math.round(h0 * s));
    const r = resizeImage(img, nw, nh);
    const fill = Math.round((spec.pad_value || 0) * 255);
    const planes = r.planes.map((p) => {
      const out = new Uint8ClampedArray(w * h).fill(fill);
      for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) out[y * w + x] = p[y * nw + x];
      return out;
    });
    return { img: { planes, width: w, height: h }, geo: { orig: [w0, h0], scale: [s, s], offset: [0, 0] } };
  }
  if (mode === "center_crop") {
    const s = Math.max(w / w0, h / h0);
    const nw = Math.max(w, Math.round(w0 * s)), nh = Math.max(h, Math.round(h0 * s));
    const left = Math.floor((nw - w) / 2), top = Math.floor((nh - h) / 2);
    const r = cropImage(resizeImage(img, nw, nh), left, top, w, h);
    return { img: r, geo: { orig: [w0, h0], scale: [nw / w0, nh / h0], offset: [left, top] } };
  }
  const r = w0 === w && h0 === h ? img : resizeImage(img, w, h);
  return { img: r, geo: { orig: [w0, h0], scale: [w / w0, h / h0], offset: [0, 0] } };
}

function imageTensor(img, spec) {
  const c = img.planes.length, n = img.width * img.height;
  const data = new Float32Array(c * n);
  for (let ch = 0; ch < c; ch++) {
    const mean = spec.mean[ch], std = spec.std[ch], p = img.planes[ch];
    for (let i = 0; i < n; i++) data[ch * n + i] = (p[i] / 255 - mean) / std;
  }
  return new ort.Tensor("float32", data, [1, c, img.height, img.width]);
}

// ---------------------------------------------------------------------------------------------
// Text: a small reader of tokenizer.json (WordLevel / WordPiece models; NFKC, Lowercase;
// Whitespace, WhitespaceSplit, BertPreTokenizer and regex Split pre-tokenizers; template
// post-processor), padded and truncated to max_len like the Python handler.

function normalize(text, norm) {
  if (!norm) return text;
  switch (norm.type) {
    case "Sequence": return norm.normalizers.reduce((t, n) => normalize(t, n), text);
    case "NFKC": return text.normalize("NFKC");
    case "NFC": return text.normalize("NFC");
    case "NFD": return text.normalize("NFD");
    case "NFKD": return text.normalize("NFKD");
    case "Lowercase": return text.toLowerCase();
    case "Strip": return text.trim();
    default: throw new Error(`unsupported normalizer ${norm.type}`);
  }
}

function preTokenize(pieces, pre) {
  if (!pre) return pieces;
  const flat = (fn) => pieces.flatMap(fn);
  switch (pre.type) {
    case "Sequence": return pre.pretokenizers.reduce((ps, p) => preTokenize(ps, p), pieces);
    case "WhitespaceSplit": return flat((s) => s.split(/\s+/u).filter(Boolean));
    case "Whitespace": return flat((s) => s.match(/\w+|[^\w\s]+/gu) || []);
    case "BertPreTokenizer": return flat((s) => s.match(/[\p{L}\p{N}\p{M}_]+|[^\s\p{L}\p{N}\p{M}_]/gu) || []);
    case "Split": {
      const pat = pre.pattern.Regex !== undefined ? new RegExp(pre.pattern.Regex, "gsu")
        : new RegExp(pre.pattern.String.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gu");
      if (pre.behavior !== "Isolated" || pre.invert) throw new Error("unsupported Split behaviour");
      return flat((s) => {
        const out = [];
        let last = 0;
        for (const m of s.matchAll(pat)) {
          if (m.index > last) out.push(s.slice(last, m.index));
          if (m[0].length) out.push(m[0]);
          last = m.index + m[0].length;
        }
        if (last < s.length) out.push(s.slice(last));
        return out;
      });
    }
    default: throw new Error(`unsupported pre-tokenizer ${pre.type}`);
  }
}

function modelTokens(word, model) {
  const vocab = model.vocab;
  const unk = vocab[model.unk_token];
  if (model.type === "WordLevel") return [word in vocab ? vocab[word] : unk];
  if (model.type === "WordPiece") {
    const chars = Array.from(word);
    if (chars.length > (model.max_input_chars_per_word || 100)) return [unk];
    const ids = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length, found = null;
      while (start < end) {
        let sub = chars.slice(start, end).join("");
        if (start > 0) sub = model.continuing_subword_prefix + sub;
        if (sub in vocab) { found = vocab[sub]; break; }
        end -= 1;
      }
      if (found === null) return [unk];
      ids.push(found);
      start = end;
    }
    return ids;
  }
  throw new Error(`unsupported tokenizer model ${model.type}`);
}

function encodeText(text, tok, spec) {
  if (spec.lowercase) text = text.toLowerCase();
  const words = preTokenize([normalize(text, tok.normalizer)], tok.pre_tokenizer);
  let ids = words.flatMap((w) => modelTokens(w, tok.model));
  const maxLen = spec.max_len;
  const post = tok.post_processor;
  let before = [], after = [];
  if (post && post.type === "TemplateProcessing") {
    let seenSeq = false;
    for (const part of post.single) {
      if (part.Sequence) { seenSeq = true; continue; }
      const special = post.special_tokens[part.SpecialToken.id].ids;
      (seenSeq ? after : before).push(...special);
    }
  } else if (post) {
    throw new Error(`unsupported post-processor ${post.type}`);
  }
  ids = ids.slice(0, Math.max(0, maxLen - before.length - after.length));
  ids = [...before, ...ids, ...after];
  const mask = ids.map(() => 1);
  while (ids.length < maxLen) { ids.push(spec.pad_id || 0); mask.push(0); }
  return { ids, mask };
}

// ---------------------------------------------------------------------------------------------
// Postprocessing and display.

function softmax(xs) {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

function classify(logits) {
  const m = state.manifest;
  const multi = !!m.multi_label;
  const act = (m.postprocess || {}).activation || (multi ? "sigmoid" : "softmax");
  const xs = Array.from(logits);
  const probs = act === "softmax" ? softmax(xs) : act === "sigmoid" ? xs.map((x) => 1 / (1 + Math.exp(-x))) : xs;
  const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  const top = order.slice(0, 5).map((i) => ({ label: m.labels[i], score: probs[i] }));
  if (multi) {
    const pp = m.postprocess || {};
    const thr = pp.thresholds || pp.threshold || 0.5;
    const chosen = order.filter((i) => probs[i] >= (Array.isArray(thr) ? thr[i] : thr));
    return { labels: chosen.map((i) => m.labels[i]), label: chosen.map((i) => m.labels[i]).join(", "),
      score: chosen.length ? probs[chosen[0]] : 0, top_k: top };
  }
  return { label: top[0].label, score: top[0].score, top_k: top };
}

function showScores(result) {
  $("top-label").textContent = result.label || "(none)";
  $("top-score").textContent = result.score !== undefined ? result.score.toFixed(4) : "";
  const table = $("scores");
  table.innerHTML = "";
  for (const row of result.top_k || []) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td></td><td>${row.score.toFixed(4)}</td><td><span class="bar" style="width:${Math.round(row.score * 200)}px"></span></td>`;
    tr.firstChild.textContent = row.label;
    table.appendChild(tr);
  }
}

const PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#0082c8", "#f58230", "#911eb4", "#46f0f0", "#f032e6"];

function drawDetections(bitmap, outputs, geo) {
  const m = state.manifest, pp = m.postprocess || {};
  const [bName, sName, lName] = m.outputs.map((o) => o.name);
  const boxes = outputs[bName].data, scores = outputs[sName].data, labels = outputs[lName].data;
  const thr = pp.score_threshold ?? 0.5, maxDet = pp.max_detections ?? 100;
  const order = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
  const dets = [];
  for (const i of order) {
    if (scores[i] < thr || dets.length >= maxDet) break;
    const [sx, sy] = geo.scale, [ox, oy] = geo.offset;
    const box = [0, 1, 2, 3].map((k) => Number(boxes[4 * i + k]) + (k % 2 ? oy : ox)).map((v, k) => v / (k % 2 ? sy : sx));
    const lab = Number(labels[i]);
    dets.push({ box, label: m.labels[lab] ?? String(lab), score: scores[i] });
  }
  const canvas = $("canvas");
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  ctx.lineWidth = 2; ctx.font = "14px sans-serif";
  dets.forEach((d, i) => {
    ctx.strokeStyle = ctx.fillStyle = PALETTE[i % PALETTE.length];
    ctx.strokeRect(d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]);
    ctx.fillText(`${d.label} ${d.score.toFixed(2)}`, d.box[0] + 2, d.box[1] + 14);
  });
  return { label: dets.length ? dets[0].label : "", score: dets.length ? dets[0].score : 0,
    top_k: dets.map((d) => ({ label: d.label, score: d.score })), detections: dets };
}

function drawSegmentation(bitmap, logits, geo) {
  const [, c, h, w] = logits.dims;
  const data = logits.data;
  const mask = new Uint8Array(h * w);
  const counts = new Array(c).fill(0);
  for (let i = 0; i < h * w; i++) {
    let best = 0;
    for (let k = 1; k < c; k++) if (data[k * h * w + i] > data[best * h * w + i]) best = k;
    mask[i] = best; counts[best]++;
  }
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const sctx = small.getContext("2d");
  const im = sctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const col = PALETTE[mask[i] % PALETTE.length];
    im.data[4 * i] = parseInt(col.slice(1, 3), 16); im.data[4 * i + 1] = parseInt(col.slice(3, 5), 16);
    im.data[4 * i + 2] = parseInt(col.slice(5, 7), 16); im.data[4 * i + 3] = mask[i] === 0 ? 0 : 140;
  }
  sctx.putImageData(im, 0, 0);
  const canvas = $("canvas");
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, geo.orig[0], geo.orig[1]);
  const order = counts.map((n, i) => i).sort((a, b) => counts[b] - counts[a]);
  const total = h * w;
  const top = order.filter((i) => counts[i] > 0).map((i) => ({ label: state.manifest.labels[i], score: counts[i] / total }));
  return { label: top.length ? top[0].label : "", score: top.length ? top[0].score : 0, top_k: top };
}

function publish(result) {
  window.dlforgeResult = result;
  showScores(result);
  $("result").hidden = false;
  document.body.dataset.state = "done";
  setStatus("Done.");
}

// ---------------------------------------------------------------------------------------------

async function predictImage(file) {
  document.body.dataset.state = "running";
  setStatus("Running…");
  const m = state.manifest;
  const decoded = await decodeImage(file);
  const { img, geo } = fitImage(toChannels(decoded, m.input.channels || 3), m.input);
  const feeds = { [m.inputs[0].name]: imageTensor(img, m.input) };
  const outputs = await state.session.run(feeds);
  let result;
  if (m.task === "object_detection") {
    result = drawDetections(decoded.bitmap, outputs, geo);
  } else if (m.task === "semantic_segmentation") {
    result = drawSegmentation(decoded.bitmap, outputs[m.outputs[0].name], geo);
  } else {
    const canvas = $("canvas");
    canvas.width = decoded.width; canvas.height = decoded.height;
    canvas.getContext("2d").drawImage(decoded.bitmap, 0, 0);
    result = classify(outputs[m.outputs[0].name].data);
  }
  publish(result);
}

async function predictText(text) {
  document.body.dataset.state = "running";
  const m = state.manifest;
  if (text.length > (m.input.max_chars || 20000)) throw new Error(`text of ${text.length} characters is too long`);
  const { ids, mask } = encodeText(text, state.tokenizer, m.input);
  const L = ids.length;
  const feeds = {};
  for (const inp of m.inputs) {
    const src = inp.name === "attention_mask" ? mask : inp.name === "token_type_ids" ? ids.map(() => 0) : ids;
    feeds[inp.name] = new ort.Tensor("int64", BigInt64Array.from(src.map((v) => BigInt(v))), [1, L]);
  }
  const outputs = await state.session.run(feeds);
  $("canvas").hidden = true;
  publish(classify(outputs[m.outputs[0].name].data));
}

async function main() {
  try {
    ort.env.wasm.numThreads = 1;  // no SharedArrayBuffer / cross-origin isolation needed
    ort.env.wasm.wasmPaths = new URL("./", window.location.href).href;
    const m = await (await fetch("manifest.json")).json();
    state.manifest = m;
    document.title = `${m.name} — dlforge`;
    $("title").textContent = `${m.name} (${m.task.replace(/_/g, " ")})`;
    state.session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    if (m.input.kind === "text") {
      state.tokenizer = await (await fetch(m.input.tokenizer || "tokenizer.json")).json();
      $("text-input").hidden = false;
      $("run-text").addEventListener("click", () => predictText($("text").value).catch((e) => setStatus(String(e), true)));
    } else if (m.input.kind === "image") {
      $("image-input").hidden = false;
      $("file").addEventListener("change", (ev) => {
        const f = ev.target.files[0];
        if (f) predictImage(f).catch((e) => setStatus(`Cannot use this image: ${e.message || e}`, true));
      });
    } else {
      throw new Error(`this page cannot run ${m.input.kind} models`);
    }
    setStatus(`Ready: ${m.labels.length} classes.`);
    document.body.dataset.state = "ready";
  } catch (e) {
    setStatus(`Cannot load the model: ${e.message || e}`, true);
  }
}

main();
