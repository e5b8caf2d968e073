"""docs/results.md from the experiment records: the scale, a table per target (mean ± std over seeds), the
data-efficiency plot, the per-layer domain-contribution plot of a trained X-Cross, and the commands."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from research.experiments import DEFAULT_REFINE, ExperimentConfig
from modeling_xcross.pipeline.metrics import METRIC_KEYS
from modeling_xcross.pipeline.references import BEST_REFERENCE

HONEST_READING = "<!-- honest-reading: written by hand; report.py keeps this section as it is -->"
FULL_RANKING_KEYS = ("recall@10", "ndcg@10", "mrr")
MARGIN = 0.03  # issue 27's bar: trained models at least this much test MRR above the best reference
TABLE_ORDER = ("xcross", "lora", "zero-shot", "head", "merged-sources", "xlora", BEST_REFERENCE,
               "similarity-popularity", "similarity", "popularity", "random")


def load_records(records_dir: str | Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(Path(records_dir).glob("*.json"))]


def refine_of(record: dict) -> dict[str, float]:
    """An X-Cross record's beta and gamma (records from before they were configurable ran with the defaults)."""
    return record.get("refine") or dict(DEFAULT_REFINE)


def row_label(record: dict) -> str:
    sources = "+".join(record["sources"])
    refine = refine_of(record)
    return {"xcross": f"X-Cross ({sources}; β={refine['beta']:g}, γ={refine['gamma']:g})",
            "lora": f"LoRA on {record['target']} (E1)",
            "zero-shot": f"{sources} LoRA, zero-shot", "head": "Head only (frozen base)",
            "merged-sources": f"Merged {sources} adapters (cat, mean delta) + head",
            "xlora": f"PEFT X-LoRA ({sources})",
            BEST_REFERENCE: "Best reference, chosen on validation users (E5)",
            "similarity": "Untrained backbone similarity (E5)", "popularity": "Popularity (E5)",
            "similarity-popularity": "Untrained similarity + popularity prior (E5)",
            "random": "Random order (E5)"}[record["model"]]


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def _full_data_rows(records: list[dict], target: str) -> tuple[dict[str, list[dict]], list[str]]:
    """The full-data records on `target` by row label, and the labels in table order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if record["target"] == target and record["fraction"] == 1.0:
            groups[row_label(record)].append(record)
    return groups, sorted(groups, key=lambda label: (TABLE_ORDER.index(groups[label][0]["model"]), label))


def target_table(records: list[dict], target: str) -> str:
    """Markdown table of the full-data runs on `target`, one row per model, mean ± std over seeds."""
    groups, order = _full_data_rows(records, target)
    lines = ["| Model | Seeds | " + " | ".join(METRIC_KEYS) + " | Trainable parameters |",
             "|---|---|" + "---|" * len(METRIC_KEYS) + "---|"]
    notes = []
    for label in order:
        done = [record for record in groups[label] if record["status"] == "done"]
        if not done:
            notes.append(f"- {label}: not applicable. {groups[label][0].get('not_applicable', '')}")
            lines.append(f"| {label} | – |" + " n/a |" * len(METRIC_KEYS) + " n/a |")
            continue
        cells = [_mean_std([record["metrics"][key] for record in done]) for key in METRIC_KEYS]
        parameters = sorted({record["trainable_parameters"] for record in done})
        lines.append(f"| {label} | {len(done)} | " + " | ".join(cells) + f" | {', '.join(f'{p:,}' for p in parameters)} |")
        chosen = [f"seed {record['seed']}: {record['reference']}" for record in sorted(done, key=lambda r: r["seed"])
                  if "reference" in record]
        if chosen:  # the best reference may differ per seed
            notes.append(f"- {label}: " + "; ".join(chosen) + ".")
    return "\n".join(lines + ([""] + notes if notes else []))


def full_ranking_table(records: list[dict], target: str) -> str | None:
    """Markdown table of the full-data runs on `target` that ranked the whole catalogue (None when none did), and
    whether MRR orders those models as the sampled MRR does."""
    groups, order = _full_data_rows(records, target)
    ranked = {label: [record for record in groups[label] if "full_ranking" in record] for label in order}
    ranked = {label: done for label, done in ranked.items() if done}
    if not ranked:
        return None
    lines = ["| Model | Seeds | Users | " + " | ".join(FULL_RANKING_KEYS) + " |",
             "|---|---|---|" + "---|" * len(FULL_RANKING_KEYS)]
    for label, done in ranked.items():
        cells = [_mean_std([record["full_ranking"][key] for record in done]) for key in FULL_RANKING_KEYS]
        lines.append(f"| {label} | {len(done)} | {done[0]['full_ranking']['users']} | " + " | ".join(cells) + " |")

    def by_mrr(mrr_of) -> list[str]:
        return sorted(ranked, key=lambda label: -statistics.mean(mrr_of(record) for record in ranked[label]))

    sampled = by_mrr(lambda record: record["metrics"]["mrr"])
    full = by_mrr(lambda record: record["full_ranking"]["mrr"])
    verdict = ("Full-ranking MRR orders these models as the sampled MRR does." if sampled == full else
               "Full-ranking MRR orders these models differently from the sampled MRR: sampled "
               + " > ".join(sampled) + "; full ranking " + " > ".join(full) + ".")
    return "\n".join(lines + ["", verdict])


def _seed_mrrs(records: list[dict], target: str, model: str, fraction: float = 1.0,
               refine: dict[str, float] | None = None) -> dict[int, float]:
    """Test MRR by seed of one model on `target` (X-Cross: of one refine setting)."""
    return {record["seed"]: record["metrics"]["mrr"] for record in records
            if record["target"] == target and record["model"] == model and record["fraction"] == fraction
            and record["status"] == "done" and (refine is None or refine_of(record) == refine)}


def bars_table(records: list[dict], targets: list[str], refine: dict[str, float], fraction: float = 0.25,
               margin: float = MARGIN) -> str | None:
    """Issues 12's and 27's bars per target, on means over seeds of test MRR: X-Cross and target LoRA (on all the
    train users) >= the reference + `margin`; X-Cross >= target LoRA; X-Cross on `fraction` of the target's train
    users >= target LoRA on all and on `fraction`. The reference is the best reference where it ran (it counts all
    train users), else the better simple reference (popularity, untrained similarity) on the seeds both ran. Seeds
    are paired, so that a grid still running compares like with like: a row reads the seeds where X-Cross, target
    LoRA and the reference all ran, a gap is the mean difference over the seeds both its models ran, and a mean over
    fewer seeds says how many. None when no target has X-Cross, LoRA and its reference on a common seed."""
    def verdict(gap: float | None, bar: float) -> str:
        return "–" if gap is None else f"{gap:+.4f} {'yes' if gap >= bar - 1e-9 else '**no**'}"  # float sums

    lines = [f"| Target | Seeds | X-Cross | best reference | X-Cross − reference (≥ +{margin:g}?) | target LoRA | "
             f"X-Cross − LoRA (≥ 0?) | X-Cross on {fraction:.0%} | that − LoRA on 100% (≥ 0?) | "
             f"LoRA − reference (≥ +{margin:g}?) | LoRA on {fraction:.0%} | "
             f"X-Cross − LoRA, both on {fraction:.0%} (≥ 0?) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for target in targets:
        runs = {"xcross": _seed_mrrs(records, target, "xcross", refine=refine),
                "small": _seed_mrrs(records, target, "xcross", fraction, refine),
                "small lora": _seed_mrrs(records, target, "lora", fraction),
                **{name: _seed_mrrs(records, target, name)
                   for name in ("lora", BEST_REFERENCE, "popularity", "similarity")}}
        trained = runs["xcross"].keys() & runs["lora"].keys()
        candidates = (BEST_REFERENCE,) if runs[BEST_REFERENCE] else ("popularity", "similarity")
        references = [name for name in candidates if trained & runs[name].keys()]
        if not references:
            continue
        shared = trained.intersection(*(runs[name].keys() for name in references))
        if shared:  # compared on the same lists
            best = max(references, key=lambda name: statistics.mean(runs[name][seed] for seed in shared))
        else:  # the simple references ran on different seeds: keep the one with more seeds in common
            best = max(references, key=lambda name: len(trained & runs[name].keys()))
        seeds = trained & runs[best].keys()
        runs = {name: {seed: mrr for seed, mrr in by_seed.items() if seed in seeds} for name, by_seed in runs.items()}

        def mean(name: str) -> str:
            by_seed = runs[name]
            if not by_seed:
                return "–"
            fewer = f" ({len(by_seed)} seed{'s' if len(by_seed) > 1 else ''})" if len(by_seed) < len(seeds) else ""
            return f"{statistics.mean(by_seed.values()):.4f}{fewer}"

        def gap(model: str, other: str) -> float | None:
            paired = runs[model].keys() & runs[other].keys()
            return statistics.mean(runs[model][seed] - runs[other][seed] for seed in paired) if paired else None

        lines.append(f"| {target} | {len(seeds)} | {mean('xcross')} | {best} {mean(best)} | "
                     f"{verdict(gap('xcross', best), margin)} | {mean('lora')} | "
                     f"{verdict(gap('xcross', 'lora'), 0)} | {mean('small')} | "
                     f"{verdict(gap('small', 'lora'), 0)} | {verdict(gap('lora', best), margin)} | "
                     f"{mean('small lora')} | {verdict(gap('small', 'small lora'), 0)} |")
    return "\n".join(lines) if len(lines) > 2 else None


def training_gain_table(records: list[dict], target: str) -> str | None:
    """Validation MRR of each trained model on `target` before its first step and at its best checkpoint (means over
    seeds), test MRR of the untrained start beside the returned model's where the runs scored it, and how many runs
    returned their untrained start (no checkpoint beat it); None when no record has it."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if record["target"] == target and record.get("starting_validation_mrr") is not None:
            percent = "" if record["fraction"] == 1.0 else f", {record['fraction']:.0%} of the train users"
            groups[row_label(record) + percent].append(record)
    if not groups:
        return None
    lines = ["| Model | Seeds | validation MRR untrained | best trained checkpoint | gain | test MRR untrained | "
             "test MRR returned | runs that kept the start |", "|---|---|---|---|---|---|---|---|"]
    for label in sorted(groups, key=lambda label: (TABLE_ORDER.index(groups[label][0]["model"]), label)):
        done = groups[label]
        start = statistics.mean(record["starting_validation_mrr"] for record in done)
        best = statistics.mean(record["best_validation_mrr"] for record in done)
        kept = sum(bool(record.get("kept_starting_point")) for record in done)
        if all(record.get("starting_test_mrr") is not None for record in done):  # runs from before it: "–"
            test = (f"{statistics.mean(record['starting_test_mrr'] for record in done):.4f} | "
                    f"{statistics.mean(record['metrics']['mrr'] for record in done):.4f}")
        else:
            test = "– | –"
        lines.append(f"| {label} | {len(done)} | {start:.4f} | {best:.4f} | {best - start:+.4f} | {test} | {kept} of "
                     f"{len(done)} |")
    return "\n".join(lines)


