"""MCP prompt templates kept as files in ``prompts/`` (TOML front matter + a text body).

Keeping them as files lets musicians and prompt writers edit them without touching code; the
body uses ``{argument}`` placeholders, filled in with ``str.format_map``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument

from .config import PROMPTS_DIR


@dataclass
class PromptFile:
    name: str
    title: str
    description: str
    arguments: list[dict[str, Any]]
    body: str

    def render(self, values: dict[str, Any]) -> str:
        defaults = {a["name"]: a.get("default", "") for a in self.arguments}
        return self.body.format_map({**defaults, **{k: v for k, v in values.items() if v is not None}})


def load_prompt_file(path: Path) -> PromptFile:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("+++\n"):
        raise ValueError(f"{path}: a prompt file starts with '+++' TOML front matter")
    head, body = text[4:].split("\n+++\n", 1)
    meta = tomllib.loads(head)
    return PromptFile(
        name=meta.get("name", path.stem),
        title=meta.get("title", path.stem.replace("_", " ")),
        description=meta["description"],
        arguments=meta.get("arguments", []),
        body=body.strip() + "\n",
    )


def load_prompts(directory: Path = PROMPTS_DIR) -> list[Prompt]:
    prompts = []
    for path in sorted(directory.glob("*.md")):
        pf = load_prompt_file(path)

        def render(_pf: PromptFile = pf, **values: Any) -> str:
            return _pf.render(values)

        prompts.append(Prompt(
            name=pf.name,
            title=pf.title,
            description=pf.description,
            arguments=[PromptArgument(name=a["name"], description=a.get("description"), required=a.get("required", False))
                       for a in pf.arguments],
            fn=render,
        ))
    return prompts
