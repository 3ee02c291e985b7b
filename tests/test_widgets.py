"""tutorial_lib.widgets: the figure is an ordinary output, buttons gate the work, threads are restored."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tutorial_lib.widgets import interactive_figure, interactive_threads, registry  # noqa: E402


def _render_counter():
    calls = []

    def draw(a=1.0):
        calls.append(a)
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1], [0, a])
        return fig

    return draw, calls


def test_slider_change_redraws_and_registers():
    draw, calls = _render_counter()
    slider = widgets.FloatSlider(value=1.0)
    explorer = interactive_figure(draw, {"a": slider}, name="demo", show=False)
    assert explorer in registry() and explorer.name == "demo"
    slider.value = 2.0
    assert calls == [2.0]
    assert explorer.status.value.startswith("done in")
    assert explorer.refresh() >= 0 and calls == [2.0, 2.0]


def test_run_button_is_the_only_trigger():
    draw, calls = _render_counter()
    box = widgets.Text(value="a red circle")
    explorer = interactive_figure(lambda prompt: draw(len(prompt)), {"prompt": box}, run_button="Generate",
                                  show=False)
    box.value = "a blue square"  # a text commit must not start work
    assert calls == []
    explorer.button.click()
    assert calls == [len("a blue square")] and not explorer.button.disabled


def test_render_errors_are_shown_and_raised():
    def broken(a=1):
        raise RuntimeError("boom")

    explorer = interactive_figure(broken, {"a": widgets.IntSlider(value=1)}, show=False)
    with pytest.raises(RuntimeError):
        explorer._on_event()
    assert "boom" in explorer.status.value


def test_render_must_return_a_figure():
    explorer = interactive_figure(lambda a: None, {"a": widgets.IntSlider()}, show=False)
    with pytest.raises(TypeError, match="render must return a matplotlib Figure"):
        explorer.refresh()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"render": 3, "controls": {"a": widgets.IntSlider()}}, "render must be callable"),
        ({"render": print, "controls": {}}, "controls must be a non-empty mapping"),
        ({"render": print, "controls": {"a": 3}}, r"controls\['a'\]"),
        ({"render": print, "controls": {"a": widgets.IntSlider()}, "run_button": ""}, "run_button"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(TypeError, match=match):
        interactive_figure(show=False, **kwargs)


def test_interactive_threads_sets_and_restores(monkeypatch):
    before = torch.get_num_threads()
    with interactive_threads(1) as inside:
        assert inside == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    monkeypatch.setenv("COURSE_INTERACTIVE_THREADS", "0")
    with interactive_threads() as inside:
        assert inside == before
    monkeypatch.setenv("COURSE_INTERACTIVE_THREADS", "many")
    with pytest.raises(ValueError, match="COURSE_INTERACTIVE_THREADS"):
        with interactive_threads():
            pass
    with pytest.raises(ValueError, match="num_threads"):
        with interactive_threads(-1):
            pass


def test_stored_notebooks_keep_the_figure_and_the_note_not_the_widget_view():
    from _scripts import load_script
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    execute_notebooks = load_script("execute_notebooks")
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    figure = new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    controls = new_output("display_data", data={execute_notebooks.WIDGET_VIEW: view, "text/plain": "note"})
    nb = new_notebook(cells=[new_code_cell("interactive_figure(...)", outputs=[figure, controls])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    assert execute_notebooks.strip_widget_views(nb) == 1
    assert "widgets" not in nb.metadata
    assert [o["data"] for o in nb.cells[0].outputs] == [figure["data"], {"text/plain": "note"}]
