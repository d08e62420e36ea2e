"""Every st.success/info/warning/error/toast that shows user text escapes it.

Those calls render markdown, so a user name such as `[Session expired](https:evil.example)` or an
uploaded file's name became a live link in a success message. Instead of listing call sites by
hand (which missed the Users page and the Data page's import message), this test reads the
source of `app.py` and `pages/`: the message of each such call is followed back through
f-strings, `+`, `%`, `.format`, local variables, function parameters (the arguments at every
call of that function) and `st.session_state` keys (every assignment to that key) until each
piece is a literal, an `md_escape(...)` call or an entry of the short allow-list below (numbers
and fixed words). Anything else fails, naming the file, line and expression.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_CALLS = frozenset({"success", "info", "warning", "error", "toast"})

# Pieces that hold numbers or fixed words only (why each is safe: the comment beside it).
ALLOWED = frozenset(
    {
        "run['id']",  # integer primary key
        "run_id",  # integer run id
        "run['status']",  # a RunStatus member
        "version",  # integer probe / guidelines version
        "new_version",
        "same_as",
        "other",
        "es.probe_version",
        "stored.version",
        "generation_id",  # integer answer id
        "saved",  # guidelines version number
        "closed",  # a count
        "made",  # a count
        "total",  # a count
        "result.duplicates",  # counts of an import
        "result.spans",
        "(run['timings'] or {}).get('total_s', 0)",  # seconds, formatted as a number
        "user.role",  # one of ROLES
        "role",  # chosen from a selectbox of ROLES
        "new_role",
        "level",  # 'token' / 'span': fixed words
        "own_model",  # the probe kind's noun: our words
        "page.title",  # a page title from app.py's PAGES
        "incident",  # a random hex id
        "chosen",  # probe version number (generate page)
        "conflict['their_version']",  # an annotation set's version number
        "preview.unit",  # 'line' / 'row'
        "title",  # RUN_TITLES values (pages/probes.py): fixed words
        "no_colours",  # shared.colour_reason's sentence, unpacked from the opened answer
        "acts.resume_batch(storage, user, run['id'])",  # the new run's integer id
        "found['documents']",  # counts of a reference import
        "found['passages']",
        "found['skipped']",
        "snap.result",  # the stored answer's integer id (checked with isinstance before the call)
    }
)
# Functions whose result is our own sentence (numbers and fixed words only).
OWN_WORDS = frozenset(
    {
        "len",
        "int",  # a number whatever it was given
        "plural",
        "shared.colour_reason",  # core/orchestration/colour_status.py sentences
        "small_validation_warning",  # core/probes/guard.py
        "version_validation_warning",
        "ending",
    }
)


@dataclass
class Source:
    """The parsed files and what the tracer needs to follow a name back."""

    trees: dict[Path, ast.Module]
    state_writes: dict[str, list[tuple[Path, ast.expr]]] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tree in self.trees.values():
            for node in tree.body:
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                    for target in node.targets:
                        if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                            self.constants[target.id] = node.value.value
        for path, tree in self.trees.items():
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        key = self.state_key(target)
                        if key is not None:
                            self.state_writes.setdefault(key, []).append((path, node.value))

    def state_key(self, node: ast.expr) -> str | None:
        """`st.session_state[K]` -> K (a literal or a module-level string constant)."""
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "st.session_state":
            return self.key_text(node.slice)
        return None

    def key_text(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        return None


def _calls(trees: dict[Path, ast.Module], name: str):
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
                yield path, node


def _enclosing_function(tree: ast.Module, target: ast.AST) -> ast.FunctionDef | None:
    found = None
    for node in ast.walk(tree):
        if node is target or not isinstance(node, ast.FunctionDef):
            continue
        if any(child is target for child in ast.walk(node)):
            if found is None or any(child is node for child in ast.walk(found)):
                found = node
    return found


class Tracer:
    """Follows one message expression back to its pieces; collects the unsafe ones."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.unsafe: list[str] = []
        self._seen: set[tuple[Path, int]] = set()

    def check(self, path: Path, node: ast.expr, *, index: int | None = None) -> None:
        """`index`: only that element of a tuple value matters (a `(kind, text)` flash)."""
        key = (path, id(node))
        if key in self._seen:
            return
        self._seen.add(key)
        text = ast.unparse(node)
        if index is not None and isinstance(node, ast.Tuple):
            if index < len(node.elts):
                self.check(path, node.elts[index])
            return
        if isinstance(node, ast.Constant) or text in ALLOWED:
            return
        if isinstance(node, ast.JoinedStr):
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    self.check(path, part.value)
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            self.check(path, node.left)
            self.check(path, node.right)
            return
        if isinstance(node, ast.Tuple):
            for element in node.elts:
                self.check(path, element)
            return
        if isinstance(node, ast.IfExp):
            self.check(path, node.body)
            self.check(path, node.orelse)
            return
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self.check(path, value)
            return
        if isinstance(node, ast.Call):
            self._call(path, node)
            return
        if isinstance(node, ast.Name):
            self._name(path, node)
            return
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            if isinstance(node.value, ast.Name) and isinstance(node.slice.value, int):
                self._name(path, node.value, index=node.slice.value)
                return
            key = self.source.state_key(node)
            if key is not None:
                self._state(path, key, node)
                return
        self.unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text}")

    def _call(self, path: Path, node: ast.Call) -> None:
        func = ast.unparse(node.func)
        if func == "md_escape":
            return
        if func in OWN_WORDS:
            return
        if isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            self.check(path, node.func.value)
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                self.check(path, arg)
            return
        if func in ("st.session_state.pop", "st.session_state.get") and node.args:
            key = self.source.key_text(node.args[0])
            if key is not None:
                self._state(path, key, node)
                return
        self.unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")

    def _state(self, path: Path, key: str, node: ast.expr, index: int | None = None) -> None:
        writes = self.source.state_writes.get(key, [])
        if not writes:
            self.unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)} (never assigned)")
        for where, value in writes:
            self.check(where, value, index=index)

    def _name(self, path: Path, node: ast.Name, index: int | None = None) -> None:
        """Every value the name is given in its module: assignments, or the arguments of every
        call of the function whose parameter it is."""
        tree = self.source.trees[path]
        sources: list[tuple[Path, ast.expr]] = []
        function = _enclosing_function(tree, node)
        for candidate in ast.walk(tree):
            if isinstance(candidate, (ast.Assign, ast.AnnAssign)) and candidate.value is not None:
                targets = candidate.targets if isinstance(candidate, ast.Assign) else [candidate.target]
                if any(isinstance(t, ast.Name) and t.id == node.id for t in targets):
                    sources.append((path, candidate.value))
                elif any(
                    isinstance(t, ast.Tuple) and any(isinstance(e, ast.Name) and e.id == node.id for e in t.elts)
                    for t in targets
                ):
                    self.unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.id} (unpacked)")
        while function is not None:
            params = [a.arg for a in function.args.args]
            if node.id in params or node.id in [a.arg for a in function.args.kwonlyargs]:
                position = params.index(node.id) if node.id in params else len(params) + 10_000
                for where, call in _calls(self.source.trees, function.name):
                    args = {k.arg: k.value for k in call.keywords}
                    if node.id in args:
                        sources.append((where, args[node.id]))
                    elif position < len(call.args):
                        sources.append((where, call.args[position]))
                break
            function = _enclosing_function(tree, function)
        if not sources:
            self.unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.id} (unknown origin)")
        for where, value in sources:
            self.check(where, value, index=index)


