"""User × item interaction matrices and item features read from the plain files an operator hands us.

The batch/evaluation path (``echotune-mcp recommend batch|evaluate``) needs three inputs: a TRAIN table of
``user\\titem\\tweight`` rows, a list of user ids, and optionally an item-feature CSV. Each reader validates as it
goes and raises :class:`InputError` naming the file, the line and what was expected, so a bad file fails before
any model is fitted rather than producing silently wrong recommendations.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

TRAIN_HEADER = ("user", "item", "weight")


class InputError(ValueError):
    """A batch/evaluation input file is malformed; the message names the file, line and problem."""


@dataclass
class Interactions:
    """A CSR matrix of summed weights (rows = users, columns = items) plus the id ↔ index maps."""

    matrix: sp.csr_matrix
    user_ids: list[str]
    item_ids: list[str]
    user_index: dict[str, int] = field(default_factory=dict)
    item_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.user_index:
            self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        if not self.item_index:
            self.item_index = {it: i for i, it in enumerate(self.item_ids)}

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @classmethod
    def from_triples(cls, users: list[str], items: list[str], weights: list[float],
                     extra_items: list[str] | None = None) -> Interactions:
        """Build from parallel lists; duplicate (user, item) pairs are summed. ``extra_items`` (e.g. items that
        only have features) get columns too, with no interactions, so they can still be recommended."""
        user_index: dict[str, int] = {}
        item_index: dict[str, int] = {}
        rows = np.fromiter((user_index.setdefault(u, len(user_index)) for u in users), dtype=np.int64,
                           count=len(users))
        cols = np.fromiter((item_index.setdefault(i, len(item_index)) for i in items), dtype=np.int64,
                           count=len(items))
        for it in extra_items or ():
            item_index.setdefault(it, len(item_index))
        data = np.asarray(weights, dtype=np.float32)
        matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(user_index), len(item_index)), dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        return cls(matrix, list(user_index), list(item_index), user_index, item_index)


def _weight(raw: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{where}: weight {raw!r} is not a number (weight must be a finite number >= 0)") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{where}: weight {raw!r} is out of range (weight must be a finite number >= 0)")
    return value


def read_train_tsv(path: str | Path) -> tuple[list[str], list[str], list[float]]:
    """Read TRAIN: a header line ``user<TAB>item<TAB>weight`` (a fourth ``timestamp`` column is allowed and
    ignored), then one interaction per line. Returns parallel (users, items, weights) lists."""
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    weights: list[float] = []
    try:
        fh = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the TRAIN file ({exc.strerror or exc})") from None
    with fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if tuple(h.strip().lower() for h in header[:3]) != TRAIN_HEADER or len(header) > 4:
            raise InputError(f"{path}:1: the first line must be the header 'user<TAB>item<TAB>weight' "
                             f"(optionally a 4th column 'timestamp'), got {'<TAB>'.join(header)[:80]!r}")
        width = len(header)
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != width:
                raise InputError(f"{path}:{lineno}: expected {width} tab-separated columns "
                                 f"({'/'.join(header)}), got {len(parts)}")
            user, item = parts[0].strip(), parts[1].strip()
            if not user or not item:
                raise InputError(f"{path}:{lineno}: empty {'user' if not user else 'item'} id")
            users.append(user)
            items.append(item)
            weights.append(_weight(parts[2].strip(), f"{path}:{lineno}"))
    if not users:
        raise InputError(f"{path}: no interaction rows after the header")
    return users, items, weights


def read_users(path: str | Path) -> list[str]:
    """Read USERS: one user id per line; blank lines skipped, duplicates kept once (first position)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the USERS file ({exc.strerror or exc})") from None
    users = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not users:
        raise InputError(f"{path}: no user ids (expected one user id per line)")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if "\t" in line.strip():
            raise InputError(f"{path}:{lineno}: a user id contains a tab; USERS holds one id per line")
    return users


