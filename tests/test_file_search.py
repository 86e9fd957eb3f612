"""File Search: stores made, filled (folders too, waiting for indexing, skipping what is
there), listed, emptied and deleted; a cell with --store answers citing the passages; the
errors; record and replay. The real SDK over HTTP to tests/fake_gemini's fileSearchStores.
"""

from __future__ import annotations

import json
import re

import pytest

import gemini_magic
from tests.conftest import ask, fails

POLICY = ("Refunds\n\nA customer may return any item within 30 days of delivery for a full refund.\n\n"
          "Shipping\n\nParcels leave the warehouse within two working days.")
PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
       b"2 0 obj << /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >> endobj\n"
       b"3 0 obj << /Type /Page >> endobj\n4 0 obj << /Type /Page >> endobj\n"
       b"BT (Warranty covers manufacturing defects for two years.) Tj ET\n%%EOF\n")


def command(ip, line: str) -> None:
    ip.run_line_magic("gemini", line)


def actions(server) -> list[str]:
    return [r.action for r in server.requests]


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "policy.md").write_text(POLICY)
    (folder / "sub" / "warranty.pdf").write_bytes(PDF)
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / ".hidden.md").write_text("secret")
    return folder


def test_create_add_a_folder_and_list(ip, server, docs, capsys):
    command(ip, "store-create handbook")
    assert "Created File Search store 'handbook'" in capsys.readouterr().out
    command(ip, f"store-add handbook {docs}")
    said = capsys.readouterr()
    text = said.out + said.err
    assert "Indexed 2 files into 'handbook'." in text
    assert "logo.png (File Search does not take .png files)" in text and ".hidden" not in text
    uploads = [r for r in server.requests if r.action == "uploadToFileSearchStore"]
    assert sorted(r.body["displayName"] for r in uploads) == ["docs/policy.md", "docs/sub/warranty.pdf"]
    assert {r.body["mimeType"] for r in uploads} == {"text/markdown", "application/pdf"}
    command(ip, "stores")
    listing = capsys.readouterr().out
    assert re.search(r"^handbook\s+2\s+", listing, re.M), listing
    command(ip, "store-docs handbook")
    documents = capsys.readouterr().out
    assert re.search(r"^docs/policy\.md\s+active\s+", documents, re.M), documents


def test_adding_again_skips_what_is_there_and_waits_for_indexing(ip, server, docs, capsys):
    server.store_polls = 3  # indexing takes three checks
    command(ip, "store-create handbook")
    command(ip, f"store-add handbook {docs / 'policy.md'}")
    checks = [a for a in actions(server) if a == "getOperation"]
    assert len(checks) >= 3
    capsys.readouterr()
    uploads_before = actions(server).count("uploadToFileSearchStore")
    command(ip, f"store-add handbook {docs / 'policy.md'}")
    said = capsys.readouterr()
    assert "Indexed 0 files" in said.out + said.err and "Skipped 1 already in it." in said.out + said.err
    assert actions(server).count("uploadToFileSearchStore") == uploads_before


def test_a_cell_with_store_answers_citing_document_page_and_passage(kern, server, docs):
    for line in ("%gemini store-create handbook", f"%gemini store-add handbook {docs}"):
        kern.run(line, check=True)
    server.queue("You can return items within 30 days; warranty lasts two years.")
    ex = kern.run("%%gemini --store handbook\nWhat are the refund and warranty rules?", check=True)
    sent = server.last
    (tool,) = sent.body["tools"]
    assert re.fullmatch(r"fileSearchStores/\S+", tool["fileSearch"]["file_search_store_names"][0])
    markup = [m["content"]["data"].get("text/html", "") for m in ex.outputs if m["msg_type"] == "display_data"][-1]
    assert "Sources" in markup
    assert "docs/policy.md" in markup and "30 days" in markup
    assert re.search(r"docs/sub/warranty\.pdf, page \d", markup)


