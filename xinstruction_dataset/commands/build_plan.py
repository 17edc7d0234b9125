"""`build --dry-run`: what a build would do, from the recipe alone. Nothing is read, fetched or
called: `hf:` sources are named, not streamed; endpoints are listed, not probed. So a recipe can
be checked on a laptop with no network before it goes to a cluster."""

from __future__ import annotations

from ..filtering.dedup import LanguageStep, plan_steps
from ..filtering.hub_files import HubListing, HubListings
from ..layout import RunLayout
from ..recipe import Recipe


def describe_build(recipe: Recipe, executor_line: str) -> str:
    layout = RunLayout(recipe.output_path)
    config = recipe.curation
    filters, steps = plan_steps(recipe.filters)
    chain = [spec.type for spec in filters]
    lines = [
        f"recipe {recipe.name} {recipe.version}: build {', '.join(recipe.languages)}",
        f"executor: {executor_line}",
        f"output: {recipe.output_path} (must be on a filesystem every node sees when the executor is a cluster)",
        "steps:",
        f"  1. filter: {' -> '.join(chain) or '(no block)'}, one task per source file, in parallel",
        f"  2. dedup over each whole language: {_steps_line(steps)}",
        f"  3. curate: generate {config.generate.candidates} candidate(s)/doc, judge ({config.judge.scale}), "
        f"refine up to {config.refine.rounds} round(s), diversify to {config.diversify.target_size} per language "
        f"({config.diversify.embedding.backend} embeddings)",
        f"  4. export: {layout.export_folder}",
        "sources:",
    ]
    for language in recipe.languages:
        listings = HubListings(layout.source_listings(language))
        for source in recipe.sources_for(language):
            path = recipe.resolve(source.path)
            how = _hub_line(listings.get(source, path)) if path.startswith("hf:") else "local file(s)"
            lines.append(f"  {language}: {path} [{how}, text field {source.text_field!r}]")
    lines.append("endpoints:")
    for role, model in config.models.resolved().items():
        endpoints, serve = getattr(model, "endpoints", None), getattr(model, "serve", None)
        where = ", ".join(endpoints) if endpoints else f"in process ({model.backend})"
        if serve is not None:  # llm/serving/: the build starts them
            where = f"{serve.replicas} {model.backend} server(s) the build starts ({serve.model}; logs in {layout.servers_folder})"
        limit = f", up to {model.max_concurrency} requests in flight each" if endpoints or serve else ""
        lines.append(f"  {role}: {getattr(model, 'model', '')} at {where}{limit}")
    return "\n".join(lines)


def _steps_line(steps: tuple[LanguageStep, ...]) -> str:
    if not steps:
        return "none (the chain has no dedup block)"
    return "; ".join(step.describe() for step in steps) + " (a removal list: the text stays in the tasks' files)"


def _hub_line(recorded: HubListing | None) -> str:
    """A hub source is one task per data file: the files this folder recorded at its first
    listing, or, before that, listed by the first real run (a dry run asks the Hub nothing)."""
    if recorded is None:
        return "hub: one task per data file, listed at the first run (not contacted now)"
    return f"hub: {len(recorded.files)} data file(s) at commit {recorded.commit[:12]}, as recorded"
