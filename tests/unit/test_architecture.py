"""poststack's import structure (issue 12): no unexplained function-level import of poststack's own modules.

The layers and the absence of cycles are import-linter contracts (``[tool.importlinter]`` in pyproject.toml,
run by ``lint-imports`` in .ci/run). What no contract sees is an import moved into a function: the usual way
a cycle is hidden rather than broken. Deferring an import is still right where it keeps start-up fast
(`poststack --help`, pytest loading the plugin in every project), so such an import is allowed when a comment
says so: on its own line, or in the comment lines right above it or above the run of import statements it
belongs to. ``importlib.import_module`` of a poststack module counts as an import.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from pathlib import Path

import poststack

PACKAGE = "poststack"
SRC = Path(poststack.__file__).resolve().parent
ROOT = SRC.parent
START_UP_WORDS = ("start-up", "startup")


def _where(module: str) -> str:
    """src/poststack/a/b.py for poststack.a.b (or its package's __init__.py)."""
    path = SRC.joinpath(*module.split(".")[1:])
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return str(file.relative_to(ROOT.parent) if ROOT.name == "src" else file)


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imported(node: ast.AST, module: str, is_package: bool) -> str | None:
    """The poststack module an import statement or importlib call brings in, None when it is not one."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
        return names[0] if names else None
    if isinstance(node, ast.ImportFrom):
        if node.level == 0:
            base = node.module or ""
        else:
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        if base != PACKAGE and not base.startswith(PACKAGE + "."):
            return None
        submodules = [f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")]
        return ", ".join(submodules) if submodules else base
    if isinstance(node, ast.Call):
        # importlib.import_module("poststack.x") or __import__(...) is an import too, only harder to see.
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                return target.value if target.value.startswith(PACKAGE) else None
            if isinstance(target, ast.JoinedStr) and target.values and isinstance(target.values[0], ast.Constant):
                text = str(target.values[0].value)
                return text + "..." if text.startswith(PACKAGE) else None
            return "<computed>"
    return None


def _comments(source: str) -> dict[int, str]:
    return {
        token.start[0]: token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }


def _says_start_up(comment: str | None) -> bool:
    return comment is not None and any(word in comment.lower() for word in START_UP_WORDS)


def _function_level_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for each poststack import inside a function body that no start-up comment explains."""
    source = path.read_text()
    module, is_package = _module_name(path)
    comments = _comments(source)

    lines = source.splitlines()

    def explained(node: ast.stmt | ast.expr, run_start: int) -> bool:
        own = any(_says_start_up(comments.get(line)) for line in range(node.lineno, (node.end_lineno or 0) + 1))
        above = run_start - 1  # the comment block right above: comment-only lines, however many
        while not own and above >= 1 and lines[above - 1].lstrip().startswith("#"):
            own = _says_start_up(comments.get(above))
            above -= 1
        return own

    def visit(body: list[ast.stmt], in_function: bool) -> Iterator[tuple[int, str]]:
        run_start = 0
        previous_end = -1
        for statement in body:
            is_import = isinstance(statement, ast.Import | ast.ImportFrom)
            if is_import and statement.lineno == previous_end + 1:
                pass  # continues the run of imports that started at run_start
            else:
                run_start = statement.lineno
            previous_end = (statement.end_lineno or statement.lineno) if is_import else -1
            if in_function:
                calls = [n for n in _own_expressions(statement) if isinstance(n, ast.Call)]
                nodes: list[ast.stmt | ast.expr] = [statement] if is_import else calls
                for node in nodes:
                    target = _imported(node, module, is_package)
                    if target is not None and not explained(node, run_start if is_import else node.lineno):
                        yield node.lineno, target
            for child_body, child_in_function in _bodies(statement, in_function):
                yield from visit(child_body, child_in_function)

    yield from visit(ast.parse(source).body, in_function=False)


def _bodies(statement: ast.stmt, in_function: bool) -> Iterator[tuple[list[ast.stmt], bool]]:
    """The statement lists nested in a statement, and whether they run inside a function."""
    inside = in_function or isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
    for field in ("body", "orelse", "finalbody"):
        value = getattr(statement, field, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            yield value, inside
    for handler in getattr(statement, "handlers", []):
        yield handler.body, inside
    for case in getattr(statement, "cases", []):
        yield case.body, inside


def _own_expressions(statement: ast.stmt) -> Iterator[ast.AST]:
    """The expression nodes of a statement, not those of the statements nested in it."""
    for name, value in ast.iter_fields(statement):
        if name in ("body", "orelse", "finalbody", "handlers", "cases"):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, ast.AST):
                yield from ast.walk(item)


def test_function_level_imports_of_poststack_say_they_keep_start_up_fast() -> None:
    offenders = [
        f"{_where(_module_name(path)[0])}:{line}: imports {target} inside a function"
        for path in sorted(SRC.rglob("*.py"))
        for line, target in _function_level_imports(path)
    ]
    assert not offenders, (
        "function-level imports of poststack modules: move them to the top of the module (breaking any cycle "
        "that shows), or, where deferring keeps start-up fast, say so in a comment above: "
        "`# deferred: keeps start-up fast (<what it avoids>)`\n" + "\n".join(offenders)
    )
