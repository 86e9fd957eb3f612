"""%gemini stores, store-create, store-add, store-docs, store-remove and store-delete:
File Search stores (file_search.py). A cell asks one with --store NAME."""

from __future__ import annotations


def _size(size: int) -> str:
    if size >= 2**20:
        return f"{size / 2**20:.1f} MB"
    return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} B"


def stores(magics, args) -> None:
    found = magics.session.stores.list()
    if not found:
        print("No File Search stores for this key. Make one: %gemini store-create NAME")
        return
    rows = [("name", "documents", "size", "resource")]
    for info in sorted(found, key=lambda s: s.name):
        counts = f"{info.active}" + (f" (+{info.pending} indexing)" if info.pending else "") + (
            f" ({info.failed} failed)" if info.failed else "")
        rows.append((info.name, counts, _size(info.size), info.resource))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def create(magics, args) -> None:
    info = magics.session.stores.create(args[0])
    print(f"Created File Search store {info.name!r} ({info.resource}). Add files: %gemini store-add {info.name} "
          "PATH ...")


def add(magics, args) -> None:
    from ...render.notes import note
    from ...render.progress import batch_progress

    name, paths = args[0], args[1:]
    done = magics.session.stores.add(name, paths, progress=batch_progress(magics.shell, "Indexing"))
    note(done.summary(name) + (f" Ask with %%gemini --store {name}." if done.indexed else ""),
         "warning" if done.failed else "note", shell=magics.shell)


def documents(magics, args) -> None:
    docs = magics.session.stores.documents(args[0])
    if not docs:
        print(f"Store {args[0]!r} has no documents yet: %gemini store-add {args[0]} PATH ...")
        return
    rows = [("document", "state", "size", "type")]
    for doc in sorted(docs, key=lambda d: d.display_name or ""):
        state = str(getattr(doc.state, "name", doc.state) or "").removeprefix("STATE_").lower()
        rows.append((doc.display_name or doc.name or "", state, _size(doc.size_bytes or 0), doc.mime_type or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def remove(magics, args) -> None:
    resource = magics.session.stores.remove(args[0], args[1])
    print(f"Removed {args[1]!r} from store {args[0]!r} ({resource}).")


def delete(magics, args) -> None:
    info = magics.session.stores.delete(args[0])
    print(f"Deleted File Search store {info.name!r} ({info.resource}) and its documents.")
