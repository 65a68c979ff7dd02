"""Published texts read as they are published: the user template inside the paper's notebook, and
`str.format` templates whose placeholders are renamed to afbatch's.

afbatch ships none of these texts; a job names them by URL, and these rules turn the fetched
bytes into what afbatch sends.
"""

from __future__ import annotations

import ast
import json
import string

from afbatch.errors import InputError

# What a notebook's user template holds: afbatch fills the same names (protocol.render_user).
USER_FIELDS = ("is_free_tier_user", "user_input")


def from_python_format(text: str, rename: dict[str, str], ref: str) -> str:
    """A `str.format` template in afbatch's plain placeholders: doubled braces become single ones
    (as `.format` prints them) and each field `{published}` becomes `{rename[published]}`."""
    out: list[str] = []
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as e:
        raise InputError(
            f"{ref}: not a str.format template ({e}) — declare "
            "python_format = false for a text whose braces are literal"
        ) from None
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        if field not in rename or spec or conversion:
            known = ", ".join("{" + k + "}" for k in rename) or "none"
            raise InputError(
                f"{ref}: placeholder {{{field}}} is not one afbatch fills (declared: "
                f"{known}) — map it under placeholders"
            )
        out.append("{" + rename[field] + "}")
    return "".join(out)


def notebook_user_template(data: bytes, ref: str) -> str:
    """The user template a notebook defines: the string constant assigned in a code cell that has
    both `{is_free_tier_user}` and `{user_input}` fields, converted to afbatch's placeholders."""
    try:
        nb = json.loads(data.decode("utf-8-sig"))
        cells = [c for c in nb["cells"] if c.get("cell_type") == "code"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(
            f"{ref}: not a Jupyter notebook (no JSON with code cells) — point "
            "[prompts] user_template at the published .ipynb"
        ) from None
    found: dict[str, str] = {}
    for cell in cells:
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        for name, value in _string_assignments(src):
            if _fields(value) >= set(USER_FIELDS):
                found.setdefault(value, name)
    if not found:
        raise InputError(
            f"{ref}: no user template in the notebook (a code cell assigning a string "
            "with {is_free_tier_user} and {user_input}) — the notebook changed; pin "
            "the version the job expects, or point user_template at a text file"
        )
    if len(found) > 1:
        names = ", ".join(sorted(found.values()))
        raise InputError(
            f"{ref}: several user templates in the notebook ({names}) — point "
            "user_template at a text file holding the one to use"
        )
    value = next(iter(found))
    return from_python_format(value, {f: f for f in USER_FIELDS}, ref)


def _string_assignments(source: str) -> list[tuple[str, str]]:
    """`name = "..."` at any depth of a cell; shell and magic lines (`!pip`, `%time`) skipped."""
    lines = ["" if ln.lstrip().startswith(("!", "%")) else ln for ln in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.append((target.id, node.value.value))
    return out


def _fields(text: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError:
        return set()
