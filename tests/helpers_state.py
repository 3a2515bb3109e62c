"""Exact comparison of checkpoints, for the resume tests."""

from __future__ import annotations

from typing import Any

import torch


def assert_same_state(a: Any, b: Any, path: str = "state") -> None:
    """Nested checkpoints (dicts, lists, tensors, numbers) are identical, tensor for tensor
    (torch.equal: same dtype, shape and every value, bit for bit)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), path
    else:
        assert a == b, path
