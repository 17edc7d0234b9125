"""`xinstruction eval answer|judge|report`: evaluate models on X-AlpacaEval with PLUG's or
X-Instruction's protocol: ours by default (with our improvements, named as ours), or `--strict`
(the paper's script, exactly)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..curation.config import Sampling
from ..errors import PartialFailure, UsageError, UserError
from ..evaluation.aggregate import AGGREGATIONS
from ..evaluation.answer import DEFAULT_TEMPLATE, PROTOCOL_TEMPLATES, AnswerPlan, answer_configs
from ..evaluation.answer_templates import LAYOUTS, AnswerTemplate, answer_template, use_chat
from ..evaluation.benchmark import benchmark_rows, question_rows
from ..evaluation.inputs import MISSING_AS_ERROR, read_answer_file, refuse_problems
from ..evaluation.judge import judge_items, pair_items
from ..evaluation.layout import EvalLayout, judgment_variant
from ..evaluation.prompts import load_eval_prompt
from ..evaluation.protocols import PROTOCOLS, Protocol, get_protocol
from ..evaluation.report import (
    CHART_FILE, EXPORT_FORMATS, aggregation_rule, export_judgments, format_table, read_judgments, recount, save_chart, write_judge_report,
)
from ..llm.backends import build_backend, model_spec
from ..llm.cache import CallCache
from ..llm.calls import CallRunner
from ..options import output_folder_option, readable_error
from ..recipe import load_yaml
from ..xalpacaeval import REVISION, config_names

DEFAULT_OUTPUT = "runs/eval"
LOCAL_SPEC = "{backend: local}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate models on X-AlpacaEval: answer, judge pairwise in both orders (PLUG's or X-Instruction's protocol), report")
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
        "answer", help="a model answers X-AlpacaEval configs or a question file (cached, resumable)",
        description="Answer each instruction with the model under test, through the same backends, call cache and resume as curation; "
        "writes OUTPUT_DIR/answers/NAME/<config>.json as [{id, output, generator}] (plus outputs/selected with --samples, "
        "raw_output/extraction with an extracting template). Decoding and post-processing come from the template's settings "
        "(--protocol picks the paper's template); an option given here overrides its setting.",
    )
    answer.add_argument("--model", default=LOCAL_SPEC, help=f"model spec as inline YAML or a YAML file, as a recipe's model entry (default {LOCAL_SPEC!r}: the embedded CPU model)")
    answer.add_argument("--name", help="the model's name in answer files and folders (default: the backend's model id)")
    answer.add_argument("--protocol", choices=tuple(PROTOCOL_TEMPLATES), help="answer as the paper's scripts do: plug = TULU format, greedy, 4096 tokens, stripped "
                        f"({PROTOCOL_TEMPLATES['plug']}; the pivot model: --template answer_plug_tulu_pivot_v1); xinstruction = the aug prompt, sampled "
                        f"with no_repeat_ngram_size 6, 3 samples, the shortest judged, not stripped ({PROTOCOL_TEMPLATES['xinstruction']}). "
                        f"Default: {DEFAULT_TEMPLATE}, sampled as X-Instruction, one sample, stripped")
    answer.add_argument("--template", help="answer template: a packaged name (answer_plug_tulu_v1, answer_plug_tulu_pivot_v1, answer_xinstruction_plain_v1, "
                        "answer_xinstruction_aug_v1, answer_xinstruction_chatgpt_v1, answer_x_instruction_v1) or a .txt file "
                        "(evaluation/answer_templates.py: sections settings, system, user, prompt, system_layout; fields {instruction} {question} {language} {system})")
    answer.add_argument("--system", metavar="TEXT", help="system text for templates with {system} (PLUG's: its <|system|> block), every language")
    answer.add_argument("--system-file", metavar="FILE", help="YAML mapping language code -> system text (PLUG's per-language system prompts); `'*'` for the rest")
    answer.add_argument("--layout", choices=LAYOUTS, default="auto", help="auto: chat messages where the template has them and the backend speaks chat, else the completion prompt; "
                        "prompt / chat: force one (default auto)")
    answer.add_argument("--max-new-tokens", type=int, help="tokens per answer at most (default: the template's; 2048 X-Instruction, 4096 PLUG)")
    answer.add_argument("--temperature", type=float, help="sampling temperature, 0 = greedy (default: the template's; 0.7 X-Instruction, 0 PLUG)")
    answer.add_argument("--top-p", type=float, help="nucleus sampling (default: the template's; 0.9 X-Instruction)")
    answer.add_argument("--top-k", type=int, help="top-k sampling, 0 = off (default: the template's; 50 X-Instruction)")
    answer.add_argument("--no-repeat-ngram-size", type=int, metavar="N", help="never repeat an N-token n-gram, as transformers' generate (default: the template's; 6 X-Instruction; 0 = off). "
                        "Only the embedded model honours it: servers have no such parameter and are refused")
    answer.add_argument("--samples", type=int, metavar="N", help="answers sampled per item, seeds SEED..SEED+N-1 (default: the template's; 3 for X-Instruction's aug)")
    answer.add_argument("--select", choices=("shortest", "longest"), help="which sample is judged: the shortest (X-Instruction's default) or longest in characters, the first of equal ones")
    answer.add_argument("--strip", action=argparse.BooleanOptionalAction, default=None, help="strip whitespace around answers (default: the template's; PLUG strips, X-Instruction does not)")
    answer.add_argument("--seed", type=int, default=0, help="sampling seed (part of the cache key; default 0)")
    answer.add_argument("--stop", action="append", default=[], metavar="TEXT", help="end an answer at TEXT (repeatable; default none, as the papers)")
    _question_options(answer, "answer", "answers go to <set>-<language>.json")
    _common(answer)
    answer.set_defaults(func=run_answer)


def _question_options(parser: argparse.ArgumentParser, verb: str, where: str) -> None:
    parser.add_argument("--questions", metavar="FILE", help=f"also {verb} a question file in X-Instruction's shape (JSON lines of {{question_id, text, category}}: "
                        f"Vicuna's or WizardLM's test questions), once per --languages; {where}")
    parser.add_argument("--languages", nargs="+", metavar="CODE", default=[], help="with --questions: the languages the answers are in, e.g. sw ta")
    parser.add_argument("--set-name", help="with --questions: the set's name in answer file names (default: the file's stem), e.g. vicuna")


def _rows(args: argparse.Namespace, configs: list[str] | None) -> dict[str, list[dict[str, Any]]]:
    """config -> rows: the question file's sets (--questions), and X-AlpacaEval's configs when
    named, or when no question file is given (`configs` None: all of them)."""
    rows = question_rows(args.questions, args.languages, set_name=args.set_name, limit=args.limit) if args.questions else {}
    if args.languages and not args.questions:
        raise UsageError("--languages goes with --questions FILE (X-AlpacaEval configs say their language: use --configs)")
    if configs or not args.questions:
        rows.update(benchmark_rows(configs, source_dir=args.source_dir, revision=args.revision, limit=args.limit))
    return rows


def _register_judge(actions: argparse._SubParsersAction) -> None:
    judge = actions.add_parser(
        "judge", help="a judge compares two models' answers in both orders; prints and writes the report",
        description="Judge MODEL_1 against MODEL_2 on every item, once in each order, with PLUG's or X-Instruction's protocol; "
        "combine the orders (--aggregation); write OUTPUT_DIR/judgments/PROTOCOL[-VARIANT]/MODEL_1-vs-MODEL_2/ "
        "(judgments.jsonl, report.json, the chart) and print the table. Default: ours (a sampled retry of unreadable "
        "verdicts, our reading of out-of-range scores). --strict: the paper's script exactly.",
    )
    judge.add_argument("model_1", metavar="MODEL_1", help="a model name under OUTPUT_DIR/answers, or a folder of <config>.json answer files")
    judge.add_argument("model_2", metavar="MODEL_2", help="the model compared against (same forms)")
    judge.add_argument("--judge", default=LOCAL_SPEC, help=f"judge model spec, inline YAML or a YAML file (default {LOCAL_SPEC!r}; a small base model mostly produces errors)")
    judge.add_argument("--protocol", choices=tuple(PROTOCOLS), default="plug", help="plug: pair-v2 verdicts [[A]]/[[B]]/[[C]]; xinstruction: 0-10 scores in <score1>/<score2> (default plug)")
    judge.add_argument("--strict", action="store_true",
                       help="reproduce the paper's script exactly: one call per order (no retry), its reading of replies (X-Instruction: "
                       "an out-of-range score such as 85 is kept, one its script crashes on, such as 8/10, is an error; a missing tag is "
                       "its -1, which our aggregations count as an error), its settings (PLUG: temperature 0, top_p 0, 1024 tokens; "
                       "X-Instruction: temperature 0, top_p 1, 256 tokens), its prompt, system and user chat messages (the judge needs "
                       "route: chat), and the question without the 'Answer in X.' of the cross-<code> configs")
    judge.add_argument("--retry", action=argparse.BooleanOptionalAction, default=None,
                       help="ours: retry an order without a verdict once, sampled (temperature 0.7, seed 1); on by default, off with --strict; "
                       "the report counts the verdicts it produced and judgments.jsonl marks them (verdict_from: sampled_retry)")
    judge.add_argument("--aggregation", choices=AGGREGATIONS, default="per-order",
                       help="how the two orders make an outcome. per-order (default): with --protocol plug, PLUG's rule "
                       "(calculate_pair_judge_score.py); with --protocol xinstruction, ours: the higher score wins each order, then "
                       "PLUG's rule. sum (ours, xinstruction only): each model's scores summed over both orders. X-Instruction's "
                       "release has no aggregation: both readings are ours")
    judge.add_argument(MISSING_AS_ERROR, action="store_true",
                       help="count items whose answer is missing, duplicated, null, or has a non-integer id as errors (listed in the "
                       "report) instead of stopping with exit 2")
    judge.add_argument("--export", action="append", choices=EXPORT_FORMATS, default=[], metavar="FORMAT",
                       help="also write the judgments in a paper's format under the judgments folder's export/: plug (results.jsonl "
                       "with g1_winner/g2_winner, and data.json with dataset and category, for PLUG's calculate_pair_judge_score.py), "
                       "xinstruction (score_1/score_2 per order, as utils/gpt4_eval.py writes); repeatable")
    judge.add_argument("--prompt", help="judge prompt: a packaged name or a .txt file (default: the protocol's, e.g. judge_plug_pair_v2; --strict takes only that one)")
    judge.add_argument("--max-new-tokens", type=int, help="judge reply length at most (default: the protocol's, 1024 plug, 256 xinstruction; --strict --protocol plug "
                       "takes only 1024, PLUG's for every judge, while X-Instruction's script has this option)")
    _question_options(judge, "judge the answers to", "the answer files are <set>-<language>.json, as `eval answer --questions` writes")
    judge.add_argument("--chart", default=CHART_FILE, help=f"chart file name in the judgments folder; .png or .svg (default {CHART_FILE})")
    _common(judge)
    judge.set_defaults(func=run_judge)


def _register_report(actions: argparse._SubParsersAction) -> None:
    report = actions.add_parser("report", help="print (and redraw) the report of a judged pairing; export it in a paper's format")
    report.add_argument("folder", help="a folder written by `xinstruction eval judge` (holds judgments.jsonl)")
    report.add_argument("--chart", help=f"redraw the chart under this name in FOLDER (default {CHART_FILE}; under another --aggregation, win_rates-AGGREGATION.png)")
    report.add_argument("--aggregation", choices=AGGREGATIONS, help="recount under another aggregation (see `eval judge --help`); no call is made")
    report.add_argument("--export", action="append", choices=EXPORT_FORMATS, default=[], metavar="FORMAT",
                        help="write the judgments in a paper's format under FOLDER/export/ (plug or xinstruction; see `eval judge --help`)")
    report.set_defaults(func=run_report)


def parse_model_spec(text: str, option: str) -> Any:
    """A model spec from inline YAML or a YAML file, checked (once) as a recipe's model entry."""
    path = Path(text)
    try:
        spec = load_yaml(path.read_text(encoding="utf-8") if path.is_file() else text, f"{option} {text!r}")
    except UsageError as error:
        raise UsageError(f"{error}; e.g. {option} '{{backend: tgi, model: org/name, endpoints: [http://host:8080]}}'") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{option} must be a mapping with a `backend` key, e.g. {option} '{{backend: tgi, model: org/name, endpoints: [http://host:8080]}}'; got {text!r}")
    try:
        return model_spec(spec)  # a typo is one line now, not a failure after loading a model
    except UsageError as error:
        raise UsageError(f"{option}: {error}") from None