def data_efficiency(records: list[dict], target: str, starts: bool = False,
                    relative: bool = False) -> dict[str, dict[float, list[float]]]:
    """{row label: {fraction: [MRR per seed]}} of every X-Cross setting, target LoRA and popularity on `target`;
    with `starts`, the test MRR of the trained models' untrained starts instead (runs that scored it). With
    `relative`, each MRR less the best reference's on the same seed's lists (seeds without it are left out): the test
    lists differ per seed, and so does every model's level, so only paired gaps compare fractions run on different
    seeds."""
    reference = _seed_mrrs(records, target, BEST_REFERENCE) if relative else {}
    curves: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if (record["target"] == target and record["model"] in ("xcross", "lora", "popularity")
                and record["status"] == "done" and (not relative or record["seed"] in reference)):
            mrr = record.get("starting_test_mrr") if starts else record["metrics"]["mrr"]
            if mrr is not None:
                curves[row_label(record)][record["fraction"]].append(mrr - reference.get(record["seed"], 0.0))
    return curves


def curve_points(curve: dict[float, list[float]]) -> list[tuple[float, float, float, int]]:
    """(fraction, mean, sample std, seeds) per fraction, in fraction order; the std is 0 for a single seed (a grid
    may run some fractions with fewer seeds)."""
    return [(fraction, statistics.mean(mrrs), statistics.stdev(mrrs) if len(mrrs) > 1 else 0.0, len(mrrs))
            for fraction, mrrs in sorted(curve.items())]


