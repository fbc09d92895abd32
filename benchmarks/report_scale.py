"""Dataset report at scale: 20,000 generated small images with boxes.

Images are written to disk as real PNGs (varied sizes, 1-6 boxes each) by a
child process; the measured process builds the SampleRecords with the meta the
store's probe would have recorded (width, height, mode, brightness; the pHash is
synthetic: random 64-bit values with injected exact and near duplicates, since
hashing 20,000 images belongs to import, not to the report) and runs
``dataset_report`` + ``save_html``. Baseline in the same run: decoding every
image with Pillow to get its size (what a report without meta would do).

Prints one JSON line: wall time, peak RSS, targets (< 60 s, < 1 GiB).
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N = 20_000
CLASSES = ["car", "person", "bike", "sign", "dog"]


def generate(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    meta = []
    for i in range(N):
        w, h = int(rng.integers(48, 161)), int(rng.integers(48, 161))
        arr = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(arr).resize((w, h), Image.Resampling.NEAREST)
        p = root / f"{i:05d}.png"
        im.save(p, compress_level=1)
        boxes = []
        for _ in range(int(rng.integers(1, 7))):
            bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
            x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            # Class frequencies 8:4:2:1:0.2 so the report finds imbalance.
            lab = CLASSES[int(rng.choice(5, p=np.array([8, 4, 2, 1, 0.2]) / 15.2))]
            boxes.append([lab, [round(x1, 1), round(y1, 1), round(x1 + bw, 1), round(y1 + bh, 1)]])
        meta.append({"w": w, "h": h, "b": float(arr.mean()), "boxes": boxes})
    (root / "meta.json").write_text(json.dumps(meta))


def main() -> None:
    from dlforge.data.records import Annotation, SampleRecord
    from dlforge.data.report import dataset_report

    root = Path(tempfile.gettempdir()) / "dlforge-report-scale"
    if not (root / "meta.json").exists():
        subprocess.run([sys.executable, __file__, "--generate", str(root)], check=True)
    t0 = time.perf_counter()
    meta = json.loads((root / "meta.json").read_text())
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, N, dtype=np.int64).astype(np.uint64)
    for i in range(0, 200, 2):  # 100 near-duplicate pairs (1-3 bits apart)
        hashes[i + 1] = hashes[i] ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, int(rng.integers(1, 4)))))
    records = []
    splits = ("train",) * 8 + ("val", "test")
    for i, m in enumerate(meta):
        p = root / f"{i:05d}.png"
        sha = hashlib.sha256(f"{i}".encode()).hexdigest() if i % 500 else hashlib.sha256(b"dup").hexdigest()
        records.append(SampleRecord(
            sample_id=i, sha256=sha, media_type="image", name=p.name, path=p,
            meta={"width": m["w"], "height": m["h"], "mode": "RGB", "brightness": m["b"],
                  "phash": f"{int(hashes[i]):016x}"},
            split=splits[i % 10],
            annotations=[Annotation("box", lab, {"bbox": bb}) for lab, bb in m["boxes"]],
        ))
    t_records = time.perf_counter() - t0
    t1 = time.perf_counter()
    rep = dataset_report(records, CLASSES, title="scale")
    t_report = time.perf_counter() - t1
    out = Path(tempfile.mkdtemp()) / "report.html"
    rep.save_html(out)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    # Baseline: the same sizes by decoding every image header (no meta).
    from PIL import Image

    t2 = time.perf_counter()
    for r in records[:2000]:
        with Image.open(r.path) as im:
            im.load()
    decode_all_est = (time.perf_counter() - t2) * N / 2000

    print(json.dumps({
        "benchmark": "report_scale",
        "images": N,
        "boxes": rep.figures["boxes"]["boxes"],
        "data": "real PNGs on disk (48-160 px), meta as probed; synthetic pHash with 100 near-dup pairs",
        "wall_s": round(wall, 2),
        "records_s": round(t_records, 2),
        "report_s": round(t_report, 2),
        "html_bytes": out.stat().st_size,
        "peak_rss_mib": round(peak / 2**20, 1),
        "near_dup_groups": rep.figures["duplicates"]["near_groups"],
        "exact_dup_groups": rep.figures["duplicates"]["exact_groups"],
        "findings": len(rep.findings),
        "baseline_decode_all_s_est": round(decode_all_est, 2),
        "target_wall_s": 60,
        "target_rss_mib": 1024,
        "passed": wall < 60 and peak < 2**30,
    }))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--generate":
        generate(Path(sys.argv[2]))
    else:
        main()
