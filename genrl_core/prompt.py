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
import unicodedata
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
PLAIN_TEXT = "send plain text, e.g. 'stand up straight'"
EMPTY_PROMPT = "the prompt is empty: describe what the body should do, e.g. 'stand up straight'"
INVISIBLE_PROMPT = ("the prompt is empty: it has only invisible characters (zero-width spaces, joiners, marks); "
                    "describe what the body should do, e.g. 'stand up straight'")


class PromptError(GenRLError, ValueError):
    """A prompt (text or video) or a request about it that cannot be served: a user error."""


class PromptEmpty(PromptError):
    """A text prompt with nothing in it (the REST API answers 400)."""


class PromptTooLong(PromptError):
    """A text prompt over MAX_PROMPT_CHARS (the REST API answers 422, as for any field over its
    documented maximum)."""


# Characters no typed prompt holds, by what a message calls them. They are refused rather than
# dropped: a NUL, a control character or the U+FFFD left by bytes that were not UTF-8 means the text
# was garbled on its way, and a bidi override shows a policy's prompt in another order than it is
# stored. Tab, newline and carriage return are ordinary whitespace (a pasted prompt has them).
_BAD_RANGES = {
    "a NUL character": r"\x00",
    "a control character": r"\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f",
    "a lone surrogate, which is not valid Unicode text": r"\ud800-\udfff",
    "a bidirectional override or isolate, which shows text in another order than it is stored":
        r"\u202a-\u202e\u2066-\u2069",
    "a replacement character, left where the text was not valid UTF-8": r"\ufffd",
    "a noncharacter, which is not valid in text": r"\ufdd0-\ufdef\ufffe\uffff",
}
_BAD_CLASS = "".join(_BAD_RANGES.values())
_BAD = re.compile(f"[{_BAD_CLASS}]")
_BAD_KIND = [(re.compile(f"[{chars}]"), kind) for kind, chars in _BAD_RANGES.items()]
# The rule above plus "something that is not whitespace", as a regular expression that JSON Schema
# (ECMAScript) and Python read alike, for the OpenAPI document: a schema-valid prompt is one the
# server takes, up to invisible-only text (below), which no such pattern can express. Without the
# surrogates: an ECMAScript pattern without the u flag sees an emoji as two of them, and a lone one
# is no valid JSON text to begin with.
_SCHEMA_CLASS = "".join(chars for kind, chars in _BAD_RANGES.items() if "surrogate" not in kind)
PROMPT_PATTERN = f"^[^{_SCHEMA_CLASS}]*[^{_SCHEMA_CLASS}\\s][^{_SCHEMA_CLASS}]*$"
# Letters and symbols that draw nothing (Hangul fillers, the braille blank): with whitespace, format
# characters (zero-width space and joiners, the byte-order mark, direction marks) and lone combining
# marks (variation selectors), a prompt of only these is empty, though str.strip() keeps them.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_INVISIBLE_CATEGORIES = ("Cf", "Mn", "Me", "Zs", "Zl", "Zp")


def _invisible(ch: str) -> bool:
    return ch.isspace() or ch in _BLANK or unicodedata.category(ch) in _INVISIBLE_CATEGORIES


def _bad_character(text: str) -> str | None:
    """The message for the first character of `text` that no prompt may hold, or None."""
    found = _BAD.search(text)
    if found is None:  # the noncharacters beyond the first plane: U+1FFFE, U+1FFFF, ... U+10FFFF
        at = next((i for i, ch in enumerate(text) if ord(ch) >= 0x1FFFE and ord(ch) & 0xFFFE == 0xFFFE), None)
        return None if at is None else (f"the prompt holds a noncharacter, which is not valid in text "
                                        f"(U+{ord(text[at]):04X}, character {at + 1}): {PLAIN_TEXT}")
    ch = found.group()
    kind = next(k for pattern, k in _BAD_KIND if pattern.match(ch))
    return f"the prompt holds {kind} (U+{ord(ch):04X}, character {found.start() + 1}): {PLAIN_TEXT}"


def check_steps(steps: int) -> int:
    """`steps` as defined above, validated."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise PromptError(f"steps must be between {MIN_STEPS} and {MAX_STEPS}, got {steps!r}")
    return int(steps)  # numpy integers too


def check_text(text: str | None) -> str:
    """A text prompt validated and normalised: real Unicode text without control or bidi override
    characters, at most MAX_PROMPT_CHARS as sent, something visible in it; returned without the
    whitespace and invisible format characters around it, in NFC (so an accent typed as one code
    point or as a letter plus a combining mark is the same prompt)."""
    if text is not None and not isinstance(text, str):
        raise PromptError(f"a text prompt is a string, not {type(text).__name__}")
    text = text or ""
    # the length as sent, as the OpenAPI document's maxLength counts it; checked first, so the
    # character-by-character checks below never see more than MAX_PROMPT_CHARS
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptTooLong(f"the prompt has {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed")
    # before stripping: str.strip() drops the separators U+001C-U+001F and U+0085, and "\x1e" alone
    # must be refused for what it is, not as empty
    problem = _bad_character(text)
    if problem:
        raise PromptError(problem)
    if all(_invisible(ch) for ch in text):  # all() of nothing: "" too
        raise PromptEmpty(EMPTY_PROMPT if not text.strip() else INVISIBLE_PROMPT)
    start, end = 0, len(text)
    while text[start].isspace() or unicodedata.category(text[start]) == "Cf":  # a visible one stops both
        start += 1
    while text[end - 1].isspace() or unicodedata.category(text[end - 1]) == "Cf":
        end -= 1
    return unicodedata.normalize("NFC", text[start:end])


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

    def to_record(self) -> dict[str, str | None]:
        """The prompt as JSON, for a job row: `from_record` gives it back without parsing it again."""
        return {"kind": self.kind, "name": self.name, "identity": self.identity,
                "path": str(self.path) if self.path else None}

    @classmethod
    def from_record(cls, record: dict[str, str | None]) -> Prompt:
        """A prompt `to_record` wrote: parsed once already, so neither validated nor hashed here (a
        video prompt's identity stays the digest of the bytes the request sent)."""
        if not record or record.get("kind") not in ("text", "video"):
            raise PromptError("this job holds no parsed prompt; submit the request again")
        path = record.get("path")
        return cls(record["kind"], record["name"], record["identity"], Path(path) if path else None)

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def slug_name(self) -> str:
        """The readable start of a policy's folder name."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:40] or "prompt"
