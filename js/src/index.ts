/**
 * gemini-magic-lab: the frontend half of `%%gemini -f code` (and of agent mode's code cells).
 *
 * Why this exists: `-f code` puts the answer's code into a new cell below. A kernel can
 * only do that with IPython's `set_next_input` payload, which always inserts a NEW cell,
 * so re-running the asking cell piles up copies. Jupyter's messaging gives a kernel no way
 * to address any cell but the one running, and JupyterLab exposes no app object to outputs.
 * So this small extension does the cell edits in the frontend. Protocol version 2:
 *
 * 1. Handshake: the kernel (on `%load_ext gemini_magic`) opens a comm to the target
 *    "gemini_magic" with `{hello: "kernel", version: 2}`; we answer
 *    `{hello: "jupyterlab", version: 2, inserts_cells: true, inserts_many: true}`, and the
 *    kernel then stops using `set_next_input`. Without this extension no answer comes and
 *    nothing changes. A version 1 kernel (`{hello: "kernel", version: 1}`, which accepts
 *    only a version 1 answer) gets the version 1 answer `{hello: "jupyterlab", version: 1,
 *    inserts_cells: true}`; a version 2 kernel also accepts that answer from an older build
 *    of this extension, and then knows it gets one cell per answer.
 * 2. Inserting: the answer's output carries the metadata
 *    `{gemini_magic: {insert_code: {key, cells: [code, ...], code}}}`: the code cells to put
 *    below the asking cell, in order (agent mode: one per run of code). `code` alone (version
 *    1) means `cells: [code]`; with `cells`, `code` is the cells joined by a blank line, which
 *    is what a version 1 extension inserts as its one cell. When a code cell has finished
 *    executing, we take its LAST output with such metadata. The cells we inserted for the
 *    same key are the consecutive run of code cells directly below the asking cell with the
 *    cell metadata `gemini_magic.inserted_by === key`; that run is replaced by the cells
 *    asked for, each marked `inserted_by: key`. If their number and sources are already
 *    those asked for, nothing is touched. Otherwise the cells of the run get the new
 *    sources in place, position by position (a Run All under way listed them when it
 *    started, and still runs them), the surplus is removed, and the missing cells are
 *    inserted after the run (an empty `cells` list just removes the run). Cells with
 *    another key or none, such as the user's own below the run, are never touched, and
 *    no inserted cell is ever executed by us.
 * 3. Run All: our answer to the hello reaches the kernel only when it is idle, so a `-f code`
 *    cell queued behind the loading cell still uses `set_next_input` (with `code`), and says
 *    so with `by_kernel: true`. JupyterLab has then inserted that cell itself, directly below:
 *    if it is unmarked and holds exactly `code`, we mark it as ours, the first of the run,
 *    and go on as in 2. With one cell asked for (`cells` is `[code]`) that keeps it as it is
 *    and drops our older cells for the same key just below it, so the next run replaces it;
 *    with several, it takes the first cell's source.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

const TARGET = 'gemini_magic';
const VERSION = 2;

/** What an output asks for: `cells` to put below, `code` as set_next_input would have put it. */
type Insert = { key: string; cells: string[]; code: string; byKernel: boolean };
/** A kernel connection, typed without a direct dependency on @jupyterlab/services. */
type Kernel = NonNullable<NotebookPanel['sessionContext']['session']>['kernel'];

/** An output's `insert_code` metadata (version 1 or 2), or null if it asks for nothing valid. */
function parseInsert(ours: any): Insert | null {
  if (!ours || typeof ours !== 'object' || typeof ours.key !== 'string') {
    return null;
  }
  const many = Array.isArray(ours.cells) && ours.cells.every((c: unknown) => typeof c === 'string');
  if (!many && typeof ours.code !== 'string') {
    return null;
  }
  const cells: string[] = many ? [...ours.cells] : [ours.code];
  const code: string = typeof ours.code === 'string' ? ours.code : cells.join('\n\n');
  return { key: ours.key, cells, code, byKernel: ours.by_kernel === true };
}

