"""The figures' own decisions: class styles that stay distinct, rank labels that never overprint, legends
outside the points, labelled axes, and the true class beside the prediction of a single-spectrum explanation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from trainer.plots import class_styles, plot_embedding, rank_label_rows


def test_every_class_of_a_large_model_gets_its_own_colour_and_marker():
    styles = class_styles(27)  # the RRUFF model
    assert len({(tuple(s.color), s.marker) for s in styles}) == 27
    # tab20 gave 12+ classes pale/dark pairs of one hue; every colour here is one of tab10's ten.
    assert len({tuple(s.color) for s in styles}) == 10
    assert styles[0].marker != styles[10].marker != styles[20].marker


def test_rank_labels_of_neighbouring_regions_go_to_different_rows():
    # Three adjacent 20 cm^-1 regions on a 1000 cm^-1 axis, and one far away.
    rows = rank_label_rows([510.0, 530.0, 550.0, 900.0], span=1000.0)
    assert rows[0] != rows[1] and rows[1] != rows[2]
    assert rows[3] == 0  # far from the others: back on the first row
    # Well separated labels all stay on the first row.
    assert rank_label_rows([100.0, 400.0, 700.0], span=1000.0) == [0, 0, 0]


def test_rows_never_hold_two_labels_closer_than_the_gap():
    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 1000, 40).tolist()
    rows = rank_label_rows(centres, span=1000.0, min_gap=0.035)
    for r in set(rows):
        xs = sorted(x for x, rr in zip(centres, rows, strict=True) if rr == r)
        assert all(b - a >= 35.0 for a, b in itertools.pairwise(xs))


def test_embedding_figure_has_labelled_axes_and_its_legend_beside_the_points(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    saved: list[Figure] = []
    real = Figure.savefig

    def keep(self, *a, **k):
        saved.append(self)
        return real(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", keep)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(14), 5)
    P = rng.normal(size=(y.size, 2))
    path = plot_embedding(tmp_path / "e.png", [(P, "a", ("PC 1 (40%)", "PC 2 (20%)")), (P, "b", ("x", "y"))],
                          y=y, classes=[f"class {i}" for i in range(14)])
    assert path.stat().st_size > 0
    fig = saved[0]
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC 1 (40%)", "PC 2 (20%)")
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 14  # every class, also beyond 12 (the old plot dropped the legend)
    # The legend starts right of every axes: it cannot cover a point.
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    right_of_axes = max(a.get_window_extent(renderer).x1 for a in fig.axes)
    assert legend.get_window_extent(renderer).x0 >= right_of_axes
