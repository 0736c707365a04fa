"""The notebooks: outputs stripped in git, and each runs top to bottom against the simulated lake by table name."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from lakehouse.delta import register_existing
from lakehouse.settings import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_their_outputs_are_stripped():
    assert [p.name for p in NOTEBOOKS] == ["tour.ipynb"]
    for path in NOTEBOOKS:
        code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert [(c.outputs, c.execution_count) for c in code] == [([], None)] * len(code), path.name


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_runs_top_to_bottom_on_the_simulated_lake(path, spark, simulated_lake, sql_endpoint):
    lake, _ = simulated_lake
    assert "gold.prices" in register_existing(spark, lake)  # the names may point at another test's lake
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                   ).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert len(outputs) == sum(c.cell_type == "code" for c in notebook.cells)  # every cell showed its result
