"""The package's shape: imports flow one way (no cycle, lazy or not), and modules and functions stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "assistant"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module name imports anywhere in its code: at the top, inside functions (a lazy
    import hides a cycle, it does not remove it) and under TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: one level is the module's own package, each further one its parent
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of graph, as the modules along it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node], _ = "done", path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_graph() -> dict[str, set[str]]:
    found = modules()
    # A package's __init__ re-exports its modules; importing a module of it runs __init__ first, but that is
    # Python's order, not a dependency of the module on its siblings: leave __init__ files out of the edges.
    known = {name for name, path in found.items() if path.name != "__init__.py"}
    return {name: imported(name, found[name], known) for name in known}


def test_the_package_has_no_import_cycle():
    graph = package_graph()
    assert graph["assistant.answer.pipeline"] and "assistant.answering" not in graph["assistant.answer.pipeline"]
    assert cycle(graph) is None, " → ".join(cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def too_long(root: Path) -> list[str]:
    """The modules under root over MAX_MODULE_LINES, and the functions over MAX_FUNCTION_LINES (nested ones too)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name, text = path.relative_to(root.parent).as_posix(), path.read_text(encoding="utf-8")
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}.{node.name}: {length} lines")
    return found


@pytest.mark.parametrize("root", ["assistant", "benchmarks"])
def test_no_module_is_over_500_lines_and_no_function_over_60(root):
    folder = PACKAGE.parent / root
    assert folder.is_dir() and not too_long(folder)


def test_the_size_check_finds_a_long_function(tmp_path):
    lines = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{lines}\n", encoding="utf-8")
    assert too_long(tmp_path) == [f"{tmp_path.name}/long.py.f: {MAX_FUNCTION_LINES + 1} lines"]


def test_no_answer_stage_imports_the_assistant_that_runs_it():
    graph = package_graph()
    stages = [name for name in graph if name.startswith("assistant.answer.")]
    assert "assistant.answer.gate" in stages and "assistant.answer.correct" in stages
    assert not [name for name in stages if {"assistant.answering", "assistant.library"} & graph[name]]


def test_the_stages_read_in_pipeline_order_one_module_each():
    from assistant.answer import pipeline

    stages = [*pipeline.BEFORE_THE_MODEL, *pipeline.STREAMING, *pipeline.DECIDING]
    assert [f.__name__ for f in stages] == [
        *("guard", "rewrite", "retrieve", "gate", "generate", "reask", "retry", "complete", "settle", "point")
    ]
    assert all(f.__module__ == f"assistant.answer.{f.__name__}" for f in stages)


def test_parts_hold_no_method_of_the_assistant(tmp_path):
    import dataclasses
    import inspect

    from fakes import fake

    from assistant.answering import Assistant
    from assistant.index.indexing import load_embeddings
    from assistant.settings import PROJECT_ROOT, Settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "article.txt").write_text((PROJECT_ROOT / "corpus" / "nato-3-0.txt").read_text(encoding="utf-8"))
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")
    bot = Assistant(settings, chat_model=fake("x"), embeddings=load_embeddings(settings))
    parts = bot.parts
    for field in dataclasses.fields(parts):
        value = getattr(parts, field.name)
        assert value is not bot, field.name
        assert not (inspect.ismethod(value) and value.__self__ is bot), f"Parts.{field.name} is a method of Assistant"


# What the Assistant keeps to itself: the page and the CLI go through its public surface (answering.py's docstring).
ASSISTANT_MEMBERS = {"library", "reader", "questions", "index", "parts", "chat_model", "prompts", "grounder"}


def members_reached(path: Path) -> list[str]:
    """Where the module at path reaches into an assistant's members: `<...>assistant.<member>` or a private name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        if name == "assistant" and (node.attr in ASSISTANT_MEMBERS or node.attr.startswith("_")):
            found.append(f"{path.name}:{node.lineno} assistant.{node.attr}")
    return found


def test_the_page_and_the_cli_use_the_assistants_public_surface_only(tmp_path):
    fronts = [*sorted((PACKAGE / "web").glob("*.py")), PACKAGE / "cli.py"]
    assert not [hit for path in fronts for hit in members_reached(path)]
    (tmp_path / "page.py").write_text("def f(self):\n    return self.assistant.reader.readings\n", encoding="utf-8")
    assert members_reached(tmp_path / "page.py") == ["page.py:2 assistant.reader"]
