"""Import + clean throughput against a plain-decode floor, and near-duplicate precision/recall.

Generates N small JPEG/PNG images (procedural scenes, 72-128 px) of which 5% are
near duplicates of others (resized, re-encoded, cropped up to 5%, or brightened
+-15%), then in one run measures:

- the floor: decoding every image once with Pillow, one process;
- the probe alone (:func:`dlforge.data.probe.probe_many`, all cores), for reference;
- ``Workspace.open(tmp).import_data(folder, name="bench", format="unlabelled")``
  followed by ``.clean()`` on the imported version (all cores);
- near-duplicate precision and recall (pairs inside reported groups vs the injected truth);
- peak RSS of this process plus its children.

Prints one JSON line. Usage::

    python benchmarks/import_clean.py [--n 20000] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageDraw, ImageEnhance

KINDS = ("resize", "jpeg", "crop", "bright")


def scene(seed: int) -> Image.Image:
    """A distinct procedural picture: low-frequency colour waves plus random shapes."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    w = rng.randint(72, 128)
    h = rng.randint(int(w * 0.75), w)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    bg = np.zeros((h, w, 3))
    for _ in range(3):
        fx, fy = nrng.uniform(-3, 3, 2)
        wave = np.sin(2 * np.pi * (fx * xx + fy * yy) + nrng.uniform(0, 2 * np.pi))
        bg += wave[..., None] * nrng.uniform(-60, 60, 3)
    im = Image.fromarray(np.clip(bg + nrng.uniform(60, 200, 3), 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(4, 10)):
        fill = tuple(rng.randint(0, 255) for _ in range(3))
        x0, y0 = rng.randint(-w // 4, w), rng.randint(-h // 4, h)
        box = [x0, y0, x0 + rng.randint(w // 10, w // 2), y0 + rng.randint(h // 10, h // 2)]
        k = rng.random()
        if k < 0.35:
            d.ellipse(box, fill=fill)
        elif k < 0.65:
            d.rectangle(box, fill=fill)
        elif k < 0.85:
            d.polygon([(rng.randint(0, w), rng.randint(0, h)) for _ in range(rng.randint(3, 6))], fill=fill)
        else:
            d.line(box, fill=fill, width=rng.randint(2, 8))
    return im


def perturb(im: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, int]:
    """A near-duplicate copy and the JPEG quality to save it with."""
    w, h = im.size
    quality = 90
    if kind == "resize":
        f = rng.uniform(0.6, 1.5)
        im = im.resize((round(w * f), round(h * f)), Image.Resampling.BILINEAR)
    elif kind == "jpeg":
        quality = rng.randint(50, 85)
    elif kind == "crop":  # up to 5% off each axis, split between both sides
        cx, cy = int(w * rng.uniform(0, 0.05)), int(h * rng.uniform(0, 0.05))
        left, top = rng.randint(0, cx), rng.randint(0, cy)
        im = im.crop((left, top, w - (cx - left), h - (cy - top)))
    else:
        im = ImageEnhance.Brightness(im).enhance(rng.choice([rng.uniform(0.85, 0.95), rng.uniform(1.05, 1.15)]))
    return im, quality


def _write(job: tuple[str, int, int | None, str | None]) -> None:
    path, seed, source_seed, kind = job
    rng = random.Random(seed * 7919 + 1)
    if source_seed is None:
        im = scene(seed)
        fmt = "PNG" if path.endswith(".png") else "JPEG"
        im.save(path, fmt, **({"quality": rng.randint(85, 95)} if fmt == "JPEG" else {}))
    else:
        im, quality = perturb(scene(source_seed), kind or "jpeg", rng)
        im.save(path, "JPEG", quality=quality)


def generate(folder: Path, n: int, dup_fraction: float, seed: int, workers: int) -> dict[str, str]:
    """Write the images; returns copy name -> original name for the injected near duplicates."""
    rng = random.Random(seed)
    n_dup = round(n * dup_fraction)
    n_orig = n - n_dup
    jobs: list[tuple[str, int, int | None, str | None]] = []
    names: list[str] = []
    for i in range(n_orig):
        name = f"img{i:06d}.{'png' if rng.random() < 0.3 else 'jpg'}"
        names.append(name)
        jobs.append((str(folder / name), seed * 10_000_000 + i, None, None))
    truth: dict[str, str] = {}
    sources = rng.sample(range(n_orig), n_dup)
    for c, src in enumerate(sources):
        name = f"dup{c:06d}.jpg"
        truth[name] = names[src]
        jobs.append((str(folder / name), seed * 10_000_000 + n_orig + c, seed * 10_000_000 + src, KINDS[c % 4]))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_write, jobs, chunksize=64)
    return truth


class PeakRSS:
    """Samples the RSS of this process plus all its descendants in a thread, and their CPU.

    Descendants include a forkserver's workers, which are not this process's children and
    so are missing from ``RUSAGE_CHILDREN``; their CPU is the last value seen per process.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
                t = child.cpu_times()
                self._cpu_last[child.pid] = t.user + t.system
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._sample()
        self._cpu_start = dict(self._cpu_last)
        self._self_cpu = sum(psutil.Process().cpu_times()[:2])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())
        self._self_cpu = sum(psutil.Process().cpu_times()[:2]) - self._self_cpu

    @property
    def cpu_seconds(self) -> float:
        """CPU of this process and its descendants between enter and exit."""
        kids = sum(v - self._cpu_start.get(pid, 0.0) for pid, v in self._cpu_last.items())
        return self._self_cpu + kids


def cpu_seconds() -> float:
    """User + system CPU of this process."""
    return sum(psutil.Process().cpu_times()[:2])


def decode_floor(files: list[Path]) -> float:
    """Seconds to decode every file once with Pillow in this process."""
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            im.load()
    return time.perf_counter() - t0


def pair_scores(found_groups: list[list[str]], truth: dict[str, str]) -> tuple[float, float]:
    """Pairwise precision and recall of reported groups vs the injected copy -> original map."""
    families: dict[str, set[str]] = {}
    for copy, orig in truth.items():
        families.setdefault(orig, {orig}).add(copy)
    true_pairs = {tuple(sorted((a, b))) for fam in families.values() for a in fam for b in fam if a < b}
    found = {tuple(sorted((a, b))) for g in found_groups for a in g for b in g if a < b}
    hit = len(found & true_pairs)
    return hit / max(1, len(found)), hit / max(1, len(true_pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="images to generate (5%% are near duplicates)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for generation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and print its path on stderr")
    args = parser.parse_args()

    # A fresh workspace in a temp dir, independent of any DLFORGE_HOME the caller has.
    os.environ.pop("DLFORGE_HOME", None)
    os.environ.pop("DLFORGE_DATABASE_URL", None)
    from dlforge.data.probe import probe_many
    from dlforge.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="dlforge-bench-"))
    try:
        folder = tmp / "images"
        folder.mkdir()
        t0 = time.perf_counter()
        truth = generate(folder, args.n, 0.05, args.seed, args.workers)
        gen_s = time.perf_counter() - t0
        files = sorted(folder.iterdir())
        decode_floor(files[:200])  # warm the page cache and the codecs for both measurements
        load_before = os.getloadavg()[0]
        c0 = cpu_seconds()
        floor_s = decode_floor(files)
        floor_cpu = cpu_seconds() - c0
        # The probe alone (every image decoded once and hashed, all cores): separates the
        # probe's share from the store's (copy, sha256, database) in the import figure.
        t0 = time.perf_counter()
        probe_many([(f, "image") for f in files], workers=os.cpu_count() or 1)
        probe_s = time.perf_counter() - t0

        with PeakRSS() as rss:
            ws = Workspace.open(tmp / "ws")
            t0 = time.perf_counter()
            res = ws.import_data(folder, name="bench", format="unlabelled")
            t1 = time.perf_counter()
            cleaned = res.version.clean()
            t2 = time.perf_counter()
        report = cleaned.report
        names = {r.sample_id: r.name for r in res.version.records()}
        groups = [[names[s] for s in g] for g in report.near_duplicate_groups]
        precision, recall = pair_scores(groups, truth)
        n = len(files)
        floor_rate = n / floor_s
        rate = n / (t2 - t0)
        out = {
            "benchmark": "import_clean",
            "n_images": n,
            "near_duplicates_injected": len(truth),
            "cores": os.cpu_count(),
            "decode_floor_img_s": round(floor_rate, 1),
            "import_clean_img_s": round(rate, 1),
            "ratio": round(rate / floor_rate, 3),
            "probe_only_img_s": round(n / probe_s, 1),
            "import_s": round(t1 - t0, 2),
            "clean_s": round(t2 - t1, 2),
            # CPU seconds per image relative to the floor's: what the pipeline costs beyond one
            # decode, independent of how many cores were free (1.0 would be one decode an image).
            "cpu_per_image_vs_floor": round(rss.cpu_seconds / floor_cpu, 2),
            "imported": res.imported,
            "excluded": len(report.excluded),
            "near_dup_groups": len(report.near_duplicate_groups),
            "near_dup_precision": round(precision, 4),
            "near_dup_recall": round(recall, 4),
            "peak_rss_mib": round(rss.peak / 2**20, 1),
            "generate_s": round(gen_s, 1),
            # Other work on the machine during the run: figures are only comparable at similar load.
            "load_avg_1m": round(load_before, 2),
        }
        out["targets_met"] = bool(
            out["ratio"] >= 0.5 and precision >= 0.95 and recall >= 0.95 and rss.peak < 2**30
        )
        ws.close()
        print(json.dumps(out))
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
