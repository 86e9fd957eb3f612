/**
 * gemini-magic-lab: the frontend half of `%%gemini -f code`.
 *
 * Why this exists: `-f code` puts the answer's code into a new cell below. A kernel can
 * only do that with IPython's `set_next_input` payload, which always inserts a NEW cell,
 * so re-running the asking cell piles up copies. Jupyter's messaging gives a kernel no way
 * to address any cell but the one running, and JupyterLab exposes no app object to outputs.
 * So this small extension does the cell edit in the frontend:
 *
 * 1. Handshake: the kernel (on `%load_ext gemini_magic`) opens a comm to the target
 *    "gemini_magic" with `{hello: "kernel", version: 1}`; we answer
 *    `{hello: "jupyterlab", version: 1, inserts_cells: true}`, and the kernel then stops
 *    using `set_next_input`. Without this extension no answer comes and nothing changes.
 * 2. Inserting: the answer's output carries the metadata
 *    `{gemini_magic: {insert_code: {key, code}}}`. When a code cell has finished executing,
 *    we take the LAST such output: if the cell directly below is a code cell we inserted
 *    for the same key (cell metadata `gemini_magic.inserted_by === key`), its source is
 *    replaced; otherwise a new code cell is inserted below. The cell is never executed.
 * 3. Run All: our answer to the hello reaches the kernel only when it is idle, so a `-f code`
 *    cell queued behind the loading cell still uses `set_next_input`, and says so with
 *    `by_kernel: true`. JupyterLab has then inserted the cell itself: we mark it as ours
 *    (and drop our older cell for the same key just below it), so the next run replaces it.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

const TARGET = 'gemini_magic';
const VERSION = 1;

type Insert = { key: string; code: string; byKernel: boolean };
/** A kernel connection, typed without a direct dependency on @jupyterlab/services. */
type Kernel = NonNullable<NotebookPanel['sessionContext']['session']>['kernel'];

/** The last output of a code cell that asks for a cell to be inserted, or null. */
function lastInsert(outputs: ReadonlyArray<{ metadata?: unknown }>): Insert | null {
  let found: Insert | null = null;
  for (const output of outputs) {
    const ours = (output.metadata as any)?.[TARGET]?.insert_code;
    if (ours && typeof ours.key === 'string' && typeof ours.code === 'string') {
      found = { key: ours.key, code: ours.code, byKernel: ours.by_kernel === true };
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
    const data = (msg.content.data ?? {}) as { hello?: string };
    if (data.hello === 'kernel') {
      comm.send({ hello: 'jupyterlab', version: VERSION, inserts_cells: true });
    }
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'gemini-magic-lab:plugin',
  description: 'Lets %%gemini -f code insert, and later replace, a code cell below the asking cell.',
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
      const cells = model.sharedModel.cells;
      const index = cells.findIndex(c => c.id === cell.model.id);
      if (index < 0) {
        return; // the cell was deleted while it ran
      }
      const below = cells[index + 1];
      const mark = below?.cell_type === 'code' ? (below.getMetadata(TARGET) as any) : undefined;
      if (insert.byKernel) {
        if (below && !mark && below.getSource() === insert.code) {
          below.setMetadata(TARGET, { inserted_by: insert.key });
          const older = cells[index + 2];
          const olderMark = older?.cell_type === 'code' ? (older.getMetadata(TARGET) as any) : undefined;
          if (olderMark?.inserted_by === insert.key) {
            model.sharedModel.deleteCell(index + 2);
          }
        }
        return;
      }
      if (below && mark?.inserted_by === insert.key) {
        if (below.getSource() !== insert.code) {
          below.setSource(insert.code);
        }
      } else {
        model.sharedModel.insertCell(index + 1, {
          cell_type: 'code',
          source: insert.code,
          metadata: { [TARGET]: { inserted_by: insert.key } }
        });
      }
    });
  }
};

export default plugin;
