"""``onnx-geom compare STUDY``: accuracy, model similarity, corruption redundancy and fragile samples."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from onnx_geom.cli._console import err, fail, out, print_json, user_errors, warn
from onnx_geom.cli._options import Distance, JsonOption
from onnx_geom.errors import StudyLockedError


def _vs_reference(cmp) -> list[dict[str, Any]]:
    """Each model against the reference: the pair metrics, its robust samples (right in every unit), its
    fragile-to-pruning count and mean fragile-to-corruption count per unit."""
    from onnx_geom.robustness import mean_or_nan

    counts: dict[str, list[int]] = {}
    for r in cmp.samples["counts"]:
        if r["kind"] == "fragile_to_corruption":
            counts.setdefault(r["model"], []).append(r["count"])
    rows = []
    for model in cmp.models:
        pair: dict[str, Any] = next(
            (p for p in cmp.pairs if {p["model_a"], p["model_b"]} == {model, cmp.reference}), {}
        )
        per_unit = counts.get(model, [])
        rows.append(
            {
                "model": model,
                "cka_clean": pair.get("cka_clean", 1.0),
                "cka_debiased_clean": pair.get("cka_debiased_clean", 1.0),
                "kappa_all": pair.get("kappa_all", 1.0),
                "agreement_all": pair.get("agreement_all", 1.0),
                "geom_dist_all": pair.get("geometric_distance_all", 0.0),
                "robust": len(cmp.samples["robust_for"].get(model, [])),
                "fragile_pruning": len(cmp.samples["fragile_to_pruning"].get(model, [])),
                "fragile_corr_per_unit": mean_or_nan(per_unit),
            }
        )
    return rows


def _averages_line(cmp) -> str:
    """What each average over corruptions was taken over, in one line."""
    av = cmp.averages
    parts = [f"mean corruption accuracy over {len(av['mean_corruption_accuracy']['used'])} corruptions"]
    if "mce" in av:
        minimum = 100 * cmp.parameters["min_reference_drop"]
        parts += [
            f"mCE over {len(av['mce']['used'])} of the 15 benchmark corruptions (reference: {cmp.mce_reference})",
            f"extra mCE over {len(av['mce_extra']['used'])}",
            f"relative mCE over {len(av['relative_mce']['used'])} (the reference must lose at least {minimum:g} "
            f"percentage point{'' if minimum == 1 else 's'})",
        ]
    undefined = [f"{name} undefined: {entry['undefined']}" for name, entry in av.items() if entry["undefined"]]
    return "averages: " + "; ".join(parts + undefined)


def _map_line(cmp) -> str:
    """How much of the distances the model map keeps."""
    q = cmp.embedding_quality
    if not q or len(cmp.models) < 3:  # two points or fewer: the map is exact
        return ""
    line = (
        f"model map ({cmp.distance_name} distance, classical MDS): keeps {100 * q['kept']:.0f}% of the distances "
        f"(positive eigenvalue mass in 2 axes); pairwise distances off by {100 * q['median_relative_error']:.0f}% "
        f"(median), {100 * q['max_relative_error']:.0f}% (largest)"
    )
    return line + ("; read neighbours from the spanning tree" if q["read_tree"] else "")


def compare(
    study: Annotated[Path, typer.Argument(help="The study folder, with its geometry (`onnx-geom metrics`).")],
    reference: Annotated[
        str | None,
        typer.Option("--reference", "-r", help="The reference model (default: the one tagged dense, else the first)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write every table (CSV) and comparison.json into this folder."),
    ] = None,
    parquet: Annotated[
        bool, typer.Option("--parquet", help="With -o: write the tables as Parquet instead of CSV (needs pyarrow).")
    ] = False,
    distance: Annotated[
        Distance,
        typer.Option(
            help="Distance for the model map: geometry (scale-free, every condition), geometry_raw, "
            "cka (1 - CKA of the clean features), kappa or agreement (1 - value, every condition)."
        ),
    ] = Distance.geometry,
    reference_errors: Annotated[
        Path | None,
        typer.Option(
            "--reference-errors",
            dir_okay=False,
            help="mCE relative to published errors instead of the reference model: a CSV with the columns "
            "corruption,severity,error (a fraction in [0, 1]; or error_percent in percent), a row clean,0 for "
            "relative mCE.",
        ),
    ] = None,
    min_reference_drop: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Relative mCE leaves out a corruption whose reference loses less than this error fraction "
            "(mean over severities; 0.01 = 1 percentage point).",
        ),
    ] = 0.01,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=2.0,
            help="Cut of the corruption clustering, in 1 - correlation: lower makes smaller, tighter groups.",
        ),
    ] = 0.5,
    as_json: JsonOption = False,
) -> None:
    """Compare models, group the corruptions that behave alike, find robust and fragile samples; the comparison
    is stored in the study (when it is writable) for `onnx-geom view`.

    Accuracy, mean corruption accuracy, mCE over the 15 benchmark corruptions (the held-out extras apart) and
    relative mCE, each naming the corruptions it left out and why (a condition whose outputs equal the clean
    ones has no effect and is left out of everything). Models: linear and debiased CKA, error consistency
    (kappa), agreement, scale-free geometric distance, on clean data and on every condition; a 2-D map
    (classical MDS, with how much of the distances it keeps) and its minimum spanning tree. Corruptions are
    alike when they flip and move the same samples the same way in the same models. With three models or
    more: how each model's clean geometry ranks its relative drop under corruption.
    """
    with user_errors():
        from onnx_geom.cli._records import records_table
        from onnx_geom.comparison import compare_study
        from onnx_geom.mce import exclusion_line, read_reference_errors
        from onnx_geom.store import Study, left_out, left_out_sentences

        if parquet and output is None:
            raise fail("--parquet writes the tables into a folder; add -o DIR.")
        if output is not None:  # before the work: not the study nor inside it, not a file
            from onnx_geom._files import check_output

            check_output(output, kind="folder", inputs=(study,))
        errors = read_reference_errors(reference_errors) if reference_errors is not None else None
        opened = Study.open(study, mode="a" if os.access(study, os.W_OK) else "r")
        missing = left_out(opened)  # before: geometry computed meanwhile is in the comparison, not in this list
        cmp = compare_study(opened, reference=reference, distance=distance.value, threshold=threshold,
                            reference_errors=errors, min_reference_drop=min_reference_drop)  # fmt: skip
        for sentence in left_out_sentences(missing):
            warn(sentence)
        if opened.mode == "a":  # stored for `onnx-geom view`; a read-only study just computes
            try:
                opened.write_comparison(cmp)
            except StudyLockedError as error:  # another process stores one now: the tables below are still made
                warn(f"the comparison was not stored in the study: {error}")
        if output is not None:
            paths = cmp.write(output, parquet=parquet)  # an OSError is a one-sentence OutputError
            err.print(f"wrote {len(paths)} files to {output}")
        if as_json:
            print_json({**cmp.to_json(), "left_out": missing})
            return
        out.print(records_table("robustness", cmp.summary, list(cmp.summary[0])))
        for line in (_averages_line(cmp), exclusion_line(cmp.averages)):
            if line:
                out.print(line, highlight=False, soft_wrap=True)
        out.print(
            records_table(
                f"against the reference {cmp.reference}",
                _vs_reference(cmp),
                (
                    "model",
                    "cka_clean",
                    "cka_debiased_clean",
                    "kappa_all",
                    "agreement_all",
                    "geom_dist_all",
                    "robust",
                    "fragile_pruning",
                    "fragile_corr_per_unit",
                ),
            )
        )
        out.print(
            "_clean: clean data only; _all: clean and every corrupted condition the models share that has an effect",
            highlight=False,
            soft_wrap=True,
        )
        if cmp.cka_note:
            out.print(f"note: {cmp.cka_note}", highlight=False, soft_wrap=True)
        groups = [{**g, "members": ", ".join(g["members"])} for g in cmp.groups]
        out.print(records_table("corruptions that behave alike", groups, ("group", "name", "members")))
        mst = [{"model_a": cmp.models[i], "model_b": cmp.models[j], cmp.distance_name: w} for i, j, w in cmp.mst]
        if line := _map_line(cmp):
            out.print(line, highlight=False, soft_wrap=True)
        if mst:
            out.print(
                records_table(f"spanning tree ({cmp.distance_name})", mst, ("model_a", "model_b", cmp.distance_name))
            )
        out.print(f"robust samples (right under every model and corruption): {len(cmp.samples['robust'])}")
        n = cmp.correlations[0]["models"] if cmp.correlations else 0
        if n >= 3:
            out.print(
                records_table(
                    f"clean geometry vs relative drop under corruption (Spearman, {n} models)",
                    cmp.correlations,
                    ("clean_geometry", "spearman", "p_value"),
                )
            )
