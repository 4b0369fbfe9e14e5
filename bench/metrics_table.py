"""Printing a benchmark's metric/value rows with the machine they were measured on (imported by the bench scripts)."""

from __future__ import annotations

import os


def print_metrics(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title} ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
