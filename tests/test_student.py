"""Student copies (scripts/make_student.py): stubs, cleared outputs, no lost work, and they run.

Two kinds of test:

* unit tests of the transformation on small synthetic notebooks (fast);
* for every course notebook with exercises, its student copy is executed cell by
  cell in one kernel, as a student pressing "Run All" would: every cell before the
  first exercise must run, the first exercise's check cell must stop execution
  with the check's "not implemented yet" failure (or the stub's
  ``NotImplementedError`` for a top-level block). The teacher's solution is then
  restored in the live kernel (the check must now pass) and execution goes on,
  so *every* exercise is reached and shown to stop at its own check. Cells after
  the last check are not run (nbval already executes every teacher notebook).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from _scripts import load_script
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


ms = load_script("make_student")


def _run_stub(source: str, *args):
    """Exec a stubbed cell defining ``f`` and call it; return the NotImplementedError raised."""
    namespace: dict = {}
    exec(compile(source, "<stub>", "exec"), namespace)
    with pytest.raises(NotImplementedError) as info:
        namespace["f"](*args)
    return info.value


# --------------------------------------------------------------------------- the stub


def test_stub_keeps_indentation_and_the_code_around_it():
    src = (
        "import math\n\n"
        "def f(x):\n"
        "    y = x + 1\n"
        "    ### BEGIN SOLUTION\n"
        "    return math.sqrt(y)\n"
        "    ### END SOLUTION\n"
    )
    out = ms.stub_source(src, "Exercise 1 · Roots")
    assert "math.sqrt" not in out and "BEGIN SOLUTION" not in out
    assert out.startswith("import math\n\ndef f(x):\n    y = x + 1\n    # YOUR CODE HERE\n    raise NotImplementedError(")
    assert out.endswith(")\n")
    err = _run_stub(out, 3)
    assert "Exercise 1 · Roots" in str(err) and "`f`" in str(err)


def test_stub_nested_indentation_and_several_blocks_in_one_cell():
    src = (
        "def f(x):\n"
        "    if x > 0:\n"
        "        ### BEGIN SOLUTION\n"
        "        return 1\n"
        "        ### END SOLUTION\n"
        "    return 0\n"
        "\n"
        "def g(x):\n"
        "\t### BEGIN SOLUTION\n"
        "\treturn -x\n"
        "\t### END SOLUTION"
    )
    out = ms.stub_source(src)
    lines = out.splitlines()
    assert lines[2] == "        # YOUR CODE HERE" and lines[3].startswith("        raise NotImplementedError(")
    assert lines[4] == "    return 0"
    assert lines[-2] == "\t# YOUR CODE HERE" and lines[-1].startswith("\traise NotImplementedError(")
    assert not out.endswith("\n")  # a source without a final newline keeps none
    namespace: dict = {}
    exec(compile(out, "<stub>", "exec"), namespace)
    assert namespace["f"](-1) == 0  # the code outside the block is untouched
    with pytest.raises(NotImplementedError, match="`f`"):
        namespace["f"](1)
    with pytest.raises(NotImplementedError, match="`g`"):
        namespace["g"](1)


def test_hint_line_becomes_the_message():
    src = (
        "def f(eps_c, eps_u, w):\n"
        "    ### BEGIN SOLUTION\n"
        "    ### HINT: start from the unconditional prediction.\n"
        "    return eps_u + w * (eps_c - eps_u)\n"
        "    ### END SOLUTION\n"
    )
    out = ms.stub_source(src, "Exercise 3")
    assert "eps_u + w" not in out and "HINT" not in out
    assert str(_run_stub(out, 1, 2, 3)) == "start from the unconditional prediction."


def test_hint_with_quotes_is_valid_python():
    src = 'def f():\n    ### BEGIN SOLUTION\n    ### HINT: use "x" and \\n, don\'t panic\n    pass\n    ### END SOLUTION\n'
    assert str(_run_stub(ms.stub_source(src))) == "use \"x\" and \\n, don't panic"


def test_top_level_block_makes_the_cell_raise():
    out = ms.stub_source("a = 1\n### BEGIN SOLUTION\nb = a * 2\n### END SOLUTION\nprint(b)\n")
    with pytest.raises(NotImplementedError, match="write this part"):
        exec(compile(out, "<stub>", "exec"), {})


@pytest.mark.parametrize(
    "src, message",
    [
        ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("x = 1\n### END SOLUTION\n", "without a"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
    ],
)
def test_unbalanced_markers_are_an_error_naming_the_cell(src, message):
    with pytest.raises(ms.StudentCopyError, match=f"nb.ipynb, cell 3: line .*{message}"):
        ms.stub_source(src, where="nb.ipynb, cell 3")


# --------------------------------------------------------------------------- outputs


def _synthetic_notebook():
    def code(src, text):
        return new_code_cell(src, execution_count=1, outputs=[new_output("stream", name="stdout", text=text)])

    nb = new_notebook(cells=[
        new_markdown_cell("# 99 · Synthetic"),
        code("import math\nbase = 2", "setup"),                                            # 1 keeps
        new_markdown_cell("### Exercise 1 · Square"),
        code("def my_square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION", "sol"),  # 3
        code("print(check_square(my_square))", "ok"),                                    # 4 check
        code("table = [my_square(i) for i in range(3)]", "uses"),                         # 5 reads my_square
        code("print(table)", "transitive"),                                               # 6 reads table
        code("print(base)", "independent"),                                               # 7 keeps
        new_markdown_cell("### Exercise 2 · Top level"),
        code("### BEGIN SOLUTION\nanswer = base + 1\n### END SOLUTION\nprint(answer)", "3"),  # 9
        code("%time print(check_answer(answer))", "ok"),                                  # 10 check (magic)
        code("print(math.pi)", "3.14"),                                                   # 11 keeps
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_outputs_cleared_for_solution_and_dependent_cells_only():
    teacher = _synthetic_notebook()
    assert ms.dependent_cells(teacher) == {3, 4, 5, 6, 9, 10}
    student = ms.student_notebook(teacher)
    for i, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        if i in {3, 4, 5, 6, 9, 10}:
            assert cell.outputs == [] and cell.execution_count is None, i
        else:
            assert cell.outputs and cell.execution_count == 1, i
    # the teacher's notebook is not modified
    assert "return x * x" in teacher.cells[3].source and teacher.cells[4].outputs
    assert [e["checks"] for e in ms.exercises(teacher)] == [[4], [10]]
    assert [e["title"] for e in ms.exercises(teacher)] == ["Exercise 1 · Square", "Exercise 2 · Top level"]


def test_import_of_a_check_in_the_solution_cell_is_not_a_check_call():
    nb = new_notebook(cells=[
        new_code_cell("from tutorial_lib.checks import check_a\n\ndef my_a():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
        new_code_cell("print(check_a(my_a))"),
    ])
    assert ms.exercises(nb)[0]["checks"] == [1]


# --------------------------------------------------------------------------- no lost work


def _write(nb, path):
    nbformat.write(nb, path)
    return path


def test_never_overwrites_an_edited_copy_without_force(tmp_path):
    teacher = _write(_synthetic_notebook(), tmp_path / "99_synthetic.ipynb")
    out = tmp_path / "student"
    assert ms.write_student_copy(teacher, out) == "written"
    copy_path = out / teacher.name
    assert ms.write_student_copy(teacher, out) == "unchanged"

    # Running cells (outputs only) is not an edit: a changed teacher notebook updates the copy.
    ran = nbformat.read(copy_path, as_version=4)
    ran.cells[1].outputs = [new_output("stream", name="stdout", text="ran again")]
    _write(ran, copy_path)
    nb = nbformat.read(teacher, as_version=4)
    nb.cells[0].source += " (revised)"
    _write(nb, teacher)
    assert ms.write_student_copy(teacher, out) == "updated"

    # A student's edit is protected ...
    edited = nbformat.read(copy_path, as_version=4)
    edited.cells[3].source = edited.cells[3].source.replace("raise NotImplementedError", "return x ** 2  #")
    _write(edited, copy_path)
    before = copy_path.read_bytes()
    with pytest.raises(ms.StudentCopyError) as info:
        ms.write_student_copy(teacher, out)
    message = str(info.value)
    assert str(copy_path) in message and "--force" in message and "FORCE=1" in message
    assert copy_path.read_bytes() == before

    # ... and the command line fails with the same message, leaving the file alone.
    assert ms.main([str(teacher), "--out", str(out)]) == 1
    assert copy_path.read_bytes() == before

    # With --force it is replaced, and the edited copy is kept as a backup.
    status = ms.write_student_copy(teacher, out, force=True)
    assert status.startswith("overwritten")
    backups = list(out.glob("99_synthetic.ipynb.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == before
    assert "return x ** 2" not in copy_path.read_text()


def test_a_foreign_file_is_not_overwritten(tmp_path):
    teacher = _write(_synthetic_notebook(), tmp_path / "99_synthetic.ipynb")
    out = tmp_path / "student"
    out.mkdir()
    (out / teacher.name).write_text("my notes, not a notebook")
    with pytest.raises(ms.StudentCopyError, match="cannot be read"):
        ms.write_student_copy(teacher, out)
    _write(nbformat.read(teacher, as_version=4), out / teacher.name)  # a copy of unknown origin
    with pytest.raises(ms.StudentCopyError, match="not generated by make student"):
        ms.write_student_copy(teacher, out)


# --------------------------------------------------------------------------- the course notebooks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_copy_has_no_solution_and_valid_stubs(path, tmp_path):
    assert ms.write_student_copy(path, tmp_path) == "written"
    teacher = nbformat.read(path, as_version=4)
    student = nbformat.read(tmp_path / path.name, as_version=4)
    assert len(student.cells) == len(teacher.cells)
    for i, (t, s) in enumerate(zip(teacher.cells, student.cells, strict=True)):
        assert "BEGIN SOLUTION" not in s.source and "END SOLUTION" not in s.source, f"cell {i}"
        if ms.has_solution(t.source):
            assert "raise NotImplementedError(" in s.source, f"cell {i}"
            assert ms._python(s.source) is not None, f"cell {i}: the stubbed cell is not valid Python"
        else:
            assert s.source == t.source, f"cell {i} changed but has no solution"
    for exercise in ms.exercises(teacher):
        assert exercise["checks"], (
            f"{path.name}: the exercise in cell {exercise['solution']} has no check cell "
            "(a later cell calling check_...(...)) before the next exercise"
        )


def _error(exc) -> tuple[str, str]:
    return getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))


def _not_implemented(ename: str, evalue: str) -> bool:
    return ename == "NotImplementedError" or (ename == "ExerciseCheckFailed" and "not implemented yet" in evalue)


WITH_EXERCISES = [p for p in NOTEBOOKS if ms.exercises(nbformat.read(p, as_version=4))]


@pytest.mark.skipif(not WITH_EXERCISES, reason="no notebook has exercises yet")
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_student_copy_runs_to_each_exercise_and_stops_at_its_check(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    for key, value in {"MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false",
                       "OMP_NUM_THREADS": os.environ.get("COURSE_TEST_THREADS", "1")}.items():
        monkeypatch.setenv(key, value)
    ms.write_student_copy(path, tmp_path)
    teacher = nbformat.read(path, as_version=4)
    student = nbformat.read(tmp_path / path.name, as_version=4)
    plan = ms.exercises(teacher)
    check_cells = {i: n for n, ex in enumerate(plan) for i in ex["checks"][:1]}
    solution_cells = {ex["solution"]: n for n, ex in enumerate(plan)}
    last = max(check_cells)
    stopped_at: list[int] = []  # the cell where each exercise stopped execution

    client = NotebookClient(student, timeout=300, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(student.cells[: last + 1]):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
                error = None
            except CellExecutionError as exc:
                error = _error(exc)
            if index in solution_cells and error is not None:
                # A top-level block: the solution cell itself is where a student stops.
                assert _not_implemented(*error), f"{path.name} cell {index}: {error}"
                stopped_at.append(index)
                client.execute_cell(new_code_cell(teacher.cells[index].source), index)
            elif index in check_cells:
                n = check_cells[index]
                if len(stopped_at) <= n:  # the stub was called by this check
                    assert error is not None, (
                        f"{path.name}: the check in cell {index} passed on the student's stub"
                    )
                    assert _not_implemented(*error), (
                        f"{path.name} cell {index}: expected the check to report 'not implemented yet', got {error}"
                    )
                    stopped_at.append(index)
                    # Restore the teacher's solution in the kernel; the check must now pass.
                    client.execute_cell(new_code_cell(teacher.cells[plan[n]["solution"]].source), index)
                    client.execute_cell(new_code_cell(teacher.cells[index].source), index)
                else:
                    assert error is None, f"{path.name} cell {index}: {error}"
            else:
                assert error is None, (
                    f"{path.name}: cell {index} failed in the student copy before exercise "
                    f"{len(stopped_at) + 1} was reached: {error}"
                )
    elapsed = time.perf_counter() - start
    assert len(stopped_at) == len(plan), f"{path.name}: stopped at {stopped_at}, exercises {plan}"
    print(f"{path.name}: {len(plan)} exercise(s) reached, stopped at cells {stopped_at}, {elapsed:.1f} s")
