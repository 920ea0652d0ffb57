"""Methods text collected from the workflows' ``__desc__``/``__postdesc__`` (fMRIPrep style).

Each ``init_*_wf`` builder sets ``workflow.__desc__`` from the values it was built with; this
walks a workflow and its sub-workflows and gathers them, like niworkflows'
``LiterateWorkflow.visit_desc`` (niworkflows is not a dependency: a nipype ``Workflow``
takes the extra attributes as they are).
"""

from __future__ import annotations

from typing import Any


def visit_desc(workflow: Any) -> list[str]:
    """The ``__desc__`` texts of ``workflow`` and its sub-workflows, in execution order.

    A workflow's ``__desc__`` comes before its sub-workflows' texts and its ``__postdesc__``
    after them; a text already collected (the same step of another BOLD run) is not repeated.

    Parameters
    ----------
    workflow : nipype Workflow
        A built workflow (its graph is walked in topological order).

    Returns
    -------
    list of str
        The texts, without duplicates.
    """
    import networkx as nx
    from nipype.pipeline import engine as pe

    texts: list[str] = []

    def visit(wf: Any) -> None:
        desc = getattr(wf, "__desc__", None)
        if desc and desc not in texts:
            texts.append(desc)
        for node in nx.topological_sort(wf._graph):
            if isinstance(node, pe.Workflow):
                visit(node)
        post = getattr(wf, "__postdesc__", None)
        if post and post not in texts:
            texts.append(post)

    visit(workflow)
    return texts
