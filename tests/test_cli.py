"""The command line: help for every command, clear errors with non-zero exit codes, summaries."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest

from corpora import corpus_path
from hub_folders import xinstruction_records
from xinstruction_dataset.cli import build_parser, main
from xinstruction_dataset.records import ShardWriter
from filtered_output import kept_rows, reject_rows


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_console_script_is_installed_and_helps():
    out = subprocess.run(["xinstruction", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("filter", "export"):
        assert name in out


@pytest.mark.parametrize("name", subcommands())
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: xinstruction" in capsys.readouterr().out


def test_a_command_imports_only_its_own_part_of_the_pipeline():
    """`xinstruction filter` (what a filter worker's command runs) must not pay for curation's
    models, the hub or the report: each command's parser is built alone."""
    probe = (
        "import sys\n"
        "from xinstruction_dataset.cli import main\n"
        "try:\n    main(['-v', 'filter', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('datasets', 'matplotlib', 'xinstruction_dataset.hub', 'xinstruction_dataset.report') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "usage: xinstruction filter" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_an_unknown_command_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["filtr", "recipe.yaml"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: xinstruction" in capsys.readouterr().out


def test_missing_recipe_is_a_clear_error(tmp_path, capsys):
    assert main(["filter", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml does not exist" in err and "builder/default.yaml" in err


def test_bad_recipe_keys_are_named(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nlanguage: [sw]\n")
    assert main(["filter", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "unknown key language; known keys: name, version" in err and "r.yaml" in err
    recipe.write_text("name: x\nsources: [{path: a.jsonl, language: xx}]\n")
    assert main(["filter", str(recipe)]) == 2
    assert "unknown language code 'xx'" in capsys.readouterr().err


def test_export_command_builds_a_loadable_folder(tmp_path, capsys, monkeypatch):
    for language in ("hi", "ta"):
        with ShardWriter(tmp_path / "curated" / language / "shard-00000.jsonl") as writer:
            for record in xinstruction_records(language, 6):
                writer.write(record)
    folder = tmp_path / "x-instruction"
    code = main(["export", str(folder), "--language", "hi", "--language", "ta", "--data-dir", str(tmp_path / "curated"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "hi: 6 records" in out and "exported 12 records" in out
    monkeypatch.chdir(tmp_path)
    assert datasets.load_dataset("x-instruction", "ta", split="train").num_rows == 6


def test_export_of_missing_shards_fails_with_the_folder_named(tmp_path, capsys):
    code = main(["export", str(tmp_path / "out"), "--language", "sw", "--data-dir", str(tmp_path / "empty"), "--no-progress"])
    assert code == 2
    assert "no curated shards" in capsys.readouterr().err


def _build_recipe(tmp_path, server_url, languages):
    import yaml

    sources = [{"path": str(corpus_path(lang)), "language": lang} for lang in languages]
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server_url], "retries": 2, "backoff": 0.01}
    recipe = {
        "name": "cli-build",
        "languages": languages,
        "sources": sources,
        "filters": [{"type": "length", "min_chars": 200, "max_chars": 750}, {"type": "language"}],
        "output_dir": str(tmp_path / "run"),
        "curation": {"models": {"generator": model}, "generate": {"candidates": 1}, "diversify": {"target_size": 3}},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_build_runs_the_main_job_end_to_end(tmp_path, start_tgi_server, capsys, monkeypatch):
    from fake_llm import reply_for_prompt

    server = start_tgi_server(reply=lambda prompt, params: reply_for_prompt(prompt))
    recipe = _build_recipe(tmp_path, server.url, ["sw", "vi"])
    assert main(["build", str(recipe), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "== sw: filter" in out and "== vi: curate" in out and "== vi: export" in out
    monkeypatch.chdir(tmp_path / "run")
    assert sorted(datasets.get_dataset_config_names("x-instruction")) == ["sw", "vi"]
    sw = datasets.load_dataset("x-instruction", "sw", split="train")
    assert sw.num_rows == 3 and all(r["provenance"]["generator_model"] == "test/echo-model" for r in sw)


def test_build_fails_clearly_when_a_language_curates_nothing(tmp_path, start_tgi_server, capsys, monkeypatch):
    from fake_llm import reply_for_prompt

    def reply(prompt, params):
        return " bad" if "### Label" in prompt else reply_for_prompt(prompt)

    server = start_tgi_server(reply=reply)
    recipe = _build_recipe(tmp_path, server.url, ["id"])
    assert main(["build", str(recipe), "--no-progress"]) == 1  # a partial failure (errors.py)
    captured = capsys.readouterr()
    assert "no record was curated for id" in captured.err and "rejects.jsonl" in captured.err
    rejects = (tmp_path / "run" / "curation" / "id" / "rejects.jsonl").read_text().splitlines()
    assert rejects and all(json.loads(line)["reason"] == "judge:bad" for line in rejects)


def test_filter_command_on_an_adhoc_corpus_with_bad_lines(tmp_path, capsys):
    corpus = tmp_path / "sw.jsonl"
    corpus.write_bytes(corpus_path("sw").read_bytes() + b'{"id": "broken", "text": \n' + corpus_path("noise").read_bytes())
    code = main(["filter", "--input", str(corpus), "--language", "sw", "--output-dir", str(tmp_path / "run"), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "documents in: 341" in out and "quarantined:  1" in out and "language:wrong_language" in out
    folder = tmp_path / "run" / "filtered" / "sw"
    quarantined = [json.loads(line) for line in (folder / "quarantine.jsonl").read_text().splitlines()]
    assert quarantined[0]["file"] == str(corpus) and quarantined[0]["line"] == 249
    kept, rejected = len(kept_rows(folder)), len(reject_rows(folder))
    assert kept + rejected + 1 == 341
    assert not (folder / "kept.jsonl").exists() and not (folder / "rejects.jsonl").exists()  # stored once: in the tasks


def test_filter_command_shards_split_the_work(tmp_path, capsys):
    outputs = []
    for index in range(3):
        args = ["filter", "--input", str(corpus_path("ta")), "--language", "ta", "--output-dir", str(tmp_path / "run"), "--shard", f"{index}/3", "--no-progress"]
        assert main(args) == 0
        folder = tmp_path / "run" / "filtered" / "ta" / f"shard-{index:05d}-of-00003"
        outputs += [row["id"] for row in kept_rows(folder) + reject_rows(folder)]
    assert sorted(outputs) == sorted(json.loads(line)["id"] for line in corpus_path("ta").read_text().splitlines())
    assert main(["filter", "--input", str(corpus_path("ta")), "--language", "ta", "--shard", "3/3"]) == 2
    assert "--shard" in capsys.readouterr().err


def test_a_recipe_with_no_language_is_refused(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nlanguages: []\n")
    assert main(["filter", str(recipe)]) == 2
    assert "names no languages" in capsys.readouterr().err


def test_no_progress_silences_library_bars_and_httpx_request_lines(tmp_path):
    import logging

    import datasets
    import huggingface_hub.utils

    main(["filter", str(tmp_path / "missing.yaml"), "--no-progress"])
    try:
        assert not datasets.is_progress_bar_enabled()
        assert huggingface_hub.utils.are_progress_bars_disabled()
        assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    finally:
        datasets.enable_progress_bars()
        huggingface_hub.utils.enable_progress_bars()


def test_curate_exits_1_when_some_calls_failed_and_a_rerun_retries_them(tmp_path, start_tgi_server, capsys):
    from fake_llm import reply_for_prompt

    server = start_tgi_server(reply=lambda prompt, params: reply_for_prompt(prompt))
    recipe = _build_recipe(tmp_path, server.url, ["sw"])
    assert main(["filter", str(recipe), "--no-progress"]) == 0
    first = kept_rows(tmp_path / "run" / "filtered" / "sw")[0]
    server.inject("503", count=3, match=first["text"][:60])  # the 3 attempts (retries: 2) of its one call
    assert main(["curate", str(recipe), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "1 of" in err and "calls failed" in err and "run the same command again" in err
    assert main(["curate", str(recipe), "--no-progress"]) == 0  # the faults are used up: retried, done
