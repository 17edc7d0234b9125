"""`xinstruction eval answer|judge|report`: evaluate models on X-AlpacaEval as PLUG and X-Instruction do."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..curation.config import Sampling
from ..errors import PartialFailure, UsageError
from ..evaluation.answer import DEFAULT_TEMPLATE, answer_configs, read_answers
from ..evaluation.benchmark import benchmark_rows
from ..evaluation.judge import judge_items, pair_items, uses_chat
from ..evaluation.layout import EvalLayout
from ..evaluation.prompts import load_eval_prompt
from ..evaluation.protocols import PROTOCOLS, get_protocol
from ..evaluation.report import CHART_FILE, format_table, report_from_folder, save_chart, write_report
from ..llm.backends import backend_config, build_backend
from ..llm.cache import CallCache
from ..llm.calls import CallRunner
from ..options import output_folder_option, readable_error
from ..recipe import load_yaml
from ..xalpacaeval import REVISION, config_names

DEFAULT_OUTPUT = "runs/eval"
LOCAL_SPEC = "{backend: local}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate models on X-AlpacaEval: answer, judge pairwise in both orders, report")
    actions = parser.add_subparsers(dest="eval_action", metavar="ACTION", required=True)
    _register_answer(actions)
    _register_judge(actions)
    _register_report(actions)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT, type=output_folder_option, help=f"evaluation folder: answers/, judgments/, cache/ (default {DEFAULT_OUTPUT})")
    parser.add_argument("--configs", nargs="+", choices=config_names(), metavar="CONFIG", help="X-AlpacaEval configs, e.g. cross-sw ko (answer: default all; judge: default those both models answered)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N items of each config (cheap runs)")
    parser.add_argument("--source-dir", help="folder with X-AlpacaEval's english.json ... spanish.json (default: download the pinned release)")
    parser.add_argument("--revision", default=REVISION, help="X-AlpacaEval Hub revision to download (default: the pinned one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _register_answer(actions: argparse._SubParsersAction) -> None:
    answer = actions.add_parser(
        "answer", help="a model answers X-AlpacaEval configs (cached, resumable)",
        description="Answer each instruction with the model under test, through the same backends, call cache and resume as curation; "
        "writes OUTPUT_DIR/answers/NAME/<config>.json as [{id, output, generator}].",
    )
    answer.add_argument("--model", default=LOCAL_SPEC, help=f"model spec as inline YAML or a YAML file, as a recipe's model entry (default {LOCAL_SPEC!r}: the embedded CPU model)")
    answer.add_argument("--name", help="the model's name in answer files and folders (default: the backend's model id)")
    answer.add_argument("--template", default=DEFAULT_TEMPLATE, help=f"answer prompt: a packaged name or a .txt prompt file with a `=== prompt ===` section holding {{instruction}} (default {DEFAULT_TEMPLATE}: X-Instruction's inference prompt)")
    answer.add_argument("--max-new-tokens", type=int, default=2048, help="tokens per answer at most (default 2048, the paper's)")
    answer.add_argument("--temperature", type=float, default=0.7, help="sampling temperature, 0 = greedy (default 0.7, the paper's)")
    answer.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling (default 0.9, the paper's)")
    answer.add_argument("--top-k", type=int, default=50, help="top-k sampling, 0 = off (default 50, the paper's)")
    answer.add_argument("--seed", type=int, default=0, help="sampling seed (part of the cache key; default 0)")
    answer.add_argument("--stop", action="append", default=[], metavar="TEXT", help="end an answer at TEXT (repeatable; default none, as the paper)")
    _common(answer)
    answer.set_defaults(func=run_answer)


def _register_judge(actions: argparse._SubParsersAction) -> None:
    judge = actions.add_parser(
        "judge", help="a judge compares two models' answers in both orders; prints and writes the report",
        description="Judge MODEL_1 against MODEL_2 on every item both answered, once in each order, with PLUG's or X-Instruction's "
        "protocol; combine the orders with PLUG's rules; write OUTPUT_DIR/judgments/PROTOCOL/MODEL_1-vs-MODEL_2/ "
        "(judgments.jsonl, report.json, the chart) and print the table.",
    )
    judge.add_argument("model_1", metavar="MODEL_1", help="a model name under OUTPUT_DIR/answers, or a folder of <config>.json answer files")
    judge.add_argument("model_2", metavar="MODEL_2", help="the model compared against (same forms)")
    judge.add_argument("--judge", default=LOCAL_SPEC, help=f"judge model spec, inline YAML or a YAML file (default {LOCAL_SPEC!r}; a small base model mostly produces errors)")
    judge.add_argument("--protocol", choices=tuple(PROTOCOLS), default="plug", help="plug: pair-v2 verdicts [[A]]/[[B]]/[[C]]; xinstruction: 0-10 scores in <score1>/<score2> (default plug)")
    judge.add_argument("--prompt", help="judge prompt: a packaged name or a .txt file (default: the protocol's, e.g. judge_plug_pair_v2)")
    judge.add_argument("--max-new-tokens", type=int, help="judge reply length at most (default: the protocol's, 1024 plug, 256 xinstruction)")
    judge.add_argument("--chart", default=CHART_FILE, help=f"chart file name in the judgments folder; .png or .svg (default {CHART_FILE})")
    _common(judge)
    judge.set_defaults(func=run_judge)


def _register_report(actions: argparse._SubParsersAction) -> None:
    report = actions.add_parser("report", help="print (and redraw) the report of a judged pairing")
    report.add_argument("folder", help="a folder written by `xinstruction eval judge` (holds judgments.jsonl)")
    report.add_argument("--chart", default=CHART_FILE, help=f"redraw the chart under this name in FOLDER (default {CHART_FILE})")
    report.set_defaults(func=run_report)


def parse_model_spec(text: str, option: str) -> dict[str, Any]:
    """A model spec from inline YAML or a YAML file, checked as a recipe's model entry."""
    path = Path(text)
    try:
        spec = load_yaml(path.read_text(encoding="utf-8") if path.is_file() else text, f"{option} {text!r}")
    except UsageError as error:
        raise UsageError(f"{error}; e.g. {option} '{{backend: tgi, model: org/name, endpoints: [http://host:8080]}}'") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{option} must be a mapping with a `backend` key, e.g. {option} '{{backend: tgi, model: org/name, endpoints: [http://host:8080]}}'; got {text!r}")
    backend_config(spec)  # a typo is one line now, not a failure after loading a model
    return spec


