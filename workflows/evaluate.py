"""``facsflow evaluate``: evaluate trained runs on their held-out test subjects and write the report.

``python -m workflows.evaluate --runs RUNS... --out DIR [--tune-thresholds] [--against own|teacher] [--config YAML] [--set K=V]``

The stage's entry: its command line and ``main``. The evaluation (thresholds, the report, teacher
agreement) is ``workflows.core.evaluation``'s; its public names are re-exported here.
"""

from __future__ import annotations

import argparse

from workflows.core.evaluation import EvaluateConfig, find_runs, run_evaluation

__all__ = ["EvaluateConfig", "find_runs", "run_evaluation", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``EvaluateConfig`` (``--runs``, ``--out``, ``--tune-thresholds``, ...)."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(
        EvaluateConfig, "facsflow evaluate",
        description="Evaluate trained runs on their held-out test subjects: per-AU F1, mean F1, "
                    "accuracy, ABAW score, bootstrap CIs, trivial predictors; report.md/.html/.json.")


def _num(x: "float | None") -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.stage_cli import save_config, stage_config
    from workflows.core.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg = stage_config(args, required=("runs", "out"))
    save_config(cfg, cfg.out, "evaluate")
    with ray_session(args.address):
        res = run_evaluation(cfg, cfg.smooth_window)
    for name, m in res["results"]["models"].items():
        mf = m["summary"]["mean_f1"]
        print(f"{name}: test mean F1 {_num(mf['mean'])}" + (f" ± {mf['std']:.3f}" if mf.get("std") else "")
              + ("" if mf["mean"] is not None else " (the test rows have no labels of their own)"))
    triv = res["results"]["trivial"]
    print(f"best trivial predictor ({triv['best']}): mean F1 "
          f"{_num(triv['summary'][triv['best']]['mean_f1']['mean'])}")
    agree = res["results"].get("teacher_agreement")
    if agree:
        for name, m in agree["models"].items():
            print(f"{name} against teacher {agree['teacher']}: agreement F1 {_num(m['mean_agreement_f1'])}, "
                  f"correlation {_num(m['mean_correlation'])}")
    print(f"report: {res['paths']['md']} , {res['paths']['html']} , {res['paths']['json']}")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