@dataclass
class ItemFeatures:
    """Item features as one sparse row per item: standardized numeric columns and one-hot text tokens, each
    block scaled to unit norm so neither dominates, then rows L2-normalized (cosine similarity = dot)."""

    item_ids: list[str]
    matrix: sp.csr_matrix
    numeric_columns: list[str]
    text_columns: list[str]

    def aligned(self, item_ids: list[str]) -> sp.csr_matrix:
        """Feature rows reordered to ``item_ids``; items without features get an all-zero row."""
        index = {it: i for i, it in enumerate(self.item_ids)}
        src = np.array([index.get(it, -1) for it in item_ids], dtype=np.int64)
        have = src >= 0
        select = sp.csr_matrix((np.ones(int(have.sum()), dtype=np.float32),
                                (np.flatnonzero(have), src[have])), shape=(len(item_ids), len(self.item_ids)))
        return (select @ self.matrix).tocsr()


def read_item_features(path: str | Path, *, text_separator: str = "|") -> ItemFeatures:
    """Read FEATURES: a CSV with a header; column 1 the item id, the rest numeric or text. A column is numeric
    when every non-empty value parses as a finite number; otherwise it is text, split on ``text_separator``
    into tokens (e.g. ``rock|indie``), each token one-hot. Missing numeric values become the column mean."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the FEATURES file ({exc.strerror or exc})") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or len(header) < 2:
            raise InputError(f"{path}:1: the FEATURES CSV needs a header with the item id column first and at "
                             "least one feature column")
        ids: list[str] = []
        seen: set[str] = set()
        columns: list[list[str]] = [[] for _ in header[1:]]
        for lineno, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InputError(f"{path}:{lineno}: expected {len(header)} columns like the header, got {len(row)}")
            item = row[0].strip()
            if not item:
                raise InputError(f"{path}:{lineno}: empty item id in the first column")
            if item in seen:
                raise InputError(f"{path}:{lineno}: item {item!r} appears twice; one row per item")
            seen.add(item)
            ids.append(item)
            for col, cell in zip(columns, row[1:]):
                col.append(cell.strip())
    if not ids:
        raise InputError(f"{path}: no feature rows after the header")
    return features_from_columns(ids, dict(zip(header[1:], columns)), text_separator=text_separator)


def features_from_columns(ids: list[str], columns: dict[str, list[str]], *, text_separator: str = "|") -> ItemFeatures:
    """Item features from string columns (one value per item): see :func:`read_item_features` for the rules."""
    blocks: list[sp.csr_matrix] = []
    numeric: list[str] = []
    text: list[str] = []
    num_values: list[np.ndarray] = []
    for name, col in columns.items():
        values = _as_numeric(col)
        if values is not None:
            numeric.append(name)
            num_values.append(values)
        else:
            text.append(name)
    if num_values:
        dense = np.column_stack(num_values)
        std = dense.std(axis=0)
        dense = (dense - dense.mean(axis=0)) / np.where(std > 0, std, 1.0)
        blocks.append(sp.csr_matrix(_unit_rows(dense.astype(np.float32))))
    for name, col in columns.items():
        if name not in text:
            continue
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for r, cell in enumerate(col):
            for tok in {t.strip().lower() for t in cell.split(text_separator) if t.strip()}:
                rows.append(r)
                cols.append(vocab.setdefault(tok, len(vocab)))
        onehot = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(ids), len(vocab)))
        blocks.append(unit_rows_sparse(onehot))
    matrix = unit_rows_sparse(sp.hstack(blocks, format="csr", dtype=np.float32))
    return ItemFeatures(ids, matrix, numeric, text)


def _as_numeric(col: list[str]) -> np.ndarray | None:
    out = np.empty(len(col), dtype=np.float64)
    missing = np.zeros(len(col), dtype=bool)
    for i, cell in enumerate(col):
        if not cell:
            missing[i] = True
            continue
        try:
            out[i] = float(cell)
        except ValueError:
            return None
        if not math.isfinite(out[i]):
            return None
    if missing.all():
        return None
    out[missing] = out[~missing].mean()
    return out


def _unit_rows(dense: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return dense / np.where(norms > 0, norms, 1.0)


def unit_rows_sparse(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), so a dot product is a cosine."""
    m = sp.csr_matrix(m, dtype=np.float32)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)) @ m
