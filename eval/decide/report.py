"""One self-contained HTML page that answers "which approach at my label budget", from the records alone.

    python eval/report.py [--results-dir results] [--metric accuracy|macro_f1] [--out FILE]

Writes DIR/report.html: a single file that works offline (CSS, JavaScript and plots inline; no CDN). Per task: the
recommendation at a few label budgets (eval/decide/recommend.py), the learning curve and the cost plot
(eval/decide/plots.py), the sortable leaderboard with ties and near-collapse marked (eval/decide/analysis.py), a
drill-down per run listing every test example (text, gold label, raw model output, parsed label, parse status;
filterable to errors), and an error analysis: the examples every approach got wrong, and those where the best encoder
and the best LLM disagree. Example texts come from the per-example logs; older logs without texts fall back to the
task's own test set when its split hash matches, else the text is shown as unavailable. Deterministic: the same records
give the same file.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from eval.decide import leaderboard as lb
from eval.decide.analysis import Row, TestSet, analyse
from eval.decide.report_assets import CSS, JS
from eval.run.records import atomic_write, load_examples, load_records
from eval.run.versions import spread_text
from eval.scoring.labels import INVALID

BUDGETS = (16, 64, 256)
RAW_LIMIT = 2000  # characters of a raw answer kept in the page (long chains of thought are cut, and say so)


def esc(x: object) -> str:
    return html.escape("" if x is None else str(x))


def _png(draw) -> str | None:
    """Draw into a temporary PNG and return it as a data: URI (None when nothing was drawn)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.png"
        if draw(path) is False or not path.exists():
            return None
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _task_texts(task: str, ts: TestSet) -> dict[str, str]:
    """Texts of an older log without them: the task's test set, only if it is the same one (split hash)."""
    try:
        from eval.inputs.data import load_config, load_task, split_hash

        if load_config(task).source.get("type") == "hf":  # never download a data set just to show texts
            return {}
        data = load_task(task)
        test = data.test(ts.n_items) if ts.n_items <= len(data.test_all) else data.test_all
        if split_hash(test) != ts.test_hash:
            return {}
        return {e.id: e.text for e in test}
    except Exception:  # noqa: BLE001 - any failure (data not installed, a --data task) only costs the texts
        return {}


def collect_examples(ts: TestSet) -> tuple[dict, dict[str, dict]]:
    """The test set's examples (ids, texts, gold) and, per run, its rows [index, pred, raw, status]."""
    index = {i: k for k, i in enumerate(ts.ids)}
    texts: dict[str, str] = {}
    runs: dict[str, dict] = {}
    for row in ts.rows:
        for rec in row.records:
            ex = load_examples(rec)
            rows = []
            for e in ex:
                if e.get("id") not in index:
                    continue
                if e.get("text") is not None:
                    texts.setdefault(e["id"], e["text"])
                raw = e.get("raw")
                if isinstance(raw, str) and len(raw) > RAW_LIMIT:
                    raw = raw[:RAW_LIMIT] + f" …[{len(raw) - RAW_LIMIT} more characters in the log]"
                pred = e.get("pred", INVALID)
                status = e.get("status") or ("valid" if pred != INVALID else "no_label")
                rows.append([index[e["id"]], pred, raw, status])
            if rows:
                runs[run_key(rec)] = {"title": f"{row.name} · n_train={row.n_train} · seed {rec.get('seed', 0)} · "
                                               f"{rec.get('run_id', '')}", "set": ts.test_hash, "rows": rows}
    if len(texts) < len(ts.ids):
        for k, v in _task_texts(ts.task, ts).items():
            texts.setdefault(k, v)
    examples = {"ids": ts.ids, "gold": ts.gold,
                "texts": [texts.get(i, "(text not stored in this older log)") for i in ts.ids]}
    return examples, runs


def run_key(rec: dict) -> str:
    return f"{rec.get('task')}/{rec.get('track')}/{rec.get('run_id') or Path(rec.get('_path', '?')).stem}"


