"""Label Studio JSON export: a list of tasks with ``data`` and ``annotations``.

``choices`` become class annotations (one per chosen label), ``rectanglelabels``
(percent coordinates) boxes, ``polygonlabels`` polygons. Image tasks resolve
``data.image`` (``/data/upload/1/8f3a2b1c-cat.jpg``, ``/data/local-files/?d=...``,
``images/cat.jpg``) against the export folder, by base name when needed; text
tasks (``data.text``) become text samples. Each annotation's author is the
annotator's email when the export has it.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from dlforge.data.formats import register_format
from dlforge.data.formats._common import (
    Summary,
    UniqueNames,
    copy_atomic,
    image_size,
    is_image,
    prepare_out,
    require_root,
    safe_relative,
    to_number,
    walk_files,
    write_json_atomic,
    write_text_atomic,
)
from dlforge.data.records import SPLITS, Annotation, ImportBatch, ImportItem, SampleRecord, Skip
from dlforge.errors import InputError

#: Label Studio prefixes uploaded files with 8 hex digits and a dash.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")
_UNSUPPORTED = {
    "labels": "text span labels",
    "brushlabels": "brush masks",
    "keypointlabels": "keypoints",
    "textarea": "free text answers",
    "taxonomy": "taxonomy choices",
    "rating": "ratings",
    "ellipselabels": "ellipses",
}


def _is_task_list(obj: Any) -> bool:
    return isinstance(obj, list) and bool(obj) and isinstance(obj[0], dict) and isinstance(obj[0].get("data"), dict)


def _candidates(root: Path) -> list[Path]:
    paths = [root] if root.is_file() else sorted(root.glob("*.json"))
    return [p for p in paths if p.suffix.lower() == ".json" and not p.name.startswith(".")]


def _looks_like_export(path: Path) -> bool:
    """Detection check: a JSON list whose first task has a ``data`` object (big files: sniffed)."""
    try:
        if path.stat().st_size <= 8 * 1024 * 1024:
            with path.open("rb") as fh:
                return _is_task_list(json.load(fh))
        with path.open("rb") as fh:
            head = fh.read(64 * 1024)
    except (ValueError, UnicodeDecodeError, OSError):
        return False
    return head.lstrip().startswith(b"[") and b'"data"' in head


def _export_files(root: Path) -> list[tuple[Path, list]]:
    out = []
    for p in _candidates(root):
        if not _looks_like_export(p):
            continue
        try:
            with p.open("rb") as fh:
                obj = json.load(fh)
        except (ValueError, UnicodeDecodeError, OSError):
            continue
        if _is_task_list(obj):
            out.append((p, obj))
    return out


def _author(ann: dict) -> str:
    by = ann.get("completed_by")
    if isinstance(by, dict) and by.get("email"):
        return str(by["email"])
    username = ann.get("created_username")
    if isinstance(username, str) and "@" in username:
        return username.split(",")[0].strip()
    if by is not None and not isinstance(by, dict):
        return f"labelstudio-user-{by}"
    return "import"


class _Resolver:
    """Finds the local file behind a Label Studio image reference."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._index: dict[str, list[Path]] | None = None

    def find(self, ref: str) -> Path | None:
        ref = ref.strip()
        parsed = urllib.parse.urlparse(ref)
        query = urllib.parse.parse_qs(parsed.query)
        rel = query["d"][0] if "d" in query else urllib.parse.unquote(parsed.path)
        rel = rel.replace("\\", "/")
        if parsed.scheme not in ("http", "https", "s3", "gs"):
            for cand in (self.base / rel.lstrip("/"), self.base / Path(rel).name):
                if cand.is_file():
                    return cand
        name = Path(rel).name
        if self._index is None:
            self._index = {}
            for f in walk_files(self.base):
                if is_image(f):
                    self._index.setdefault(f.name, []).append(f)
        hits = self._index.get(name, [])
        m = _UPLOAD_PREFIX.match(name)
        if not hits and m:
            hits = self._index.get(m.group(1), [])
        return hits[0] if len(hits) == 1 else None


def _rect_box(value: dict, w: float, h: float) -> list[float]:
    x, y = to_number(value.get("x"), "x") * w / 100, to_number(value.get("y"), "y") * h / 100
    bw, bh = to_number(value.get("width"), "width") * w / 100, to_number(value.get("height"), "height") * h / 100
    rot = math.radians(to_number(value.get("rotation", 0) or 0, "rotation"))
    if not rot:
        return [x, y, x + bw, y + bh]
    # Label Studio rotates clockwise about the top-left corner; keep the enclosing axis-aligned box.
    c, s = math.cos(rot), math.sin(rot)
    xs = [x + dx * c - dy * s for dx, dy in ((0, 0), (bw, 0), (bw, bh), (0, bh))]
    ys = [y + dx * s + dy * c for dx, dy in ((0, 0), (bw, 0), (bw, bh), (0, bh))]
    return [min(xs), min(ys), max(xs), max(ys)]