def draw_data_efficiency(axes, records: list[dict], target: str, relative: bool = False) -> bool:
    """Draw MRR against the % of target train users on `axes`: a line through the means over seeds per model, bars of
    the seed spread where several seeds ran, and the best reference (mean over seeds at 100%) as a horizontal line
    with its spread as a band. With `relative`, the gaps over the same seed's best reference instead, with the
    reference at 0 and the +`MARGIN` bar. False when there is no curve to draw."""
    curves = data_efficiency(records, target, relative=relative)
    if not curves:
        return False
    starts = data_efficiency(records, target, starts=True, relative=relative)
    for label in sorted(curves):
        fractions, means, stds, seeds = zip(*curve_points(curves[label]))
        x = [100 * fraction for fraction in fractions]
        (line,) = axes.plot(x, means, marker="o", label=label)
        spread = [index for index, count in enumerate(seeds) if count > 1]
        if spread:
            axes.errorbar([x[i] for i in spread], [means[i] for i in spread], yerr=[stds[i] for i in spread],
                          fmt="none", ecolor=line.get_color(), capsize=3)
        if label in starts:
            start_fractions, start_means, _, _ = zip(*curve_points(starts[label]))
            axes.plot([100 * fraction for fraction in start_fractions], start_means, marker="o", linestyle=":",
                      markerfacecolor="none", color=line.get_color(), label=f"{label}, untrained start")
    if relative:
        axes.axhline(0.0, color="black", linestyle="--", label="best reference (same seed)")
        axes.axhline(MARGIN, color="grey", linestyle="-.", label=f"the bar: best reference + {MARGIN:g}")
    elif reference := list(_seed_mrrs(records, target, BEST_REFERENCE).values()):
        level = statistics.mean(reference)
        seeds_run = f"{len(reference)} seed{'s' if len(reference) > 1 else ''}"
        axes.axhline(level, color="black", linestyle="--", label=f"best reference ({seeds_run})")
        if len(reference) > 1:
            std = statistics.stdev(reference)
            axes.axhspan(level - std, level + std, color="black", alpha=0.1)
    ticks = sorted({fraction for curve in curves.values() for fraction in curve})
    axes.set_xticks([100 * fraction for fraction in ticks], [f"{fraction:.0%}" for fraction in ticks])
    axes.set(xlabel=f"% of {target} train users",
             ylabel="test MRR − best reference, same seed" if relative else "test MRR",
             title=f"Over the best reference on {target}" if relative else f"Data efficiency on {target}")
    return True