def _message_calls(tree: ast.Module):
    """Calls of st.success/info/warning/error/toast, also on containers (`col.error`) and as
    `(st.warning if c else st.info)(...)`."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        funcs = [node.func.body, node.func.orelse] if isinstance(node.func, ast.IfExp) else [node.func]
        if any(isinstance(f, ast.Attribute) and f.attr in MESSAGE_CALLS for f in funcs):
            receiver = ast.unparse(funcs[0].value) if isinstance(funcs[0], ast.Attribute) else ""
            if receiver.split(".")[0] in ("log", "logger", "logging", "LOG"):
                continue
            message = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "body"), None)
            if message is not None:
                yield message


def unescaped_messages(files: list[Path]) -> tuple[int, list[str]]:
    """(how many message calls were read, the pieces of user text they show unescaped)."""
    source = Source({path: ast.parse(path.read_text(encoding="utf-8")) for path in files})
    count, found = 0, []
    for path, tree in source.trees.items():
        for message in _message_calls(tree):
            count += 1
            tracer = Tracer(source)
            tracer.check(path, message)
            found += [f"{path.relative_to(ROOT)}:{message.lineno} shows {piece}" for piece in tracer.unsafe]
    return count, sorted(found)


def _ui_files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]


def test_every_message_call_escapes_user_text() -> None:
    count, unsafe = unescaped_messages(_ui_files())
    assert count >= 60, f"only {count} message calls found: the scan lost its way"
    assert not unsafe, "user text shown unescaped in a message:\n" + "\n".join(unsafe)


def test_the_scan_finds_each_way_of_formatting(tmp_path: Path) -> None:
    page = tmp_path / "page.py"
    page.write_text(
        "import streamlit as st\n"
        "name = st.text_input('Name')\n"
        "st.success(f'Added {name}.')\n"
        "st.info('Hello {}'.format(name))\n"
        "st.warning('Hi %s' % name)\n"
        "st.toast('Bye ' + name)\n"
        "st.session_state['flash'] = f'Imported into {name}'\n"
        "st.success(st.session_state.pop('flash'))\n"
        "def change(success): st.success(success)\n"
        "change(success=f'{name} is gone')\n"
        "st.error(md_escape(name))\n"
        "st.error(f'{md_escape(name)} v{version}')\n",
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        count, unsafe = unescaped_messages([page])
    finally:
        ROOT = saved
    assert count == 8
    # each message that shows `name` unescaped is reported, naming its origin (line 2)
    assert sorted(int(item.split(":")[1].split()[0]) for item in unsafe) == [3, 4, 5, 6, 8, 9], unsafe
    assert all("page.py:2: st.text_input" in item for item in unsafe), unsafe
