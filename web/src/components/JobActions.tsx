// A job's controls (SPEC §11): `Pause` (with a `Note`), `Resume`, `Run now`, `Edit`, `Delete`,
// each confirmed in a dialog. Offered only to a role that may use them (SPEC §8).
import { useState } from 'preact/hooks';
import type { Api } from '../api.ts';
import { DELETE, PAUSE, RESUME, RUN_NOW } from '../documents.ts';
import { t } from '../i18n.ts';
import type { Job, Run } from '../model.ts';
import type { JobStore } from '../store.ts';
import { Dialog, NoteField } from './Dialog.tsx';
import { EditDialog, type JobDetails } from './EditDialog.tsx';

type Action = 'pause' | 'resume' | 'run' | 'edit' | 'delete';

export function JobActions({
  api,
  store,
  job,
  details,
  onDone,
}: {
  api: Api;
  store: JobStore;
  job: Job;
  details: JobDetails | null;
  onDone: (message: string) => void;
}) {
  const [open, setOpen] = useState<Action | null>(null);
  const [note, setNote] = useState('');
  const close = () => setOpen(null);
  const show = (action: Action) => {
    setNote('');
    setOpen(action);
  };

  return (
    <div class="actions">
      {job.enabled ? (
        <button type="button" onClick={() => show('pause')}>
          {t.pause}
        </button>
      ) : (
        <button type="button" onClick={() => show('resume')}>
          {t.resume}
        </button>
      )}
      <button type="button" onClick={() => show('run')}>
        {t.runNow}
      </button>
      <button type="button" onClick={() => show('edit')} disabled={details === null}>
        {t.edit}
      </button>
      <button type="button" class="danger" onClick={() => show('delete')}>
        {t.delete}
      </button>

      {open === 'pause' && (
        <Dialog
          title={t.pauseTitle(job.id)}
          confirm={t.pause}
          onClose={close}
          onConfirm={async () => {
            store.put((await api.request<{ pauseJob: Job }>(PAUSE, { id: job.id, note: note.trim() || null })).pauseJob);
            onDone(t.done);
          }}
        >
          <NoteField value={note} onInput={setNote} />
        </Dialog>
      )}
      {open === 'resume' && (
        <Dialog
          title={t.resumeTitle(job.id)}
          confirm={t.resume}
          onClose={close}
          onConfirm={async () => {
            store.put((await api.request<{ resumeJob: Job }>(RESUME, { id: job.id })).resumeJob);
            onDone(t.done);
          }}
        >
          {job.pausedNote && <p class="note">{job.pausedNote}</p>}
        </Dialog>
      )}
      {open === 'run' && (
        <Dialog
          title={t.runNowTitle(job.id)}
          confirm={t.runNow}
          onClose={close}
          onConfirm={async () => {
            const { runJobNow } = await api.request<{ runJobNow: Run }>(RUN_NOW, { id: job.id });
            onDone(t.startedRun(runJobNow.id));
          }}
        />
      )}
      {open === 'edit' && details !== null && (
        <EditDialog api={api} store={store} job={details} onClose={close} onDone={() => onDone(t.done)} />
      )}
      {open === 'delete' && (
        <Dialog
          title={t.deleteTitle(job.id)}
          confirm={t.delete}
          danger
          onClose={close}
          onConfirm={async () => {
            await api.request(DELETE, { id: job.id });
            store.remove(job.id);
            location.hash = '#/';
          }}
        >
          <p>{t.deleteHelp}</p>
        </Dialog>
      )}
    </div>
  );
}