def _convert_result(
    res: dict, size: tuple[float, float] | None, author: str, score: float | None
) -> tuple[list[Annotation], str | None]:
    """Annotations from one result entry, or a reason it was left out."""
    rtype = str(res.get("type", ""))
    value = res.get("value") or {}
    if rtype == "choices":
        return [Annotation("class", str(c), author=author, score=score) for c in value.get("choices", [])], None
    if rtype in _UNSUPPORTED:
        return [], f"{_UNSUPPORTED[rtype]} ({rtype}) are not supported"
    if rtype not in ("rectanglelabels", "polygonlabels"):
        return [], f"result type {rtype!r} is not supported"
    labels = value.get(rtype) or []
    if not labels:
        return [], f"{rtype} result without a label"
    if size is None:
        return [], "image size unknown"
    ow, oh = res.get("original_width"), res.get("original_height")
    w, h = (float(ow), float(oh)) if ow and oh else size
    try:
        if rtype == "rectanglelabels":
            data: dict[str, Any] = {"bbox": _rect_box(value, w, h)}
            if value.get("rotation"):
                data["attrs"] = {"rotation": value["rotation"]}
            kind = "box"
        else:
            pts = value.get("points") or []
            if len(pts) < 3:
                return [], "polygon with fewer than 3 points"
            ring = []
            for px, py in pts:
                ring += [to_number(px, "point x") * w / 100, to_number(py, "point y") * h / 100]
            data, kind = {"points": [ring]}, "polygon"
    except (ValueError, TypeError) as exc:
        return [], str(exc)
    return [Annotation(kind, str(lbl), dict(data), author=author, score=score) for lbl in labels], None


@register_format
class LabelStudioFormat:
    """Label Studio JSON export (image choices/boxes/polygons, text choices)."""

    name = "labelstudio"
    priority = 40

    @staticmethod
    def detect(root: Path) -> bool:
        root = Path(root)
        return root.exists() and any(_looks_like_export(p) for p in _candidates(root))

    @staticmethod
    def read(root: Path, **options: Any) -> ImportBatch:
        """Read Label Studio JSON exports.

        Args:
            root: the export folder (images beside or below it) or the JSON file.
            **options: ``classes`` (list) keeps only these labels, in this order;
                ``include_predictions`` (bool) also imports model predictions
                (author ``prediction:<model_version>``, with their score).
        """
        root = require_root(root)
        files = _export_files(root)
        if not files:
            raise InputError(f"{root}: no Label Studio JSON export (a list of tasks with 'data')")
        base = root if root.is_dir() else root.parent
        resolver = _Resolver(base)
        wanted = options.get("classes")
        items: list[ImportItem] = []
        skipped: list[Skip] = []
        found: set[str] = set()
        for path, tasks in files:
            for n, task in enumerate(tasks):
                tid = task.get("id", n) if isinstance(task, dict) else n
                where = f"{path.name}#{tid}"
                if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
                    skipped.append(Skip(where, "task has no 'data' object"))
                    continue
                item, reason = _task_item(task, where, base, resolver)
                if item is None:
                    skipped.append(Skip(where, str(reason)))
                    continue
                size = (float(item.meta["width"]), float(item.meta["height"])) if "width" in item.meta else None
                sources = [(a, _author(a), None) for a in task.get("annotations") or task.get("completions") or []]
                if options.get("include_predictions"):
                    sources += [
                        (p, f"prediction:{p.get('model_version') or 'unknown'}", p.get("score"))
                        for p in task.get("predictions") or []
                    ]
                for ann, author, score in sources:
                    if not isinstance(ann, dict) or ann.get("was_cancelled"):
                        continue
                    reasons: set[str] = set()
                    for res in ann.get("result") or []:
                        got, reason = _convert_result(res, size, author, score)
                        if reason:
                            reasons.add(reason)
                        for a in got:
                            if wanted is not None and a.label not in wanted:
                                reasons.add(f"label {a.label!r} is not in the class list")
                                continue
                            found.add(str(a.label))
                            item.annotations.append(a)
                    skipped += [Skip(where, r) for r in sorted(reasons)]
                items.append(item)
        classes = list(wanted) if wanted is not None else sorted(found)
        kinds = {a.kind for it in items for a in it.annotations}
        media = {it.media_type for it in items}
        if media == {"text"}:
            task_name = "text_classification"
        elif kinds & {"box", "polygon"}:
            task_name = "object_detection"
        else:
            task_name = "image_classification"
        return ImportBatch("labelstudio", items, classes, task=task_name, skipped=skipped)

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Path, **options: Any) -> dict:
        """Write ``tasks.json`` (+ ``images/``) that Label Studio imports, and ``label_config.xml``.

        Image samples keep class labels (choices), boxes and polygons (first ring);
        text samples keep class labels. Annotations are grouped per author.
        """
        out = prepare_out(out)
        summary = Summary("labelstudio")
        names = UniqueNames()
        tasks = []
        kinds: set[str] = set()
        for rec in records:
            if rec.media_type == "image":
                try:
                    width, height = image_size(rec.path)
                except InputError as exc:
                    summary.drop(rec, str(exc))
                    continue
                rel = Path("images") / names.take(safe_relative(rec.name).name)
                data: dict[str, Any] = {"image": rel.as_posix()}
                to_name = "image"
            elif rec.media_type == "text":
                data = {"text": rec.read_text()}
                width = height = 0
                to_name = "text"
            else:
                summary.drop(rec, f"media type {rec.media_type!r} cannot go into Label Studio")
                continue
            if rec.split:
                data["split"] = rec.split
            by_author: dict[str, list[dict]] = {}
            for a in rec.annotations:
                result = _ls_result(a, to_name, width, height, rec, summary)
                if result is None:
                    continue
                kinds.add(result["type"])
                results = by_author.setdefault(a.author, [])
                if result["type"] == "choices" and results and results[-1]["type"] == "choices":
                    results[-1]["value"]["choices"] += result["value"]["choices"]
                else:
                    results.append(result)
                summary.annotations += 1
            anns = []
            for i, (author, results) in enumerate(by_author.items(), 1):
                ann: dict[str, Any] = {"id": i, "result": results, "was_cancelled": False}
                if author != "import":
                    ann["completed_by"] = {"email": author}
                anns.append(ann)
            if rec.media_type == "image":
                copy_atomic(rec.path, out / rel)
            tasks.append({"id": len(tasks) + 1, "data": data, "annotations": anns})
            summary.items += 1
        write_json_atomic(out / "tasks.json", tasks)
        write_text_atomic(out / "label_config.xml", _label_config(classes, kinds, records))
        return summary.to_dict()


