"""The backbone-name grammar: one parse for the registry, the server policy, the CLI and the loaders.

::

    <built-in name>                e.g. mobilenetv2 (a registered backbone)
    timm/<model>                   hub weights, e.g. timm/vit_base_patch16_224.augreg_in21k
    timm/<model>@<file>            a local timm checkpoint (.safetensors / .pth)
    open_clip/<arch>/<tag>         hub weights, e.g. open_clip/ViT-B-32/laion2b_s34b_b79k
    open_clip/<arch>/random        an explicitly random init (testing code paths only)
    open_clip/<arch>@<file>        a local open_clip checkpoint

The file is everything after the first ``@`` (so it may hold ``@`` and ``/``); a model, arch or tag
holds neither. ``str(BackboneName.parse(text)) == text`` for every name the parse accepts.

It lives in ``core.io`` (beside ``policy``, which decides which names a browser user may load) because
``io`` is the bottom layer: the policy, ``core.models`` and the CLI all read it. It imports nothing, so it
does not know the built-in table: callers pass the names they know (``core.models.registry`` passes its
registered names, the policy the built-in names the page hands it).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal

from core.errors import UnknownBackboneError

Source = Literal["builtin", "timm", "open_clip"]
RANDOM_TAG = "random"
_PREFIXES: dict[str, Source] = {"timm/": "timm", "open_clip/": "open_clip"}

ONLINE_PATTERNS = (
    "timm/<model name>            e.g. timm/vit_base_patch16_224.augreg_in21k (downloads from the HF hub)",
    "timm/<model name>@<file>     a local timm checkpoint (.safetensors / .pth)",
    "open_clip/<arch>/<tag>       e.g. open_clip/ViT-B-32/laion2b_s34b_b79k (downloads)",
    "open_clip/<arch>@<file>      a local open_clip checkpoint",
)


@dataclass(frozen=True)
class BackboneName:
    """One parsed backbone name (see the module docstring for the grammar).

    Attributes:
        source: ``"builtin"`` (a registered name), ``"timm"`` or ``"open_clip"``.
        arch: the built-in name, the timm model name (with its ``.pretrained_tag``, if any) or the
            open_clip architecture.
        tag: the open_clip pretrained tag (``"random"`` for a random init); None otherwise.
        file: the local checkpoint after ``@``, as written (not resolved); None for hub / built-in names.
    """

    source: Source
    arch: str
    tag: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        if self.source == "builtin":
            return self.arch
        text = f"{self.source}/{self.arch}"
        if self.tag is not None:
            text += f"/{self.tag}"
        if self.file is not None:
            text += f"@{self.file}"
        return text

    @property
    def is_builtin(self) -> bool:
        return self.source == "builtin"

    @property
    def is_hub(self) -> bool:
        """Weights that would be downloaded (a timm or open_clip name without a file, random init aside)."""
        return self.source != "builtin" and self.file is None and self.tag != RANDOM_TAG

    @property
    def is_random(self) -> bool:
        """``open_clip/<arch>/random``: an explicit random init, no download."""
        return self.source == "open_clip" and self.tag == RANDOM_TAG

    def with_file(self, file: str) -> BackboneName:
        """The same name with its checkpoint replaced (e.g. by the resolved absolute path)."""
        if self.file is None:
            raise ValueError(f"{self} names no checkpoint file")
        return replace(self, file=file)

    @classmethod
    def parse(cls, text: str, known: Collection[str] | None = None) -> BackboneName:
        """Parse ``text`` (not stripped: a name with spaces is not a name).

        Args:
            text: a backbone name.
            known: the registered built-in names; None accepts any bare name as built-in syntax.

        Raises:
            UnknownBackboneError: not a name of the grammar, or a bare name not in ``known``; the
                message lists the known names and the patterns.
        """
        for prefix, source in _PREFIXES.items():
            if text.startswith(prefix):
                return _parse_hub(text, prefix, source, known)
        if not text or "/" in text or "@" in text or (known is not None and text not in known):
            raise UnknownBackboneError(_unknown(text, known))
        return cls("builtin", text)


def _parse_hub(text: str, prefix: str, source: Source, known: Collection[str] | None) -> BackboneName:
    rest, at, file = text[len(prefix):].partition("@")
    if at and not file:
        raise UnknownBackboneError(f"{text!r}: no checkpoint file after '@' ({prefix}<name>@/path/to/checkpoint)")
    if source == "timm":
        if not rest or "/" in rest:
            raise UnknownBackboneError(f"{text!r}: expected timm/<model>[@<file>], e.g. timm/resnet50.a1_in1k")
        return BackboneName("timm", rest, file=file or None)
    arch, slash, tag = rest.partition("/")
    if not arch or "/" in tag or (slash and not tag) or (slash and file) or not (tag or file):
        raise UnknownBackboneError(
            f"{text!r}: expected open_clip/<arch>/<pretrained tag>, e.g. open_clip/ViT-B-32/laion2b_s34b_b79k, "
            "or open_clip/<arch>@<file>; tags for an arch: open_clip.list_pretrained_tags_by_model(arch)")
    return BackboneName("open_clip", arch, tag=tag or None, file=file or None)


def _unknown(text: str, known: Collection[str] | None) -> str:
    names = f"Known backbones: {', '.join(sorted(known))}. " if known is not None else ""
    return f"Unknown backbone {text!r}. {names}Other models:\n  " + "\n  ".join(ONLINE_PATTERNS)