def run_answer(args: argparse.Namespace) -> int:
    spec = parse_model_spec(args.model, "--model")
    template = answer_template(load_eval_prompt(args.template or PROTOCOL_TEMPLATES.get(args.protocol, DEFAULT_TEMPLATE)))
    settings = template.settings
    if args.protocol and settings.protocol != args.protocol:
        whose = f"{settings.protocol}'s" if settings.protocol else "no paper's (its settings name no `protocol`)"
        raise UsageError(f"--template {template.name} is {whose}, not {args.protocol}'s: drop --protocol or pick one of its templates")
    chosen = {key: getattr(args, key) for key in ("max_new_tokens", "temperature", "top_p", "top_k")}
    try:
        sampling = Sampling(**{key: getattr(settings, key) if value is None else value for key, value in chosen.items()})
    except ValidationError as error:
        raise readable_error(error, Sampling, "sampling") from None
    ngram = settings.no_repeat_ngram_size if args.no_repeat_ngram_size is None else args.no_repeat_ngram_size
    if ngram is not None and ngram < 0:
        raise UsageError(f"--no-repeat-ngram-size is at least 1 (0: off), got {ngram}")
    samples = settings.samples if args.samples is None else args.samples
    if samples < 1:
        raise UsageError(f"--samples must be at least 1, got {samples}")
    systems = _system_texts(args, template)
    rows = _rows(args, args.configs)
    layout = EvalLayout(Path(args.output_dir))
    backend = build_backend(spec)
    if ngram and not backend.supports_no_repeat_ngram_size:
        raise UsageError(
            f"no_repeat_ngram_size {ngram} (template {template.name}): {backend.model_id}'s backend cannot honour it (TGI, vLLM, SGLang and "
            "llama.cpp servers have no such parameter); answer with the embedded backend ({backend: local, model: <model folder>}) "
            "or pass --no-repeat-ngram-size 0 (a decoding the paper did not use)"
        )
    params = replace(sampling.params(args.seed, tuple(args.stop)), no_repeat_ngram_size=ngram or None)
    plan = AnswerPlan(
        template, params, samples=samples, select=args.select or settings.select,
        strip_output=settings.strip_output if args.strip is None else args.strip,
        systems=systems, chat=use_chat(template, backend.supports_chat, args.layout),
    )
    name = args.name or backend.model_id
    with CallCache(layout.cache) as cache:
        runner = CallRunner(backend, cache, desc=f"answer {name}", progress=not args.no_progress)
        summary = answer_configs(rows, runner, plan, layout, name)
    print(f"template {template.version} ({'chat messages' if plan.chat else 'completion prompt'}); {_describe_params(params)}; "
          f"{samples} sample(s){f', the {plan.select} judged' if samples > 1 else ''}; {'stripped' if plan.strip_output else 'not stripped'}")
    for config, path in summary.written.items():
        codes = summary.extraction.get(config)
        extracted = f" (extraction: {', '.join(f'{code} {n}' for code, n in sorted(codes.items()))})" if codes else ""
        print(f"{config}: {len(rows[config])} answers -> {path}{extracted}")
    print(f"calls: {runner.stats.sent} made, {runner.stats.cache_hits} from the cache, {runner.stats.failed} failed")
    if summary.failed:
        first = next(iter(summary.failed.values()))[0]
        raise PartialFailure(
            f"answers failed in {', '.join(summary.failed)} ({sum(map(len, summary.failed.values()))} calls; first: {first}); "
            "those configs are not written: run the same command again (finished answers come from the cache)"
        )
    return 0