def _task_item(task: dict, where: str, base: Path, resolver: _Resolver) -> tuple[ImportItem | None, str | None]:
    data = task["data"]
    image_ref = data.get("image") or data.get("img")
    if not isinstance(image_ref, str):
        image_ref = next((v for v in data.values() if isinstance(v, str) and is_image(Path(v.split("?")[0]))), None)
    split = data.get("split") if data.get("split") in SPLITS else None
    if isinstance(image_ref, str):
        file = resolver.find(image_ref)
        if file is None:
            return None, f"image {image_ref!r} not found in the export folder"
        try:
            width, height = image_size(file)
        except InputError as exc:
            return None, str(exc)
        meta = {"width": width, "height": height, "labelstudio_id": task.get("id")}
        return ImportItem(file.relative_to(base).as_posix(), "image", path=file, split=split, meta=meta), None
    text = data.get("text")
    if isinstance(text, str):
        if not text.strip():
            return None, "empty text"
        return ImportItem(
            where, "text", content=text.encode("utf-8"), split=split, meta={"labelstudio_id": task.get("id")}
        ), None
    return None, "task data has neither an image nor a text"


def _ls_result(
    a: Annotation, to_name: str, width: int, height: int, rec: SampleRecord, summary: Summary
) -> dict | None:
    if a.label is None or a.kind not in ("class", "box", "polygon") or (to_name == "text" and a.kind != "class"):
        summary.drop(rec, f"{a.kind} annotation cannot be held by Label Studio tasks here")
        return None
    if a.kind == "class":
        return {
            "type": "choices",
            "from_name": "choice",
            "to_name": to_name,
            "value": {"choices": [a.label]},
        }
    common = {"to_name": to_name, "original_width": width, "original_height": height, "image_rotation": 0}
    if a.kind == "box":
        x1, y1, x2, y2 = (float(v) for v in a.data["bbox"])
        value = {
            "x": x1 / width * 100,
            "y": y1 / height * 100,
            "width": (x2 - x1) / width * 100,
            "height": (y2 - y1) / height * 100,
            "rotation": 0,
            "rectanglelabels": [a.label],
        }
        return {"type": "rectanglelabels", "from_name": "box", "value": value, **common}
    rings = a.data["points"]
    if len(rings) > 1:
        summary.drop(rec, f"polygon {a.label!r}: {len(rings) - 1} extra rings dropped")
    ring = [float(v) for v in rings[0]]
    points = [[ring[i] / width * 100, ring[i + 1] / height * 100] for i in range(0, len(ring) - 1, 2)]
    return {
        "type": "polygonlabels",
        "from_name": "polygon",
        "value": {"points": points, "polygonlabels": [a.label]},
        **common,
    }


def _label_config(classes: list[str], kinds: set[str], records: list[SampleRecord]) -> str:
    """A Label Studio labelling config matching the exported results."""
    is_text = bool(records) and all(r.media_type == "text" for r in records)
    to_name = "text" if is_text else "image"
    lines = ["<View>", '  <Text name="text" value="$text"/>' if is_text else '  <Image name="image" value="$image"/>']
    multi = any(len(r.labels()) > 1 for r in records)
    for tag, name in (("RectangleLabels", "box"), ("PolygonLabels", "polygon")):
        if f"{tag.lower()}" in kinds:
            lines.append(f'  <{tag} name="{name}" toName="{to_name}">')
            lines += [f"    <Label value={quoteattr(c)}/>" for c in classes]
            lines.append(f"  </{tag}>")
    if "choices" in kinds or not kinds:
        choice = "multiple" if multi else "single"
        lines.append(f'  <Choices name="choice" toName="{to_name}" choice="{choice}">')
        lines += [f"    <Choice value={quoteattr(c)}/>" for c in classes]
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"
