"""What every benchmark writes beside its numbers: the machine it ran on, and its results as json and markdown.

Nothing heavy is imported at the top, so scripts that spawn measuring processes of their own (``bench_store``,
``bench_collect``) can use it without slowing them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU's model name with its family/model numbers and bf16 units, e.g.
    ``AMD EPYC (family 25 model 17; AVX-512 BF16)``: cloud CPUs often report only a vendor line, and
    whether bf16 is native decides which precision is fast."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model", "flags") and key not in fields:
                fields[key] = value.strip()
            if len(fields) == 4:
                break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown"
    flags = set(fields.get("flags", "").split())
    units = [label for flag, label in (("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX")) if flag in flags]
    if not units and "avx2" in flags:
        units = ["AVX2, no native bf16"]
    ident = f"family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields and "model" in fields else ""
    extra = "; ".join(x for x in (ident, ", ".join(units)) if x)
    return f"{name} ({extra})" if extra else name


def run_meta(quick: bool, **extra: Any) -> dict[str, Any]:
    """What every result json records about its run (``quick``, threads, CPU model, versions, UTC date), then
    the script's own ``extra`` fields: results are compared across machines, so none may leave the CPU out."""
    import torch  # here, not at the top: scripts whose workers re-import them stay light

    return {"quick": quick, "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "cpu": cpu_name(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}


def write_results(out: str | Path, table: str, meta: dict[str, Any], **payload: Any) -> None:
    """Print ``table`` and write ``{"meta": meta, **payload}`` to the json ``out`` and the table to the .md beside
    it (folders made as needed); a ``quick`` run's table says on its first line that it measures nothing."""
    out = Path(out)
    if meta.get("quick"):
        first, _, rest = table.partition("\n")
        table = f"{first} — QUICK (not a measurement)\n{rest}"
    print("\n" + table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, **payload}, indent=1) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