def render_recommendations(task: str, records: list[dict], metric: str, full: int | None, analysed: tuple) -> str:
    from eval.decide.recommend import recommend

    out = ["<h3>Recommendation by label budget</h3>", "<table><thead><tr><th>labels you have</th><th>use</th>"
           f"<th>{esc(metric)} [95% CI]</th><th>lead</th><th>closest runner-up (paired diff [95% CI, unadjusted], "
           "p, Holm p)</th><th>cost</th><th>what the records lack</th></tr></thead><tbody>"]
    for n in sorted({*BUDGETS, *([full] if full else [])}):
        res = recommend(records, task, n, metric, analysed=analysed)
        b = res["best"]
        label = f"{n}" + (" (the whole training pool)" if full and n == full else "")
        if not b:
            lead = res.get("leader")
            why = (f"no recommendation: the most accurate option, {esc(lead['approach'])} "
                   f"(n_train={esc(lead['n_train'])}, {lead[metric]:.3f}), is <b>not shown to beat always answering "
                   f"the majority class</b>") if lead else f"no usable run at ≤ {n} labels"
            out.append(f"<tr><td>{label}</td><td colspan=5>{why}</td><td>{_adds(res)}</td></tr>")
            continue
        ci = f" [{b['ci'][0]:.3f}, {b['ci'][1]:.3f}]" if b["ci"] else ""
        ru = next((o for o in res["runners_up"] if "diff" in o and not o["collapse"]), None)
        ru_text = (f"{esc(ru['approach'])} (n={esc(ru['n_train'])}): {ru['diff']:+.3f} "
                   f"[{ru['diff_ci'][0]:+.3f}, {ru['diff_ci'][1]:+.3f}], p={ru['p']:.4f}, "
                   f"Holm p={ru['p_holm']:.4f}") if ru else "–"
        lead = {"significant": "significant", "tied": "<b>tied within noise</b>: the cheapest of the tied",
                "only option measured": "only option measured"}.get(res["lead"], "no paired test")
        cost = f"train {lb._secs(b['train_s'])} s, eval {lb._ms(b['eval_ms_per_example'])} ms/ex"
        out.append(f"<tr><td>{label}</td><td>{esc(b['approach'])} (n_train={esc(b['n_train'])}, seeds "
                   f"{esc(b['seeds'])})</td><td>{b[metric]:.3f}{ci}</td><td>{lead}</td><td>{ru_text}</td>"
                   f"<td>{cost}</td><td>{_adds(res)}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _adds(res: dict) -> str:
    items = [f"<li>{esc(n)}</li>" for n in res["notes"]]
    items += [f"<li>{esc(a['why'])}:<br><code>{esc(a['command'])}</code></li>" for a in res["add_runs"]]
    if not items:
        return "–"
    return f"<details><summary>{len(items)} note(s)</summary><ul>{''.join(items)}</ul></details>"


def render_table(ts: TestSet) -> str:
    head = ["#", "model", "track", "method", "options", "n_train", "seeds", f"{ts.metric} [95% CI]", "± sd",
            "vs top: diff [95% CI] p, Holm p", "vs majority [95% CI]", lb.other_metric(ts)[1], "valid",
            "invalid: no label/empty/trunc/error",
            "acc. on valid", "before acc/valid", "train s", "eval ms/ex", "peak RSS MB", "device, dtype", "flag",
            "examples"]
    out = ['<table class="sortable"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for i, r in enumerate(ts.rows, 1):
        # green only for what could be recommended: the best row (shown above the majority class) and the usable
        # rows tied with it; a collapsed row is never tied
        cls = "best" if r.is_best else ("tied" if r.tied and r.usable and any(x.is_best for x in ts.rows) else "")
        cls += " flag" if r.collapse else ""
        lo, hi = r.ci if r.ci else (None, None)
        vb = r.vs_best.diff if r.vs_best else (0.0 if r.is_best else None)
        vm = r.vs_majority.diff if r.vs_majority else None
        before = (f"{lb._fmt(r.values.get('before_accuracy'))} / {lb._fmt(r.values.get('before_valid_rate'))}"
                  if r.values.get("before_accuracy") is not None else "–")
        buttons = " ".join(f'<button data-run="{esc(run_key(rec))}">s{esc(rec.get("seed", 0))}</button>'
                           for rec in r.records if load_examples(rec))
        cells = [(i, i), (r.approach[1], None), (r.track, None), (r.approach[2], None),
                 (", ".join(f"{k}={v}" for k, v in sorted(r.shown_options.items())), None),
                 (lb.n_train_text(r), r.n_labels if not np.isnan(r.n_labels) else -1),
                 (",".join(map(str, r.seeds)), len(r.seeds)),
                 (f"{r.value(ts.metric):.3f} [{lb._fmt(lo)}, {lb._fmt(hi)}]", r.value(ts.metric)),
                 (lb._fmt(r.sd), r.sd if r.sd is not None else -1),
                 (lb.vs_best_text(r, ts).replace("**", ""), vb if vb is not None else -9),
                 (lb.vs_majority_text(r), vm if vm is not None else -9),
                 (lb._fmt(r.value(lb.other_metric(ts)[0])), r.values.get(lb.other_metric(ts)[0]) or 0),
                 (lb._fmt(r.values.get("valid_rate")), r.values.get("valid_rate") or 0),
                 (lb.invalid_text(r), sum(r.invalid.values())),
                 (lb._fmt(r.values.get("accuracy_on_valid")), r.values.get("accuracy_on_valid") or -1),
                 (before, r.values.get("before_accuracy") or -1),
                 (lb._secs(r.cost.get("train_s")), r.cost.get("train_s") if r.cost.get("train_s") is not None
                  else -1),
                 (lb._ms(r.cost.get("eval_ms_per_example")), r.cost.get("eval_ms_per_example") or -1),
                 (lb._ms(r.cost.get("peak_rss_mb")), r.cost.get("peak_rss_mb") or -1),
                 (lb.device_text(r), None), (lb.flag_text(r), None)]
        tds = "".join(f'<td data-v="{esc(v)}">{esc(t)}</td>' if v is not None else f"<td>{esc(t)}</td>"
                      for t, v in cells)
        out.append(f'<tr class="{cls.strip()}">{tds}<td>{buttons or "–"}</td></tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def _wrong_everywhere(ts: TestSet, best: dict[tuple, Row]) -> list[int]:
    """Items every approach's best row got wrong on every seed."""
    rows = [r for r in best.values() if r.preds is not None]
    if not rows or not ts.gold:
        return []
    gold = np.array([ts.labels.index(g) if g in ts.labels else -1 for g in ts.gold])
    wrong = np.ones(len(gold), dtype=bool)
    for r in rows:
        wrong &= (r.preds != gold).all(axis=0)
    return np.flatnonzero(wrong).tolist()


def _kind(track: str) -> str | None:
    from eval.tracks import known

    t = known(track)
    return t.kind if t else None


def render_error_analysis(ts: TestSet, examples: dict) -> str:
    from eval.decide.plots import best_per_approach

    best = {r.approach: r for r in best_per_approach(ts)}
    out = ["<h4>Error analysis</h4>"]
    wrong = _wrong_everywhere(ts, best)
    out.append(f"<details><summary>{len(wrong)} examples that every approach ({len(best)}, each at its best "
               "configuration, every seed) got wrong</summary>")
    out.append(_example_table(examples, wrong, []))
    out.append("</details>")
    enc = [r for r in best.values() if _kind(r.track) == "encoder" and r.preds is not None]
    llm = [r for r in best.values() if _kind(r.track) == "llm" and r.preds is not None]
    if enc and llm:
        e = max(enc, key=lambda r: r.value(ts.metric))
        m = max(llm, key=lambda r: r.value(ts.metric))
        labels = ts.labels + [INVALID]
        idx = np.flatnonzero(e.preds[0] != m.preds[0]).tolist()
        cols = [(e.name, [labels[p] for p in e.preds[0]]), (m.name, [labels[p] for p in m.preds[0]])]
        out.append(f"<details><summary>{len(idx)} examples where the best encoder ({esc(e.name)}) and the best LLM "
                   f"({esc(m.name)}) disagree (seed {e.seeds[0]} / {m.seeds[0]})</summary>")
        out.append(_example_table(examples, idx, cols))
        out.append("</details>")
    else:
        out.append('<p class="muted">Encoder-vs-LLM disagreements need an encoder run and an LLM run (SFT or '
                   "prompting) on these test items.</p>")
    return "\n".join(out)


def _example_table(examples: dict, idx: list[int], cols: list[tuple[str, list[str]]]) -> str:
    if not idx:
        return '<p class="muted">none</p>'
    head = "<tr><th>id</th><th>text</th><th>gold</th>" + "".join(f"<th>{esc(n)}</th>" for n, _ in cols) + "</tr>"
    body = "".join(f"<tr><td>{esc(examples['ids'][i])}</td><td class=text>{esc(examples['texts'][i])}</td>"
                   f"<td>{esc(examples['gold'][i])}</td>" + "".join(f"<td>{esc(p[i])}</td>" for _, p in cols)
                   + "</tr>" for i in idx[:300])
    more = f'<p class="muted">{len(idx) - 300} more not shown</p>' if len(idx) > 300 else ""
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>{more}"


def render_test_set(ts: TestSet, main: bool, data: dict) -> str:
    from eval.decide.plots import cost_plot, learning_curve

    out = [f"<h3>Test set: {ts.n_items} items <span class=muted>(hash {esc(ts.test_hash)}; "
           f"{len(ts.curves)} approaches)</span></h3>"]
    if ts.majority:
        out.append(f"<p>Majority-class baseline (always <code>{esc(ts.majority['label'])}</code>): "
                   f"<b>{ts.majority['accuracy']:.3f}</b>.</p>")
    if main or len(ts.curves) >= 2:
        imgs = [_png(lambda p: learning_curve(ts, p)), _png(lambda p: cost_plot(ts, p))]
        out.append('<div class="plots">' + "".join(f'<img alt="plot" src="{src}">' for src in imgs if src)
                   + "</div>")
    if ts.family:
        out.append(f"<p class=muted>Every CI and p-value: one paired bootstrap ({ts.n_boot:,} replicates of the "
                   f"items and seeds), so a CI excludes 0 exactly when p &lt; 0.05; CIs unadjusted. {esc(ts.family)}."
                   "</p>")
    if ts.break_even:
        out.append("<p><b>Break-even</b> (where a training-based approach overtakes everything that needs no more "
                   "labels, as intervals between measured sizes; 95% CI over items and seeds):</p><ul>"
                   + "".join(f"<li>{esc(a[0])}: {esc(a[1])} {esc(a[2])}: {esc(be.describe())}"
                             + (f"; vs prompting alone: {esc(ts.break_even_prompting[a].describe())}"
                                if a in ts.break_even_prompting else "") + "</li>"
                             for a, be in ts.break_even.items()) + "</ul>")
    out.append('<p class="muted">Click a column header to sort; the s0/s1 buttons open a run\'s examples. Green: the '
               "best row (shown to beat the majority class) and the usable rows tied with it (Holm-corrected p ≥ "
               "0.05); collapsed rows are never tied.</p>")
    if note := spread_text([r.records for r in ts.rows]):
        out.append(f'<p class="flag">{esc(note)}</p>')
    out.append(render_table(ts))
    examples, runs = collect_examples(ts)
    data["examples"][ts.test_hash] = examples
    data["runs"].update(runs)
    out.append(render_error_analysis(ts, examples))
    return "\n".join(out)


def build(results_dir: str | Path, metric: str = "accuracy", out: str | Path | None = None) -> tuple[Path, list]:
    results_dir = Path(results_dir)
    records, problems = load_records(results_dir)
    sets, skipped = analyse(records, metric=metric)
    problems += skipped
    data: dict = {"examples": {}, "runs": {}}
    nav = " ".join(f'<a href="#task-{esc(t)}">{esc(t)}</a>' for t in sets)
    body = []
    for task, task_sets in sets.items():
        fulls = [r.n_labels for ts in task_sets for r in ts.rows if r.n_train == "full" and not np.isnan(r.n_labels)]
        full = int(max(fulls)) if fulls else None  # a budget row for the whole pool only where it was measured
        body.append(f'<section class="task" id="task-{esc(task)}"><h2>{esc(task)}</h2>')
        body.append(render_recommendations(task, records, metric, full, (sets, skipped)))
        for j, ts in enumerate(task_sets):
            body.append(render_test_set(ts, j == 0, data))
        body.append("</section>")
    if not records:
        body.append("<p>No run records yet: run a track (e.g. <code>python baseline/train.py --task drugs</code>)."
                    "</p>")
    if problems:
        body.append("<h2>Skipped files</h2><ul>" + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul>")
    drill = ('<div id="drill" role="dialog"><div class="head"><h3 id="drill-title"></h3>'
             '<label><input type="checkbox" id="drill-errors"> errors only</label>'
             '<label>status <select id="drill-status"><option value="">any</option>'
             + "".join(f'<option value="{s}">{s}</option>' for s in ("valid", "no_label", "empty", "truncated",
                                                                     "error"))
             + '</select></label><span id="drill-count" class="muted"></span><button id="drill-close">close ✕'
             '</button></div><div class="body"><table><thead><tr><th>id</th><th>text</th><th>gold</th>'
             '<th>raw model output</th><th>parsed</th><th>status</th></tr></thead><tbody id="drill-rows">'
             "</tbody></table></div></div>")
    payload = json.dumps(data, ensure_ascii=False, sort_keys=True).replace("</", "<\\/")
    page = ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>tune-or-prompt report</title>"
            '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
            f"<style>{CSS}</style></head><body><header><h1>tune-or-prompt: which approach at my label budget?"
            f"</h1><p>{len(records)} run records from {esc(results_dir)}; every number derived from them "
            "(python eval/report.py). Accuracy counts invalid answers as wrong; CIs are 95% paired bootstrap over "
            f"test items and seeds.</p></header><nav>{nav}</nav><main>{''.join(body)}</main>{drill}"
            f'<script type="application/json" id="report-data">{payload}</script><script>{JS}</script>'
            "</body></html>\n")
    path = Path(out) if out else results_dir / "report.html"
    atomic_write(path, page)
    return path, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--metric", default="accuracy", choices=["accuracy", "macro_f1"])
    ap.add_argument("--out", help="output file (default: RESULTS_DIR/report.html)")
    args = ap.parse_args(argv)
    from eval.run.record import reader_problem

    if problem := reader_problem(args.results_dir):  # a typo is not an empty page (eval/run/record.py)
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        path, problems = build(args.results_dir, args.metric, args.out)
    except OSError as exc:
        print(f"error: cannot write the report: {exc}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
