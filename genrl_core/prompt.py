"""A prompt, parsed once at the edge (CLI, REST, UI): its kind, its identity and its limits.

    prompt = Prompt.parse("stand up straight")       # text
    prompt = Prompt.parse(Path("clip.mp4"))           # a video file (hashed once, here)
    prompt = Prompt.text(user_input)                  # from the network: never read as a path

Everything below the edge takes the parsed `Prompt`, so no layer validates, hashes or guesses
its kind again. The limits a user can hit live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import numbers
import re
from pathlib import Path
from typing import Literal

from genrl_core.errors import GenRLError

MAX_PROMPT_CHARS = 2000
# `steps`, wherever a user passes it (REST, UI, CLI): how many states the decoded target and the
# imagined rollout videos show. Learning does not depend on it: a policy always learns against
# the target's first `horizon + 1` states (17 by default).
MIN_STEPS, MAX_STEPS = 8, 64
STEPS_HELP = (f"frames of the decoded target and imagined rollout videos ({MIN_STEPS}-{MAX_STEPS}); "
              "learning always uses the target's first horizon + 1 states")
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".avi", ".mkv")
EMPTY_PROMPT = "the prompt is empty: describe what the body should do, e.g. 'stand up straight'"


class PromptError(GenRLError, ValueError):
    """A prompt (text or video) or a request about it that cannot be served: a user error."""


class PromptEmpty(PromptError):
    """A text prompt with nothing in it (the REST API answers 400)."""


class PromptTooLong(PromptError):
    """A text prompt over MAX_PROMPT_CHARS (the REST API answers 413)."""


def check_steps(steps: int) -> int:
    """`steps` as defined above, validated."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise PromptError(f"steps must be between {MIN_STEPS} and {MAX_STEPS}, got {steps!r}")
    return int(steps)  # numpy integers too


def check_text(text: str | None) -> str:
    """A text prompt stripped and validated: not empty, not too long, real Unicode text."""
    if text is not None and not isinstance(text, str):
        raise PromptError(f"a text prompt is a string, not {type(text).__name__}")
    text = (text or "").strip()
    if not text:
        raise PromptEmpty(EMPTY_PROMPT)
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptTooLong(f"the prompt has {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # e.g. a lone surrogate from a JSON "\ud800" escape: not text anyone typed
        raise PromptError("the prompt is not valid Unicode text (it holds a lone surrogate)") from None
    return text


def is_video_name(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def bad_video_name(name: str | None) -> str:
    return f"a video prompt must be one of {', '.join(VIDEO_SUFFIXES)}; got {name or 'no name'!r}"


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A validated prompt. `identity` names what the prompt means for learning (text up to case
    and spacing; a video by its bytes), so the same prompt maps to the same policy."""

    kind: Literal["text", "video"]
    name: str  # readable: the text itself, or "video FILE"
    identity: str
    path: Path | None = None  # the video file

    @classmethod
    def text(cls, text: str | None) -> Prompt:
        """A text prompt. Use this for input from the network: it is never taken for a file path."""
        text = check_text(text)
        return cls("text", text, "text:" + " ".join(text.lower().split()))

    @classmethod
    def video(cls, path: str | Path) -> Prompt:
        """A video prompt: the file must exist; it is hashed here, once."""
        path = Path(path)
        if not path.is_file():
            raise PromptError(f"video prompt {path} " + ("is not a file" if path.exists() else "does not exist"))
        if not is_video_name(path.name):
            raise PromptError(bad_video_name(path.name))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls("video", f"video {path.name}", "video:" + digest, path)

    @classmethod
    def parse(cls, value: str | Path | Prompt) -> Prompt:
        """CLI-style input: a Path, or a string ending in a video suffix, is a video file; any
        other string is text. A parsed Prompt passes through unchanged."""
        if isinstance(value, Prompt):
            return value
        if isinstance(value, Path) or (isinstance(value, str) and is_video_name(value.strip())):
            return cls.video(value.strip() if isinstance(value, str) else value)
        if isinstance(value, str):
            return cls.text(value)
        raise PromptError(f"a prompt is text or a video file path, not {type(value).__name__}")

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def slug_name(self) -> str:
        """The readable start of a policy's folder name."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:40] or "prompt"
