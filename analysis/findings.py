"""Which of the paper's findings hold in a set of results, stated with their numbers.

- granularity: per student, data set, teacher and format, is the best level interior (a
  non-monotonic curve), and with what bootstrap probability;
- format: per student and data set, the largest accuracy difference between reasoning formats,
  with its 95% bootstrap interval (it "matters" when the interval excludes 0);
- teacher: per student and data set with 3+ teachers, the rank correlation between a teacher's
  own accuracy (its corpus's correct rate) and the student's gain over answer-only;
- method: per student, data set and method other than sft (kd, socratic, ...), whether it beats
  sft at matched teacher, level and format (a method on a format sft lacks is matched with sft on
  cot: "Socratic vs CoT"), by the mean difference with its 95% paired bootstrap interval.
Each is per method when the results hold several.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.stats import (
    BASELINE_METHOD,
    LEVEL,
    N_BOOT,
    bootstrap_means,
    by_method,
    fewest_seeds,
    method_comparisons,
    reasoning_rows,
    student_gains,
)

MIN_LEVELS_FOR_SHAPE = 3
MIN_TEACHERS_FOR_CORRELATION = 3


@dataclass(frozen=True)
class Finding:
    kind: str  # granularity | format | teacher | method
    dataset: str
    student: str
    holds: bool
    statement: str
    n_seeds: int  # the fewest seeds behind any accuracy compared; one seed is not a finding
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def one_seed(self) -> bool:
        return self.n_seeds < 2



def granularity_findings(results: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> list[Finding]:
    rng = np.random.default_rng(seed)
    findings = []
    keys = by_method(["dataset", "teacher", "format", "student"], results)
    for (dataset, teacher, fmt, student, *_), rows in reasoning_rows(results).groupby(keys, sort=True):
        levels = sorted(rows["granularity"].unique())
        if len(levels) < MIN_LEVELS_FOR_SHAPE:
            continue
        replicates = np.stack([bootstrap_means(rows[rows["granularity"] == lv], rng, n_boot) for lv in levels], 1)
        means = np.array([rows.loc[rows["granularity"] == lv, "accuracy"].mean() for lv in levels])
        best = int(np.argmax(means))
        interior = 0 < best < len(levels) - 1
        p_interior = float(np.mean((replicates.argmax(1) > 0) & (replicates.argmax(1) < len(levels) - 1)))
        shape = "non-monotonic (best level interior)" if interior else "monotonic at its best end"
        statement = (f"{student} on {dataset} ({teacher}, {fmt}): best at level {int(levels[best])} "
                     f"({means[best]:.3f}); {shape}; bootstrap P(interior optimum) = {p_interior:.2f}")
        findings.append(Finding("granularity", dataset, student, interior, statement, fewest_seeds(rows),
                                {"best_level": float(levels[best]), "best_accuracy": float(means[best]),
                                 "p_interior": p_interior}))
    return findings


def format_findings(results: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> list[Finding]:
    rng = np.random.default_rng(seed)
    findings = []
    for (dataset, student, *_), rows in reasoning_rows(results).groupby(by_method(["dataset", "student"], results),
                                                                        sort=True):
        formats = sorted(rows["format"].unique())
        if len(formats) < 2:
            continue
        means = rows.groupby("format")["accuracy"].mean()
        best, worst = means.idxmax(), means.idxmin()
        difference = _paired_difference(rows, best, worst, rng, n_boot)
        if difference is None:  # the two formats share no (teacher, level): nothing to compare
            continue
        low, high = np.quantile(difference, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        matters = bool(low > 0)
        statement = (f"{student} on {dataset}: format {'matters' if matters else 'does not clearly matter'}; "
                     f"{best} {means[best]:.3f} vs {worst} {means[worst]:.3f}, difference "
                     f"{means[best] - means[worst]:+.3f} (95% interval {low:+.3f} to {high:+.3f})")
        findings.append(Finding("format", dataset, student, matters, statement, fewest_seeds(rows),
                                {"difference": float(means[best] - means[worst]), "low": float(low),
                                 "high": float(high)}))
    return findings


def _paired_difference(rows: pd.DataFrame, better: str, worse: str, rng: np.random.Generator,
                       n_boot: int) -> np.ndarray | None:
    """Bootstrap replicates of the accuracy difference between two formats, compared at the same
    teacher and level (so the spread between levels does not swamp the format effect)."""
    per_stratum = []
    for _, stratum in rows.groupby(["teacher", "granularity"]):
        a, b = stratum[stratum["format"] == better], stratum[stratum["format"] == worse]
        if len(a) and len(b):
            per_stratum.append(bootstrap_means(a, rng, n_boot) - bootstrap_means(b, rng, n_boot))
    return np.mean(per_stratum, axis=0) if per_stratum else None


def teacher_findings(results: pd.DataFrame) -> list[Finding]:
    if "teacher_accuracy" not in results.columns:
        return []
    findings = []
    for (dataset, student, *_), rows in student_gains(results).groupby(by_method(["dataset", "student"], results),
                                                                       sort=True):
        per_teacher = rows.groupby("teacher")[["teacher_accuracy", "gain"]].mean()
        if len(per_teacher) < MIN_TEACHERS_FOR_CORRELATION:
            continue
        rho = float(per_teacher["teacher_accuracy"].rank().corr(per_teacher["gain"].rank()))  # Spearman
        strongest = per_teacher["teacher_accuracy"].idxmax()
        statement = (f"{student} on {dataset}: a stronger teacher {'helps' if rho > 0 else 'does not help'} "
                     f"(Spearman rho = {rho:+.2f} between teacher accuracy and gain over answer-only, "
                     f"{len(per_teacher)} teachers; the strongest, {strongest}, gives gain "
                     f"{per_teacher.loc[strongest, 'gain']:+.3f})")
        findings.append(Finding("teacher", dataset, student, rho > 0, statement, fewest_seeds(rows),
                                {"spearman_rho": rho}))
    return findings


def method_findings(results: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> list[Finding]:
    """Per data set, student and method other than sft: does it beat sft, and by how much (mean
    over the matched grid points of the paired difference, 95% bootstrap interval)."""
    rng = np.random.default_rng(seed)
    grouped: dict[tuple[str, str, str], list[tuple[pd.DataFrame, pd.DataFrame]]] = {}
    for method, cells, baseline in method_comparisons(results):
        grouped.setdefault((cells["dataset"].iloc[0], cells["student"].iloc[0], method), []).append((cells, baseline))
    findings = []
    for (dataset, student, method), pairs in sorted(grouped.items()):
        replicates = np.mean([bootstrap_means(c, rng, n_boot) - bootstrap_means(b, rng, n_boot) for c, b in pairs], 0)
        low, high = np.quantile(replicates, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        ours = float(np.mean([c["accuracy"].mean() for c, _ in pairs]))
        theirs = float(np.mean([b["accuracy"].mean() for _, b in pairs]))
        formats = sorted({b["format"].iloc[0] for _, b in pairs})
        beats = bool(low > 0)
        statement = (f"{student} on {dataset}: {method} {'beats' if beats else 'does not clearly beat'} "
                     f"{BASELINE_METHOD} ({'/'.join(formats)}); {method} {ours:.3f} vs {BASELINE_METHOD} {theirs:.3f}, "
                     f"difference {ours - theirs:+.3f} (95% interval {low:+.3f} to {high:+.3f}) over {len(pairs)} "
                     "matched teacher/level/format points")
        seeds = min(fewest_seeds(pd.concat([c, b])) for c, b in pairs)
        findings.append(Finding("method", dataset, student, beats, statement, seeds,
                                {"difference": ours - theirs, "low": float(low), "high": float(high),
                                 "points": float(len(pairs))}))
    return findings


def findings(results: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> list[Finding]:
    """Every finding the results can speak to, as sentences with their numbers."""
    return (granularity_findings(results, n_boot, seed) + format_findings(results, n_boot, seed)
            + teacher_findings(results) + method_findings(results, n_boot, seed))
