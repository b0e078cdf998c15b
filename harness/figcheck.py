"""Refuse a figure with no data, an empty legend, or a curve without the interval it should carry.

A PNG cannot be inspected for these after the fact, so the check runs on the matplotlib
``Figure`` before it is saved: a report stage calls ``check_figure(fig, name, intervals=...)``
(or ``save_checked``) and the stage fails instead of committing a misleading figure.

What is checked, per visible axes (colorbars and axes with their axis turned off are skipped):

* **data**: at least one artist with a finite data point: a line, a scatter/fill/errorbar
  collection, a bar or other patch, an image. An axes holding only text is empty;
* **legends**: every legend (per axes and figure-level) has at least one entry. ``ax.legend()``
  with no labelled artist draws an empty box; that is an error here;
* **intervals**, when the caller declares that the plotted quantities have them
  (``intervals=True`` for every labelled curve, or label globs): each labelled line must have
  an interval: a ``fill_between`` band covering its points, or be drawn with ``errorbar``.
  Reference lines (``axhline``/``axvline``) are not curves and need none.

``image_problems(path)`` is the after-the-fact check of a committed PNG: it loads, and it is not
a single colour. That catches only blank or corrupt files; the rest needs ``check_figure``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path

import numpy as np


class FigureError(ValueError):
    pass


def _finite_xy(xy) -> np.ndarray:
    arr = np.asarray(xy, dtype=float)
    if arr.size == 0:
        return arr.reshape(0, 2)
    arr = arr.reshape(-1, 2)
    return arr[np.all(np.isfinite(arr), axis=1)]


def _axes_name(ax, i: int) -> str:
    title = ax.get_title() or ax.get_ylabel() or ""
    return f"axes {i}" + (f" ({title!r})" if title else "")


def _has_data(ax) -> bool:
    from matplotlib.collections import Collection, PathCollection, QuadMesh
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    for line in ax.get_lines():
        if isinstance(line, Line2D) and line.get_visible() and len(_finite_xy(line.get_xydata())):
            return True
    for coll in ax.collections:
        if not isinstance(coll, Collection) or not coll.get_visible():
            continue
        if isinstance(coll, PathCollection):  # a scatter: its data are the offsets (the paths are markers)
            if len(_finite_xy(coll.get_offsets())):
                return True
            continue
        if isinstance(coll, QuadMesh):
            if np.ma.masked_invalid(np.asarray(coll.get_array(), dtype=float)).count():
                return True
            continue
        for path in coll.get_paths():
            if len(_finite_xy(path.vertices)):
                return True
    for patch in ax.patches:
        if isinstance(patch, Patch) and patch.get_visible() and len(_finite_xy(patch.get_path().vertices)):
            return True
    for image in ax.images:
        if isinstance(image, AxesImage) and image.get_visible():
            arr = np.ma.masked_invalid(np.asarray(image.get_array(), dtype=float))
            if arr.count():
                return True
    return False


def _legend_problems(legend, where: str) -> list[str]:
    if legend is None:
        return []
    texts = [t.get_text() for t in legend.get_texts()]
    if not texts or not any(t.strip() for t in texts):
        return [f"{where}: empty legend (no labelled artist)"]
    return []


def _bands(ax) -> list[tuple[float, float, float, float]]:
    """(xmin, xmax, ymin, ymax) of every filled band (fill_between/fill) in the axes."""
    from matplotlib.collections import PolyCollection

    out = []
    for coll in ax.collections:
        if isinstance(coll, PolyCollection) and coll.get_visible():
            for path in coll.get_paths():
                v = _finite_xy(path.vertices)
                if len(v):
                    out.append((v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max()))
    return out


def _covered(points: np.ndarray, band: tuple[float, float, float, float]) -> bool:
    x0, x1, y0, y1 = band
    tol_x = 1e-9 * max(1.0, abs(x0), abs(x1))
    tol_y = 1e-9 * max(1.0, abs(y0), abs(y1))
    return bool(np.all((points[:, 0] >= x0 - tol_x) & (points[:, 0] <= x1 + tol_x)
                       & (points[:, 1] >= y0 - tol_y) & (points[:, 1] <= y1 + tol_y)))


def _wanted(label: str, intervals) -> bool:
    if intervals is True:
        return True
    return any(fnmatch.fnmatchcase(label, pattern) for pattern in intervals)


def _interval_problems(ax, where: str, intervals) -> list[str]:
    from matplotlib.container import ErrorbarContainer

    errorbar_lines = {id(c.lines[0]) for c in ax.containers
                      if isinstance(c, ErrorbarContainer) and c.lines[0] is not None and (c.has_yerr or c.has_xerr)}
    bands = _bands(ax)
    used: set[int] = set()
    problems = []
    for line in ax.get_lines():
        label = line.get_label() or ""
        if label.startswith("_") or not line.get_visible() or not _wanted(label, intervals):
            continue
        if id(line) in errorbar_lines or line.get_transform() is not ax.transData:
            continue  # drawn with errorbar; or a reference line (axhline/axvline: axes coordinates)
        points = _finite_xy(line.get_xydata())
        if not len(points):
            continue  # reported as no data if nothing else is drawn
        match = next((i for i, b in enumerate(bands) if i not in used and _covered(points, b)), None)
        if match is None:
            problems.append(f"{where}: curve {label!r} has no interval (fill_between band or errorbar) "
                            "though its values have one")
        else:
            used.add(match)
    return problems


def figure_problems(fig, intervals: bool | Iterable[str] = False) -> list[str]:
    """Every problem of ``fig`` (empty list when it may be saved)."""
    intervals = tuple(intervals) if intervals not in (True, False) else intervals
    problems: list[str] = []
    checked = 0
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or ax.get_label() == "<colorbar>" or not ax.axison:
            continue
        checked += 1
        where = _axes_name(ax, i)
        if not _has_data(ax):
            problems.append(f"{where}: no data (no artist with a finite point)")
        problems += _legend_problems(ax.get_legend(), where)
        if intervals:
            problems += _interval_problems(ax, where, intervals)
    for legend in fig.legends:
        problems += _legend_problems(legend, "figure")
    if not checked:
        problems.append("figure has no visible axes")
    return problems


def check_figure(fig, name: str = "figure", intervals: bool | Iterable[str] = False) -> None:
    """Raise ``FigureError`` listing every problem of ``fig``; call it before saving."""
    problems = figure_problems(fig, intervals)
    if problems:
        raise FigureError(f"{name}: " + "; ".join(problems))


def save_checked(fig, path: str | Path, intervals: bool | Iterable[str] = False, **savefig) -> Path:
    """``check_figure`` then ``fig.savefig(path, **savefig)``."""
    check_figure(fig, str(path), intervals)
    fig.savefig(path, **savefig)
    return Path(path)


def image_problems(path: str | Path) -> list[str]:
    """A committed image: it loads, has pixels, and is not a single colour."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img.convert("RGBA"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        return [f"{path}: not a readable image ({exc})"]
    if arr.size == 0 or arr.shape[0] < 2 or arr.shape[1] < 2:
        return [f"{path}: no pixels ({arr.shape})"]
    flat = arr.reshape(-1, arr.shape[-1])
    if np.all(flat == flat[0]):
        return [f"{path}: a single colour {tuple(int(v) for v in flat[0])}: blank"]
    return []
