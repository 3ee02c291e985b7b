"""Interactive figures for the notebooks: a figure, the controls that redraw it, and a status line.

Introduced in notebook 01; every chapter's exploration uses it.

Why not ``ipywidgets.interact`` and an ``Output`` area? Three things a learner meets:

* **A notebook opened before it is run.** A figure drawn inside an ``Output`` widget is stored
  only in the widget state, so a freshly opened notebook shows a text repr
  (``VBox(children=(...``) or "model not found" instead of the picture. Here the figure is an
  ordinary image output (``display(fig, display_id=True)``) that the controls *update in place*:
  the stored notebook, the HTML site and a fresh JupyterLab all show the default figure, and the
  controls' own output carries a short note as its plain-text fallback.
* **Explicit buttons.** With ``run_button="Generate"`` nothing runs when a text box loses focus or
  a slider moves; only the button starts the work (the button is disabled while it runs, so a
  second press cannot queue behind the first).
* **Feedback.** A status line says "running…" while the callback works and "done in 1.2 s" after.

Threads: a callback runs inside :func:`interactive_threads`, one torch thread by default. On a
2-core laptop that is also running JupyterLab, a browser and the kernel's own threads, torch's
default (one thread per core) made these small-batch callbacks 5–17× slower under load; one
thread costs little when the machine is idle. Override with the environment variable
``COURSE_INTERACTIVE_THREADS`` (an integer; ``0`` keeps torch's current setting).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch

from . import _checks

__all__ = ["InteractiveFigure", "interactive_figure", "interactive_threads", "registry"]

DEFAULT_NOTE = (
    "[Interactive controls: run this cell in JupyterLab to use them. "
    "The figure above was drawn with their default values.]"
)
_REGISTRY: list[weakref.ref] = []


def _thread_count() -> int:
    raw = os.environ.get("COURSE_INTERACTIVE_THREADS", "1").strip()
    try:
        count = int(raw)
    except ValueError:
        raise ValueError(f"COURSE_INTERACTIVE_THREADS must be an integer >= 0, got {raw!r}") from None
    _checks.that(count >= 0, f"COURSE_INTERACTIVE_THREADS must be an integer >= 0, got {raw!r}")
    return count


@contextmanager
def interactive_threads(num_threads: int | None = None) -> Iterator[int]:
    """Run a block with ``num_threads`` torch threads, then restore the previous count.

    Args:
        num_threads: threads to use; ``None`` reads ``COURSE_INTERACTIVE_THREADS`` (default 1),
            and ``0`` leaves torch's current count unchanged.

    Yields:
        The thread count in force inside the block.
    """
    count = _thread_count() if num_threads is None else num_threads
    _checks.that(type(count) is int and count >= 0, f"num_threads must be a non-negative int or None, got {num_threads!r}")
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


class InteractiveFigure:
    """A figure output plus the controls that redraw it (see the module docstring).

    Build it with :func:`interactive_figure`. Attributes: ``name`` (for ``make bench``),
    ``controls`` (name → widget), ``status`` (the status line widget), ``button`` (or ``None``),
    ``last_seconds`` (duration of the last redraw).
    """

    def __init__(self, render, controls, *, name, run_button, note):
        import ipywidgets as widgets

        self.render, self.controls, self.name, self.note = render, dict(controls), name, note
        self.status = widgets.HTML(value="")
        self.button = widgets.Button(description=run_button, button_style="primary") if run_button else None
        self.last_seconds = float("nan")
        self._handle = None
        if self.button is not None:
            self.button.on_click(lambda _button: self._on_event())
        else:
            for control in self.controls.values():
                control.observe(lambda _change: self._on_event(), names="value")
        row = [*self.controls.values(), *([self.button] if self.button else [])]
        self.box = widgets.VBox([widgets.HBox(row, layout=widgets.Layout(flex_flow="row wrap")), self.status])

    def values(self) -> dict:
        """The controls' current values, by name (what ``render`` is called with)."""
        return {name: control.value for name, control in self.controls.items()}

    def _draw(self):
        import matplotlib.pyplot as plt

        with interactive_threads():
            figure = self.render(**self.values())
        _checks.that(figure is not None, f"render must return a matplotlib Figure, got None (widget {self.name!r})", TypeError)
        plt.close(figure)  # shown through the display handle only, not again by the inline backend
        return figure

    def show(self) -> None:
        """Display the default figure (an ordinary, stored image output), then the controls."""
        from IPython.display import display

        start = time.perf_counter()
        self._handle = display(self._draw(), display_id=True)
        self.last_seconds = time.perf_counter() - start
        widget_view = self.box._repr_mimebundle_()
        widget_view["text/plain"] = self.note  # what a viewer without the live kernel shows
        display(widget_view, raw=True)

    def refresh(self) -> float:
        """Redraw at the current control values, update the figure in place; return the seconds taken."""
        start = time.perf_counter()
        figure = self._draw()
        if self._handle is not None:
            self._handle.update(figure)
        self.last_seconds = time.perf_counter() - start
        return self.last_seconds

    def _on_event(self) -> None:
        if self.button is not None:
            self.button.disabled = True
        self.status.value = "<i>running…</i>"
        try:
            seconds = self.refresh()
            self.status.value = f"done in {seconds:.1f} s"
        except Exception as exc:  # show the learner what went wrong, next to the controls
            self.status.value = f"<b>error:</b> {type(exc).__name__}: {exc}"
            raise
        finally:
            if self.button is not None:
                self.button.disabled = False


def interactive_figure(
    render: Callable[..., object],
    controls: Mapping[str, object],
    *,
    name: str | None = None,
    run_button: str | None = None,
    note: str = DEFAULT_NOTE,
    show: bool = True,
) -> InteractiveFigure:
    """Show ``render(**defaults)`` as a stored figure, with controls that redraw it in place.

    Args:
        render: a function called with one keyword argument per control (its ``value``) that
            builds and returns a new ``matplotlib.figure.Figure`` (it must not call ``plt.show()``).
        controls: name → ipywidgets control (slider, text box, dropdown…); names are ``render``'s
            keyword arguments.
        name: a short label for ``make bench``'s widget rows (default: ``render.__name__``).
        run_button: if given, a button with this label is the only thing that runs ``render``
            (use it for callbacks that take seconds, e.g. sampling); otherwise any control change does.
        note: the plain-text fallback of the controls' output (what a notebook viewer without a
            live kernel shows in their place).
        show: display at once (default); ``False`` builds it for tests or benchmarks.

    Returns:
        The :class:`InteractiveFigure`; it is also listed by :func:`registry`.
    """
    _checks.function("render", render)
    _checks.that(isinstance(controls, Mapping) and controls, "controls must be a non-empty mapping of name -> ipywidgets control", TypeError)
    bad = [key for key, control in controls.items() if not (hasattr(control, "observe") and hasattr(control, "value"))]
    _checks.that(not bad, f"controls{bad} must be ipywidgets controls with a value", TypeError)
    _checks.that(run_button is None or (isinstance(run_button, str) and run_button), f"run_button must be a non-empty str or None, got {run_button!r}", TypeError)
    explorer = InteractiveFigure(render, controls, name=name or getattr(render, "__name__", "widget"),
                                 run_button=run_button, note=note)
    _REGISTRY.append(weakref.ref(explorer))
    if show:
        explorer.show()
    return explorer


def registry() -> list[InteractiveFigure]:
    """The interactive figures created in this process that are still alive, oldest first."""
    alive = [ref() for ref in _REGISTRY]
    return [explorer for explorer in alive if explorer is not None]
