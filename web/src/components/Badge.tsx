// A job's state badge (its text is the state, SPEC §11) and its strip of recent outcomes.
import { t } from '../i18n.ts';
import { formatMoment } from '../format.ts';
import { type JobState, outcomeOf, type Run } from '../model.ts';

export function Badge({ state }: { state: JobState }) {
  return <span class={`badge badge-${state}`}>{t.states[state]}</span>;
}

/** Oldest on the left, newest on the right, as a timeline reads. */
export function Strip({ runs }: { runs: readonly Run[] | undefined }) {
  if (runs === undefined) return <span class="strip strip-loading" aria-hidden="true" />;
  const counts = new Map<string, number>();
  for (const run of runs) counts.set(t.statuses[run.status], (counts.get(t.statuses[run.status]) ?? 0) + 1);
  const label = runs.length === 0 ? t.noRuns : `${t.recent}: ${[...counts].map(([status, n]) => `${n} ${status}`).join(', ')}`;
  return (
    <span class="strip" role="img" aria-label={label} title={label}>
      {[...runs].reverse().map((run) => (
        <span
          key={run.id}
          class={`tick tick-${outcomeOf(run.status)}`}
          title={`${t.statuses[run.status]} · ${formatMoment(run.scheduledAt)}${run.error ? ` · ${run.error}` : ''}`}
        />
      ))}
    </span>
  );
}
