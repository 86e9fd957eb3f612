"""The kernel's half of the JupyterLab extension's protocol (gemini_magic/frontend.py),
without a kernel: what the answer to the hello makes the kernel believe, and the output
metadata that asks the extension for cells (js/src/index.ts reads it)."""

from __future__ import annotations

import pytest

from gemini_magic.frontend import VERSION, Frontend, insert_metadata


def answer(frontend: Frontend, data) -> Frontend:
    frontend._answer({"content": {"data": data}})
    return frontend


def test_the_kernel_says_hello_with_version_2():
    assert VERSION == 2


def test_a_version_2_answer_inserts_many_cells():
    frontend = answer(Frontend(), {"hello": "jupyterlab", "version": 2, "inserts_cells": True,
                                   "inserts_many": True})
    assert (frontend.inserts_cells, frontend.inserts_many, frontend.name) == (True, True, "jupyterlab")


def test_an_older_extension_answering_version_1_still_inserts_one_cell():
    frontend = answer(Frontend(), {"hello": "jupyterlab", "version": 1, "inserts_cells": True})
    assert (frontend.inserts_cells, frontend.inserts_many) == (True, False)
    # Version 1 cannot claim the list: inserts_many needs version 2.
    frontend = answer(Frontend(), {"hello": "jupyterlab", "version": 1, "inserts_cells": True,
                                   "inserts_many": True})
    assert (frontend.inserts_cells, frontend.inserts_many) == (True, False)


def test_a_version_2_answer_without_inserts_many_inserts_one_cell():
    frontend = answer(Frontend(), {"hello": "jupyterlab", "version": 2, "inserts_cells": True})
    assert (frontend.inserts_cells, frontend.inserts_many) == (True, False)


@pytest.mark.parametrize("data", [
    {},
    {"hello": "jupyterlab", "version": 3, "inserts_cells": True, "inserts_many": True},
    {"hello": "jupyterlab", "version": True, "inserts_cells": True},
    {"hello": "jupyterlab", "version": "2", "inserts_cells": True, "inserts_many": True},
    {"hello": "jupyterlab", "version": 2, "inserts_cells": "yes", "inserts_many": True},
    {"hello": "jupyterlab", "version": 2, "inserts_many": True},
])
def test_other_answers_change_nothing(data):
    frontend = answer(Frontend(), data)
    assert (frontend.inserts_cells, frontend.inserts_many, frontend.name) == (False, False, "")


def test_close_forgets_what_the_frontend_said():
    class Comm:
        closed = False

        def close(self):
            self.closed = True

    frontend = answer(Frontend(), {"hello": "jupyterlab", "version": 2, "inserts_cells": True,
                                   "inserts_many": True})
    frontend._comm = comm = Comm()
    frontend.close()
    assert comm.closed and frontend._comm is None
    assert (frontend.inserts_cells, frontend.inserts_many) == (False, False)


def test_insert_metadata_one_cell_as_before():
    assert insert_metadata("k", "print(1)", False) == {"insert_code": {"key": "k", "code": "print(1)"}}
    assert insert_metadata("k", "print(1)", True) == {
        "insert_code": {"key": "k", "code": "print(1)", "by_kernel": True}}


def test_insert_metadata_cells_carry_their_join_as_code():
    meta = insert_metadata("k", "ignored", False, cells=["a = 1", "b = a + 1"])
    assert meta == {"insert_code": {"key": "k", "cells": ["a = 1", "b = a + 1"], "code": "a = 1\n\nb = a + 1"}}
    meta = insert_metadata("k", "", True, cells=["a = 1"])
    assert meta == {"insert_code": {"key": "k", "cells": ["a = 1"], "code": "a = 1", "by_kernel": True}}
    assert insert_metadata("k", "", False, cells=[]) == {"insert_code": {"key": "k", "cells": [], "code": ""}}


def test_insert_metadata_copies_the_list():
    cells = ["a = 1"]
    meta = insert_metadata("k", "", False, cells=cells)
    cells.append("b = 2")
    assert meta["insert_code"]["cells"] == ["a = 1"]