/** The last output of a code cell that asks for cells to be inserted, or null. */
function lastInsert(outputs: ReadonlyArray<{ metadata?: unknown }>): Insert | null {
  let found: Insert | null = null;
  for (const output of outputs) {
    const insert = parseInsert((output.metadata as any)?.[TARGET]?.insert_code);
    if (insert) {
      found = insert;
    }
  }
  return found;
}

/** Answer the kernel's hello on every kernel connection, once per connection. */
const registered = new WeakSet<NonNullable<Kernel>>();
function registerTarget(kernel: Kernel | undefined): void {
  if (!kernel || registered.has(kernel)) {
    return;
  }
  registered.add(kernel);
  // The registry survives kernel restarts (same connection); a new kernel comes through
  // kernelChanged and is registered there.
  kernel.registerCommTarget(TARGET, (comm, msg) => {
    const data = (msg.content.data ?? {}) as { hello?: string; version?: unknown };
    if (data.hello !== 'kernel') {
      return;
    }
    if (data.version === 1) {
      // A version 1 kernel accepts only a version 1 answer; it asks for one cell at a time.
      comm.send({ hello: 'jupyterlab', version: 1, inserts_cells: true });
    } else {
      comm.send({ hello: 'jupyterlab', version: VERSION, inserts_cells: true, inserts_many: true });
    }
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'gemini-magic-lab:plugin',
  description: 'Lets %%gemini -f code insert, and later replace, the code cells below the asking cell.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker) => {
    const watch = (panel: NotebookPanel) => {
      const session = panel.sessionContext;
      registerTarget(session.session?.kernel);
      session.kernelChanged.connect((_, change) => registerTarget(change.newValue));
    };
    tracker.forEach(watch);
    tracker.widgetAdded.connect((_, panel) => watch(panel));

    // `executed` fires after the execute reply AND the kernel's idle status, so every
    // output of the run (the display_data with our metadata included) is in the model.
    NotebookActions.executed.connect((_, { notebook, cell }) => {
      const model = notebook.model;
      if (!model || cell.model.type !== 'code') {
        return;
      }
      const outputs = (cell.model.toJSON() as { outputs?: unknown }).outputs;
      const insert = lastInsert(Array.isArray(outputs) ? outputs : []);
      if (!insert) {
        return;
      }
      const shared = model.sharedModel;
      const cells = shared.cells;
      const index = cells.findIndex(c => c.id === cell.model.id);
      if (index < 0) {
        return; // the cell was deleted while it ran
      }
      const ours = (i: number) =>
        cells[i]?.cell_type === 'code' && (cells[i].getMetadata(TARGET) as any)?.inserted_by === insert.key;
      /** The end (exclusive) of the run of our cells for this key that starts at `from`. */
      const runEnd = (from: number) => {
        let end = from;
        while (end < cells.length && ours(end)) {
          end++;
        }
        return end;
      };
      const fresh = (sources: string[]) =>
        sources.map(source => ({
          cell_type: 'code' as const,
          source,
          metadata: { [TARGET]: { inserted_by: insert.key } }
        }));

      // JupyterLab inserted `code` below itself (set_next_input): take that cell over.
      const first = index + 1;
      if (insert.byKernel) {
        const below = cells[first];
        if (!below || below.cell_type !== 'code' || below.getMetadata(TARGET) || below.getSource() !== insert.code) {
          return;
        }
        below.setMetadata(TARGET, { inserted_by: insert.key }); // now the first of our run
      }
      // Our run becomes the cells asked for. Cells are updated in place, position by
      // position, so a Run All that is under way (it listed the cells when it started) still
      // runs them; only the surplus is removed, only the missing cells are inserted.
      const end = runEnd(first);
      const have = end - first;
      const want = insert.cells.length;
      const unchanged = have === want && insert.cells.every((source, i) => cells[first + i].getSource() === source);
      if (unchanged) {
        return;
      }
      shared.transact(() => {
        for (let i = 0; i < Math.min(have, want); i++) {
          if (cells[first + i].getSource() !== insert.cells[i]) {
            cells[first + i].setSource(insert.cells[i]);
          }
        }
        if (have > want) {
          shared.deleteCellRange(first + want, end);
        } else if (want > have) {
          shared.insertCells(end, fresh(insert.cells.slice(have)));
        }
      });
    });
  }
};

export default plugin;