def plot_data_efficiency(records: list[dict], target: str, path: Path) -> bool:
    """`draw_data_efficiency` into a PNG at `path`, the MRR on the left and, where the best reference ran, the gaps
    over it on the right; False (and no file) when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    relative = bool(data_efficiency(records, target, relative=True))
    figure, panels = plt.subplots(1, 2 if relative else 1, figsize=(13 if relative else 7, 4.5), squeeze=False)
    drawn = draw_data_efficiency(panels[0][0], records, target)
    if drawn:
        if relative:
            draw_data_efficiency(panels[0][1], records, target, relative=True)
        legend = {label: handle for axes in panels[0] for handle, label in zip(*axes.get_legend_handles_labels())}
        figure.legend(legend.values(), legend.keys(), fontsize="small", loc="upper center",
                      bbox_to_anchor=(0.5, 0.0), ncol=3)
        figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return drawn


def plot_fusion(stats: dict, target: str, path: Path) -> None:
    """Heatmaps (layer x domain pair) of the mean |z| cross-domain scale and interaction weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(8, 0.6 * len(stats["scale"]) + 2))
    for axis, kind, title in zip(axes, ("scale", "interaction"), ("cross-domain scale", "interaction weight")):
        image = axis.imshow(stats[kind], aspect="auto", cmap="viridis")
        axis.set(title=f"mean |{title}|", xlabel="domain -> other domain", ylabel="layer")
        axis.set_xticks(range(len(stats["pairs"])), stats["pairs"], rotation=30, ha="right")
        axis.set_yticks(range(len(stats[kind])))
        figure.colorbar(image, ax=axis)
    figure.suptitle(f"X-Cross on {target}: domain contributions per layer ({stats['num_users']} test users)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _kept_reading(output: Path) -> str:
    """The hand-written honest reading of an earlier results.md, or the placeholder."""
    if output.is_file() and HONEST_READING in output.read_text():
        return output.read_text().split(HONEST_READING, 1)[1].strip()
    return "_To be written: what the numbers do and do not support, against the paper's three claims._"


def build_report(config: ExperimentConfig, config_path: str, records: list[dict], output: Path,
                 fusion: dict[str, dict]) -> str:
    """Write `output` (results.md) and its plots next to it under results/; returns the markdown."""
    figures = output.parent / "results"
    figures.mkdir(parents=True, exist_ok=True)
    scale = {**config.scale, "learning_rates": config.learning_rates, "seeds": config.seeds,
             "fractions": config.fractions,
             **({"fraction_seeds": config.fraction_seeds} if config.fraction_seeds else {}),
             **({"sources_seed": config.sources_seed} if config.sources_seed is not None else {})}
    report_command = f"python -m research.report --config {config_path}" + (
        "" if Path(output) == Path("docs/results.md") else f" --output {output}")
    parts = ["# X-Cross on the Amazon domains: results", "",
             f"Built by `{report_command}` from {len(records)} records in "
             f"`{config.records_dir}`. Test metrics on the same stored candidate lists (1 true item + 29 negatives) "
             "for every model of a seed; mean ± sample std over seeds.", "", "## Scale", "",
             "| Setting | Value |", "|---|---|", *[f"| {key} | {value} |" for key, value in scale.items()], ""]
    bars = bars_table(records, list(config.targets), config.xcross_refine[0])
    if bars:
        parts += ["## The bars", "", "Means over seeds of test MRR, seeds paired (a row reads the seeds where X-Cross, "
                  "target LoRA and the reference all ran; a mean over fewer says so); the reference is the best "
                  "reference (E5 best-reference: chosen on validation users, counting all train users) where it ran, "
                  "else the better of the two simple references (popularity, untrained similarity) per target.",
                  "", bars, ""]
    for target, sources in config.targets.items():
        parts += [f"## Target {target} (sources {', '.join(sources)})", "", target_table(records, target), ""]
        gains = training_gain_table(records, target)
        if gains:
            parts += ["What training added, on validation users (every run validates its untrained model first "
                      "and returns it when no checkpoint beats it):", "", gains, ""]
        ranking = full_ranking_table(records, target)
        if ranking:
            parts += [f"Full ranking: each test user's true next item among all {target} items outside the history "
                      "(ties against it; cross scoring re-ranks the untrained similarity's top `--rerank-top`).", "", ranking,
                      ""]
        if plot_data_efficiency(records, target, figures / f"data_efficiency_{target}.png"):
            parts += [f"![data efficiency on {target}](results/data_efficiency_{target}.png)", "",
                      "Left: means over the seeds run at each fraction; bars: sample std where several seeds ran; "
                      "dotted, hollow: the same runs' untrained start, where they scored it; dashed: the best "
                      "reference, where it ran. Right: each run's MRR less the best reference's on the same seed's "
                      "test lists, averaged per fraction, so that fractions run on fewer seeds read on the same "
                      f"footing; dash-dotted: the bar, +{MARGIN:g}.", ""]
        if target in fusion:
            plot_fusion(fusion[target], target, figures / f"fusion_{target}.png")
            parts += [f"![domain contributions per layer, {target}](results/fusion_{target}.png)", "",
                      f"Mean |z| over the {fusion[target]['num_tokens']} non-padding tokens of the prompts of "
                      f"{fusion[target]['num_users']} test users ({fusion[target]['model_dir']}); the refine step "
                      f"adds β or γ times z. Numbers in `results/fusion_{target}.json`.", ""]
    commands = sorted({record["command"] for record in records if record.get("command")})
    parts += ["## Commands", "", "```bash", f"python -m research.run_experiments --config {config_path}",
              report_command, "```", "", "<details><summary>Every xcross "
              "command run</summary>", "", "```bash", *commands, "```", "", "</details>", "",
              "## Honest reading", "", HONEST_READING, "", _kept_reading(output), ""]
    text = "\n".join(parts)
    output.write_text(text)
    return text
