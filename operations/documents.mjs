// Documents: the seed's housekeeping jobs.
//
//   УдалитьЗавершенныеДокументы — delete documents completed more than DOCUMENTS_KEEP_DAYS days
//     ago (default 30).
//   УдалитьСтарыеДокументы — delete documents created more than DOCUMENTS_MAX_AGE_DAYS days ago,
//     whatever their status (default 365).
//
// Ages are counted from the run's due time (ctx.scheduledAt), not from when it happens to start,
// so a late run deletes exactly what it would have deleted on time. Deleting goes in batches: a
// large backlog never holds long locks, and an aborted run (timeout, cancelRun) stops between
// batches.

const DAY_MS = 86_400_000;
const BATCH = 1000;

/** The table is this configuration's own; the service never touches it. */
async function ensureTable(sql) {
  // The advisory lock keeps two instances' first runs from racing on the catalog.
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext('operations:documents'))`;
    await tx`
      create table if not exists documents (
        id bigserial primary key,
        number text not null,
        status text not null default 'new',
        created_at timestamptz not null default now(),
        completed_at timestamptz
      )`;
    await tx`create index if not exists documents_completed_idx on documents (completed_at) where status = 'completed'`;
    await tx`create index if not exists documents_created_idx on documents (created_at)`;
  });
}

/** A whole number of days from the environment; empty or unset means the default. */
function days(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number of days, got "${raw}"`);
  return value;
}

/** Runs `deleteBatch(limit)` until it deletes less than a batch or the run is aborted. */
async function deleteInBatches(ctx, deleteBatch) {
  let deleted = 0;
  while (!ctx.signal.aborted) {
    const rows = await deleteBatch(BATCH);
    deleted += rows.length;
    if (rows.length < BATCH) break;
  }
  return { deleted, stopped: ctx.signal.aborted ? ' (stopped early: the run was aborted)' : '' };
}

async function deleteCompletedDocuments(ctx) {
  const { sql } = ctx;
  const keepDays = days('DOCUMENTS_KEEP_DAYS', 30);
  const cutoff = new Date(ctx.scheduledAt.getTime() - keepDays * DAY_MS);
  await ensureTable(sql);
  const { deleted, stopped } = await deleteInBatches(
    ctx,
    (limit) => sql`
    delete from documents where id in (
      select id from documents where status = 'completed' and completed_at < ${cutoff} limit ${limit})
    returning id`,
  );
  await ctx.log('INFO', `Deleted ${deleted} documents completed more than ${keepDays} days ago${stopped}`, {
    deleted,
    keepDays,
    cutoff: cutoff.toISOString(),
  });
  return deleted;
}

async function deleteOldDocuments(ctx) {
  const { sql } = ctx;
  const maxAgeDays = days('DOCUMENTS_MAX_AGE_DAYS', 365);
  const cutoff = new Date(ctx.scheduledAt.getTime() - maxAgeDays * DAY_MS);
  await ensureTable(sql);
  const { deleted, stopped } = await deleteInBatches(
    ctx,
    (limit) => sql`
    delete from documents where id in (
      select id from documents where created_at < ${cutoff} limit ${limit})
    returning id`,
  );
  await ctx.log('INFO', `Deleted ${deleted} documents created more than ${maxAgeDays} days ago${stopped}`, {
    deleted,
    maxAgeDays,
    cutoff: cutoff.toISOString(),
  });
  return deleted;
}

export default {
  УдалитьЗавершенныеДокументы: deleteCompletedDocuments,
  УдалитьСтарыеДокументы: deleteOldDocuments,
};
