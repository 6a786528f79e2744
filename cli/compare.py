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
                "cka": pair.get("cka", 1.0),
                "kappa": pair.get("kappa", 1.0),
                "agreement": pair.get("agreement", 1.0),
                "geom_dist": pair.get("geometric_distance", 0.0),
                "robust": len(cmp.samples["robust_for"].get(model, [])),
                "fragile_pruning": len(cmp.samples["fragile_to_pruning"].get(model, [])),
                "fragile_corr_per_unit": mean_or_nan(per_unit),
            }
        )
    return rows


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
    distance: Annotated[Distance, typer.Option(help="Distance for the model map.")] = Distance.geometry,
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

    Models: linear CKA, error consistency (kappa), agreement, geometric distance; a 2-D map (classical MDS) and
    its minimum spanning tree. With three models or more: how each model's clean geometry (median margin,
    mean length, mean angle to the true class) ranks its relative drop under corruption.
    """
    with user_errors():
        from onnx_geom.cli._records import records_table
        from onnx_geom.comparison import compare_study
        from onnx_geom.store import Study, left_out, left_out_sentences

        if parquet and output is None:
            raise fail("--parquet writes the tables into a folder; add -o DIR.")
        if output is not None:  # before the work: not the study nor inside it, not a file
            from onnx_geom._files import check_output

            check_output(output, kind="folder", inputs=(study,))
        opened = Study.open(study, mode="a" if os.access(study, os.W_OK) else "r")
        missing = left_out(opened)  # before: geometry computed meanwhile is in the comparison, not in this list
        cmp = compare_study(opened, reference=reference, distance=distance.value, threshold=threshold)
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
        out.print(
            records_table(
                f"against the reference {cmp.reference}",
                _vs_reference(cmp),
                (
                    "model",
                    "cka",
                    "kappa",
                    "agreement",
                    "geom_dist",
                    "robust",
                    "fragile_pruning",
                    "fragile_corr_per_unit",
                ),
            )
        )
        groups = [{**g, "members": ", ".join(g["members"])} for g in cmp.groups]
        out.print(records_table("corruptions that behave alike", groups, ("group", "name", "members")))
        mst = [{"model_a": cmp.models[i], "model_b": cmp.models[j], cmp.distance_name: w} for i, j, w in cmp.mst]
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