def _system_texts(args: argparse.Namespace, template: AnswerTemplate) -> dict[str, str]:
    """language -> system text from --system / --system-file ("*": every language)."""
    if args.system is not None and args.system_file:
        raise UsageError("--system and --system-file: give one (a file may hold '*' for every language)")
    if args.system is not None:
        texts = {"*": args.system}
    elif args.system_file:
        try:
            text = Path(args.system_file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"--system-file {args.system_file}: no such file") from None
        texts = load_yaml(text, f"--system-file {args.system_file}")
        if not isinstance(texts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in texts.items()):
            raise UsageError(f"--system-file {args.system_file}: a mapping of language code -> system text, e.g. {{zh: '...', ko: '...'}}")
    else:
        return {}
    if not template.uses_system:
        raise UsageError(f"template {template.name} has no {{system}} field: a system text would not reach the model (PLUG's templates take one)")
    return texts


def _describe_params(params) -> str:
    decoding = "greedy" if params.temperature == 0 else f"temperature {params.temperature:g}, top_p {params.top_p:g}, top_k {params.top_k}"
    ngram = f", no_repeat_ngram_size {params.no_repeat_ngram_size}" if params.no_repeat_ngram_size else ""
    return f"{decoding}{ngram}, at most {params.max_new_tokens} new tokens"


