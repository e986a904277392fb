"""Prometheus text-format metrics, written by hand: a few counters, gauges and histograms, no dependency."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from edge_runtime.records import Committed
from spectral_core.drift import window_alarm

__all__ = ["LATENCY_BUCKETS_S", "Metrics"]

#: Histogram bucket upper bounds, seconds.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES = ("read", "preprocess", "inference", "queue", "total")
#: spectra in the recent drift window (its flag rate and alarm)
DRIFT_WINDOW = 100


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        i = 0
        for i, b in enumerate(LATENCY_BUCKETS_S):  # noqa: B007
            if v <= b:
                break
        else:
            i = len(LATENCY_BUCKETS_S)
        self.counts[i] += 1
        self.sum += v
        self.n += 1


def _percentiles_ms(ordered: list[float]) -> dict[str, float]:
    """p50, p95 and max of sorted latencies in seconds, as milliseconds."""
    return {q: round(1e3 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)
            for q, p in (("p50", 0.5), ("p95", 0.95), ("max", 1.0))}


class Metrics:
    """Counts by class and by error kind, latency histograms per stage, queue depth, what is served."""

    def __init__(self, info: dict[str, str], queue_depth: Callable[[], int] = lambda: 0) -> None:
        self.info = dict(info)
        self.queue_depth = queue_depth
        self._lock = threading.Lock()
        self._by_class: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._unknown = 0
        self._drift = 0
        self._drift_checked = 0
        self._drift_recent: deque[bool] = deque(maxlen=DRIFT_WINDOW)
        #: the served model's expected drift-flag rate on in-distribution spectra (None: no drift model)
        self.drift_expected: float | None = None
        self._duplicates = 0
        self._batches = 0
        self._hist = {s: _Histogram() for s in STAGES}
        self._t0 = time.monotonic()
        self.ready = False
        self._updates = {"accepted": 0, "rejected": 0}
        self._last_rejection = ""
        # recent window for the dashboard: (commit time, records) and total latencies, s
        self._commits: deque[tuple[float, int]] = deque(maxlen=4096)
        self._recent_total: deque[float] = deque(maxlen=500)
        # and per stage: the model's time (the micro-batch's session run) apart from queueing
        self._recent_stage: dict[str, deque[float]] = {k: deque(maxlen=500) for k in ("inference", "preprocess", "queue")}

    def set_info(self, info: dict[str, str]) -> None:
        """What is being served changed (a model swap)."""
        with self._lock:
            self.info = dict(info)

    def model_update(self, accepted: bool, reason: str) -> None:
        """Count a model update; a rejection's reason is kept for ``ramanedge_model_update_rejected_info``."""
        with self._lock:
            self._updates["accepted" if accepted else "rejected"] += 1
            if not accepted:
                self._last_rejection = reason[:300]

    def set_drift_expected(self, rate: float | None) -> None:
        """The served model's expected drift-flag rate (a model swap starts a new window)."""
        with self._lock:
            self.drift_expected = rate
            self._drift_recent.clear()

    def _drift_window(self) -> dict[str, Any] | None:
        if self.drift_expected is None:
            return None
        n = len(self._drift_recent)
        k = sum(self._drift_recent)
        return {"flagged": k, "of": n, "rate": round(k / n, 4) if n else None,
                "expected_rate": round(self.drift_expected, 4), "alarm": window_alarm(k, n, self.drift_expected)}

    def snapshot(self, window_s: float = 10.0) -> dict[str, Any]:
        """Counts, throughput over the last ``window_s`` and recent latency percentiles (for the dashboard)."""
        now = time.monotonic()
        with self._lock:
            recent = [(t, n) for t, n in self._commits if now - t <= window_s]
            lat = sorted(self._recent_total)
            stages = {k: sorted(v) for k, v in self._recent_stage.items() if v}
            span = min(window_s, now - self._t0)
            out: dict[str, Any] = {
                "results_by_class": dict(self._by_class),
                "errors_by_kind": dict(self._errors),
                "unknown": self._unknown,
                "drift": self._drift,
                "drift_checked": self._drift_checked,
                "drift_window": self._drift_window(),
                "duplicates": self._duplicates,
                "batches": self._batches,
                "throughput_per_s": round(sum(n for _, n in recent) / span, 3) if span > 0 else 0.0,
                "latency_ms": None,
                "model_updates": dict(self._updates),
                "queue_depth": self.queue_depth(),
                "uptime_s": round(now - self._t0, 1),
            }
        if lat:
            out["latency_ms"] = _percentiles_ms(lat)
        # what each latency means: total = arrival to committed and handed to the sinks (queueing included); inference = the model's
        # session run of the micro-batch; queue = total minus reading, preprocessing and inference
        out["latency_ms_by_stage"] = {k: _percentiles_ms(v) for k, v in stages.items()}
        return out

    def observe(self, committed: Sequence[Committed], now_mono: float | None = None) -> None:
        """Account for a committed micro-batch."""
        now = time.monotonic() if now_mono is None else now_mono
        with self._lock:
            self._batches += 1
            self._commits.append((now, sum(1 for c in committed if not c.duplicate)))
            for c in committed:
                if c.duplicate:
                    self._duplicates += 1
                    continue
                o = c.outcome
                if o.ok and o.class_name is not None:
                    self._by_class[o.class_name] = self._by_class.get(o.class_name, 0) + 1
                    if o.unknown:
                        self._unknown += 1
                    if o.drift is not None:
                        self._drift_checked += 1
                        self._drift += int(o.drift)
                        self._drift_recent.append(bool(o.drift))
                    self._hist["preprocess"].observe(o.preprocess_s)
                    self._hist["inference"].observe(o.inference_s)
                    self._recent_stage["preprocess"].append(o.preprocess_s)
                    self._recent_stage["inference"].append(o.inference_s)
                else:
                    kind = o.error_kind or "unknown"
                    self._errors[kind] = self._errors.get(kind, 0) + 1
                f = o.frame
                total = max(0.0, now - f.t_received)
                self._hist["read"].observe(f.read_s)
                self._hist["total"].observe(total)
                self._recent_total.append(total)
                queued = max(0.0, total - f.read_s - o.preprocess_s - o.inference_s)
                self._hist["queue"].observe(queued)
                self._recent_stage["queue"].append(queued)

    @property
    def processed(self) -> int:
        with self._lock:
            return sum(self._by_class.values()) + sum(self._errors.values())

    def render(self) -> str:
        """The metrics in Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        with self._lock:
            labels = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(self.info.items()))
            lines += ["# HELP ramanedge_model_info What is being served (value is always 1).",
                      "# TYPE ramanedge_model_info gauge", f"ramanedge_model_info{{{labels}}} 1"]
            lines += ["# HELP ramanedge_ready 1 when the daemon accepts spectra.", "# TYPE ramanedge_ready gauge",
                      f"ramanedge_ready {int(self.ready)}"]
            lines += ["# HELP ramanedge_uptime_seconds Seconds since start-up.",
                      "# TYPE ramanedge_uptime_seconds gauge",
                      f"ramanedge_uptime_seconds {time.monotonic() - self._t0:.3f}"]
            lines += ["# HELP ramanedge_results_total Spectra classified, by predicted class.",
                      "# TYPE ramanedge_results_total counter"]
            lines += [f'ramanedge_results_total{{class="{_esc(c)}"}} {n}' for c, n in sorted(self._by_class.items())]
            lines += ["# HELP ramanedge_unknown_total Spectra flagged unknown by the open-set check.",
                      "# TYPE ramanedge_unknown_total counter", f"ramanedge_unknown_total {self._unknown}"]
            lines += ["# HELP ramanedge_drift_total Spectra flagged as drift (Hotelling T^2 or Q beyond its limit).",
                      "# TYPE ramanedge_drift_total counter", f"ramanedge_drift_total {self._drift}",
                      "# HELP ramanedge_drift_checked_total Spectra scored by the drift model (rate: drift / checked).",
                      "# TYPE ramanedge_drift_checked_total counter", f"ramanedge_drift_checked_total {self._drift_checked}"]
            w = self._drift_window()
            if w is not None:
                lines += [f"# HELP ramanedge_drift_window_ratio Fraction of the last {DRIFT_WINDOW} scored spectra "
                          "flagged as drift.", "# TYPE ramanedge_drift_window_ratio gauge",
                          f"ramanedge_drift_window_ratio {w['rate'] or 0.0:g}",
                          "# HELP ramanedge_drift_expected_ratio Drift-flag rate of the model's own held-out "
                          "training spectra.", "# TYPE ramanedge_drift_expected_ratio gauge",
                          f"ramanedge_drift_expected_ratio {w['expected_rate']:g}",
                          "# HELP ramanedge_drift_alarm 1 when the window's flag rate is beyond chance (binomial "
                          "test, p < 0.001).", "# TYPE ramanedge_drift_alarm gauge",
                          f"ramanedge_drift_alarm {int(w['alarm'])}"]
            lines += ["# HELP ramanedge_errors_total Inputs recorded as errors, by kind.",
                      "# TYPE ramanedge_errors_total counter"]
            lines += [f'ramanedge_errors_total{{kind="{_esc(k)}"}} {n}' for k, n in sorted(self._errors.items())]
            lines += ["# HELP ramanedge_duplicates_total Dropped files already in the ledger (not recorded twice).",
                      "# TYPE ramanedge_duplicates_total counter", f"ramanedge_duplicates_total {self._duplicates}"]
            lines += ["# HELP ramanedge_batches_total Micro-batches committed.", "# TYPE ramanedge_batches_total counter",
                      f"ramanedge_batches_total {self._batches}"]
            lines += ["# HELP ramanedge_model_updates_total Model files checked for a hot swap, by result.",
                      "# TYPE ramanedge_model_updates_total counter"]
            lines += [f'ramanedge_model_updates_total{{result="{k}"}} {n}' for k, n in sorted(self._updates.items())]
            if self._last_rejection:
                lines += ["# HELP ramanedge_model_update_rejected_info Why the last model update was rejected.",
                          "# TYPE ramanedge_model_update_rejected_info gauge",
                          f'ramanedge_model_update_rejected_info{{reason="{_esc(self._last_rejection)}"}} 1']
            lines += ["# HELP ramanedge_queue_depth Frames waiting for the engine.", "# TYPE ramanedge_queue_depth gauge",
                      f"ramanedge_queue_depth {self.queue_depth()}"]
            lines += ["# HELP ramanedge_latency_seconds Latency by stage (total: received to committed).",
                      "# TYPE ramanedge_latency_seconds histogram"]
            for stage, h in self._hist.items():
                cum = 0
                for b, c in zip(LATENCY_BUCKETS_S, h.counts, strict=False):
                    cum += c
                    lines.append(f'ramanedge_latency_seconds_bucket{{stage="{stage}",le="{b:g}"}} {cum}')
                lines.append(f'ramanedge_latency_seconds_bucket{{stage="{stage}",le="+Inf"}} {h.n}')
                lines.append(f'ramanedge_latency_seconds_sum{{stage="{stage}"}} {h.sum:.6f}')
                lines.append(f'ramanedge_latency_seconds_count{{stage="{stage}"}} {h.n}')
        return "\n".join(lines) + "\n"
