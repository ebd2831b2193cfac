"""The `cotstudy` command (also `python -m study`).

    cotstudy demo                      the embedded demo study, end to end, on local Ray
    cotstudy plan SPEC [--cluster FILE | --gpu NAME] [--mfu X]
                                       cells, corpora, train tokens; the node types a trial's workers
                                       fit; per cell memory per GPU, FLOPs, GPU-hours, evaluation
                                       time; totals, dollars, storage; runs nothing
    cotstudy run SPEC [KEY.PATH=VALUE...] [--storage DIR] [--data-dir DIR] [--cluster FILE | --gpu NAME]
                                       build corpora, train and evaluate every cell, draw figures
                                       (overrides such as training.epochs=1 students[0].name=x are
                                       validated with the spec and kept in its frozen spec.yaml;
                                       plan takes them too)
    cotstudy corpus-stats SPEC | --files GLOB... [--data-dir DIR]
                                       rows, rationale length, steps, correct rate per corpus
    cotstudy serve-teacher SPEC TEACHER [--host HOST]
                                       serve one teacher on Ray Serve for reuse across studies
    cotstudy resume STUDY_DIR [--cluster cluster.yaml] [--data-dir DIR]
                                       finish every unfinished cell of a study (from its folder alone;
                                       --data-dir only rebuilds inputs missing from it)
    cotstudy status STUDY_DIR          done / failed / pending cells, and each failure's error
    cotstudy figures STUDY_DIR...      redraw the figures (same as python -m analysis)
    cotstudy report STUDY_DIR...       report.md / report.html: figures, tables, findings
                                       (both write into the first study folder, uploaded when it
                                       is a URI, or into --out)
    cotstudy export-student STUDY_DIR CELL --out DIR [--merge] [--push-to-hub REPO]
                                       one cell's trained student, in Hugging Face format
    cotstudy export STUDY_DIR --format alpaca|sharegpt|llamafactory|hf --out DIR
                                       the corpora and test splits, for other tools
    cotstudy schema                    the spec's JSON schema (for editors: yaml-language-server)
    cotstudy --version; -v / -q        more (debug) or less (warnings only) progress output

Exit codes: 0 all cells done, 1 some cells failed (or an unexpected error), 2 bad input (spec, data,
flag, storage, a cell that fits no node type), nothing run. Every error is one line; `cotstudy -v ...`
adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.__main__ import main as figures_main
from analysis.report import main as report_main
from analysis.tables import accuracy_table
from study.core import storage
from study.core.cells import check_grid, corpus_keys, expand_grid
from study.core.cluster import AUTOSCALER_CONFIG, ClusterConfig, any_gpu_cluster, gpu_cluster, load_cluster, placement
from study.core.console import configure_logging
from study.core.datasets import DatasetSpec, dataset_info, load_split
from study.core.storage.files import InputError
from study.core.hardware import GPU_NAMES
from study.run.export import EXPORT_COMMANDS, add_export_commands, run_export_command
from study.run.inputs import check_inputs, estimate_corpus_tokens
from study.core.results import cell_states
from study.core.spec import DATA_DIR_VARIABLE, StudySpec, load_spec
from study.core.storage import StudyPaths
from study.run.studies import StudyError, is_stale, open_study, read_lock
from study.teachers.client import TeacherError
from study.teachers.registry import kind_of

if TYPE_CHECKING:
    from study.run.launch import StudyOutcome

EXIT_OK, EXIT_FAILED_CELLS, EXIT_BAD_INPUT = 0, 1, 2
CLUSTER_HELP = ("the Ray cluster launcher config (cluster.yaml) whose node types the trials' Train workers must fit "
                "and whose largest extent sets how many run at once (on a cluster's head, default: the "
                f"autoscaler's {AUTOSCALER_CONFIG})")
BREAK_LOCK_HELP = ("take over the study's lock even if its holder may be alive (a driver on another machine "
                   "that is gone); a lock left by a dead driver on this machine is taken over without it")


def demo_spec_path() -> str:
    return str(resources.files("study").joinpath("specs/demo.yaml"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cotstudy", description="Chain-of-thought distillation studies on Ray.")
    parser.add_argument("--version", action="version", version=f"cotstudy {metadata.version('cotstudy')}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="debug output too (e.g. each trial's steps), and the traceback of an error")
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (no progress)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run a study spec end to end"), ("plan", "print cells and corpora; run nothing")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("spec", help="study spec (YAML)")
        command.add_argument("overrides", nargs="*", metavar="KEY.PATH=VALUE",
                             help="set a spec field, e.g. training.epochs=1 students[0].name=x (value read as YAML)")
        command.add_argument("--storage", help="override the spec's storage (local folder or URI)")
        command.add_argument("--data-dir", help="folder of source data sets (<dir>/<dataset>, <dir>/paper/<dataset>); overrides the spec's")
        target = command.add_mutually_exclusive_group()
        target.add_argument("--cluster", metavar="FILE", help=CLUSTER_HELP)
        target.add_argument("--gpu", choices=GPU_NAMES, help="fit and time cells on nodes of this GPU")
        if name == "run":
            command.add_argument("--break-lock", action="store_true", help=BREAK_LOCK_HELP)
        else:
            command.add_argument("--mfu", type=float, help="model FLOPs utilization for GPU-hours (default: the "
                                 "trainer's measured 0.279, or 0.407 with resources.compile)")
    stats = commands.add_parser("corpus-stats", help="rows, rationale length, steps, correct rate per corpus")
    stats.add_argument("spec", nargs="?", help="study spec (YAML): every corpus it needs")
    stats.add_argument("--files", nargs="+", metavar="GLOB", help="released corpus files instead of a spec")
    stats.add_argument("--data-dir", help="folder of source data sets (gold answers)")
    stats.add_argument("--storage", help="override the spec's storage (local folder or URI)")
    stats.add_argument("--out", default="corpus-stats", help="folder for the table and figure (default ./corpus-stats)")
    serve = commands.add_parser("serve-teacher", help="serve one teacher of a spec (OpenAI-compatible) until Ctrl-C")
    serve.add_argument("spec", help="study spec (YAML)")
    serve.add_argument("teacher", help="the teacher's name in the spec")
    serve.add_argument("--data-dir", help="folder of source data sets")
    serve.add_argument("--host", help="the address other machines reach this node by, named in the printed URL "
                                      "(default: the node's address on a cluster, i.e. RAY_ADDRESS set; else 127.0.0.1)")
    demo = commands.add_parser("demo", help="run the embedded demo study (specs/demo.yaml)")
    demo.add_argument("--storage", help="where results go (default: the spec's ./cotstudy-results)")
    demo.add_argument("--break-lock", action="store_true", help=BREAK_LOCK_HELP)
    for name, help_text in (("resume", "finish the unfinished cells of a study"),
                            ("status", "done / failed / pending cells of a study")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("study_dir", help="<storage>/<study name>")
        if name == "resume":
            command.add_argument("--break-lock", action="store_true", help=BREAK_LOCK_HELP)
            command.add_argument("--cluster", help=CLUSTER_HELP)
            command.add_argument("--data-dir", help="folder or URI of the source data sets, only to rebuild a study's "
                                                    "stored splits or imported corpora that are missing from its folder")
    for name, help_text in (("figures", "draw a study's figures (same as python -m analysis)"),
                            ("report", "write report.md / report.html with figures, tables and findings")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("study_dirs", nargs="+")
        command.add_argument("--out", help="output folder or URI (default: under the first study folder, in its own storage)")
        command.add_argument("--accuracy", choices=["accuracy", "accuracy_paper"], default="accuracy",
                             help="the accuracy shown: the project's scorer, or the paper's answer rules")
    add_export_commands(commands)
    commands.add_parser("schema", help="print the study spec's JSON schema (for editors)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every error that reaches here is one line: bad input (InputError: spec, data, cluster config,
    storage location; StudyError: a study that cannot start) exit 2, anything else exit 1; the
    traceback only with -v."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse printed its one-line error (or --help): return, don't exit
        return EXIT_BAD_INPUT if exit_.code else EXIT_OK
    configure_logging(1 if args.verbose else -1 if args.quiet else 0)
    try:
        return _command(args)
    except (InputError, StudyError) as error:
        return _error(args, str(error), EXIT_BAD_INPUT)
    except Exception as error:  # a bug or a failing machine: still one line, and nothing to lose
        return _error(args, f"{type(error).__name__}: {error} (cotstudy -v {args.command} ... shows the traceback)",
                      EXIT_FAILED_CELLS)


def _error(args: argparse.Namespace, message: str, code: int) -> int:
    if args.verbose:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


def _command(args: argparse.Namespace) -> int:
    if args.command == "schema":
        print(json.dumps(StudySpec.model_json_schema(), indent=2))
        return EXIT_OK
    if args.command in ("figures", "report"):
        analysis_main = figures_main if args.command == "figures" else report_main
        return analysis_main([*args.study_dirs, *(["--out", args.out] if args.out else []),
                              "--accuracy", args.accuracy])
    if args.command == "plan":
        return plan(_checked_spec(args), _cluster(args), args.gpu, args.mfu)
    if args.command == "corpus-stats":
        return corpus_stats(args)
    if args.command == "serve-teacher":
        return _serve_teacher(args)
    if args.command == "status":
        return status(args.study_dir)
    if args.command in EXPORT_COMMANDS:
        return run_export_command(args)
    return _launch(args)


def _cluster(args: argparse.Namespace) -> ClusterConfig | None:
    """The --cluster file, typed (None without the flag)."""
    location = getattr(args, "cluster", None)
    return None if location is None else load_cluster(location)


def _checked_spec(args: argparse.Namespace) -> StudySpec:
    """The spec, validated, its grid not empty, with every data set and corpus source found
    (before Ray starts)."""
    source = demo_spec_path() if args.command == "demo" else args.spec
    spec = load_spec(source, args.storage, getattr(args, "data_dir", None), getattr(args, "overrides", ()))
    check_grid(spec, source)
    check_inputs(spec)
    return spec


def _serve_teacher(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, None, args.data_dir)
    if args.teacher not in [t.name for t in spec.teachers]:
        print(f"error: {args.spec}: no teacher named '{args.teacher}'; teachers: {[t.name for t in spec.teachers]}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    served = [t.name for t in spec.teachers if kind_of(t).source_of(t) == "served"]
    if args.teacher not in served:  # before Ray and Serve start
        kind = kind_of(spec.teacher(args.teacher))
        print(f"error: {args.spec}: teacher '{args.teacher}' is {kind.source_of(spec.teacher(args.teacher))}, not "
              "served on Ray Serve; "
              f"teachers it can serve: {served}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from study.run.launch import serve_teacher

    try:
        serve_teacher(spec, args.teacher, args.host)
    except TeacherError as error:
        print(f"error: {_without_keys(str(error), spec)}", file=sys.stderr)
        return EXIT_FAILED_CELLS
    return EXIT_OK


def _without_keys(message: str, spec: StudySpec) -> str:
    """A teacher's error may quote what its server said, and some servers echo the API key they
    were sent: replace each key (the value of a teacher's api_key_env) by the variable's name."""
    for teacher in spec.teachers:
        for variable, value in kind_of(teacher).secrets(teacher).items():
            message = message.replace(value, f"<${variable}>")
    return message


def _launch(args: argparse.Namespace) -> int:
    spec = None
    if args.command in ("run", "demo"):  # validate before Ray starts
        spec = _checked_spec(args)
    cluster = _cluster(args)
    fit_on = gpu_cluster(args.gpu) if getattr(args, "gpu", None) else None
    try:
        if args.command == "resume" and args.data_dir is not None:  # a data folder to rebuild from: checked first
            check_inputs(open_study(args.study_dir, args.data_dir)[0])
        from study.run.launch import resume_study, run_study  # Ray and torch load only from here on

        outcome = (run_study(spec, break_lock=args.break_lock, cluster=cluster, fit_on=fit_on) if spec is not None
                   else resume_study(args.study_dir, break_lock=args.break_lock, cluster=cluster,
                                     data_dir=args.data_dir))
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TeacherError as error:  # no corpus was committed; nothing trained on it
        print(f"error: {_without_keys(str(error), spec or open_study(args.study_dir)[0])}", file=sys.stderr)
        return EXIT_FAILED_CELLS
    _print_outcome(outcome)
    return EXIT_FAILED_CELLS if outcome.count("failed") or outcome.count("pending") else EXIT_OK


def _print_outcome(outcome: StudyOutcome) -> None:
    print(f"\n{outcome.count('done')} done, {outcome.count('failed')} failed, {outcome.count('pending')} pending")
    if not outcome.results.empty:
        print(accuracy_table(outcome.results))
    print(f"results: {outcome.paths.results}")
    for path in outcome.figures:
        print(f"figure:  {path}")
    if outcome.count("failed"):
        print(f"failed cells: cotstudy status {outcome.paths.root}")


def plan(spec: StudySpec, cluster: ClusterConfig | None = None, gpu: str | None = None, mfu: float | None = None) -> int:
    """What a run would do: cells, corpora and train tokens; with a cluster config, where each
    trial's Train workers fit; then memory, cost and storage on the cluster's node types (or
    `gpu`'s, or any listed GPU). Exit 2 when a cell fits nowhere: `run` would refuse the spec."""
    from study.run.planning import plan_study, print_plan

    cells = expand_grid(spec)
    keys = corpus_keys(spec)
    corpus_tokens = {key.corpus_id: estimate_corpus_tokens(key) for key in keys}
    paths = StudyPaths.of(spec.storage, spec.name)
    try:
        built = {key.corpus_id: storage.exists(paths.corpus(key.corpus_id)) for key in keys}
    except OSError as error:  # the storage location itself cannot be opened
        print(f"error: storage: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"study {spec.name}: {len(cells)} cells, {len(keys)} corpora, storage {spec.storage}\n\ndata sets:")
    for dataset in spec.datasets:
        print(f"  {_split_line(dataset)}")
    print("\ncorpora:")
    for key in keys:
        state = "built" if built[key.corpus_id] else "to build"
        print(f"  {key.corpus_id:<48} {_approx(corpus_tokens[key.corpus_id]):>10} tokens  ({state})")
    print("\ncells:")
    total = 0
    for cell in cells:
        tokens = _train_tokens(cell.train.epochs, cell.train.max_steps, cell.train.tokens_per_batch,
                               corpus_tokens[cell.corpus.corpus_id])
        total += tokens or 0
        print(f"  {cell.cell_id}  {cell.name:<56} {_approx(tokens):>12} train tokens")
    print(f"\nestimated train tokens, all cells: ~{total:,} (corpora a teacher must generate not counted)")
    placed = EXIT_OK if cluster is None else _plan_placement(spec, cluster)
    study_plan = plan_study(spec, gpu_cluster(gpu) if gpu else cluster or any_gpu_cluster(), mfu)
    print_plan(spec, study_plan)
    return EXIT_BAD_INPUT if study_plan.refusals or placed != EXIT_OK else EXIT_OK


def _plan_placement(spec: StudySpec, cluster: ClusterConfig) -> int:
    fitted = placement(spec.resources.per_worker, spec.resources.workers_per_trial, cluster)
    print("\nplacement:")
    for line in fitted.lines():
        print(f"  {line}")
    refusal = fitted.refusal()
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _split_line(dataset: DatasetSpec) -> str:
    """A data set's split and its train / test sizes, with the sizes its source documents where
    the files found hold others (a user's copy of the data that is not the paper's)."""
    train, test = (len(load_split(dataset, split)) for split in ("train", "test"))
    info = dataset_info(dataset.name)
    split = "generated" if info.generated else f"{dataset.split} split"
    line = f"{dataset.name:<12} {split:<15} train {train:>7,}  test {test:>6,}"
    documented = None if info.generated else info.split_source(dataset.split).sizes
    if documented is not None and (train, test) != documented:
        line += f"  (documented: {documented[0]:,} / {documented[1]:,})"
    return line


def _approx(tokens: int | None) -> str:
    return "unknown" if tokens is None else f"~{tokens:,}"


def _train_tokens(epochs: float, max_steps: int | None, tokens_per_batch: int, corpus_tokens: int | None) -> int | None:
    """Upper bound for max_steps budgets (padded batches), corpus x epochs otherwise."""
    if max_steps is not None:
        return max_steps * tokens_per_batch
    return None if corpus_tokens is None else int(epochs * corpus_tokens)


def corpus_stats(args: argparse.Namespace) -> int:
    """A table per corpus (printed, and saved as CSV) and the rationale-length figure."""
    from analysis.figures import plot_corpus_lengths
    from study.run.corpus_stats import file_corpora, spec_corpora, stats_table

    if (args.spec is None) == (args.files is None):
        print("error: corpus-stats takes a spec or --files GLOB..., not both or neither", file=sys.stderr)
        return EXIT_BAD_INPUT
    storage.check_output_folder(args.out)  # before the corpora are read
    if args.spec is not None:
        found = spec_corpora(_checked_spec(args))
    else:
        found = file_corpora(args.files, args.data_dir or os.environ.get(DATA_DIR_VARIABLE, "."))
    table = stats_table(found)
    shown = table.drop(columns=["source"]).astype(object)
    print(shown.where(shown.notna(), "-").to_markdown(index=False, floatfmt=".3g"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "corpus_stats.csv", index=False)
    print(f"\ntable:  {out / 'corpus_stats.csv'}")
    try:
        for path in plot_corpus_lengths(table, out):
            print(f"figure: {path}")
    except ValueError as error:
        print(f"figure skipped: {error}")
    return EXIT_OK


def status(study_dir: str) -> int:
    try:
        spec, paths = open_study(study_dir)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    states = cell_states(paths, expand_grid(spec))
    counts = {name: sum(1 for s in states if s.state == name) for name in ("done", "failed", "pending")}
    print(f"study {spec.name}: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending "
          f"(of {len(states)})")
    holder = read_lock(paths)
    if holder is not None:
        print(f"  running: {holder.describe()}{' (stale: that process is gone)' if is_stale(holder) else ''}")
    for state in states:
        if state.state == "pending" and state.error:  # a result.json that cannot be used: runs again
            print(f"  PENDING {state.cell.name} [{state.cell.cell_id}]: {state.error.strip().splitlines()[-1]}")
        if state.state == "failed":
            last_line = state.error.strip().splitlines()[-1] if state.error else "(no error text)"
            print(f"  FAILED {state.cell.name} [{state.cell.cell_id}]: {last_line}\n"
                  f"         full traceback: {paths.cell_error(state.cell.cell_id)}")
    return EXIT_FAILED_CELLS if counts["failed"] else EXIT_OK