def _answers_folder(layout: EvalLayout, name: str) -> tuple[Path, str]:
    folder = Path(name) if Path(name).is_dir() else layout.answers(name)
    if not folder.is_dir():
        raise FileNotFoundError(f"no answers for {name!r} ({folder} does not exist): run `xinstruction eval answer --name {name} ...` first, or give a folder of answer files")
    return folder, folder.name if Path(name).is_dir() else name


def run_judge(args: argparse.Namespace) -> int:
    layout = EvalLayout(Path(args.output_dir))
    (folder_1, name_1), (folder_2, name_2) = _answers_folder(layout, args.model_1), _answers_folder(layout, args.model_2)
    spec = parse_model_spec(args.judge, "--judge")  # a bad spec is refused before any file is fetched
    both = [c for c in config_names() if (folder_1 / f"{c}.json").is_file() and (folder_2 / f"{c}.json").is_file()]
    rows = _rows(args, args.configs or (None if args.questions else both or None))
    configs = list(rows) if args.questions or args.configs else [c for c in rows if c in both]
    missing = [str(folder / f"{c}.json") for c in configs for folder in (folder_1, folder_2) if not (folder / f"{c}.json").is_file()]
    if not configs or missing:
        raise FileNotFoundError(f"no answers to compare: missing {', '.join(missing) or f'a config answered by both {folder_1} and {folder_2}'}; run `xinstruction eval answer` for it")
    if args.strict and args.retry:
        raise UserError("--strict makes one call per order, as the paper's script does: drop --retry, or drop --strict to use our retry")
    retry = not args.strict if args.retry is None else args.retry
    rule = aggregation_rule(args.protocol, args.aggregation)
    protocol = get_protocol(args.protocol)
    if args.strict:
        _refuse_unlike_the_script(args, protocol)
    if args.max_new_tokens is not None:
        protocol = replace(protocol, max_new_tokens=args.max_new_tokens)
    prompt = load_eval_prompt(args.prompt or protocol.prompt)
    prompt.section("user")
    files = {config: [read_answer_file(folder / f"{config}.json", [row["id"] for row in rows[config]]) for folder in (folder_1, folder_2)]
             for config in configs}
    checked = [f for pair in files.values() for f in pair]
    if not args.missing_as_error:
        refuse_problems(checked)
    items = [item for config in configs for item in pair_items(rows[config], *files[config], config, strict=args.strict)]
    backend = build_backend(spec)
    chat = backend.supports_chat  # the backend's own answer: a chat route, or a local model with a chat template
    if args.strict and not chat:
        raise UserError("--strict sends the judge system and user chat messages, as both papers did: give a judge that speaks chat, "
                        "e.g. --judge '{backend: tgi, route: chat, model: gpt-4-0613, endpoints: [https://api.openai.com]}'")
    with CallCache(layout.cache) as cache:
        runner = CallRunner(backend, cache, desc=f"judge {args.protocol}", progress=not args.no_progress)
        run = judge_items(items, protocol, prompt, runner, chat=chat, strict=args.strict, retry=retry, aggregation=args.aggregation)
    meta = {"model_1": name_1, "model_2": name_2, "judge": backend.model_id, "protocol": protocol.name,
            "prompt_version": prompt.version, "max_new_tokens": protocol.max_new_tokens, "configs": configs, "limit": args.limit,
            "strict": args.strict, "retry": retry, "aggregation": args.aggregation, "aggregation_rule": rule,
            "input_errors": [p.to_dict() for f in checked for p in f.problems]}
    out = layout.judgments(protocol.name, name_1, name_2, judgment_variant(strict=args.strict, retry=retry, aggregation=args.aggregation))
    report = write_judge_report(out, run.judgments, meta, chart_name=args.chart)
    print(format_table(report))
    print(f"calls: {runner.stats.sent} made, {runner.stats.cache_hits} from the cache, {runner.stats.failed} failed")
    print(f"wrote {out / 'report.json'}, {out / args.chart}, {out / 'judgments.jsonl'}")
    _export(run.judgments, report, out, args.export)
    if run.failed_calls:
        raise PartialFailure(f"{run.failed_calls} judge calls failed (counted as errors above): run the same command again; finished verdicts come from the cache")
    return 0


