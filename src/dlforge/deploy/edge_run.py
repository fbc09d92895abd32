"""Standalone runner shipped in dlforge edge packages as ``run.py``.

Needs only onnxruntime, numpy and Pillow (text bundles also need ``tokenizers``).
It mirrors dlforge's Predictor: same preprocessing, same results.

    python run.py photo.jpg [more.jpg ...] [--int8] [--top-k 5] [--threads 2] [--json]
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def load_manifest():
    with open(os.path.join(HERE, "manifest.json"), encoding="utf-8") as fh:
        return json.load(fh)


def load_image(path, channels):
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB" if channels == 3 else "L")


def resize(img, size, mode, pad_value):
    from PIL import Image

    h, w = size
    w0, h0 = img.size
    if mode == "letterbox":
        s = min(w / w0, h / h0)
        nw, nh = max(1, round(w0 * s)), max(1, round(h0 * s))
        fill = int(round(pad_value * 255))
        canvas = Image.new(img.mode, (w, h), fill if img.mode == "L" else (fill, fill, fill))
        canvas.paste(img.resize((nw, nh), Image.BILINEAR), (0, 0))
        return canvas, {"orig_size": [w0, h0], "scale": [s, s], "offset": [0, 0]}
    if mode == "center_crop":
        s = max(w / w0, h / h0)
        nw, nh = max(w, round(w0 * s)), max(h, round(h0 * s))
        left, top = (nw - w) // 2, (nh - h) // 2
        out = img.resize((nw, nh), Image.BILINEAR).crop((left, top, left + w, top + h))
        return out, {"orig_size": [w0, h0], "scale": [nw / w0, nh / h0], "offset": [left, top]}
    out = img.resize((w, h), Image.BILINEAR) if (w0, h0) != (w, h) else img
    return out, {"orig_size": [w0, h0], "scale": [w / w0, h / h0], "offset": [0, 0]}


def preprocess_image(path, spec):
    channels = int(spec.get("channels", 3))
    img = load_image(path, channels)
    size = (int(spec["size"][0]), int(spec["size"][1]))
    img, geo = resize(img, size, spec.get("resize", "stretch"), float(spec.get("pad_value", 0.0)))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = (arr - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))[None], geo  # (1, C, H, W)


def preprocess_text(text, manifest):
    from tokenizers import Tokenizer

    spec = manifest["input"]
    tok = Tokenizer.from_file(os.path.join(HERE, spec.get("tokenizer", "tokenizer.json")))
    tok.enable_truncation(max_length=int(spec["max_len"]))
    tok.enable_padding(length=int(spec["max_len"]), pad_id=int(spec.get("pad_id", 0)))
    enc = tok.encode(text.lower() if spec.get("lowercase") else text)
    ids = np.asarray([enc.ids], np.int64)
    mask = np.asarray([enc.attention_mask], np.int64)
    feeds = {}
    for inp in manifest["inputs"]:
        name = inp["name"]
        feeds[name] = mask if name == "attention_mask" else np.zeros_like(ids) if name == "token_type_ids" else ids
    return feeds


def classify(logits, manifest, top_k):
    labels = manifest["labels"]
    pp = manifest.get("postprocess", {})
    multi = manifest.get("multi_label", False)
    activation = pp.get("activation", "sigmoid" if multi else "softmax")
    x = logits.astype(np.float64)
    if activation == "softmax":
        e = np.exp(x - x.max())
        probs = e / e.sum()
    elif activation == "sigmoid":
        probs = 1.0 / (1.0 + np.exp(-x))
    else:
        probs = x
    if multi:
        thr = pp.get("thresholds") or pp.get("threshold", 0.5)
        thr = thr if isinstance(thr, list) else [thr] * len(labels)
        idx = [int(i) for i in np.argsort(-probs) if probs[i] >= thr[i]]
        return {"labels": [labels[i] for i in idx], "scores": [float(probs[i]) for i in idx]}
    order = np.argsort(-probs, kind="stable")[: max(1, min(top_k, len(labels)))]
    top = [{"label": labels[i], "score": float(probs[i])} for i in order]
    return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}


def detect(outputs, manifest, geo):
    pp = manifest.get("postprocess", {})
    names = [o["name"] for o in manifest["outputs"]]
    boxes, scores, labels = (outputs[n][0] for n in names[:3])
    sx, sy = geo["scale"]
    ox, oy = geo["offset"]
    w0, h0 = geo["orig_size"]
    dets = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < float(pp.get("score_threshold", 0.5)) or len(dets) >= int(pp.get("max_detections", 100)):
            break
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        lab = int(labels[i])
        dets.append({
            "box": [min(max((x1 + ox) / sx, 0.0), w0), min(max((y1 + oy) / sy, 0.0), h0),
                    min(max((x2 + ox) / sx, 0.0), w0), min(max((y2 + oy) / sy, 0.0), h0)],
            "label": manifest["labels"][lab] if 0 <= lab < len(manifest["labels"]) else str(lab),
            "score": float(scores[i]),
        })
    return {"detections": dets}


def segment(logits, manifest, geo):
    from PIL import Image

    mask = logits[0].argmax(0).astype(np.uint8)  # (H, W)
    w0, h0 = geo["orig_size"]
    mask = np.asarray(Image.fromarray(mask).resize((int(w0), int(h0)), Image.NEAREST))
    labels = manifest["labels"]
    counts = {labels[int(i)]: int((mask == i).sum()) for i in np.unique(mask) if i < len(labels)}
    return {"width": int(w0), "height": int(h0), "pixel_counts": counts}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run a dlforge edge model on images or texts.")
    parser.add_argument("inputs", nargs="+", help="image files (or texts for text models)")
    parser.add_argument("--int8", action="store_true", help="use the int8 model")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    manifest = load_manifest()
    files = manifest.get("files", {})
    model = files.get("model_int8") if args.int8 else files.get("model", "model.onnx")
    opts = ort.SessionOptions()
    if args.threads:
        opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(os.path.join(HERE, model), sess_options=opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    task = manifest["task"]
    results = []
    for item in args.inputs:
        try:
            if manifest["input"]["kind"] == "text":
                feeds, geo = preprocess_text(item, manifest), None
            else:
                x, geo = preprocess_image(item, manifest["input"])
                feeds = {manifest["inputs"][0]["name"]: x}
            outputs = dict(zip(out_names, sess.run(None, feeds)))
        except Exception as exc:  # report and go on with the next input
            print(f"{item}: {exc}", file=sys.stderr)
            continue
        if task == "object_detection":
            res = detect(outputs, manifest, geo)
        elif task == "semantic_segmentation":
            res = segment(outputs[out_names[0]], manifest, geo)
        else:
            res = classify(outputs[out_names[0]][0], manifest, args.top_k)
        results.append({"input": item, **res})
    if args.json:
        print(json.dumps({"model": model, "predictions": results}))
    else:
        for r in results:
            print(r["input"], r.get("label") or r.get("labels") or r.get("detections") or r.get("pixel_counts"))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
