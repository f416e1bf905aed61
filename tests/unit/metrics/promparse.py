"""A small, strict parser of the Prometheus text exposition format (0.0.4), for tests.

Strict on purpose: every family needs HELP then TYPE before its samples, families are
not interleaved, label values may only use the three escapes the format defines, a
histogram's buckets must be cumulative and end with le="+Inf" equal to _count.
Independent of kms.metrics (it shares no code with the renderer).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_HELP_RE = re.compile(rf"# HELP ({_NAME}) (.*)\Z")
_TYPE_RE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)\Z")
_SAMPLE_HEAD_RE = re.compile(rf"({_NAME})(\{{|\s)")


class ParseError(ValueError):
    pass


@dataclass
class Family:
    name: str
    help: str
    type: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, sample_name: str | None = None, **labels: str) -> float:
        """The value of the one sample with exactly these labels."""
        want = sample_name or self.name
        hits = [v for n, lab, v in self.samples if n == want and lab == labels]
        if len(hits) != 1:
            raise KeyError(f"{want}{labels}: {len(hits)} samples")
        return hits[0]


def _unescape_help(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                raise ParseError("dangling backslash in HELP")
            nxt = text[i + 1]
            if nxt == "\\":
                out.append("\\")
            elif nxt == "n":
                out.append("\n")
            else:
                raise ParseError(f"bad escape \\{nxt} in HELP")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _parse_labels(text: str, pos: int) -> tuple[dict[str, str], int]:
    """Parse `{a="x",b="y"}` starting at text[pos] == '{'; return labels and index after '}'."""
    assert text[pos] == "{"
    pos += 1
    labels: dict[str, str] = {}
    while True:
        if pos >= len(text):
            raise ParseError("unterminated label set")
        if text[pos] == "}":
            return labels, pos + 1
        m = re.compile(_LABEL).match(text, pos)
        if not m:
            raise ParseError(f"bad label name at {pos}: {text!r}")
        name = m.group(0)
        pos = m.end()
        if text[pos : pos + 2] != '="':
            raise ParseError(f'expected =" after label {name}')
        pos += 2
        value: list[str] = []
        while True:
            if pos >= len(text):
                raise ParseError("unterminated label value")
            ch = text[pos]
            if ch == "\\":
                nxt = text[pos + 1 : pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ParseError(f"bad escape \\{nxt} in label value")
                value.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif ch == '"':
                pos += 1
                break
            elif ch == "\n":
                raise ParseError("raw newline in label value")
            else:
                value.append(ch)
                pos += 1
        if name in labels:
            raise ParseError(f"duplicate label {name}")
        labels[name] = "".join(value)
        if text[pos : pos + 1] == ",":
            pos += 1
        elif text[pos : pos + 1] != "}":
            raise ParseError(f"expected , or }} at {pos}")


def _parse_value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ParseError(f"bad sample value {text!r}")
    return float(text)


def _family_of(sample: str, families: dict[str, Family]) -> Family:
    if sample in families and families[sample].type != "histogram":
        return families[sample]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample[: -len(suffix)]
        if sample.endswith(suffix) and base in families and families[base].type == "histogram":
            return families[base]
    raise ParseError(f"sample {sample} has no declared family")


def parse(text: str) -> dict[str, Family]:
    if not text.endswith("\n"):
        raise ParseError("exposition must end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    closed: set[str] = set()
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        if line == "":
            raise ParseError(f"line {lineno}: blank line")
        if line.startswith("# HELP "):
            m = _HELP_RE.match(line)
            if not m:
                raise ParseError(f"line {lineno}: bad HELP")
            name = m.group(1)
            if name in families:
                raise ParseError(f"line {lineno}: family {name} declared twice")
            if current is not None:
                closed.add(current.name)
            current = families[name] = Family(name, _unescape_help(m.group(2)))
            continue
        if line.startswith("# TYPE "):
            m = _TYPE_RE.match(line)
            if not m or current is None or m.group(1) != current.name or current.type:
                raise ParseError(f"line {lineno}: TYPE must follow the family's HELP once")
            current.type = m.group(2)
            continue
        if line.startswith("#"):
            raise ParseError(f"line {lineno}: unexpected comment")
        m = _SAMPLE_HEAD_RE.match(line)
        if not m:
            raise ParseError(f"line {lineno}: bad sample {line!r}")
        sample = m.group(1)
        pos = m.end(1)
        labels: dict[str, str] = {}
        if line[pos] == "{":
            labels, pos = _parse_labels(line, pos)
        if line[pos : pos + 1] != " ":
            raise ParseError(f"line {lineno}: expected one space before the value")
        rest = line[pos + 1 :].split(" ")
        if len(rest) not in (1, 2):
            raise ParseError(f"line {lineno}: trailing garbage")
        fam = _family_of(sample, families)
        if fam is not current or not fam.type:
            raise ParseError(f"line {lineno}: sample {sample} outside its family block")
        fam.samples.append((sample, labels, _parse_value(rest[0])))
    for fam in families.values():
        _check_family(fam)
    return families


def _check_family(fam: Family) -> None:
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for name, labels, value in fam.samples:
        ident = (name, tuple(sorted(labels.items())))
        if ident in seen:
            raise ParseError(f"duplicate sample {name}{labels}")
        seen.add(ident)
        if fam.type == "counter" and not (value >= 0):
            raise ParseError(f"counter {name} is negative")
    if fam.type != "histogram":
        return
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    sums: dict[tuple[tuple[str, str], ...], float] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for name, labels, value in fam.samples:
        if name.endswith("_bucket"):
            if "le" not in labels:
                raise ParseError(f"{name} without le")
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            series.setdefault(rest, []).append((_parse_value(labels["le"]), value))
        elif name.endswith("_sum"):
            sums[tuple(sorted(labels.items()))] = value
        else:
            counts[tuple(sorted(labels.items()))] = value
    if set(series) != set(sums) or set(series) != set(counts):
        raise ParseError(f"histogram {fam.name}: _bucket/_sum/_count series differ")
    for key, buckets in series.items():
        bounds = [b for b, _ in buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ParseError(f"histogram {fam.name}{key}: le not strictly increasing")
        if not math.isinf(bounds[-1]):
            raise ParseError(f"histogram {fam.name}{key}: no +Inf bucket")
        vals = [v for _, v in buckets]
        if any(a > b for a, b in itertools.pairwise(vals)):
            raise ParseError(f"histogram {fam.name}{key}: buckets not cumulative")
        if vals[-1] != counts[key]:
            raise ParseError(f"histogram {fam.name}{key}: +Inf bucket != _count")