def _refuse_unlike_the_script(args: argparse.Namespace, protocol: Protocol) -> None:
    """--strict promises the paper's script: refuse what that script cannot be told. PLUG's sends
    1024 tokens to every judge (common.py `max_tokens_by_model`); X-Instruction's takes
    `--max-tokens` (default 256), so --max-new-tokens stays open there."""
    if args.prompt not in (None, protocol.prompt):
        raise UserError(f"--strict judges with the paper's prompt ({protocol.prompt}): drop --prompt {args.prompt}, or drop --strict")
    if protocol.name == "plug" and args.max_new_tokens not in (None, protocol.max_new_tokens):
        raise UserError(f"--strict --protocol plug sends {protocol.max_new_tokens} tokens, as PLUG's script does for every judge: "
                        f"drop --max-new-tokens {args.max_new_tokens}, or drop --strict")


def _export(judgments: list[dict[str, Any]], meta: dict[str, Any], folder: Path, formats: list[str]) -> None:
    for path in export_judgments(judgments, meta, folder, list(dict.fromkeys(formats))):
        print(f"wrote {path}")


def run_report(args: argparse.Namespace) -> int:
    judgments, meta = read_judgments(args.folder)
    report = recount(judgments, meta, args.aggregation)
    same = report.get("aggregation", "per-order") == meta.get("aggregation", "per-order")
    chart = args.chart or (CHART_FILE if same else f"win_rates-{report['aggregation']}.png")  # the judged chart stays
    save_chart(report, Path(args.folder) / chart)
    print(format_table(report))
    _export(judgments, report, Path(args.folder), args.export)
    return 0