def test_store_in_the_python_api_and_the_stores_object(ip, server, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("The office cat is called Miso and likes sardines.")
    stores = gemini_magic.stores()
    stores.create("notes")
    added = stores.add("notes", [note])
    assert added.indexed == ["note.txt"]
    answer = gemini_magic.ask("What does the office cat like?", store="notes")
    answer.read()
    chunk = answer.grounding.grounding_chunks[0].retrieved_context
    assert chunk.title == "note.txt" and "sardines" in chunk.text
    assert [d.display_name for d in stores.documents("notes")] == ["note.txt"]
    stores.remove("notes", "note.txt")
    assert stores.documents("notes") == []
    stores.delete("notes")
    assert "notes" not in [s.name for s in stores.list()]


def test_a_missing_store_says_how_to_make_it(ip, server):
    failure = fails(ip, "Anything?", "--store nowhere")
    assert failure.error.message == "No File Search store is called 'nowhere'."
    assert "%gemini store-create nowhere" in failure.error.hint
    assert not [a for a in actions(server) if a in ("generateContent", "streamGenerateContent")]


def test_a_missing_path_and_a_failed_indexing_are_said(ip, server, docs, capsys):
    from gemini_magic.magics import CellFailed

    command(ip, "store-create handbook")
    with pytest.raises(CellFailed, match="No file or folder"):
        command(ip, f"store-add handbook {docs / 'missing.md'}")
    server.store_fail_next = True
    capsys.readouterr()
    command(ip, f"store-add handbook {docs / 'policy.md'}")
    said = capsys.readouterr()
    assert "Failed: policy.md (Document processing failed.)" in said.out + said.err


def test_remove_and_delete(ip, server, docs, capsys):
    command(ip, "store-create handbook")
    command(ip, f"store-add handbook {docs / 'policy.md'}")
    capsys.readouterr()
    command(ip, "store-remove handbook policy.md")
    assert "Removed 'policy.md' from store 'handbook'" in capsys.readouterr().out
    assert "deleteDocument" in actions(server)
    command(ip, "store-delete handbook")
    assert "Deleted File Search store 'handbook'" in capsys.readouterr().out
    command(ip, "stores")
    assert "No File Search stores" in capsys.readouterr().out


def test_store_cannot_go_with_a_cache(ip, server):
    failure = fails(ip, "x", "--cache c --store s")
    assert "--store cannot go with --cache" in str(failure.error)


def test_stores_record_and_replay_without_waiting(ip, server, docs, env, tmp_path, capsys):
    rec = tmp_path / "stores.gemini.json"
    server.store_polls = 2
    command(ip, f"record {rec}")
    command(ip, "store-create handbook")
    command(ip, f"store-add handbook {docs / 'policy.md'}")
    server.queue("Within 30 days.")
    recorded = ask(ip, "How long do I have to return an item?", "--store handbook")
    command(ip, "live")
    server.reset()
    env.delenv("GEMINI_API_KEY")
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")
    command(ip, f"replay {rec}")
    command(ip, "store-create handbook")
    capsys.readouterr()
    command(ip, f"store-add handbook {docs / 'policy.md'}")
    said = capsys.readouterr()
    assert "Indexed 1 file into 'handbook'." in said.out + said.err
    assert ask(ip, "How long do I have to return an item?", "--store handbook") == recorded
    assert server.requests == []


def test_a_file_over_the_limit_is_refused_by_name_and_the_rest_added(ip, server, docs, monkeypatch, capsys):
    from gemini_magic import file_search

    monkeypatch.setattr(file_search, "MAX_FILE_BYTES", 100)  # policy.md is over it; warranty.pdf too
    (docs / "tiny.txt").write_text("Small print.")
    command(ip, "store-create handbook")
    capsys.readouterr()
    command(ip, f"store-add handbook {docs}")
    said = capsys.readouterr()
    text = said.out + said.err
    assert "Indexed 1 file into 'handbook'." in text
    assert re.search(r"docs/policy\.md \(0 MB, over File Search's 100 MB\)", text), text
    assert [r.body["displayName"] for r in server.requests if r.action == "uploadToFileSearchStore"] == [
        "docs/tiny.txt"]


def test_an_endpoint_without_file_search_says_so(ip, server):
    body = json.dumps({"error": {"code": 404, "status": "NOT_FOUND",
                                 "message": "The requested URL /v1/fileSearchStores was not found on this server."}})
    server.queue_raw(404, {"Content-Type": "application/json"}, body, actions=("createFileSearchStore",))
    from gemini_magic.magics import CellFailed

    with pytest.raises(CellFailed) as info:
        command(ip, "store-create handbook")
    error = info.value.error
    assert error.message == "File Search is not served at this endpoint or API version."
    assert "api_version = 'v1beta'" in error.hint