def run_answer(args: argparse.Namespace) -> int:
    spec = parse_model_spec(args.model, "--model")
    try:
        sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k)
    except ValidationError as error:
        raise readable_error(error, Sampling, "sampling") from None
    template = load_eval_prompt(args.template)
    template.section("prompt")
    rows = benchmark_rows(args.configs, source_dir=args.source_dir, revision=args.revision, limit=args.limit)
    layout = EvalLayout(Path(args.output_dir))
    backend = build_backend(spec)
    name = args.name or backend.model_id
    with CallCache(layout.cache) as cache:
        runner = CallRunner(backend, cache, desc=f"answer {name}", progress=not args.no_progress)
        summary = answer_configs(rows, runner, template, sampling.params(args.seed, tuple(args.stop)), layout, name)
    for config, path in summary.written.items():
        print(f"{config}: {len(rows[config])} answers -> {path}")
    print(f"calls: {runner.stats.sent} made, {runner.stats.cache_hits} from the cache, {runner.stats.failed} failed")
    if summary.failed:
        first = next(iter(summary.failed.values()))[0]
        raise PartialFailure(
            f"answers failed in {', '.join(summary.failed)} ({sum(map(len, summary.failed.values()))} calls; first: {first}); "
            "those configs are not written: run the same command again (finished answers come from the cache)"
        )
    return 0


def _answers_folder(layout: EvalLayout, name: str) -> tuple[Path, str]:
    folder = Path(name) if Path(name).is_dir() else layout.answers(name)
    if not folder.is_dir():
        raise FileNotFoundError(f"no answers for {name!r} ({folder} does not exist): run `xinstruction eval answer --name {name} ...` first, or give a folder of answer files")
    return folder, folder.name if Path(name).is_dir() else name


def run_judge(args: argparse.Namespace) -> int:
    layout = EvalLayout(Path(args.output_dir))
    (folder_1, name_1), (folder_2, name_2) = _answers_folder(layout, args.model_1), _answers_folder(layout, args.model_2)
    configs = args.configs or [c for c in config_names() if (folder_1 / f"{c}.json").is_file() and (folder_2 / f"{c}.json").is_file()]
    missing = [str(folder / f"{c}.json") for c in configs for folder in (folder_1, folder_2) if not (folder / f"{c}.json").is_file()]
    if not configs or missing:
        raise FileNotFoundError(f"no answers to compare: missing {', '.join(missing) or f'a config answered by both {folder_1} and {folder_2}'}; run `xinstruction eval answer` for it")
    spec = parse_model_spec(args.judge, "--judge")
    protocol = get_protocol(args.protocol)
    if args.max_new_tokens is not None:
        protocol = replace(protocol, max_new_tokens=args.max_new_tokens)
    prompt = load_eval_prompt(args.prompt or protocol.prompt)
    prompt.section("user")
    rows = benchmark_rows(configs, source_dir=args.source_dir, revision=args.revision, limit=args.limit)
    items = [
        item for config in configs
        for item in pair_items(rows[config], read_answers(str(folder_1 / f"{config}.json")), read_answers(str(folder_2 / f"{config}.json")), config)
    ]
    backend = build_backend(spec)
    with CallCache(layout.cache) as cache:
        runner = CallRunner(backend, cache, desc=f"judge {args.protocol}", progress=not args.no_progress)
        run = judge_items(items, protocol, prompt, runner, chat=uses_chat(spec))
    meta = {"model_1": name_1, "model_2": name_2, "judge": backend.model_id, "protocol": protocol.name,
            "prompt_version": prompt.version, "configs": configs, "limit": args.limit}
    out = layout.judgments(protocol.name, name_1, name_2)
    report = write_report(out, run.judgments, meta, chart_name=args.chart)
    print(format_table(report))
    print(f"calls: {runner.stats.sent} made, {runner.stats.cache_hits} from the cache, {runner.stats.failed} failed")
    print(f"wrote {out / 'report.json'}, {out / args.chart}, {out / 'judgments.jsonl'}")
    if run.failed_calls:
        raise PartialFailure(f"{run.failed_calls} judge calls failed (counted as errors above): run the same command again; finished verdicts come from the cache")
    return 0


def run_report(args: argparse.Namespace) -> int:
    report = report_from_folder(args.folder)
    save_chart(report, Path(args.folder) / args.chart)
    print(format_table(report))
    return 0
