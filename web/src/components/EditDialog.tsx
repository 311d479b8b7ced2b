// `Edit`: a job's definition in a dialog, sent as `updateJob` with only the fields that changed.
import { useState } from 'preact/hooks';
import type { Api } from '../api.ts';
import { UPDATE } from '../documents.ts';
import { t } from '../i18n.ts';
import { formOf, type Job, type JobDetails, type JobForm, updateInputOf } from '../model.ts';
import type { JobStore } from '../store.ts';
import { Dialog } from './Dialog.tsx';

export type { JobDetails } from '../model.ts';

const OVERLAPS = ['SKIP', 'QUEUE_ONE', 'ALLOW'];
const MISFIRES = ['RUN_ONCE', 'SKIP'];

export function EditDialog({
  api,
  store,
  job,
  onClose,
  onDone,
}: {
  api: Api;
  store: JobStore;
  job: JobDetails;
  onClose: () => void;
  onDone: () => void;
}) {
  const [before] = useState(() => formOf(job));
  const [form, setForm] = useState(before);
  const input = updateInputOf(before, form, job);
  const text = (key: keyof JobForm, label: string, numeric = false) => (
    <label class="field">
      <span>{label}</span>
      <input
        type="text"
        inputMode={numeric ? 'numeric' : undefined}
        value={form[key]}
        onInput={(event) => setForm({ ...form, [key]: event.currentTarget.value })}
      />
    </label>
  );
  const choice = (key: keyof JobForm, label: string, values: string[]) => (
    <label class="field">
      <span>{label}</span>
      <select value={form[key]} onChange={(event) => setForm({ ...form, [key]: event.currentTarget.value })}>
        {values.map((value) => (
          <option key={value} value={value}>
            {value}
          </option>
        ))}
      </select>
    </label>
  );
  return (
    <Dialog
      title={t.editTitle(job.id)}
      confirm={t.edit}
      onClose={onClose}
      disabled={Object.keys(input).length === 0}
      onConfirm={async () => {
        store.put((await api.request<{ updateJob: Job }>(UPDATE, { id: job.id, input })).updateJob);
        onDone();
      }}
    >
      <div class="form-grid">
        {text('name', t.name)}
        {text('externalCall', t.externalCall)}
        {text('period', t.period)}
        {text('cron', t.cron)}
        {text('timeZone', t.timeZone)}
        {text('timeoutSeconds', t.timeout, true)}
        {choice('overlap', t.overlap, OVERLAPS)}
        {choice('misfire', t.misfire, MISFIRES)}
        {text('maxAttempts', t.maxAttempts, true)}
        {text('autoPauseAfterFailures', t.autoPause, true)}
      </div>
    </Dialog>
  );
}
