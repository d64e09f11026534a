"""What a `prepare` run kept and dropped, as JSON and as a printed table."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from training.data.filters import ORDER
from training.data.throughput import Work

STAGES = (*ORDER, "near_dup", "decontaminated", "license")


@dataclass
class Report:
    files_in: int = 0
    bytes_in: int = 0
    files_out: int = 0
    bytes_out: int = 0
    dropped: dict[str, list[int]] = field(default_factory=lambda: {s: [0, 0] for s in STAGES})
    licenses_in: Counter = field(default_factory=Counter)
    licenses_out: Counter = field(default_factory=Counter)
    repos_out: Counter = field(default_factory=Counter)  # bytes kept per repository
    duplicate_clusters: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=lambda: {"files": 0, "findings": Counter()})
    work: Work = field(default_factory=Work)  # CPU time and bytes per stage
    wall_seconds: dict[str, float] = field(default_factory=dict)  # per pass

    def add_input(self, rec: dict) -> None:
        self.files_in += 1
        self.bytes_in += int(rec["size"])
        self.licenses_in[rec["license"]] += 1

    def drop(self, stage: str, rec: dict) -> None:
        self.dropped[stage][0] += 1
        self.dropped[stage][1] += int(rec["size"])

    def keep(self, rec: dict) -> None:
        self.files_out += 1
        self.bytes_out += int(rec["size"])
        self.licenses_out[rec["license"]] += 1
        self.repos_out[rec["repo_name"]] += int(rec["size"])

    def to_dict(self) -> dict:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs as keys.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["licenses_in"] = dict(self.licenses_in.most_common())
        out["licenses_out"] = dict(self.licenses_out.most_common())
        out["repos_out"] = dict(self.repos_out.most_common(20))
        out["secrets"] = {
            "files": self.secrets["files"],
            "findings": dict(self.secrets["findings"]),
        }
        out["work"] = self.work.summary()
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False))

    def table(self) -> str:
        lines = [f"{'stage':<18}{'files left':>12}{'dropped':>10}{'MB left':>10}{'MB dropped':>12}"]
        files, nbytes = self.files_in, self.bytes_in
        lines.append(f"{'input':<18}{files:>12}{'':>10}{nbytes / 1e6:>10.1f}{'':>12}")
        for stage in STAGES:
            n, b = self.dropped[stage]
            files, nbytes = files - n, nbytes - b
            lines.append(f"{stage:<18}{files:>12}{n:>10}{nbytes / 1e6:>10.1f}{b / 1e6:>12.2f}")
        clusters = self.duplicate_clusters
        lines.append(
            f"near-dup clusters: {clusters.get('clusters', 0)}, files removed: "
            f"{clusters.get('removed', 0)}, largest: {clusters.get('largest_sizes', [])[:5]}"
        )
        lines.append(
            f"secrets scrubbed: {self.secrets['files']} files, {dict(self.secrets['findings'])}"
        )
        lines.append(
            "licenses in/out: "
            + ", ".join(
                f"{name} {self.licenses_in[name]}/{self.licenses_out[name]}"
                for name, _ in self.licenses_in.most_common()
            )
        )
        lines.append(
            "top repositories (MB kept): "
            + ", ".join(f"{repo} {b / 1e6:.1f}" for repo, b in self.repos_out.most_common(8))
        )
        for stage, t in self.work.summary().items():
            lines.append(
                f"throughput {stage:<14} {t['mb']:>8.1f} MB {t['cpu_s']:>8.1f} CPU s "
                f"{t['mb_s_per_core']:>8.2f} MB/s per core"
            )
        lines.append("wall seconds: " + ", ".join(f"{k} {v}" for k, v in self.wall_seconds.items()))
        return "\n".join(lines)
